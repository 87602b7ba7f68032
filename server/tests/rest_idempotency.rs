//! `Idempotency-Key` on REST writes against a real PostgreSQL: a repeat gets the stored answer and
//! runs nothing; two duplicates at once apply once; another request under the same key is a 422;
//! keys are per user; failed writes and 5xx answers are not stored; expired keys run again; the key
//! table is out of every API role's reach; bad keys are 400s.

mod common;
mod rest_fixture;

use rest_fixture::{FIXTURE, Rest};
use serde_json::json;

const USER_A: &str = "00000000-0000-0000-0000-00000000000a";
const USER_B: &str = "00000000-0000-0000-0000-00000000000b";

async fn count(r: &Rest, sql: &str) -> i64 {
    r.db.value::<i64>(sql, &[]).await
}

#[tokio::test]
async fn replay_returns_the_stored_answer_and_runs_once() {
    let r = Rest::new().await;
    let h = [
        ("idempotency-key", "k-insert"),
        ("prefer", "return=representation"),
    ];
    let body = r#"{"name":"Once"}"#;
    let first = r.send("POST", "/actors?select=id,name", &h, body).await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = r.send("POST", "/actors?select=id,name", &h, body).await;
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    for name in ["content-type", "content-range", "preference-applied"] {
        assert_eq!(again.header(name), first.header(name), "{name}");
    }
    assert_eq!(
        count(&r, "select count(*) from actors where name = 'Once'").await,
        1
    );
    assert_eq!(
        count(
            &r,
            "select count(*) from doska.idempotency_keys where key = 'k-insert'"
        )
        .await,
        1
    );

    // Location (headers-only), PATCH, DELETE and RPC replay too.
    let h = [
        ("idempotency-key", "k-loc"),
        ("prefer", "return=headers-only"),
    ];
    let first = r.send("POST", "/directors", &h, r#"{"name":"Loc"}"#).await;
    let again = r.send("POST", "/directors", &h, r#"{"name":"Loc"}"#).await;
    assert_eq!((first.status, again.status), (201, 201));
    assert!(first.header("location").is_some());
    assert_eq!(again.header("location"), first.header("location"));
    let h = [("idempotency-key", "k-rpc")];
    let first = r
        .send("POST", "/rpc/new_actor", &h, r#"{"name":"Rpc"}"#)
        .await;
    let again = r
        .send("POST", "/rpc/new_actor", &h, r#"{"name":"Rpc"}"#)
        .await;
    assert_eq!((first.status, again.status), (200, 200), "{}", again.text());
    assert_eq!(first.body, again.body);
    assert_eq!(
        count(&r, "select count(*) from actors where name = 'Rpc'").await,
        1
    );
    let h = [("idempotency-key", "k-delete")];
    let first = r.send("DELETE", "/actors?name=eq.Rpc", &h, "").await;
    let again = r.send("DELETE", "/actors?name=eq.Rpc", &h, "").await;
    assert_eq!((first.status, again.status), (204, 204));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    // The same key on another path, or another method, is another key.
    let h = [("idempotency-key", "k-insert")];
    let other = r
        .send("POST", "/directors", &h, r#"{"name":"Other"}"#)
        .await;
    assert_eq!(other.status, 201, "{}", other.text());
    assert_eq!(other.header("idempotent-replayed"), None);
    // Reads ignore the header.
    let read = r.send("GET", "/actors?name=eq.Once", &h, "").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.header("idempotent-replayed"), None);
}

#[tokio::test]
async fn concurrent_duplicates_apply_once() {
    let r = Rest::new().await;
    // Hold the table so both requests are inside their transactions at once: one holds the key's
    // row and waits for the table, the other waits for the key's row.
    r.db.admin()
        .batch_execute("begin; lock table actors in exclusive mode")
        .await
        .unwrap();
    let h = [
        ("idempotency-key", "k-race"),
        ("prefer", "return=representation"),
    ];
    let body = r#"{"name":"Racer"}"#;
    let release = async {
        for _ in 0..600 {
            let waiting = r
                .db
                .admin()
                .query_one(
                    "select count(*) from pg_locks where not granted \
                     and database is not distinct from (select oid from pg_database \
                     where datname = current_database()) or (not granted and locktype = 'transactionid')",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0);
            if waiting >= 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        r.db.admin().batch_execute("commit").await.unwrap();
    };
    let (a, b, ()) = tokio::join!(
        r.send("POST", "/actors?select=name", &h, body),
        r.send("POST", "/actors?select=name", &h, body),
        release
    );
    assert_eq!(
        (a.status, b.status),
        (201, 201),
        "{} / {}",
        a.text(),
        b.text()
    );
    assert_eq!(a.body, b.body);
    let replayed = [&a, &b]
        .iter()
        .filter(|res| res.header("idempotent-replayed") == Some("true"))
        .count();
    assert_eq!(replayed, 1);
    assert_eq!(
        count(&r, "select count(*) from actors where name = 'Racer'").await,
        1
    );
}

#[tokio::test]
async fn another_request_under_the_same_key_is_422() {
    let r = Rest::new().await;
    let h = [("idempotency-key", "k-same")];
    let first = r.send("POST", "/actors", &h, r#"{"name":"First"}"#).await;
    assert_eq!(first.status, 201);
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "other body",
            vec![("idempotency-key", "k-same")],
            r#"{"name":"Second"}"#,
        ),
        (
            "other Prefer",
            vec![
                ("idempotency-key", "k-same"),
                ("prefer", "return=representation"),
            ],
            r#"{"name":"First"}"#,
        ),
    ];
    for (name, headers, body) in cases {
        let res = r.send("POST", "/actors", &headers, body).await;
        assert_eq!(res.status, 422, "{name}: {}", res.text());
        let v = res.json();
        assert_eq!(v["code"], "PGRST411", "{name}");
        for k in ["message", "details", "hint"] {
            assert!(v.get(k).is_some(), "{name}: {k}");
        }
    }
    let other_query = r
        .send("POST", "/actors?select=id", &h, r#"{"name":"First"}"#)
        .await;
    assert_eq!(other_query.status, 422);
    assert_eq!(
        count(
            &r,
            "select count(*) from actors where name in ('First', 'Second')"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn keys_are_per_user() {
    let r = Rest::new().await;
    let a = format!("Bearer {}", r.token("authenticated", Some(USER_A)));
    let b = format!("Bearer {}", r.token("authenticated", Some(USER_B)));
    let body = r#"{"body":"mine"}"#;
    for token in [&a, &b] {
        let h = [
            ("idempotency-key", "shared"),
            ("authorization", token.as_str()),
        ];
        let res = r.send("POST", "/notes", &h, body).await;
        assert_eq!(res.status, 201, "{}", res.text());
        assert_eq!(res.header("idempotent-replayed"), None);
    }
    // Anonymous and service_role are their own scopes too.
    let service = format!("Bearer {}", r.token("service_role", None));
    for token in [None, Some(service.as_str())] {
        let mut h = vec![("idempotency-key", "shared")];
        if let Some(t) = token {
            h.push(("authorization", t));
        }
        let res = r.send("POST", "/actors", &h, r#"{"name":"scoped"}"#).await;
        assert_eq!(res.status, 201, "{}", res.text());
    }
    assert_eq!(count(&r, "select count(*) from notes").await, 2);
    assert_eq!(
        count(&r, "select count(*) from actors where name = 'scoped'").await,
        2
    );
    assert_eq!(
        count(
            &r,
            "select count(*) from doska.idempotency_keys where key = 'shared'"
        )
        .await,
        4
    );
}

#[tokio::test]
async fn failed_writes_and_server_errors_are_not_stored() {
    let r = Rest::with(&format!(
        "{FIXTURE}
         create function unavailable() returns int language plpgsql as $$ begin
           insert into actors(name) values ('503');
           perform set_config('response.status', '503', true);
           return 1; end $$;
         grant execute on function unavailable() to anon;"
    ))
    .await;
    // RLS refuses a note owned by someone else: not stored, and the same request runs again.
    let a = format!("Bearer {}", r.token("authenticated", Some(USER_A)));
    let h = [("idempotency-key", "k-rls"), ("authorization", a.as_str())];
    let body = format!(r#"{{"owner":"{USER_B}","body":"x"}}"#);
    for _ in 0..2 {
        let res = r.send("POST", "/notes", &h, &body).await;
        assert_eq!(res.status, 403, "{}", res.text());
        assert_eq!(res.header("idempotent-replayed"), None);
    }
    // A constraint violation, then the same request once the conflict is gone.
    let h = [("idempotency-key", "k-dup")];
    let dup = r#"{"id":3,"name":"Again"}"#;
    let res = r.send("POST", "/directors", &h, dup).await;
    assert_eq!(res.status, 409, "{}", res.text());
    r.db.admin()
        .batch_execute("delete from directors where id = 3")
        .await
        .unwrap();
    let res = r.send("POST", "/directors", &h, dup).await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(res.header("idempotent-replayed"), None);
    // A 5xx answer commits its work but keeps no answer: a retry runs again.
    let h = [("idempotency-key", "k-503")];
    for _ in 0..2 {
        let res = r.send("POST", "/rpc/unavailable", &h, "{}").await;
        assert_eq!(res.status, 503, "{}", res.text());
        assert_eq!(res.header("idempotent-replayed"), None);
    }
    assert_eq!(
        count(&r, "select count(*) from actors where name = '503'").await,
        2
    );
    assert_eq!(
        count(
            &r,
            "select count(*) from doska.idempotency_keys where key in ('k-rls', 'k-503')"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn expired_keys_run_again_and_are_swept() {
    let r = Rest::new().await;
    let h = [("idempotency-key", "k-old")];
    let body = r#"{"name":"Aged"}"#;
    assert_eq!(r.send("POST", "/actors", &h, body).await.status, 201);
    r.db.admin()
        .batch_execute(
            "update doska.idempotency_keys set expires_at = now() - interval '1 second' \
             where key = 'k-old'",
        )
        .await
        .unwrap();
    let res = r.send("POST", "/actors", &h, body).await;
    assert_eq!(res.status, 201);
    assert_eq!(res.header("idempotent-replayed"), None);
    assert_eq!(
        count(&r, "select count(*) from actors where name = 'Aged'").await,
        2
    );
    // The fresh claim lives 24 hours; the sweep takes only expired rows.
    let kept = "select count(*) from doska.idempotency_keys \
                where key = 'k-old' and expires_at > now() + interval '23 hours'";
    assert_eq!(count(&r, kept).await, 1);
    r.db.admin()
        .batch_execute(
            "insert into doska.idempotency_keys (role, user_id, method, path, key, request_hash, \
             expires_at) values ('anon', '', 'POST', '/x', 'stale', 'h', now() - interval '1 hour')",
        )
        .await
        .unwrap();
    let removed = doska::rest::idempotency::sweep(&r.db.state.admin)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(
        count(&r, "select count(*) from doska.idempotency_keys").await,
        1
    );
}

#[tokio::test]
async fn the_key_table_is_out_of_reach_of_api_roles() {
    let r = Rest::new().await;
    assert_eq!(
        r.send(
            "POST",
            "/actors",
            &[("idempotency-key", "secret")],
            r#"{"name":"S"}"#
        )
        .await
        .status,
        201
    );
    let service = format!("Bearer {}", r.token("service_role", None));
    let user = format!("Bearer {}", r.token("authenticated", Some(USER_A)));
    for token in [None, Some(user.as_str()), Some(service.as_str())] {
        let mut h = vec![("accept-profile", "doska")];
        if let Some(t) = token {
            h.push(("authorization", t));
        }
        let res = r.send("GET", "/idempotency_keys", &h, "").await;
        assert_eq!(res.status, 406, "{}", res.text());
        assert_eq!(res.json()["code"], "PGRST106");
    }
    // Nor through SQL as any API role: no privilege on the table, only the two functions.
    for role in ["anon", "authenticated", "service_role"] {
        for sql in [
            "select * from doska.idempotency_keys",
            "insert into doska.idempotency_keys (role, user_id, method, path, key, request_hash) \
             values ('anon', '', 'POST', '/actors', 'forged', 'h')",
            "delete from doska.idempotency_keys",
        ] {
            let err =
                r.db.admin()
                    .batch_execute(&format!("begin; set local role {role}; {sql}"))
                    .await
                    .expect_err(sql);
            r.db.admin().batch_execute("rollback").await.unwrap();
            assert_eq!(
                err.as_db_error().map(|e| e.code().code()),
                Some("42501"),
                "{role}: {sql}"
            );
        }
    }
}

#[tokio::test]
async fn bad_keys_are_400() {
    let r = Rest::new().await;
    let long = "k".repeat(256);
    for key in ["", long.as_str()] {
        let res = r
            .send(
                "POST",
                "/actors",
                &[("idempotency-key", key)],
                r#"{"name":"Bad"}"#,
            )
            .await;
        assert_eq!(res.status, 400, "{}", res.text());
        assert_eq!(res.json()["code"], "PGRST410");
    }
    let res = r
        .send(
            "PATCH",
            "/actors?id=eq.1",
            &[("idempotency-key", long.as_str())],
            r#"{"name":"Bad"}"#,
        )
        .await;
    assert_eq!(res.status, 400);
    assert_eq!(
        count(&r, "select count(*) from actors where name = 'Bad'").await,
        0
    );
    let ok = r
        .send(
            "PATCH",
            "/actors?id=eq.1",
            &[("idempotency-key", &long[..255])],
            r#"{"name":"Fits"}"#,
        )
        .await;
    assert_eq!(ok.status, 204, "{}", json!(ok.text()));
}
