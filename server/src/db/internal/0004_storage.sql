-- Supabase's storage schema, so Supabase storage policies and migrations run unchanged: buckets,
-- objects (names in byte order, "C" collation, so listing and continuation match S3), S3 multipart
-- upload bookkeeping, the path helpers, RLS on, and Supabase's grants. doska adds two helpers of its
-- own (prefixed `doska_`) that the storage front doors call inside the caller's transaction.

create table if not exists storage.buckets (
  id text not null primary key,
  name text not null,
  owner uuid,
  owner_id text,
  public boolean not null default false,
  avif_autodetection boolean default false,
  file_size_limit bigint,
  allowed_mime_types text[],
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
create unique index if not exists bname on storage.buckets using btree (name);

create table if not exists storage.objects (
  id uuid not null default gen_random_uuid() primary key,
  bucket_id text references storage.buckets (id),
  name text collate "C",
  owner uuid,
  owner_id text,
  metadata jsonb,
  user_metadata jsonb,
  path_tokens text[] generated always as (string_to_array(name, '/')) stored,
  version text,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  last_accessed_at timestamptz default now()
);
create unique index if not exists bucketid_objname on storage.objects (bucket_id, name);
create index if not exists name_prefix_search on storage.objects (name text_pattern_ops);

create table if not exists storage.s3_multipart_uploads (
  id text not null primary key,
  in_progress_size bigint not null default 0,
  upload_signature text not null,
  bucket_id text not null references storage.buckets (id),
  key text collate "C" not null,
  version text not null,
  owner_id text,
  created_at timestamptz not null default now(),
  user_metadata jsonb,
  -- doska: content type and cache control chosen at CreateMultipartUpload.
  metadata jsonb
);
create index if not exists idx_multipart_uploads_list
  on storage.s3_multipart_uploads (bucket_id, key, created_at);

create table if not exists storage.s3_multipart_uploads_parts (
  id uuid not null default gen_random_uuid() primary key,
  upload_id text not null references storage.s3_multipart_uploads (id) on delete cascade,
  size bigint not null default 0,
  part_number integer not null,
  bucket_id text not null references storage.buckets (id),
  key text collate "C" not null,
  etag text not null,
  owner_id text,
  version text not null,
  created_at timestamptz not null default now()
);
create index if not exists idx_multipart_parts_upload
  on storage.s3_multipart_uploads_parts (upload_id, part_number);

-- Path helpers, as Supabase defines them (policies use them: `(storage.foldername(name))[1]`).
create or replace function storage.foldername(name text) returns text[]
language plpgsql immutable as $$
declare _parts text[];
begin
  select string_to_array(name, '/') into _parts;
  return _parts[1:array_length(_parts, 1) - 1];
end
$$;

create or replace function storage.filename(name text) returns text
language plpgsql immutable as $$
declare _parts text[];
begin
  select string_to_array(name, '/') into _parts;
  return _parts[array_length(_parts, 1)];
end
$$;

create or replace function storage.extension(name text) returns text
language plpgsql immutable as $$
declare _parts text[]; _filename text;
begin
  select string_to_array(name, '/') into _parts;
  select _parts[array_length(_parts, 1)] into _filename;
  return reverse(split_part(reverse(_filename), '.', 1));
end
$$;

-- doska: a bucket's upload limits, readable inside the caller's transaction whatever the caller may
-- see of storage.buckets (Supabase's server reads them as superuser too). Says nothing about objects.
create or replace function storage.doska_bucket(p_id text)
returns table (id text, public boolean, file_size_limit bigint, allowed_mime_types text[])
language sql stable security definer set search_path = '' as $$
  select b.id, b.public, b.file_size_limit, b.allowed_mime_types
  from storage.buckets b where b.id = p_id
$$;
revoke all on function storage.doska_bucket(text) from public;

alter table storage.buckets enable row level security;
alter table storage.objects enable row level security;
alter table storage.s3_multipart_uploads enable row level security;
alter table storage.s3_multipart_uploads_parts enable row level security;

grant all on storage.buckets, storage.objects to anon, authenticated, service_role;
grant all on storage.s3_multipart_uploads, storage.s3_multipart_uploads_parts to service_role;
grant select on storage.s3_multipart_uploads, storage.s3_multipart_uploads_parts to authenticated, anon;
grant execute on function storage.foldername(text), storage.filename(text), storage.extension(text)
  to anon, authenticated, service_role;
grant execute on function storage.doska_bucket(text) to anon, authenticated, service_role;

-- doska: S3 access keys made with `doska s3-keys create`. SigV4 needs the plain secret, so it is
-- stored encrypted (ChaCha20-Poly1305, key derived from the JWT secret), never hashed. A key bound to
-- a user acts as that user under the storage policies; an unbound key acts as service_role.
create table if not exists doska.s3_keys (
  access_key_id text primary key,
  secret_nonce bytea not null,
  secret_ciphertext bytea not null,
  user_id uuid,
  created_at timestamptz not null default now(),
  revoked_at timestamptz
);
revoke all on doska.s3_keys from public;
