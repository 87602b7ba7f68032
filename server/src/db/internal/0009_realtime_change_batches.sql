-- The durable change log, one row per delivered batch instead of one per change: a batch of up to
-- 1,000 changes costs PostgreSQL one heap row (its entries stored out of line, uncompressed), four
-- index entries and no JSON parsing, where a row per change cost a parsed jsonb value and three
-- index entries each. Private broadcasts stay in doska.realtime_log, one row each.
create table if not exists doska.realtime_changes (
  seq bigserial primary key,
  logged_at timestamptz not null default clock_timestamp(),
  -- Positions of the batch's first and last change (commit LSN, index within the transaction).
  first_lsn pg_lsn not null,
  first_idx bigint not null,
  last_lsn pg_lsn not null,
  last_idx bigint not null,
  -- Changes in this batch, and in every batch up to and including it (trimming by count).
  n integer not null,
  upto bigint not null,
  -- A JSON array of the changes (position, transaction, table and the change itself) as UTF-8;
  -- doska writes and reads it, PostgreSQL only stores it.
  entries bytea not null
);
alter table doska.realtime_changes alter column entries set storage external;
create index if not exists realtime_changes_logged_at_idx on doska.realtime_changes (logged_at);
create index if not exists realtime_changes_upto_idx on doska.realtime_changes (upto);
create index if not exists realtime_changes_last_idx on doska.realtime_changes (last_lsn, last_idx);

-- Changes logged by the previous layout are dropped; the floor rises past them, so a client that
-- resumes from one of them is told to refetch instead of silently missing it.
update doska.realtime_log_floor f set commit_lsn = top.commit_lsn, idx = top.idx
from (select commit_lsn, idx from doska.realtime_log where commit_lsn is not null
      order by commit_lsn desc, idx desc limit 1) top
where (top.commit_lsn, top.idx) > (f.commit_lsn, f.idx);
delete from doska.realtime_log where commit_lsn is not null;
