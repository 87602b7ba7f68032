-- doska: bucket versioning and lifecycle (S3's PutBucketVersioning / PutBucketLifecycleConfiguration,
-- and the storage API's version list and restore).
--
-- A bucket's settings live in storage.doska_bucket_settings (service_role only: bucket settings are
-- the operator's, as bucket creation is in Supabase). An object's current version stays its one row
-- in storage.objects, as Supabase has it; the versions an overwrite or a delete supersedes in a
-- versioned bucket, and S3's delete markers, are rows of storage.doska_object_versions, which has
-- storage.objects' columns (so the same policy expressions read it) plus S3's version id, the marker
-- flag and an order. A current row's S3 version id is `metadata.versionId` (a string; JSON null or
-- absent: S3's `null` version, written while the bucket was unversioned or suspended).
--
-- Triggers on storage.objects keep superseded versions: every door (S3, storage API, REST on
-- storage.objects) keeps them the same way. The statement that superseded a version reports whether
-- it was kept (storage.doska_version_kept), so the door removes the bytes only of versions not kept.
--
-- Access: doska_object_versions has RLS on, and its policies are storage.objects' policies, copied
-- (storage.doska_mirror_object_policies) whenever a policy on storage.objects is created, altered or
-- dropped (event triggers, where doska's admin is a superuser) and at every start. Whoever may read,
-- delete or insert an object under the storage policies may do the same with its versions.

create table if not exists storage.doska_bucket_settings (
  bucket_id text primary key references storage.buckets (id) on delete cascade,
  versioning text check (versioning in ('Enabled', 'Suspended')),
  -- S3's lifecycle configuration, as doska validated it (see storage/core/lifecycle.rs).
  lifecycle jsonb,
  updated_at timestamptz not null default now()
);
alter table storage.doska_bucket_settings enable row level security;
revoke all on storage.doska_bucket_settings from public;
grant all on storage.doska_bucket_settings to service_role;

create table if not exists storage.doska_object_versions (
  id uuid not null,
  bucket_id text not null references storage.buckets (id) on delete cascade,
  name text collate "C" not null,
  owner uuid,
  owner_id text,
  metadata jsonb,
  user_metadata jsonb,
  path_tokens text[] generated always as (string_to_array(name, '/')) stored,
  version text not null,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  last_accessed_at timestamptz default now(),
  -- doska: S3's version id (the version's UUID, or `null`), whether it is a delete marker, its
  -- place in the key's history (newest first = highest), and since when it is noncurrent.
  version_id text not null,
  delete_marker boolean not null default false,
  seq bigint generated always as identity,
  noncurrent_since timestamptz not null default now(),
  primary key (id, version)
);
create unique index if not exists doska_object_versions_key
  on storage.doska_object_versions (bucket_id, name, version_id);
create index if not exists doska_object_versions_order
  on storage.doska_object_versions (bucket_id, name, seq);
alter table storage.doska_object_versions enable row level security;
grant select, insert, delete on storage.doska_object_versions to anon, authenticated, service_role;

-- A bucket's versioning state (`Enabled`, `Suspended`, or null: never enabled), whoever asks.
create or replace function storage.doska_versioning(p_bucket text) returns text
language plpgsql stable security definer set search_path = '' as $$
begin
  return (select s.versioning from storage.doska_bucket_settings s where s.bucket_id = p_bucket);
end
$$;
revoke all on function storage.doska_versioning(text) from public;
grant execute on function storage.doska_versioning(text) to anon, authenticated, service_role;

-- Keeps a superseded current row as a noncurrent version when the bucket's state says so: always
-- when Enabled; when Suspended only a version with an id of its own (the `null` one is replaced).
create or replace function storage.doska_keep(o storage.objects, p_state text) returns void
language plpgsql security definer set search_path = '' as $$
begin
  if o.version is null then
    return;
  end if;
  if p_state = 'Enabled' or (p_state = 'Suspended' and (o.metadata ->> 'versionId') is not null)
  then
    insert into storage.doska_object_versions
      (id, bucket_id, name, owner, owner_id, metadata, user_metadata, version, created_at,
       updated_at, last_accessed_at, version_id)
    values (o.id, o.bucket_id, o.name, o.owner, o.owner_id, o.metadata, o.user_metadata, o.version,
      o.created_at, o.updated_at, o.last_accessed_at, coalesce(o.metadata ->> 'versionId', 'null'))
    on conflict do nothing;
  end if;
end
$$;
revoke all on function storage.doska_keep(storage.objects, text) from public;

-- Before a current row is written: the row it replaces is kept (see doska_keep); the new row gets
-- its version id when the bucket is Enabled, or, Suspended, is the `null` version (any older `null`
-- version goes; its bytes are left to the orphan cleanup). A row that already names its version id
-- (a version restored as current by doska_promote) keeps it.
create or replace function storage.doska_version_write() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  v_state text;
begin
  if tg_op = 'UPDATE' and new.version is not distinct from old.version then
    return new;
  end if;
  select s.versioning into v_state from storage.doska_bucket_settings s
   where s.bucket_id = new.bucket_id;
  if v_state is null then
    return new;
  end if;
  if tg_op = 'UPDATE' then
    perform storage.doska_keep(old, v_state);
  end if;
  if new.metadata ? 'versionId' then
    return new;
  end if;
  if v_state = 'Enabled' then
    new.metadata := coalesce(new.metadata, '{}'::jsonb) || jsonb_build_object('versionId', new.version);
  else
    delete from storage.doska_object_versions v
     where v.bucket_id = new.bucket_id and v.name = new.name and v.version_id = 'null';
  end if;
  return new;
end
$$;

create or replace function storage.doska_version_delete() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  v_state text;
begin
  select s.versioning into v_state from storage.doska_bucket_settings s
   where s.bucket_id = old.bucket_id;
  if v_state is not null then
    perform storage.doska_keep(old, v_state);
  end if;
  return old;
end
$$;

drop trigger if exists doska_version_write on storage.objects;
create trigger doska_version_write before insert or update on storage.objects
  for each row execute function storage.doska_version_write();
drop trigger if exists doska_version_delete on storage.objects;
create trigger doska_version_delete before delete on storage.objects
  for each row execute function storage.doska_version_delete();

-- Whether the version (object id, version) is kept as a noncurrent version. VOLATILE on purpose: in
-- a statement's RETURNING it then sees what the statement's triggers wrote.
create or replace function storage.doska_version_kept(p_id uuid, p_version text) returns boolean
language plpgsql volatile security definer set search_path = '' as $$
begin
  return p_version is not null and exists (
    select 1 from storage.doska_object_versions v where v.id = p_id and v.version = p_version);
end
$$;
revoke all on function storage.doska_version_kept(uuid, text) from public;
grant execute on function storage.doska_version_kept(uuid, text) to anon, authenticated, service_role;

-- After the current version of a key was removed for good (DeleteObject with its versionId): the
-- newest noncurrent version, if it is not a delete marker, becomes current again, as in S3.
create or replace function storage.doska_promote(p_bucket text, p_name text) returns void
language plpgsql security definer set search_path = '' as $$
declare
  v storage.doska_object_versions;
begin
  if exists (select 1 from storage.objects o where o.bucket_id = p_bucket and o.name = p_name) then
    return;
  end if;
  select * into v from storage.doska_object_versions w
   where w.bucket_id = p_bucket and w.name = p_name order by w.seq desc limit 1;
  if not found or v.delete_marker then
    return;
  end if;
  delete from storage.doska_object_versions w where w.id = v.id and w.version = v.version;
  insert into storage.objects
    (id, bucket_id, name, owner, owner_id, metadata, user_metadata, version, created_at, updated_at,
     last_accessed_at)
  values (v.id, v.bucket_id, v.name, v.owner, v.owner_id,
    coalesce(v.metadata, '{}'::jsonb) || jsonb_build_object('versionId',
      case when v.version_id = 'null' then null else v.version_id end),
    v.user_metadata, v.version, v.created_at, v.updated_at, v.last_accessed_at);
end
$$;
revoke all on function storage.doska_promote(text, text) from public;
grant execute on function storage.doska_promote(text, text) to anon, authenticated, service_role;

-- Copies storage.objects' policies onto storage.doska_object_versions (same names, commands, roles
-- and expressions). A policy whose expression does not fit the versions table is left out (that
-- access is then denied) with a warning.
create or replace function storage.doska_mirror_object_policies() returns void
language plpgsql security definer set search_path = '' as $$
declare
  p record;
begin
  -- Serialized with policy applies (policies::apply's POLICY_LOCK, "doska_po"): instances starting
  -- together would otherwise drop and create the same policies at once ("tuple concurrently
  -- updated"). Re-entrant inside an apply, whose event triggers call this.
  perform pg_advisory_xact_lock(7237130031240015983);
  for p in select polname from pg_policy
            where polrelid = 'storage.doska_object_versions'::regclass loop
    execute format('drop policy %I on storage.doska_object_versions', p.polname);
  end loop;
  for p in select * from pg_policies where schemaname = 'storage' and tablename = 'objects' loop
    begin
      execute format('create policy %I on storage.doska_object_versions as %s for %s to %s%s%s',
        p.policyname, p.permissive, p.cmd,
        (select string_agg(case when r = 'public' then 'public' else quote_ident(r) end, ', ')
           from unnest(p.roles) r),
        case when p.qual is not null then format(' using (%s)', p.qual) else '' end,
        case when p.with_check is not null then format(' with check (%s)', p.with_check) else '' end);
    exception when others then
      raise warning 'storage policy % does not apply to object versions: %', p.policyname, sqlerrm;
    end;
  end loop;
end
$$;
revoke all on function storage.doska_mirror_object_policies() from public;

create or replace function storage.doska_mirror_on_ddl() returns event_trigger
language plpgsql security definer set search_path = '' as $$
begin
  if exists (select 1 from pg_event_trigger_ddl_commands() c
              where c.object_type = 'policy' and c.object_identity like '% on storage.objects') then
    perform storage.doska_mirror_object_policies();
  end if;
end
$$;

create or replace function storage.doska_mirror_on_drop() returns event_trigger
language plpgsql security definer set search_path = '' as $$
begin
  if exists (select 1 from pg_event_trigger_dropped_objects() d
              where d.object_type = 'policy' and d.object_identity like '% on storage.objects') then
    perform storage.doska_mirror_object_policies();
  end if;
end
$$;

-- Event triggers need a superuser; against a server where doska's admin is not one, the mirror runs
-- at every start and after every policy apply instead.
do $$
begin
  if (select rolsuper from pg_roles where rolname = current_user) then
    drop event trigger if exists doska_mirror_object_policies;
    create event trigger doska_mirror_object_policies on ddl_command_end
      when tag in ('CREATE POLICY', 'ALTER POLICY')
      execute function storage.doska_mirror_on_ddl();
    drop event trigger if exists doska_mirror_object_policies_drop;
    create event trigger doska_mirror_object_policies_drop on sql_drop
      when tag in ('DROP POLICY')
      execute function storage.doska_mirror_on_drop();
  end if;
end
$$;

select storage.doska_mirror_object_policies();
