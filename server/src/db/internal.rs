//! doska's own schema, embedded in the binary and applied before the app's migrations: each file once,
//! in order, in its own transaction, ledgered in `doska.internal_migrations`. Several doska processes
//! starting against one database serialize on an advisory lock; a failing file changes nothing.

use tokio_postgres::Client;

/// (name, SQL) in the order they apply. Never edit an applied entry: add a new one.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_base", include_str!("internal/0001_base.sql")),
    ("0002_auth", include_str!("internal/0002_auth.sql")),
    ("0003_realtime", include_str!("internal/0003_realtime.sql")),
    ("0004_storage", include_str!("internal/0004_storage.sql")),
    ("0005_policies", include_str!("internal/0005_policies.sql")),
    (
        "0006_policy_sections",
        include_str!("internal/0006_policy_sections.sql"),
    ),
    (
        "0007_realtime_log",
        include_str!("internal/0007_realtime_log.sql"),
    ),
    (
        "0008_multipart_objects",
        include_str!("internal/0008_multipart_objects.sql"),
    ),
    (
        "0009_realtime_change_batches",
        include_str!("internal/0009_realtime_change_batches.sql"),
    ),
    (
        "0010_storage_cached_lookups",
        include_str!("internal/0010_storage_cached_lookups.sql"),
    ),
    (
        "0011_idempotency",
        include_str!("internal/0011_idempotency.sql"),
    ),
    (
        "0012_local_store",
        include_str!("internal/0012_local_store.sql"),
    ),
    (
        "0013_shared_secrets",
        include_str!("internal/0013_shared_secrets.sql"),
    ),
    (
        "0014_uuid_ossp",
        include_str!("internal/0014_uuid_ossp.sql"),
    ),
    ("0016_cluster", include_str!("internal/0016_cluster.sql")),
    (
        "0017_object_versions",
        include_str!("internal/0017_object_versions.sql"),
    ),
    (
        "0018_s3_bucket_settings",
        include_str!("internal/0018_s3_bucket_settings.sql"),
    ),
    (
        "0019_s3_bucket_tagging",
        include_str!("internal/0019_s3_bucket_tagging.sql"),
    ),
];

#[derive(Debug, thiserror::Error)]
#[error("internal migration {} failed: {}", .name, super::migrate::describe(.source))]
pub struct InternalMigrationError {
    pub name: &'static str,
    pub source: tokio_postgres::Error,
}

/// Applies the internal migrations not yet applied; returns their names.
pub async fn apply(client: &mut Client) -> Result<Vec<&'static str>, InternalMigrationError> {
    let setup = |source| InternalMigrationError {
        name: "setup",
        source,
    };
    client
        .batch_execute(
            "create schema if not exists doska;
             create table if not exists doska.internal_migrations (
               name text primary key, applied_at timestamptz not null default now());",
        )
        .await
        .or_else(|e| {
            // Two processes creating the ledger at once: the loser's error is harmless.
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(setup)?;
    let mut applied = Vec::new();
    for (name, sql) in MIGRATIONS {
        let err = |source| InternalMigrationError { name, source };
        let tx = client.transaction().await.map_err(err)?;
        tx.execute(
            "select pg_advisory_xact_lock($1)",
            &[&super::MIGRATION_LOCK],
        )
        .await
        .map_err(err)?;
        let done = tx
            .query_opt(
                "select 1 from doska.internal_migrations where name = $1",
                &[name],
            )
            .await
            .map_err(err)?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(sql).await.map_err(err)?;
        tx.execute(
            "insert into doska.internal_migrations (name) values ($1)",
            &[name],
        )
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        applied.push(*name);
    }
    Ok(applied)
}
