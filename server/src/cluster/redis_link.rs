//! The link to Redis (`--redis-url`): one multiplexed connection shared by every caller, made on
//! first use and again after it breaks. While Redis cannot be reached the link says so at once
//! (no caller waits on a dead server) and tries again at most once a second, so doska picks Redis
//! up again by itself when it returns. Commands time out after a second.
//!
//! Rejects a URL that is not `redis://` (or `redis+unix://`/`unix://`) when doska starts.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

/// How long a connection attempt may take before Redis counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a down Redis is left alone before the next attempt.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("--redis-url {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("redis is unreachable: {0}")]
    Down(String),
    #[error("redis: {0}")]
    Command(String),
}

pub struct RedisLink {
    client: redis::Client,
    /// The URL with its password masked, for log lines.
    shown: String,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// Set while Redis is down: no attempt before this instant.
    retry_at: Mutex<Option<Instant>>,
    /// Whether the last attempt reached Redis (for /metrics and the log line on each change).
    up: AtomicBool,
}

impl RedisLink {
    pub fn open(url: &str) -> Result<RedisLink, RedisError> {
        let shown = crate::config::mask_url(url);
        let bad = |reason: String| RedisError::Url {
            url: shown.clone(),
            reason,
        };
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        if !matches!(scheme, "redis" | "redis+unix" | "unix") {
            return Err(bad(
                "use redis://[:password@]host[:port][/db] (TLS to Redis, rediss://, is not supported)"
                    .into(),
            ));
        }
        let client = redis::Client::open(url).map_err(|e| bad(e.to_string()))?;
        Ok(RedisLink {
            client,
            shown,
            conn: tokio::sync::Mutex::new(None),
            retry_at: Mutex::new(None),
            // Not known to be down: the first failure is reported.
            up: AtomicBool::new(true),
        })
    }

    /// False while Redis is known to be down (until the next retry is due).
    pub fn usable(&self) -> bool {
        let retry_at = self.retry_at.lock().unwrap_or_else(|p| p.into_inner());
        retry_at.is_none_or(|at| Instant::now() >= at)
    }

    /// Whether the last attempt reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The client, for connections of their own (a pub/sub subscriber).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The URL as logs show it.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The shared connection, made now if there is none; `None` while Redis is down.
    async fn connection(&self) -> Option<MultiplexedConnection> {
        if !self.usable() {
            return None;
        }
        let mut conn = self.conn.lock().await;
        if let Some(c) = &*conn {
            return Some(c.clone());
        }
        if !self.usable() {
            return None;
        }
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.client.get_multiplexed_async_connection(),
        )
        .await
        {
            Ok(Ok(c)) => {
                *conn = Some(c.clone());
                self.mark_up();
                Some(c)
            }
            Ok(Err(e)) => {
                self.mark_down(&e.to_string());
                None
            }
            Err(_) => {
                self.mark_down("connecting timed out");
                None
            }
        }
    }

    /// Runs `f` on the shared connection within the command timeout. A broken connection, a
    /// refused one or a timeout marks Redis down (the caller falls back); an error Redis itself
    /// answered (a script's) does not.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, RedisError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let Some(conn) = self.connection().await else {
            return Err(RedisError::Down(format!("{} is not answering", self.shown)));
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                self.forget().await;
                self.mark_down(&e.to_string());
                Err(RedisError::Down(e.to_string()))
            }
            Ok(Err(e)) => Err(RedisError::Command(e.to_string())),
            Err(_) => {
                self.forget().await;
                self.mark_down("a command timed out");
                Err(RedisError::Down("a command timed out".into()))
            }
        }
    }

    async fn forget(&self) {
        *self.conn.lock().await = None;
    }

    /// Records that Redis answered (a connection was made, or a subscriber subscribed).
    pub fn mark_up(&self) {
        *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(redis = %self.shown, "redis: connected");
        }
    }

    /// Records that Redis could not be reached: callers fall back until the next retry.
    pub fn mark_down(&self, reason: &str) {
        *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + RETRY_AFTER);
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                redis = %self.shown,
                %reason,
                "redis: unreachable; rate limits and realtime's messages between instances go through PostgreSQL until it is back"
            );
        }
    }
}
