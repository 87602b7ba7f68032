-- Notifications: rows in public.notifications written by triggers when a teacher grades, sets an
-- assignment or publishes a material, one row per student to tell. Realtime pushes them
-- (policies/realtime.toml publishes the table), and each user reads only their own
-- (policies/notifications.toml). Who is told, and when:
--   grade       the graded student: on a new grade, and when its grade or comment changes;
--   assignment  every student of the class it is set for (school, class, letter): when it is set,
--               and the students of the new class when it is moved to another class;
--   material    every student of the material's school (students read all of their school's
--               published materials): when it is published — inserted as 'published', or its
--               status changed to 'published' from anything else. Drafts and archived ones tell no one.
-- `data` carries the ids for the app to link to (`grade_id`, `assignment_id`, `material_id`,
-- `school_id`, …). The functions are SECURITY DEFINER: clients cannot write notifications
-- themselves, the triggers write them as the owner of the table.

create function app.notify_grade() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  a public.assignments;
begin
  if tg_op = 'UPDATE' and new.grade is not distinct from old.grade
     and new.comment is not distinct from old.comment then
    return null;
  end if;
  select * into a from public.assignments where id = new.assignment_id;
  insert into public.notifications (user_id, kind, title, body, data)
  values (
    new.student_id,
    'grade',
    left(case when tg_op = 'INSERT' then 'Оценка ' else 'Оценка изменена: ' end
         || new.grade || ' — ' || a.title, 300),
    left(coalesce(new.comment, ''), 5000),
    jsonb_build_object('grade_id', new.id, 'assignment_id', new.assignment_id,
                       'grade', new.grade, 'subject', a.subject, 'school_id', a.school_id));
  return null;
end $$;
create trigger notify_grade after insert or update of grade, comment on public.grades
  for each row execute function app.notify_grade();

create function app.notify_assignment() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if tg_op = 'UPDATE' and (new.school_id, new.class, new.letter)
                          is not distinct from (old.school_id, old.class, old.letter) then
    return null;
  end if;
  insert into public.notifications (user_id, kind, title, body, data)
  select s.user_id,
         'assignment',
         left('Новое задание: ' || new.title, 300),
         left(new.subject, 5000),
         jsonb_build_object('assignment_id', new.id, 'subject', new.subject,
                            'due_date', new.due_date, 'school_id', new.school_id,
                            'class', new.class, 'letter', new.letter)
    from public.student_profiles s
   where s.school_id = new.school_id and s.class = new.class and s.letter = new.letter;
  return null;
end $$;
create trigger notify_assignment after insert or update of school_id, class, letter
  on public.assignments
  for each row execute function app.notify_assignment();

create function app.notify_material() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if new.status <> 'published'
     or (tg_op = 'UPDATE' and old.status = 'published') then
    return null;
  end if;
  insert into public.notifications (user_id, kind, title, body, data)
  select s.user_id,
         'material',
         left('Новый материал: ' || new.title, 300),
         left(new.subject, 5000),
         jsonb_build_object('material_id', new.id, 'subject', new.subject,
                            'school_id', new.school_id)
    from public.student_profiles s
   where s.school_id = new.school_id;
  return null;
end $$;
create trigger notify_material after insert or update of status on public.materials
  for each row execute function app.notify_material();

-- Nothing outside the triggers calls these.
revoke execute on function app.notify_grade(), app.notify_assignment(), app.notify_material()
  from public;
