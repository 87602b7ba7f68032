-- Helpers the access policies call, and the integrity rules a CHECK cannot reach.
-- The helpers are SECURITY DEFINER with an empty search_path: they read profiles without going
-- through the profiles' own policies (no recursion) and cannot be redirected by a caller's objects.

-- The school of the calling student (null for anyone else).
create function app.student_school() returns uuid
language sql stable security definer set search_path = '' as $$
  select s.school_id from public.student_profiles s where s.user_id = auth.uid()
$$;

-- Whether the caller is a student of that school, class and letter.
create function app.in_my_class(school uuid, cls smallint, let text) returns boolean
language sql stable security definer set search_path = '' as $$
  select exists (
    select 1 from public.student_profiles s
     where s.user_id = auth.uid() and s.school_id = school and s.class = cls and s.letter = let)
$$;

-- Whether the caller teaches at that school (school admins are teachers too).
create function app.teaches_at(school uuid) returns boolean
language sql stable security definer set search_path = '' as $$
  select exists (
    select 1 from public.teacher_profiles t join auth.users u on u.id = t.user_id
     where t.user_id = auth.uid() and t.school_id = school
       and u.role in ('teacher', 'school_admin'))
$$;

-- Whether the caller is an admin of that school.
create function app.admin_of(school uuid) returns boolean
language sql stable security definer set search_path = '' as $$
  select exists (
    select 1 from public.teacher_profiles t join auth.users u on u.id = t.user_id
     where t.user_id = auth.uid() and t.school_id = school and u.role = 'school_admin')
$$;

grant execute on function app.student_school(), app.in_my_class(uuid, smallint, text),
  app.teaches_at(uuid), app.admin_of(uuid) to anon, authenticated, service_role;

-- Materials: the author is the caller; the school is the author's; the author teaches there.
create function app.materials_integrity() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if tg_op = 'INSERT' then
    if auth.uid() is not null then
      new.author_id := auth.uid();
    end if;
    if new.school_id is null then
      select t.school_id into new.school_id from public.teacher_profiles t where t.user_id = new.author_id;
    end if;
  end if;
  if not exists (select 1 from public.teacher_profiles t
                  where t.user_id = new.author_id and t.school_id = new.school_id) then
    raise exception 'the author of a material must teach at its school' using errcode = '23514';
  end if;
  return new;
end $$;
create trigger materials_integrity before insert or update on public.materials
  for each row execute function app.materials_integrity();

-- Assignments: set by the caller, for the caller's school.
create function app.assignments_integrity() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if tg_op = 'INSERT' then
    if auth.uid() is not null then
      new.teacher_id := auth.uid();
    end if;
    if new.school_id is null then
      select t.school_id into new.school_id from public.teacher_profiles t where t.user_id = new.teacher_id;
    end if;
  end if;
  if not exists (select 1 from public.teacher_profiles t
                  where t.user_id = new.teacher_id and t.school_id = new.school_id) then
    raise exception 'a teacher sets assignments only for their own school' using errcode = '23514';
  end if;
  return new;
end $$;
create trigger assignments_integrity before insert or update on public.assignments
  for each row execute function app.assignments_integrity();

-- Grades: within the school's scale, given by a teacher of the assignment's school, to a student of
-- the class the assignment is set for. The grader is the caller.
create function app.grades_integrity() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  a public.assignments;
  sc public.schools;
begin
  if auth.uid() is not null then
    new.teacher_id := auth.uid();
  end if;
  select * into a from public.assignments where id = new.assignment_id;
  if not found then
    return new; -- the foreign key reports it
  end if;
  select * into sc from public.schools where id = a.school_id;
  if new.grade < sc.grade_min or new.grade > sc.grade_max then
    raise exception 'grade % is outside the school''s scale %..%', new.grade, sc.grade_min, sc.grade_max
      using errcode = '23514';
  end if;
  if not exists (select 1 from public.teacher_profiles t
                  where t.user_id = new.teacher_id and t.school_id = a.school_id) then
    raise exception 'a teacher grades only assignments of their own school' using errcode = '23514';
  end if;
  if not exists (select 1 from public.student_profiles p
                  where p.user_id = new.student_id and p.school_id = a.school_id
                    and p.class = a.class and p.letter = a.letter) then
    raise exception 'the student is not in the class the assignment is set for' using errcode = '23514';
  end if;
  return new;
end $$;
create trigger grades_integrity before insert or update on public.grades
  for each row execute function app.grades_integrity();

-- Codes are upper case; their creator is the caller.
create function app.school_codes_integrity() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  new.code := upper(btrim(new.code));
  if tg_op = 'INSERT' and auth.uid() is not null then
    new.created_by := auth.uid();
  end if;
  return new;
end $$;
create trigger school_codes_integrity before insert or update on public.school_codes
  for each row execute function app.school_codes_integrity();

-- Chat messages are written as the caller.
create function app.class_messages_author() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if auth.uid() is not null then
    new.author_id := auth.uid();
  end if;
  return new;
end $$;
create trigger class_messages_author before insert on public.class_messages
  for each row execute function app.class_messages_author();
