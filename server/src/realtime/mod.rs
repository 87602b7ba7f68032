//! Realtime: database changes to subscribers. Pipeline stages, one module each:
//! `replication` (the WAL stream from PostgreSQL) → `decode` (pgoutput bytes → typed changes)
//! → `subscriptions` (which subscriber wants which change). The Phoenix socket layer sits on top.

pub mod decode;
pub mod lsn;
pub mod phoenix;
pub mod replication;
pub mod subscriptions;
pub mod wire;
