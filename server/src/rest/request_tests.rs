use super::*;
use crate::rest::grammar::*;
use http::HeaderValue;
use proptest::prelude::*;

fn get(q: &str) -> Result<ApiRequest, RequestError> {
    parse(&Method::GET, "/t", Some(q), &HeaderMap::new())
}

fn with_headers(
    method: Method,
    path: &str,
    q: &str,
    hs: &[(&'static str, &str)],
) -> Result<ApiRequest, RequestError> {
    let mut h = HeaderMap::new();
    for (k, v) in hs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    parse(&method, path, Some(q), &h)
}

fn field(alias: Option<&str>, name: &str) -> SelectItem {
    SelectItem::Field {
        alias: alias.map(String::from),
        field: Some(Field::col(name)),
        cast: None,
        aggregate: None,
        aggregate_cast: None,
    }
}

#[test]
fn select_table() {
    let f = |n: &str| field(None, n);
    let cases: Vec<(&str, Vec<SelectItem>)> = vec![
        ("*", vec![SelectItem::Star]),
        ("id,name", vec![f("id"), f("name")]),
        ("title:name", vec![field(Some("title"), "name")]),
        ("\"my col\"", vec![f("my col")]),
        ("first-name", vec![f("first-name")]),
        (
            "id::text",
            vec![SelectItem::Field {
                alias: None,
                field: Some(Field::col("id")),
                cast: Some("text".into()),
                aggregate: None,
                aggregate_cast: None,
            }],
        ),
        (
            "data->a->>b",
            vec![SelectItem::Field {
                alias: None,
                field: Some(Field {
                    name: "data".into(),
                    json_path: vec![
                        JsonOp::Arrow(JsonKey::Key("a".into())),
                        JsonOp::Arrow2(JsonKey::Key("b".into())),
                    ],
                }),
                cast: None,
                aggregate: None,
                aggregate_cast: None,
            }],
        ),
        (
            "x:arr->0",
            vec![SelectItem::Field {
                alias: Some("x".into()),
                field: Some(Field {
                    name: "arr".into(),
                    json_path: vec![JsonOp::Arrow(JsonKey::Index(0))],
                }),
                cast: None,
                aggregate: None,
                aggregate_cast: None,
            }],
        ),
        (
            "amount.sum()",
            vec![SelectItem::Field {
                alias: None,
                field: Some(Field::col("amount")),
                cast: None,
                aggregate: Some(Aggregate::Sum),
                aggregate_cast: None,
            }],
        ),
        (
            "total:amount::int.avg()::text",
            vec![SelectItem::Field {
                alias: Some("total".into()),
                field: Some(Field::col("amount")),
                cast: Some("int".into()),
                aggregate: Some(Aggregate::Avg),
                aggregate_cast: Some("text".into()),
            }],
        ),
        (
            "count()",
            vec![SelectItem::Field {
                alias: None,
                field: None,
                cast: None,
                aggregate: Some(Aggregate::Count),
                aggregate_cast: None,
            }],
        ),
        (
            "*,actors(*)",
            vec![
                SelectItem::Star,
                SelectItem::Embed {
                    alias: None,
                    name: "actors".into(),
                    hint: None,
                    join: None,
                    spread: false,
                    select: vec![SelectItem::Star],
                },
            ],
        ),
        (
            "d:directors!films_director_id_fkey!inner(id,last_name)",
            vec![SelectItem::Embed {
                alias: Some("d".into()),
                name: "directors".into(),
                hint: Some("films_director_id_fkey".into()),
                join: Some(JoinType::Inner),
                spread: false,
                select: vec![f("id"), f("last_name")],
            }],
        ),
        (
            "title,...directors(name)",
            vec![
                f("title"),
                SelectItem::Embed {
                    alias: None,
                    name: "directors".into(),
                    hint: None,
                    join: None,
                    spread: true,
                    select: vec![f("name")],
                },
            ],
        ),
        ("a(b(c(*)))", {
            let c = SelectItem::Embed {
                alias: None,
                name: "c".into(),
                hint: None,
                join: None,
                spread: false,
                select: vec![SelectItem::Star],
            };
            let b = SelectItem::Embed {
                alias: None,
                name: "b".into(),
                hint: None,
                join: None,
                spread: false,
                select: vec![c],
            };
            vec![SelectItem::Embed {
                alias: None,
                name: "a".into(),
                hint: None,
                join: None,
                spread: false,
                select: vec![b],
            }]
        }),
        (
            "r!left()",
            vec![SelectItem::Embed {
                alias: None,
                name: "r".into(),
                hint: None,
                join: Some(JoinType::Left),
                spread: false,
                select: vec![],
            }],
        ),
        ("", vec![]),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_select(input).unwrap_or_else(|e| panic!("{input}: {e}")),
            want,
            "{input}"
        );
    }
}

fn simple(op: SimpleOp, v: &str) -> Operation {
    Operation::Simple {
        op,
        quantifier: None,
        value: v.into(),
    }
}

#[test]
fn filter_table() {
    let cases: Vec<(&str, bool, Operation)> = vec![
        ("eq.5", false, simple(SimpleOp::Eq, "5")),
        ("eq.a.b.c", false, simple(SimpleOp::Eq, "a.b.c")),
        ("eq.", false, simple(SimpleOp::Eq, "")),
        ("neq.x", false, simple(SimpleOp::Neq, "x")),
        ("gt.1", false, simple(SimpleOp::Gt, "1")),
        ("gte.1", false, simple(SimpleOp::Gte, "1")),
        ("lt.1", false, simple(SimpleOp::Lt, "1")),
        ("lte.1", false, simple(SimpleOp::Lte, "1")),
        ("like.*a*", false, simple(SimpleOp::Like, "*a*")),
        ("ilike.*A*", false, simple(SimpleOp::Ilike, "*A*")),
        ("match.^a", false, simple(SimpleOp::Match, "^a")),
        ("imatch.^a", false, simple(SimpleOp::Imatch, "^a")),
        ("isdistinct.3", false, simple(SimpleOp::IsDistinct, "3")),
        ("cs.{1,2}", false, simple(SimpleOp::Cs, "{1,2}")),
        ("cd.{1,2}", false, simple(SimpleOp::Cd, "{1,2}")),
        ("ov.[1,5)", false, simple(SimpleOp::Ov, "[1,5)")),
        ("sl.(1,5)", false, simple(SimpleOp::Sl, "(1,5)")),
        ("sr.(1,5)", false, simple(SimpleOp::Sr, "(1,5)")),
        ("nxl.(1,5)", false, simple(SimpleOp::Nxl, "(1,5)")),
        ("nxr.(1,5)", false, simple(SimpleOp::Nxr, "(1,5)")),
        ("adj.(1,5)", false, simple(SimpleOp::Adj, "(1,5)")),
        ("not.eq.5", true, simple(SimpleOp::Eq, "5")),
        (
            "in.(1,2,3)",
            false,
            Operation::In(vec!["1".into(), "2".into(), "3".into()]),
        ),
        (
            "in.(\"a,b\",\"c\\\"d\",e)",
            false,
            Operation::In(vec!["a,b".into(), "c\"d".into(), "e".into()]),
        ),
        ("in.()", false, Operation::In(vec![])),
        ("not.in.(1)", true, Operation::In(vec!["1".into()])),
        ("is.null", false, Operation::Is(IsValue::Null)),
        ("is.NULL", false, Operation::Is(IsValue::Null)),
        ("is.not_null", false, Operation::Is(IsValue::NotNull)),
        ("is.true", false, Operation::Is(IsValue::True)),
        ("is.false", false, Operation::Is(IsValue::False)),
        ("is.unknown", false, Operation::Is(IsValue::Unknown)),
        ("not.is.null", true, Operation::Is(IsValue::Null)),
        (
            "fts.cat",
            false,
            Operation::Fts {
                kind: FtsKind::Fts,
                config: None,
                value: "cat".into(),
            },
        ),
        (
            "plfts(english).fat cats",
            false,
            Operation::Fts {
                kind: FtsKind::Plfts,
                config: Some("english".into()),
                value: "fat cats".into(),
            },
        ),
        (
            "phfts.a b",
            false,
            Operation::Fts {
                kind: FtsKind::Phfts,
                config: None,
                value: "a b".into(),
            },
        ),
        (
            "wfts(simple).a or b",
            false,
            Operation::Fts {
                kind: FtsKind::Wfts,
                config: Some("simple".into()),
                value: "a or b".into(),
            },
        ),
        (
            "eq(any).{1,2}",
            false,
            Operation::Simple {
                op: SimpleOp::Eq,
                quantifier: Some(Quantifier::Any),
                value: "{1,2}".into(),
            },
        ),
        (
            "like(all).{a*,*b}",
            false,
            Operation::Simple {
                op: SimpleOp::Like,
                quantifier: Some(Quantifier::All),
                value: "{a*,*b}".into(),
            },
        ),
    ];
    for (input, negated, op) in cases {
        let r = get(&format!("c={}", urlenc(input))).unwrap_or_else(|e| panic!("{input}: {e:?}"));
        assert_eq!(
            r.filters,
            vec![(
                vec![],
                Filter {
                    field: Field::col("c"),
                    negated,
                    op
                }
            )],
            "{input}"
        );
    }
}

fn urlenc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[test]
fn logic_trees() {
    let r = get("or=(a.eq.1,b.in.(1,2),and(c.gte.3,d.not.is.null),name.eq.\"x,y)\")").unwrap();
    let (path, tree) = &r.logic[0];
    assert!(path.is_empty());
    let LogicTree::Expr {
        negated: false,
        op: LogicOp::Or,
        children,
    } = tree
    else {
        panic!("{tree:?}")
    };
    assert_eq!(children.len(), 4);
    assert_eq!(
        children[0],
        LogicTree::Filter(Filter {
            field: Field::col("a"),
            negated: false,
            op: simple(SimpleOp::Eq, "1")
        })
    );
    assert_eq!(
        children[1],
        LogicTree::Filter(Filter {
            field: Field::col("b"),
            negated: false,
            op: Operation::In(vec!["1".into(), "2".into()])
        })
    );
    let LogicTree::Expr {
        op: LogicOp::And,
        children: inner,
        ..
    } = &children[2]
    else {
        panic!()
    };
    assert_eq!(
        inner[1],
        LogicTree::Filter(Filter {
            field: Field::col("d"),
            negated: true,
            op: Operation::Is(IsValue::Null)
        })
    );
    assert_eq!(
        children[3],
        LogicTree::Filter(Filter {
            field: Field::col("name"),
            negated: false,
            op: simple(SimpleOp::Eq, "x,y)")
        })
    );

    let r = get("actors.not.and=(a.eq.1,b.cs.{x,y})").unwrap();
    let (path, tree) = &r.logic[0];
    assert_eq!(path, &vec!["actors".to_string()]);
    let LogicTree::Expr {
        negated: true,
        op: LogicOp::And,
        children,
    } = tree
    else {
        panic!()
    };
    assert_eq!(
        children[1],
        LogicTree::Filter(Filter {
            field: Field::col("b"),
            negated: false,
            op: simple(SimpleOp::Cs, "{x,y}")
        })
    );

    let r = get("or=(data->>a.eq.1,not.or(x.eq.1,y.eq.2))").unwrap();
    let LogicTree::Expr { children, .. } = &r.logic[0].1 else {
        panic!()
    };
    let LogicTree::Filter(f) = &children[0] else {
        panic!()
    };
    assert_eq!(
        f.field.json_path,
        vec![JsonOp::Arrow2(JsonKey::Key("a".into()))]
    );
    assert!(matches!(
        &children[1],
        LogicTree::Expr {
            negated: true,
            op: LogicOp::Or,
            ..
        }
    ));
}

#[test]
fn order_paging_and_embedded_params() {
    let r = get("order=a.desc.nullslast,b,c.asc,director(name).desc&limit=10&offset=5&actors.order=name&actors.limit=2&actors.offset=1&actors.name=eq.x&roles.actors.id=gt.3")
        .unwrap();
    let terms = &r.order[0].1;
    assert_eq!(
        terms[0],
        OrderTerm {
            relation: None,
            field: Field::col("a"),
            direction: Some(Direction::Desc),
            nulls: Some(Nulls::Last)
        }
    );
    assert_eq!(
        terms[1],
        OrderTerm {
            relation: None,
            field: Field::col("b"),
            direction: None,
            nulls: None
        }
    );
    assert_eq!(terms[3].relation.as_deref(), Some("director"));
    assert_eq!(
        r.paging[&vec![]],
        Paging {
            limit: Some(10),
            offset: Some(5)
        }
    );
    assert_eq!(
        r.paging[&vec!["actors".to_string()]],
        Paging {
            limit: Some(2),
            offset: Some(1)
        }
    );
    assert_eq!(r.order[1].0, vec!["actors".to_string()]);
    assert_eq!(r.filters[0].0, vec!["actors".to_string()]);
    assert_eq!(
        r.filters[1].0,
        vec!["roles".to_string(), "actors".to_string()]
    );
}

#[test]
fn query_decoding_and_columns() {
    let r = get("name=eq.a+b%20c&columns=a,b&on_conflict=id").unwrap();
    assert_eq!(r.filters[0].1.op, simple(SimpleOp::Eq, "a b c"));
    assert_eq!(r.columns, Some(vec!["a".into(), "b".into()]));
    assert_eq!(r.on_conflict, Some(vec!["id".into()]));
}

#[test]
fn routes() {
    let cases: Vec<(Method, &str, Target, Action)> = vec![
        (
            Method::GET,
            "/",
            Target::Root,
            Action::Read {
                headers_only: false,
            },
        ),
        (
            Method::GET,
            "",
            Target::Root,
            Action::Read {
                headers_only: false,
            },
        ),
        (
            Method::GET,
            "/todos",
            Target::Relation("todos".into()),
            Action::Read {
                headers_only: false,
            },
        ),
        (
            Method::HEAD,
            "/todos",
            Target::Relation("todos".into()),
            Action::Read { headers_only: true },
        ),
        (
            Method::POST,
            "/todos",
            Target::Relation("todos".into()),
            Action::Insert,
        ),
        (
            Method::PATCH,
            "/todos",
            Target::Relation("todos".into()),
            Action::Update,
        ),
        (
            Method::PUT,
            "/todos",
            Target::Relation("todos".into()),
            Action::Upsert,
        ),
        (
            Method::DELETE,
            "/todos",
            Target::Relation("todos".into()),
            Action::Delete,
        ),
        (
            Method::OPTIONS,
            "/todos",
            Target::Relation("todos".into()),
            Action::Info,
        ),
        (
            Method::GET,
            "/my%20table",
            Target::Relation("my table".into()),
            Action::Read {
                headers_only: false,
            },
        ),
        (
            Method::POST,
            "/rpc/add",
            Target::Rpc("add".into()),
            Action::Call {
                method: CallMethod::Post,
            },
        ),
        (
            Method::GET,
            "/rpc/add",
            Target::Rpc("add".into()),
            Action::Call {
                method: CallMethod::Get,
            },
        ),
        (
            Method::HEAD,
            "/rpc/add",
            Target::Rpc("add".into()),
            Action::Call {
                method: CallMethod::Head,
            },
        ),
    ];
    for (m, path, target, action) in cases {
        let r = parse(&m, path, None, &HeaderMap::new())
            .unwrap_or_else(|e| panic!("{m} {path}: {e:?}"));
        assert_eq!((r.target, r.action), (target, action), "{m} {path}");
    }
}

#[test]
fn rpc_args_versus_filters() {
    let r = parse(
        &Method::GET,
        "/rpc/f",
        Some("a=1&b=hello&id=gt.3&v=1&v=2"),
        &HeaderMap::new(),
    )
    .unwrap();
    assert_eq!(
        r.rpc_args,
        vec![
            ("a".into(), "1".into()),
            ("b".into(), "hello".into()),
            ("v".into(), "1".into()),
            ("v".into(), "2".into())
        ]
    );
    assert_eq!(r.filters.len(), 1);
}

#[test]
fn headers() {
    let r = with_headers(
        Method::POST,
        "/t",
        "",
        &[
            ("prefer", "return=representation, count=exact"),
            ("prefer", "resolution=merge-duplicates,missing=default"),
            ("content-profile", "api"),
        ],
    )
    .unwrap();
    assert_eq!(r.prefer.return_, Some(ReturnPref::Representation));
    assert_eq!(r.prefer.count, Some(CountPref::Exact));
    assert_eq!(r.prefer.resolution, Some(Resolution::MergeDuplicates));
    assert!(r.prefer.missing_default);
    assert_eq!(
        r.prefer.applied,
        vec![
            "return=representation",
            "count=exact",
            "resolution=merge-duplicates",
            "missing=default"
        ]
    );
    assert_eq!(r.profile.as_deref(), Some("api"));

    let r = with_headers(
        Method::GET,
        "/t",
        "",
        &[("prefer", "tx=rollback,handling=strict,max-affected=5,bogus")],
    );
    assert_eq!(
        r,
        Err(RequestError::InvalidPreferences(vec!["bogus".into()]))
    );
    let r = with_headers(
        Method::GET,
        "/t",
        "",
        &[("prefer", "bogus, tx=rollback, max-affected=5")],
    )
    .unwrap();
    assert_eq!(
        (r.prefer.tx, r.prefer.max_affected),
        (Some(TxPref::Rollback), Some(5))
    );

    let accepts = [
        ("application/json", MediaType::Json, false),
        ("*/*", MediaType::Json, false),
        (
            "application/vnd.pgrst.object+json",
            MediaType::SingleObject,
            false,
        ),
        (
            "application/vnd.pgrst.object+json;nulls=stripped",
            MediaType::SingleObject,
            true,
        ),
        (
            "application/vnd.pgrst.array+json;nulls=stripped",
            MediaType::Json,
            true,
        ),
        ("text/csv", MediaType::Csv, false),
        ("image/png, text/csv", MediaType::Csv, false),
    ];
    for (a, media, strip_nulls) in accepts {
        let r = with_headers(Method::GET, "/t", "", &[("accept", a)]).unwrap();
        assert_eq!(
            r.accept,
            Accept {
                media,
                strip_nulls,
                plan: None
            },
            "{a}"
        );
    }
    let r = with_headers(Method::GET, "/t", "", &[("accept", "application/vnd.pgrst.plan+json; for=\"application/vnd.pgrst.object+json\"; options=analyze|buffers;")]).unwrap();
    assert_eq!(r.accept.media, MediaType::SingleObject);
    assert_eq!(
        r.accept.plan,
        Some(ExplainRequest {
            json: true,
            analyze: true,
            verbose: false,
            settings: false,
            buffers: true,
            wal: false
        })
    );
    let ranges = [
        ("0-9", Some((0, Some(9)))),
        ("items=5-", Some((5, None))),
        ("x", None),
        ("-5", None),
    ];
    for (h, want) in ranges {
        let r = with_headers(Method::GET, "/t", "", &[("range", h)]).unwrap();
        assert_eq!(r.range, want, "{h}");
    }
    let cts = [
        ("application/json", ContentType::Json),
        ("text/csv", ContentType::Csv),
        ("application/x-www-form-urlencoded", ContentType::Form),
        ("text/plain; charset=utf-8", ContentType::Raw(RawBody::Text)),
        ("text/xml", ContentType::Raw(RawBody::Xml)),
        ("application/octet-stream", ContentType::Raw(RawBody::Bytes)),
    ];
    for (h, want) in cts {
        let r = with_headers(Method::POST, "/t", "", &[("content-type", h)]).unwrap();
        assert_eq!(r.content_type, want);
    }
    let r = with_headers(Method::GET, "/t", "", &[("accept-profile", "other")]).unwrap();
    assert_eq!(r.profile.as_deref(), Some("other"));
}

/// Every malformed input gets its own error, never a panic.
#[test]
fn bad_input_table() {
    type Case<'a> = (
        Method,
        &'a str,
        &'a str,
        Vec<(&'static str, &'a str)>,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (Method::GET, "/t", "select=a(", vec![], "PGRST100"),
        (Method::GET, "/t", "select=a,", vec![], "PGRST100"),
        (Method::GET, "/t", "select=a)", vec![], "PGRST100"),
        (
            Method::GET,
            "/t",
            "select=\"unterminated",
            vec![],
            "PGRST100",
        ),
        (Method::GET, "/t", "select=a.bogus()", vec![], "PGRST100"),
        (Method::GET, "/t", "select=a::", vec![], "PGRST100"),
        (Method::GET, "/t", "select=r!a!b(*)", vec![], "PGRST100"),
        (Method::GET, "/t", "id=5", vec![], "PGRST100"),
        (Method::GET, "/t", "id=foo.5", vec![], "PGRST100"),
        (Method::GET, "/t", "id=in.1,2", vec![], "PGRST100"),
        (Method::GET, "/t", "id=in.(1,2", vec![], "PGRST100"),
        (Method::GET, "/t", "id=is.maybe", vec![], "PGRST100"),
        (Method::GET, "/t", "id=cs(any).{1}", vec![], "PGRST100"),
        (Method::GET, "/t", "id=fts().x", vec![], "PGRST100"),
        (Method::GET, "/t", "or=a.eq.1", vec![], "PGRST100"),
        (Method::GET, "/t", "or=(a.eq.1", vec![], "PGRST100"),
        (Method::GET, "/t", "or=(a.zz.1)", vec![], "PGRST100"),
        (Method::GET, "/t", "or=()", vec![], "PGRST100"),
        (Method::GET, "/t", "order=a.up", vec![], "PGRST100"),
        (Method::GET, "/t", "order=", vec![], "PGRST100"),
        (Method::GET, "/t", "limit=-1", vec![], "PGRST100"),
        (Method::GET, "/t", "limit=abc", vec![], "PGRST100"),
        (Method::GET, "/t", "offset=1.5", vec![], "PGRST100"),
        (Method::GET, "/t", "columns=a,,b", vec![], "PGRST100"),
        (Method::GET, "/a/b/c", "", vec![], "PGRST125"),
        (Method::GET, "/rpc/", "", vec![], "PGRST125"),
        (Method::PATCH, "/rpc/f", "", vec![], "PGRST101"),
        (Method::POST, "/", "", vec![], "PGRST117"),
        (Method::TRACE, "/t", "", vec![], "PGRST117"),
        (
            Method::GET,
            "/t",
            "",
            vec![("accept", "image/png")],
            "PGRST107",
        ),
        (
            Method::POST,
            "/t",
            "",
            vec![("content-type", "image/png")],
            "PGRST107",
        ),
        (
            Method::GET,
            "/t",
            "",
            vec![("prefer", "handling=strict, return=maybe")],
            "PGRST122",
        ),
    ];
    for (m, path, q, hs, code) in cases {
        let err = with_headers(m.clone(), path, q, &hs)
            .expect_err(&format!("{m} {path}?{q} should fail"));
        let body = crate::rest::error::RestError::from(err).body();
        assert_eq!(body["code"], code, "{m} {path}?{q}: {body}");
    }
}

proptest! {
    #[test]
    fn parser_never_panics(path in "\\PC{0,20}", q in "\\PC{0,80}", prefer in "[ -~]{0,40}", accept in "[ -~]{0,40}") {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&prefer) { h.insert("prefer", v); }
        if let Ok(v) = HeaderValue::from_str(&accept) { h.insert("accept", v); }
        for m in [Method::GET, Method::POST, Method::PATCH] {
            let _ = parse(&m, &path, Some(&q), &h);
        }
    }

    #[test]
    fn grammar_never_panics(s in "[a-z(),.:!\"*\\\\{}>\\-0-9 ]{0,60}") {
        let _ = parse_select(&s);
        let _ = parse_order(&s);
        let _ = parse_logic(LogicOp::Or, false, &s);
        let _ = parse_filter(Field::col("c"), &s);
        let _ = parse_brace_list(&s);
    }
}
