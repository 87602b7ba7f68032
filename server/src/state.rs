//! The state every request handler shares: configuration, the two connection pools, the JWT verifier,
//! metrics and the shutdown signal. Holds nothing that several doska processes would need to share:
//! all shared state lives in PostgreSQL or the file store.

use std::sync::{Arc, OnceLock, RwLock};

use tokio::sync::watch;

use crate::{config::Config, http::metrics::Metrics, jwt::Verifier};

pub struct AppState {
    pub config: Arc<Config>,
    /// Superuser/admin connections: migrations, policy changes, bookkeeping, auth's own tables.
    pub admin: deadpool_postgres::Pool,
    /// Connections logged in as `authenticator`, which can only SET ROLE to the API roles.
    pub pool: deadpool_postgres::Pool,
    pub verifier: Verifier,
    /// The HS256 secret, for front doors that sign tokens (auth, signed storage URLs).
    pub jwt_secret: Arc<[u8]>,
    pub metrics: Metrics,
    /// Turns true when doska starts shutting down; long-lived loops select on it.
    pub shutdown: watch::Receiver<bool>,
    /// Each front door's own machinery, made at start-up or on first use.
    pub doors: Doors,
}

/// What the front doors keep per running doska (start empty: `Doors::default()`).
#[derive(Default)]
pub struct Doors {
    /// REST's schema cache and settings (`rest::start`).
    pub(crate) rest: OnceLock<crate::rest::RestState>,
    /// Auth's key, hasher, limiter and mailer (`auth::install`; replaceable, tests set their own
    /// rate limits).
    pub(crate) auth: RwLock<Option<Arc<crate::auth::Auth>>>,
    /// Realtime's channels and presence (`realtime::hub`).
    pub(crate) hub: OnceLock<Arc<crate::realtime::hub::Hub>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub type SharedState = Arc<AppState>;
