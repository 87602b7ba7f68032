-- Roles are decided by trusted SQL, never by what a client claims. At sign-up (a row inserted into
-- auth.users) the user's metadata says what they want to be; this decides what they are:
--   teacher       only with a valid, unexpired school code (else the sign-up fails);
--   student       otherwise (the default);
--   school_admin  never at sign-up: only another admin of the school (app.set_staff_role) or the
--                 service key (a user created with that role through the admin API) makes one.
-- Then the matching profile is created from the metadata.

create function app.signup_role() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  meta jsonb := coalesce(new.raw_user_meta_data, '{}'::jsonb);
  wanted text := coalesce(meta ->> 'role', 'student');
begin
  -- A role other than GoTrue's default was set by the admin API (service key): trusted.
  if new.role is not null and new.role not in ('', 'authenticated') then
    return new;
  end if;
  if wanted = 'teacher' then
    if not exists (select 1 from public.school_codes c
                    where c.code = upper(btrim(meta ->> 'school_code'))
                      and (c.expires_at is null or c.expires_at > now())) then
      raise exception 'a valid school code is needed to sign up as a teacher' using errcode = '22023';
    end if;
    new.role := 'teacher';
  elsif wanted = 'student' then
    new.role := 'student';
  else
    raise exception 'cannot sign up as %: school admins are appointed by a school admin', wanted
      using errcode = '22023';
  end if;
  return new;
end $$;

create function app.signup_profile() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  meta jsonb := coalesce(new.raw_user_meta_data, '{}'::jsonb);
  school uuid;
begin
  if new.role in ('teacher', 'school_admin') then
    select c.school_id into school from public.school_codes c
     where c.code = upper(btrim(meta ->> 'school_code'));
    if school is null and meta ->> 'school_id' ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$' then
      select s.id into school from public.schools s where s.id = (meta ->> 'school_id')::uuid;
    end if;
    insert into public.teacher_profiles
      (user_id, name, primary_subject, secondary_subject, school_code, institution, school_id)
    values (new.id, coalesce(meta ->> 'name', ''), meta ->> 'primary_subject',
            meta ->> 'secondary_subject', upper(btrim(meta ->> 'school_code')),
            meta ->> 'institution', school);
  elsif new.role = 'student' then
    if meta ->> 'school_id' ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$' then
      select s.id into school from public.schools s where s.id = (meta ->> 'school_id')::uuid;
    end if;
    insert into public.student_profiles (user_id, name, city, school_id, class, letter)
    values (new.id, coalesce(meta ->> 'name', ''), meta ->> 'city', school,
            case when meta ->> 'class' ~ '^([1-9]|1[01])$' then (meta ->> 'class')::smallint end,
            case when upper(meta ->> 'letter') ~ '^[А-ЯЁA-Z]$' then upper(meta ->> 'letter') end);
  end if;
  return new;
end $$;

create trigger teacheruchit_signup_role before insert on auth.users
  for each row execute function app.signup_role();
create trigger teacheruchit_signup_profile after insert on auth.users
  for each row execute function app.signup_profile();

-- A school admin makes a teacher of their school an admin, or back; the service role may do it for
-- anyone. Takes effect at the user's next token refresh.
create function app.set_staff_role(target uuid, new_role text) returns void
language plpgsql security definer set search_path = '' as $$
declare
  school uuid;
begin
  if new_role not in ('teacher', 'school_admin') then
    raise exception 'staff roles are teacher and school_admin' using errcode = '22023';
  end if;
  select t.school_id into school from public.teacher_profiles t where t.user_id = target;
  if school is null then
    raise exception 'no teacher with that id' using errcode = 'P0002';
  end if;
  if auth.role() is distinct from 'service_role' and not app.admin_of(school) then
    raise exception 'only an admin of the school can change its staff roles' using errcode = '42501';
  end if;
  update auth.users set role = new_role, updated_at = now() where id = target;
end $$;
revoke execute on function app.set_staff_role(uuid, text) from public;
grant execute on function app.set_staff_role(uuid, text) to authenticated, service_role;
