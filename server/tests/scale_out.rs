//! Two doska instances on one database (a PostgreSQL the test starts), with and without Redis
//! (Debian's `redis-server`, started by the test on a free port): supabase-js clients on A and B
//! exchange broadcasts (socket, large, REST, `realtime.send`) and presence, private channels are
//! authorized at join on the receiving instance, a killed instance's presences leave
//! (server/tests/js/scale/cluster.mjs); failed sign-ins spread over A and B trip the limit one
//! instance would; and Redis stopped and started again under running instances: they fall back to
//! PostgreSQL, keep working, and pick Redis up again by themselves.

mod common;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Serving, phx::Phx, request};
use serde_json::{Value, json};

const SECRET: &str = "scale-out-secret-scale-out-secret-0123456789";

/// The test's app: `shout` sends a broadcast from SQL; the private channel `staff` admits Alice
/// only (read and write), as realtime's own tests have it.
const MIGRATION: &str = "
create function public.shout(n int) returns void language sql security definer as $$
  select realtime.send(jsonb_build_object('n', n), 'shout', 'room1', false)
$$;
grant execute on function public.shout(int) to service_role;
create policy staff_read on realtime.messages for select to authenticated
  using (realtime.topic() = 'staff' and auth.uid() = '00000000-0000-4000-8000-00000000a11c');
create policy staff_write on realtime.messages for insert to authenticated
  with check (realtime.topic() = 'staff' and auth.uid() = '00000000-0000-4000-8000-00000000a11c');
";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sign(claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// Debian's `redis-server` on `port`, no persistence; killed when dropped.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    fn start(port: u16, dir: &Path) -> Redis {
        let mut r = Redis {
            child: None,
            port,
            dir: dir.to_path_buf(),
        };
        r.up();
        r
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup installs Debian's redis-server)");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "redis did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it at once (SIGKILL): the instances see their connections break.
    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Keys matching `pattern` (redis-cli --scan).
    fn keys(&self, pattern: &str) -> Vec<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--scan", "--pattern", pattern])
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

/// A PostgreSQL for the instances, started like doska's embedded one but used as an external
/// server (`--database-url`), and the folders the instances share.
struct Setup {
    cluster: Option<doska::pg::Cluster>,
    url: String,
    migrations: PathBuf,
    policies: PathBuf,
}

impl Setup {
    async fn new(tag: &str) -> Setup {
        let dir = common::temp_dir(tag);
        let data = dir.join("pg");
        let (cluster, url) = common::external_cluster(data).await;
        let migrations = dir.join("migrations");
        std::fs::create_dir_all(&migrations).unwrap();
        std::fs::write(migrations.join("0001_scale.sql"), MIGRATION).unwrap();
        let policies = dir.join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        Setup {
            cluster: Some(cluster),
            url,
            migrations,
            policies,
        }
    }

    /// `doska serve` on the database (and Redis, when given), its own data dir.
    async fn serve(&self, tag: &str, redis: Option<String>) -> Serving {
        let mut c = common::doska(&common::temp_dir(tag), &self.migrations, &self.policies);
        c.args([
            "--database-url",
            &self.url,
            "--static",
            "",
            "--jwt-secret",
            SECRET,
        ])
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--auth-autoconfirm", "true"])
        // Only the failed sign-ins' limit is under test: the per-IP one stays out of the way.
        .args(["--rate-limits", "sign_in=1000/60"]);
        if let Some(url) = redis {
            c.args(["--redis-url", &url]);
        }
        tokio::task::spawn_blocking(move || common::spawn_serving(c))
            .await
            .unwrap()
    }

    async fn admin(&self) -> tokio_postgres::Client {
        common::connect(&self.cluster.as_ref().unwrap().config("postgres")).await
    }

    async fn stop(mut self) {
        let cluster = self.cluster.take().unwrap();
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .unwrap()
            .unwrap();
    }
}

fn stop(s: Serving) {
    let mut child = s.child;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {}", s.log.lock().unwrap());
}

fn alive(s: &mut Serving) {
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "doska exited: {}",
        s.log.lock().unwrap()
    );
}

/// Signs `email` up on `a`, then fails its password alternately on `a` and `b`: the first 10
/// failures answer 400 `invalid_credentials`, the 11th (on either) 429 `over_request_rate_limit`.
async fn failed_sign_ins_add_up(a: &str, b: &str, email: &str) {
    let anon = sign(json!({"role": "anon"}));
    let headers = [
        ("apikey", anon.as_str()),
        ("content-type", "application/json"),
    ];
    let up = request(
        "POST",
        &format!("{a}/auth/v1/signup"),
        &headers,
        json!({"email": email, "password": "the-right-password-1"}).to_string(),
    )
    .await;
    assert_eq!(up.status, 200, "{}", up.text());
    let attempt = |base: &str| {
        let url = format!("{base}/auth/v1/token?grant_type=password");
        let body = json!({"email": email, "password": "a-wrong-password"}).to_string();
        async move { request("POST", &url, &headers, body).await }
    };
    for i in 0..10 {
        let r = attempt(if i % 2 == 0 { a } else { b }).await;
        assert_eq!(r.status, 400, "attempt {}: {}", i + 1, r.text());
        assert_eq!(
            r.json()["error_code"],
            "invalid_credentials",
            "{}",
            r.text()
        );
    }
    for base in [a, b] {
        let r = attempt(base).await;
        assert_eq!(r.status, 429, "after 10 failures on {base}: {}", r.text());
        assert_eq!(r.json()["error_code"], "over_request_rate_limit");
        assert!(r.header("retry-after").is_some());
    }
}

/// Runs server/tests/js/scale/cluster.mjs against A and B (it SIGKILLs B at the end).
fn clients_on_both(a: &Serving, b: &Serving) {
    let script = repo().join("server/tests/js/scale/cluster.mjs");
    let out = Command::new("node")
        .arg(&script)
        .current_dir(repo().join("server/tests/js"))
        .env("A_URL", &a.url)
        .env("B_URL", &b.url)
        .env("SECRET", SECRET)
        .env("B_PID", b.child.id().to_string())
        .output()
        .expect("node (scripts/setup installs it and the JS suites' packages)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("scale: ok"),
        "cluster.mjs failed:\n{stdout}\n{}\n--- A:\n{}\n--- B:\n{}",
        String::from_utf8_lossy(&out.stderr),
        a.log.lock().unwrap(),
        b.log.lock().unwrap()
    );
}

async fn bucket_rows(setup: &Setup) -> i64 {
    setup
        .admin()
        .await
        .query_one("select count(*) from doska.rate_buckets", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_broadcast_presence_and_limits_through_postgres() {
    let setup = Setup::new("scale-pg").await;
    let a = setup.serve("scale-pg-a", None).await;
    let mut b = setup.serve("scale-pg-b", None).await;
    failed_sign_ins_add_up(&a.url, &b.url, "pg@school.test").await;
    assert!(
        bucket_rows(&setup).await > 0,
        "the buckets are not in PostgreSQL"
    );
    clients_on_both(&a, &b);
    b.child.wait().unwrap();
    stop(a);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_broadcast_presence_and_limits_through_redis() {
    let setup = Setup::new("scale-redis").await;
    let redis = Redis::start(free_port(), &common::temp_dir("scale-redis-data"));
    let a = setup.serve("scale-redis-a", Some(redis.url())).await;
    let mut b = setup.serve("scale-redis-b", Some(redis.url())).await;
    failed_sign_ins_add_up(&a.url, &b.url, "redis@school.test").await;
    // The buckets are Redis's: none in PostgreSQL.
    assert!(!redis.keys("doska:*:rl:*").is_empty());
    assert_eq!(bucket_rows(&setup).await, 0);
    clients_on_both(&a, &b);
    b.child.wait().unwrap();
    stop(a);
    drop(redis);
    setup.stop().await;
}

async fn metric(base: &str, name: &str) -> Option<f64> {
    let text = common::get(&format!("{base}/metrics")).await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

async fn wait_metric(base: &str, name: &str, want: f64) {
    let started = Instant::now();
    while metric(base, name).await != Some(want) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name} on {base} is {:?}, not {want}",
            metric(base, name).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A broadcast pushed by a raw Phoenix client on `from` reaches one joined on `to`.
async fn broadcast_crosses(from: &str, to: &str, topic: &str) {
    let anon = sign(json!({"role": "anon"}));
    let mut rx = Phx::connect(to, &anon).await.unwrap();
    let mut tx = Phx::connect(from, &anon).await.unwrap();
    for p in [&mut rx, &mut tx] {
        let reply = p.join(topic, json!({}), None).await;
        assert_eq!(reply["status"], "ok", "{reply}");
    }
    let full = format!("realtime:{topic}");
    tx.push(
        Some("1"),
        &full,
        "broadcast",
        json!({"type": "broadcast", "event": "e", "payload": {"topic": topic}}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = rx
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
            .unwrap_or_else(|| panic!("the broadcast on {topic} did not cross"));
        if m.event == "broadcast" {
            assert_eq!(m.payload["payload"]["topic"], topic, "{}", m.payload);
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_stopped_and_started_under_running_instances() {
    let setup = Setup::new("scale-redis-down").await;
    let mut redis = Redis::start(free_port(), &common::temp_dir("scale-redis-down-data"));
    let mut a = setup.serve("scale-down-a", Some(redis.url())).await;
    let mut b = setup.serve("scale-down-b", Some(redis.url())).await;
    broadcast_crosses(&a.url, &b.url, "before").await;

    redis.down();
    // What needs Redis falls back to PostgreSQL: limits still add up, broadcasts still cross,
    // REST and health answer; /metrics says Redis is down.
    failed_sign_ins_add_up(&a.url, &b.url, "down@school.test").await;
    assert!(bucket_rows(&setup).await > 0);
    broadcast_crosses(&b.url, &a.url, "during").await;
    for s in [&a, &b] {
        assert_eq!(common::get(&format!("{}/health", s.url)).await.status, 200);
        wait_metric(&s.url, "doska_redis_up", 0.0).await;
    }

    // Redis returns on the same port: both instances pick it up by themselves.
    redis.up();
    for s in [&a, &b] {
        wait_metric(&s.url, "doska_redis_up", 1.0).await;
    }
    broadcast_crosses(&a.url, &b.url, "after").await;
    failed_sign_ins_add_up(&b.url, &a.url, "after@school.test").await;
    assert!(
        !redis.keys("doska:*:rl:*").is_empty(),
        "limits did not go back to Redis"
    );
    alive(&mut a);
    alive(&mut b);
    stop(a);
    stop(b);
    drop(redis);
    setup.stop().await;
}
