-- doska: Idempotency-Key for REST writes. A write carrying the header writes its key's row first, in
-- its own transaction (so a concurrent duplicate waits on the row's lock), and the answer beside it
-- before committing; a repeat of the same request returns that answer instead of running again. Rows
-- live 24 hours (expired rows are ignored and swept). The API roles get no access to the table: the
-- REST door, running as the caller, goes through the two SECURITY DEFINER functions below, which take
-- the scope — role, the claims' `sub`, method and path — from the request transaction's settings.
create table if not exists doska.idempotency_keys (
  role text not null,
  user_id text not null,
  method text not null,
  path text not null,
  key text not null check (length(key) between 1 and 255),
  request_hash text not null,
  status smallint,
  headers jsonb,
  body bytea,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null default now() + interval '24 hours',
  primary key (role, user_id, method, path, key)
);
create index if not exists idempotency_keys_expires_at on doska.idempotency_keys (expires_at);
revoke all on doska.idempotency_keys from public;

-- Functions made in doska are not callable by everyone unless granted.
alter default privileges in schema doska revoke execute on functions from public;
grant usage on schema doska to anon, authenticated, service_role;

-- The request's scope, from the request transaction's settings: role, the claims' `sub`, method, path.
create or replace function doska.idempotency_scope(
  out role text, out user_id text, out method text, out path text)
language sql stable set search_path = '' as $$
  select coalesce(current_setting('role', true), ''),
         coalesce(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub', ''),
         coalesce(current_setting('request.method', true), ''),
         coalesce(current_setting('request.path', true), '')
$$;
revoke all on function doska.idempotency_scope() from public;

-- Claims the key for this request's scope. No row: the key is new (its row now exists, uncommitted,
-- and the write goes on). One row: the key was used before — `same_request` says whether by this very
-- request, and the stored answer comes with it.
create or replace function doska.idempotency_begin(p_key text, p_request_hash text)
returns table (same_request boolean, status smallint, headers jsonb, body bytea)
language plpgsql security definer set search_path = '' as $$
begin
  delete from doska.idempotency_keys k
  where (k.role, k.user_id, k.method, k.path) = (select * from doska.idempotency_scope())
    and k.key = p_key and k.expires_at <= now();
  -- Waits while a concurrent transaction holds the same key uncommitted.
  insert into doska.idempotency_keys as k (role, user_id, method, path, key, request_hash)
  select s.role, s.user_id, s.method, s.path, p_key, p_request_hash from doska.idempotency_scope() s
  on conflict do nothing;
  if found then
    return;
  end if;
  return query
    select k.request_hash = p_request_hash, k.status, k.headers, k.body
    from doska.idempotency_keys k
    where (k.role, k.user_id, k.method, k.path) = (select * from doska.idempotency_scope())
      and k.key = p_key;
end
$$;
revoke all on function doska.idempotency_begin(text, text) from public;
grant execute on function doska.idempotency_begin(text, text) to anon, authenticated, service_role;

-- Stores the answer beside the key claimed by `idempotency_begin` in this transaction. A 5xx answer
-- is not kept: the key is released, so a retry runs again.
create or replace function doska.idempotency_finish(
  p_key text, p_status smallint, p_headers jsonb, p_body bytea)
returns void
language plpgsql security definer set search_path = '' as $$
begin
  if p_status >= 500 then
    delete from doska.idempotency_keys k
    where (k.role, k.user_id, k.method, k.path) = (select * from doska.idempotency_scope())
      and k.key = p_key;
  else
    update doska.idempotency_keys k set status = p_status, headers = p_headers, body = p_body
    where (k.role, k.user_id, k.method, k.path) = (select * from doska.idempotency_scope())
      and k.key = p_key;
  end if;
end
$$;
revoke all on function doska.idempotency_finish(text, smallint, jsonb, bytea) from public;
grant execute on function doska.idempotency_finish(text, smallint, jsonb, bytea)
  to anon, authenticated, service_role;
