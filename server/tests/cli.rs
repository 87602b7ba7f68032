//! The `doska` binary as an operator runs it: serve with its own PostgreSQL, stop with Ctrl-C or die
//! by SIGKILL without leaving PostgreSQL behind, keep data across restarts, refuse a second serve on
//! one data dir, migrate (broken and changed files), keys, config, and one clear line for bad input.

mod common;

use common::{BIN, Serving};

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn doska(data: &Path, migrations: &Path) -> Command {
    common::doska(data, migrations, &data.join("no-policies"))
}

/// Starts `doska serve` on a random port and waits for its "listening" line.
fn serve(data: &Path, migrations: &Path) -> Serving {
    serve_with(data, migrations, &[])
}

fn serve_with(data: &Path, migrations: &Path, extra: &[&str]) -> Serving {
    let mut serve = doska(data, migrations);
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(extra);
    common::spawn_serving(serve)
}

/// Runs `doska migrate`, which must succeed; returns what it printed.
fn migrate_ok(data: &Path, mig: &Path) -> String {
    let out = doska(data, mig).arg("migrate").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn postmaster_pid(data: &Path) -> i32 {
    // The cluster lives in the data dir, or where `pg-location` says.
    let cluster = std::fs::read_to_string(data.join("pg-location"))
        .map(|s| std::path::PathBuf::from(s.trim()))
        .unwrap_or_else(|_| data.join("pg"));
    let pidfile = std::fs::read_to_string(cluster.join("postmaster.pid")).expect("postmaster.pid");
    pidfile.lines().next().unwrap().trim().parse().unwrap()
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); check its state too.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ")
}

fn wait_gone(pid: i32, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

async fn health(url: &str) -> u16 {
    common::get(&format!("{url}/health")).await.status
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_stop_with_sigint_restart_keeps_data() {
    let data = common::temp_dir("cli-serve");
    let mig = common::temp_dir("cli-mig");
    std::fs::write(mig.join("001_notes.sql"), "create table notes (id int primary key, body text);\ninsert into notes values (1, 'kept');\n").unwrap();
    let mut s = serve(&data, &mig);
    assert_eq!(health(&s.url).await, 200);
    let pm = postmaster_pid(&data);
    assert!(alive(pm));

    // A second serve on the same data dir is refused while the first runs.
    let out = doska(&data, &mig)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already") || err.contains("in use") || err.contains("running"),
        "{err}"
    );
    assert!(!err.contains("panicked"));

    // Ctrl-C: doska drains and stops its PostgreSQL, then exits 0.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGINT) };
    let status = s.child.wait().unwrap();
    assert!(
        status.success(),
        "exit {status:?}: {}",
        s.log.lock().unwrap()
    );
    assert!(
        wait_gone(pm, Duration::from_secs(10)),
        "postgres {pm} outlived doska"
    );

    // Restart: the data is still there, and the migration is not applied twice.
    let mut s = serve(&data, &mig);
    assert_eq!(health(&s.url).await, 200);
    assert!(!s.log.lock().unwrap().contains("applied migration"));
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    assert!(s.child.wait().unwrap().success());
    assert_eq!(migrate_ok(&data, &mig), "no pending migrations");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_leaves_no_orphan_postgres() {
    let data = common::temp_dir("cli-kill");
    let mig = common::temp_dir("cli-kill-mig");
    let mut s = serve(&data, &mig);
    assert_eq!(health(&s.url).await, 200);
    let pm = postmaster_pid(&data);
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    assert!(
        wait_gone(pm, Duration::from_secs(10)),
        "postgres {pm} outlived a SIGKILLed doska"
    );
    // And the next start is not blocked by what the crash left.
    let mut s = serve(&data, &mig);
    assert_eq!(health(&s.url).await, 200);
    s.child.kill().unwrap();
    s.child.wait().unwrap();
}

#[test]
fn migrate_reports_broken_and_changed_files() {
    let data = common::temp_dir("cli-migrate");
    let mig = common::temp_dir("cli-migrate-files");
    std::fs::write(mig.join("001_ok.sql"), "create table ok (id int);\n").unwrap();
    std::fs::write(
        mig.join("002_bad.sql"),
        "create table half (id int);\n\ncreate tabel oops (id int);\n",
    )
    .unwrap();
    let out = doska(&data, &mig).arg("migrate").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("002_bad.sql") && err.contains("line 3") && err.contains("syntax error"),
        "{err}"
    );
    assert_eq!(
        err.trim()
            .lines()
            .filter(|l| l.starts_with("doska:"))
            .count(),
        1,
        "{err}"
    );

    std::fs::write(mig.join("002_bad.sql"), "create table half (id int);\n").unwrap();
    // 001 applied in the failed run; only 002 now.
    assert_eq!(migrate_ok(&data, &mig), "applied 002_bad.sql");

    std::fs::write(mig.join("001_ok.sql"), "create table ok (id bigint);\n").unwrap();
    let out = doska(&data, &mig).arg("migrate").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("001_ok.sql") && err.contains("changed"),
        "{err}"
    );
}

#[test]
fn keys_verify_with_the_kept_secret_and_config_masks_it() {
    let data = common::temp_dir("cli-keys");
    let mig = common::temp_dir("cli-keys-mig");
    let out = doska(&data, &mig).arg("keys").output().unwrap();
    assert!(out.status.success());
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = std::fs::read_to_string(data.join("jwt-secret")).unwrap();
    let v = doska::jwt::Verifier::hs256(secret.trim().as_bytes());
    assert_eq!(
        v.verify(keys["anon_key"].as_str().unwrap()).unwrap()["role"],
        "anon"
    );
    let svc = v
        .verify(keys["service_role_key"].as_str().unwrap())
        .unwrap();
    assert_eq!(svc["role"], "service_role");
    assert!(svc.get("aud").is_none());
    // Same secret next time.
    let again: serde_json::Value =
        serde_json::from_slice(&doska(&data, &mig).arg("keys").output().unwrap().stdout).unwrap();
    assert!(v.verify(again["anon_key"].as_str().unwrap()).is_ok());

    let out = doska(&data, &mig)
        .args([
            "config",
            "--jwt-secret",
            "a-very-secret-value-that-is-long-enough-1234",
        ])
        .env("DOSKA_DATABASE_URL", "postgres://u:hunter2@db.example/app")
        .env(
            "DOSKA_REDIS_URL",
            "redis://:redis-hunter3@cache.example:6379",
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        !text.contains("a-very-secret") && !text.contains("hunter2") && !text.contains("hunter3"),
        "{text}"
    );
    assert!(
        text.contains("redis_url = \"redis://:********@cache.example:6379\""),
        "{text}"
    );
    assert!(text.contains("jwt_secret = \"********\""), "{text}");
}

#[test]
fn config_precedence_flag_env_file() {
    let dir = common::temp_dir("cli-cfg");
    std::fs::write(
        dir.join("doska.toml"),
        "listen = \"127.0.0.1:7001\"\ndb_pool = 3\nsite_url = \"http://file\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "--config"])
        .arg(dir.join("doska.toml"))
        .args(["--listen", "127.0.0.1:7003"])
        .env("DOSKA_LISTEN", "127.0.0.1:7002")
        .env("DOSKA_DB_POOL", "5")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen = \"127.0.0.1:7003\""), "{text}");
    assert!(text.contains("db_pool = 5"), "{text}");
    assert!(text.contains("site_url = \"http://file\""), "{text}");
}

#[test]
fn bad_input_gets_one_clear_line() {
    let data = common::temp_dir("cli-bad");
    let mig = common::temp_dir("cli-bad-mig");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let cfg = data.join("broken.toml");
    std::fs::write(&cfg, "listen = [\n").unwrap();
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "port in use",
            vec![
                "serve".into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
            ],
            "cannot listen",
        ),
        (
            "data dir under a file",
            vec![
                "serve".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--data-dir".into(),
                "/etc/hostname/sub".into(),
            ],
            "data dir",
        ),
        (
            "malformed config",
            vec!["serve".into(), "--config".into(), cfg.display().to_string()],
            "broken.toml",
        ),
        (
            "database that does not answer",
            vec![
                "serve".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--database-url".into(),
                "postgres://doska@127.0.0.1:1/none?connect_timeout=2".into(),
            ],
            "cannot connect",
        ),
        (
            "redis url that is not redis://",
            vec![
                "serve".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--database-url".into(),
                "postgres://doska@127.0.0.1:1/none?connect_timeout=2".into(),
                "--redis-url".into(),
                "https://cache.example".into(),
            ],
            "--redis-url https://cache.example: use redis://",
        ),
        (
            "short secret",
            vec!["keys".into(), "--jwt-secret".into(), "short".into()],
            "jwt_secret",
        ),
        (
            "bad trusted proxy",
            vec![
                "keys".into(),
                "--trusted-proxies".into(),
                "10.0.0.0/40".into(),
            ],
            "trusted_proxies",
        ),
    ];
    for (name, args, expect) in cases {
        let out = doska(&data, &mig).args(&args).output().unwrap();
        assert!(!out.status.success(), "{name}: exit 0");
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.trim().lines().last().unwrap_or("");
        assert!(
            last.starts_with("doska: ") && last.contains(expect),
            "{name}: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{name}: {err}"
        );
    }
    drop(busy);
    // Nothing was left running for the port-in-use case.
    assert!(!data.join("pg").join("postmaster.pid").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn external_database_with_logical_wal_works_and_without_is_refused() {
    // An external server with wal_level=logical: doska's own embedded code path starts one for us.
    let ext_dir = common::temp_dir("cli-ext");
    let (cluster, url) = common::external_cluster(ext_dir).await;
    let data = common::temp_dir("cli-ext-data");
    let mig = common::temp_dir("cli-ext-mig");
    std::fs::write(mig.join("001.sql"), "create table ext_t (id int);\n").unwrap();
    let s = serve_with(&data, &mig, &["--database-url", &url]);
    let (served, mut child) = (s.url.clone(), s.child);
    let _log = s.log;
    assert_eq!(health(&served).await, 200);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    // No embedded cluster was made, and the external one got the migration.
    assert!(!data.join("pg").exists());
    let client = common::connect(&cluster.config("postgres")).await;
    let n: i64 = client
        .query_one("select count(*) from doska.migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    drop(client);
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap()
        .unwrap();

    // wal_level=replica: refused, saying what to set.
    let plain = tokio::task::spawn_blocking(|| {
        common::manual_pg::ManualPostgres::start("plainpg", &[("wal_level", "replica")], None)
    })
    .await
    .unwrap();
    let out = doska(&data, &mig)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &plain.socket_url(5432),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wal_level = logical"), "{err}");
    drop(plain);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_log_pipe_does_not_break_requests() {
    let data = common::temp_dir("cli-pipe");
    let mig = common::temp_dir("cli-pipe-mig");
    let mut child = doska(&data, &mig)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut url = None;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(u) = v["fields"]["url"].as_str()
        {
            url = Some(u.to_string());
            break;
        }
    }
    // The reader is gone: every later log line meets a closed pipe.
    let url = url.expect("listening line");
    for _ in 0..3 {
        assert_eq!(health(&url).await, 200);
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Started with a soft limit of 1,024 open files (systemd's default), doska raises it to the hard
/// limit, so its sockets are not capped near 1,000 clients.
#[tokio::test]
async fn serve_raises_its_open_files_limit_to_the_hard_limit() {
    use std::os::unix::process::CommandExt;
    let data = common::temp_dir("cli-nofile");
    let mig = common::temp_dir("cli-nofile-mig");
    let mut serve = doska(&data, &mig);
    serve.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"]);
    // SAFETY: only setrlimit between fork and exec, on a plain struct.
    unsafe {
        serve.pre_exec(|| {
            let mut l = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
            l.rlim_cur = l.rlim_max.min(1024);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
            Ok(())
        });
    }
    let mut s = common::spawn_serving(serve);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    // "Max open files <soft> <hard> files"
    assert_eq!(fields[3], fields[4], "{line}");
}
