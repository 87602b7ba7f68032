-- doska: what several doska instances on one database share beyond the app's data (several
-- `doska serve --database-url …` behind a load balancer; docs/operations.md, "Scaling out").
--
-- Broadcast and presence messages between instances travel by `NOTIFY doska_bus` (unless Redis
-- carries them); one over NOTIFY's 8,000-byte payload limit is kept here and the notification
-- names its id. A row is needed only until every instance has read it (milliseconds); instances
-- delete rows older than two minutes.
create table if not exists doska.bus_messages (
  id bigserial primary key,
  body text not null,
  created_at timestamptz not null default now()
);
create index if not exists bus_messages_created_at_idx on doska.bus_messages (created_at);
revoke all on doska.bus_messages from public, anon, authenticated, service_role, authenticator;

-- Rate limits every instance shares when no Redis is configured: one token bucket per row
-- (`class:key`), refilled continuously; `full_at` is when it is full again, after which the row
-- carries nothing and may be deleted.
create table if not exists doska.rate_buckets (
  bucket text primary key,
  tokens double precision not null,
  at timestamptz not null,
  full_at timestamptz not null
);
create index if not exists rate_buckets_full_at_idx on doska.rate_buckets (full_at);
revoke all on doska.rate_buckets from public, anon, authenticated, service_role, authenticator;

-- Looks at (p_take false) or takes one token from (p_take true) a bucket of p_burst tokens refilled
-- at p_per_sec per second, atomically (the row is locked); returns the tokens there were before
-- taking, refilled to now: under 1 means the bucket was empty and nothing was taken.
create or replace function doska.rate_take(
  p_bucket text, p_burst double precision, p_per_sec double precision, p_take boolean
) returns double precision language plpgsql as $$
declare
  b doska.rate_buckets%rowtype;
  now_ timestamptz := clock_timestamp();
  t double precision;
begin
  select * into b from doska.rate_buckets where bucket = p_bucket for update;
  if not found then
    if p_take then
      insert into doska.rate_buckets (bucket, tokens, at, full_at)
      values (p_bucket, p_burst - 1, now_, now_ + make_interval(secs => 1 / p_per_sec))
      on conflict (bucket) do nothing;
      if not found then
        -- Another instance made the row first: take from it.
        return doska.rate_take(p_bucket, p_burst, p_per_sec, p_take);
      end if;
    end if;
    return p_burst;
  end if;
  t := least(p_burst, b.tokens + extract(epoch from now_ - b.at) * p_per_sec);
  if p_take and t >= 1 then
    update doska.rate_buckets
       set tokens = t - 1, at = now_,
           full_at = now_ + make_interval(secs => (p_burst - t + 1) / p_per_sec)
     where bucket = p_bucket;
  end if;
  return t;
end $$;
revoke all on function doska.rate_take(text, double precision, double precision, boolean)
  from public, anon, authenticated, service_role, authenticator;
