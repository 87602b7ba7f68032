//! Realtime: database changes to subscribers. Pipeline stages, one module each:
//! `replication` (the WAL stream from PostgreSQL) → `decode` (pgoutput bytes → typed changes),
//! run together and kept alive by `source`; then `subscriptions` (which subscriber wants which
//! change). The Phoenix socket layer sits on top. See docs/realtime.md.

pub mod decode;
pub mod lsn;
pub mod replication;
pub mod source;
pub mod subscriptions;
pub mod wire;
