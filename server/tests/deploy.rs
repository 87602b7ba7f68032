//! The deploy files as an operator installs them: `deploy/doska.service` passes `systemd-analyze
//! verify` with real paths, and `deploy/nginx-doska.conf` passes `nginx -t` and, run for real with a
//! throwaway certificate, redirects plain HTTP, carries HTTPS requests to a live doska and upgrades a
//! realtime WebSocket through it. The tools are Debian's (`systemd`, `nginx`, `openssl`, `curl`),
//! installed by scripts/setup.

mod common;

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{BIN, TestDb, temp_dir};
use serde_json::json;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{what} did not run ({e}); scripts/setup installs it"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn verify_unit(dir: &Path, unit: &str) -> Output {
    let path = dir.join("doska.service");
    fs::write(&path, unit).unwrap();
    run(
        Command::new("systemd-analyze").arg("verify").arg(&path),
        "systemd-analyze",
    )
}

#[test]
fn the_systemd_unit_verifies_with_real_paths() {
    let unit = fs::read_to_string(repo().join("deploy/doska.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/doska serve"),
        "{unit}"
    );
    for hardening in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(hardening), "the unit lacks {hardening}");
    }
    let dir = temp_dir("deploy-systemd");
    let ok = verify_unit(&dir, &unit.replace("/usr/local/bin/doska", BIN));
    assert!(
        ok.status.success() && stderr(&ok).trim().is_empty(),
        "systemd-analyze verify: {}",
        stderr(&ok)
    );
    // The check can fail: a misspelt key and a missing binary are reported.
    let typo = verify_unit(
        &dir,
        &unit
            .replace("/usr/local/bin/doska", BIN)
            .replace("DynamicUser=", "DynamicUsr="),
    );
    assert!(stderr(&typo).contains("DynamicUsr"), "{}", stderr(&typo));
    let missing = verify_unit(
        &dir,
        &unit.replace("/usr/local/bin/doska", "/nonexistent/doska"),
    );
    assert!(!missing.status.success(), "{}", stderr(&missing));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shipped site file with a test's certificate, ports and upstream, inside a minimal nginx.conf
/// whose pid, logs and temp files live in `dir`.
fn render_nginx(dir: &Path, upstream: &str, http: u16, https: u16) -> PathBuf {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let o = run(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=school.example.org", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        "openssl",
    );
    assert!(o.status.success(), "openssl: {}", stderr(&o));
    let site = fs::read_to_string(repo().join("deploy/nginx-doska.conf")).unwrap();
    for shipped in [
        "/etc/letsencrypt/live/school.example.org/fullchain.pem",
        "/etc/letsencrypt/live/school.example.org/privkey.pem",
        "server 127.0.0.1:8000",
        "listen 80;",
        "listen 443 ssl http2;",
    ] {
        assert!(site.contains(shipped), "the site file lacks `{shipped}`");
    }
    let site = site
        .replace(
            "/etc/letsencrypt/live/school.example.org/fullchain.pem",
            cert.to_str().unwrap(),
        )
        .replace(
            "/etc/letsencrypt/live/school.example.org/privkey.pem",
            key.to_str().unwrap(),
        )
        .replace("/var/www/letsencrypt", dir.to_str().unwrap())
        .replace("server 127.0.0.1:8000", &format!("server {upstream}"))
        .replace("listen 80;", &format!("listen 127.0.0.1:{http};"))
        .replace(
            "listen 443 ssl http2;",
            &format!("listen 127.0.0.1:{https} ssl http2;"),
        )
        // The test machine may have no IPv6.
        .replace("listen [::]:80;", "")
        .replace("listen [::]:443 ssl http2;", "");
    fs::write(dir.join("site.conf"), site).unwrap();
    let d = dir.display();
    let main = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  \
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n  \
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n"
    );
    let conf = dir.join("nginx.conf");
    fs::write(&conf, main).unwrap();
    conf
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn curl(args: &[&str]) -> String {
    let o = run(
        Command::new("curl")
            .args(["-sk", "--max-time", "5"])
            .args(args),
        "curl",
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_terminates_tls_and_upgrades_realtime_to_doska() {
    let db = TestDb::new().await;
    let base = db.server().await;
    let upstream = base.trim_start_matches("http://").to_string();
    let anon = db.sign(json!({"role": "anon"}));
    let dir = temp_dir("deploy-nginx");
    let (http, https) = (free_port(), free_port());
    let conf = render_nginx(&dir, &upstream, http, https);

    let t = run(
        Command::new("nginx").arg("-t").arg("-c").arg(&conf),
        "nginx",
    );
    assert!(t.status.success(), "nginx -t: {}", stderr(&t));

    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nginx");
    let _nginx = Nginx(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", https)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nginx did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let status = |args: &[&str]| curl(&[&["-o", "/dev/null", "-w", "%{http_code}"], args].concat());
    let https_url = format!("https://127.0.0.1:{https}");
    // Plain HTTP is sent to HTTPS; the ACME challenge directory is served, not redirected.
    let redirect = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        &format!("http://127.0.0.1:{http}/rest/v1/"),
    ]);
    assert!(redirect.starts_with("301 https://"), "{redirect}");
    fs::create_dir_all(dir.join(".well-known/acme-challenge")).unwrap();
    fs::write(dir.join(".well-known/acme-challenge/token"), "proof").unwrap();
    let challenge = curl(&[&format!(
        "http://127.0.0.1:{http}/.well-known/acme-challenge/token"
    )]);
    assert_eq!(challenge, "proof");

    // Through TLS to doska: health, and a REST read that doska answers (its error shape proves it).
    assert_eq!(status(&[&format!("{https_url}/health")]), "200");
    let rest = curl(&[
        "-H",
        &format!("apikey: {anon}"),
        &format!("{https_url}/rest/v1/no_such_table"),
    ]);
    assert!(
        rest.contains("PGRST205") || rest.contains("42P01"),
        "{rest}"
    );

    // A realtime socket upgrades through nginx: the 101 is doska's answer, passed through.
    let ws = curl(&[
        "--http1.1",
        "-i",
        "-N",
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: websocket",
        "-H",
        "Sec-WebSocket-Version: 13",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "--max-time",
        "2",
        &format!("{https_url}/realtime/v1/websocket?apikey={anon}&vsn=1.0.0"),
    ]);
    assert!(ws.starts_with("HTTP/1.1 101"), "{ws}");
    assert!(
        ws.to_ascii_lowercase().contains("upgrade: websocket"),
        "{ws}"
    );
}

/// `deploy/local-cluster.sh` brings up the scaled configuration from Debian's packages
/// (PostgreSQL, Redis, two doska, nginx with the shipped site file), a request through nginx
/// reaches doska, and `stop` leaves nothing running; a second `stop` is harmless.
#[test]
fn local_cluster_starts_answers_through_nginx_and_stops() {
    let dir = temp_dir("local-cluster");
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let (https, http, a, b, pg, redis) =
        (ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]);
    let script = repo().join("deploy/local-cluster.sh");
    let cluster = |what: &str| {
        run(
            Command::new("bash")
                .arg(&script)
                .arg(what)
                .env("DOSKA_BIN", BIN)
                .env("DOSKA_CLUSTER_DIR", &dir)
                .env("LC_HTTPS_PORT", https.to_string())
                .env("LC_HTTP_PORT", http.to_string())
                .env("LC_A_PORT", a.to_string())
                .env("LC_B_PORT", b.to_string())
                .env("LC_PG_PORT", pg.to_string())
                .env("LC_REDIS_PORT", redis.to_string()),
            "deploy/local-cluster.sh",
        )
    };
    let logs = || {
        [
            "a.log",
            "b.log",
            "redis.log",
            "run/pg.log",
            "nginx/error.log",
        ]
        .iter()
        .map(|f| {
            format!(
                "--- {f}\n{}",
                fs::read_to_string(dir.join(f)).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
    };
    let started = cluster("start");
    if !started.status.success() {
        cluster("stop");
        panic!("start failed: {}\n{}", stderr(&started), logs());
    }
    let status = String::from_utf8_lossy(&cluster("status").stdout).into_owned();
    // Through nginx (TLS, self-signed): health, and REST answered by doska with the anon key of
    // the database's shared secret.
    let https_url = format!("https://127.0.0.1:{https}");
    let health = curl(&["-w", " %{http_code}", &format!("{https_url}/health")]);
    let keys = run(
        Command::new(BIN)
            .arg("keys")
            .arg("--data-dir")
            .arg(dir.join("a"))
            .arg("--database-url")
            .arg(format!(
                "host={} port={pg} user=postgres dbname=postgres",
                dir.join("run").display()
            )),
        "doska keys",
    );
    let anon = serde_json::from_slice::<serde_json::Value>(&keys.stdout)
        .map(|k| k["anon_key"].as_str().unwrap_or("").to_string())
        .unwrap_or_default();
    let rest = curl(&[
        "-w",
        " %{http_code}",
        "-H",
        &format!("apikey: {anon}"),
        &format!("{https_url}/rest/v1/"),
    ]);
    let direct: Vec<String> = [a, b]
        .iter()
        .map(|p| {
            curl(&[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://127.0.0.1:{p}/health"),
            ])
        })
        .collect();
    let stopped = cluster("stop");
    let after = String::from_utf8_lossy(&cluster("status").stdout).into_owned();
    let again = cluster("stop");
    assert!(health.ends_with(" 200"), "{health}\n{}", logs());
    assert!(
        rest.ends_with(" 200") && rest.contains("swagger"),
        "{rest}\n{}",
        logs()
    );
    assert_eq!(direct, ["200", "200"], "{}", logs());
    for part in ["nginx.pid", "a.pid", "b.pid", "redis.pid", "postmaster.pid"] {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("running") && l.contains(part)),
            "{part} not running after start:\n{status}"
        );
    }
    assert!(stopped.status.success(), "stop: {}", stderr(&stopped));
    assert!(
        !after.contains("running"),
        "still running after stop:\n{after}"
    );
    assert!(again.status.success(), "a second stop: {}", stderr(&again));
    for port in [https, http, a, b, redis] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open after stop"
        );
    }
}
