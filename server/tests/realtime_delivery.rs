//! Realtime delivery against a real PostgreSQL: which callers `authorize::visible` lets see a
//! change (RLS by primary key, table privileges for deletes, key-less tables), and `deliver`
//! queueing `postgres_changes` only to the channels that may see it, with the ids of their
//! matching bindings.

mod common;

use std::sync::Arc;

use doska::jwt::Caller;
use doska::realtime::authorize;
use doska::realtime::decode::{Change, ChangeKind, ColumnInfo};
use doska::realtime::deliver::deliver;
use doska::realtime::hub::{Hub, Membership, Outbox};
use doska::realtime::lsn::Lsn;
use doska::realtime::phoenix::{Encoded, ServerMessage, Vsn};
use doska::realtime::subscriptions::PostgresChanges;
use serde_json::{Map, Value, json};

const ALICE: &str = "00000000-0000-0000-0000-00000000000a";
const BOB: &str = "00000000-0000-0000-0000-00000000000b";

async fn fixture() -> common::TestDb {
    let db = common::TestDb::new().await;
    db.admin()
        .batch_execute(
            "create table public.notes (id bigint primary key, owner uuid not null, body text);
             alter table public.notes enable row level security;
             create policy own on public.notes for select to authenticated using (owner = auth.uid());
             grant select on public.notes to anon, authenticated, service_role;
             create table public.secret_table (id int primary key);
             revoke all on public.secret_table from anon, authenticated;
             create table public.log (msg text);
             grant select on public.log to anon, authenticated;
             insert into public.notes values (1, '00000000-0000-0000-0000-00000000000a', 'alice''s'),
                                             (2, '00000000-0000-0000-0000-00000000000b', 'bob''s');",
        )
        .await
        .unwrap();
    db
}

fn columns(cols: &[(&str, &str, bool)]) -> Arc<[ColumnInfo]> {
    cols.iter()
        .map(|(name, ty, key)| ColumnInfo {
            name: name.to_string(),
            type_name: ty.to_string(),
            type_oid: 0,
            key: *key,
        })
        .collect()
}

fn change(table: &str, kind: ChangeKind, cols: Arc<[ColumnInfo]>, record: Value) -> Change {
    let record: Map<String, Value> = record.as_object().cloned().unwrap_or_default();
    let (record, old_record) = if kind == ChangeKind::Delete {
        (Map::new(), Some(record))
    } else {
        (record, None)
    };
    Change {
        schema: "public".into(),
        table: table.into(),
        kind,
        commit_lsn: Lsn(1),
        commit_timestamp: chrono::Utc::now(),
        index_in_tx: 0,
        xid: 0,
        columns: cols,
        record,
        old_record,
        unchanged_toast: vec![],
        row_security: true,
    }
}

fn note(kind: ChangeKind, id: i64, owner: &str) -> Change {
    change(
        "notes",
        kind,
        columns(&[
            ("id", "int8", true),
            ("owner", "uuid", false),
            ("body", "text", false),
        ]),
        json!({"id": id, "owner": owner, "body": "x"}),
    )
}

fn user(sub: &str) -> Caller {
    Caller::new(
        "authenticated",
        json!({"sub": sub, "role": "authenticated"}),
    )
}

fn role(r: &str) -> Caller {
    Caller::new(r, json!({"role": r}))
}

/// What `authorize::visible` answers for one change, per caller.
async fn see(
    pool: &deadpool_postgres::Pool,
    change: &Change,
    callers: &[Caller],
) -> Result<Vec<bool>, authorize::AuthorizeError> {
    let mut answers = authorize::visible(pool, change, callers).await?;
    assert!(answers.saw_commit(change.xid));
    Ok(answers.allowed.pop().unwrap_or_default())
}

/// What `authorize::visible_batch` answers, per change and asked caller.
async fn batch(
    pool: &deadpool_postgres::Pool,
    changes: &[&Change],
    callers: &[Caller],
    asks: &[Vec<usize>],
) -> Result<Vec<Vec<bool>>, authorize::AuthorizeError> {
    Ok(authorize::visible_batch(pool, changes, callers, asks)
        .await?
        .allowed)
}

/// Alice, Bob, anon, service_role (BYPASSRLS) and a role the authenticator may not become.
fn callers() -> [Caller; 5] {
    [
        user(ALICE),
        user(BOB),
        role("anon"),
        role("service_role"),
        role("postgres"),
    ]
}

#[tokio::test]
async fn visibility_follows_rls_and_privileges() {
    let db = fixture().await;
    let pool = db.pool();
    let callers = callers();

    // Row 1 is Alice's: she and service_role (BYPASSRLS) see it; Bob and anon do not; a role the
    // authenticator may not become sees nothing.
    let got = see(pool, &note(ChangeKind::Insert, 1, ALICE), &callers)
        .await
        .unwrap();
    assert_eq!(got, [true, false, false, true, false]);
    let got = see(pool, &note(ChangeKind::Update, 2, BOB), &callers)
        .await
        .unwrap();
    assert_eq!(got, [false, true, false, true, false]);
    // A row gone since the change is visible to no one RLS applies to; a caller that bypasses
    // RLS (service_role) is not asked about rows at all, as in Supabase.
    let got = see(pool, &note(ChangeKind::Insert, 99, ALICE), &callers)
        .await
        .unwrap();
    assert_eq!(got, [false, false, false, true, false]);
    // Deletes: whoever may read the table.
    let got = see(pool, &note(ChangeKind::Delete, 99, ALICE), &callers)
        .await
        .unwrap();
    assert_eq!(got, [true, true, true, true, false]);
    // No SELECT privilege: nothing, whatever the row.
    let secret = change(
        "secret_table",
        ChangeKind::Insert,
        columns(&[("id", "int4", true)]),
        json!({"id": 1}),
    );
    let got = see(pool, &secret, &callers[..3]).await.unwrap();
    assert_eq!(got, [false, false, false]);
    // No key, no RLS: table privilege decides.
    let log = change(
        "log",
        ChangeKind::Insert,
        columns(&[("msg", "text", false)]),
        json!({"msg": "m"}),
    );
    let got = see(pool, &log, &callers[..3]).await.unwrap();
    assert_eq!(got, [true, true, true]);
    // Empty: no query at all.
    assert!(see(pool, &log, &[]).await.unwrap().is_empty());
    // The connection is back in the pool, usable and outside any transaction.
    let c = pool.get().await.unwrap();
    let row = c.query_one("select current_user::text", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "authenticator");
}

/// A batch answers exactly what one check per change answers, whatever the mix of tables,
/// kinds and callers — one caller's rows of a table share one statement, yet each row is
/// decided on its own — and asks a caller only about the changes listed for it.
#[tokio::test]
async fn batch_checks_answer_as_single_checks() {
    let db = fixture().await;
    let pool = db.pool();
    let callers = callers();
    let changes = [
        note(ChangeKind::Insert, 1, ALICE),
        note(ChangeKind::Update, 2, BOB),
        note(ChangeKind::Insert, 99, ALICE),
        note(ChangeKind::Delete, 99, ALICE),
        change(
            "secret_table",
            ChangeKind::Insert,
            columns(&[("id", "int4", true)]),
            json!({"id": 1}),
        ),
        change(
            "log",
            ChangeKind::Insert,
            columns(&[("msg", "text", false)]),
            json!({"msg": "m"}),
        ),
        note(ChangeKind::Update, 1, ALICE),
    ];
    let refs: Vec<&Change> = changes.iter().collect();
    // Every caller for every change, then a sparse pattern (Bob only for some).
    let all: Vec<Vec<usize>> = changes
        .iter()
        .map(|_| (0..callers.len()).collect())
        .collect();
    let got = batch(pool, &refs, &callers, &all).await.unwrap();
    for (c, change) in changes.iter().enumerate() {
        let single = see(pool, change, &callers).await.unwrap();
        assert_eq!(got[c], single, "change {c}");
    }
    let sparse: Vec<Vec<usize>> = vec![
        vec![1],
        vec![1, 0],
        vec![],
        vec![2],
        vec![3],
        vec![],
        vec![0],
    ];
    let got = batch(pool, &refs, &callers, &sparse).await.unwrap();
    assert_eq!(
        got,
        vec![
            vec![false],
            vec![true, false],
            vec![],
            vec![true],
            // service_role may read secret_table and RLS does not apply: the (empty) table's
            // rows are not looked up.
            vec![true],
            vec![],
            vec![true]
        ]
    );
    // Repeated batches reuse the prepared statements and still decide per caller.
    for _ in 0..3 {
        let got = batch(pool, &refs[..2], &callers, &all[..2]).await.unwrap();
        assert_eq!(got[0], [true, false, false, true, false]);
        assert_eq!(got[1], [false, true, false, true, false]);
    }
}

fn caller(sub: Option<&str>) -> Caller {
    match sub {
        Some(s) => Caller {
            role: "authenticated".into(),
            claims: json!({"sub": s, "role": "authenticated"}).into(),
            token: None,
        },
        None => Caller::anonymous(),
    }
}

/// A queued message as a 2.0.0 client reads it: (event, payload).
fn wire(msg: ServerMessage) -> (String, Value) {
    let Some(Encoded::Text(text)) = msg.encode(Vsn::V2) else {
        panic!("not a text frame")
    };
    let mut v: Value = serde_json::from_str(&text).unwrap();
    (v[3].as_str().unwrap().to_string(), v[4].take())
}

#[tokio::test]
async fn deliver_queues_only_to_allowed_channels_with_their_binding_ids() {
    let db = fixture().await;
    let hub = Hub::new();
    let mut queues = Vec::new();
    for (sub, ids) in [
        (Some(ALICE), vec![7u32, 8]),
        (Some(BOB), vec![9]),
        (None, vec![10]),
    ] {
        let (outbox, rx, _) = Outbox::new(16);
        let bindings = ids
            .iter()
            .map(|&id| {
                let filter = (id == 8).then_some("id=eq.1");
                (
                    id,
                    PostgresChanges::parse("*", "public", Some("notes"), filter).unwrap(),
                )
            })
            .collect();
        hub.join(Membership {
            topic: Arc::from("realtime:t"),
            join_ref: None,
            outbox,
            broadcast_self: false,
            private: false,
            reads_broadcast: true,
            presence_key: String::new(),
            caller: caller(sub),
            bindings,
            gate: None,
        });
        queues.push(rx);
    }
    let sent = deliver(db.pool(), &hub, &note(ChangeKind::Insert, 1, ALICE))
        .await
        .unwrap();
    assert_eq!(sent, 1);
    let (event, payload) = wire(queues[0].try_recv().unwrap());
    assert_eq!(event, "postgres_changes");
    assert_eq!(payload["ids"], json!([7, 8]));
    assert_eq!(payload["data"]["type"], "INSERT");
    assert_eq!(payload["data"]["record"]["owner"], ALICE);
    assert_eq!(
        payload["data"]["columns"][0],
        json!({"name": "id", "type": "int8"})
    );
    assert!(queues[1].try_recv().is_err());
    assert!(queues[2].try_recv().is_err());

    // A delete of Alice's row reaches everyone who may read the table, with the key only.
    let mut del = note(ChangeKind::Delete, 1, ALICE);
    del.old_record
        .as_mut()
        .unwrap()
        .insert("body".into(), json!("secret"));
    assert_eq!(deliver(db.pool(), &hub, &del).await.unwrap(), 3);
    for q in &mut queues {
        let (_, payload) = wire(q.try_recv().unwrap());
        assert_eq!(payload["data"]["old_record"], json!({"id": 1}));
    }
}

#[tokio::test]
async fn a_full_queue_marks_the_slow_consumer() {
    let hub = Hub::new();
    let (outbox, _rx, overflowed) = Outbox::new(2);
    let chan = hub.join(Membership {
        topic: Arc::from("realtime:slow"),
        join_ref: None,
        outbox,
        broadcast_self: true,
        private: false,
        reads_broadcast: true,
        presence_key: "k".into(),
        caller: Caller::anonymous(),
        bindings: vec![],
        gate: None,
    });
    let body = || doska::realtime::phoenix::BroadcastBody::Json(json!(1));
    assert_eq!(
        hub.broadcast(Some(chan), "realtime:slow", false, "e".into(), None, body()),
        1
    );
    assert_eq!(
        hub.broadcast(Some(chan), "realtime:slow", false, "e".into(), None, body()),
        1
    );
    // The third does not fit: not queued, and the socket is told to close.
    assert_eq!(
        hub.broadcast(Some(chan), "realtime:slow", false, "e".into(), None, body()),
        0
    );
    tokio::time::timeout(std::time::Duration::from_secs(1), overflowed.notified())
        .await
        .expect("overflow signalled");
    hub.leave(chan);
    assert_eq!(hub.channels(), 0);
}

/// Hundreds of distinct callers in one batch, on a runtime with several threads: every caller's
/// check runs as that caller inside the batch's transaction (none is written after its ROLLBACK,
/// where it would run as the login role and be refused), in the shared transaction and in the
/// one-by-one rerun after a refused caller alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundreds_of_callers_in_one_batch_each_decide_as_themselves() {
    const USERS: usize = 400;
    let db = fixture().await;
    let pool = db.pool();
    let owners: Vec<String> = (0..USERS)
        .map(|i| format!("00000000-0000-0000-0001-{i:012x}"))
        .collect();
    db.admin()
        .execute(
            "insert into public.notes select 1000 + i, o::uuid, 'x' \
             from unnest($1::text[]) with ordinality u(o, i)",
            &[&owners],
        )
        .await
        .unwrap();
    let changes: Vec<Change> = owners
        .iter()
        .enumerate()
        .map(|(i, o)| note(ChangeKind::Update, 1001 + i as i64, o))
        .collect();
    let refs: Vec<&Change> = changes.iter().collect();
    // The first caller may not become its role: its refusal sends every caller after it to the
    // one-by-one rerun. Then one batch without it.
    for refused_first in [true, false] {
        let mut callers: Vec<Caller> = owners.iter().map(|o| user(o)).collect();
        let shift = usize::from(refused_first);
        if refused_first {
            callers.insert(0, role("postgres"));
        }
        // Change i: its owner, and the next user (who must not see it).
        let asks: Vec<Vec<usize>> = (0..USERS)
            .map(|i| {
                let mut ask = vec![i + shift, (i + 1) % USERS + shift];
                if refused_first {
                    ask.insert(0, 0);
                }
                ask
            })
            .collect();
        let want: Vec<Vec<bool>> = (0..USERS)
            .map(|_| {
                if refused_first {
                    vec![false, true, false]
                } else {
                    vec![true, false]
                }
            })
            .collect();
        for round in 0..10 {
            let got = batch(pool, &refs, &callers, &asks).await.unwrap();
            let wrong: Vec<usize> = (0..USERS).filter(|&c| got[c] != want[c]).collect();
            assert!(
                wrong.is_empty(),
                "round {round} (refused first: {refused_first}): {} changes answered wrongly, e.g. {:?}",
                wrong.len(),
                wrong.first().map(|&c| &got[c])
            );
        }
    }
}

/// A check that fails for a reason that says nothing about the caller (here a policy raising a
/// serialization failure while the test holds a lock) is an error to retry, not "not visible";
/// one PostgreSQL refuses (a policy raising an ordinary exception) is "not visible".
#[tokio::test]
async fn a_failing_check_is_retried_unless_postgresql_refused() {
    let db = fixture().await;
    let admin = db.admin();
    admin
        .batch_execute(
            "create table public.flaky (id bigint primary key, owner uuid not null);
             alter table public.flaky enable row level security;
             create function public.flaky_gate(kind text) returns boolean language plpgsql stable as $$
             begin
               if kind = 'refuse' then
                 raise exception 'this policy refuses';
               end if;
               if not pg_try_advisory_xact_lock_shared(424242) then
                 raise exception 'busy' using errcode = '40001';
               end if;
               return true;
             end $$;
             create policy own on public.flaky for select to authenticated
               using (owner = auth.uid() and public.flaky_gate(current_setting('request.jwt.claims')::json->>'kind'));
             grant select on public.flaky to authenticated;
             insert into public.flaky values (1, '00000000-0000-0000-0000-00000000000a');",
        )
        .await
        .unwrap();
    let flaky = change(
        "flaky",
        ChangeKind::Insert,
        columns(&[("id", "int8", true), ("owner", "uuid", false)]),
        json!({"id": 1, "owner": ALICE}),
    );
    let alice = user(ALICE);
    let refusing = Caller::new(
        "authenticated",
        json!({"sub": ALICE, "role": "authenticated", "kind": "refuse"}),
    );
    let pool = db.pool();
    assert_eq!(
        see(pool, &flaky, std::slice::from_ref(&alice))
            .await
            .unwrap(),
        [true]
    );
    // Refused by PostgreSQL: "not visible", for that caller only.
    assert_eq!(
        see(pool, &flaky, &[refusing.clone(), alice.clone()])
            .await
            .unwrap(),
        [false, true]
    );
    // Failing for a passing reason: an error, so the batch is checked again later.
    let holder = db.admin();
    holder
        .execute("select pg_advisory_lock(424242)", &[])
        .await
        .unwrap();
    match see(pool, &flaky, std::slice::from_ref(&alice)).await {
        Err(authorize::AuthorizeError::Transient(e)) => {
            assert_eq!(e.code().map(|c| c.code()), Some("40001"), "{e:?}")
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
    holder
        .execute("select pg_advisory_unlock(424242)", &[])
        .await
        .unwrap();
    assert_eq!(see(pool, &flaky, &[alice]).await.unwrap(), [true]);
}
