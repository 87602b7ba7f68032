//! The embedded PostgreSQL against the real binaries: start, restart with data kept, the data dir
//! lock, Attach joining a running serve, stale pid files, relocation for the postgres user, and
//! `kill -9` of doska taking PostgreSQL along.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use doska::pg::{Cluster, EmbeddedOptions, Mode, PgError};

/// A fresh directory under /tmp (the postgres user cannot enter /root), removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from("/tmp").join(format!(
            "doska-pgtest-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn data(&self) -> PathBuf {
        self.0.join("data")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn opts(data_dir: &Path, mode: Mode) -> EmbeddedOptions {
    EmbeddedOptions {
        data_dir: data_dir.to_path_buf(),
        mode,
    }
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs statements on `postgres` over the cluster's socket; returns the first column of the
/// last statement's rows as text.
fn sql(cluster: &Cluster, statements: &[&str]) -> Vec<String> {
    let config = cluster.config("postgres");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            let conn = tokio::spawn(conn);
            let mut last = Vec::new();
            for statement in statements {
                last = client
                    .simple_query(statement)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(row) => {
                            Some(row.get(0).unwrap_or("").to_string())
                        }
                        _ => None,
                    })
                    .collect();
            }
            drop(client);
            let _ = conn.await;
            last
        })
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

fn wait_dead(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !alive(pid)
}

fn uid_of(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn restart_keeps_data() {
    let tmp = TempDir::new("restart");
    let cluster = Cluster::start(&opts(&tmp.data(), Mode::Serve)).unwrap();
    assert!(cluster.owns_server());
    assert_eq!(cluster.superuser(), "postgres");
    let socket = cluster
        .socket_dir()
        .join(format!(".s.PGSQL.{}", cluster.port()));
    assert!(socket.as_os_str().len() < 107, "{}", socket.display());
    assert!(socket.exists());

    let pid = cluster.postmaster_pid().unwrap();
    // Its own process group, so Ctrl-C on doska's terminal does not reach it.
    // SAFETY: no preconditions.
    assert_eq!(unsafe { libc::getpgid(pid) }, pid);
    if is_root() {
        assert_ne!(uid_of(pid), 0, "postgres must not run as root");
    }
    assert_eq!(
        sql(
            &cluster,
            &["show wal_level", "show listen_addresses", "show fsync"]
        ),
        ["on"]
    );
    assert_eq!(sql(&cluster, &["show wal_level"]), ["logical"]);
    assert_eq!(sql(&cluster, &["show listen_addresses"]), [""]);
    assert_eq!(sql(&cluster, &["show max_slot_wal_keep_size"]), ["1GB"]);
    assert_eq!(sql(&cluster, &["show server_encoding"]), ["UTF8"]);
    let log_mode = std::fs::metadata(cluster.log_file().unwrap()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&log_mode.permissions()) & 0o777,
        0o600
    );

    sql(
        &cluster,
        &[
            "create table kept (id int primary key, note text)",
            "insert into kept values (1, 'survives a restart')",
        ],
    );
    cluster.stop().unwrap();
    assert!(
        wait_dead(pid, Duration::from_secs(1)),
        "stop waits for exit"
    );
    assert!(!tmp.data().join("doska.serve").exists());

    let again = Cluster::start(&opts(&tmp.data(), Mode::Serve)).unwrap();
    assert_eq!(
        sql(&again, &["select note from kept where id = 1"]),
        ["survives a restart"]
    );
    let pid = again.postmaster_pid().unwrap();
    drop(again);
    assert!(
        wait_dead(pid, Duration::from_secs(1)),
        "drop stops postgres"
    );
}

#[test]
fn second_serve_is_refused_and_attach_joins() {
    let tmp = TempDir::new("lock");
    let serve = Cluster::start(&opts(&tmp.data(), Mode::Serve)).unwrap();
    sql(
        &serve,
        &[
            "create table shared (v text)",
            "insert into shared values ('from serve')",
        ],
    );

    let err = Cluster::start(&opts(&tmp.data(), Mode::Serve)).unwrap_err();
    assert!(matches!(err, PgError::Locked { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    assert!(message.contains("already running"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");

    let attach = Cluster::start(&opts(&tmp.data(), Mode::Attach)).unwrap();
    assert!(!attach.owns_server());
    assert_eq!(attach.socket_dir(), serve.socket_dir());
    assert_eq!(sql(&attach, &["select v from shared"]), ["from serve"]);
    attach.stop().unwrap();

    // The joined server is still there after the attached Cluster is gone.
    assert!(serve.is_running());
    assert_eq!(sql(&serve, &["select count(*) from shared"]), ["1"]);
    serve.stop().unwrap();
}

#[test]
fn attach_alone_runs_and_stops_its_own_server() {
    let tmp = TempDir::new("attach");
    let attach = Cluster::start(&opts(&tmp.data(), Mode::Attach)).unwrap();
    assert!(attach.owns_server());
    assert!(
        !tmp.data().join("doska.serve").exists(),
        "only serve publishes"
    );
    // A serve cannot start underneath a running migrate-like command... it waits, then says so.
    let pid = attach.postmaster_pid().unwrap();
    assert_eq!(sql(&attach, &["select 1"]), ["1"]);
    attach.stop().unwrap();
    assert!(wait_dead(pid, Duration::from_secs(1)));
    // The data dir is free again.
    Cluster::start(&opts(&tmp.data(), Mode::Serve))
        .unwrap()
        .stop()
        .unwrap();
}

#[test]
fn stale_postmaster_pid_does_not_block_start() {
    let tmp = TempDir::new("stale");
    let cluster = Cluster::start(&opts(&tmp.data(), Mode::Serve)).unwrap();
    let cluster_dir = cluster.cluster_dir().unwrap().to_path_buf();
    sql(
        &cluster,
        &["create table t (v int)", "insert into t values (7)"],
    );
    cluster.stop().unwrap();

    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    // A dead pid, and pid 1: alive, but not a postgres (PostgreSQL alone would refuse that one).
    for pid in [dead_pid, 1] {
        let pid_file = cluster_dir.join("postmaster.pid");
        std::fs::write(
            &pid_file,
            format!(
                "{pid}\n{}\n1700000000\n5432\n/tmp\n\n  5432001  0\nready   \n",
                cluster_dir.display()
            ),
        )
        .unwrap();
        let cluster = Cluster::start(&opts(&tmp.data(), Mode::Serve))
            .unwrap_or_else(|e| panic!("stale pid {pid} blocked the start: {e}"));
        assert_eq!(sql(&cluster, &["select v from t"]), ["7"]);
        cluster.stop().unwrap();
    }
}

#[test]
fn unusable_data_dirs_are_refused_clearly() {
    let tmp = TempDir::new("baddir");
    let file = tmp.0.join("a-file");
    std::fs::write(&file, b"not a dir").unwrap();
    for (path, expect) in [
        (file.clone(), "not a directory"),
        (file.join("below"), "cannot be created"),
    ] {
        let err = Cluster::start(&opts(&path, Mode::Serve)).unwrap_err();
        assert!(matches!(err, PgError::DataDir { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(expect), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
}

#[test]
fn relocates_when_the_postgres_user_cannot_reach_the_data_dir() {
    if !is_root() {
        eprintln!("skipped: only root runs PostgreSQL as another user");
        return;
    }
    let tmp = TempDir::new("private");
    let private = tmp.0.join("home");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let data = private.join("data");

    let cluster = Cluster::start(&opts(&data, Mode::Serve)).unwrap();
    let cluster_dir = cluster.cluster_dir().unwrap().to_path_buf();
    assert!(
        !cluster_dir.starts_with(&private),
        "{}",
        cluster_dir.display()
    );
    let record = std::fs::read_to_string(data.join("pg-location")).unwrap();
    assert_eq!(record.trim(), cluster_dir.to_str().unwrap());
    let back = std::fs::read_to_string(cluster_dir.join("doska-data-dir")).unwrap();
    assert_eq!(back.trim(), data.canonicalize().unwrap().to_str().unwrap());
    sql(
        &cluster,
        &[
            "create table moved (v text)",
            "insert into moved values ('here')",
        ],
    );
    cluster.stop().unwrap();

    let again = Cluster::start(&opts(&data, Mode::Serve)).unwrap();
    assert_eq!(again.cluster_dir().unwrap(), cluster_dir);
    assert_eq!(sql(&again, &["select v from moved"]), ["here"]);
    again.stop().unwrap();
    std::fs::remove_dir_all(&cluster_dir).unwrap();
}

const HELPER_ENV: &str = "DOSKA_PG_KILL_HELPER_DATA_DIR";

/// Not a test on its own: `kill_9_of_doska_takes_postgres_along` runs the test binary with this
/// one selected, as a stand-in doska process, and kills it.
#[test]
#[ignore = "helper process for kill_9_of_doska_takes_postgres_along"]
fn kill_helper_hold_cluster() {
    let data = std::env::var(HELPER_ENV).expect("run by kill_9_of_doska_takes_postgres_along");
    let cluster = Cluster::start(&opts(Path::new(&data), Mode::Serve)).unwrap();
    sql(
        &cluster,
        &[
            "create table before_kill (v int)",
            "insert into before_kill values (9)",
        ],
    );
    println!("READY {}", cluster.postmaster_pid().unwrap());
    std::thread::sleep(Duration::from_secs(120));
    panic!("the parent test should have killed this process");
}

#[test]
fn kill_9_of_doska_takes_postgres_along() {
    let tmp = TempDir::new("kill9");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_helper_hold_cluster",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, tmp.data())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut postmaster = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        // libtest prints "test <name> ... " on the same line first.
        if let Some((_, pid)) = line.split_once("READY ") {
            postmaster = Some(pid.trim().parse::<i32>().unwrap());
            break;
        }
    }
    let postmaster = postmaster.expect("the helper never got its cluster ready");
    assert!(alive(postmaster));
    let cluster_dir = tmp.data().join("pg");
    let backends_before = processes_in(&cluster_dir);
    assert!(backends_before.contains(&postmaster), "{backends_before:?}");

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        wait_dead(postmaster, Duration::from_secs(5)),
        "postmaster {postmaster} outlived its doska"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_in(&cluster_dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        processes_in(&cluster_dir),
        Vec::<i32>::new(),
        "orphan backends"
    );

    // The crash left postmaster.pid behind; the next start must not trip over it.
    let again = Cluster::start(&opts(&tmp.data(), Mode::Serve)).unwrap();
    assert_eq!(sql(&again, &["select v from before_kill"]), ["9"]);
    again.stop().unwrap();
}

/// Processes working in the cluster directory (the postmaster and its backends).
fn processes_in(cluster: &Path) -> Vec<i32> {
    let cluster = cluster
        .canonicalize()
        .unwrap_or_else(|_| cluster.to_path_buf());
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == cluster)
                && alive(*pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

#[test]
fn postgres_failing_at_start_is_reported_with_its_log_line() {
    let tmp = TempDir::new("badconf");
    let cluster = Cluster::start(&opts(&tmp.data(), Mode::Serve)).unwrap();
    let auto_conf = cluster.cluster_dir().unwrap().join("postgresql.auto.conf");
    let socket_dir = cluster.socket_dir().to_path_buf();
    cluster.stop().unwrap();
    assert!(
        !socket_dir.exists(),
        "a clean stop removes the socket directory"
    );
    let mut text = std::fs::read_to_string(&auto_conf).unwrap();
    text.push_str("shared_buffers = 'plenty'\n");
    std::fs::write(&auto_conf, text).unwrap();

    let err = Cluster::start(&opts(&tmp.data(), Mode::Serve)).unwrap_err();
    assert!(matches!(err, PgError::StartFailed { .. }), "{err:?}");
    let message = err.to_string();
    let log = std::fs::read_to_string(tmp.data().join("postgres.log")).unwrap();
    assert!(message.contains("shared_buffers"), "{message}\n{log}");
    assert!(message.contains("postgres.log"), "{message}");
    // Nothing half-started: the data dir is free for the next try.
    assert!(!tmp.data().join("doska.serve").exists());
    assert!(
        !socket_dir.exists(),
        "a failed start removes the socket directory"
    );
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(tmp.data().join("doska.lock"))
        .unwrap();
    // SAFETY: the fd is open for the call.
    let free = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&lock),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    assert_eq!(free, 0, "the lock must be released after a failed start");
}

#[test]
fn interrupted_initdb_is_redone_and_foreign_files_are_refused() {
    let tmp = TempDir::new("initdb");
    // What a doska killed during its first start leaves: a half-made cluster in the staging dir.
    let staging = tmp.data().join("pg.initdb");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("PG_VERSION"), "15\n").unwrap();
    let cluster = Cluster::start(&opts(&tmp.data(), Mode::Serve)).unwrap();
    assert_eq!(sql(&cluster, &["select 1"]), ["1"]);
    assert!(!staging.exists());
    cluster.stop().unwrap();

    let other = TempDir::new("foreign");
    let pg = other.data().join("pg");
    std::fs::create_dir_all(&pg).unwrap();
    std::fs::write(pg.join("notes.txt"), "mine").unwrap();
    if is_root() {
        // As PostgreSQL's account made it, so the ownership check passes and the content is judged.
        // SAFETY: a valid C string; the result is read at once.
        let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
        assert!(!pw.is_null());
        // SAFETY: checked non-null above.
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        std::os::unix::fs::chown(&pg, Some(uid), Some(gid)).unwrap();
    }
    let err = Cluster::start(&opts(&other.data(), Mode::Serve)).unwrap_err();
    assert!(matches!(err, PgError::ClusterDir { .. }), "{err:?}");
    assert!(err.to_string().contains("no PG_VERSION"), "{err}");
    assert!(
        pg.join("notes.txt").exists(),
        "never delete files doska did not make"
    );
}

#[test]
fn racing_serves_on_a_fresh_data_dir_start_exactly_one_server() {
    let tmp = TempDir::new("race");
    let data = tmp.data();
    let results: Vec<Result<Cluster, PgError>> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..3)
            .map(|_| s.spawn(|| Cluster::start(&opts(&data, Mode::Serve))))
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let (won, lost): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(won.len(), 1, "{lost:?}");
    for err in lost {
        let err = err.unwrap_err();
        assert!(matches!(err, PgError::Locked { .. }), "{err:?}");
    }
    let cluster = won.into_iter().next().unwrap().unwrap();
    assert_eq!(sql(&cluster, &["select 1"]), ["1"]);
    cluster.stop().unwrap();
}

/// `postgres` started by hand on the cluster (as its owner), outside any doska.
fn start_foreign_postmaster(cluster_dir: &Path, socket_dir: &Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let meta = std::fs::metadata(cluster_dir).unwrap();
    let (uid, gid) = (
        std::os::unix::fs::MetadataExt::uid(&meta),
        std::os::unix::fs::MetadataExt::gid(&meta),
    );
    std::fs::create_dir_all(socket_dir).unwrap();
    std::os::unix::fs::chown(socket_dir, Some(uid), Some(gid)).unwrap();
    let postgres = std::fs::canonicalize(
        std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join("postgres"))
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin/postgres")),
    )
    .unwrap();
    let mut cmd = Command::new(postgres);
    cmd.arg("-D")
        .arg(cluster_dir)
        .args(["-c", "listen_addresses="])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", socket_dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    let root = is_root();
    // SAFETY: only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(move || {
            if root
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0u64,
                0u64,
                0u64,
            );
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    // Wait only until its pid file exists: attach must cope with a server still starting.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(cluster_dir.join("postmaster.pid"))
        .is_ok_and(|t| t.lines().count() >= 4)
    {
        assert!(
            Instant::now() < deadline,
            "hand-started postgres never wrote its pid file"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

#[test]
fn a_hand_started_postgres_is_joined_by_attach_and_named_by_serve() {
    let tmp = TempDir::new("foreignpm");
    let cluster = Cluster::start(&opts(&tmp.data(), Mode::Serve)).unwrap();
    let cluster_dir = cluster.cluster_dir().unwrap().to_path_buf();
    sql(
        &cluster,
        &[
            "create table t (v text)",
            "insert into t values ('by hand')",
        ],
    );
    cluster.stop().unwrap();

    let mut foreign = start_foreign_postmaster(&cluster_dir, &tmp.0.join("s"));
    let pid = foreign.id() as i32;
    let attach = Cluster::start(&opts(&tmp.data(), Mode::Attach)).unwrap();
    assert!(!attach.owns_server(), "attach must join the running server");
    assert_eq!(sql(&attach, &["select v from t"]), ["by hand"]);
    drop(attach);
    assert!(alive(pid), "attach must not stop a server it joined");

    let started = Instant::now();
    let err = Cluster::start(&opts(&tmp.data(), Mode::Serve)).unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "serve waits first"
    );
    assert!(matches!(err, PgError::ForeignPostmaster { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("kill -INT {pid}")),
        "{err}"
    );

    // SAFETY: our child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    foreign.wait().unwrap();
}

#[test]
fn a_crashed_postgres_is_noticed_and_the_next_start_recovers() {
    let tmp = TempDir::new("crash");
    let cluster = Cluster::start(&opts(&tmp.data(), Mode::Serve)).unwrap();
    sql(
        &cluster,
        &["create table c (v int)", "insert into c values (42)"],
    );
    let pid = cluster.postmaster_pid().unwrap();
    // SAFETY: the postmaster is a child of this process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while cluster.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!cluster.is_running());
    cluster.stop().unwrap();

    let again = Cluster::start(&opts(&tmp.data(), Mode::Serve)).unwrap();
    assert_eq!(sql(&again, &["select v from c"]), ["42"]);
    again.stop().unwrap();
}
