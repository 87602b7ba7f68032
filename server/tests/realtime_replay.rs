//! The durable change log and replay, against a real PostgreSQL with the whole realtime pipeline
//! (replication slot → decode → log → deliver) and a Phoenix client on doska's socket: a join
//! with `since` gets every missed change its RLS lets it see, then the live ones, each once, even
//! while changes keep committing; a `since` beyond the window gets the refetch message; the log is
//! trimmed by age and by size; private broadcasts replay with `broadcast.replay`.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::phx::{Incoming, Phx};
use doska::realtime::decode::{Change, ChangeKind, ColumnInfo};
use doska::realtime::log::{self, Position};
use doska::realtime::lsn::Lsn;
use serde_json::{Value, json};

const ALICE: &str = "00000000-0000-0000-0000-00000000000a";
const BOB: &str = "00000000-0000-0000-0000-00000000000b";

/// A test database with `public.items` (RLS: owners see their rows) in the publication, the
/// realtime pipeline running on its own slot, and doska's HTTP server; returns its base URL.
async fn pipeline() -> (common::TestDb, String) {
    let db = common::TestDb::new().await;
    db.admin()
        .batch_execute(
            "create table public.items (id bigint primary key, owner uuid not null, body text);
             alter table public.items enable row level security;
             create policy own on public.items for select to authenticated using (owner = auth.uid());
             grant select on public.items to anon, authenticated, service_role;
             alter publication supabase_realtime add table public.items;",
        )
        .await
        .unwrap();
    let url = db.streaming_server(&format!("replay_{}", db.name)).await;
    (db, url)
}

fn user(db: &common::TestDb, sub: &str) -> String {
    db.sign(json!({"sub": sub, "role": "authenticated", "aud": "authenticated", "exp": chrono::Utc::now().timestamp() + 3600}))
}

fn service(db: &common::TestDb) -> String {
    db.sign(json!({"role": "service_role"}))
}

fn items_config(since: Option<&str>) -> Value {
    let mut c = json!({"postgres_changes": [{"event": "*", "schema": "public", "table": "items"}]});
    if let Some(s) = since {
        c["since"] = json!(s);
    }
    c
}

async fn insert(db: &common::TestDb, id: i64, owner: &str) {
    db.admin()
        .execute(
            "insert into public.items values ($1, $2::text::uuid, 'x')",
            &[&id, &owner],
        )
        .await
        .unwrap();
}

/// Joins as `token` and waits for "Subscribed to PostgreSQL".
async fn subscribe(url: &str, token: &str, since: Option<&str>) -> Phx {
    let mut phx = Phx::connect(url, token).await.unwrap();
    let reply = phx.join("items", items_config(since), Some(token)).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let m = phx.next(Duration::from_secs(5)).await.expect("subscribed");
    assert_eq!(m.event, "system", "{m:?}");
    assert_eq!(m.payload["status"], "ok", "{m:?}");
    phx
}

/// (type, id, position) of a postgres_changes message.
fn change_of(m: &Incoming) -> (String, i64, Position) {
    let data = &m.payload["data"];
    let record = if data["type"] == "DELETE" {
        &data["old_record"]
    } else {
        &data["record"]
    };
    (
        data["type"].as_str().unwrap().to_string(),
        record["id"].as_i64().unwrap(),
        data["position"].as_str().unwrap().parse().unwrap(),
    )
}

/// Reads postgres_changes until `done` says so (or 15 s pass); panics on a `system` error.
async fn collect(
    phx: &mut Phx,
    mut done: impl FnMut(&[(String, i64, Position)]) -> bool,
) -> Vec<(String, i64, Position)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done(&got) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(m) = phx.next(left).await else {
            panic!("timed out; got {got:?}");
        };
        match m.event.as_str() {
            "postgres_changes" => got.push(change_of(&m)),
            "system" => panic!("unexpected system message {m:?} after {got:?}"),
            _ => {}
        }
    }
    got
}

async fn logged(db: &common::TestDb) -> i64 {
    db.value(
        "select count(*) from doska.realtime_changes c, \
         json_array_elements(convert_from(c.entries, 'UTF8')::json) e \
         where e->>'table' = 'items'",
        &[],
    )
    .await
}

async fn wait_logged(db: &common::TestDb, n: i64) {
    for _ in 0..300 {
        if logged(db).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("only {} of {n} changes logged", logged(db).await);
}

#[tokio::test]
async fn since_replays_what_was_missed_under_rls_then_live_exactly_once() {
    let (db, url) = pipeline().await;
    let alice = user(&db, ALICE);

    // Alice sees change 1 live, with its position, then goes away.
    let mut phx = subscribe(&url, &alice, None).await;
    insert(&db, 1, ALICE).await;
    let first = collect(&mut phx, |g| !g.is_empty()).await;
    assert_eq!(first[0].1, 1);
    let since = first[0].2;
    drop(phx);

    // While she is away: her rows and Bob's, and an update.
    for id in 2..=6 {
        insert(&db, id, if id % 2 == 0 { ALICE } else { BOB }).await;
    }
    db.admin()
        .execute("update public.items set body = 'y' where id = 4", &[])
        .await
        .unwrap();
    wait_logged(&db, 7).await;

    // Changes keep committing while she rejoins: the seam between replay and live.
    let writer = {
        let admin = common::connect(&common::cluster().config(&db.name)).await;
        tokio::spawn(async move {
            for id in 100..160i64 {
                let owner = if id % 3 == 0 { BOB } else { ALICE };
                admin
                    .execute(
                        "insert into public.items values ($1, $2::text::uuid, 'x')",
                        &[&id, &owner],
                    )
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let mut phx = subscribe(&url, &alice, Some(&since.to_string())).await;
    let mine_live = (100..160i64).filter(|id| id % 3 != 0).count();
    let got = collect(&mut phx, |g| {
        g.iter().filter(|(_, id, _)| *id >= 100).count() >= mine_live
    })
    .await;
    writer.await.unwrap();

    let replayed: Vec<(String, i64)> = got
        .iter()
        .filter(|(_, id, _)| *id < 100)
        .map(|(t, id, _)| (t.clone(), *id))
        .collect();
    assert_eq!(
        replayed,
        [
            ("INSERT".to_string(), 2),
            ("INSERT".into(), 4),
            ("INSERT".into(), 6),
            ("UPDATE".into(), 4)
        ],
        "Bob's rows and change 1 are not replayed"
    );
    let live: Vec<i64> = got
        .iter()
        .filter(|(_, id, _)| *id >= 100)
        .map(|(_, id, _)| *id)
        .collect();
    let want: Vec<i64> = (100..160).filter(|id| id % 3 != 0).collect();
    assert_eq!(live, want, "every live change once, in order");
    assert!(
        got.windows(2).all(|w| w[0].2 < w[1].2),
        "positions strictly increase: {got:?}"
    );
    // Nothing more comes.
    insert(&db, 1000, ALICE).await;
    let tail = collect(&mut phx, |g| !g.is_empty()).await;
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].1, 1000);
}

#[tokio::test]
async fn since_beyond_the_window_gets_a_refetch_message() {
    let (db, url) = pipeline().await;
    let key = service(&db);
    let mut phx = subscribe(&url, &key, None).await;
    insert(&db, 1, ALICE).await;
    insert(&db, 2, ALICE).await;
    let seen = collect(&mut phx, |g| g.len() >= 2).await;
    drop(phx);
    insert(&db, 3, ALICE).await;
    wait_logged(&db, 3).await;

    // The window passes: everything is trimmed.
    let gone = log::trim(&db.state.admin, Duration::ZERO, 1_000_000)
        .await
        .unwrap();
    assert_eq!(gone, 3);

    // Resuming after change 1: change 2 and 3 are gone, so the client must refetch.
    let mut phx = subscribe(&url, &key, Some(&seen[0].2.to_string())).await;
    let m = phx
        .next(Duration::from_secs(5))
        .await
        .expect("refetch message");
    assert_eq!(m.event, "system");
    assert_eq!(
        m.payload,
        json!({
            "message": log_refetch(),
            "status": "error",
            "extension": "postgres_changes",
            "channel": "items",
        })
    );
    // Live changes still come.
    insert(&db, 4, ALICE).await;
    let live = collect(&mut phx, |g| !g.is_empty()).await;
    assert_eq!(live[0].1, 4);

    // Resuming at the newest trimmed change misses nothing: no refetch, only what is new.
    let newest: String = db
        .value(
            "select commit_lsn::text || ':' || idx from doska.realtime_log_floor",
            &[],
        )
        .await;
    let mut phx = subscribe(&url, &key, Some(&newest)).await;
    let after = collect(&mut phx, |g| !g.is_empty()).await;
    assert_eq!(after[0].1, 4, "change 4 is replayed, nothing older");
    assert!(phx.next(Duration::from_millis(300)).await.is_none());

    // A malformed position is refused at join.
    let mut phx = Phx::connect(&url, &key).await.unwrap();
    let reply = phx
        .join("items", items_config(Some("yesterday")), None)
        .await;
    assert_eq!(reply["status"], "error", "{reply}");
}

fn log_refetch() -> &'static str {
    doska::realtime::replay::REFETCH_MESSAGE
}

fn fake_change(lsn: u64, index: u32, id: i64) -> Change {
    Change {
        schema: "public".into(),
        table: "items".into(),
        kind: ChangeKind::Insert,
        commit_lsn: Lsn(lsn),
        // PostgreSQL's timestamps are microseconds.
        commit_timestamp: chrono::DateTime::from_timestamp_micros(1_790_000_000_000_001).unwrap(),
        index_in_tx: index,
        xid: 0,
        columns: Arc::from(vec![ColumnInfo {
            name: "id".into(),
            type_name: "int8".into(),
            type_oid: 20,
            key: true,
        }]),
        record: json!({"id": id}).as_object().cloned().unwrap(),
        old_record: None,
        unchanged_toast: vec![],
        row_security: true,
    }
}

#[tokio::test]
async fn the_log_is_trimmed_by_size_and_by_age_and_raises_its_floor() {
    let db = common::TestDb::new().await;
    let admin = &db.state.admin;
    let base = 0x7000_0000_0000u64;
    let changes: Vec<Change> = (0..10)
        .map(|i| fake_change(base + (i / 2) * 0x100, (i % 2) as u32, i as i64))
        .collect();
    let refs: Vec<&Change> = changes.iter().collect();
    // Five batches of one transaction (two changes) each.
    for pair in refs.chunks(2) {
        log::append(admin, pair).await.unwrap();
    }
    // Appending again (PostgreSQL resending after a crash) logs nothing twice.
    log::append(admin, &refs[5..]).await.unwrap();
    assert_eq!(logged(&db).await, 10);
    let all = [("*".to_string(), "*".to_string())];
    let page = log::changes_after(admin, Position::default(), &all, 100)
        .await
        .unwrap();
    assert_eq!(page.changes, changes, "read back whole, in position order");
    assert!(!page.more);
    let start_floor = log::floor(admin).await.unwrap();
    assert!(start_floor < Position::of(&changes[0]));
    // A page stops at its limit and says where it stopped.
    let page = log::changes_after(admin, Position::of(&changes[2]), &all, 3)
        .await
        .unwrap();
    assert_eq!(page.changes, changes[3..6]);
    assert!(page.more);
    assert_eq!(page.through, Position::of(&changes[5]));

    // Size: whole batches go, the newest 4 changes stay; the floor is the newest change that went.
    let gone = log::trim(admin, Duration::from_secs(3600), 4)
        .await
        .unwrap();
    assert_eq!(gone, 6);
    assert_eq!(log::floor(admin).await.unwrap(), Position::of(&changes[5]));
    let page = log::changes_after(admin, Position::of(&changes[5]), &all, 100)
        .await
        .unwrap();
    assert_eq!(page.changes, changes[6..]);
    assert_eq!(page.floor, Position::of(&changes[5]));

    // Age: entries older than the window go, whatever the size cap.
    db.admin()
        .execute(
            "update doska.realtime_changes set logged_at = now() - interval '2 hours' \
             where seq = (select min(seq) from doska.realtime_changes)",
            &[],
        )
        .await
        .unwrap();
    let gone = log::trim(admin, Duration::from_secs(3600), 1_000)
        .await
        .unwrap();
    assert_eq!(gone, 2);
    assert_eq!(logged(&db).await, 2);
    assert_eq!(log::floor(admin).await.unwrap(), Position::of(&changes[7]));

    // The floor never goes down; a recreated slot raises it past everything before it.
    log::raise_floor(admin, Position::of(&changes[0]))
        .await
        .unwrap();
    assert_eq!(log::floor(admin).await.unwrap(), Position::of(&changes[7]));
    log::raise_floor(admin, Position::end_of(Lsn(base + 0x10_000)))
        .await
        .unwrap();
    assert_eq!(
        log::floor(admin).await.unwrap(),
        Position::end_of(Lsn(base + 0x10_000))
    );
    // Only the given tables are read.
    let none = log::changes_after(
        admin,
        Position::default(),
        &[("public".into(), "other".into())],
        100,
    )
    .await
    .unwrap();
    assert!(none.changes.is_empty());
}

/// The first `n` broadcasts (within 10 s), then whatever else comes within 300 ms.
async fn broadcasts(phx: &mut Phx, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let wait = if got.len() < n {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        } else {
            Duration::from_millis(300)
        };
        match phx.next(wait).await {
            Some(m) if m.event == "broadcast" => got.push(m.payload),
            Some(_) => {}
            None => return got,
        }
    }
}

#[tokio::test]
async fn private_broadcasts_replay_with_their_meta() {
    let (db, url) = pipeline().await;
    let key = service(&db);
    let private = |replay: Option<Value>| {
        let mut c = json!({"private": true, "broadcast": {"self": true}});
        if let Some(r) = replay {
            c["broadcast"]["replay"] = r;
        }
        c
    };
    let start_ms = chrono::Utc::now().timestamp_millis() - 1000;

    // Over the socket, from SQL (private and public), and over REST.
    let mut sender = Phx::connect(&url, &key).await.unwrap();
    let reply = sender.join("room", private(None), None).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let join_ref = "1";
    sender
        .push(
            Some(join_ref),
            "realtime:room",
            "broadcast",
            json!({"type": "broadcast", "event": "socket", "payload": {"n": 1}}),
        )
        .await;
    let echo = sender
        .next(Duration::from_secs(5))
        .await
        .expect("own broadcast");
    assert_eq!(echo.payload["event"], "socket", "{echo:?}");
    db.admin()
        .batch_execute(
            "select realtime.send('{\"n\": 2}', 'sql', 'room', true);
             select realtime.send('{\"n\": 0}', 'public-sql', 'room', false);",
        )
        .await
        .unwrap();
    let echo = sender
        .next(Duration::from_secs(5))
        .await
        .expect("SQL broadcast");
    assert_eq!(echo.payload["event"], "sql", "{echo:?}");
    let res = common::request(
        "POST",
        &format!("{url}/realtime/v1/api/broadcast"),
        &[("apikey", key.as_str()), ("content-type", "application/json")],
        json!({"messages": [{"topic": "room", "event": "rest", "payload": {"n": 3}, "private": true}]})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(res.status, 202, "{}", res.text());

    // A later join asks for them.
    let mut late = Phx::connect(&url, &key).await.unwrap();
    let reply = late
        .join(
            "room",
            private(Some(json!({"since": start_ms, "limit": 10}))),
            None,
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let got = broadcasts(&mut late, 3).await;
    let events: Vec<&str> = got.iter().map(|p| p["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["socket", "sql", "rest"], "{got:?}");
    assert_eq!(got[1]["payload"], json!({"n": 2}));
    assert!(
        got.iter()
            .all(|p| p["meta"]["replayed"] == true && p["meta"]["id"].is_string())
    );
    let ids: HashMap<&str, usize> = got
        .iter()
        .map(|p| (p["meta"]["id"].as_str().unwrap(), 0))
        .collect();
    assert_eq!(ids.len(), 3, "ids are distinct");

    // The newest `limit`; nothing before `since`.
    let mut late = Phx::connect(&url, &key).await.unwrap();
    late.join(
        "room",
        private(Some(json!({"since": start_ms, "limit": 2}))),
        None,
    )
    .await;
    let events: Vec<String> = broadcasts(&mut late, 2)
        .await
        .iter()
        .map(|p| p["event"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(events, ["sql", "rest"]);
    let mut late = Phx::connect(&url, &key).await.unwrap();
    let now_ms = chrono::Utc::now().timestamp_millis() + 1000;
    late.join("room", private(Some(json!({"since": now_ms}))), None)
        .await;
    assert!(late.next(Duration::from_millis(500)).await.is_none());

    // Replay is for private channels only.
    let mut public = Phx::connect(&url, &key).await.unwrap();
    let reply = public
        .join(
            "room",
            json!({"broadcast": {"replay": {"since": start_ms}}}),
            None,
        )
        .await;
    assert_eq!(reply["status"], "error", "{reply}");
}

/// Ends the replication connection streaming from `slot` (the source reconnects); how many.
async fn terminate_walsender(db: &common::TestDb, slot: &str) -> u64 {
    db.admin()
        .execute(
            "select pg_terminate_backend(active_pid) from pg_replication_slots \
             where slot_name = $1 and active_pid is not null",
            &[&slot],
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_slot_lost_while_streaming_tells_subscribers_to_refetch() {
    let (db, url) = pipeline().await;
    let key = service(&db);
    let mut phx = subscribe(&url, &key, None).await;
    insert(&db, 1, ALICE).await;
    let seen = collect(&mut phx, |g| !g.is_empty()).await;
    let slot = format!("replay_{}", db.name);
    // Take the slot away under the running source (it reconnects within 200 ms).
    let mut dropped = false;
    for _ in 0..100 {
        terminate_walsender(&db, &slot).await;
        if db
            .admin()
            .execute("select pg_drop_replication_slot($1)", &[&slot])
            .await
            .is_ok()
        {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dropped, "could not drop the slot");
    let m = phx
        .next(Duration::from_secs(10))
        .await
        .expect("a changes-lost message");
    assert_eq!(m.event, "system", "{m:?}");
    assert_eq!(
        m.payload["message"],
        doska::realtime::replay::CHANGES_LOST_MESSAGE
    );
    assert_eq!(m.payload["status"], "error");
    // Resuming from before the loss must refetch too; live changes flow again.
    let mut again = subscribe(&url, &key, Some(&seen[0].2.to_string())).await;
    let m = again.next(Duration::from_secs(5)).await.expect("refetch");
    assert_eq!(m.payload["message"], log_refetch(), "{m:?}");
    insert(&db, 2, ALICE).await;
    let live = collect(&mut again, |g| !g.is_empty()).await;
    assert_eq!(live[0].1, 2);
}

#[tokio::test]
async fn a_batch_of_large_rows_is_logged_whole() {
    let db = common::TestDb::new().await;
    let big = "x".repeat(3 * 1024 * 1024);
    let changes: Vec<Change> = (0..4)
        .map(|i| {
            let mut c = fake_change(0x9000_0000, i, i64::from(i));
            c.record.insert("body".into(), json!(big));
            c
        })
        .collect();
    let refs: Vec<&Change> = changes.iter().collect();
    log::append(&db.state.admin, &refs).await.unwrap();
    let all = [("public".to_string(), "items".to_string())];
    let page = log::changes_after(&db.state.admin, Position::default(), &all, 10)
        .await
        .unwrap();
    assert_eq!(page.changes, changes);
}

#[tokio::test]
async fn the_message_cap_is_configurable() {
    let db = common::TestDb::with_settings(doska::config::Settings {
        realtime_max_message_bytes: Some(2048),
        ..Default::default()
    })
    .await;
    let url = db.server().await;
    let key = service(&db);
    let mut phx = Phx::connect(&url, &key).await.unwrap();
    let reply = phx.join("cap", json!({}), None).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let reference = phx
        .push(
            Some("1"),
            "realtime:cap",
            "broadcast",
            json!({"type": "broadcast", "event": "big", "payload": {"x": "y".repeat(3000)}}),
        )
        .await;
    let m = phx
        .next(Duration::from_secs(5))
        .await
        .expect("an error reply");
    assert_eq!(m.reference.as_deref(), Some(reference.as_str()));
    assert_eq!(m.payload["status"], "error", "{m:?}");
    assert!(
        m.payload["response"]["reason"]
            .as_str()
            .unwrap()
            .contains("over the limit of 2048 bytes"),
        "{m:?}"
    );
    let res = common::request(
        "POST",
        &format!("{url}/realtime/v1/api/broadcast"),
        &[
            ("apikey", key.as_str()),
            ("content-type", "application/json"),
        ],
        json!({"messages": [{"topic": "cap", "event": "big", "payload": "y".repeat(3000)}]})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(res.status, 413, "{}", res.text());
}

/// PostgreSQL sends again whatever was not acknowledged when the replication connection breaks
/// (acknowledgements reach it every few seconds); a live subscriber still gets each change once.
#[tokio::test]
async fn a_broken_replication_connection_does_not_repeat_changes() {
    let (db, url) = pipeline().await;
    let key = service(&db);
    let mut phx = subscribe(&url, &key, None).await;
    let slot = format!("replay_{}", db.name);
    let mut terminated = 0;
    for id in 1..=60 {
        insert(&db, id, ALICE).await;
        if id % 20 == 0 {
            // Wait for what was inserted so far to be delivered (not yet acknowledged to
            // PostgreSQL), then break the stream under the running source.
            let got = collect(&mut phx, |g| g.len() >= 20).await;
            let ids: Vec<i64> = got.iter().map(|c| c.1).collect();
            assert_eq!(ids, ((id - 19)..=id).collect::<Vec<_>>());
            terminated += terminate_walsender(&db, &slot).await;
        }
    }
    assert!(terminated >= 2, "the stream was broken {terminated} times");
    // The source reconnects and PostgreSQL resends; nothing may arrive twice.
    insert(&db, 61, ALICE).await;
    let got = collect(&mut phx, |g| g.iter().any(|c| c.1 == 61)).await;
    let ids: Vec<i64> = got.iter().map(|c| c.1).collect();
    assert_eq!(ids, vec![61], "after reconnects");
    assert!(phx.next(Duration::from_millis(500)).await.is_none());
}
