//! A database that goes away comes back without restarting doska. Embedded: the postmaster is
//! SIGKILLed under a steady write load through REST; doska restarts it by itself, /health turns
//! 200 again, every write acknowledged before or after is in the table, and a realtime subscriber
//! that stayed connected receives the changes made after recovery — each once. External
//! (`--database-url`): a PostgreSQL the test runs is stopped and started again; doska answers 503
//! meanwhile and serves again afterwards. And an embedded PostgreSQL that keeps dying makes doska
//! exit non-zero, so its service manager restarts it.
//!
//! No timing is asserted: every wait polls with a generous deadline.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::phx::Phx;
use serde_json::json;

const SECRET: &str = "pg-recovery-secret-0123456789-0123456789-ab";
/// How long anything may take to come back (PostgreSQL's crash recovery, reconnect backoff).
const PATIENCE: Duration = Duration::from_secs(120);

fn service_key() -> String {
    doska::jwt::sign(SECRET.as_bytes(), &json!({"role": "service_role"}))
}

/// A data dir whose migration makes `items`, published to realtime.
fn data_dir(tag: &str) -> PathBuf {
    let data = common::temp_dir(tag);
    std::fs::create_dir_all(data.join("migrations")).unwrap();
    std::fs::write(
        data.join("migrations/0001_items.sql"),
        "create table if not exists public.items (id bigint primary key);
         do $$ begin
           if not exists (select 1 from pg_publication_tables
                          where pubname = 'supabase_realtime' and tablename = 'items') then
             alter publication supabase_realtime add table public.items;
           end if;
         end $$;",
    )
    .unwrap();
    data
}

fn serve(data: &Path, extra: &[&str]) -> common::Serving {
    let mut serve = common::doska(data, &data.join("migrations"), &data.join("no-policies"));
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--jwt-secret", SECRET])
        .args(extra);
    common::spawn_serving(serve)
}

/// `POST /rest/v1/items {"id"}`: the status, or 0 when no answer came.
async fn insert(url: &str, key: &str, id: i64) -> u16 {
    let bearer = format!("Bearer {key}");
    let headers = [
        ("apikey", key),
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
        ("prefer", "return=minimal"),
    ];
    let target = format!("{url}/rest/v1/items");
    let req = common::request("POST", &target, &headers, format!("{{\"id\":{id}}}"));
    tokio::time::timeout(Duration::from_secs(60), req)
        .await
        .map_or(0, |r| r.status)
}

async fn health(url: &str) -> u16 {
    tokio::time::timeout(
        Duration::from_secs(10),
        common::get(&format!("{url}/health")),
    )
    .await
    .map_or(0, |r| r.status)
}

/// Polls `/health` until it answers `want`.
async fn wait_health(url: &str, want: u16, log: &Mutex<String>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while health(url).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health never answered {want}; log:\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_log(log: &Mutex<String>, needle: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !log.lock().unwrap().contains(needle) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a writer saw: ids acknowledged with 201, ids whose insert met 409 (an earlier attempt
/// committed but its answer was lost), and how many attempts failed otherwise.
#[derive(Default)]
struct Writes {
    acked: Vec<i64>,
    conflicted: Vec<i64>,
    failed: usize,
}

/// Inserts ids 1, 2, … one after another until `stop`, retrying an id until it commits.
fn spawn_writer(
    url: String,
    stop: Arc<AtomicBool>,
    writes: Arc<Mutex<Writes>>,
) -> tokio::task::JoinHandle<()> {
    let key = service_key();
    tokio::spawn(async move {
        let mut id = 1;
        while !stop.load(Ordering::SeqCst) {
            match insert(&url, &key, id).await {
                201 => {
                    writes.lock().unwrap().acked.push(id);
                    id += 1;
                }
                409 => {
                    writes.lock().unwrap().conflicted.push(id);
                    id += 1;
                }
                _ => {
                    writes.lock().unwrap().failed += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// A subscriber to INSERTs on `items` that collects the ids it receives (with heartbeats, so
/// it outlives the idle timeout) until `stop`.
async fn spawn_subscriber(
    url: &str,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<i64>>>,
) -> tokio::task::JoinHandle<()> {
    let key = service_key();
    let mut phx = Phx::connect(url, &key).await.expect("connecting");
    let config =
        json!({"postgres_changes": [{"event": "INSERT", "schema": "public", "table": "items"}]});
    let reply = phx.join("items", config, None).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    tokio::spawn(async move {
        let mut beat = tokio::time::Instant::now();
        while !stop.load(Ordering::SeqCst) {
            if beat.elapsed() > Duration::from_secs(15) {
                phx.push(None, "phoenix", "heartbeat", json!({})).await;
                beat = tokio::time::Instant::now();
            }
            let Some(m) = phx.next(Duration::from_millis(500)).await else {
                if let Some(why) = phx.ended() {
                    panic!("the subscriber's socket ended: {why}");
                }
                continue;
            };
            if m.event == "postgres_changes" {
                let id = m.payload["data"]["record"]["id"].as_i64().expect("an id");
                seen.lock().unwrap().push(id);
            }
        }
    })
}

/// Every id in `items`, read through REST.
async fn ids_in_table(url: &str) -> HashSet<i64> {
    let key = service_key();
    let bearer = format!("Bearer {key}");
    let res = common::get_with(
        &format!("{url}/rest/v1/items?select=id"),
        &[("apikey", key.as_str()), ("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

/// The cluster's postmaster pid, from its `postmaster.pid` (the cluster is `<data>/pg`: a temp
/// dir the `postgres` account can reach is never relocated).
fn postmaster_pid(data: &Path) -> Option<i32> {
    std::fs::read_to_string(data.join("pg/postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn sigkill(pid: i32) {
    // SAFETY: kill only sends a signal; the pid is the test's doska's PostgreSQL.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
}

/// Waits until `count` acknowledged writes more than `from` were made.
async fn wait_acked(writes: &Mutex<Writes>, from: usize, count: usize, log: &Mutex<String>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while writes.lock().unwrap().acked.len() < from + count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes stopped being acknowledged; log:\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the subscriber has seen every id in `want`.
async fn wait_seen(seen: &Mutex<Vec<i64>>, want: &[i64], log: &Mutex<String>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let missing: Vec<i64> = {
            let got: HashSet<i64> = seen.lock().unwrap().iter().copied().collect();
            want.iter()
                .copied()
                .filter(|id| !got.contains(id))
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscriber never received {missing:?}; log:\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stop_doska(mut serving: common::Serving) -> std::process::ExitStatus {
    // SAFETY: our child.
    unsafe { libc::kill(serving.child.id() as i32, libc::SIGTERM) };
    serving.child.wait().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_embedded_postgres_is_restarted_and_nothing_acknowledged_is_lost() {
    let data = data_dir("pg-kill");
    let d = data.clone();
    let doska = tokio::task::spawn_blocking(move || serve(&d, &[]))
        .await
        .unwrap();
    let (url, log) = (doska.url.clone(), doska.log.clone());
    // Changes committed before the slot's consistent point are never decoded.
    wait_log(&log, "streaming changes from the replication slot").await;

    let (stop_writer, stop_subscriber) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = spawn_subscriber(&url, stop_subscriber.clone(), seen.clone()).await;
    let writes = Arc::new(Mutex::new(Writes::default()));
    let writer = spawn_writer(url.clone(), stop_writer.clone(), writes.clone());
    wait_acked(&writes, 0, 30, &log).await;

    let pid = postmaster_pid(&data).expect("the postmaster's pid");
    sigkill(pid);
    let acked_at_kill = writes.lock().unwrap().acked.len();
    // Restarted by doska itself (a new postmaster), then serving again.
    wait_log(&log, "PostgreSQL restarted after a crash").await;
    assert_ne!(postmaster_pid(&data), Some(pid), "a new postmaster runs");
    wait_health(&url, 200, &log).await;
    wait_acked(&writes, acked_at_kill, 30, &log).await;

    stop_writer.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let writes = std::mem::take(&mut *writes.lock().unwrap());
    let after_recovery: Vec<i64> = writes.acked[acked_at_kill..].to_vec();

    // Every acknowledged write is in the table.
    let stored = ids_in_table(&url).await;
    let lost: Vec<i64> = writes
        .acked
        .iter()
        .chain(&writes.conflicted)
        .copied()
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");

    // The subscriber that stayed connected gets the changes made after recovery, each once.
    wait_seen(&seen, &after_recovery, &log).await;
    stop_subscriber.store(true, Ordering::SeqCst);
    subscriber.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "a change delivered twice: {seen:?}"
    );

    // The outage is logged, not once per request.
    let text = log.lock().unwrap().clone();
    let unavailable = text.matches("database unavailable").count();
    if writes.failed > 1 {
        assert!(
            unavailable < writes.failed,
            "{unavailable} WARN lines for {} failed requests",
            writes.failed
        );
    }
    assert!(!text.contains(SECRET), "the JWT secret reached the log");

    let status = stop_doska(doska);
    assert!(
        status.success(),
        "doska exits cleanly after recovery: {status}"
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_postgres_that_keeps_dying_makes_doska_exit_non_zero() {
    let data = data_dir("pg-dying");
    let d = data.clone();
    let mut doska = tokio::task::spawn_blocking(move || serve(&d, &[]))
        .await
        .unwrap();
    let (url, log) = (doska.url.clone(), doska.log.clone());
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    let mut kills = 0;
    let mut last = None;
    let status = loop {
        if let Some(status) = doska.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "doska did not give up after {kills} kills; log:\n{}",
            log.lock().unwrap()
        );
        // Kill each new postmaster once it serves.
        if let Some(pid) = postmaster_pid(&data)
            && Some(pid) != last
            && health(&url).await == 200
        {
            sigkill(pid);
            kills += 1;
            last = Some(pid);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "doska must exit non-zero: {status}");
    assert_eq!(
        kills,
        doska::pg::MAX_RESTARTS + 1,
        "gave up after the restart budget"
    );
    assert!(log.lock().unwrap().contains("giving up"));
    // Nothing left running on the cluster.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while postmaster_alive(&data) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "PostgreSQL left running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_dir_all(&data);
}

fn postmaster_alive(data: &Path) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    postmaster_pid(data).is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_database_that_stops_and_starts_again_is_served_without_a_restart() {
    // The "external" server: a PostgreSQL this test runs (doska's own starter, on its own dir).
    let pg_data = common::temp_dir("pg-external");
    let start = {
        let pg_data = pg_data.clone();
        move || {
            doska::pg::Cluster::start(&doska::pg::EmbeddedOptions {
                data_dir: pg_data.clone(),
                mode: doska::pg::Mode::Serve,
            })
            .expect("starting the external PostgreSQL")
        }
    };
    let cluster = tokio::task::spawn_blocking(start.clone()).await.unwrap();
    let database_url = format!(
        "host={} port={} user=postgres dbname=postgres",
        cluster.socket_dir().display(),
        cluster.port()
    );
    let data = data_dir("pg-ext-doska");
    let d = data.clone();
    let doska = tokio::task::spawn_blocking(move || serve(&d, &["--database-url", &database_url]))
        .await
        .unwrap();
    let (url, log) = (doska.url.clone(), doska.log.clone());
    wait_log(&log, "streaming changes from the replication slot").await;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = spawn_subscriber(&url, stop.clone(), seen.clone()).await;
    let key = service_key();
    assert_eq!(insert(&url, &key, 1).await, 201);

    // Down: doska stays up and says so.
    tokio::task::spawn_blocking(move || cluster.stop().unwrap())
        .await
        .unwrap();
    wait_health(&url, 503, &log).await;
    let down = insert(&url, &key, 2).await;
    assert_eq!(down, 503, "a write while the database is down");

    // Back: the same doska serves again, and realtime streams again.
    let cluster = tokio::task::spawn_blocking(start).await.unwrap();
    wait_health(&url, 200, &log).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while insert(&url, &key, 2).await != 201 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes never worked again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(insert(&url, &key, 3).await, 201);
    wait_seen(&seen, &[1, 2, 3], &log).await;
    stop.store(true, Ordering::SeqCst);
    subscriber.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, [1, 2, 3], "each change once, in order");
    assert_eq!(
        ids_in_table(&url).await,
        HashSet::from([1, 2, 3]),
        "the table after the outage"
    );
    assert!(doska.child.id() > 0);
    let status = stop_doska(doska);
    assert!(status.success(), "{status}");
    tokio::task::spawn_blocking(move || cluster.stop().unwrap())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&pg_data);
}
