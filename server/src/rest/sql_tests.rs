use super::*;
use crate::rest::plan::{Payload, PlanConfig, plan};
use crate::rest::request;
use crate::rest::schema::{Column, ForeignKey, RelKind, Relation, SchemaCache};
use http::{HeaderMap, HeaderValue, Method};

fn cache() -> SchemaCache {
    let mut c = SchemaCache {
        schemas: vec!["public".into()],
        ..Default::default()
    };
    let col = |n: &str| Column {
        name: n.into(),
        type_sql: "integer".into(),
        nullable: true,
        default: None,
        generated: false,
    };
    for (name, cols) in [
        ("films", vec!["id", "director_id", "title", "data"]),
        ("directors", vec!["id", "name"]),
    ] {
        let q = QualifiedName::new("public", name);
        c.relations.insert(
            q.clone(),
            Relation {
                name: q,
                kind: RelKind::Table,
                columns: cols.into_iter().map(col).collect(),
                primary_key: vec!["id".into()],
                unique: vec![vec!["id".into()]],
            },
        );
    }
    c.foreign_keys.push(ForeignKey {
        name: "films_director_id_fkey".into(),
        table: QualifiedName::new("public", "films"),
        columns: vec!["director_id".into()],
        ftable: QualifiedName::new("public", "directors"),
        fcolumns: vec!["id".into()],
    });
    c
}

fn build_for(
    method: Method,
    path: &str,
    q: &str,
    headers: &[(&'static str, &str)],
    body: Payload,
) -> Statement {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    let r = request::parse(&method, path, Some(q), &h).unwrap();
    let p = plan(&r, &body, &cache(), "public", &PlanConfig::default()).unwrap();
    build(
        &p,
        BodyOptions {
            strip_nulls: r.accept.strip_nulls,
            csv: false,
            geojson: false,
        },
    )
    .unwrap()
}

/// (query, fragments the SQL must contain, parameters)
#[test]
fn read_sql_table() {
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "select=id&id=eq.5",
            vec![r#"SELECT "t0"."id" AS "id" FROM "public"."films" AS "t0" WHERE "t0"."id" = $1"#],
            vec!["5"],
        ),
        (
            "select=id&title=like.*a*",
            vec![r#""t0"."title" LIKE $1"#],
            vec!["%a%"],
        ),
        (
            "select=id&id=in.(1,2)",
            vec![r#""t0"."id" IN ($1, $2)"#],
            vec!["1", "2"],
        ),
        (
            "select=id&id=not.is.null",
            vec![r#"NOT ("t0"."id" IS NULL)"#],
            vec![],
        ),
        (
            "select=id&id=eq(any).{1,2}",
            vec![r#""t0"."id" = ANY($1)"#],
            vec![r#"{"1","2"}"#],
        ),
        (
            "select=id&title=fts(english).cat",
            vec![r#""t0"."title" @@ pg_catalog.to_tsquery($2::regconfig, $1::text)"#],
            vec!["cat", "english"],
        ),
        (
            "select=id&or=(id.eq.1,id.gt.5)",
            vec![r#"("t0"."id" = $1 OR "t0"."id" > $2)"#],
            vec!["1", "5"],
        ),
        (
            "select=x:data->a->>b",
            vec![r#""t0"."data"->$1::text->>$2::text AS "x""#],
            vec!["a", "b"],
        ),
        (
            "select=id::text",
            vec![r#"("t0"."id")::text AS "id""#],
            vec![],
        ),
        (
            "select=id&order=title.desc.nullslast,id&limit=3&offset=1",
            vec![r#"ORDER BY "t0"."title" DESC NULLS LAST, "t0"."id" LIMIT 3 OFFSET 1"#],
            vec![],
        ),
        (
            "select=id,directors(name)",
            vec![
                r#"LEFT JOIN LATERAL (SELECT row_to_json(pgrst_e) AS "pgrst_v" FROM (SELECT "t1"."name" AS "name" FROM "public"."directors" AS "t1" WHERE "t1"."id" = "t0"."director_id") AS pgrst_e) AS "j2" ON TRUE"#,
            ],
            vec![],
        ),
        (
            "select=id,directors!inner(name)",
            vec![r#"WHERE "j2"."pgrst_v" IS NOT NULL"#],
            vec![],
        ),
        ("select=\"a\\\"b\":id", vec![r#"AS "a""b""#], vec![]),
    ];
    for (q, fragments, params) in cases {
        let s = build_for(Method::GET, "/films", q, &[], Payload::None);
        for f in fragments {
            assert!(s.sql.contains(f), "{q}:\n{}\nlacks\n{f}", s.sql);
        }
        assert_eq!(s.params, params, "{q}");
    }
}

#[test]
fn user_text_never_reaches_sql() {
    let evil = "x'); drop table films; --";
    let q = format!(
        "select=id&title=eq.{}",
        percent_encoding::utf8_percent_encode(evil, percent_encoding::NON_ALPHANUMERIC)
    );
    let s = build_for(Method::GET, "/films", &q, &[], Payload::None);
    assert!(!s.sql.contains("drop table"), "{}", s.sql);
    assert_eq!(s.params, vec![evil]);
}

#[test]
fn write_sql_table() {
    let s = build_for(
        Method::POST,
        "/films",
        "",
        &[],
        Payload::Json(serde_json::json!({"title": "x"})),
    );
    assert!(s.sql.contains(r#"INSERT INTO "public"."films" AS "t0" ("title") SELECT pgrst_body."title" FROM pg_catalog.json_populate_recordset(NULL::"public"."films", $1::json) AS pgrst_body RETURNING 1"#), "{}", s.sql);
    assert_eq!(s.params, vec![r#"[{"title":"x"}]"#]);

    let s = build_for(
        Method::POST,
        "/films",
        "",
        &[(
            "prefer",
            "resolution=merge-duplicates,return=representation",
        )],
        Payload::Json(serde_json::json!({"id": 1, "title": "x"})),
    );
    assert!(s.sql.contains(r#"ON CONFLICT ("id") DO UPDATE SET "id" = EXCLUDED."id", "title" = EXCLUDED."title" WHERE pg_catalog.set_config('pgrst.inserted'"#), "{}", s.sql);
    assert!(
        s.sql
            .contains(r#"AS pgrst_body WHERE pg_catalog.set_config('pgrst.inserted'"#),
        "{}",
        s.sql
    );
    assert!(s.sql.ends_with("AS inserted"), "{}", s.sql);

    let s = build_for(
        Method::PATCH,
        "/films",
        "id=eq.1",
        &[],
        Payload::Json(serde_json::json!({"title": "y"})),
    );
    assert!(s.sql.contains(r#"UPDATE "public"."films" AS "t0" SET "title" = pgrst_body."title" FROM (SELECT * FROM pg_catalog.json_populate_record(NULL::"public"."films", $1::json)) AS pgrst_body WHERE "t0"."id" = $2 RETURNING 1"#), "{}", s.sql);

    let s = build_for(
        Method::DELETE,
        "/films",
        "id=gt.3",
        &[("prefer", "return=representation")],
        Payload::None,
    );
    assert!(
        s.sql.contains(
            r#"DELETE FROM "public"."films" AS "t0" WHERE "t0"."id" > $1 RETURNING "t0".*"#
        ),
        "{}",
        s.sql
    );
}
