//! The one error type of the embedded PostgreSQL stage. Every variant renders as one line that says
//! what is wrong and what the operator can do about it; nothing here is shown to API clients.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why the embedded PostgreSQL could not be started, attached to or stopped.
#[derive(Debug)]
pub enum PgError {
    /// Neither PATH nor the usual install locations hold `postgres` and `initdb`.
    BinariesNotFound { searched: String },
    /// A found binary does not run or does not say which version it is.
    BinaryUnusable { path: PathBuf, reason: String },
    /// The binaries are older than the oldest release doska supports.
    UnsupportedVersion { path: PathBuf, major: u32 },
    /// The cluster on disk was made by another major release than any binaries found.
    VersionMismatch {
        cluster: PathBuf,
        cluster_major: u32,
        found_major: u32,
    },
    /// doska runs as root, PostgreSQL refuses to, and there is no `postgres` account to run it as.
    NoPostgresUser,
    /// The data dir cannot be created, is not a directory, or cannot be written.
    DataDir { path: PathBuf, reason: String },
    /// The PostgreSQL cluster directory (or the record of where it lives) is unusable.
    ClusterDir { path: PathBuf, reason: String },
    /// The short directory for the unix socket is unusable.
    SocketDir { path: PathBuf, reason: String },
    /// Another `doska serve` holds the data dir.
    Locked { data_dir: PathBuf, pid: Option<u32> },
    /// Another doska command holds the data dir and did not let go in time.
    Busy {
        data_dir: PathBuf,
        pid: Option<u32>,
        waited: Duration,
    },
    /// PostgreSQL processes not started by a live doska keep running on the cluster.
    ForeignPostmaster { cluster: PathBuf, pids: Vec<i32> },
    /// `initdb` failed; `detail` is the most telling line of its output.
    Initdb { cluster: PathBuf, detail: String },
    /// A program could not be started at all.
    Spawn { program: PathBuf, source: io::Error },
    /// `postgres` exited before it accepted connections; `detail` is the most telling log line.
    StartFailed { log: PathBuf, detail: String },
    /// `postgres` kept running but did not accept connections in time.
    NotReady { log: PathBuf, waited: Duration },
    /// Some other file system or process operation failed.
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

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::BinariesNotFound { searched } => write!(
                f,
                "no PostgreSQL binaries (postgres, initdb) found in {searched}: install the postgresql package (apt-get install postgresql) or put its bin directory on PATH"
            ),
            PgError::BinaryUnusable { path, reason } => write!(
                f,
                "the PostgreSQL binary {} is unusable ({reason}): reinstall the postgresql package",
                path.display()
            ),
            PgError::UnsupportedVersion { path, major } => write!(
                f,
                "{} is PostgreSQL {major}, doska needs 13 or newer: install a newer postgresql package",
                path.display()
            ),
            PgError::VersionMismatch {
                cluster,
                cluster_major,
                found_major,
            } => write!(
                f,
                "the database cluster {} was made by PostgreSQL {cluster_major} but only PostgreSQL {found_major} is installed: install postgresql-{cluster_major} (or upgrade the cluster with pg_upgrade)",
                cluster.display()
            ),
            PgError::NoPostgresUser => write!(
                f,
                "doska runs as root and PostgreSQL refuses to, but there is no `postgres` user to run it as: install the postgresql package (it creates the user) or run doska as an ordinary user"
            ),
            PgError::DataDir { path, reason } => {
                write!(f, "data dir {}: {reason}", path.display())
            }
            PgError::ClusterDir { path, reason } => {
                write!(f, "PostgreSQL cluster {}: {reason}", path.display())
            }
            PgError::SocketDir { path, reason } => {
                write!(
                    f,
                    "PostgreSQL socket directory {}: {reason}",
                    path.display()
                )
            }
            PgError::Locked { data_dir, pid } => write!(
                f,
                "another doska serve ({}) is already running on data dir {}: stop it first or use a different --data-dir",
                pid_text(*pid),
                data_dir.display()
            ),
            PgError::Busy {
                data_dir,
                pid,
                waited,
            } => write!(
                f,
                "another doska command ({}) has been using data dir {} for over {}s: wait for it to finish and try again",
                pid_text(*pid),
                data_dir.display(),
                waited.as_secs()
            ),
            PgError::ForeignPostmaster { cluster, pids } => write!(
                f,
                "PostgreSQL processes not run by any doska still use the cluster {} (pids {}): stop them (kill -INT {}) and try again",
                cluster.display(),
                pids.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                pids.first().copied().unwrap_or_default()
            ),
            PgError::Initdb { cluster, detail } => {
                write!(f, "initdb failed for {}: {detail}", cluster.display())
            }
            PgError::Spawn { program, source } => {
                write!(f, "could not run {}: {source}", program.display())
            }
            PgError::StartFailed { log, detail } => write!(
                f,
                "PostgreSQL stopped while starting: {detail} (full log: {})",
                log.display()
            ),
            PgError::NotReady { log, waited } => write!(
                f,
                "PostgreSQL did not accept connections within {}s: see {}",
                waited.as_secs(),
                log.display()
            ),
            PgError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

fn pid_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_string(),
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PgError::Spawn { source, .. } | PgError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
