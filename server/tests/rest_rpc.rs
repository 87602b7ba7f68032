//! RPC against a real PostgreSQL: named arguments (POST JSON, GET query), defaults, a single
//! unnamed json argument, variadic, set-returning functions filtered like tables, void, overloads,
//! volatility and read-only transactions, custom errors and response settings; plus the OpenAPI root.

mod common;
mod rest_fixture;

use rest_fixture::{Expect::*, Rest, case, run};
use serde_json::json;

#[tokio::test]
async fn calls() {
    let r = Rest::new().await;
    let cases = vec![
        case("scalar post", "POST", "/rpc/add", 200, Json(json!(3))).body(r#"{"a":1,"b":2}"#),
        case("default argument", "POST", "/rpc/add", 200, Json(json!(6))).body(r#"{"a":5}"#),
        case("scalar get", "GET", "/rpc/add?a=2&b=3", 200, Json(json!(5))),
        case(
            "no arguments",
            "GET",
            "/rpc/hello",
            200,
            Json(json!("Hello world")),
        ),
        case(
            "no arguments post empty body",
            "POST",
            "/rpc/hello",
            200,
            Json(json!("Hello world")),
        ),
        case(
            "setof table filtered and ordered",
            "GET",
            "/rpc/films_by_year?y=1970&select=id,title&order=id.desc&title=neq.Ran",
            200,
            Json(json!([{"id":2,"title":"The Shining"}])),
        ),
        case(
            "computed field on function rows",
            "GET",
            "/rpc/films_by_year?y=1985&select=full_title",
            200,
            Json(json!([{"full_title":"Ran (1985)"}])),
        ),
        case(
            "setof table with embed",
            "POST",
            "/rpc/films_by_year?select=title,directors(name)&limit=1",
            200,
            Json(json!([{"title":"The Shining","directors":{"name":"Kubrick"}}])),
        )
        .body(r#"{"y":1970}"#),
        case(
            "setof with count",
            "GET",
            "/rpc/films_by_year?y=1950&limit=1&select=id",
            206,
            Json(json!([{"id":1}])),
        )
        .h("prefer", "count=exact")
        .want("content-range", "0-0/4"),
        case(
            "single row composite",
            "GET",
            "/rpc/film_one?fid=3&select=title",
            200,
            Json(json!({"title":"Ran"})),
        ),
        case(
            "setof scalar",
            "GET",
            "/rpc/years",
            200,
            Json(json!([1952, 1968, 1980, 1985])),
        ),
        case(
            "returns table, filtered",
            "GET",
            "/rpc/squares?upto=4&sq=gt.4&order=n.desc",
            200,
            Json(json!([{"n":4,"sq":16},{"n":3,"sq":9}])),
        ),
        case("void is 204", "POST", "/rpc/touch", 204, Empty),
        case(
            "volatile via get is read-only",
            "GET",
            "/rpc/touch",
            405,
            Code("25006"),
        ),
        case(
            "volatile returning row",
            "POST",
            "/rpc/new_actor?select=name",
            200,
            Json(json!({"name":"Neo"})),
        )
        .body(r#"{"name":"Neo"}"#),
        case(
            "named json argument",
            "POST",
            "/rpc/echo",
            200,
            Json(json!({"k":[1,2]})),
        )
        .body(r#"{"payload":{"k":[1,2]}}"#),
        case(
            "single unnamed json argument",
            "POST",
            "/rpc/echo_body",
            200,
            Json(json!({"any":"thing"})),
        )
        .body(r#"{"any":"thing"}"#),
        case("variadic post", "POST", "/rpc/sum_all", 200, Json(json!(6)))
            .body(r#"{"nums":[1,2,3]}"#),
        case(
            "variadic get repeated",
            "GET",
            "/rpc/sum_all?nums=4&nums=5",
            200,
            Json(json!(9)),
        ),
        case(
            "overload ambiguous",
            "POST",
            "/rpc/over",
            300,
            Code("PGRST203"),
        )
        .body(r#"{"a":1}"#),
        case(
            "unknown function",
            "POST",
            "/rpc/nope",
            404,
            Code("PGRST202"),
        )
        .body("{}"),
        case(
            "unknown argument",
            "POST",
            "/rpc/add",
            404,
            Code("PGRST202"),
        )
        .body(r#"{"zzz":1}"#),
        case(
            "bad argument type",
            "GET",
            "/rpc/add?a=x",
            400,
            Code("22P02"),
        ),
        case("raise exception", "POST", "/rpc/oops", 400, Code("P0001")),
        case("PTnnn status", "POST", "/rpc/teapot", 418, Code("PT418")),
        case(
            "PGRST custom error",
            "POST",
            "/rpc/pay",
            402,
            Json(json!({"code":"123","message":"Payment Required","details":"d","hint":"h"})),
        )
        .want("x-powered-by", "Nerd Rage"),
        case(
            "response status and headers from SQL",
            "POST",
            "/rpc/accepted",
            202,
            Json(json!(1)),
        )
        .want("x-custom", "yes"),
        case(
            "rpc wrong method",
            "PATCH",
            "/rpc/add",
            405,
            Code("PGRST101"),
        ),
    ];
    run(&r, cases).await;
}

#[tokio::test]
async fn openapi_root_lists_what_the_caller_may_use() {
    let r = Rest::new().await;
    let res = r
        .send("GET", "/", &[("accept", "application/openapi+json")], "")
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let doc = res.json();
    assert_eq!(doc["swagger"], "2.0");
    assert!(doc["paths"]["/films"]["get"].is_object());
    assert!(doc["paths"]["/rpc/add"]["post"].is_object());
    assert_eq!(
        doc["definitions"]["films"]["properties"]["title"]["type"],
        "string"
    );
    // anon has no privilege on items.
    assert!(doc["paths"].get("/items").is_none(), "{}", doc["paths"]);
    let svc = format!("Bearer {}", r.token("service_role", None));
    let res = r.send("GET", "/", &[("authorization", &svc)], "").await;
    assert!(res.json()["paths"]["/items"].is_object());
}

#[tokio::test]
async fn schema_reload_sees_new_tables() {
    let r = Rest::new().await;
    assert_eq!(r.get("/later").await.status, 404);
    r.db.admin().batch_execute("create table later(id int primary key); grant select on later to anon; insert into later values (7);").await.unwrap();
    r.rest.reload(&r.db.state.admin).await.unwrap();
    let res = r.get("/later").await;
    assert_eq!((res.status, res.json()), (200, json!([{"id":7}])));
}

#[tokio::test]
async fn notify_pgrst_reloads_the_schema_cache() {
    let r = Rest::new().await;
    let config = common::cluster().config(&r.db.name);
    let rest = doska::rest::start(&r.db.state, Some(config))
        .await
        .expect("start");
    r.db.admin()
        .batch_execute("create table arrived(id int primary key); grant select on arrived to anon; insert into arrived values (1);")
        .await
        .unwrap();
    assert!(rest.cache.get().relation("public", "arrived").is_none());
    // The listener may still be connecting: notify until it has reloaded.
    let mut seen = false;
    for _ in 0..50 {
        r.db.admin()
            .batch_execute("notify pgrst, 'reload schema'")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if rest.cache.get().relation("public", "arrived").is_some() {
            seen = true;
            break;
        }
    }
    assert!(seen, "the cache never saw the new table");
    let res =
        doska::rest::serve(&rest, &r.db.state, get_request("/arrived"), ctx("/arrived")).await;
    assert_eq!(res.status(), 200);
}

fn get_request(path: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    http::Request::builder()
        .uri(format!("http://localhost/rest/v1{path}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap()
}

fn ctx(path: &str) -> doska::http::RequestContext {
    doska::http::RequestContext {
        request_id: "t".into(),
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        path: path.into(),
        body_limit: 1 << 20,
    }
}

#[tokio::test]
async fn ddl_reloads_the_schema_cache_by_itself() {
    let r = Rest::new().await;
    let config = common::cluster().config(&r.db.name);
    let rest = doska::rest::start(&r.db.state, Some(config))
        .await
        .expect("start");
    let n: i64 =
        r.db.value(
            "select count(*) from pg_event_trigger where evtname like 'doska_rest_%'",
            &[],
        )
        .await;
    assert_eq!(n, 2, "event triggers installed");
    // Wait until the listener is connected: it reloads once when it starts listening.
    let mut seen = false;
    for i in 0..50 {
        r.db.admin()
            .batch_execute(&format!("create table ddl_{i}(id int)"))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if rest
            .cache
            .get()
            .relation("public", &format!("ddl_{i}"))
            .is_some()
        {
            seen = true;
            break;
        }
    }
    assert!(seen, "DDL never reached the schema cache");
}

#[tokio::test]
async fn a_failed_reload_keeps_the_old_cache() {
    let r = Rest::new().await;
    let before = r.rest.cache.get();
    let broken = doska::db::pools::pool(common::cluster().config("no_such_database"), 1).unwrap();
    assert!(r.rest.reload(&broken).await.is_err());
    assert!(
        std::sync::Arc::ptr_eq(&before, &r.rest.cache.get()),
        "the cache was replaced"
    );
    assert_eq!(r.get("/directors?select=id&id=eq.1").await.status, 200);
}
