//! Nothing lost across a crash: while a writer inserts rows continuously over REST, `doska serve` is
//! killed with SIGKILL and restarted on the same data dir; a subscriber that saw changes live
//! before the kill reconnects with `since` (its last position) and ends with every row's change
//! exactly once, and no refetch message.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::phx::Phx;
use doska::realtime::log::Position;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "realtime-crash-secret-0123456789-0123456789";
/// Rows the writer inserts in all.
const ROWS: i64 = 300;
/// Changes the subscriber sees before doska is killed.
const BEFORE_KILL: usize = 60;

fn serve(data: &Path) -> common::Serving {
    let mut serve = common::doska(data, &data.join("migrations"), &data.join("no-policies"));
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--jwt-secret", SECRET]);
    common::spawn_serving(serve)
}

fn service_key() -> String {
    doska::jwt::sign(SECRET.as_bytes(), &json!({"role": "service_role"}))
}

/// `POST /rest/v1/items {"id"}`; the status, or `None` when doska is not there.
async fn insert(url: &str, key: &str, id: i64) -> Option<u16> {
    let addr = url.trim_start_matches("http://").to_string();
    let mut s = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    .ok()?
    .ok()?;
    let body = format!("{{\"id\":{id}}}");
    let req = format!(
        "POST /rest/v1/items HTTP/1.1\r\nhost: {addr}\r\napikey: {key}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\nprefer: return=minimal\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&out)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
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
                    data["position"]
                        .as_str()
                        .expect("a position")
                        .parse()
                        .expect("a valid position"),
                ));
            }
            "system" => self.system.push(m.payload),
            _ => {}
        }
    }
}

async fn subscribe(url: &str, key: &str, since: Option<Position>) -> Phx {
    let mut phx = Phx::connect(url, key).await.expect("connecting");
    let mut config =
        json!({"postgres_changes": [{"event": "INSERT", "schema": "public", "table": "items"}]});
    if let Some(p) = since {
        config["since"] = json!(p.to_string());
    }
    let reply = phx.join("items", config, None).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    phx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resuming_after_sigkill_gets_every_change_exactly_once() {
    let data = common::temp_dir("rt-crash");
    std::fs::create_dir_all(data.join("migrations")).unwrap();
    std::fs::write(
        data.join("migrations/0001_items.sql"),
        "create table public.items (id bigint primary key, at timestamptz not null default now());
         alter publication supabase_realtime add table public.items;",
    )
    .unwrap();
    let d = data.clone();
    let first = tokio::task::spawn_blocking(move || serve(&d))
        .await
        .unwrap();
    let mut child = first.child;
    let url = Arc::new(Mutex::new(first.url.clone()));
    let key = service_key();

    // Changes committed before the new slot's consistent point are never decoded: start
    // writing once streaming has started.
    let streaming = "streaming changes from the replication slot";
    for _ in 0..600 {
        if first.log.lock().unwrap().contains(streaming) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        first.log.lock().unwrap().contains(streaming),
        "realtime did not start"
    );

    let mut seen = Seen::default();
    let mut phx = subscribe(&first.url, &key, None).await;
    let m = phx.next(Duration::from_secs(5)).await.expect("subscribed");
    seen.take(m);

    // The writer: every id committed once (a 409 means an earlier attempt committed before its
    // answer was lost), retrying while doska is down.
    let writer = {
        let (url, key) = (url.clone(), key.clone());
        tokio::spawn(async move {
            for id in 1..=ROWS {
                loop {
                    let target = url.lock().unwrap().clone();
                    match insert(&target, &key, id).await {
                        Some(201 | 409) => break,
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    while seen.changes.len() < BEFORE_KILL {
        let m = phx
            .next(Duration::from_secs(20))
            .await
            .expect("changes before the kill");
        seen.take(m);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Whatever was already on the wire, until the socket ends.
    while let Some(m) = phx.next(Duration::from_secs(5)).await {
        seen.take(m);
    }
    let last = seen.changes.last().unwrap().1;

    let d = data.clone();
    let second = tokio::task::spawn_blocking(move || serve(&d))
        .await
        .unwrap();
    let mut child = second.child;
    *url.lock().unwrap() = second.url.clone();
    let mut phx = subscribe(&second.url, &key, Some(last)).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let done = writer.is_finished()
            && seen
                .changes
                .iter()
                .map(|(id, _)| *id)
                .collect::<std::collections::HashSet<_>>()
                .len()
                == ROWS as usize;
        if done {
            break;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            let got: std::collections::HashSet<i64> = seen.changes.iter().map(|c| c.0).collect();
            let missing: Vec<i64> = (1..=ROWS).filter(|id| !got.contains(id)).collect();
            panic!(
                "timed out with {} changes (writer done: {}), missing {missing:?}; log: {}",
                seen.changes.len(),
                writer.is_finished(),
                second.log.lock().unwrap()
            );
        }
        if let Some(m) = phx.next(left.min(Duration::from_secs(1))).await {
            seen.take(m);
        }
    }
    // Anything still in flight would be a duplicate.
    while let Some(m) = phx.next(Duration::from_millis(500)).await {
        seen.take(m);
    }
    // The realtime gauges: this socket and channel, and the slot's lag.
    let metrics = common::get(&format!("{}/metrics", second.url)).await.text();
    let gauge = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing: {metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(gauge("doska_realtime_sockets"), 1.0);
    assert_eq!(gauge("doska_realtime_channels"), 1.0);
    assert!(gauge("doska_realtime_slot_lag_bytes") >= 0.0);
    child.kill().unwrap();
    child.wait().unwrap();
    writer.await.unwrap();

    let mut ids: Vec<i64> = seen.changes.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=ROWS).collect::<Vec<_>>(),
        "every change exactly once"
    );
    assert!(
        seen.changes.windows(2).all(|w| w[0].1 < w[1].1),
        "positions increase"
    );
    assert!(
        seen.system.iter().all(|s| s["status"] == "ok"),
        "no refetch or error: {:?}",
        seen.system
    );
    let _ = std::fs::remove_dir_all(&data);
}
