-- The durable, bounded log of recent realtime events, outside the publication (it must never feed
-- itself): every database change doska decoded, at its position (commit LSN, index within the
-- transaction), and every broadcast on a private channel. A client that reconnects within the
-- window asks for what it missed (`since`); doska trims by age and by row count. Only doska's admin
-- connection touches it: no grants to the API roles.
create table if not exists doska.realtime_log (
  seq bigserial primary key,
  -- A database change's position; null for broadcasts sent over a socket or the REST API.
  commit_lsn pg_lsn,
  idx bigint,
  logged_at timestamptz not null default clock_timestamp(),
  schema_name text,
  table_name text,
  -- Set for private broadcasts (the channel name, without `realtime:`); null for changes.
  topic text,
  entry jsonb not null,
  unique (commit_lsn, idx)
);
create index if not exists realtime_log_logged_at_idx on doska.realtime_log (logged_at);
create index if not exists realtime_log_topic_idx on doska.realtime_log (topic, logged_at) where topic is not null;

-- Everything at or before this position may have been trimmed (or never captured): a client
-- asking for changes after an older position must refetch. It starts at the WAL position of this
-- migration, so positions from before the log existed count as too old.
create table if not exists doska.realtime_log_floor (
  one boolean primary key default true check (one),
  commit_lsn pg_lsn not null,
  idx bigint not null
);
insert into doska.realtime_log_floor (commit_lsn, idx)
values (pg_current_wal_lsn(), 4294967295)
on conflict do nothing;
