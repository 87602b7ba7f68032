//! The state every request handler shares: configuration, the two connection pools, the JWT verifier,
//! metrics and the shutdown signal — shared infrastructure only; each front door builds and keeps its
//! own state (see `startup::Doors`). Holds nothing that several doska processes would need to share:
//! all shared state lives in PostgreSQL or the file store.

use std::sync::Arc;

use tokio::sync::watch;

use crate::{config::Config, http::metrics::Metrics, jwt::Verifier};

pub struct AppState {
    pub config: Arc<Config>,
    /// Superuser/admin connections: migrations, policy changes, bookkeeping, auth's own tables.
    pub admin: deadpool_postgres::Pool,
    /// Connections logged in as `authenticator`, which can only SET ROLE to the API roles.
    pub pool: deadpool_postgres::Pool,
    /// Group commit of short writes on `pool` (storage's small uploads).
    pub commit_group: Arc<crate::db::group::Group>,
    pub verifier: Verifier,
    /// The HS256 secret, for front doors that sign tokens (auth, signed storage URLs).
    pub jwt_secret: Arc<[u8]>,
    pub metrics: Metrics,
    /// Turns true when doska starts shutting down; long-lived loops select on it.
    pub shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub type SharedState = Arc<AppState>;
