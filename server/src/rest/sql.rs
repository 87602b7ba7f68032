//! Turns a [`Plan`] into one SQL statement plus its bind parameters. Pure. Every value from the
//! request is a parameter (sent as text of unknown type, so PostgreSQL types it from context, as
//! for a literal); identifiers come from the schema cache and are always quoted; the only other
//! text is what the grammar restricted to `[A-Za-z0-9_]` (cast names) and catalog SQL (defaults).
//!
//! The statement returns one row: `total` (bigint, null unless counted), `page_total`,
//! `body` (text, built by PostgreSQL), `location` (JSON of the first row's key, or null),
//! `response_headers`, `response_status` (the `response.*` settings a function may have set).

use super::grammar::{
    Direction, FtsKind, IsValue, JsonKey, JsonOp, LogicOp, Nulls, Operation, Quantifier, SimpleOp,
    parse_brace_list,
};
use super::plan::{
    CallArgs, CallPlan, CallShape, ColExpr, Cond, Embed, InsertColumn, JoinCond, MutatePlan,
    Mutation, OrderBy, OrderExpr, Output, Plan, PlanKind, ReadNode, Source,
};
use super::request::{MediaType, Resolution};
use super::schema::QualifiedName;

/// A statement and its parameters (all text; `$n` is typed by context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<String>,
    /// For planned counts: `EXPLAIN (FORMAT JSON)` of the unpaged read, with its own parameters.
    pub explain: Option<(String, Vec<String>)>,
    /// `count=estimated`: an exact count above this (or any, when `None`) gives way to a larger
    /// estimate.
    pub estimate_above: Option<i64>,
}

/// A value could not become SQL (e.g. a malformed `{…}` list for `(any)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError(pub String);

pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn qualified(q: &QualifiedName) -> String {
    format!("{}.{}", ident(&q.schema), ident(&q.name))
}

/// Options that shape the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyOptions {
    pub strip_nulls: bool,
    /// `Accept: text/csv` (set by [`build`] from the plan's media type).
    pub csv: bool,
    /// `Accept: application/geo+json` (set by [`build`]).
    pub geojson: bool,
}

struct Builder {
    params: Vec<String>,
}

const TAIL: &str = "nullif(current_setting('response.headers', true), '') AS response_headers, nullif(current_setting('response.status', true), '') AS response_status";

impl Builder {
    fn param(&mut self, v: impl Into<String>) -> String {
        self.params.push(v.into());
        format!("${}", self.params.len())
    }

    fn col(&mut self, c: &ColExpr) -> String {
        let mut s = match &c.computed {
            Some((f, rowtype)) => format!(
                "{}({}::{})",
                qualified(f),
                ident(&c.table_alias),
                qualified(rowtype)
            ),
            None => format!("{}.{}", ident(&c.table_alias), ident(&c.column)),
        };
        for op in &c.json_path {
            let (arrow, key) = match op {
                JsonOp::Arrow(k) => ("->", k),
                JsonOp::Arrow2(k) => ("->>", k),
            };
            let k = match key {
                JsonKey::Key(k) => format!("{}::text", self.param(k.clone())),
                JsonKey::Index(i) => format!("{}::int", self.param(i.to_string())),
            };
            s = format!("{s}{arrow}{k}");
        }
        s
    }

    fn output(&mut self, node: &ReadNode, o: &Output) -> Vec<String> {
        match o {
            Output::Column {
                expr,
                cast,
                aggregate,
                aggregate_cast,
                name,
            } => {
                let mut e = self.col(expr);
                if let Some(c) = cast {
                    e = format!("({e})::{c}");
                }
                if let Some(a) = aggregate {
                    e = format!("pg_catalog.{}({e})", a.name());
                    if let Some(c) = aggregate_cast {
                        e = format!("({e})::{c}");
                    }
                }
                vec![format!("{e} AS {}", ident(name))]
            }
            Output::CountAll { cast, name } => {
                let e = match cast {
                    Some(c) => format!("(pg_catalog.count(*))::{c}"),
                    None => "pg_catalog.count(*)".into(),
                };
                vec![format!("{e} AS {}", ident(name))]
            }
            Output::Computed {
                function,
                rowtype,
                table_alias,
                name,
            } => vec![format!(
                "{}({}::{}) AS {}",
                qualified(function),
                ident(table_alias),
                qualified(rowtype),
                ident(name)
            )],
            Output::Embed(i) => {
                let e = &node.embeds[*i];
                let j = ident(&e.lateral);
                if e.hidden {
                    Vec::new()
                } else if e.spread {
                    e.spread_names
                        .iter()
                        .map(|n| format!("{j}.{}", ident(n)))
                        .map(|c| {
                            format!("{c} AS {}", c.rsplit_once('.').map_or(c.as_str(), |x| x.1))
                        })
                        .collect()
                } else if node.grouped {
                    // Grouped rows group by the embed's text (json has no equality).
                    let empty = if e.to_one { "" } else { ", '[]'" };
                    vec![format!(
                        "coalesce({j}.\"pgrst_v\"::text{empty})::json AS {}",
                        ident(&e.name)
                    )]
                } else if e.to_one {
                    vec![format!("{j}.\"pgrst_v\" AS {}", ident(&e.name))]
                } else {
                    vec![format!(
                        "coalesce({j}.\"pgrst_v\", '[]'::json) AS {}",
                        ident(&e.name)
                    )]
                }
            }
        }
    }

    fn cond(&mut self, node: &ReadNode, c: &Cond) -> Result<String, SqlError> {
        Ok(match c {
            Cond::Filter { expr, negated, op } => {
                let e = self.col(expr);
                let s = self.operation(&e, op)?;
                if *negated { format!("NOT ({s})") } else { s }
            }
            Cond::Logic {
                negated,
                op,
                children,
            } => {
                let parts = children
                    .iter()
                    .map(|ch| self.cond(node, ch))
                    .collect::<Result<Vec<_>, _>>()?;
                let joined = parts.join(match op {
                    LogicOp::And => " AND ",
                    LogicOp::Or => " OR ",
                });
                let s = format!("({joined})");
                if *negated { format!("NOT {s}") } else { s }
            }
            Cond::EmbedNull { embed, is_null } => {
                let e = &node.embeds[*embed];
                let col = if e.spread {
                    "\"pgrst_found\""
                } else {
                    "\"pgrst_v\""
                };
                format!(
                    "{}.{col} IS {}NULL",
                    ident(&e.lateral),
                    if *is_null { "" } else { "NOT " }
                )
            }
        })
    }

    fn operation(&mut self, e: &str, op: &Operation) -> Result<String, SqlError> {
        Ok(match op {
            Operation::Simple {
                op,
                quantifier,
                value,
            } => {
                let sym = match op {
                    SimpleOp::Eq => "=",
                    SimpleOp::Neq => "<>",
                    SimpleOp::Gt => ">",
                    SimpleOp::Gte => ">=",
                    SimpleOp::Lt => "<",
                    SimpleOp::Lte => "<=",
                    SimpleOp::Like => "LIKE",
                    SimpleOp::Ilike => "ILIKE",
                    SimpleOp::Match => "~",
                    SimpleOp::Imatch => "~*",
                    SimpleOp::IsDistinct => "IS DISTINCT FROM",
                    SimpleOp::Cs => "@>",
                    SimpleOp::Cd => "<@",
                    SimpleOp::Ov => "&&",
                    SimpleOp::Sl => "<<",
                    SimpleOp::Sr => ">>",
                    SimpleOp::Nxl => "&>",
                    SimpleOp::Nxr => "&<",
                    SimpleOp::Adj => "-|-",
                };
                let like = matches!(op, SimpleOp::Like | SimpleOp::Ilike);
                let fix = |v: &str| {
                    if like {
                        v.replace('*', "%")
                    } else {
                        v.to_string()
                    }
                };
                match quantifier {
                    None => format!("{e} {sym} {}", self.param(fix(value))),
                    Some(q) => {
                        let items = parse_brace_list(value).map_err(SqlError)?;
                        let lit = array_literal(items.iter().map(|v| fix(v)));
                        let q = if *q == Quantifier::Any { "ANY" } else { "ALL" };
                        format!("{e} {sym} {q}({})", self.param(lit))
                    }
                }
            }
            Operation::In(items) => {
                if items.is_empty() {
                    "false".into()
                } else {
                    let ps: Vec<String> = items.iter().map(|v| self.param(v.clone())).collect();
                    format!("{e} IN ({})", ps.join(", "))
                }
            }
            Operation::Is(v) => format!(
                "{e} IS {}",
                match v {
                    IsValue::Null => "NULL",
                    IsValue::NotNull => "NOT NULL",
                    IsValue::True => "TRUE",
                    IsValue::False => "FALSE",
                    IsValue::Unknown => "UNKNOWN",
                }
            ),
            Operation::Fts {
                kind,
                config,
                value,
            } => {
                let f = match kind {
                    FtsKind::Fts => "to_tsquery",
                    FtsKind::Plfts => "plainto_tsquery",
                    FtsKind::Phfts => "phraseto_tsquery",
                    FtsKind::Wfts => "websearch_to_tsquery",
                };
                let v = self.param(value.clone());
                match config {
                    Some(c) => {
                        let c = self.param(c.clone());
                        format!("{e} @@ pg_catalog.{f}({c}::regconfig, {v}::text)")
                    }
                    None => format!("{e} @@ pg_catalog.{f}({v}::text)"),
                }
            }
        })
    }

    fn source(&self, node: &ReadNode) -> String {
        match &node.source {
            Source::Relation(q) => format!("{} AS {}", qualified(q), ident(&node.alias)),
            Source::Cte => format!("pgrst_source AS {}", ident(&node.alias)),
            Source::Function {
                function,
                arg_alias,
                ..
            } => format!(
                "{}({}) AS {}",
                qualified(function),
                ident(arg_alias),
                ident(&node.alias)
            ),
        }
    }

    /// `SELECT … FROM … WHERE …` of a node; `extra` holds join conditions from the parent.
    fn node(
        &mut self,
        node: &ReadNode,
        extra_from: &str,
        extra_where: Vec<String>,
        for_count: bool,
    ) -> Result<String, SqlError> {
        let mut cols = Vec::new();
        // GROUP BY keys: select-list positions of plain outputs, text of embeds.
        let mut group_keys = Vec::new();
        for o in &node.outputs {
            let items = self.output(node, o);
            match o {
                Output::Column {
                    aggregate: None, ..
                }
                | Output::Computed { .. } => {
                    group_keys
                        .extend((cols.len() + 1..=cols.len() + items.len()).map(|n| n.to_string()));
                }
                Output::Embed(i) if !node.embeds[*i].hidden => {
                    let e = &node.embeds[*i];
                    if e.spread {
                        group_keys.extend(
                            (cols.len() + 1..=cols.len() + items.len()).map(|n| n.to_string()),
                        );
                    } else {
                        group_keys.push(format!("{}.\"pgrst_v\"::text", ident(&e.lateral)));
                    }
                }
                _ => {}
            }
            cols.extend(items);
        }
        let mut from = format!("{}{extra_from}", self.source(node));
        for e in &node.embeds {
            from.push_str(&format!(
                " LEFT JOIN LATERAL ({}) AS {} ON TRUE",
                self.lateral(e)?,
                ident(&e.lateral)
            ));
        }
        let mut wheres = extra_where;
        for c in &node.conds {
            wheres.push(self.cond(node, c)?);
        }
        for e in node.embeds.iter().filter(|e| e.inner) {
            let col = if e.spread {
                "\"pgrst_found\""
            } else {
                "\"pgrst_v\""
            };
            wheres.push(format!("{}.{col} IS NOT NULL", ident(&e.lateral)));
        }
        let select_list = if for_count {
            "1".to_string()
        } else if cols.is_empty() {
            String::new()
        } else {
            cols.join(", ")
        };
        let mut sql = format!("SELECT {select_list} FROM {from}");
        if !wheres.is_empty() {
            sql.push_str(&format!(" WHERE {}", wheres.join(" AND ")));
        }
        if node.grouped && !for_count && !group_keys.is_empty() {
            sql.push_str(&format!(" GROUP BY {}", group_keys.join(", ")));
        }
        if for_count {
            return Ok(sql);
        }
        if !node.order.is_empty() {
            let mut terms = Vec::new();
            for o in &node.order {
                let e = match &o.expr {
                    OrderExpr::Column(c) => self.col(c),
                    OrderExpr::Related {
                        relation,
                        alias,
                        pairs,
                        parent_alias,
                        expr,
                    } => {
                        let conds: Vec<String> = pairs
                            .iter()
                            .map(|(c, p)| {
                                format!(
                                    "{}.{} = {}.{}",
                                    ident(alias),
                                    ident(c),
                                    ident(parent_alias),
                                    ident(p)
                                )
                            })
                            .collect();
                        format!(
                            "(SELECT {} FROM {} AS {} WHERE {})",
                            self.col(expr),
                            qualified(relation),
                            ident(alias),
                            conds.join(" AND ")
                        )
                    }
                };
                terms.push(format!("{e}{}", order_modifiers(o)));
            }
            sql.push_str(&format!(" ORDER BY {}", terms.join(", ")));
        }
        if let Some(l) = node.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        if let Some(o) = node.offset {
            sql.push_str(&format!(" OFFSET {o}"));
        }
        Ok(sql)
    }

    /// The lateral subquery producing an embed's value as `pgrst_v` (or its spread columns).
    fn lateral(&mut self, e: &Embed) -> Result<String, SqlError> {
        let child = ident(&e.node.alias);
        let parent = ident(&e.parent_alias);
        let (extra_from, conds) = match &e.join {
            JoinCond::Direct(pairs) => (
                String::new(),
                pairs
                    .iter()
                    .map(|(c, p)| format!("{child}.{} = {parent}.{}", ident(c), ident(p)))
                    .collect(),
            ),
            JoinCond::Junction {
                table,
                alias,
                child: cp,
                parent: pp,
            } => {
                let a = ident(alias);
                let on: Vec<String> = cp
                    .iter()
                    .map(|(j, c)| format!("{a}.{} = {child}.{}", ident(j), ident(c)))
                    .collect();
                let wh: Vec<String> = pp
                    .iter()
                    .map(|(j, p)| format!("{a}.{} = {parent}.{}", ident(j), ident(p)))
                    .collect();
                (
                    format!(" JOIN {} AS {a} ON {}", qualified(table), on.join(" AND ")),
                    wh,
                )
            }
        };
        let inner = self.node(&e.node, &extra_from, conds, false)?;
        Ok(if e.spread && !e.to_one {
            // Spreading a to-many relationship: each column becomes an array of its values.
            let mut cols: Vec<String> = e
                .spread_names
                .iter()
                .map(|n| {
                    format!(
                        "coalesce(json_agg(pgrst_e.{0}), '[]'::json) AS {0}",
                        ident(n)
                    )
                })
                .collect();
            cols.push("CASE WHEN pg_catalog.count(*) > 0 THEN true END AS \"pgrst_found\"".into());
            format!("SELECT {} FROM ({inner}) AS pgrst_e", cols.join(", "))
        } else if e.spread {
            format!("SELECT pgrst_e.*, true AS \"pgrst_found\" FROM ({inner}) AS pgrst_e")
        } else if e.to_one {
            format!("SELECT row_to_json(pgrst_e) AS \"pgrst_v\" FROM ({inner}) AS pgrst_e")
        } else {
            format!("SELECT json_agg(pgrst_e) AS \"pgrst_v\" FROM ({inner}) AS pgrst_e")
        })
    }
}

/// A PostgreSQL array literal of text items, every item double-quoted.
fn array_literal(items: impl Iterator<Item = String>) -> String {
    let quoted: Vec<String> = items
        .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// The body, aggregated over the rows `_pgrst_t`: JSON, or CSV as PostgREST writes it (a header
/// line of the first row's keys, then each row's record text without its parentheses, so values
/// are quoted as PostgreSQL quotes record fields).
fn body_expr(single: bool, opts: BodyOptions) -> String {
    if opts.csv {
        return "coalesce((SELECT pg_catalog.string_agg(k, ',') FROM pg_catalog.json_object_keys(pg_catalog.json_agg(_pgrst_t) -> 0) AS k), '') || pg_catalog.chr(10) || coalesce(pg_catalog.string_agg(substring(_pgrst_t::text, 2, length(_pgrst_t::text) - 2), pg_catalog.chr(10)), '')".into();
    }
    if opts.geojson {
        // PostgREST's FeatureCollection: each row a Feature (its first geometry column the
        // geometry, the others its properties), by PostGIS's own function on the search_path.
        return "pg_catalog.json_build_object('type', 'FeatureCollection', 'features', coalesce(pg_catalog.json_agg(st_asgeojson(_pgrst_t)::json), '[]'))::text".into();
    }
    let agg = if opts.strip_nulls {
        "json_agg(json_strip_nulls(row_to_json(_pgrst_t)))"
    } else {
        "json_agg(_pgrst_t)"
    };
    if single {
        format!("coalesce(({agg}->0)::text, 'null')")
    } else {
        format!("coalesce({agg}, '[]')::text")
    }
}

/// Builds the statement for a plan.
pub fn build(plan: &Plan, opts: BodyOptions) -> Result<Statement, SqlError> {
    let opts = BodyOptions {
        csv: plan.media == MediaType::Csv,
        geojson: plan.media == MediaType::GeoJson,
        ..opts
    };
    let mut b = Builder { params: Vec::new() };
    let single = plan.media == MediaType::SingleObject;
    let sql = match &plan.kind {
        PlanKind::Read(node) => {
            let main = b.node(node, "", Vec::new(), false)?;
            let total = if plan.count {
                let all = b.node(node, "", Vec::new(), true)?;
                match plan.estimated {
                    // Counting stops one row past the cap: past it, the estimate is taken.
                    Some(Some(cap)) => format!(
                        "(SELECT pg_catalog.count(*) FROM (SELECT 1 FROM ({all}) AS _pgrst_i LIMIT {}) AS _pgrst_c)",
                        cap.saturating_add(1)
                    ),
                    _ => format!("(SELECT pg_catalog.count(*) FROM ({all}) AS _pgrst_c)"),
                }
            } else {
                "NULL::bigint".into()
            };
            format!(
                "WITH pgrst_source AS ({main}) SELECT {total} AS total, pg_catalog.count(_pgrst_t) AS page_total, {} AS body, NULL::text AS location, {TAIL} FROM (SELECT * FROM pgrst_source) AS _pgrst_t",
                body_expr(single, opts)
            )
        }
        PlanKind::Mutate(m) => mutation(&mut b, m, plan.count, single, opts)?,
        PlanKind::Call(c) => call(&mut b, c, plan.count, single, opts)?,
    };
    let explain = match (&plan.kind, plan.planned_count) {
        (PlanKind::Read(node), true) => {
            let mut e = Builder { params: Vec::new() };
            let q = e.node(node, "", Vec::new(), true)?;
            Some((format!("EXPLAIN (FORMAT JSON) {q}"), e.params))
        }
        _ => None,
    };
    Ok(Statement {
        sql,
        params: b.params,
        explain,
        estimate_above: plan.estimated.flatten(),
    })
}

fn mutation(
    b: &mut Builder,
    m: &MutatePlan,
    count: bool,
    single: bool,
    opts: BodyOptions,
) -> Result<String, SqlError> {
    let target = qualified(&m.target);
    let returning = if m.returning {
        "RETURNING \"t0\".*"
    } else {
        "RETURNING 1"
    };
    let cte = match &m.mutation {
        Mutation::Insert {
            columns,
            on_conflict,
            update_columns,
        } => {
            let payload = b.param(m.payload.clone());
            let names: Vec<String> = columns
                .iter()
                .map(|c| match c {
                    InsertColumn::Payload(n) | InsertColumn::OrDefault { name: n, .. } => ident(n),
                })
                .collect();
            let missing_default = columns
                .iter()
                .any(|c| matches!(c, InsertColumn::OrDefault { .. }));
            let select = if columns.is_empty() {
                format!("SELECT FROM pg_catalog.json_array_elements({payload}::json)")
            } else if missing_default {
                // Each row's defaults are evaluated whether or not the row gives the column, as
                // PostgREST does (`defaults || row`): sequences advance the same way.
                let mut exprs = Vec::new();
                let mut defaults = Vec::new();
                for c in columns {
                    if let InsertColumn::OrDefault { name, default } = c {
                        let key = b.param(name.clone());
                        let dflt = match default {
                            Some(d) => {
                                defaults.push(format!("{d} AS d{}", defaults.len()));
                                format!("pgrst_defs.d{}", defaults.len() - 1)
                            }
                            None => "NULL".into(),
                        };
                        exprs.push(format!("CASE WHEN pgrst_row.j ? {key}::text THEN pgrst_body.{} ELSE {dflt} END", ident(name)));
                    }
                }
                let defs = if defaults.is_empty() {
                    String::new()
                } else {
                    // The condition ties the subquery to its row, so it runs once per row.
                    format!(
                        ", LATERAL (SELECT {} WHERE pgrst_row.j IS NOT NULL) AS pgrst_defs",
                        defaults.join(", ")
                    )
                };
                format!(
                    "SELECT {} FROM pg_catalog.jsonb_array_elements({payload}::jsonb) AS pgrst_row(j){defs}, LATERAL pg_catalog.jsonb_populate_record(NULL::{target}, pgrst_row.j) AS pgrst_body",
                    exprs.join(", ")
                )
            } else {
                let cols: Vec<String> = names.iter().map(|n| format!("pgrst_body.{n}")).collect();
                format!(
                    "SELECT {} FROM pg_catalog.json_populate_recordset(NULL::{target}, {payload}::json) AS pgrst_body",
                    cols.join(", ")
                )
            };
            let cols = if names.is_empty() {
                String::new()
            } else {
                format!(" ({})", names.join(", "))
            };
            // A merging upsert counts its rows in `pgrst.inserted` as PostgREST does: +1 for each
            // row offered, -1 for each that updated instead; the answer is 201 only if some row
            // was inserted.
            let counted = matches!(on_conflict, Some((_, Resolution::MergeDuplicates)))
                && !update_columns.is_empty();
            let select = if counted {
                format!("{select} WHERE {} <> '0'", count_inserted("+"))
            } else {
                select
            };
            let conflict = match on_conflict {
                None => String::new(),
                Some((keys, res)) => {
                    let keys: Vec<String> = keys.iter().map(|k| ident(k)).collect();
                    if *res == Resolution::IgnoreDuplicates || update_columns.is_empty() {
                        format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", "))
                    } else {
                        let sets: Vec<String> = update_columns
                            .iter()
                            .map(|c| format!("{} = EXCLUDED.{}", ident(c), ident(c)))
                            .collect();
                        format!(
                            " ON CONFLICT ({}) DO UPDATE SET {} WHERE {} <> '-1'",
                            keys.join(", "),
                            sets.join(", "),
                            count_inserted("-")
                        )
                    }
                }
            };
            format!("INSERT INTO {target} AS \"t0\"{cols} {select}{conflict} {returning}")
        }
        Mutation::Update { columns } => {
            if columns.is_empty() {
                format!("SELECT \"t0\".* FROM {target} AS \"t0\" WHERE false")
            } else {
                let payload = b.param(m.payload.clone());
                let sets: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{} = pgrst_body.{}", ident(c), ident(c)))
                    .collect();
                let wh = mutation_where(b, m)?;
                format!(
                    "UPDATE {target} AS \"t0\" SET {} FROM (SELECT * FROM pg_catalog.json_populate_record(NULL::{target}, {payload}::json)) AS pgrst_body{wh} {returning}",
                    sets.join(", ")
                )
            }
        }
        Mutation::Delete => {
            let wh = mutation_where(b, m)?;
            format!("DELETE FROM {target} AS \"t0\"{wh} {returning}")
        }
    };
    let body = match &m.read {
        Some(node) => format!(
            "(SELECT {} FROM ({}) AS _pgrst_t)",
            body_expr(single, opts),
            b.node(node, "", Vec::new(), false)?
        ),
        None => "NULL::text".into(),
    };
    let location = if m.location_columns.is_empty() {
        "NULL::text".to_string()
    } else {
        let cols: Vec<String> = m.location_columns.iter().map(|c| ident(c)).collect();
        format!(
            "(SELECT row_to_json(l)::text FROM (SELECT {} FROM pgrst_source LIMIT 1) AS l)",
            cols.join(", ")
        )
    };
    let total = if count {
        "(SELECT pg_catalog.count(*) FROM pgrst_source)"
    } else {
        "NULL::bigint"
    };
    Ok(format!(
        "WITH pgrst_source AS ({cte}) SELECT {total} AS total, (SELECT pg_catalog.count(*) FROM pgrst_source) AS page_total, {body} AS body, {location} AS location, {TAIL}, nullif(pg_catalog.current_setting('pgrst.inserted', true), '')::bigint AS inserted"
    ))
}

/// `set_config('pgrst.inserted', …)` adding (`+`) or taking (`-`) one: PostgREST's count of the
/// rows an upsert inserted, kept in a transaction-local setting.
fn count_inserted(sign: &str) -> String {
    format!(
        "pg_catalog.set_config('pgrst.inserted', (coalesce(nullif(pg_catalog.current_setting('pgrst.inserted', true), '')::int, 0) {sign} 1)::text, true)"
    )
}

/// The WHERE of an update or delete: its conditions, or the rows of its limited scan.
fn mutation_where(b: &mut Builder, m: &MutatePlan) -> Result<String, SqlError> {
    let node = dummy_node();
    let conds = match &m.limited {
        None => m
            .conds
            .iter()
            .map(|c| b.cond(&node, c))
            .collect::<Result<Vec<_>, _>>()?,
        Some(l) => {
            let inner = l
                .conds
                .iter()
                .map(|c| b.cond(&node, c))
                .collect::<Result<Vec<_>, _>>()?;
            let mut sub = format!(
                "SELECT \"pgrst_lim\".ctid FROM {} AS \"pgrst_lim\"",
                qualified(&m.target)
            );
            if !inner.is_empty() {
                sub.push_str(&format!(" WHERE {}", inner.join(" AND ")));
            }
            if !l.order.is_empty() {
                let mut terms = Vec::new();
                for o in &l.order {
                    if let OrderExpr::Column(c) = &o.expr {
                        terms.push(format!("{}{}", b.col(c), order_modifiers(o)));
                    }
                }
                sub.push_str(&format!(" ORDER BY {}", terms.join(", ")));
            }
            if let Some(n) = l.limit {
                sub.push_str(&format!(" LIMIT {n}"));
            }
            if let Some(n) = l.offset {
                sub.push_str(&format!(" OFFSET {n}"));
            }
            vec![format!("\"t0\".ctid = ANY(ARRAY({sub}))")]
        }
    };
    Ok(if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    })
}

fn dummy_node() -> ReadNode {
    ReadNode::empty(Source::Cte, "t0".into())
}

/// An ORDER BY term's ` ASC`/` DESC` and ` NULLS FIRST`/` NULLS LAST`, as asked.
fn order_modifiers(o: &OrderBy) -> String {
    let dir = match o.direction {
        Some(Direction::Asc) => " ASC",
        Some(Direction::Desc) => " DESC",
        None => "",
    };
    let nulls = match o.nulls {
        Some(Nulls::First) => " NULLS FIRST",
        Some(Nulls::Last) => " NULLS LAST",
        None => "",
    };
    format!("{dir}{nulls}")
}

fn call(
    b: &mut Builder,
    c: &CallPlan,
    count: bool,
    single: bool,
    opts: BodyOptions,
) -> Result<String, SqlError> {
    let f = qualified(&c.function);
    let mut from: Vec<String> = Vec::new();
    let args = match &c.args {
        CallArgs::Single { type_sql } => format!("{}::{type_sql}", b.param(c.payload.clone())),
        CallArgs::Named(names) if names.is_empty() => String::new(),
        CallArgs::Named(names) => {
            let payload = b.param(c.payload.clone());
            let defs: Vec<String> = names
                .iter()
                .map(|(n, t, _)| format!("{} {t}", ident(n)))
                .collect();
            from.push(format!(
                "pg_catalog.json_to_record({payload}::json) AS pgrst_args({})",
                defs.join(", ")
            ));
            let args: Vec<String> = names
                .iter()
                .map(|(n, _, v)| {
                    format!(
                        "{}{} := pgrst_args.{}",
                        if *v { "VARIADIC " } else { "" },
                        ident(n),
                        ident(n)
                    )
                })
                .collect();
            args.join(", ")
        }
    };
    let (select, call_item) = match c.shape {
        CallShape::Void | CallShape::Scalar => (format!("{f}({args}) AS pgrst_scalar"), None),
        CallShape::ScalarSet => (
            "pgrst_call.pgrst_scalar".to_string(),
            Some(format!("LATERAL {f}({args}) AS pgrst_call(pgrst_scalar)")),
        ),
        CallShape::Row | CallShape::Rows => (
            "pgrst_call.*".to_string(),
            Some(format!("LATERAL {f}({args}) AS pgrst_call")),
        ),
    };
    from.extend(call_item);
    let cte = if from.is_empty() {
        format!("SELECT {select}")
    } else {
        format!("SELECT {select} FROM {}", from.join(", "))
    };
    let (total, page_total, body) = match (&c.shape, &c.read) {
        (CallShape::Rows | CallShape::Row, Some(node)) => {
            let main = b.node(node, "", Vec::new(), false)?;
            let total = if count { format!("(SELECT pg_catalog.count(*) FROM ({}) AS _pgrst_c)", b.node(node, "", Vec::new(), true)?) } else { "NULL::bigint".into() };
            let single = single || c.shape == CallShape::Row;
            (total, "pg_catalog.count(_pgrst_t)".to_string(), format!("{} AS body FROM ({main}) AS _pgrst_t", body_expr(single, opts)))
        }
        (CallShape::ScalarSet, _) => (
            if count { "pg_catalog.count(*)".into() } else { "NULL::bigint".into() },
            "pg_catalog.count(*)".into(),
            "coalesce(json_agg(pgrst_scalar), '[]')::text AS body FROM pgrst_source".into(),
        ),
        (CallShape::Void, _) => ("NULL::bigint".into(), "pg_catalog.count(*)".into(), "NULL::text AS body FROM pgrst_source".into()),
        _ => (
            if count { "pg_catalog.count(*)".into() } else { "NULL::bigint".into() },
            "pg_catalog.count(*)".into(),
            "coalesce((pg_catalog.array_agg(pg_catalog.to_json(pgrst_scalar)))[1]::text, 'null') AS body FROM pgrst_source".into(),
        ),
    };
    let body = body.replacen(
        " AS body FROM ",
        &format!(" AS body, NULL::text AS location, {TAIL} FROM "),
        1,
    );
    Ok(format!(
        "WITH pgrst_source AS ({cte}) SELECT {total} AS total, {page_total} AS page_total, {body}"
    ))
}

#[cfg(test)]
#[path = "sql_tests.rs"]
mod tests;
