//! Test harness: one real PostgreSQL per test binary, started by the same code as doska's embedded
//! default, and a fresh database per test (so tests run in parallel), with doska's internal schema
//! applied; plus an in-process doska HTTP server on a random port and a small HTTP client.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use doska::{
    config::{Config, Settings},
    db, pg,
    state::SharedState,
};
use http_body_util::{BodyExt, Full};
use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};

pub mod manual_pg;
pub mod phx;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

static CLUSTER: OnceLock<pg::Cluster> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The doska binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_doska");

/// A `doska` command on a data dir, migrations and policies folder, with no DOSKA_LOG and no colour.
pub fn doska(data: &Path, migrations: &Path, policies: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--data-dir")
        .arg(data)
        .arg("--migrations")
        .arg(migrations)
        .arg("--policies")
        .arg(policies)
        .env_remove("DOSKA_LOG")
        .env("NO_COLOR", "1");
    c
}

/// A `doska serve` a test spawned and saw start.
pub struct Serving {
    pub child: Child,
    /// The URL of its "listening" line (`fields.url`).
    pub url: String,
    /// Its JSON log lines up to and including the "listening" one.
    pub started: Vec<serde_json::Value>,
    /// All it wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

/// Spawns `serve` (a `doska serve … --log-format json`) with stderr captured, and waits up to 60 s
/// for its "listening" line; panics with the log when that does not come.
pub fn spawn_serving(mut serve: Command) -> Serving {
    let mut child = serve
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawning doska");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let log2 = log.clone();
    std::thread::spawn(move || {
        let (mut tx, mut started) = (Some(tx), Vec::new());
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log2.lock().unwrap().push_str(&format!("{line}\n"));
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if tx.is_none() {
                continue;
            }
            let url = v["fields"]["url"].as_str().map(str::to_string);
            started.push(v);
            if let Some(url) = url {
                let _ = tx.take().unwrap().send((url, std::mem::take(&mut started)));
            }
        }
    });
    let (url, started) = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("doska did not start: {}", log.lock().unwrap()));
    Serving {
        child,
        url,
        started,
        log,
    }
}

/// A folder under /tmp the `postgres` user can reach (the home of root is 0700).
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("doska-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a temp dir");
    dir
}

/// Removes what earlier test processes that are gone left in the temp folder: their clusters and
/// every other [`temp_dir`] (`doska-<tag>-<pid>-<n>`).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("doska-") else {
            continue;
        };
        let mut tail = rest.rsplit('-');
        let (Some(n), Some(pid)) = (tail.next(), tail.next()) else {
            continue;
        };
        let (Ok(_), Ok(pid)) = (n.parse::<u64>(), pid.parse::<i32>()) else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks that the process exists.
        if pid > 0 && tail.next().is_some() && unsafe { libc::kill(pid, 0) } != 0 {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

pub fn cluster() -> &'static pg::Cluster {
    CLUSTER.get_or_init(|| {
        sweep_stale();
        let dir = temp_dir("cluster");
        pg::Cluster::start(&pg::EmbeddedOptions {
            data_dir: dir,
            mode: pg::Mode::Serve,
        })
        .expect("starting the test PostgreSQL")
    })
}

/// A PostgreSQL of its own in `data_dir`, started like doska's embedded one, for tests that use it
/// as an external server (`--database-url`): the cluster (stopped when dropped) and its URL.
pub async fn external_cluster(data_dir: PathBuf) -> (pg::Cluster, String) {
    let cluster = tokio::task::spawn_blocking(move || {
        pg::Cluster::start(&pg::EmbeddedOptions {
            data_dir,
            mode: pg::Mode::Serve,
        })
    })
    .await
    .expect("the start-up task")
    .expect("starting an external PostgreSQL");
    let url = format!(
        "host={} port={} user=postgres dbname=postgres",
        cluster.socket_dir().display(),
        cluster.port()
    );
    (cluster, url)
}

/// The storage core's actor for an authenticated user `sub`, as a request with `method` on
/// `/object` would make it.
pub fn storage_user(sub: &str, method: &str) -> doska::storage::core::Actor {
    doska::storage::core::Actor {
        caller: doska::jwt::Caller {
            role: "authenticated".into(),
            claims: serde_json::json!({"sub": sub, "role": "authenticated"}).into(),
            token: None,
        },
        method: method.into(),
        path: "/object".into(),
        headers: serde_json::json!({}),
    }
}

pub async fn connect(config: &tokio_postgres::Config) -> Client {
    let (client, conn) = config
        .connect(NoTls)
        .await
        .expect("connecting to the test PostgreSQL");
    tokio::spawn(conn);
    client
}

pub struct TestDb {
    pub name: String,
    pub state: SharedState,
    admin: Client,
    shutdown: watch::Sender<bool>,
}

impl TestDb {
    pub async fn new() -> TestDb {
        TestDb::with_settings(Settings::default()).await
    }

    pub async fn with_settings(settings: Settings) -> TestDb {
        let cluster = tokio::task::spawn_blocking(cluster).await.unwrap();
        let name = format!(
            "t{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let boot = connect(&cluster.config("postgres")).await;
        boot.batch_execute(&format!("create database {name}"))
            .await
            .expect("create database");
        let mut admin = connect(&cluster.config(&name)).await;
        db::internal::apply(&mut admin)
            .await
            .expect("internal migrations");
        let settings = Settings {
            jwt_secret: Some(JWT_SECRET.into()),
            data_dir: Some(temp_dir("data")),
            migrations: Some(temp_dir("migrations")),
            db_pool: Some(4),
            ..Default::default()
        }
        .over(settings);
        let config = Config::resolve(settings).expect("test config");
        db::grants::apply_default_grants(&admin, config.default_grants, &config.db_schemas)
            .await
            .expect("default grants");
        let (shutdown, rx) = watch::channel(false);
        let mut target = db::pools::Target::embedded(cluster.config(&name));
        target.external = false;
        let admin_pool = db::pools::pool(target.admin.clone(), 2).unwrap();
        let pool =
            db::pools::pool(target.authenticator(JWT_SECRET.as_bytes()), config.db_pool).unwrap();
        let state = Arc::new(doska::state::AppState {
            config: Arc::new(config),
            admin: admin_pool,
            commit_group: db::group::Group::new(pool.clone(), db::group::RUNNING),
            pool,
            verifier: doska::jwt::Verifier::hs256(JWT_SECRET.as_bytes()),
            jwt_secret: Arc::from(JWT_SECRET.as_bytes()),
            metrics: Default::default(),
            shutdown: rx,
        });
        TestDb {
            name,
            state,
            admin,
            shutdown,
        }
    }

    /// A superuser connection to this test's database.
    /// The first column of the one row `sql` returns, run as the superuser.
    pub async fn value<T: for<'a> tokio_postgres::types::FromSql<'a>>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> T {
        self.admin()
            .query_one(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    pub fn admin(&self) -> &Client {
        &self.admin
    }

    pub fn pool(&self) -> &deadpool_postgres::Pool {
        &self.state.pool
    }

    /// A live doska HTTP server on this database; returns its base URL.
    pub async fn server(&self) -> String {
        self.serve(&self.doors().await).await
    }

    /// The doors `doska serve` would open on this database (auth's settings from the config).
    pub async fn doors(&self) -> doska::startup::Doors {
        let cfg = doska::auth::AuthConfig::from_config(&self.state.config).expect("auth settings");
        self.doors_with_auth(cfg).await
    }

    /// The doors, with these auth settings (tests set their own rate limits, mail relay, keys).
    pub async fn doors_with_auth(&self, cfg: doska::auth::AuthConfig) -> doska::startup::Doors {
        let auth = doska::auth::Auth::new(cfg).expect("auth settings");
        doska::startup::Doors::open(&self.state, auth)
    }

    /// A live server whose realtime door is fed from a replication slot named `slot` (started
    /// here); returns its base URL once the slot streams.
    pub async fn streaming_server(&self, slot: &str) -> String {
        use doska::realtime::log;
        let options = doska::realtime::source::SourceOptions {
            slot: slot.to_string(),
            ..Default::default()
        };
        let before = log::floor(&self.state.admin).await.unwrap();
        let doors = self.doors().await;
        tokio::spawn(doska::realtime::pipeline::run(
            self.state.clone(),
            doors.hub.clone(),
            cluster().config(&self.name),
            options,
        ));
        // Streaming has started once the new slot raised the log's floor to its consistent point
        // (changes committed before that point are never decoded).
        for _ in 0..600 {
            if log::floor(&self.state.admin).await.unwrap() > before {
                return self.serve(&doors).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the replication slot did not start streaming");
    }

    /// A live doska HTTP server with `doors` on this database; returns its base URL.
    pub async fn serve(&self, doors: &doska::startup::Doors) -> String {
        serve_router(doors.router(&self.state), self.shutdown.subscribe()).await
    }

    pub fn sign(&self, claims: serde_json::Value) -> String {
        doska::jwt::sign(JWT_SECRET.as_bytes(), &claims)
    }
}

/// Serves `router` on a fresh local port until `shutdown`; returns its base URL.
pub async fn serve_router(
    router: std::sync::Arc<doska::http::router::Router>,
    shutdown: watch::Receiver<bool>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(doska::http::server::run(
        listener,
        None,
        router,
        shutdown,
        Duration::from_secs(5),
    ));
    url
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One HTTP/1.1 request over a fresh connection.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response {
    let uri: http::Uri = url.parse().expect("test URL");
    let authority = uri.authority().expect("URL with host").clone();
    let stream = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header("host", authority.as_str());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = sender
        .send_request(req.body(Full::new(body.into())).unwrap())
        .await
        .expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Response {
        status,
        headers,
        body,
    }
}

pub async fn get(url: &str) -> Response {
    request("GET", url, &[], Bytes::new()).await
}

/// A GET with request headers.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Response {
    request("GET", url, headers, Bytes::new()).await
}
