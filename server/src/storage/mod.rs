//! Storage: one core (metadata rows in `storage.*` under row-level security, bytes in a backend —
//! the local disk today) behind two front doors, the S3 protocol on its own listener and the Supabase
//! storage API at `/storage/v1`. This module builds the core from the shared state and runs the
//! orphan cleanup; it rejects nothing itself.

pub mod api;
pub mod backend;
pub mod core;
pub mod dir_sync;
pub mod disk;
pub mod form;
pub mod http;
mod route;
pub mod s3;
pub mod s3_keys;
pub mod tus;

#[cfg(test)]
mod props;

use std::{sync::Arc, time::Duration};

use crate::state::AppState;

/// The core for this process's configuration. Cheap: pool handles and the disk's path.
pub fn core_of(state: &AppState) -> core::Storage {
    core::Storage::new(
        Arc::new(disk::Disk::new(&state.config.storage_dir)),
        state.pool.clone(),
        state.config.db_statement_timeout_ms,
    )
}

/// Removes orphan blobs (no row refers to them, older than `--storage-orphan-age`) now and then, until
/// shutdown. Runs at start and then every age/4 (between 10 s and 15 min).
pub async fn orphan_cleanup(state: Arc<AppState>) {
    let age = Duration::from_secs(state.config.storage_orphan_age_secs);
    let every = (age / 4).clamp(Duration::from_secs(10), Duration::from_secs(900));
    let disk = disk::Disk::new(&state.config.storage_dir);
    let mut shutdown = state.shutdown.clone();
    loop {
        match core::cleanup_orphans(&disk, &state.admin, age).await {
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
