-- doska's base: the API roles, Supabase's schemas, the realtime publication and the auth helpers.
-- Roles are cluster-wide and may be created concurrently by several databases' migrations (tests),
-- so each creation tolerates a concurrent twin.

do $$
declare r record;
begin
  for r in select * from (values
      ('anon', 'nologin noinherit'),
      ('authenticated', 'nologin noinherit'),
      ('service_role', 'nologin noinherit bypassrls'),
      ('authenticator', 'login noinherit')) as v(name, options)
  loop
    if not exists (select from pg_roles where rolname = r.name) then
      begin
        execute format('create role %I %s', r.name, r.options);
      exception when duplicate_object or unique_violation then null;
      end;
    end if;
  end loop;
end $$;

do $$ begin
  grant anon, authenticated, service_role to authenticator;
exception when duplicate_object or unique_violation then null;
end $$;

create schema if not exists auth;
create schema if not exists storage;
create schema if not exists realtime;
create schema if not exists extensions;

grant usage on schema auth, storage, realtime, extensions to anon, authenticated, service_role;

create extension if not exists pgcrypto with schema extensions;

do $$ begin
  if not exists (select from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
end $$;

-- Supabase's helpers: the caller's id, role and claims, from the claims the request transaction set.
create or replace function auth.uid() returns uuid
language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.jwt() returns jsonb
language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

grant execute on function auth.uid(), auth.role(), auth.jwt() to anon, authenticated, service_role;

-- The ledger of the app's migrations.
create table if not exists doska.migrations (
  name text primary key,
  checksum text not null,
  applied_at timestamptz not null default now()
);
