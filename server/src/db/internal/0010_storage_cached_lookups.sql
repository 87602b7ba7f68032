-- doska: the two lookups storage requests make on every call — a bucket's limits on each write
-- (storage.doska_bucket) and an object version's layout on each read (storage.doska_layout) — as
-- PL/pgSQL instead of SQL functions. A SECURITY DEFINER SQL function is never inlined, and PostgreSQL
-- parses, analyses and plans its body again on every call: a third of the database CPU of a GET.
-- PL/pgSQL keeps its query's plan for the session. Same signatures, same results, same owners and
-- grants (create or replace keeps them).
create or replace function storage.doska_bucket(p_id text)
returns table (id text, public boolean, file_size_limit bigint, allowed_mime_types text[])
language plpgsql stable security definer set search_path = '' as $$
begin
  return query
    select b.id, b.public, b.file_size_limit, b.allowed_mime_types
    from storage.buckets b where b.id = p_id;
end
$$;

create or replace function storage.doska_layout(p_object uuid, p_version text) returns jsonb
language plpgsql stable security definer set search_path = '' as $$
begin
  return (
    select jsonb_agg(jsonb_build_array(p.part_id, p.part_size) order by p.part_number)
    from storage.doska_object_parts p where p.object_id = p_object and p.object_version = p_version);
end
$$;
