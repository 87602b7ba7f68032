-- doska: secrets every doska on one database must share — the JWT secret when none is configured
-- (then instances started with only `--database-url` accept each other's tokens, and agree on the
-- authenticator's password derived from it). Only doska's admin connection reads them: no API role
-- has any privilege here, whatever default privileges say.
create table if not exists doska.shared_secrets (
  name text primary key,
  value text not null,
  created_at timestamptz not null default now()
);
revoke all on doska.shared_secrets from public, anon, authenticated, service_role, authenticator;
