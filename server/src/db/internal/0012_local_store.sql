-- doska: the table behind @doska/client's `localStore(name)` (docs/client-js.md, "localStore: server
-- contract"): per signed-in user (anonymous sign-ins included — their role is `authenticated`), named
-- stores of string keys and values. Every write takes the next server version, so clients order
-- writes per key by the server; a deleted key stays as a tombstone (value null) so other devices
-- learn of it. RLS lets each user read and write their own rows only; the table is published for
-- realtime. It lives in `public` because the REST door exposes `public` by default and the client
-- names no schema; the version sequence and its trigger function live in doska's own schema.
create sequence if not exists doska.local_store_version;

create table if not exists public.doska_local_store (
  user_id uuid not null default auth.uid() references auth.users on delete cascade,
  store text not null,
  key text not null,
  value text,
  -- Always set by the trigger; the default only lets an insert (and generated types) leave it out.
  version bigint not null default 0,
  updated_at timestamptz not null default now(),
  primary key (user_id, store, key)
);

-- The server orders writes: every insert and update takes the next version.
create or replace function doska.local_store_version() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  new.version := nextval('doska.local_store_version');
  new.updated_at := now();
  return new;
end $$;
revoke all on function doska.local_store_version() from public;

drop trigger if exists doska_local_store_version on public.doska_local_store;
create trigger doska_local_store_version before insert or update on public.doska_local_store
  for each row execute function doska.local_store_version();

alter table public.doska_local_store enable row level security;
-- Exactly these grants, whatever default privileges an earlier start set on `public`.
revoke all on public.doska_local_store from public, anon, authenticated, service_role;
grant select, insert, update, delete on public.doska_local_store to authenticated, service_role;
drop policy if exists doska_local_store_own on public.doska_local_store;
create policy doska_local_store_own on public.doska_local_store for all to authenticated
  using (user_id = auth.uid()) with check (user_id = auth.uid());

do $$ begin
  if not exists (select from pg_publication_tables
                 where pubname = 'supabase_realtime' and schemaname = 'public'
                   and tablename = 'doska_local_store') then
    alter publication supabase_realtime add table public.doska_local_store;
  end if;
end $$;
