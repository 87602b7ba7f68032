//! The one error type of the embedded PostgreSQL stage. Every variant renders as one line that says
//! what is wrong and what the operator can do about it; nothing here is shown to API clients.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why the embedded PostgreSQL could not be started, attached to or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// Neither PATH nor the usual install locations hold `postgres` and `initdb`.
    #[error(
        "no PostgreSQL binaries (postgres, initdb) found in {searched}: install the postgresql package (apt-get install postgresql) or put its bin directory on PATH"
    )]
    BinariesNotFound { searched: String },
    /// A found binary does not run or does not say which version it is.
    #[error("the PostgreSQL binary {} is unusable ({reason}): reinstall the postgresql package", .path.display())]
    BinaryUnusable { path: PathBuf, reason: String },
    /// The binaries are older than the oldest release doska supports.
    #[error("{} is PostgreSQL {major}, doska needs 13 or newer: install a newer postgresql package", .path.display())]
    UnsupportedVersion { path: PathBuf, major: u32 },
    /// The cluster on disk was made by another major release than any binaries found.
    #[error("the database cluster {} was made by PostgreSQL {cluster_major} but only PostgreSQL {found_major} is installed: install postgresql-{cluster_major} (or upgrade the cluster with pg_upgrade)", .cluster.display())]
    VersionMismatch {
        cluster: PathBuf,
        cluster_major: u32,
        found_major: u32,
    },
    /// doska runs as root, PostgreSQL refuses to, and there is no `postgres` account to run it as.
    #[error(
        "doska runs as root and PostgreSQL refuses to, but there is no `postgres` user to run it as: install the postgresql package (it creates the user) or run doska as an ordinary user"
    )]
    NoPostgresUser,
    /// The data dir cannot be created, is not a directory, or cannot be written.
    #[error("data dir {}: {reason}", .path.display())]
    DataDir { path: PathBuf, reason: String },
    /// The PostgreSQL cluster directory (or the record of where it lives) is unusable.
    #[error("PostgreSQL cluster {}: {reason}", .path.display())]
    ClusterDir { path: PathBuf, reason: String },
    /// The short directory for the unix socket is unusable.
    #[error("PostgreSQL socket directory {}: {reason}", .path.display())]
    SocketDir { path: PathBuf, reason: String },
    /// Another `doska serve` holds the data dir.
    #[error("another doska serve ({}) is already running on data dir {}: stop it first or use a different --data-dir", pid_text(*.pid), .data_dir.display())]
    Locked { data_dir: PathBuf, pid: Option<u32> },
    /// Another doska command holds the data dir and did not let go in time.
    #[error("another doska command ({}) has been using data dir {} for over {}s: wait for it to finish and try again", pid_text(*.pid), .data_dir.display(), .waited.as_secs())]
    Busy {
        data_dir: PathBuf,
        pid: Option<u32>,
        waited: Duration,
    },
    /// PostgreSQL processes not started by a live doska keep running on the cluster.
    #[error("PostgreSQL processes not run by any doska still use the cluster {} (pids {}): stop them (kill -INT {}) and try again", .cluster.display(), .pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "), .pids.first().copied().unwrap_or_default())]
    ForeignPostmaster { cluster: PathBuf, pids: Vec<i32> },
    /// `initdb` failed; `detail` is the most telling line of its output.
    #[error("initdb failed for {}: {detail}", .cluster.display())]
    Initdb { cluster: PathBuf, detail: String },
    /// A program could not be started at all.
    #[error("could not run {}: {source}", .program.display())]
    Spawn { program: PathBuf, source: io::Error },
    /// `postgres` exited before it accepted connections; `detail` is the most telling log line.
    #[error("PostgreSQL stopped while starting: {detail} (full log: {})", .log.display())]
    StartFailed { log: PathBuf, detail: String },
    /// `postgres` kept running but did not accept connections in time.
    #[error("PostgreSQL did not accept connections within {}s: see {}", .waited.as_secs(), .log.display())]
    NotReady { log: PathBuf, waited: Duration },
    /// Some other file system or process operation failed.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

impl PgError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> PgError {
        PgError::Io {
            context: context.into(),
            source,
        }
    }
}

fn pid_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_string(),
    }
}
