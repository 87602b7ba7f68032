//! Realtime across instances: two `doska serve --database-url …` on one PostgreSQL (started by the
//! test, `wal_level=logical`). One holds the replication slot and writes the change log (its
//! `/metrics` say `doska_realtime_slot_holder 1`); the other delivers the log's changes to its
//! own subscribers, under RLS as each. supabase-js subscribers on the standby receive what was
//! written through the holder, each only their own rows; and when the holder is SIGKILLed while
//! rows are written through the standby, the standby takes the slot and its subscriber gets every
//! change exactly once.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Serving;
use common::phx::Phx;
use doska::realtime::log::Position;
use serde_json::{Value, json};

const SECRET: &str = "realtime-instances-secret-0123456789-abcdef";
const ALICE: &str = "00000000-0000-4000-8000-00000000a11c";
const BOB: &str = "00000000-0000-4000-8000-000000000b0b";

const MIGRATION: &str = "
create table public.notes (id bigint primary key, owner uuid not null, body text);
alter table public.notes enable row level security;
create policy notes_own on public.notes for select to authenticated using (owner = auth.uid());
alter publication supabase_realtime add table public.notes;
create table public.items (id bigint primary key);
alter publication supabase_realtime add table public.items;
";

struct Db {
    cluster: Option<doska::pg::Cluster>,
    url: String,
    migrations: PathBuf,
}

impl Db {
    async fn start() -> Db {
        let dir = common::temp_dir("rt-instances-pg");
        let migrations = common::temp_dir("rt-instances-migrations");
        std::fs::write(migrations.join("0001_notes.sql"), MIGRATION).unwrap();
        let (cluster, url) = common::external_cluster(dir).await;
        Db {
            cluster: Some(cluster),
            url,
            migrations,
        }
    }

    /// A `doska serve` on this database with its own data dir.
    async fn serve(&self, tag: &str) -> Serving {
        let data = common::temp_dir(tag);
        let (url, migrations) = (self.url.clone(), self.migrations.clone());
        tokio::task::spawn_blocking(move || {
            let mut c = common::doska(&data, &migrations, &data.join("no-policies"));
            c.args(["--database-url", &url, "--static", ""])
                .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
                .args(["--jwt-secret", SECRET]);
            common::spawn_serving(c)
        })
        .await
        .unwrap()
    }

    async fn stop(mut self) {
        let cluster = self.cluster.take().unwrap();
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .unwrap()
            .unwrap();
    }
}

fn sign(claims: Value) -> String {
    doska::jwt::sign(SECRET.as_bytes(), &claims)
}

fn user_token(sub: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    sign(
        json!({"sub": sub, "role": "authenticated", "aud": "authenticated",
        "iat": now, "exp": now + 3600}),
    )
}

/// The instance's `doska_realtime_slot_holder`, or `None` while it does not answer.
async fn holder(url: &str) -> Option<bool> {
    let addr = url.trim_start_matches("http://").to_string();
    tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    .ok()?
    .ok()?;
    let metrics = common::get(&format!("{url}/metrics")).await.text();
    let value = metrics
        .lines()
        .find_map(|l| l.strip_prefix("doska_realtime_slot_holder "))
        .unwrap_or_else(|| panic!("no doska_realtime_slot_holder in {metrics}"));
    Some(value.trim() == "1")
}

/// Waits (up to a minute: this is no timing test) until `s` says it holds the slot.
async fn until_holder(s: &Serving) {
    for _ in 0..600 {
        if holder(&s.url).await == Some(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = s.log.lock().unwrap().clone();
    panic!("{} never became the slot holder: {log}", s.url);
}

fn stop(s: Serving) {
    let mut child = s.child;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_js_subscribers_on_one_instance_get_changes_written_through_another() {
    assert!(
        js_dir().join("node_modules/@supabase/supabase-js").exists(),
        "server/tests/js/node_modules is missing: run scripts/setup"
    );
    let db = Db::start().await;
    let a = db.serve("rt-instances-a").await;
    until_holder(&a).await;
    let b = db.serve("rt-instances-b").await;
    assert_eq!(holder(&b.url).await, Some(false), "B took the slot A holds");

    // Alice's rows 1..=3 and Bob's 4..=5, interleaved, written by the service role through A.
    let rows = json!([
        {"id": 1, "owner": ALICE, "body": "a1"},
        {"id": 4, "owner": BOB, "body": "b1"},
        {"id": 2, "owner": ALICE, "body": "a2"},
        {"id": 5, "owner": BOB, "body": "b2"},
        {"id": 3, "owner": ALICE, "body": "a3"},
    ]);
    let (a_url, b_url) = (a.url.clone(), b.url.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(js_dir().join("fixtures/instances.mjs"))
            .current_dir(js_dir())
            .env("A_URL", a_url)
            .env("B_URL", b_url)
            .env("ANON_KEY", sign(json!({"role": "anon"})))
            .env("SERVICE_KEY", sign(json!({"role": "service_role"})))
            .env("ALICE_TOKEN", user_token(ALICE))
            .env("BOB_TOKEN", user_token(BOB))
            .env("ROWS", rows.to_string())
            .env("EXPECTED", json!({"alice": 3, "bob": 2}).to_string())
            .output()
            .expect("running node")
    })
    .await
    .unwrap();
    let logs = || {
        let (a, b) = (a.log.lock().unwrap().clone(), b.log.lock().unwrap().clone());
        format!("A: {a}\nB: {b}")
    };
    assert!(
        out.status.success(),
        "node: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    let received: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "node printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(
        received["alice"],
        json!([1, 2, 3]),
        "Alice on B: {received}"
    );
    assert_eq!(received["bob"], json!([4, 5]), "Bob on B: {received}");
    // B delivered from the log all along: A still holds the slot.
    assert_eq!(holder(&a.url).await, Some(true));
    assert_eq!(holder(&b.url).await, Some(false));

    stop(a);
    stop(b);
    db.stop().await;
}

/// `POST /rest/v1/items {"id"}`; the status, or `None` on a transport failure.
async fn insert(url: &str, key: &str, id: i64) -> Option<u16> {
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        common::request(
            "POST",
            &format!("{url}/rest/v1/items"),
            &[
                ("apikey", key),
                ("authorization", &format!("Bearer {key}")),
                ("content-type", "application/json"),
                ("prefer", "return=minimal"),
            ],
            json!({"id": id}).to_string(),
        ),
    )
    .await
    .ok()?;
    Some(r.status)
}

/// What the subscriber saw: each change's id and position, and every `system` message.
#[derive(Default)]
struct Seen {
    changes: Vec<(i64, Position)>,
    system: Vec<Value>,
}

impl Seen {
    fn take(&mut self, m: common::phx::Incoming) {
        match m.event.as_str() {
            "postgres_changes" => {
                let data = &m.payload["data"];
                self.changes.push((
                    data["record"]["id"].as_i64().expect("an id"),
                    data["position"].as_str().unwrap().parse().unwrap(),
                ));
            }
            "system" => self.system.push(m.payload),
            _ => {}
        }
    }
}

/// Rows the writer inserts in all.
const ROWS: i64 = 400;
/// Changes the subscriber sees before the holder is killed.
const BEFORE_KILL: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holders_sigkill_loses_and_repeats_nothing_on_the_survivor() {
    let db = Db::start().await;
    let a = db.serve("rt-failover-a").await;
    until_holder(&a).await;
    let b = db.serve("rt-failover-b").await;
    let key = sign(json!({"role": "service_role"}));

    let mut phx = Phx::connect(&b.url, &key).await.expect("connecting to B");
    let config =
        json!({"postgres_changes": [{"event": "INSERT", "schema": "public", "table": "items"}]});
    let reply = phx.join("items", config, None).await;
    assert_eq!(reply["status"], "ok", "{reply}");

    // The writer: every id committed once, through B, without pause for the kill.
    let writer = {
        let (url, key) = (b.url.clone(), key.clone());
        tokio::spawn(async move {
            for id in 1..=ROWS {
                loop {
                    match insert(&url, &key, id).await {
                        Some(201 | 409) => break,
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let mut seen = Seen::default();
    let mut killed = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut a = Some(a);
    loop {
        let ids: std::collections::HashSet<i64> = seen.changes.iter().map(|c| c.0).collect();
        if writer.is_finished() && ids.len() == ROWS as usize {
            break;
        }
        if killed.is_none() && seen.changes.len() >= BEFORE_KILL {
            let mut holder_a = a.take().unwrap();
            holder_a.child.kill().unwrap();
            holder_a.child.wait().unwrap();
            killed = Some(seen.changes.len());
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            let missing: Vec<i64> = (1..=ROWS).filter(|id| !ids.contains(id)).collect();
            let log = b.log.lock().unwrap().clone();
            panic!(
                "timed out with {} changes (writer done: {}), missing {missing:?}; B: {log}",
                seen.changes.len(),
                writer.is_finished(),
            );
        }
        if let Some(m) = phx.next(left.min(Duration::from_secs(1))).await {
            seen.take(m);
        }
    }
    // Anything still in flight would be a duplicate.
    while let Some(m) = phx.next(Duration::from_secs(3)).await {
        seen.take(m);
    }
    writer.await.unwrap();
    assert!(killed.is_some(), "the holder was never killed");
    assert_eq!(
        holder(&b.url).await,
        Some(true),
        "the survivor holds the slot"
    );

    let Seen { changes, system } = seen;
    let mut ids: Vec<i64> = changes.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=ROWS).collect::<Vec<_>>(),
        "every change exactly once"
    );
    assert!(
        changes.windows(2).all(|w| w[0].1 < w[1].1),
        "positions increase"
    );
    assert!(
        system.iter().all(|s| s["status"] == "ok"),
        "no refetch or error: {system:?}"
    );
    stop(b);
    db.stop().await;
}
