//! Keeps a `doska serve`'s PostgreSQL alive: a thread waits for the postmaster to exit, and when
//! it exits without doska asking (killed, crashed) starts it again on the same cluster — after
//! its backends are gone, so PostgreSQL runs its normal crash recovery from the WAL — with a
//! growing pause between attempts. Past [`MAX_RESTARTS`] attempts within [`RESTART_WINDOW`] it
//! gives up and says so through [`Supervision::GaveUp`]: doska then exits non-zero and its own
//! supervisor (systemd) restarts the whole thing.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::binaries::Binaries;
use super::process::{self, Postmaster};
use super::user::RunAs;
use super::{LEFTOVER_PATIENCE, PORT, PgError, READY_TIMEOUT, SUPERUSER, postmaster};

/// Most restarts within [`RESTART_WINDOW`]; one more crash (or failed start) and doska gives up.
pub const MAX_RESTARTS: usize = 5;
/// The window [`MAX_RESTARTS`] counts in.
pub const RESTART_WINDOW: Duration = Duration::from_secs(600);
/// Pause before the n-th restart within the window (the first is at once, once the old backends
/// have exited).
const RESTART_DELAYS: [Duration; MAX_RESTARTS] = [
    Duration::ZERO,
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// What the supervisor is doing, for whoever watches ([`super::Cluster::supervise`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Supervision {
    /// PostgreSQL runs (as `pid`); `restarts` counts restarts since doska started.
    Running { pid: i32, restarts: u32 },
    /// It died; restart `attempt` (1-based, within the window) comes next.
    Restarting { attempt: usize },
    /// Too many restarts in too short a time: doska should stop and let its own supervisor act.
    GaveUp { reason: String },
}

/// How to (re)start the postmaster of one cluster.
pub(crate) struct Launch {
    pub bins: Binaries,
    pub run_as: RunAs,
    pub cluster_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub log: PathBuf,
}

impl Launch {
    /// Starts postgres and waits until it accepts connections; on error nothing stays running.
    pub fn start(&self) -> Result<Postmaster, PgError> {
        let (log_file, log_start) = process::open_log(&self.log)?;
        let postmaster = process::spawn(
            &self.bins,
            &self.run_as,
            &self.cluster_dir,
            &self.socket_dir,
            PORT,
            log_file,
        )?;
        // On error, dropping `postmaster` stops it: nothing is left half-started.
        process::wait_ready(
            &postmaster,
            &process::socket_path(&self.socket_dir, PORT),
            SUPERUSER,
            &self.log,
            log_start,
            READY_TIMEOUT,
        )?;
        Ok(postmaster)
    }

    /// After a crash: wait for the dead server's backends, clear its pid and socket files, start.
    fn restart(&self) -> Result<Postmaster, PgError> {
        postmaster::clear_leftovers(&self.cluster_dir, &self.socket_dir, LEFTOVER_PATIENCE)?;
        self.start()
    }
}

/// The running server of an owned cluster, shared by the Cluster and its supervisor thread.
pub(crate) struct Server {
    pub launch: Launch,
    /// The current postmaster (after a crash, the dead one until its successor is up).
    pub current: Mutex<Option<Postmaster>>,
    /// Set when doska stops the server: no more restarts.
    stopping: (Mutex<bool>, Condvar),
    supervisor: Mutex<Option<Supervisor>>,
}

struct Supervisor {
    thread: JoinHandle<()>,
    state: watch::Receiver<Supervision>,
}

impl Server {
    pub fn new(launch: Launch, postmaster: Postmaster) -> Server {
        Server {
            launch,
            current: Mutex::new(Some(postmaster)),
            stopping: (Mutex::new(false), Condvar::new()),
            supervisor: Mutex::new(None),
        }
    }

    pub fn current(&self) -> std::sync::MutexGuard<'_, Option<Postmaster>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps `pause` unless doska stops meanwhile; true when it does.
    fn sleep_unless_stopping(&self, pause: Duration) -> bool {
        let (lock, cvar) = &self.stopping;
        let stopping = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (stopping, _) = cvar
            .wait_timeout_while(stopping, pause, |s| !*s)
            .unwrap_or_else(|p| p.into_inner());
        *stopping
    }

    /// Starts the supervisor thread (once); the receiver follows what it does.
    pub fn supervise(self: &Arc<Self>) -> Result<watch::Receiver<Supervision>, PgError> {
        let mut slot = self.supervisor.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.state.clone());
        }
        let pid = self.current().as_ref().map_or(0, |p| p.pid());
        let (tx, rx) = watch::channel(Supervision::Running { pid, restarts: 0 });
        let server = Arc::clone(self);
        let thread = thread::Builder::new()
            .name("doska-pg-supervisor".into())
            .spawn(move || supervise(&server, &tx))
            .map_err(|e| PgError::io("starting the PostgreSQL supervisor", e))?;
        *slot = Some(Supervisor {
            thread,
            state: rx.clone(),
        });
        Ok(rx)
    }

    /// Stops the server for good: no restart after this, the supervisor (if any) ends, and the
    /// postmaster gets a fast shutdown.
    pub fn stop(&self) -> Result<(), PgError> {
        {
            let (lock, cvar) = &self.stopping;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cvar.notify_all();
        }
        // Waits while a restart is under way; the supervisor sees `stopping` once it is done.
        let first = self.current().take();
        let mut result = first.map_or(Ok(()), |mut p| p.stop());
        let supervisor = self
            .supervisor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(s) = supervisor {
            let _ = s.thread.join();
        }
        // A restart that began before `stopping` was set may have put a new postmaster in place.
        if let Some(mut late) = self.current().take() {
            result = result.and(late.stop());
        }
        result
    }
}

fn supervise(server: &Server, state: &watch::Sender<Supervision>) {
    let mut attempts: VecDeque<Instant> = VecDeque::new();
    let mut restarts = 0u32;
    loop {
        let Some(exit) = server.current().as_ref().map(Postmaster::exit_watch) else {
            return;
        };
        let status = exit.wait();
        if server.is_stopping() {
            return;
        }
        tracing::error!(%status, "PostgreSQL died; restarting it (it recovers from its WAL)");
        loop {
            let now = Instant::now();
            while attempts
                .front()
                .is_some_and(|t| now.duration_since(*t) >= RESTART_WINDOW)
            {
                attempts.pop_front();
            }
            if attempts.len() >= MAX_RESTARTS {
                let reason = format!(
                    "PostgreSQL died again after {MAX_RESTARTS} restarts within {} minutes (see postgres.log in the data dir)",
                    RESTART_WINDOW.as_secs() / 60
                );
                tracing::error!("{reason}; giving up");
                state.send_replace(Supervision::GaveUp { reason });
                return;
            }
            let attempt = attempts.len() + 1;
            state.send_replace(Supervision::Restarting { attempt });
            if server.sleep_unless_stopping(RESTART_DELAYS[attempts.len()]) {
                return;
            }
            attempts.push_back(Instant::now());
            let mut current = server.current();
            if server.is_stopping() {
                return;
            }
            match server.launch.restart() {
                Ok(postmaster) => {
                    restarts += 1;
                    let pid = postmaster.pid();
                    tracing::info!(pid, attempt, "PostgreSQL restarted after a crash");
                    // The dead one is reaped as it is replaced.
                    *current = Some(postmaster);
                    state.send_replace(Supervision::Running { pid, restarts });
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, attempt, "restarting PostgreSQL failed");
                }
            }
        }
    }
}
