-- TeacherUchit: schools, profiles, materials, assignments, grades, notifications and class chats.
-- Users and sessions are doska's auth.users / auth.sessions; a user's app role (student, teacher,
-- school_admin) is auth.users.role, set by the sign-up trigger (0003), never by the client.
-- Access rules live in policies/*.toml; this file holds the data and its integrity.

create schema if not exists app;
grant usage on schema app to anon, authenticated, service_role;

create table public.schools (
  id uuid primary key default gen_random_uuid(),
  name text not null check (length(btrim(name)) between 1 and 200),
  city text not null check (length(btrim(city)) between 1 and 100),
  -- the grading scale of the school (5-point by default)
  grade_min smallint not null default 1,
  grade_max smallint not null default 5,
  created_at timestamptz not null default now(),
  -- the school admin who registered the school
  admin_id uuid references auth.users (id) on delete set null,
  check (grade_min < grade_max)
);
create index schools_city_name_idx on public.schools (city, name);
create index schools_admin_id_idx on public.schools (admin_id);

-- Join codes: a teacher signs up with one. Kept apart from `schools` so the school list can be public
-- while the codes are seen only by that school's admins.
create table public.school_codes (
  code text primary key check (code ~ '^[A-Z0-9-]{6,32}$'),
  school_id uuid not null references public.schools (id) on delete cascade,
  created_by uuid references auth.users (id) on delete set null default auth.uid(),
  created_at timestamptz not null default now(),
  expires_at timestamptz
);
create index school_codes_school_id_idx on public.school_codes (school_id);

create table public.student_profiles (
  user_id uuid primary key references auth.users (id) on delete cascade,
  name text not null default '' check (length(name) <= 200),
  city text check (length(city) <= 100),
  school_id uuid references public.schools (id) on delete set null,
  class smallint check (class between 1 and 11),
  letter text check (letter ~ '^[А-ЯЁA-Z]$'),
  created_at timestamptz not null default now()
);
-- "the students of 7Б of this school" (teachers' lists, chat membership)
create index student_profiles_class_idx on public.student_profiles (school_id, class, letter);

create table public.teacher_profiles (
  user_id uuid primary key references auth.users (id) on delete cascade,
  name text not null default '' check (length(name) <= 200),
  primary_subject text check (length(primary_subject) <= 100),
  secondary_subject text check (length(secondary_subject) <= 100),
  -- the code the teacher signed up with, kept as a record
  school_code text,
  institution text check (length(institution) <= 300),
  school_id uuid references public.schools (id) on delete set null,
  created_at timestamptz not null default now()
);
create index teacher_profiles_school_id_idx on public.teacher_profiles (school_id);

create table public.materials (
  id uuid primary key default gen_random_uuid(),
  title text not null check (length(btrim(title)) between 1 and 300),
  description text not null default '' check (length(description) <= 10000),
  -- the object's path in storage (bucket/key)
  file_path text check (length(file_path) <= 1024),
  subject text not null check (length(btrim(subject)) between 1 and 100),
  author_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  school_id uuid not null references public.schools (id) on delete cascade,
  created_at timestamptz not null default now(),
  status text not null default 'draft' check (status in ('draft', 'published', 'archived'))
);
create index materials_school_status_idx on public.materials (school_id, status, created_at desc);
create index materials_author_id_idx on public.materials (author_id);

create table public.assignments (
  id uuid primary key default gen_random_uuid(),
  title text not null check (length(btrim(title)) between 1 and 300),
  description text not null default '' check (length(description) <= 10000),
  subject text not null check (length(btrim(subject)) between 1 and 100),
  teacher_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  school_id uuid not null references public.schools (id) on delete cascade,
  -- the class it is set for: 7Б is class 7, letter Б
  class smallint not null check (class between 1 and 11),
  letter text not null check (letter ~ '^[А-ЯЁA-Z]$'),
  due_date timestamptz,
  created_at timestamptz not null default now()
);
create index assignments_class_due_idx on public.assignments (school_id, class, letter, due_date);
create index assignments_teacher_id_idx on public.assignments (teacher_id);

create table public.grades (
  id uuid primary key default gen_random_uuid(),
  student_id uuid not null references public.student_profiles (user_id) on delete cascade,
  assignment_id uuid not null references public.assignments (id) on delete cascade,
  grade smallint not null,
  teacher_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  comment text check (length(comment) <= 2000),
  created_at timestamptz not null default now(),
  unique (assignment_id, student_id)
);
create index grades_student_idx on public.grades (student_id, created_at desc);
create index grades_teacher_id_idx on public.grades (teacher_id);

-- Per-user notifications (new grade, new assignment...); the realtime issue adds the triggers that
-- fill and push them.
create table public.notifications (
  id bigint generated always as identity primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  kind text not null check (length(kind) between 1 and 50),
  title text not null check (length(title) <= 300),
  body text not null default '' check (length(body) <= 5000),
  data jsonb not null default '{}',
  read_at timestamptz,
  created_at timestamptz not null default now()
);
create index notifications_user_idx on public.notifications (user_id, created_at desc);
create index notifications_unread_idx on public.notifications (user_id) where read_at is null;

-- Class chat: one room per (school, class, letter).
create table public.class_messages (
  id bigint generated always as identity primary key,
  school_id uuid not null references public.schools (id) on delete cascade,
  class smallint not null check (class between 1 and 11),
  letter text not null check (letter ~ '^[А-ЯЁA-Z]$'),
  author_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  body text not null check (length(btrim(body)) between 1 and 4000),
  created_at timestamptz not null default now()
);
create index class_messages_room_idx on public.class_messages (school_id, class, letter, created_at desc);
