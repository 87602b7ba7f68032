//! REST writes against a real PostgreSQL: insert (JSON, CSV, form), bulk, upsert, PUT, PATCH,
//! DELETE, Prefer handling, RLS — table-driven, with a bad-input table.

mod common;
mod rest_fixture;

use rest_fixture::{Expect::*, Rest, case, run};
use serde_json::json;

#[tokio::test]
async fn inserts() {
    // `Prefer: tx=` is honoured only when pgrst.db_tx_end allows it (per database: roles are cluster-wide).
    let allow = "do $$ begin execute format('alter role authenticator in database %I set pgrst.db_tx_end = %L', current_database(), 'commit-allow-override'); end $$;";
    let r = Rest::with(&format!("{}\n{allow}", rest_fixture::FIXTURE)).await;
    let cases = vec![
        case("insert minimal", "POST", "/directors", 201, Empty)
            .body(r#"{"id":10,"name":"Lynch"}"#)
            .want("content-range", "*/*"),
        case(
            "insert representation",
            "POST",
            "/directors?select=id,name",
            201,
            Json(json!([{"id":11,"name":"Tarkovsky"}])),
        )
        .h("prefer", "return=representation")
        .body(r#"{"id":11,"name":"Tarkovsky"}"#)
        .want("preference-applied", "return=representation"),
        case("insert headers-only", "POST", "/directors", 201, Empty)
            .h("prefer", "return=headers-only")
            .body(r#"{"id":12,"name":"Fellini"}"#)
            .want("location", "/directors?id=eq.12"),
        case(
            "arrays and json values",
            "POST",
            "/films?select=tags,meta",
            201,
            Json(json!([{"tags":["a","b c"],"meta":{"k":[1,{"x":null}]}}])),
        )
        .h("prefer", "return=representation")
        .body(r#"{"title":"J","tags":["a","b c"],"meta":{"k":[1,{"x":null}]}}"#),
        case(
            "bulk insert",
            "POST",
            "/actors?select=name",
            201,
            Json(json!([{"name":"A"},{"name":"B"}])),
        )
        .h("prefer", "return=representation")
        .body(r#"[{"name":"A"},{"name":"B"}]"#),
        case("bulk keys differ", "POST", "/actors", 400, Code("PGRST102"))
            .body(r#"[{"name":"A"},{"id":99}]"#),
        case(
            "columns param",
            "POST",
            "/technical_specs?columns=film_id,runtime",
            201,
            Json(json!([{"film_id":2,"runtime":100},{"film_id":4,"runtime":null}])),
        )
        .h("prefer", "return=representation")
        .body(r#"[{"film_id":2,"runtime":100,"extra":1},{"film_id":4}]"#),
        case(
            "default for missing column",
            "POST",
            "/films?select=id,tags",
            201,
            Json(json!([{"id":101,"tags":[]}])),
        )
        .h("prefer", "return=representation")
        .body(r#"{"title":"New"}"#),
        case(
            "missing=default per row",
            "POST",
            "/films?columns=title,year&select=title,year,tags",
            201,
            Json(json!([{"title":"X","year":2000,"tags":[]},{"title":"Y","year":null,"tags":[]}])),
        )
        .h("prefer", "return=representation,missing=default")
        .body(r#"[{"title":"X","year":2000},{"title":"Y"}]"#),
        case(
            "csv body",
            "POST",
            "/directors?select=id,name",
            201,
            Json(json!([{"id":20,"name":"Ozu"},{"id":21,"name":"Lee, Ang"}])),
        )
        .h("prefer", "return=representation")
        .h("content-type", "text/csv")
        .body("id,name\n20,Ozu\n21,\"Lee, Ang\"\n"),
        case(
            "form body",
            "POST",
            "/directors?select=id,name",
            201,
            Json(json!([{"id":22,"name":"Wong Kar-wai"}])),
        )
        .h("prefer", "return=representation")
        .h("content-type", "application/x-www-form-urlencoded")
        .body("id=22&name=Wong+Kar-wai"),
        case(
            "computed field in representation",
            "POST",
            "/films?select=full_title",
            201,
            Json(json!([{"full_title":"Comp (2020)"}])),
        )
        .h("prefer", "return=representation")
        .body(r#"{"title":"Comp","year":2020}"#),
        case(
            "embed in representation",
            "POST",
            "/films?select=title,directors(name)",
            201,
            Json(json!([{"title":"Eyes","directors":{"name":"Kubrick"}}])),
        )
        .h("prefer", "return=representation")
        .body(r#"{"title":"Eyes","director_id":1}"#),
        case(
            "single object response",
            "POST",
            "/actors?select=name",
            201,
            Json(json!({"name":"Solo"})),
        )
        .h("prefer", "return=representation")
        .h("accept", "application/vnd.pgrst.object+json")
        .body(r#"{"name":"Solo"}"#),
        case("count on insert", "POST", "/actors", 201, Empty)
            .h("prefer", "count=exact")
            .body(r#"[{"name":"C1"},{"name":"C2"}]"#)
            .want("content-range", "*/2"),
        case("tx rollback", "POST", "/directors", 201, Empty)
            .h("prefer", "tx=rollback")
            .want("preference-applied", "tx=rollback")
            .body(r#"{"id":30,"name":"Ghost"}"#),
        case(
            "rolled back row is absent",
            "GET",
            "/directors?id=eq.30",
            200,
            Json(json!([])),
        ),
    ];
    run(&r, cases).await;
}

#[tokio::test]
async fn upserts_and_put() {
    let r = Rest::new().await;
    let cases = vec![
        case(
            "merge duplicates",
            "POST",
            "/directors?select=id,name",
            201,
            Json(json!([{"id":1,"name":"Stanley Kubrick"},{"id":40,"name":"New"}])),
        )
        .h(
            "prefer",
            "return=representation, resolution=merge-duplicates",
        )
        .body(r#"[{"id":1,"name":"Stanley Kubrick"},{"id":40,"name":"New"}]"#),
        case(
            "ignore duplicates",
            "POST",
            "/directors?select=id,name",
            201,
            Json(json!([{"id":41,"name":"Fresh"}])),
        )
        .h(
            "prefer",
            "return=representation,resolution=ignore-duplicates",
        )
        .body(r#"[{"id":2,"name":"Changed"},{"id":41,"name":"Fresh"}]"#),
        case(
            "ignored row unchanged",
            "GET",
            "/directors?select=name&id=eq.2",
            200,
            Json(json!([{"name":"Kurosawa"}])),
        ),
        case(
            "on_conflict column (the row existed: only updated, 200)",
            "POST",
            "/roles?on_conflict=film_id,actor_id&select=character",
            200,
            Json(json!([{"character":"HAL"}])),
        )
        .h(
            "prefer",
            "return=representation,resolution=merge-duplicates",
        )
        .body(r#"{"film_id":1,"actor_id":1,"character":"HAL"}"#),
        case(
            "put creates (201)",
            "PUT",
            "/directors?id=eq.50&select=id,name",
            201,
            Json(json!([{"id":50,"name":"Varda"}])),
        )
        .h("prefer", "return=representation")
        .body(r#"{"id":50,"name":"Varda"}"#),
        case("put replaces", "PUT", "/directors?id=eq.50", 204, Empty)
            .body(r#"{"id":50,"name":"Agnès Varda"}"#),
        case(
            "put result",
            "GET",
            "/directors?select=name&id=eq.50",
            200,
            Json(json!([{"name":"Agnès Varda"}])),
        ),
        case(
            "put pk mismatch",
            "PUT",
            "/directors?id=eq.51",
            400,
            Code("PGRST115"),
        )
        .body(r#"{"id":52,"name":"X"}"#),
        case(
            "put without pk filter",
            "PUT",
            "/directors?name=eq.X",
            405,
            Code("PGRST105"),
        )
        .body(r#"{"id":52,"name":"X"}"#),
        case(
            "put with limit",
            "PUT",
            "/directors?id=eq.52&limit=1",
            400,
            Code("PGRST114"),
        )
        .body(r#"{"id":52,"name":"X"}"#),
        case("unique violation", "POST", "/directors", 409, Code("23505"))
            .body(r#"{"id":1,"name":"dup"}"#),
        case("fk violation", "POST", "/films", 409, Code("23503"))
            .body(r#"{"title":"t","director_id":999}"#),
        case(
            "not null violation",
            "POST",
            "/directors",
            400,
            Code("23502"),
        )
        .body(r#"{"id":60}"#),
    ];
    run(&r, cases).await;
}

#[tokio::test]
async fn updates_and_deletes() {
    let r = Rest::new().await;
    let cases = vec![
        case("patch minimal", "PATCH", "/films?id=eq.4", 204, Empty).body(r#"{"rating":9.0}"#),
        case(
            "tx=rollback ignored without db_tx_end override",
            "PATCH",
            "/films?id=eq.5",
            204,
            Empty,
        )
        .h("prefer", "tx=rollback")
        .body(r#"{"year":1999}"#),
        case(
            "so the change stayed",
            "GET",
            "/films?select=year&id=eq.5",
            200,
            Json(json!([{"year":1999}])),
        ),
        case(
            "patch representation",
            "PATCH",
            "/films?id=eq.4&select=id,rating",
            200,
            Json(json!([{"id":4,"rating":9.5}])),
        )
        .h("prefer", "return=representation")
        .body(r#"{"rating":9.5}"#),
        case(
            "patch returns rows that no longer match the filter",
            "PATCH",
            "/films?year=eq.1952&select=id,year",
            200,
            Json(json!([{"id":4,"year":1953}])),
        )
        .h("prefer", "return=representation")
        .body(r#"{"year":1953}"#),
        case(
            "patch many with or",
            "PATCH",
            "/films?or=(id.eq.1,id.eq.2)&select=id",
            200,
            Json(json!([{"id":1},{"id":2}])),
        )
        .h("prefer", "return=representation")
        .body(r#"{"meta":{"x":1}}"#),
        case(
            "patch nothing matches",
            "PATCH",
            "/films?id=eq.999&select=id",
            200,
            Json(json!([])),
        )
        .h("prefer", "return=representation")
        .body(r#"{"year":1}"#),
        case("patch empty body", "PATCH", "/films?id=eq.1", 204, Empty).body("{}"),
        case(
            "patch unknown column",
            "PATCH",
            "/films?id=eq.1",
            400,
            Code("PGRST204"),
        )
        .body(r#"{"nope":1}"#),
        case(
            "max-affected exceeded",
            "PATCH",
            "/films?id=lt.4",
            400,
            Code("PGRST124"),
        )
        .h("prefer", "handling=strict,max-affected=2")
        .body(r#"{"year":2000}"#),
        case(
            "max-affected rolled back",
            "GET",
            "/films?select=year&id=eq.1",
            200,
            Json(json!([{"year":1968}])),
        ),
        case(
            "delete representation",
            "DELETE",
            "/roles?film_id=eq.2&actor_id=eq.4&select=character",
            200,
            Json(json!([{"character":"Wendy"}])),
        )
        .h("prefer", "return=representation"),
        case("delete minimal", "DELETE", "/messages?id=eq.1", 204, Empty),
        case("delete count", "DELETE", "/messages", 204, Empty)
            .h("prefer", "count=exact")
            .want("content-range", "*/1"),
        case(
            "limited patch (film 5 got year 1999 above)",
            "PATCH",
            "/films?year=not.is.null&order=year.desc&limit=1&select=id",
            200,
            Json(json!([{"id":5}])),
        )
        .h("prefer", "return=representation")
        .body(r#"{"rating":1.0}"#),
        case(
            "only that row changed",
            "GET",
            "/films?select=id&rating=eq.1.0",
            200,
            Json(json!([{"id":5}])),
        ),
        case(
            "limited delete with offset",
            "DELETE",
            "/roles?order=film_id,actor_id&limit=1&offset=1&select=character",
            200,
            Json(json!([{"character":"Jack"}])),
        )
        .h("prefer", "return=representation"),
        case(
            "delete fk restrict",
            "DELETE",
            "/directors?id=eq.1",
            409,
            Code("23503"),
        ),
        case(
            "strict unknown preference",
            "DELETE",
            "/messages",
            400,
            Code("PGRST122"),
        )
        .h("prefer", "handling=strict,nonsense=1"),
    ];
    run(&r, cases).await;
}

#[tokio::test]
async fn row_level_security() {
    let r = Rest::new().await;
    let alice = format!(
        "Bearer {}",
        r.token(
            "authenticated",
            Some("00000000-0000-0000-0000-00000000000a")
        )
    );
    let bob = format!(
        "Bearer {}",
        r.token(
            "authenticated",
            Some("00000000-0000-0000-0000-00000000000b")
        )
    );
    let alice: &'static str = Box::leak(alice.into_boxed_str());
    let bob: &'static str = Box::leak(bob.into_boxed_str());
    let cases = vec![
        case(
            "alice inserts",
            "POST",
            "/notes?select=body",
            201,
            Json(json!([{"body":"mine"}])),
        )
        .h("authorization", alice)
        .h("prefer", "return=representation")
        .body(r#"{"body":"mine"}"#),
        case("bob inserts", "POST", "/notes", 201, Empty)
            .h("authorization", bob)
            .body(r#"{"body":"his"}"#),
        case(
            "alice sees hers",
            "GET",
            "/notes?select=body",
            200,
            Json(json!([{"body":"mine"}])),
        )
        .h("authorization", alice),
        case(
            "anon sees nothing",
            "GET",
            "/notes?select=body",
            200,
            Json(json!([])),
        ),
        case(
            "bob cannot write for alice",
            "POST",
            "/notes",
            403,
            Code("42501"),
        )
        .h("authorization", bob)
        .body(r#"{"body":"forged","owner":"00000000-0000-0000-0000-00000000000a"}"#),
        case(
            "bob's update misses alice's rows",
            "PATCH",
            "/notes?body=eq.mine&select=id",
            200,
            Json(json!([])),
        )
        .h("authorization", bob)
        .h("prefer", "return=representation")
        .body(r#"{"body":"x"}"#),
        case(
            "anon insert is denied",
            "POST",
            "/items",
            401,
            Code("42501"),
        )
        .body(r#"{"id":9,"category":"z","amount":1}"#),
    ];
    run(&r, cases).await;
}

#[tokio::test]
async fn bad_writes() {
    let r = Rest::new().await;
    let cases = vec![
        case("invalid json", "POST", "/directors", 400, Code("PGRST102")).body("{nope"),
        case("scalar body", "POST", "/directors", 400, Code("PGRST102")).body("42"),
        case(
            "array of scalars",
            "POST",
            "/directors",
            400,
            Code("PGRST102"),
        )
        .body("[1,2]"),
        case(
            "unknown column",
            "POST",
            "/directors",
            400,
            Code("PGRST204"),
        )
        .body(r#"{"nope":1}"#),
        case("wrong type", "POST", "/directors", 400, Code("22P02"))
            .body(r#"{"id":"abc","name":"x"}"#),
        case("unknown table", "POST", "/nope", 404, Code("PGRST205")).body("{}"),
        case(
            "bad content type",
            "POST",
            "/directors",
            415,
            Code("PGRST107"),
        )
        .h("content-type", "image/png")
        .body("x"),
        case("bad csv", "POST", "/directors", 400, Code("PGRST102"))
            .h("content-type", "text/csv")
            .body("id,name\n1\n"),
        case(
            "on_conflict unknown column",
            "POST",
            "/directors?on_conflict=nope",
            400,
            Code("PGRST204"),
        )
        .h("prefer", "resolution=merge-duplicates")
        .body(r#"{"id":1}"#),
        case(
            "patch array body",
            "PATCH",
            "/directors?id=eq.1",
            400,
            Code("PGRST102"),
        )
        .body(r#"[{"name":"a"},{"name":"b"}]"#),
        case(
            "write on a read-only view column",
            "PATCH",
            "/film_titles?id=eq.1",
            204,
            Empty,
        )
        .body(r#"{"title":"2001: A Space Odyssey"}"#),
    ];
    run(&r, cases).await;
}

#[tokio::test]
async fn insert_only_tables_and_other_schemas() {
    let r = Rest::with_settings(doska::config::Settings {
        db_schemas: Some("public,api".into()),
        ..Default::default()
    })
    .await;
    r.db.admin()
        .batch_execute(
            "create table inbox(id serial primary key, msg text);
             alter table inbox enable row level security;
             create policy inbox_insert on inbox for insert to anon with check (true);
             grant insert on inbox to anon; grant usage on sequence inbox_id_seq to anon;
             create schema api; grant usage on schema api to anon;
             create table api.things(id int primary key, name text); grant all on api.things to anon;
             insert into api.things values (1, 'in api');
             create function api.ping() returns text language sql as $$ select 'pong from api' $$;",
        )
        .await
        .unwrap();
    let rest = doska::rest::RestState::load(&r.db.state.admin, &r.db.state.config)
        .await
        .unwrap();
    let r = rest_fixture::Rest { db: r.db, rest };
    let cases = vec![
        case("insert-only, minimal", "POST", "/inbox", 201, Empty).body(r#"{"msg":"hi"}"#),
        case(
            "insert-only, minimal with count",
            "POST",
            "/inbox",
            201,
            Empty,
        )
        .h("prefer", "count=exact")
        .body(r#"[{"msg":"a"},{"msg":"b"}]"#)
        .want("content-range", "*/2"),
        case(
            "insert-only, representation needs select",
            "POST",
            "/inbox",
            401,
            Code("42501"),
        )
        .h("prefer", "return=representation")
        .body(r#"{"msg":"x"}"#),
        case(
            "default schema has no things",
            "GET",
            "/things",
            404,
            Code("PGRST205"),
        ),
        case(
            "accept-profile picks api",
            "GET",
            "/things?select=name",
            200,
            Json(json!([{"name":"in api"}])),
        )
        .h("accept-profile", "api"),
        case(
            "content-profile for writes",
            "POST",
            "/things?select=id",
            201,
            Json(json!([{"id":2}])),
        )
        .h("content-profile", "api")
        .h("prefer", "return=representation")
        .body(r#"{"id":2,"name":"two"}"#),
        case(
            "rpc in another schema",
            "POST",
            "/rpc/ping",
            200,
            Json(json!("pong from api")),
        )
        .h("content-profile", "api"),
        case("unexposed schema", "GET", "/things", 406, Code("PGRST106"))
            .h("accept-profile", "private"),
    ];
    run(&r, cases).await;
}
