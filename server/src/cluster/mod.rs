//! What several doska instances on one database share beyond PostgreSQL's tables: this instance's
//! id (so an instance knows its own messages on the bus), the namespace that keeps one
//! deployment's Redis keys and channels apart from another's on the same Redis, and the link to
//! Redis when `--redis-url` is set. See docs/operations.md, "Scaling out".
//!
//! Rejects nothing: a Redis that cannot be reached is reported as down ([`RedisLink::connection`]
//! answers `None`) and whoever needs it falls back to PostgreSQL.

mod redis_link;

use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use redis_link::{RedisError, RedisLink};

#[derive(Clone)]
pub struct Cluster {
    /// A fresh id per process start: a restarted instance is a new member.
    pub instance: Arc<str>,
    /// `doska:<16 hex digits>`: derived from the shared JWT secret, so every instance of one
    /// deployment (they share the secret) lands on the same keys and no other deployment does.
    pub namespace: Arc<str>,
    /// Set when `--redis-url` is.
    pub redis: Option<Arc<RedisLink>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("instance", &self.instance)
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// This instance's membership: a new id, the namespace of `jwt_secret`, and `redis` (from
    /// [`RedisLink::open`], which checks `--redis-url` before anything starts).
    pub fn new(jwt_secret: &[u8], redis: Option<Arc<RedisLink>>) -> Cluster {
        let digest = Sha256::digest([b"doska-cluster:".as_slice(), jwt_secret].concat());
        Cluster {
            instance: Arc::from(uuid::Uuid::new_v4().simple().to_string()),
            namespace: Arc::from(format!("doska:{}", hex::encode(&digest[..8]))),
            redis,
        }
    }

    /// The Redis link when it is configured and not known to be down right now.
    pub fn redis_up(&self) -> Option<&Arc<RedisLink>> {
        self.redis.as_ref().filter(|r| r.usable())
    }
}
