//! Property test of the REST pipeline's pure stages together: requests assembled from fragments
//! that name the test schema's tables, columns, relationships and function (embeds, hints,
//! spreads, aggregates, filters and `or` trees on embeds, orders, paging, `columns`,
//! `on_conflict`, RPC arguments), with wrong names mixed in, under any method, `Prefer` and
//! `Accept`, with JSON bodies of any shape. Parse → plan → build SQL never panics, and a refusal
//! at any stage is a client answer (3xx for an ambiguous embed, as PostgREST, or 4xx) in
//! PostgREST's JSON shape (`code`: PGRSTnnn, or the SQLSTATE PostgREST answers, e.g. 42703).

use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::tests::cache;
use super::*;
use crate::rest::error::RestError;
use crate::rest::request;
use crate::rest::sql::{self, BodyOptions};

const FRAGMENTS: &[&str] = &[
    "select=*",
    "select=id,title",
    "select=director:directors(*)",
    "select=directors(name),roles(character,actors(name))",
    "select=...directors(name)",
    "select=directors!films_director_id_fkey(*)",
    "select=directors!inner(id)",
    "select=id.count(),year.sum()",
    "select=count()",
    "select=title::text,year::int[]",
    "select=supervisor:employees!supervisor_id(*)",
    "select=sender:actors!sender_id(*),receiver:actors!receiver_id(*)",
    "select=actors(*)",
    "select=messages(*)",
    "select=films(*)",
    "select=specs(*)",
    "select=nope(*)",
    "select=nope",
    "select=data->a->>b",
    "id=eq.1",
    "id=not.eq.1",
    "title=like.*a*",
    "year=in.(1,2,\"3\")",
    "year=gt(any).{1,2}",
    "year=cs.{1}",
    "title=fts(english).word",
    "title=is.null",
    "directors.name=eq.x",
    "roles.character=is.not_null",
    "roles.actors.name=eq.y",
    "nope=eq.1",
    "directors=is.null",
    "data->a=eq.1",
    "or=(id.eq.1,title.eq.x,and(year.gt.1,year.lt.9))",
    "directors.or=(name.eq.a,id.eq.2)",
    "not.and=(id.gt.1)",
    "or=(nope.eq.1)",
    "order=id.desc.nullslast",
    "order=directors(name).asc",
    "order=nope",
    "directors.order=name",
    "limit=5",
    "offset=2",
    "directors.limit=1",
    "roles.offset=1",
    "columns=id,title",
    "columns=nope",
    "on_conflict=id",
    "on_conflict=title",
    "a=1",
    "b=2",
    "c=3",
];

const PATHS: &[&str] = &[
    "/films",
    "/directors",
    "/roles",
    "/actors",
    "/employees",
    "/messages",
    "/specs",
    "/rpc/add",
    "/rpc/nope",
    "/nope",
];

const PREFER: &[&str] = &[
    "return=representation",
    "return=minimal",
    "count=exact",
    "count=estimated",
    "resolution=merge-duplicates",
    "resolution=ignore-duplicates",
    "missing=default",
    "params=single-object",
    "tx=rollback",
    "max-affected=1",
    "handling=strict",
    "bogus",
];

const ACCEPT: &[&str] = &[
    "application/json",
    "application/vnd.pgrst.object+json",
    "text/csv",
    "application/vnd.pgrst.plan+json",
    "*/*",
];

fn body_value() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec!["id", "title", "year", "director_id", "a", "b", "nope"]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z]{0,4}".prop_map(Value::String),
        any::<bool>().prop_map(Value::Bool),
    ];
    let object = prop::collection::btree_map(key, leaf.clone(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
    prop_oneof![
        3 => object.clone(),
        2 => prop::collection::vec(object, 0..3).prop_map(Value::Array),
        1 => leaf,
        1 => prop::collection::vec(Just(json!([1, 2])), 0..2).prop_map(Value::Array),
    ]
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        1 => Just(Payload::None),
        4 => body_value().prop_map(Payload::Json),
        1 => "[a-z]{0,6}".prop_map(Payload::Raw),
    ]
}

proptest! {
    #![proptest_config(crate::props::budget(512))]

    #[test]
    fn parse_plan_and_build_never_panic(
        fragments in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..6),
        path in prop::sample::select(PATHS),
        method in prop::sample::select(vec![
            Method::GET, Method::HEAD, Method::POST, Method::PATCH, Method::PUT, Method::DELETE,
        ]),
        prefer in prop::collection::vec(prop::sample::select(PREFER), 0..3),
        accept in prop::option::of(prop::sample::select(ACCEPT)),
        payload in payload(),
        max_rows in prop::option::of(1i64..10),
    ) {
        let query = fragments.join("&");
        let mut headers = HeaderMap::new();
        if !prefer.is_empty() {
            headers.insert("prefer", HeaderValue::from_str(&prefer.join(", ")).unwrap());
        }
        if let Some(a) = accept {
            headers.insert("accept", HeaderValue::from_static(a));
        }
        let refused = |e: RestError| {
            let status = e.status();
            prop_assert!((300..500).contains(&status), "{status} for {query}: {e:?}");
            // PGRSTnnn, or the SQLSTATE PostgREST itself answers (42703 for an unknown column).
            let body = e.body();
            prop_assert!(body["code"].as_str().is_some_and(|c| !c.is_empty()), "{body}");
            prop_assert!(body["message"].is_string(), "{body}");
            Ok(())
        };
        let req = match request::parse(&method, path, Some(&query), &headers) {
            Ok(r) => r,
            Err(e) => return refused(e.into()),
        };
        let cfg = PlanConfig { max_rows };
        let plan = match plan(&req, &payload, &cache(), "public", &cfg) {
            Ok(p) => p,
            Err(e) => return refused(e.into()),
        };
        let _ = sql::build(&plan, BodyOptions { strip_nulls: false });
    }
}
