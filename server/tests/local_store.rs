//! The localStore table every doska creates (internal migration `0012_local_store`), driven through
//! the REST door as @doska/client drives it: each user reads and writes only their own keys, every
//! write takes a higher server version (a client cannot choose it), a deleted key stays as a
//! tombstone, `anon` gets nothing; the table is published and never in the no-RLS warning.

mod common;
mod rest_fixture;

use rest_fixture::Rest;
use serde_json::{Value, json};

const USER_A: &str = "00000000-0000-0000-0000-0000000000aa";
const USER_B: &str = "00000000-0000-0000-0000-0000000000bb";
const WRITE: &str = "/doska_local_store?on_conflict=user_id,store,key";

async fn setup() -> Rest {
    Rest::with(&format!(
        "insert into auth.users (id, email) values ('{USER_A}', 'a@example.com'), ('{USER_B}', 'b@example.com');"
    ))
    .await
}

fn bearer(r: &Rest, sub: &str) -> String {
    format!("Bearer {}", r.token("authenticated", Some(sub)))
}

/// Upserts `rows` as the client does; returns the status and the answer's rows.
async fn write(r: &Rest, auth: &str, rows: Value) -> (u16, Value) {
    let h = [
        ("authorization", auth),
        (
            "prefer",
            "return=representation,resolution=merge-duplicates",
        ),
    ];
    let res = r.send("POST", WRITE, &h, &rows.to_string()).await;
    let body = serde_json::from_slice(&res.body).unwrap_or(Value::Null);
    (res.status, body)
}

async fn read(r: &Rest, auth: Option<&str>, store: &str) -> (u16, Value) {
    let mut h = Vec::new();
    if let Some(a) = auth {
        h.push(("authorization", a));
    }
    let url = format!("/doska_local_store?store=eq.{store}&select=key,value,version&order=key");
    let res = r.send("GET", &url, &h, "").await;
    (
        res.status,
        serde_json::from_slice(&res.body).unwrap_or(Value::Null),
    )
}

fn version(row: &Value) -> i64 {
    row["version"].as_i64().expect("a version")
}

#[tokio::test]
async fn users_see_and_write_only_their_own_keys() {
    let r = setup().await;
    let (a, b) = (bearer(&r, USER_A), bearer(&r, USER_B));
    let (status, rows) = write(
        &r,
        &a,
        json!([{"store": "prefs", "key": "theme", "value": "dark"}]),
    )
    .await;
    assert_eq!(status, 201, "{rows}");
    assert_eq!(rows[0]["user_id"], USER_A);

    // B sees nothing of A's, and its own key of the same name is another row.
    assert_eq!(read(&r, Some(&b), "prefs").await, (200, json!([])));
    let (status, _) = write(
        &r,
        &b,
        json!([{"store": "prefs", "key": "theme", "value": "light"}]),
    )
    .await;
    assert_eq!(status, 201);
    let (_, rows) = read(&r, Some(&a), "prefs").await;
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["value"], "dark");

    // B cannot write a row as A, nor change or delete A's.
    let (status, body) = write(
        &r,
        &b,
        json!([{"user_id": USER_A, "store": "prefs", "key": "theme", "value": "hijacked"}]),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let h = [
        ("authorization", b.as_str()),
        ("prefer", "return=representation"),
    ];
    let res = r
        .send(
            "PATCH",
            &format!("/doska_local_store?user_id=eq.{USER_A}"),
            &h,
            r#"{"value":"x"}"#,
        )
        .await;
    assert_eq!((res.status, res.json()), (200, json!([])));
    let res = r
        .send(
            "DELETE",
            &format!("/doska_local_store?user_id=eq.{USER_A}"),
            &h,
            "",
        )
        .await;
    assert_eq!((res.status, res.json()), (200, json!([])));
    let (_, rows) = read(&r, Some(&a), "prefs").await;
    assert_eq!(rows[0]["value"], "dark");

    // anon gets no access at all.
    assert_eq!(read(&r, None, "prefs").await.0, 401);
    let res = r
        .send(
            "POST",
            WRITE,
            &[],
            r#"{"store":"prefs","key":"k","value":"v"}"#,
        )
        .await;
    assert_eq!(res.status, 401, "{}", res.text());
}

#[tokio::test]
async fn versions_increase_and_deletes_are_tombstones() {
    let r = setup().await;
    let a = bearer(&r, USER_A);
    let (_, first) = write(&r, &a, json!([{"store": "s", "key": "k", "value": "1"}])).await;
    // A client cannot choose the version: the server assigns the next one.
    let (_, second) = write(
        &r,
        &a,
        json!([{"store": "s", "key": "k", "value": "2", "version": 1}]),
    )
    .await;
    assert!(
        version(&second[0]) > version(&first[0]),
        "{first} then {second}"
    );
    let (_, batch) = write(
        &r,
        &a,
        json!([{"store": "s", "key": "k", "value": "3"}, {"store": "s", "key": "other", "value": "x"}]),
    )
    .await;
    assert!(version(&batch[0]) > version(&second[0]));
    assert_ne!(version(&batch[0]), version(&batch[1]));
    // Another user's writes share the one sequence: versions order writes across the server.
    let b = bearer(&r, USER_B);
    let (_, theirs) = write(&r, &b, json!([{"store": "s", "key": "k", "value": "b"}])).await;
    assert!(version(&theirs[0]) > version(&batch[1]));

    // A delete is a write of null: the row stays, with a newer version.
    let (status, tomb) = write(&r, &a, json!([{"store": "s", "key": "k", "value": null}])).await;
    assert_eq!(
        status, 200,
        "an upsert that only updated answers 200 (PostgREST 12+)"
    );
    assert!(version(&tomb[0]) > version(&theirs[0]));
    let (_, rows) = read(&r, Some(&a), "s").await;
    assert_eq!(rows[0]["key"], "k");
    assert_eq!(rows[0]["value"], Value::Null);
    assert_eq!(version(&rows[0]), version(&tomb[0]));
}

#[tokio::test]
async fn published_with_rls_and_never_warned_about() {
    let r = setup().await;
    let published: i64 =
        r.db.value(
            "select count(*) from pg_publication_tables where pubname = 'supabase_realtime' \
             and schemaname = 'public' and tablename = 'doska_local_store'",
            &[],
        )
        .await;
    assert_eq!(published, 1);
    let warned = doska::db::grants::tables_without_rls(r.db.admin(), &["public".to_string()])
        .await
        .unwrap();
    assert!(
        !warned.iter().any(|t| t.contains("doska_local_store")),
        "{warned:?}"
    );
    // Applying the internal migrations again changes nothing (each runs once).
    let mut admin = common::connect(&common::cluster().config(&r.db.name)).await;
    assert_eq!(
        doska::db::internal::apply(&mut admin).await.unwrap(),
        Vec::<&str>::new()
    );
}
