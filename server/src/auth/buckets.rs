//! Rate-limit buckets every doska on the database shares, so two instances behind a balancer
//! enforce the configured limit in total: in Redis when `--redis-url` is set and Redis answers
//! (one Lua script per check: atomic, one round trip), else in PostgreSQL (`doska.rate_take`: one
//! locked row per bucket, one round trip). When neither answers, this process's own buckets
//! count, so an outage never turns into refusing every sign-in; each store's clock is its server's
//! (Redis `TIME`, PostgreSQL `clock_timestamp()`), so the instances' clocks do not matter.
//!
//! Rejects nothing itself; the shared [`fill_of`] rule says when a bucket is empty.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::ratelimit::{Class, Fill, Limiter, RateLimits, RateStore, fill_of};
use crate::cluster::{Cluster, RedisLink};

/// Takes (ARGV[3] = 1) or looks at a bucket: refills it to now at ARGV[2] tokens per second up
/// to ARGV[1], takes one when there is one; returns the tokens before taking (as text: Lua's
/// numbers would come back as integers). The key expires once the bucket would be full again.
const SCRIPT: &str = r"
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = burst
if b[1] then
  tokens = math.min(burst, tonumber(b[1]) + (now - tonumber(b[2])) * rate)
end
if ARGV[3] == '1' and tokens >= 1 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens + 1) / rate * 1000) + 1000)
end
return tostring(tokens)
";

/// Every this many takes, buckets that are full again are deleted from PostgreSQL.
const PRUNE_EVERY: u64 = 1_000;

pub struct SharedBuckets {
    limits: RateLimits,
    admin: deadpool_postgres::Pool,
    redis: Option<Arc<RedisLink>>,
    /// Redis keys are `<namespace>:rl:<class>:<key>`.
    namespace: Arc<str>,
    script: redis::Script,
    /// When neither Redis nor PostgreSQL answers.
    local: Limiter,
    takes: AtomicU64,
}

impl SharedBuckets {
    pub fn new(
        limits: RateLimits,
        admin: deadpool_postgres::Pool,
        cluster: &Cluster,
    ) -> SharedBuckets {
        SharedBuckets {
            local: Limiter::new(limits.clone()),
            limits,
            admin,
            redis: cluster.redis.clone(),
            namespace: cluster.namespace.clone(),
            script: redis::Script::new(SCRIPT),
            takes: AtomicU64::new(0),
        }
    }

    async fn at(&self, class: Class, key: &str, take: bool) -> Result<Fill, u64> {
        let rate = self.limits.rate(class);
        if !self.limits.enabled || rate.burst == 0 {
            return Ok(Fill::Untouched);
        }
        let bucket = format!("{class:?}:{key}");
        let burst = f64::from(rate.burst);
        let per_sec = burst / f64::from(rate.per_secs.max(1));
        if let Some(redis) = self.redis.as_ref().filter(|r| r.usable()) {
            let invocation = {
                let mut inv = self.script.key(format!("{}:rl:{bucket}", self.namespace));
                inv.arg(burst).arg(per_sec).arg(u8::from(take));
                inv
            };
            let answer = redis
                .call(|mut c| async move { invocation.invoke_async::<String>(&mut c).await })
                .await;
            match answer.map(|t| t.parse::<f64>()) {
                Ok(Ok(tokens)) => return fill_of(rate, tokens),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "auth: Redis's rate-limit answer is not a number")
                }
                Err(e) => {
                    tracing::debug!(error = %e, "auth: rate limit through PostgreSQL (Redis did not answer)")
                }
            }
        }
        match self.in_postgres(&bucket, burst, per_sec, take).await {
            Ok(tokens) => fill_of(rate, tokens),
            Err(e) => {
                tracing::warn!(error = %e, "auth: shared rate limits unavailable; this instance counts alone");
                if take {
                    self.local.record_now(class, key).map(|()| Fill::Used)
                } else {
                    self.local.check_now(class, key)
                }
            }
        }
    }

    async fn in_postgres(
        &self,
        bucket: &str,
        burst: f64,
        per_sec: f64,
        take: bool,
    ) -> Result<f64, String> {
        let client = self.admin.get().await.map_err(|e| e.to_string())?;
        if take && self.takes.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            let admin = self.admin.clone();
            tokio::spawn(async move {
                if let Ok(c) = admin.get().await {
                    let _ = c
                        .execute(
                            "delete from doska.rate_buckets where full_at < clock_timestamp()",
                            &[],
                        )
                        .await;
                }
            });
        }
        let stmt = client
            .prepare_cached("select doska.rate_take($1, $2, $3, $4)")
            .await
            .map_err(|e| e.to_string())?;
        let row = client
            .query_one(&stmt, &[&bucket, &burst, &per_sec, &take])
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.get(0))
    }
}

#[async_trait::async_trait]
impl RateStore for SharedBuckets {
    async fn check(&self, class: Class, key: &str) -> Result<Fill, u64> {
        self.at(class, key, false).await
    }

    async fn record(&self, class: Class, key: &str) -> Result<(), u64> {
        self.at(class, key, true).await.map(drop)
    }
}
