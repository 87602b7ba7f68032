//! Runs the PostgreSQL programs: `initdb` once, then the postmaster as a child of a dedicated
//! thread that lives exactly as long as the postmaster (its parent-death signal belongs to that
//! thread), a readiness probe over the unix socket, and a fast shutdown. Rejects a postmaster that
//! exits during start-up or does not accept connections in time, with the telling log line.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::PgError;
use super::binaries::Binaries;
use super::user::RunAs;

/// Settings doska needs to work at all; on the command line, so nothing in the cluster's own
/// configuration can turn them off.
fn required_settings(socket_dir: &Path, port: u16) -> Vec<String> {
    vec![
        "listen_addresses=".to_string(),
        format!("unix_socket_directories={}", socket_dir.display()),
        format!("port={port}"),
        "wal_level=logical".to_string(),
    ]
}

/// Defaults for a small machine, included from postgresql.conf and rewritten on every start;
/// `ALTER SYSTEM` (postgresql.auto.conf) is read later and wins.
const DOSKA_CONF: &str = "\
# Written by doska on every start. Change settings with ALTER SYSTEM (postgresql.auto.conf),
# which PostgreSQL reads after this file.
max_wal_senders = 10
max_replication_slots = 10
max_slot_wal_keep_size = '1GB'
shared_buffers = '128MB'
max_connections = 100
max_wal_size = '1GB'
fsync = on
";
const INCLUDE_LINE: &str = "include_if_exists = 'doska.conf'";

/// A fresh environment: no doska secrets (DOSKA_JWT_SECRET, ...) leak into PostgreSQL, and
/// messages come out in one language.
fn clean_env(cmd: &mut Command, bins: &Binaries) {
    let bin_dir = bins.postgres.parent().unwrap_or(Path::new("/"));
    cmd.env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
        .env("LC_ALL", "C.UTF-8")
        .current_dir("/");
}

/// Creates the cluster in `<cluster>.initdb` and renames it into place only when initdb
/// succeeded: initdb writes PG_VERSION early, so an interrupted run (doska killed meanwhile) in
/// place would later pass for a finished cluster. `cluster` must be empty.
pub(crate) fn create_cluster(
    bins: &Binaries,
    run_as: &RunAs,
    cluster: &Path,
    superuser: &str,
) -> Result<(), PgError> {
    let holds_files = fs::read_dir(cluster)
        .map_err(|e| PgError::io(format!("reading {}", cluster.display()), e))?
        .next()
        .is_some();
    if holds_files {
        return Err(PgError::ClusterDir {
            path: cluster.to_path_buf(),
            reason: "holds files but no PostgreSQL cluster (no PG_VERSION): move them away or remove the directory".into(),
        });
    }
    let mut staging_name = cluster.file_name().unwrap_or_default().to_os_string();
    staging_name.push(".initdb");
    let staging = cluster.with_file_name(staging_name);
    if staging.exists() {
        tracing::info!(path = %staging.display(), "removing an interrupted initdb");
        fs::remove_dir_all(&staging)
            .map_err(|e| PgError::io(format!("removing {}", staging.display()), e))?;
    }
    super::layout::ensure_owned_dir(&staging, run_as, 0o700).map_err(|reason| {
        PgError::ClusterDir {
            path: staging.clone(),
            reason,
        }
    })?;
    initdb(bins, run_as, &staging, superuser)?;
    fs::remove_dir(cluster)
        .map_err(|e| PgError::io(format!("replacing {}", cluster.display()), e))?;
    fs::rename(&staging, cluster).map_err(|e| {
        PgError::io(
            format!("moving {} to {}", staging.display(), cluster.display()),
            e,
        )
    })
}

/// `initdb -E UTF8 --locale=C.UTF-8 -U postgres --auth=trust`. Trust is safe: there is no TCP
/// listener and only the cluster's account (and root) may enter the socket directory.
fn initdb(bins: &Binaries, run_as: &RunAs, cluster: &Path, superuser: &str) -> Result<(), PgError> {
    tracing::info!(cluster = %cluster.display(), "creating the PostgreSQL cluster (initdb)");
    let mut cmd = Command::new(&bins.initdb);
    cmd.arg("-D")
        .arg(cluster)
        .args([
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth=trust",
            "-U",
            superuser,
        ])
        .stdin(Stdio::null());
    clean_env(&mut cmd, bins);
    run_as.prepare(&mut cmd);
    let output = cmd.output().map_err(|source| PgError::Spawn {
        program: bins.initdb.clone(),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Err(PgError::Initdb {
        cluster: cluster.to_path_buf(),
        detail: telling_line(&text).unwrap_or_else(|| output.status.to_string()),
    })
}

/// Writes doska.conf and makes postgresql.conf include it (once).
pub(crate) fn write_config(cluster: &Path, run_as: &RunAs) -> Result<(), PgError> {
    let conf = cluster.join("doska.conf");
    fs::write(&conf, DOSKA_CONF)
        .map_err(|e| PgError::io(format!("writing {}", conf.display()), e))?;
    if run_as.switches() {
        std::os::unix::fs::chown(&conf, Some(run_as.uid), Some(run_as.gid))
            .map_err(|e| PgError::io(format!("chown {}", conf.display()), e))?;
    }
    let main = cluster.join("postgresql.conf");
    let text = fs::read_to_string(&main)
        .map_err(|e| PgError::io(format!("reading {}", main.display()), e))?;
    if !text.lines().any(|l| l.trim() == INCLUDE_LINE) {
        let mut file = OpenOptions::new()
            .append(true)
            .open(&main)
            .map_err(|e| PgError::io(format!("opening {}", main.display()), e))?;
        writeln!(file, "\n# doska's defaults\n{INCLUDE_LINE}")
            .map_err(|e| PgError::io(format!("writing {}", main.display()), e))?;
    }
    Ok(())
}

/// Exit bookkeeping shared by the owning thread and everyone who signals the postmaster.
#[derive(Default)]
struct ExitState {
    status: Option<ExitStatus>,
    /// Set once it accepted connections; an exit before is reported by `wait_ready` instead.
    ready: bool,
    /// Set once doska asked it to stop; an exit without it is a crash worth logging.
    stopping: bool,
}

/// A running postmaster.
pub(crate) struct Postmaster {
    pid: i32,
    state: Arc<(Mutex<ExitState>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// Starts `postgres` from a new thread; stdout and stderr go to `log`.
pub(crate) fn spawn(
    bins: &Binaries,
    run_as: &RunAs,
    cluster: &Path,
    socket_dir: &Path,
    port: u16,
    log: File,
) -> Result<Postmaster, PgError> {
    let mut cmd = Command::new(&bins.postgres);
    cmd.arg("-D").arg(cluster);
    for setting in required_settings(socket_dir, port) {
        cmd.arg("-c").arg(setting);
    }
    let log_err = log
        .try_clone()
        .map_err(|e| PgError::io("duplicating the log file handle", e))?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
    clean_env(&mut cmd, bins);
    run_as.prepare(&mut cmd);

    let state = Arc::new((Mutex::new(ExitState::default()), Condvar::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let thread_state = Arc::clone(&state);
    let program = bins.postgres.clone();
    let thread = thread::Builder::new()
        .name("doska-postgres".into())
        .spawn(move || {
            let mut child = match cmd.spawn() {
                Ok(child) => child,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let pid = child.id() as i32;
            let _ = tx.send(Ok(pid));
            wait_without_reaping(pid);
            // Reap under the lock: whoever signals holds it and checks `status` first, so a
            // signal can never hit a recycled pid.
            let (lock, cvar) = &*thread_state;
            let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
            let status = child.wait().unwrap_or_else(|_| {
                use std::os::unix::process::ExitStatusExt;
                ExitStatus::from_raw(0)
            });
            if state.ready && !state.stopping {
                tracing::error!(pid, %status, "PostgreSQL exited unexpectedly; see postgres.log in the data dir");
            }
            state.status = Some(status);
            cvar.notify_all();
        })
        .map_err(|e| PgError::io("starting the PostgreSQL supervisor thread", e))?;
    match rx.recv() {
        Ok(Ok(pid)) => Ok(Postmaster {
            pid,
            state,
            thread: Some(thread),
        }),
        Ok(Err(source)) => {
            let _ = thread.join();
            Err(PgError::Spawn { program, source })
        }
        Err(_) => {
            let _ = thread.join();
            Err(PgError::Spawn {
                program,
                source: io::Error::other("the supervisor thread died"),
            })
        }
    }
}

/// Blocks until the child has exited, leaving it a zombie so its pid stays reserved.
fn wait_without_reaping(pid: i32) {
    loop {
        // SAFETY: all-zero siginfo_t is valid; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our child; info is a valid out-pointer.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

impl Postmaster {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A handle that waits for this postmaster's exit without holding the Postmaster itself.
    pub fn exit_watch(&self) -> ExitWatch {
        ExitWatch(Arc::clone(&self.state))
    }

    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.state
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .status
    }

    /// Sends `signal` unless the postmaster is already gone.
    fn signal(&self, signal: libc::c_int) {
        let mut state = self.state.0.lock().unwrap_or_else(|p| p.into_inner());
        state.stopping = true;
        if state.status.is_none() {
            // SAFETY: the pid is our unreaped child (see the supervisor thread).
            unsafe { libc::kill(self.pid, signal) };
        }
    }

    fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let (lock, cvar) = &*self.state;
        let state = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (state, _) = cvar
            .wait_timeout_while(state, timeout, |s| s.status.is_none())
            .unwrap_or_else(|p| p.into_inner());
        state.status
    }

    /// Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit); immediate shutdown
    /// after a minute, SIGKILL as the last resort. Idempotent.
    pub fn stop(&mut self) -> Result<(), PgError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let steps = [
            (libc::SIGINT, Duration::from_secs(60)),
            (libc::SIGQUIT, Duration::from_secs(10)),
            (libc::SIGKILL, Duration::from_secs(10)),
        ];
        let mut forced = false;
        for (signal, patience) in steps {
            self.signal(signal);
            if self.wait_exit(patience).is_some() {
                break;
            }
            forced = true;
            tracing::warn!(
                pid = self.pid,
                signal,
                "PostgreSQL did not stop in time; escalating"
            );
        }
        if self.wait_exit(Duration::ZERO).is_none() {
            // Leave the thread parked: it still owns the child and its death signal.
            self.thread = Some(thread);
            return Err(PgError::io(
                format!("stopping PostgreSQL (pid {})", self.pid),
                io::Error::other("it survived SIGKILL"),
            ));
        }
        let _ = thread.join();
        if forced {
            tracing::warn!(pid = self.pid, "PostgreSQL had to be stopped forcibly");
        }
        Ok(())
    }
}

/// Waits for one postmaster's exit (see [`Postmaster::exit_watch`]).
pub(crate) struct ExitWatch(Arc<(Mutex<ExitState>, Condvar)>);

impl ExitWatch {
    /// Blocks until the postmaster has exited; its status.
    pub fn wait(&self) -> ExitStatus {
        let (lock, cvar) = &*self.0;
        let state = lock.lock().unwrap_or_else(|p| p.into_inner());
        let state = cvar
            .wait_while(state, |s| s.status.is_none())
            .unwrap_or_else(|p| p.into_inner());
        state.status.unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            ExitStatus::from_raw(0)
        })
    }
}

impl Drop for Postmaster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!("{e}");
        }
    }
}

/// Opens (appending) the log file doska gives PostgreSQL's stderr; rotates it once past 10 MiB.
/// Returns the file and the offset where this run's output begins.
pub(crate) fn open_log(path: &Path) -> Result<(File, u64), PgError> {
    if fs::metadata(path).is_ok_and(|m| m.len() > 10 << 20) {
        let _ = fs::rename(path, path.with_extension("log.1"));
    }
    // Failed statements are logged with their text, which may hold data: owner only.
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| PgError::io(format!("opening {}", path.display()), e))?;
    let start = file
        .metadata()
        .map(|m| m.len())
        .map_err(|e| PgError::io(format!("reading {}", path.display()), e))?;
    Ok((file, start))
}

/// Waits until the server accepts connections, it exits, or `timeout` passes.
pub(crate) fn wait_ready(
    postmaster: &Postmaster,
    socket: &Path,
    superuser: &str,
    log: &Path,
    log_start: u64,
    timeout: Duration,
) -> Result<(), PgError> {
    let deadline = Instant::now() + timeout;
    loop {
        if postmaster.exit_status().is_some() {
            let detail = telling_line(&log_since(log, log_start))
                .unwrap_or_else(|| "no message in the log".to_string());
            return Err(PgError::StartFailed {
                log: log.to_path_buf(),
                detail,
            });
        }
        if ping(socket, superuser) == Ping::Ready {
            postmaster
                .state
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .ready = true;
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(PgError::NotReady {
                log: log.to_path_buf(),
                waited: timeout,
            });
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn log_since(log: &Path, start: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(log)
        && file.seek(SeekFrom::Start(start)).is_ok()
    {
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}

/// The line that explains a failure: the last FATAL/PANIC/ERROR (else the last line), with the
/// same process's line just before it (PostgreSQL logs the bad setting there, then "configuration
/// file contains errors") and its DETAIL/HINT lines, without timestamps.
pub(crate) fn telling_line(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let severe = |l: &str| {
        ["FATAL:", "PANIC:", "ERROR:", "error:"]
            .iter()
            .any(|tag| l.contains(tag))
    };
    let at = lines
        .iter()
        .rposition(|l| severe(l))
        .or(lines.len().checked_sub(1))?;
    let tag = pid_tag(lines[at]);
    let same_process = |l: &str| tag.is_some() && pid_tag(l) == tag;
    let routine = |l: &str| {
        ["starting PostgreSQL", "listening on", "database system"]
            .iter()
            .any(|r| l.contains(r))
    };
    let mut parts = Vec::new();
    if at > 0 && same_process(lines[at - 1]) && !routine(lines[at - 1]) {
        parts.push(after_tag(lines[at - 1]));
    }
    parts.push(after_tag(lines[at]));
    parts.extend(
        lines[at + 1..]
            .iter()
            .take_while(|l| same_process(l) && (l.contains("DETAIL:") || l.contains("HINT:")))
            .map(|l| after_tag(l)),
    );
    Some(parts.join(" "))
}

/// The "[12345]" process tag of a log line with PostgreSQL's default prefix "%m [%p] ".
fn pid_tag(line: &str) -> Option<&str> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let inner = &line[open + 1..close];
    (!inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit())).then(|| &line[open..=close])
}

fn after_tag(line: &str) -> &str {
    match pid_tag(line) {
        Some(tag) => line[line.find(tag).unwrap_or(0) + tag.len()..].trim_start(),
        None => line,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ping {
    /// The server answered a startup message with something other than "starting up".
    Ready,
    /// Nothing listens yet, or the server is still starting or recovering.
    NotYet,
}

/// PQping's rule over a raw socket: any answer but "the database system is starting up"
/// (SQLSTATE 57P03) means the server accepts connections. Blocking and runtime-free, so it works
/// before, inside, or without a tokio runtime.
pub(crate) fn ping(socket: &Path, user: &str) -> Ping {
    ping_inner(socket, user).unwrap_or(Ping::NotYet)
}

fn ping_inner(socket: &Path, user: &str) -> io::Result<Ping> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = BytesMut::new();
    postgres_protocol::message::frontend::startup_message(
        [("user", user), ("database", "postgres")],
        &mut buf,
    )?;
    stream.write_all(&buf)?;
    let mut header = [0u8; 5];
    stream.read_exact(&mut header)?;
    let answer = match header[0] {
        b'E' => {
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let mut body = vec![0u8; len.saturating_sub(4).min(64 * 1024)];
            stream.read_exact(&mut body)?;
            if error_code(&body).as_deref() == Some("57P03") {
                Ping::NotYet
            } else {
                Ping::Ready
            }
        }
        _ => Ping::Ready,
    };
    buf.clear();
    postgres_protocol::message::frontend::terminate(&mut buf);
    let _ = stream.write_all(&buf);
    Ok(answer)
}

/// The `C` (SQLSTATE) field of an ErrorResponse body: (type byte, NUL-terminated text)*, NUL.
fn error_code(body: &[u8]) -> Option<String> {
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0)?;
        if kind == b'C' {
            return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
        }
        rest = &tail[end + 1..];
    }
    None
}

/// The socket file inside the socket directory.
pub(crate) fn socket_path(socket_dir: &Path, port: u16) -> PathBuf {
    socket_dir.join(format!(".s.PGSQL.{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_telling_line() {
        let cases = [
            (
                "2024 UTC [7] LOG:  starting PostgreSQL 15\n2024 UTC [7] FATAL:  could not create lock file\n2024 UTC [7] HINT:  Is another postmaster running?\n2024 UTC [7] LOG:  database system is shut down\n",
                "FATAL:  could not create lock file HINT:  Is another postmaster running?",
            ),
            (
                "2024 UTC [5] LOG:  starting\n2024 UTC [9] LOG:  invalid value for parameter \"shared_buffers\": \"x\"\n2024 UTC [9] FATAL:  configuration file \"a\" contains errors\n",
                "LOG:  invalid value for parameter \"shared_buffers\": \"x\" FATAL:  configuration file \"a\" contains errors",
            ),
            (
                "2024 UTC [5] LOG:  listening on Unix socket\n2024 UTC [5] FATAL:  out of memory\n",
                "FATAL:  out of memory",
            ),
            (
                "creating directory /x ... ok\ninitdb: error: could not create directory \"/x/y\": Permission denied\n",
                "initdb: error: could not create directory \"/x/y\": Permission denied",
            ),
            ("a\nlast\n\n", "last"),
        ];
        for (log, want) in cases {
            assert_eq!(telling_line(log).as_deref(), Some(want), "{log}");
        }
        assert_eq!(telling_line("\n \n"), None);
    }

    #[test]
    fn reads_sqlstate_from_error_body() {
        let body = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0";
        assert_eq!(error_code(body).as_deref(), Some("57P03"));
        assert_eq!(error_code(b"SERROR\0\0"), None);
        assert_eq!(error_code(b"Cunterminated"), None);
    }

    #[test]
    fn nothing_listening_is_not_ready() {
        assert_eq!(
            ping(Path::new("/nonexistent/.s.PGSQL.5432"), "postgres"),
            Ping::NotYet
        );
    }
}
