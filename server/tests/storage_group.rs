//! Group commit of small writes against a real PostgreSQL: requests sharing one transaction, each
//! decided as its own caller — a refused or not-ready member is rolled back alone while the others
//! commit — and the storage core's small uploads through it (RLS refusals, limits, overwrites,
//! duplicates in one burst), every committed row with its bytes and nothing else left behind.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::TestDb;
use doska::{
    db::group::{Group, Job, Outcome, OwnedParam},
    jwt::Caller,
    storage::{
        self,
        core::{Actor, BucketSpec, PutSpec, StorageError},
        disk,
    },
};
use serde_json::json;
use tokio::sync::oneshot;
use tokio_postgres::types::Type;

const INSERT: &str = "insert into public.gc (k, v) values ($1, $2) returning txid_current()::text";

fn job(k: &str, v: i32, keep: bool) -> (Job, oneshot::Sender<bool>) {
    let (ready_tx, ready) = oneshot::channel();
    let params: Vec<OwnedParam> = vec![
        (Box::new(k.to_string()), Type::TEXT),
        (Box::new(v), Type::INT4),
    ];
    let job = Job {
        caller: Caller {
            role: "authenticated".into(),
            claims: json!({"role": "authenticated", "sub": "u"}).into(),
            token: None,
        },
        method: "PUT".into(),
        path: format!("/{k}"),
        headers: json!({}),
        statement_timeout_ms: 0,
        statements: vec![(INSERT, params)],
        order: k.into(),
        keep: Box::new(move |_| keep),
        ready,
    };
    (job, ready_tx)
}

/// A group running one transaction at a time, held by a first job ("0-first") that is not ready
/// yet: members submitted now queue behind it and run together in the next group transaction.
async fn held_group(
    t: &TestDb,
) -> (
    std::sync::Arc<Group>,
    tokio::task::JoinHandle<Outcome>,
    oneshot::Sender<bool>,
) {
    let group = Group::new(t.state.pool.clone(), 1);
    let (first, release_first) = job("0-first", 1, true);
    let g = group.clone();
    let first = tokio::spawn(async move { g.submit(first).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    (group, first, release_first)
}

/// The keys in `public.gc`, in order.
async fn keys(t: &TestDb) -> Vec<String> {
    t.admin()
        .query("select k from public.gc order by k", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn txid(o: &Outcome) -> String {
    match o {
        Outcome::Committed(r) => r[0].as_ref().unwrap()[0].get(0),
        _ => panic!("not committed"),
    }
}

#[tokio::test]
async fn a_refused_member_rolls_back_alone_while_the_rest_commit_together() {
    let t = TestDb::new().await;
    t.admin()
        .batch_execute(
            "create table public.gc (k text primary key, v int check (v >= 0));
             alter table public.gc enable row level security;
             create policy small_only on public.gc for insert to authenticated with check (v < 100);
             grant insert on public.gc to authenticated;",
        )
        .await
        .unwrap();
    // One group at a time: the first job holds it (not ready) while the others queue behind it,
    // so they all run in the second group transaction.
    let (group, first, release_first) = held_group(&t).await;
    let mut readies = Vec::new();
    let mut waiting = Vec::new();
    // (key, value, keep, ready)
    let members = [
        ("a", 1, true, true),
        ("b", -1, true, true),  // the CHECK constraint refuses it
        ("c", 2, false, true),  // its own check refuses it
        ("d", 3, true, false),  // its bytes never became durable
        ("e", 500, true, true), // row-level security refuses it
        ("f", 4, true, true),
    ];
    for (k, v, keep, ready) in members {
        let (j, r) = job(k, v, keep);
        readies.push((r, ready));
        let g = group.clone();
        waiting.push(tokio::spawn(async move { g.submit(j).await }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    release_first.send(true).unwrap();
    for (r, ready) in readies {
        r.send(ready).unwrap();
    }
    let first = first.await.unwrap();
    let mut outcomes = Vec::new();
    for w in waiting {
        outcomes.push(w.await.unwrap());
    }
    let code = |o: &Outcome| match o {
        Outcome::Refused(Ok(r)) => r[0]
            .as_ref()
            .unwrap_err()
            .code()
            .unwrap()
            .code()
            .to_string(),
        Outcome::Refused(Err(e)) => e.code().unwrap().code().to_string(),
        _ => panic!("not refused"),
    };
    assert_eq!(code(&outcomes[1]), "23514", "check_violation");
    assert!(matches!(&outcomes[2], Outcome::Refused(Ok(r)) if r[0].is_ok()));
    assert!(matches!(outcomes[3], Outcome::NotReady));
    assert_eq!(code(&outcomes[4]), "42501", "RLS");
    // a and f committed, in one transaction, not the first job's.
    let (a, f) = (txid(&outcomes[0]), txid(&outcomes[5]));
    assert_eq!(a, f);
    assert_ne!(a, txid(&first));
    let rows = keys(&t).await;
    assert_eq!(rows, ["0-first", "a", "f"]);
}

#[tokio::test]
async fn a_shared_transaction_that_fails_commits_nothing_and_sends_each_member_alone() {
    let t = TestDb::new().await;
    t.admin()
        .batch_execute(
            "create table public.gc (k text primary key, v int check (v >= 0));
             grant insert on public.gc to authenticated;",
        )
        .await
        .unwrap();
    let (group, first, release_first) = held_group(&t).await;
    // A statement PostgreSQL cannot even prepare breaks the shared transaction, not one savepoint.
    let (good, good_ready) = job("a", 1, true);
    let (mut bad, bad_ready) = job("b", 2, true);
    bad.statements[0].0 = "insert into public.gc (k, v) valuez ($1, $2)";
    let (g1, g2) = (group.clone(), group.clone());
    let good = tokio::spawn(async move { g1.submit(good).await });
    let bad = tokio::spawn(async move { g2.submit(bad).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    release_first.send(true).unwrap();
    good_ready.send(true).unwrap();
    bad_ready.send(true).unwrap();
    txid(&first.await.unwrap());
    assert!(matches!(good.await.unwrap(), Outcome::Alone));
    assert!(matches!(bad.await.unwrap(), Outcome::Alone));
    // The group goes on with a fresh connection.
    let (next, next_ready) = job("c", 3, true);
    next_ready.send(true).unwrap();
    txid(&group.submit(next).await);
    let rows = keys(&t).await;
    assert_eq!(rows, ["0-first", "c"]);
}

fn user(sub: &str) -> Actor {
    common::storage_user(sub, "PUT")
}

fn small(key: &str, upsert: bool, len: usize, content_type: &str) -> PutSpec {
    PutSpec {
        bucket: "private".into(),
        key: key.into(),
        upsert,
        content_type: content_type.into(),
        cache_control: None,
        user_metadata: None,
        declared_len: Some(len as u64),
        extra: None,
    }
}

const ALICE: &str = "7f1d2a3e-0000-4000-8000-00000000000a";
const BOB: &str = "7f1d2a3e-0000-4000-8000-00000000000b";

#[tokio::test]
async fn a_burst_of_small_writes_each_decided_as_its_caller() {
    let t = TestDb::new().await;
    t.admin()
        .batch_execute(
            "create policy own_read on storage.objects for select to authenticated
               using (bucket_id = 'private' and (storage.foldername(name))[1] = auth.uid()::text);
             create policy own_write on storage.objects for insert to authenticated
               with check (bucket_id = 'private' and (storage.foldername(name))[1] = auth.uid()::text);
             create policy own_update on storage.objects for update to authenticated
               using (bucket_id = 'private' and (storage.foldername(name))[1] = auth.uid()::text);",
        )
        .await
        .unwrap();
    let core = storage::core_of(&t.state);
    core.create_bucket(
        &Actor::service("POST", "/"),
        "private",
        "private",
        &BucketSpec {
            public: None,
            file_size_limit: Some(Some(100)),
            allowed_mime_types: Some(Some(vec!["text/*".into()])),
        },
    )
    .await
    .unwrap();
    let (alice, bob) = (user(ALICE), user(BOB));
    // An object to overwrite: in a group, its overwrite keeps the row's id and runs alone.
    let old = core
        .put(
            &alice,
            &small(&format!("{ALICE}/old.txt"), false, 3, "text/plain"),
            disk::once(Bytes::from_static(b"old")),
        )
        .await
        .unwrap();
    let mut writes = Vec::new();
    for i in 0..40 {
        // What each write is, and the outcome it must get.
        let (actor, spec, body, expect): (&Actor, PutSpec, Bytes, &str) = match i % 8 {
            0 => (
                &bob,
                small(&format!("{ALICE}/bob{i}.txt"), true, 2, "text/plain"),
                Bytes::from_static(b"no"),
                "denied",
            ),
            1 => (
                &alice,
                small(&format!("{ALICE}/big{i}.txt"), true, 101, "text/plain"),
                Bytes::from(vec![b'x'; 101]),
                "too large",
            ),
            2 => (
                &alice,
                small(&format!("{ALICE}/img{i}.png"), true, 1, "image/png"),
                Bytes::from_static(b"p"),
                "mime",
            ),
            3 => (
                &alice,
                small(&format!("{ALICE}/old.txt"), true, 3, "text/plain"),
                Bytes::from(format!("{i:03}")),
                "ok",
            ),
            4 => (
                &alice,
                small(&format!("{ALICE}/dup.txt"), false, 3, "text/plain"),
                Bytes::from(format!("{i:03}")),
                "ok or exists",
            ),
            _ => (
                &alice,
                small(&format!("{ALICE}/new{i}.txt"), true, 3, "text/plain"),
                Bytes::from(format!("{i:03}")),
                "ok",
            ),
        };
        let core = core.clone();
        let actor = actor.clone();
        writes.push(tokio::spawn(async move {
            let got = core.put(&actor, &spec, disk::once(body)).await;
            (spec.key, expect, got)
        }));
    }
    let mut dup_stored = 0;
    for w in writes {
        let (key, expect, got) = w.await.unwrap();
        match (expect, &got) {
            ("denied", Err(StorageError::Denied))
            | ("too large", Err(StorageError::TooLarge { limit: 100 }))
            | ("mime", Err(StorageError::MimeNotAllowed(_)))
            | ("ok", Ok(_))
            | ("ok or exists", Err(StorageError::KeyExists)) => {}
            ("ok or exists", Ok(_)) => dup_stored += 1,
            _ => panic!("{key}: expected {expect}, got {got:?}"),
        }
        if let Ok(info) = got
            && key.ends_with("old.txt")
        {
            assert_eq!(info.id, old.id, "an overwrite keeps the row's id");
        }
    }
    assert_eq!(
        dup_stored, 1,
        "one of the create-only writes of one key wins"
    );
    // Every row has its bytes, and no bytes are left without a row.
    let rows = t
        .admin()
        .query(
            "select id, version from storage.objects where bucket_id = 'private' order by name",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        1 + 1 + 15,
        "old.txt, dup.txt and the 15 new ones"
    );
    let mut want: Vec<String> = rows
        .iter()
        .map(|r| {
            let id: uuid::Uuid = r.get(0);
            let version: String = r.get(1);
            format!("{id}/{version}")
        })
        .collect();
    want.sort();
    let mut have: Vec<String> = core
        .backend()
        .older_than(Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .map(|b| match b {
            storage::backend::BlobKey::Object { id, version } => format!("{id}/{version}"),
            other => panic!("unexpected blob {other:?}"),
        })
        .collect();
    have.sort();
    assert_eq!(have, want);
}
