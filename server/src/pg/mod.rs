//! Embedded PostgreSQL: runs a cluster from the machine's installed binaries for one data dir.
//! `Serve` owns the data dir for its lifetime (a second serve is refused, naming the first);
//! `Attach` joins a running serve's server, or runs one itself until stopped. PostgreSQL listens
//! on a unix socket only, in its own process group, and dies with doska even on `kill -9`.
//! Rejects: missing binaries, an unusable data dir, a data dir held by another doska serve, and a
//! server that does not come up — each with one line saying what to do.

mod binaries;
mod error;
mod layout;
mod lock;
mod postmaster;
mod process;
mod supervise;
mod user;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub use error::PgError;
pub use supervise::{MAX_RESTARTS, RESTART_WINDOW, Supervision};

use binaries::SearchPath;
use lock::{DataDirLock, TryLock};
use process::Ping;
use supervise::{Launch, Server};
use user::RunAs;

/// The superuser initdb creates; doska's admin connections log in as it.
pub const SUPERUSER: &str = "postgres";
/// Only names the socket file (`.s.PGSQL.5432`): there is no TCP listener, and every cluster has
/// its own socket directory, so clusters never clash over it.
const PORT: u16 = 5432;
/// How long PostgreSQL may take to accept connections after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long processes of a crashed doska's PostgreSQL may take to exit.
const LEFTOVER_PATIENCE: Duration = Duration::from_secs(15);
/// How long to wait for another doska command (not a serve) to release the data dir.
const BUSY_PATIENCE: Duration = Duration::from_secs(30);

/// What to run and how.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub data_dir: PathBuf,
    pub mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `doska serve`: owns the data dir and its PostgreSQL until stopped.
    Serve,
    /// `doska migrate` and friends: use a running serve's PostgreSQL, or run one meanwhile.
    Attach,
}

/// A running (or joined) PostgreSQL. `stop` and `Drop` block until a server this Cluster started
/// has exited (normally well under a second; at most about 80 s before SIGKILL): in async code call
/// them from `spawn_blocking`. A Cluster that is never dropped (a `static`, `process::exit`) takes
/// its PostgreSQL along with a SIGKILL when the process ends; crash recovery runs on the next start.
pub struct Cluster {
    socket_dir: PathBuf,
    port: u16,
    /// Set when this Cluster started PostgreSQL and must stop it.
    owned: Option<Owned>,
}

struct Owned {
    /// The postmaster and how to start it again (shared with the supervisor thread, if any).
    server: Arc<Server>,
    /// Dropped after the postmaster has exited, so no other doska starts a second one meanwhile.
    lock: DataDirLock,
}

impl Owned {
    fn shutdown(self) -> Result<(), PgError> {
        self.lock.unpublish();
        let launch = &self.server.launch;
        tracing::info!(cluster = %launch.cluster_dir.display(), "stopping PostgreSQL");
        let result = self.server.stop();
        if result.is_ok() {
            // Empty once PostgreSQL removed its socket; a leftover from a crash is reused anyway.
            let _ = std::fs::remove_dir(&launch.socket_dir);
        }
        drop(self.lock);
        result
    }
}

impl Cluster {
    /// Serve: take the data dir's lock (refused, naming the holder's pid, when another doska serve
    /// has it), initdb on first start, start postgres, wait until it accepts connections.
    /// Attach: join the PostgreSQL of a doska serve on this data dir and never stop it; else start
    /// PostgreSQL and stop it when this Cluster is stopped or dropped. Blocking.
    pub fn start(opts: &EmbeddedOptions) -> Result<Cluster, PgError> {
        start_with(opts, &SearchPath::system())
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The number in the socket file name `.s.PGSQL.<port>`.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// Connection settings for the superuser on `dbname`, over the unix socket.
    pub fn config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(SUPERUSER)
            .dbname(dbname);
        config
    }

    /// True when this Cluster started PostgreSQL (and will stop it); false when it joined a
    /// running doska serve's.
    pub fn owns_server(&self) -> bool {
        self.owned.is_some()
    }

    /// The (current) postmaster's pid when this Cluster started it.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let owned = self.owned.as_ref()?;
        owned.server.current().as_ref().map(|p| p.pid())
    }

    /// The cluster directory when this Cluster started PostgreSQL.
    pub fn cluster_dir(&self) -> Option<&Path> {
        self.owned
            .as_ref()
            .map(|o| o.server.launch.cluster_dir.as_path())
    }

    /// Where PostgreSQL's own log goes when this Cluster started it.
    pub fn log_file(&self) -> Option<&Path> {
        self.owned.as_ref().map(|o| o.server.launch.log.as_path())
    }

    /// False once a PostgreSQL this Cluster started has exited on its own (a crash) and, when
    /// supervised, has not been restarted yet.
    pub fn is_running(&self) -> bool {
        self.owned.as_ref().is_none_or(|o| {
            o.server
                .current()
                .as_ref()
                .is_some_and(|p| p.exit_status().is_none())
        })
    }

    /// Restarts a PostgreSQL this Cluster started whenever it dies without being asked to stop
    /// (see `supervise.rs` for the pauses and the limit), until the Cluster is stopped. The
    /// receiver follows the supervisor; `None` for a joined server, which is not ours to restart.
    pub fn supervise(&self) -> Result<Option<tokio::sync::watch::Receiver<Supervision>>, PgError> {
        match &self.owned {
            Some(owned) => owned.server.supervise().map(Some),
            None => Ok(None),
        }
    }

    /// Fast shutdown of a PostgreSQL this Cluster started, waiting for it to exit; a joined
    /// server is left running. Dropping the Cluster does the same.
    pub fn stop(mut self) -> Result<(), PgError> {
        match self.owned.take() {
            Some(owned) => owned.shutdown(),
            None => Ok(()),
        }
    }

    fn joined(socket_dir: PathBuf, port: u16) -> Cluster {
        tracing::info!(socket_dir = %socket_dir.display(), "using the running PostgreSQL of this data dir");
        Cluster {
            socket_dir,
            port,
            owned: None,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(owned) = self.owned.take()
            && let Err(e) = owned.shutdown()
        {
            tracing::error!("{e}");
        }
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("socket_dir", &self.socket_dir)
            .field("port", &self.port)
            .field("postmaster_pid", &self.postmaster_pid())
            .field("cluster_dir", &self.cluster_dir())
            .finish()
    }
}

enum Claim {
    Own(DataDirLock),
    Join(Cluster),
}

/// Takes the data dir, or finds the doska serve that has it.
fn claim(data_dir: &Path, mode: Mode, patience: Duration) -> Result<Claim, PgError> {
    let deadline = Instant::now() + patience;
    loop {
        let holder = match lock::try_lock(data_dir, mode == Mode::Serve)? {
            TryLock::Acquired(lock) => return Ok(Claim::Own(lock)),
            TryLock::Held(holder) => holder,
        };
        if holder.serving {
            if mode == Mode::Serve {
                return Err(PgError::Locked {
                    data_dir: data_dir.to_path_buf(),
                    pid: holder.pid,
                });
            }
            if let Some(record) = lock::read_record(data_dir)
                && Some(record.pid) == holder.pid
            {
                let socket = process::socket_path(&record.socket_dir, record.port);
                if let Err(e) = std::fs::symlink_metadata(&socket)
                    && e.kind() == std::io::ErrorKind::PermissionDenied
                {
                    return Err(PgError::SocketDir {
                        path: record.socket_dir,
                        reason: format!(
                            "belongs to the doska serve running on this data dir (pid {}) but this user may not enter it: run this command as the same user as doska serve",
                            record.pid
                        ),
                    });
                }
                if process::ping(&socket, SUPERUSER) == Ping::Ready {
                    return Ok(Claim::Join(Cluster::joined(record.socket_dir, record.port)));
                }
            }
            // That serve is still starting; its record appears once PostgreSQL is ready.
        }
        if Instant::now() >= deadline {
            return Err(PgError::Busy {
                data_dir: data_dir.to_path_buf(),
                pid: holder.pid,
                waited: patience,
            });
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn start_with(opts: &EmbeddedOptions, search: &SearchPath) -> Result<Cluster, PgError> {
    let run_as = RunAs::for_postgres()?;
    let data_dir = layout::prepare_data_dir(&opts.data_dir, &run_as)?;
    let lock = match claim(&data_dir, opts.mode, BUSY_PATIENCE)? {
        Claim::Own(lock) => lock,
        Claim::Join(cluster) => return Ok(cluster),
    };
    let bins = binaries::find(search, None)?;
    let (cluster_dir, relocated) = layout::cluster_dir(&data_dir, &run_as, &bins.postgres)?;
    let existing = binaries::cluster_major(&cluster_dir);
    let bins = match existing {
        Some(major) if major != bins.major => binaries::find(search, Some((&cluster_dir, major)))?,
        _ => bins,
    };
    let socket_dir = layout::socket_dir(&data_dir, &run_as)?;
    // Declared before the postmaster, so on an early return it is dropped after PostgreSQL stopped.
    let socket_guard = EmptyDirGuard(Some(socket_dir.clone()));

    if opts.mode == Mode::Attach
        && let Some(cluster) = join_unowned_postmaster(&cluster_dir)
    {
        return Ok(cluster);
    }
    postmaster::clear_leftovers(&cluster_dir, &socket_dir, LEFTOVER_PATIENCE)?;

    if existing.is_none() {
        process::create_cluster(&bins, &run_as, &cluster_dir, SUPERUSER)?;
    }
    if relocated {
        layout::record_location(&data_dir, &cluster_dir)?;
    }
    process::write_config(&cluster_dir, &run_as)?;

    let launch = Launch {
        bins,
        run_as,
        cluster_dir,
        socket_dir,
        log: data_dir.join("postgres.log"),
    };
    // On any error below, dropping `postmaster` stops it: nothing is left half-started.
    let postmaster = launch.start()?;
    let (socket_dir, cluster_dir) = (launch.socket_dir.clone(), launch.cluster_dir.clone());
    if opts.mode == Mode::Serve {
        lock.publish(&socket_dir, PORT)?;
    }
    socket_guard.disarm();
    tracing::info!(
        cluster = %cluster_dir.display(),
        socket_dir = %socket_dir.display(),
        pid = postmaster.pid(),
        version = launch.bins.major,
        "PostgreSQL is ready"
    );
    Ok(Cluster {
        socket_dir,
        port: PORT,
        owned: Some(Owned {
            server: Arc::new(Server::new(launch, postmaster)),
            lock,
        }),
    })
}

/// Removes a directory on drop if it is empty; a failed start leaves no socket directory behind.
struct EmptyDirGuard(Option<PathBuf>);

impl EmptyDirGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for EmptyDirGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A postmaster that runs on the cluster while no doska holds the lock (started by hand, or
/// still finishing after its doska died) and accepts connections: an Attach may use it as is.
fn join_unowned_postmaster(cluster_dir: &Path) -> Option<Cluster> {
    // It may still be starting (its pid file names the socket only once it exists) or
    // recovering; give it the time a start of our own would get.
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let pid_file = postmaster::read_pid_file(cluster_dir)?;
        if !postmaster::processes_in(cluster_dir).contains(&pid_file.pid) {
            return None;
        }
        if let (Some(socket_dir), Some(port)) = (pid_file.socket_dir, pid_file.port)
            && process::ping(&process::socket_path(&socket_dir, port), SUPERUSER) == Ping::Ready
        {
            return Some(Cluster::joined(socket_dir, port));
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn cluster_is_send_and_sync() {
        assert_send_sync::<Cluster>();
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("doska-claim-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn serve_is_refused_at_once_while_another_serve_holds_the_data_dir() {
        let dir = scratch("serve");
        let TryLock::Acquired(_held) = lock::try_lock(&dir, true).unwrap() else {
            panic!("fresh dir must lock");
        };
        let started = Instant::now();
        let Err(err) = claim(&dir, Mode::Serve, Duration::from_secs(5)) else {
            panic!("second serve claimed a held data dir");
        };
        assert!(started.elapsed() < Duration::from_secs(1), "must not wait");
        assert!(
            matches!(err, PgError::Locked { pid: Some(_), .. }),
            "{err:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn waits_for_another_command_then_says_busy() {
        let dir = scratch("busy");
        let TryLock::Acquired(held) = lock::try_lock(&dir, false).unwrap() else {
            panic!("fresh dir must lock");
        };
        for mode in [Mode::Serve, Mode::Attach] {
            let Err(err) = claim(&dir, mode, Duration::from_millis(300)) else {
                panic!("{mode:?} claimed a held data dir");
            };
            assert!(matches!(err, PgError::Busy { .. }), "{err:?}");
            assert!(err.to_string().contains("wait for it to finish"), "{err}");
        }
        // Released meanwhile: the waiting command gets the data dir.
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        assert!(matches!(
            claim(&dir, Mode::Serve, Duration::from_secs(5)),
            Ok(Claim::Own(_))
        ));
        releaser.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_binaries_fail_before_anything_starts() {
        let root = std::env::temp_dir().join(format!("doska-nobins-{}", std::process::id()));
        let empty = root.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let search = SearchPath {
            path_var: Some(empty.clone().into_os_string()),
            roots: vec![(empty.clone(), String::new())],
        };
        let opts = EmbeddedOptions {
            data_dir: root.join("data"),
            mode: Mode::Serve,
        };
        let err = start_with(&opts, &search).unwrap_err();
        assert!(matches!(err, PgError::BinariesNotFound { .. }), "{err:?}");
        assert!(
            err.to_string().contains("apt-get install postgresql"),
            "{err}"
        );
        assert!(!root.join("data").join("pg").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
