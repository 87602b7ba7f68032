use super::*;
use crate::realtime::decode::ColumnInfo;
use crate::realtime::lsn::Lsn;
use chrono::{TimeZone, Utc};
use serde_json::{Map, json};

fn col(name: &str, type_oid: u32, key: bool) -> ColumnInfo {
    ColumnInfo {
        name: name.into(),
        type_name: String::new(),
        type_oid,
        key,
    }
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// A change to `public.todos` with the given new (or, for deletes, old) row.
fn change(kind: ChangeKind, row: Value) -> Change {
    let (record, old_record) = match kind {
        ChangeKind::Delete => (Map::new(), Some(object(row))),
        _ => (object(row), None),
    };
    Change {
        schema: "public".into(),
        table: "todos".into(),
        kind,
        commit_lsn: Lsn(1),
        commit_timestamp: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
        index_in_tx: 0,
        xid: 0,
        columns: vec![
            col("id", 20, true),
            col("title", 25, false),
            col("done", 16, false),
            col("price", 1700, false),
            col("owner", 2950, false),
            col("due", 1184, false),
            col("day", 1082, false),
            col("at", 1114, false),
            col("meta", 3802, false),
            col("tags", 1009, false),
            col("score", 701, false),
        ]
        .into(),
        record,
        old_record,
        unchanged_toast: vec![],
        row_security: true,
    }
}

fn row() -> Value {
    json!({
        "id": 5, "title": "milk", "done": true, "price": 2.5,
        "owner": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "due": "2024-05-01 10:00:00+00",
        "day": "2024-05-01", "at": "2024-05-01 10:00:00", "meta": {"n": 1}, "tags": ["a", "b"],
        "score": null
    })
}

#[test]
fn parses_filters() {
    // text, column, negate, op, values
    type Case = (
        &'static str,
        &'static str,
        bool,
        FilterOp,
        &'static [Option<&'static str>],
    );
    let ok: &[Case] = &[
        ("id=eq.5", "id", false, FilterOp::Eq, &[Some("5")]),
        (
            "title=neq.a.b",
            "title",
            false,
            FilterOp::Neq,
            &[Some("a.b")],
        ),
        ("title=eq.a=b", "title", false, FilterOp::Eq, &[Some("a=b")]),
        ("id=lt.1", "id", false, FilterOp::Lt, &[Some("1")]),
        ("id=lte.1", "id", false, FilterOp::Lte, &[Some("1")]),
        ("id=gt.1", "id", false, FilterOp::Gt, &[Some("1")]),
        ("id=gte.1", "id", false, FilterOp::Gte, &[Some("1")]),
        ("title=eq.", "title", false, FilterOp::Eq, &[Some("")]),
        (
            "id=in.(1,2, 3)",
            "id",
            false,
            FilterOp::In,
            &[Some("1"), Some("2"), Some("3")],
        ),
        ("id=in.()", "id", false, FilterOp::In, &[]),
        (
            r#"t=in.("a,b","c\"d",NULL)"#,
            "t",
            false,
            FilterOp::In,
            &[Some("a,b"), Some("c\"d"), None],
        ),
        ("id=not.eq.5", "id", true, FilterOp::Eq, &[Some("5")]),
        ("id=not.in.(1)", "id", true, FilterOp::In, &[Some("1")]),
    ];
    for (text, column, negate, op, values) in ok {
        let f = ChangeFilter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let values: Vec<Option<String>> = values.iter().map(|v| v.map(str::to_string)).collect();
        assert_eq!(
            f,
            ChangeFilter {
                column: column.to_string(),
                negate: *negate,
                op: *op,
                values
            },
            "{text}"
        );
    }
}

#[test]
fn rejects_bad_filters() {
    type Case = (&'static str, fn(&SubscriptionError) -> bool);
    let bad: &[Case] = &[
        ("id", |e| matches!(e, SubscriptionError::MissingEquals(_))),
        ("=eq.1", |e| matches!(e, SubscriptionError::EmptyColumn(_))),
        ("id=like.5", |e| {
            matches!(e, SubscriptionError::UnknownOperator(_))
        }),
        ("id=eq", |e| {
            matches!(e, SubscriptionError::UnknownOperator(_))
        }),
        ("id=EQ.5", |e| {
            matches!(e, SubscriptionError::UnknownOperator(_))
        }),
        ("id=not.like.5", |e| {
            matches!(e, SubscriptionError::UnknownOperator(_))
        }),
        ("id=in.1,2", |e| matches!(e, SubscriptionError::BadList(_))),
        ("id=in.(1,2", |e| matches!(e, SubscriptionError::BadList(_))),
        ("id=in.(1,,2)", |e| {
            matches!(e, SubscriptionError::BadList(_))
        }),
        (r#"id=in.("a)"#, |e| {
            matches!(e, SubscriptionError::BadList(_))
        }),
        (r#"id=in.("a"b)"#, |e| {
            matches!(e, SubscriptionError::BadList(_))
        }),
        (r#"id=in.(a"b)"#, |e| {
            matches!(e, SubscriptionError::BadList(_))
        }),
    ];
    for (text, is_expected) in bad {
        let err = ChangeFilter::parse(text).expect_err(text);
        assert!(is_expected(&err), "{text}: {err:?}");
    }
}

#[test]
fn matches_filters_by_column_type() {
    let cases: &[(&str, bool)] = &[
        ("id=eq.5", true),
        ("id=eq.05", true),
        ("id=eq.5.0", true),
        ("id=eq.6", false),
        ("id=neq.6", true),
        ("id=lt.10", true), // numeric, not text order ("10" < "5")
        ("id=gt.10", false),
        ("id=gte.5", true),
        ("id=lte.4", false),
        ("id=in.(1,5)", true),
        ("id=in.(1,2)", false),
        ("id=in.(1,NULL)", false),
        ("id=eq.abc", false),
        ("id=neq.abc", false), // not a number: unknown, not "not equal"
        ("id=not.eq.6", true),
        ("id=not.eq.5", false),
        ("price=eq.2.50", true),
        ("price=gt.2.4999999999999999999", true),
        ("price=lt.3e0", true),
        ("title=eq.milk", true),
        ("title=eq.Milk", false),
        ("title=gt.eggs", true),
        ("title=in.(bread,milk)", true),
        ("done=eq.true", true),
        ("done=eq.t", true),
        ("done=eq.false", false),
        ("done=eq.maybe", false),
        ("owner=eq.A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", true),
        ("due=eq.2024-05-01T10:00:00Z", true),
        ("due=eq.2024-05-01T12:00:00+02:00", true),
        ("due=lt.2024-05-01 10:00:01+00", true),
        ("due=gt.2024-05-01T10:00:00.000001Z", false),
        ("day=gte.2024-04-30", true),
        ("at=eq.2024-05-01T10:00:00", true),
        ("meta=eq.{\"n\": 1}", true),
        ("meta=neq.{\"n\": 2}", true),
        ("meta=lt.{\"n\": 2}", false),
        ("tags=eq.{a,b}", true),
        ("tags=eq.{b,a}", false),
        ("score=eq.1", false), // null matches nothing
        ("score=neq.1", false),
        ("score=not.eq.1", false),
        ("missing=eq.1", false),
    ];
    let insert = change(ChangeKind::Insert, row());
    for (filter, want) in cases {
        assert_eq!(
            ChangeFilter::parse(filter).unwrap().matches(&insert),
            *want,
            "{filter}"
        );
    }
}

#[test]
fn deletes_match_only_on_key_columns() {
    let delete = change(ChangeKind::Delete, row());
    assert!(ChangeFilter::parse("id=eq.5").unwrap().matches(&delete));
    assert!(!ChangeFilter::parse("id=eq.6").unwrap().matches(&delete));
    // The full old row is there (replica identity full), but title is no key.
    assert!(
        !ChangeFilter::parse("title=eq.milk")
            .unwrap()
            .matches(&delete)
    );
}

#[test]
fn bindings_by_schema_table_and_event() {
    let insert = change(ChangeKind::Insert, row());
    let update = change(ChangeKind::Update, row());
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        bool,
        bool,
    );
    let cases: &[Case] = &[
        // event, schema, table, filter, matches insert, matches update
        ("*", "public", Some("todos"), None, true, true),
        ("INSERT", "public", Some("todos"), None, true, false),
        ("update", "public", Some("todos"), None, false, true),
        ("DELETE", "public", Some("todos"), None, false, false),
        ("*", "public", None, None, true, true),
        ("*", "public", Some("*"), None, true, true),
        ("*", "*", None, None, true, true),
        ("*", "private", None, None, false, false),
        ("*", "public", Some("other"), None, false, false),
        ("*", "public", Some("todos"), Some("id=eq.5"), true, true),
        ("*", "public", Some("todos"), Some("id=eq.6"), false, false),
        ("*", "public", Some("todos"), Some(""), true, true),
    ];
    for (event, schema, table, filter, on_insert, on_update) in cases {
        let b = PostgresChanges::parse(event, schema, *table, *filter).unwrap();
        assert_eq!(
            (b.matches(&insert), b.matches(&update)),
            (*on_insert, *on_update),
            "{event} {schema} {table:?} {filter:?}"
        );
    }
    assert_eq!(
        PostgresChanges::parse("TRUNCATE", "public", None, None),
        Err(SubscriptionError::UnknownEvent("TRUNCATE".into()))
    );
    assert_eq!(
        PostgresChanges::parse("*", "", None, None),
        Err(SubscriptionError::EmptySchema)
    );
    assert_eq!(
        PostgresChanges::parse("*", "public", Some(""), None),
        Err(SubscriptionError::EmptyTable)
    );
    assert!(matches!(
        PostgresChanges::parse("*", "public", None, Some("id")),
        Err(SubscriptionError::MissingEquals(_))
    ));
}

#[test]
fn subscription_set_finds_each_key_once() {
    let mut set = SubscriptionSet::new();
    let binding = |table: Option<&str>, filter: Option<&str>| {
        PostgresChanges::parse("*", "public", table, filter).unwrap()
    };
    set.insert("a", binding(Some("todos"), Some("id=eq.5")));
    set.insert("a", binding(None, None)); // same key twice: reported once
    set.insert("b", binding(Some("todos"), Some("id=eq.6")));
    set.insert("c", binding(Some("other"), None));
    set.insert(
        "d",
        PostgresChanges::parse("INSERT", "*", None, None).unwrap(),
    );
    assert_eq!(set.len(), 5);
    let insert = change(ChangeKind::Insert, row());
    let mut hits = set.matching(&insert);
    hits.sort();
    assert_eq!(hits, ["a", "d"]);
    assert_eq!(set.remove(&"a"), 2);
    assert_eq!(set.matching(&insert), ["d"]);
    assert_eq!(set.remove(&"zzz"), 0);
    for key in ["b", "c", "d"] {
        set.remove(&key);
    }
    assert!(set.is_empty());
}

#[test]
fn decimals_compare_exactly() {
    let cases: &[(&str, &str, Ordering)] = &[
        ("1", "1.000", Ordering::Equal),
        ("0", "-0.0", Ordering::Equal),
        ("9007199254740993", "9007199254740992", Ordering::Greater),
        ("-2", "-10", Ordering::Greater),
        ("0.001", "1e-3", Ordering::Equal),
        ("123.45", "1.2345E2", Ordering::Equal),
        ("-0.5", "0", Ordering::Less),
        ("100", "99.999999999999999999", Ordering::Greater),
    ];
    for (a, b, want) in cases {
        assert_eq!(decimal_cmp(a, b), Some(*want), "{a} vs {b}");
    }
    for bad in ["", "-", ".", "1.2.3", "NaN", "1e", "abc", "1e99999999999"] {
        assert_eq!(Decimal::parse(bad), None, "{bad:?}");
    }
}

/// The index of `eq` bindings finds exactly what testing every binding finds, in insertion
/// order: folded values (uuid case, spaces), types it cannot fold (numbers, booleans), negated
/// and other operators, deletes (key and non-key columns), missing columns and nulls.
#[test]
fn indexed_matching_equals_testing_every_binding() {
    let filters = [
        "owner=eq.a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "owner=eq.A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        "owner=eq. a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ",
        "owner=eq.b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "owner=not.eq.a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "owner=neq.b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "title=eq.milk",
        "title=eq.Milk",
        "title=eq. milk",
        "title=in.(milk,bread)",
        "id=eq.5",
        "id=eq.5.0",
        "id=eq.6",
        "done=eq.true",
        "done=eq.t",
        "price=eq.2.50",
        "missing=eq.x",
        "owner=eq.null",
    ];
    let mut set = SubscriptionSet::new();
    let mut all = Vec::new();
    for (i, filter) in filters.iter().enumerate() {
        for event in ["*", "INSERT", "DELETE"] {
            let b = PostgresChanges::parse(event, "public", Some("todos"), Some(filter)).unwrap();
            let key = all.len();
            set.insert(key, b.clone());
            all.push((key, b));
        }
        // The same key on a second binding: reported once.
        if i % 5 == 0 {
            let b = PostgresChanges::parse("*", "public", Some("todos"), Some(filter)).unwrap();
            set.insert(all.len() - 1, b.clone());
            all.push((all.len() - 1, b));
        }
    }
    let owners = [
        json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        json!("A0EEBC99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        json!("b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        Value::Null,
    ];
    let titles = [json!("milk"), json!("Milk"), json!(" milk"), json!(7)];
    let mut checked = 0;
    for kind in [ChangeKind::Insert, ChangeKind::Update, ChangeKind::Delete] {
        for owner in &owners {
            for title in &titles {
                let mut r = row();
                r["owner"] = owner.clone();
                r["title"] = title.clone();
                let c = change(kind, r);
                let mut expected: Vec<usize> = Vec::new();
                for (key, b) in &all {
                    if b.matches(&c) && !expected.contains(key) {
                        expected.push(*key);
                    }
                }
                assert_eq!(set.matching(&c), expected, "{kind:?} {owner} {title}");
                checked += usize::from(!expected.is_empty());
            }
        }
    }
    assert!(checked > 10, "too few changes matched anything: {checked}");
    assert_eq!(set.len(), all.len());
    for key in 0..all.len() {
        set.remove(&key);
    }
    assert!(set.is_empty());
}
