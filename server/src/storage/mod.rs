//! Storage: one core (metadata rows in `storage.*` under row-level security, bytes in a backend —
//! the local disk, or an S3 service) behind two front doors, the S3 protocol on its own listener and the Supabase
//! storage API at `/storage/v1`. This module builds the core from the shared state and runs the
//! orphan cleanup; it rejects nothing itself.

pub mod api;
pub mod backend;
pub mod core;
pub mod dir_sync;
pub mod disk;
pub mod form;
pub mod http;
pub mod migrate;
pub mod render;
mod route;
pub mod s3;
pub mod s3_keys;
pub mod tus;
pub mod upstream;
mod versions_api;

#[cfg(test)]
mod props;

use std::{sync::Arc, time::Duration};

use crate::{
    config::{Config, StorageBackend},
    state::AppState,
};

/// The backend `--storage-backend` names: the storage dir, or an S3 service's bucket. Cheap: a path,
/// or settings over the process's one connection pool.
pub fn backend_of(config: &Config) -> Arc<dyn backend::Backend> {
    match &config.storage_backend {
        StorageBackend::Disk => Arc::new(disk::Disk::new(&config.storage_dir)),
        StorageBackend::S3(s3) => Arc::new(upstream::Upstream::new(s3)),
    }
}

/// The core for this process's configuration. Cheap: pool handles and the backend.
pub fn core_of(state: &AppState) -> core::Storage {
    core::Storage::new(
        backend_of(&state.config),
        state.pool.clone(),
        state.config.db_statement_timeout_ms,
    )
    .with_group(state.commit_group.clone())
}

/// Removes orphan blobs (no row refers to them, older than `--storage-orphan-age`) now and then, until
/// shutdown. Runs at start and then every age/4 (between 10 s and 15 min).
pub async fn orphan_cleanup(state: Arc<AppState>) {
    let age = Duration::from_secs(state.config.storage_orphan_age_secs);
    let every = (age / 4).clamp(Duration::from_secs(10), Duration::from_secs(900));
    let backend = backend_of(&state.config);
    let mut shutdown = state.shutdown.clone();
    loop {
        match core::cleanup_orphans(backend.as_ref(), &state.admin, age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed orphan storage files"),
            Err(e) => tracing::warn!(error = %e, "orphan storage cleanup failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Applies the buckets' lifecycle rules now and then, until shutdown: every fifth of a lifecycle
/// day (`--storage-lifecycle-day`), between 1 s and 1 h.
pub async fn lifecycle(state: Arc<AppState>) {
    let day = Duration::from_secs(state.config.storage_lifecycle_day_secs);
    let every = (day / 5).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let core = core_of(&state);
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        // Stopped mid-pass, a pass loses nothing: each removal is its own transaction.
        let pass = tokio::select! {
            r = core.apply_lifecycle(day) => r,
            _ = shutdown.changed() => return,
        };
        match pass {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "applied storage lifecycle rules"),
            Err(e) => tracing::warn!(error = %e, "applying storage lifecycle rules failed"),
        }
    }
}
