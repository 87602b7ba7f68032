-- The staff page of a school admin, over the REST API (which exposes only `public`): who teaches at
-- the caller's school with their role, and appointing or demoting staff. Both call the trusted
-- helpers of 0002/0003, which decide who may; nothing here widens access.

-- The staff of the caller's school with each one's role (auth.users.role is not readable by API
-- roles). Teachers of the school see their colleagues; anyone else gets no rows.
create function public.school_staff()
returns table (user_id uuid, name text, primary_subject text, secondary_subject text, role text)
language sql stable security definer set search_path = '' as $$
  select t.user_id, t.name, t.primary_subject, t.secondary_subject, u.role::text
    from public.teacher_profiles t
    join auth.users u on u.id = t.user_id
   where t.school_id is not null and app.teaches_at(t.school_id)
   order by t.name, t.user_id
$$;
revoke execute on function public.school_staff() from public, anon;
grant execute on function public.school_staff() to authenticated, service_role;

-- Makes a teacher of the caller's school an admin (`school_admin`) or back (`teacher`); refused
-- (42501) unless the caller is an admin of that school or the service role.
create function public.set_staff_role(target uuid, new_role text) returns void
language sql security invoker set search_path = '' as $$
  select app.set_staff_role(target, new_role)
$$;
revoke execute on function public.set_staff_role(uuid, text) from public, anon;
grant execute on function public.set_staff_role(uuid, text) to authenticated, service_role;
