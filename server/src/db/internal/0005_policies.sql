-- The ledger of what policy files made: doska drops or revokes only what is listed here, so roles,
-- grants and policies from migrations are never touched. Plus the history of applied policy sets.

create table doska.policy_objects (
  kind text not null check (kind in ('role', 'grant', 'policy')),
  schema_name text not null default '',
  table_name text not null default '',
  -- the role (kind 'role', 'grant') or the policy's name (kind 'policy')
  name text not null,
  privilege text not null default '',
  column_name text not null default '',
  -- a policy's definition: the same fingerprint means nothing to redo
  fingerprint text not null default '',
  source text not null default '',
  created_at timestamptz not null default now(),
  primary key (kind, schema_name, table_name, name, privilege, column_name)
);

create table doska.policy_sets (
  id bigserial primary key,
  hash text not null,
  files jsonb not null,
  statements integer not null,
  applied_at timestamptz not null default now()
);
