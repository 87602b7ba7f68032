//! Realtime's access check as a table, end to end (replication slot → decode → log → authorize →
//! deliver → a Phoenix client on doska's socket): every event type × {owner, other user, anon,
//! service_role} × {RLS on, off} × {replica identity default, full}, live and replayed with
//! `since`. Under RLS a subscriber gets a row only if its SELECT policy shows it, and an old row
//! (UPDATE's and DELETE's `old_record`) never carries more than the primary key — whatever the
//! replica identity sent. Without RLS the old row is what the replica identity gives, as
//! Supabase sends it.

mod common;

use std::time::Duration;

use common::phx::{Incoming, Phx};
use serde_json::{Value, json};

const ALICE: &str = "00000000-0000-0000-0000-00000000000a";
const BOB: &str = "00000000-0000-0000-0000-00000000000b";

/// (table, RLS on, replica identity full)
const TABLES: [(&str, bool, bool); 4] = [
    ("rls_default", true, false),
    ("rls_full", true, true),
    ("open_default", false, false),
    ("open_full", false, true),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Owner,
    Other,
    Anon,
    Service,
}

const WHO: [Who; 4] = [Who::Owner, Who::Other, Who::Anon, Who::Service];

/// What an `old_record` may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Old {
    None,
    Key,
    Row,
}

/// What one subscriber gets for one event on one table: `None` when it must get nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expect {
    record: bool,
    old: Old,
}

/// `gone`: the row was deleted before the check ran (replay). Under RLS a row is checked by
/// looking it up, as Supabase does, so a gone row shows only to a role that bypasses RLS.
fn expected(event: &str, rls: bool, full: bool, who: Who, gone: bool) -> Option<Expect> {
    // Only the owner's policy (and service_role, which bypasses RLS) shows the row itself.
    let sees_row = !rls || who == Who::Service || (who == Who::Owner && !gone);
    let old_row = if !rls && full { Old::Row } else { Old::Key };
    match event {
        "INSERT" => sees_row.then_some(Expect {
            record: true,
            old: Old::None,
        }),
        "UPDATE" => sees_row.then_some(Expect {
            record: true,
            old: old_row,
        }),
        // A delete goes to everyone allowed to read the table; under RLS it reveals the key only.
        "DELETE" => Some(Expect {
            record: false,
            old: old_row,
        }),
        _ => unreachable!(),
    }
}

async fn pipeline() -> (common::TestDb, String) {
    let db = common::TestDb::new().await;
    let mut sql = String::new();
    for (table, rls, full) in TABLES {
        sql.push_str(&format!(
            "create table public.{table} (id bigint primary key, owner uuid not null, secret text);
             grant select on public.{table} to anon, authenticated, service_role;
             alter publication supabase_realtime add table public.{table};"
        ));
        if rls {
            sql.push_str(&format!(
                "alter table public.{table} enable row level security;
                 create policy own on public.{table} for select to authenticated using (owner = auth.uid());"
            ));
        }
        if full {
            sql.push_str(&format!(
                "alter table public.{table} replica identity full;"
            ));
        }
    }
    db.admin().batch_execute(&sql).await.unwrap();
    let url = db.streaming_server(&format!("access_{}", db.name)).await;
    (db, url)
}

fn token(db: &common::TestDb, who: Who) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    match who {
        Who::Owner => db.sign(
            json!({"sub": ALICE, "role": "authenticated", "aud": "authenticated", "exp": exp}),
        ),
        Who::Other => db
            .sign(json!({"sub": BOB, "role": "authenticated", "aud": "authenticated", "exp": exp})),
        Who::Anon => db.sign(json!({"role": "anon"})),
        Who::Service => db.sign(json!({"role": "service_role"})),
    }
}

async fn subscribe(url: &str, token: &str, since: Option<&str>) -> Phx {
    let bindings: Vec<Value> = TABLES
        .iter()
        .map(|(t, _, _)| json!({"event": "*", "schema": "public", "table": t}))
        .collect();
    let mut config = json!({ "postgres_changes": bindings });
    if let Some(s) = since {
        config["since"] = json!(s);
    }
    let mut phx = Phx::connect(url, token).await.unwrap();
    let reply = phx.join("access", config, Some(token)).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    loop {
        let m = phx.next(Duration::from_secs(10)).await.expect("subscribed");
        if m.event == "system" {
            assert_eq!(m.payload["status"], "ok", "{m:?}");
            return phx;
        }
    }
}

/// Reads postgres_changes up to and including the fence row `id` on `open_default`.
async fn until_fence(phx: &mut Phx, fence: i64) -> Vec<Incoming> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(m) = phx.next(left).await else {
            panic!("timed out waiting for fence {fence}; got {got:?}");
        };
        if m.event != "postgres_changes" {
            assert_ne!(m.event, "system", "unexpected {m:?}");
            continue;
        }
        let data = &m.payload["data"];
        if data["table"] == "open_default" && data["record"]["id"] == fence {
            return got;
        }
        got.push(m);
    }
}

async fn fence(db: &common::TestDb, id: i64) {
    db.admin()
        .execute(
            "insert into public.open_default values ($1, $2::text::uuid, 'fence')",
            &[&id, &BOB],
        )
        .await
        .unwrap();
}

/// Every table gets Alice's row inserted and updated, each in its own transaction.
async fn write_rows(db: &common::TestDb) {
    for (table, _, _) in TABLES {
        for sql in [
            format!("insert into public.{table} values (1, '{ALICE}', 'inserted secret')"),
            format!("update public.{table} set secret = 'updated secret' where id = 1"),
        ] {
            db.admin().batch_execute(&sql).await.unwrap();
        }
    }
}

async fn delete_rows(db: &common::TestDb) {
    for (table, _, _) in TABLES {
        let sql = format!("delete from public.{table} where id = 1");
        db.admin().batch_execute(&sql).await.unwrap();
    }
}

/// Checks what `who` received against the table; `how` names the path in failures.
fn check(who: Who, got: &[Incoming], how: &str, gone: bool) {
    let row = json!({"id": 1, "owner": ALICE, "secret": "updated secret"});
    let mut received: Vec<(String, String)> = Vec::new();
    for m in got {
        let data = &m.payload["data"];
        let table = data["table"].as_str().unwrap().to_string();
        let event = data["type"].as_str().unwrap().to_string();
        let (_, rls, full) = TABLES
            .iter()
            .find(|(t, _, _)| *t == table)
            .copied()
            .unwrap();
        let Some(want) = expected(&event, rls, full, who, gone) else {
            panic!("{how}: {who:?} must not receive {event} on {table}: {m:?}");
        };
        if want.record {
            let secret = if event == "INSERT" {
                "inserted secret"
            } else {
                "updated secret"
            };
            assert_eq!(
                data["record"]["secret"], secret,
                "{how}: {who:?} {event} {table}"
            );
        } else {
            assert!(
                data.get("record").is_none(),
                "{how}: {who:?} {event} {table}: {m:?}"
            );
        }
        let old = data.get("old_record");
        match want.old {
            Old::None => assert!(old.is_none(), "{how}: {who:?} {event} {table}: {m:?}"),
            Old::Key => assert_eq!(
                old,
                Some(&json!({"id": 1})),
                "{how}: {who:?} {event} {table}"
            ),
            Old::Row => {
                let want_old = if event == "UPDATE" {
                    json!({"id": 1, "owner": ALICE, "secret": "inserted secret"})
                } else {
                    row.clone()
                };
                assert_eq!(old, Some(&want_old), "{how}: {who:?} {event} {table}");
            }
        }
        if rls && !matches!(who, Who::Owner | Who::Service) {
            assert!(
                !m.payload.to_string().contains("secret\":"),
                "{how}: {who:?} got a column of a row it may not see: {m:?}"
            );
        }
        received.push((table, event));
    }
    // Nothing it may see is missing, nothing arrived twice.
    let mut wanted = Vec::new();
    for (table, rls, full) in TABLES {
        for event in ["INSERT", "UPDATE", "DELETE"] {
            if expected(event, rls, full, who, gone).is_some() {
                wanted.push((table.to_string(), event.to_string()));
            }
        }
    }
    received.sort();
    wanted.sort();
    assert_eq!(received, wanted, "{how}: what {who:?} received");
}

#[tokio::test]
async fn every_event_by_caller_rls_and_replica_identity_live_and_replayed() {
    let (db, url) = pipeline().await;
    let mut live = Vec::new();
    for who in WHO {
        live.push((who, subscribe(&url, &token(&db, who), None).await));
    }

    // A first fence gives a position every replay starts after.
    fence(&db, 1000).await;
    let mut start = None;
    for (_, phx) in &mut live {
        let m = loop {
            let m = phx
                .next(Duration::from_secs(20))
                .await
                .expect("the first fence");
            if m.event == "postgres_changes" {
                break m;
            }
        };
        assert_eq!(m.payload["data"]["record"]["id"], 1000, "{m:?}");
        start = Some(m.payload["data"]["position"].as_str().unwrap().to_string());
    }
    let start = start.unwrap();

    // Inserts and updates are checked while the row exists (a fence between them and the
    // deletes: every subscriber got the updates before a row goes).
    write_rows(&db).await;
    fence(&db, 1001).await;
    let mut got = Vec::new();
    for (_, phx) in &mut live {
        got.push(until_fence(phx, 1001).await);
    }
    delete_rows(&db).await;
    fence(&db, 1002).await;
    for ((who, phx), got) in live.iter_mut().zip(&mut got) {
        got.extend(until_fence(phx, 1002).await);
        check(*who, got, "live", false);
    }

    // Replay reads the durable log: the same rules hold for what it sends.
    for who in WHO {
        let mut phx = subscribe(&url, &token(&db, who), Some(&start)).await;
        let mut got = until_fence(&mut phx, 1001).await;
        got.extend(until_fence(&mut phx, 1002).await);
        check(who, &got, "replayed", true);
    }
}
