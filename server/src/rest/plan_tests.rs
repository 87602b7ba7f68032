use super::*;
use crate::rest::request::{self, ApiRequest};
use crate::rest::schema::{Column, ForeignKey, Param, RelKind};
use http::{HeaderMap, Method};

fn col(name: &str, ty: &str) -> Column {
    Column {
        name: name.into(),
        type_sql: ty.into(),
        nullable: true,
        default: None,
        generated: false,
    }
}

fn rel(name: &str, cols: &[&str], pk: &[&str]) -> Relation {
    Relation {
        name: QualifiedName::new("public", name),
        kind: RelKind::Table,
        columns: cols.iter().map(|c| col(c, "integer")).collect(),
        primary_key: pk.iter().map(|s| s.to_string()).collect(),
        unique: if pk.is_empty() {
            vec![]
        } else {
            vec![pk.iter().map(|s| s.to_string()).collect()]
        },
    }
}

fn fk(name: &str, table: &str, cols: &[&str], ftable: &str, fcols: &[&str]) -> ForeignKey {
    ForeignKey {
        name: name.into(),
        table: QualifiedName::new("public", table),
        columns: cols.iter().map(|s| s.to_string()).collect(),
        ftable: QualifiedName::new("public", ftable),
        fcolumns: fcols.iter().map(|s| s.to_string()).collect(),
    }
}

/// films → directors (m2o), roles junction films ↔ actors (m2m), specs one-to-one,
/// employees self-reference, messages with two keys to actors.
pub(super) fn cache() -> SchemaCache {
    let mut c = SchemaCache {
        schemas: vec!["public".into()],
        ..Default::default()
    };
    for r in [
        rel("directors", &["id", "name"], &["id"]),
        rel("films", &["id", "director_id", "title", "year"], &["id"]),
        rel("actors", &["id", "name"], &["id"]),
        rel(
            "roles",
            &["film_id", "actor_id", "character"],
            &["film_id", "actor_id"],
        ),
        rel("specs", &["film_id", "runtime"], &["film_id"]),
        rel("employees", &["id", "name", "supervisor_id"], &["id"]),
        rel("messages", &["id", "sender_id", "receiver_id"], &["id"]),
    ] {
        c.relations.insert(r.name.clone(), r);
    }
    c.foreign_keys = vec![
        fk(
            "films_director_id_fkey",
            "films",
            &["director_id"],
            "directors",
            &["id"],
        ),
        fk(
            "roles_film_id_fkey",
            "roles",
            &["film_id"],
            "films",
            &["id"],
        ),
        fk(
            "roles_actor_id_fkey",
            "roles",
            &["actor_id"],
            "actors",
            &["id"],
        ),
        fk(
            "specs_film_id_fkey",
            "specs",
            &["film_id"],
            "films",
            &["id"],
        ),
        fk(
            "employees_supervisor_id_fkey",
            "employees",
            &["supervisor_id"],
            "employees",
            &["id"],
        ),
        fk(
            "messages_sender_id_fkey",
            "messages",
            &["sender_id"],
            "actors",
            &["id"],
        ),
        fk(
            "messages_receiver_id_fkey",
            "messages",
            &["receiver_id"],
            "actors",
            &["id"],
        ),
    ];
    let f = Function {
        name: QualifiedName::new("public", "add"),
        params: vec![
            Param {
                name: "a".into(),
                type_sql: "integer".into(),
                has_default: false,
                variadic: false,
                rowtype: None,
            },
            Param {
                name: "b".into(),
                type_sql: "integer".into(),
                has_default: true,
                variadic: false,
                rowtype: None,
            },
        ],
        returns: Returns::Scalar,
        returns_set: false,
        rows_one: false,
        volatility: Volatility::Immutable,
    };
    c.functions.insert(f.name.clone(), vec![f]);
    c
}

fn req(method: Method, path: &str, q: &str) -> ApiRequest {
    request::parse(&method, path, Some(q), &HeaderMap::new()).unwrap()
}

fn plan_get(q: &str) -> Result<Plan, PlanError> {
    plan(
        &req(Method::GET, "/films", q),
        &Payload::None,
        &cache(),
        "public",
        &PlanConfig::default(),
    )
}

#[test]
fn relationships_table() {
    let c = cache();
    let q = |n: &str| QualifiedName::new("public", n);
    // (parent, embed, hint) → (cardinality, target) or error code
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Result<(&'a str, &'a str), &'a str>,
    );
    let cases: Vec<Case> = vec![
        ("films", "directors", None, Ok(("many-to-one", "directors"))),
        (
            "films",
            "director_id",
            None,
            Ok(("many-to-one", "directors")),
        ),
        (
            "films",
            "films_director_id_fkey",
            None,
            Ok(("many-to-one", "directors")),
        ),
        ("directors", "films", None, Ok(("one-to-many", "films"))),
        ("films", "specs", None, Ok(("one-to-one", "specs"))),
        ("films", "actors", None, Ok(("many-to-many", "actors"))),
        ("actors", "films", None, Ok(("many-to-many", "films"))),
        (
            "films",
            "actors",
            Some("roles"),
            Ok(("many-to-many", "actors")),
        ),
        ("roles", "films", None, Ok(("many-to-one", "films"))),
        (
            "employees",
            "employees",
            None,
            Ok(("one-to-many", "employees")),
        ),
        (
            "employees",
            "supervisor_id",
            None,
            Ok(("many-to-one", "employees")),
        ),
        ("actors", "messages", None, Err("PGRST201")),
        (
            "actors",
            "messages",
            Some("messages_sender_id_fkey"),
            Ok(("one-to-many", "messages")),
        ),
        (
            "actors",
            "messages",
            Some("receiver_id"),
            Ok(("one-to-many", "messages")),
        ),
        ("actors", "messages", Some("nope"), Err("PGRST200")),
        ("directors", "actors", None, Err("PGRST200")),
    ];
    for (parent, name, hint, want) in cases {
        let got = resolve_relationship(&c, &q(parent), name, hint);
        match (got, want) {
            (Ok(r), Ok((card, target))) => assert_eq!(
                (r.cardinality, r.target.name.as_str()),
                (card, target),
                "{parent}→{name}"
            ),
            (Err(e), Err(code)) => assert_eq!(
                crate::rest::error::RestError::from(e).body()["code"],
                code,
                "{parent}→{name}"
            ),
            (got, want) => panic!("{parent}→{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn read_plans() {
    let p = plan_get("select=title,directors(name)&year=gt.1970&order=year.desc&limit=5&offset=2")
        .unwrap();
    let PlanKind::Read(node) = &p.kind else {
        panic!()
    };
    assert_eq!(
        node.source,
        Source::Relation(QualifiedName::new("public", "films"))
    );
    assert_eq!((node.limit, node.offset, p.offset), (Some(5), Some(2), 2));
    assert_eq!(node.outputs.len(), 2);
    assert_eq!(node.embeds[0].name, "directors");
    assert!(node.embeds[0].to_one);
    assert_eq!(
        node.embeds[0].join,
        JoinCond::Direct(vec![("id".into(), "director_id".into())])
    );
    assert_eq!(node.conds.len(), 1);
    assert_eq!(node.order.len(), 1);
    assert!(p.read_only);

    let p = plan_get("select=id,actors(name)&actors.name=eq.x&actors.limit=1").unwrap();
    let PlanKind::Read(node) = &p.kind else {
        panic!()
    };
    let e = &node.embeds[0];
    assert!(matches!(&e.join, JoinCond::Junction { table, .. } if table.name == "roles"));
    assert_eq!((e.node.conds.len(), e.node.limit), (1, Some(1)));
}

#[test]
fn max_rows_and_range_cap_the_root() {
    let cfg = PlanConfig { max_rows: Some(3) };
    let mut r = req(Method::GET, "/films", "limit=10");
    let p = plan(&r, &Payload::None, &cache(), "public", &cfg).unwrap();
    let PlanKind::Read(node) = &p.kind else {
        panic!()
    };
    assert_eq!(node.limit, Some(3));
    r.range = Some((4, Some(5)));
    r.paging.clear();
    let p = plan(
        &r,
        &Payload::None,
        &cache(),
        "public",
        &PlanConfig::default(),
    )
    .unwrap();
    let PlanKind::Read(node) = &p.kind else {
        panic!()
    };
    assert_eq!((node.limit, node.offset), (Some(2), Some(4)));
}

#[test]
fn write_plans() {
    let c = cache();
    let body =
        Payload::Json(serde_json::json!([{"title": "a", "year": 1}, {"title": "b", "year": 2}]));
    let mut r = req(Method::POST, "/films", "on_conflict=id");
    r.prefer.resolution = Some(Resolution::MergeDuplicates);
    let p = plan(&r, &body, &c, "public", &PlanConfig::default()).unwrap();
    let PlanKind::Mutate(m) = &p.kind else {
        panic!()
    };
    let Mutation::Insert {
        columns,
        on_conflict,
        ..
    } = &m.mutation
    else {
        panic!()
    };
    assert_eq!(
        columns,
        &vec![
            InsertColumn::Payload("title".into()),
            InsertColumn::Payload("year".into())
        ]
    );
    assert_eq!(
        on_conflict,
        &Some((vec!["id".to_string()], Resolution::MergeDuplicates))
    );
    assert!(!p.read_only);

    let p = plan(
        &req(Method::PATCH, "/films", "id=eq.1"),
        &Payload::Json(serde_json::json!({"year": 3})),
        &c,
        "public",
        &PlanConfig::default(),
    )
    .unwrap();
    let PlanKind::Mutate(m) = &p.kind else {
        panic!()
    };
    assert_eq!(
        m.mutation,
        Mutation::Update {
            columns: vec!["year".into()]
        }
    );
    assert_eq!(m.conds.len(), 1);
    assert_eq!(m.payload, r#"{"year":3}"#);
}

#[test]
fn call_plans() {
    let c = cache();
    let p = plan(
        &req(Method::GET, "/rpc/add", "a=1"),
        &Payload::None,
        &c,
        "public",
        &PlanConfig::default(),
    )
    .unwrap();
    let PlanKind::Call(call) = &p.kind else {
        panic!()
    };
    assert_eq!(
        call.args,
        CallArgs::Named(vec![("a".into(), "integer".into(), false)])
    );
    assert_eq!(call.payload, r#"{"a":"1"}"#);
    assert_eq!(call.shape, CallShape::Scalar);
    assert!(p.read_only);
}

/// Requests that parse but cannot be planned.
#[test]
fn bad_plans_table() {
    let c = cache();
    let cases: Vec<(Method, &str, &str, Payload, &str)> = vec![
        (Method::GET, "/nope", "", Payload::None, "PGRST205"),
        (Method::GET, "/films", "select=nope", Payload::None, "42703"),
        (Method::GET, "/films", "nope=eq.1", Payload::None, "42703"),
        (Method::GET, "/films", "order=nope", Payload::None, "42703"),
        (
            Method::GET,
            "/films",
            "select=*,nope(*)",
            Payload::None,
            "PGRST200",
        ),
        (
            Method::GET,
            "/films",
            "select=id&directors.id=eq.1",
            Payload::None,
            "PGRST108",
        ),
        (
            Method::GET,
            "/films",
            "select=year.sum()",
            Payload::None,
            "PGRST123",
        ),
        (
            Method::GET,
            "/directors",
            "order=films(title)",
            Payload::None,
            "PGRST118",
        ),
        (
            Method::GET,
            "/actors",
            "select=messages(*)",
            Payload::None,
            "PGRST201",
        ),
        (
            Method::POST,
            "/films",
            "",
            Payload::Json(serde_json::json!({"nope": 1})),
            "PGRST204",
        ),
        (
            Method::POST,
            "/films",
            "",
            Payload::Json(serde_json::json!([{"title": 1}, {"year": 2}])),
            "PGRST102",
        ),
        (
            Method::POST,
            "/films",
            "",
            Payload::Json(serde_json::json!(3)),
            "PGRST102",
        ),
        (
            Method::PUT,
            "/films",
            "title=eq.x",
            Payload::Json(serde_json::json!({"id": 1})),
            "PGRST105",
        ),
        (
            Method::PUT,
            "/films",
            "id=eq.1",
            Payload::Json(serde_json::json!({"id": 2})),
            "PGRST115",
        ),
        (
            Method::PUT,
            "/films",
            "id=eq.1&limit=1",
            Payload::Json(serde_json::json!({"id": 1})),
            "PGRST114",
        ),
        (
            Method::POST,
            "/rpc/nope",
            "",
            Payload::Json(serde_json::json!({})),
            "PGRST202",
        ),
        (
            Method::POST,
            "/rpc/add",
            "",
            Payload::Json(serde_json::json!({"b": 1})),
            "PGRST202",
        ),
    ];
    for (m, path, q, body, code) in cases {
        let err = plan(
            &req(m.clone(), path, q),
            &body,
            &c,
            "public",
            &PlanConfig::default(),
        )
        .expect_err(&format!("{m} {path}?{q}"));
        assert_eq!(
            crate::rest::error::RestError::from(err).body()["code"],
            code,
            "{m} {path}?{q}"
        );
    }
}

/// PostgREST's doctests of `noRpcHint` (PostgREST 14.6+, where names need a 0.75 score), and the
/// three cases of postgrest-js's snapshots with the suite's own function names.
#[test]
fn rpc_hints_as_postgrest() {
    let hint = |name: &str, args: &[&str], functions: &[&str], overloads: &[Vec<&str>]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        call::rpc_hint("api", name, &args, functions, overloads)
    };
    let procs = ["test", "another"];
    let perhaps = |s: &str| Some(format!("Perhaps you meant to call the function api.{s}"));
    assert_eq!(
        hint("testt", &["val", "param", "name"], &procs, &[]),
        perhaps("test")
    );
    assert_eq!(hint("other", &[], &procs, &[]), None);
    assert_eq!(hint("noclosealternative", &[], &procs, &[]), None);
    let overloads = [vec!["val", "param", "name"], vec!["id", "attr"]];
    let cases: [(&[&str], Option<&str>); 5] = [
        (&["vall", "pqaram", "nam"], Some("test(name, param, val)")),
        (&["val", "param"], Some("test(name, param, val)")),
        (&["id", "attrs"], Some("test(attr, id)")),
        (&["id"], Some("test(attr, id)")),
        (&["noclosealternative"], None),
    ];
    for (args, want) in cases {
        assert_eq!(
            hint("test", args, &procs, &overloads),
            want.and_then(perhaps),
            "{args:?}"
        );
    }

    // The callable functions of postgrest-js's fixture whose names come near the two asked for.
    let fixture = [
        "get_messages",
        "get_messages_by_username",
        "get_recent_messages_by_username",
        "get_user_messages",
        "polymorphic_function_with_different_return",
        "polymorphic_function_with_no_params_or_unnamed",
        "polymorphic_function_with_unnamed_default",
        "polymorphic_function_with_unnamed_default_overload",
        "polymorphic_function_with_unnamed_json",
        "polymorphic_function_with_unnamed_jsonb",
        "polymorphic_function_with_unnamed_text",
    ];
    assert_eq!(
        hint(
            "polymorphic_function_with_unnamed_integer",
            &[""],
            &fixture,
            &[]
        ),
        perhaps("polymorphic_function_with_unnamed_text")
    );
    assert_eq!(hint("blurb_message", &[], &fixture, &[]), None);
    assert_eq!(hint("blurb_message", &[""], &fixture, &[]), None);
    // PostgREST 13.0's 0.33 would have suggested `get_messages` (7/13).
    assert_eq!(
        crate::rest::fuzzy::FuzzySet::from_list(&fixture)
            .get_one("blurb_message")
            .as_deref(),
        Some("get_messages")
    );
}
