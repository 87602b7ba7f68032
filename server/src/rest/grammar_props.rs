//! Property tests of PostgREST's query grammar and the request parser around it. The grammar has
//! no printer, so this file holds one: generated ASTs (select trees, filters, `or`/`and` trees,
//! order terms — names bare where they may be and quoted otherwise) render as PostgREST syntax
//! and must parse back to themselves, alone and through the whole request parser with
//! percent-encoded query strings. Token soup in the query, `Prefer`, `Accept`, `Content-Type` and
//! `Range` never panics, and every error is a 4xx in PostgREST's JSON shape.

use super::*;
use crate::rest::error::RestError;
use crate::rest::request::{self, ApiRequest};
use http::{HeaderMap, HeaderValue, Method};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;

// ---- the renderer ----

/// How names are written: bare where the grammar allows, or always double-quoted.
#[derive(Debug, Clone, Copy)]
struct Style {
    bare: bool,
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Names written bare: `[a-z_][a-z0-9_-]*`, not a keyword of the query string.
fn bare_ok(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && !matches!(
            s,
            "select" | "columns" | "on_conflict" | "order" | "limit" | "offset" | "or" | "and"
        )
}

impl Style {
    fn name(self, s: &str) -> String {
        if self.bare && bare_ok(s) {
            s.to_string()
        } else {
            quote(s)
        }
    }
    /// A value inside `in.(…)` or `{…}`: bare unless it holds a delimiter.
    fn item(self, s: &str) -> String {
        if self.bare && !s.is_empty() && !s.contains([',', ')', '}', '"', '\\']) {
            s.to_string()
        } else {
            quote(s)
        }
    }
    /// A value inside a logic tree: bare unless it holds a delimiter or a bracket.
    fn tree_value(self, s: &str) -> String {
        if self.bare && !s.contains([',', '(', ')', '{', '}', '"', '\\']) {
            s.to_string()
        } else {
            quote(s)
        }
    }
    fn field(self, f: &Field) -> String {
        let mut out = self.name(&f.name);
        for op in &f.json_path {
            let (arrow, key) = match op {
                JsonOp::Arrow(k) => ("->", k),
                JsonOp::Arrow2(k) => ("->>", k),
            };
            out.push_str(arrow);
            match key {
                JsonKey::Key(k) => out.push_str(&self.name(k)),
                JsonKey::Index(i) => out.push_str(&i.to_string()),
            }
        }
        out
    }
    fn select(self, items: &[SelectItem]) -> String {
        items
            .iter()
            .map(|i| self.select_item(i))
            .collect::<Vec<_>>()
            .join(",")
    }
    fn select_item(self, item: &SelectItem) -> String {
        match item {
            SelectItem::Star => "*".into(),
            SelectItem::Field {
                alias,
                field,
                cast,
                aggregate,
                aggregate_cast,
            } => {
                let mut out = alias
                    .as_ref()
                    .map_or(String::new(), |a| format!("{}:", self.name(a)));
                match field {
                    Some(f) => out.push_str(&self.field(f)),
                    None => out.push_str("count"),
                }
                if let Some(c) = cast {
                    out.push_str(&format!("::{c}"));
                }
                match (field, aggregate) {
                    (None, _) => out.push_str("()"),
                    (Some(_), Some(a)) => out.push_str(&format!(".{}()", a.name())),
                    (Some(_), None) => {}
                }
                if let Some(c) = aggregate_cast {
                    out.push_str(&format!("::{c}"));
                }
                out
            }
            SelectItem::Embed {
                alias,
                name,
                hint,
                join,
                spread,
                select,
            } => {
                let mut out = if *spread {
                    "...".to_string()
                } else {
                    alias
                        .as_ref()
                        .map_or(String::new(), |a| format!("{}:", self.name(a)))
                };
                out.push_str(&self.name(name));
                if let Some(h) = hint {
                    out.push_str(&format!("!{}", self.name(h)));
                }
                match join {
                    Some(JoinType::Inner) => out.push_str("!inner"),
                    Some(JoinType::Left) => out.push_str("!left"),
                    None => {}
                }
                format!("{out}({})", self.select(select))
            }
        }
    }
    fn operation(self, negated: bool, op: &Operation, in_tree: bool) -> String {
        let value = |v: &str| {
            if in_tree {
                self.tree_value(v)
            } else {
                v.to_string()
            }
        };
        let body = match op {
            Operation::Simple {
                op,
                quantifier,
                value: v,
            } => {
                let q = match quantifier {
                    Some(Quantifier::Any) => "(any)",
                    Some(Quantifier::All) => "(all)",
                    None => "",
                };
                format!("{}{q}.{}", simple_name(*op), value(v))
            }
            Operation::In(items) => {
                let items: Vec<String> = items.iter().map(|i| self.item(i)).collect();
                format!("in.({})", items.join(","))
            }
            Operation::Is(v) => format!(
                "is.{}",
                match v {
                    IsValue::Null => "null",
                    IsValue::NotNull => "not_null",
                    IsValue::True => "true",
                    IsValue::False => "false",
                    IsValue::Unknown => "unknown",
                }
            ),
            Operation::Fts {
                kind,
                config,
                value: v,
            } => {
                let kind = match kind {
                    FtsKind::Fts => "fts",
                    FtsKind::Plfts => "plfts",
                    FtsKind::Phfts => "phfts",
                    FtsKind::Wfts => "wfts",
                };
                let config = config.as_ref().map_or(String::new(), |c| format!("({c})"));
                format!("{kind}{config}.{}", value(v))
            }
        };
        if negated { format!("not.{body}") } else { body }
    }
    fn logic(self, tree: &LogicTree) -> String {
        match tree {
            LogicTree::Expr { children, .. } => {
                let items: Vec<String> = children.iter().map(|c| self.logic_item(c)).collect();
                format!("({})", items.join(","))
            }
            LogicTree::Filter(_) => unreachable!("a tree's root is an expression"),
        }
    }
    fn logic_item(self, tree: &LogicTree) -> String {
        match tree {
            LogicTree::Expr {
                negated,
                op,
                children: _,
            } => {
                let word = match op {
                    LogicOp::And => "and",
                    LogicOp::Or => "or",
                };
                let not = if *negated { "not." } else { "" };
                format!("{not}{word}{}", self.logic(tree))
            }
            LogicTree::Filter(f) => format!(
                "{}.{}",
                self.field(&f.field),
                self.operation(f.negated, &f.op, true)
            ),
        }
    }
    fn order(self, terms: &[OrderTerm]) -> String {
        let one = |t: &OrderTerm| {
            let mut out = match &t.relation {
                Some(r) => format!("{}({})", self.name(r), self.field(&t.field)),
                None => self.field(&t.field),
            };
            match t.direction {
                Some(Direction::Asc) => out.push_str(".asc"),
                Some(Direction::Desc) => out.push_str(".desc"),
                None => {}
            }
            match t.nulls {
                Some(Nulls::First) => out.push_str(".nullsfirst"),
                Some(Nulls::Last) => out.push_str(".nullslast"),
                None => {}
            }
            out
        };
        terms.iter().map(one).collect::<Vec<_>>().join(",")
    }
}

const SIMPLE_OPS: [(&str, SimpleOp); 19] = [
    ("eq", SimpleOp::Eq),
    ("neq", SimpleOp::Neq),
    ("gt", SimpleOp::Gt),
    ("gte", SimpleOp::Gte),
    ("lt", SimpleOp::Lt),
    ("lte", SimpleOp::Lte),
    ("like", SimpleOp::Like),
    ("ilike", SimpleOp::Ilike),
    ("match", SimpleOp::Match),
    ("imatch", SimpleOp::Imatch),
    ("isdistinct", SimpleOp::IsDistinct),
    ("cs", SimpleOp::Cs),
    ("cd", SimpleOp::Cd),
    ("ov", SimpleOp::Ov),
    ("sl", SimpleOp::Sl),
    ("sr", SimpleOp::Sr),
    ("nxl", SimpleOp::Nxl),
    ("nxr", SimpleOp::Nxr),
    ("adj", SimpleOp::Adj),
];

fn simple_name(op: SimpleOp) -> &'static str {
    SIMPLE_OPS
        .iter()
        .find(|(_, o)| *o == op)
        .map(|(n, _)| *n)
        .expect("every operator is listed")
}

// ---- generators ----

/// Names: mostly plain identifiers, sometimes anything printable (quoted when rendered).
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z_][a-z0-9_-]{0,7}",
        1 => "\\PC{0,6}",
        1 => "[ -~]{0,6}",
    ]
}

fn json_key() -> impl Strategy<Value = JsonKey> {
    prop_oneof![
        3 => name()
            .prop_filter("a key that reads as a number is an index", |k| k.parse::<i64>().is_err())
            .prop_map(JsonKey::Key),
        1 => (-5i64..100).prop_map(JsonKey::Index),
    ]
}

fn field() -> impl Strategy<Value = Field> {
    let op = (any::<bool>(), json_key()).prop_map(|(two, k)| {
        if two {
            JsonOp::Arrow2(k)
        } else {
            JsonOp::Arrow(k)
        }
    });
    (name(), prop::collection::vec(op, 0..3))
        .prop_map(|(name, json_path)| Field { name, json_path })
}

fn cast() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,6}(\\[\\]){0,2}"
}

fn aggregate() -> impl Strategy<Value = Aggregate> {
    prop::sample::select(vec![
        Aggregate::Count,
        Aggregate::Sum,
        Aggregate::Avg,
        Aggregate::Min,
        Aggregate::Max,
    ])
}

fn select_field() -> impl Strategy<Value = SelectItem> {
    let column = (
        prop::option::of(name()),
        field(),
        prop::option::of(cast()),
        prop::option::of((aggregate(), prop::option::of(cast()))),
    )
        .prop_map(|(alias, field, cast, agg)| {
            let (aggregate, aggregate_cast) = match agg {
                Some((a, c)) => (Some(a), c),
                None => (None, None),
            };
            SelectItem::Field {
                alias,
                field: Some(field),
                cast,
                aggregate,
                aggregate_cast,
            }
        });
    let count = (prop::option::of(name()), prop::option::of(cast())).prop_map(|(alias, c)| {
        SelectItem::Field {
            alias,
            field: None,
            cast: None,
            aggregate: Some(Aggregate::Count),
            aggregate_cast: c,
        }
    });
    prop_oneof![1 => Just(SelectItem::Star), 6 => column, 1 => count]
}

fn select() -> impl Strategy<Value = Vec<SelectItem>> {
    let leaf = select_field();
    let tree = leaf.prop_recursive(3, 24, 4, |inner| {
        let embed_name = name().prop_filter("`count()` is the aggregate", |n| n != "count");
        let hint = name().prop_filter("join words are not hints", |h| h != "inner" && h != "left");
        let join = prop::option::of(prop::sample::select(vec![JoinType::Inner, JoinType::Left]));
        (
            prop::option::of(name()),
            embed_name,
            prop::option::of(hint),
            join,
            any::<bool>(),
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(
                |(alias, name, hint, join, spread, select)| SelectItem::Embed {
                    alias: if spread { None } else { alias },
                    name,
                    hint,
                    join,
                    spread,
                    select,
                },
            )
    });
    prop::collection::vec(tree, 1..5)
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9 %._-]{0,8}",
        1 => "\\PC{0,8}",
        1 => "[ -~]{0,8}",
    ]
}

fn operation() -> impl Strategy<Value = Operation> {
    let simple = (
        prop::sample::select(SIMPLE_OPS.to_vec()),
        prop::option::of(prop::sample::select(vec![Quantifier::Any, Quantifier::All])),
        value(),
    )
        .prop_map(|((_, op), quantifier, value)| Operation::Simple {
            op,
            quantifier: quantifier.filter(|_| op.quantifiable()),
            value,
        });
    let is = prop::sample::select(vec![
        IsValue::Null,
        IsValue::NotNull,
        IsValue::True,
        IsValue::False,
        IsValue::Unknown,
    ])
    .prop_map(Operation::Is);
    let fts = (
        prop::sample::select(vec![
            FtsKind::Fts,
            FtsKind::Plfts,
            FtsKind::Phfts,
            FtsKind::Wfts,
        ]),
        prop::option::of("[a-z_0-9]{1,8}"),
        value(),
    )
        .prop_map(|(kind, config, value)| Operation::Fts {
            kind,
            config,
            value,
        });
    prop_oneof![
        4 => simple,
        2 => prop::collection::vec(value(), 0..4).prop_map(Operation::In),
        1 => is,
        1 => fts,
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    (field(), any::<bool>(), operation()).prop_map(|(field, negated, op)| Filter {
        field,
        negated,
        op,
    })
}

/// `[not.]and(…)` / `[not.]or(…)` over 1 to 3 of `children`.
fn expr(children: impl Strategy<Value = LogicTree>) -> impl Strategy<Value = LogicTree> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(children, 1..4),
    )
        .prop_map(|(negated, or, children)| LogicTree::Expr {
            negated,
            op: if or { LogicOp::Or } else { LogicOp::And },
            children,
        })
}

fn logic() -> impl Strategy<Value = LogicTree> {
    let leaf = filter().prop_map(LogicTree::Filter);
    expr(leaf.prop_recursive(4, 24, 4, expr))
}

fn order() -> impl Strategy<Value = Vec<OrderTerm>> {
    let term = (
        prop::option::of(name()),
        field(),
        prop::option::of(prop::sample::select(vec![Direction::Asc, Direction::Desc])),
        prop::option::of(prop::sample::select(vec![Nulls::First, Nulls::Last])),
    )
        .prop_map(|(relation, field, direction, nulls)| OrderTerm {
            relation,
            field,
            direction,
            nulls,
        });
    prop::collection::vec(term, 1..4)
}

fn style() -> impl Strategy<Value = Style> {
    any::<bool>().prop_map(|bare| Style { bare })
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn get(query: &str, headers: &HeaderMap) -> Result<ApiRequest, RestError> {
    request::parse(&Method::GET, "/t", Some(query), headers).map_err(RestError::from)
}

/// A request error is a 4xx with PostgREST's body (`code`, `message`, `details`, `hint`).
fn assert_client_error(e: &RestError) {
    let status = e.status();
    assert!((400..500).contains(&status), "{status} for {e:?}");
    let body = e.body();
    assert!(
        body["code"]
            .as_str()
            .is_some_and(|c| c.starts_with("PGRST")),
        "{body}"
    );
    assert!(body["message"].is_string(), "{body}");
}

// ---- token soup: strings near the grammar, so the parser goes deep before failing ----

const TOKENS: &[&str] = &[
    "a",
    "b",
    "col",
    "rel",
    "count",
    "not",
    "and",
    "or",
    "*",
    "...",
    ",",
    ".",
    ":",
    "::",
    "(",
    ")",
    "()",
    "!",
    "!inner",
    "!left",
    "\"",
    "\\",
    "->",
    "->>",
    "-",
    ">",
    "{",
    "}",
    "eq.",
    "in.",
    "is.",
    "fts",
    "(any)",
    "(all)",
    "not.",
    "and(",
    "or(",
    "asc",
    "desc",
    "nullsfirst",
    "sum()",
    ".count()",
    "int",
    "[]",
    " ",
    "1",
    "-1",
    "é",
    "\u{1F600}",
    "\u{0}",
    "%",
    "null",
];

fn soup(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..max).prop_map(|t| t.concat())
}

const QUERY_TOKENS: &[&str] = &[
    "select=",
    "order=",
    "or=",
    "and=",
    "not.or=",
    "a.or=",
    "limit=",
    "offset=",
    "columns=",
    "on_conflict=",
    "col=",
    "rel.col=",
    "a->b=",
    "&",
    "=",
    "%",
    "%2",
    "%22",
    "%28",
    "%29",
    "%00",
    "%FF",
    "+",
    "eq.",
    "in.(",
    "is.null",
    ")",
    "(",
    ",",
    "\"",
    "1",
    "-1",
    "99999999999999999999",
    "*",
    "rel(*)",
    "not.",
    "cs.{",
    "}",
    "fts(english).",
    "é",
];

fn query_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(QUERY_TOKENS), 0..24).prop_map(|t| t.concat())
}

const HEADER_TOKENS: &[&str] = &[
    "return=",
    "minimal",
    "representation",
    "headers-only",
    "count=",
    "exact",
    "planned",
    "resolution=",
    "merge-duplicates",
    "missing=default",
    "tx=",
    "commit",
    "rollback",
    "handling=strict",
    "handling=lenient",
    "max-affected=",
    "-1",
    "5",
    "timezone=",
    "UTC",
    "params=single-object",
    ",",
    ";",
    "=",
    " ",
    "application/json",
    "text/csv",
    "*/*",
    "application/vnd.pgrst.object+json",
    "application/vnd.pgrst.plan",
    "+json",
    "+text",
    "for=",
    "\"",
    "options=",
    "analyze|verbose",
    "nulls=stripped",
    "items=",
    "0",
    "-",
    "10",
    "text/plain",
    "application/x-www-form-urlencoded",
    "bogus/type",
    "99999999999999999999",
];

fn header_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(HEADER_TOKENS), 0..10).prop_map(|t| t.concat())
}

/// Found by `requests_render_and_parse_back`: an escaped quote inside a quoted name ended the
/// quoting for the key splitter, so a dot after it split the key (`"\""->"."=eq.` failed).
#[test]
fn split_key_honours_escaped_quotes() {
    assert_eq!(split_key(r#""\""->".""#), vec![r#""\""->".""#.to_string()]);
    assert_eq!(
        split_key(r#"rel."a\".b".c"#),
        vec!["rel".to_string(), r#""a\".b""#.to_string(), "c".to_string()]
    );
    let req = get(&format!("{}=eq.1", enc(r#""\""->".""#)), &HeaderMap::new()).unwrap();
    let field = Field {
        name: "\"".into(),
        json_path: vec![JsonOp::Arrow(JsonKey::Key(".".into()))],
    };
    assert_eq!(req.filters[0].1.field, field);
}

proptest! {
    #![proptest_config(crate::props::budget(512))]

    #[test]
    fn select_renders_and_parses_back(items in select(), style in style()) {
        let text = style.select(&items);
        prop_assert_eq!(parse_select(&text), Ok(items), "{}", text);
    }

    #[test]
    fn filters_render_and_parse_back(f in filter(), style in style()) {
        let key = style.field(&f.field);
        let parsed = parse_field(&key);
        prop_assert_eq!(parsed.as_ref(), Ok(&f.field), "{}", key);
        let value = style.operation(f.negated, &f.op, false);
        prop_assert_eq!(parse_filter(f.field.clone(), &value), Ok(f), "{}", value);
    }

    #[test]
    fn logic_trees_render_and_parse_back(tree in logic(), style in style()) {
        let LogicTree::Expr { negated, op, .. } = &tree else { unreachable!() };
        let text = style.logic(&tree);
        prop_assert_eq!(parse_logic(*op, *negated, &text), Ok(tree.clone()), "{}", text);
    }

    #[test]
    fn order_renders_and_parses_back(terms in order(), style in style()) {
        let text = style.order(&terms);
        prop_assert_eq!(parse_order(&text), Ok(terms), "{}", text);
    }

    #[test]
    fn brace_lists_render_and_parse_back(items in prop::collection::vec(value(), 0..5), style in style()) {
        let rendered: Vec<String> = items.iter().map(|i| style.item(i)).collect();
        let text = format!("{{{}}}", rendered.join(","));
        prop_assert_eq!(parse_brace_list(&text), Ok(items), "{}", text);
    }

    /// The whole request: percent-encoded, through the query-string splitter and the parser.
    #[test]
    fn requests_render_and_parse_back(
        items in select(),
        f in filter(),
        tree in logic(),
        terms in order(),
        limit in 0i64..1_000_000,
        offset in 0i64..1_000_000,
        style in style(),
    ) {
        let LogicTree::Expr { op, negated, .. } = &tree else { unreachable!() };
        let logic_key = match (op, negated) {
            (LogicOp::Or, false) => "or",
            (LogicOp::Or, true) => "not.or",
            (LogicOp::And, false) => "and",
            (LogicOp::And, true) => "not.and",
        };
        // A filter key is the field, quoted where a dot or a keyword would mislead the splitter.
        let key = if f.field.name.contains('.') || !bare_ok(&f.field.name) {
            Style { bare: false }.field(&f.field)
        } else {
            style.field(&f.field)
        };
        let query = [
            ("select".to_string(), style.select(&items)),
            (key.clone(), style.operation(f.negated, &f.op, false)),
            (logic_key.to_string(), style.logic(&tree)),
            ("order".to_string(), style.order(&terms)),
            ("limit".to_string(), limit.to_string()),
            ("offset".to_string(), offset.to_string()),
        ]
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
        let req = get(&query, &HeaderMap::new());
        let req = match req {
            Ok(r) => r,
            Err(e) => return Err(TestCaseError::fail(format!("{query}: {e:?}"))),
        };
        prop_assert_eq!(req.select, Some(items));
        prop_assert_eq!(req.filters, vec![(Vec::new(), f)]);
        prop_assert_eq!(req.logic, vec![(Vec::new(), tree)]);
        prop_assert_eq!(req.order, vec![(Vec::new(), terms)]);
        let paging = req.paging.get(&Vec::new()).cloned().unwrap_or_default();
        prop_assert_eq!((paging.limit, paging.offset), (Some(limit), Some(offset)));
    }

    #[test]
    fn the_grammar_never_panics_on_token_soup(s in soup(30)) {
        let _ = parse_select(&s);
        let _ = parse_order(&s);
        let _ = parse_field(&s);
        let _ = parse_brace_list(&s);
        let _ = parse_logic(LogicOp::Or, false, &s);
        let _ = parse_logic(LogicOp::And, true, &format!("({s})"));
        let _ = parse_filter(Field::col("c"), &s);
        let _ = split_key(&s);
    }

    /// Garbage in the query and the headers: never a panic, and a refusal is a 4xx.
    #[test]
    fn request_garbage_is_a_client_error(
        query in query_soup(),
        prefer in header_soup(),
        accept in header_soup(),
        content_type in header_soup(),
        range in header_soup(),
        path in prop::sample::select(vec!["/t", "/rpc/f", "/", "/rpc", "/a/b/c", "/t/", "/%FF"]),
        method in prop::sample::select(vec![
            Method::GET, Method::HEAD, Method::POST, Method::PATCH, Method::PUT,
            Method::DELETE, Method::OPTIONS, Method::TRACE,
        ]),
    ) {
        let mut headers = HeaderMap::new();
        for (name, v) in [
            ("prefer", &prefer),
            ("accept", &accept),
            ("content-type", &content_type),
            ("range", &range),
        ] {
            if let Ok(v) = HeaderValue::from_str(v) {
                headers.insert(name, v);
            }
        }
        if let Err(e) = request::parse(&method, path, Some(&query), &headers) {
            assert_client_error(&RestError::from(e));
        }
    }
}
