-- doska: a completed multipart upload (S3 or TUS) stays as its part files; this table lists, for each
-- object version made that way, its parts in order with their sizes. Rows are written only by
-- `storage.doska_adopt_upload`, in the transaction that commits the object's row, which also forgets
-- the upload: an abort can never remove parts an object uses. A row whose object version is gone
-- (deleted, overwritten) refers to nothing: readers and the orphan cleanup join on storage.objects.
create table if not exists storage.doska_object_parts (
  object_id uuid not null,
  object_version text not null,
  part_number integer not null,
  part_id uuid not null unique,
  part_size bigint not null,
  primary key (object_id, object_version, part_number)
);
alter table storage.doska_object_parts enable row level security;
revoke all on storage.doska_object_parts from public;

-- An object version's layout, `[[part id, size], …]` in order, or null for a version stored as one
-- blob. The front doors call it on a row the caller can already see, in the same statement that
-- reads the row; asking needs the version's id and version UUIDs, which only a caller who sees the
-- row has. (A function rather than a policy on the table: the API roles get no access to it.)
create or replace function storage.doska_layout(p_object uuid, p_version text) returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_agg(jsonb_build_array(p.part_id, p.part_size) order by p.part_number)
  from storage.doska_object_parts p where p.object_id = p_object and p.object_version = p_version
$$;
revoke all on function storage.doska_layout(uuid, text) from public;
grant execute on function storage.doska_layout(uuid, text) to anon, authenticated, service_role;

-- Moves the listed parts of an upload into an object version's layout and forgets the upload (its other
-- parts' rows go with it); returns the ids of the parts not listed, whose files the caller removes.
-- Runs inside the caller's commit transaction, after the object's row statement: if the upload is gone
-- (aborted meanwhile) or is not the caller's, or the row was not written, it raises and nothing of the
-- transaction commits.
create or replace function storage.doska_adopt_upload(
  p_upload text, p_object uuid, p_version text, p_parts uuid[])
returns uuid[] language plpgsql security definer set search_path = '' as $$
declare
  v_owner text;
  v_found int;
  v_rest uuid[];
begin
  select owner_id into v_owner from storage.s3_multipart_uploads where id = p_upload for update;
  if not found or (current_setting('role', true) is distinct from 'service_role'
                   and v_owner is distinct from
                     nullif(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub', ''))
  then
    raise exception 'no such upload' using errcode = 'P0002';
  end if;
  -- The object's row comes first in the same transaction; if the guarded row statement wrote
  -- nothing (the key changed hands), the upload stays as it was.
  if not exists (select 1 from storage.objects where id = p_object and version = p_version) then
    raise exception 'no such object version' using errcode = 'P0002';
  end if;
  insert into storage.doska_object_parts (object_id, object_version, part_number, part_id, part_size)
  select p_object, p_version, l.n, p.id, p.size
  from unnest(p_parts) with ordinality as l(id, n)
  join storage.s3_multipart_uploads_parts p on p.id = l.id and p.upload_id = p_upload;
  get diagnostics v_found = row_count;
  if v_found <> coalesce(array_length(p_parts, 1), 0) then
    raise exception 'a listed part is not part of the upload' using errcode = 'P0002';
  end if;
  select coalesce(array_agg(p.id), '{}') into v_rest from storage.s3_multipart_uploads_parts p
  where p.upload_id = p_upload and p.id <> all (p_parts);
  delete from storage.s3_multipart_uploads where id = p_upload;
  return v_rest;
end
$$;
revoke all on function storage.doska_adopt_upload(text, uuid, text, uuid[]) from public;
grant execute on function storage.doska_adopt_upload(text, uuid, text, uuid[])
  to anon, authenticated, service_role;
