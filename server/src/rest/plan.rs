//! Turns an [`ApiRequest`] and a body into a [`Plan`] against the [`SchemaCache`]: resolves the
//! target, every column, embed (relationship), computed field and function overload. Pure and
//! synchronous. Rejects unknown tables (PGRST205), columns (42703/PGRST204), relationships
//! (PGRST200, 300 PGRST201 when ambiguous), functions (PGRST202/203) and malformed writes.

use std::collections::BTreeSet;

use serde_json::Value;

use super::error::PlanError;
use super::grammar::{
    Aggregate, Direction, Field, IsValue, JoinType, JsonOp, LogicOp, LogicTree, Nulls, Operation,
    SelectItem,
};
use super::request::{
    Action, ApiRequest, CallMethod, CountPref, EmbedPath, MediaType, Paging, Resolution,
    ReturnPref, Target,
};
use super::schema::{Function, QualifiedName, Relation, Returns, SchemaCache, Volatility};

/// Limits that come from configuration rather than the request.
#[derive(Debug, Clone, Default)]
pub struct PlanConfig {
    /// `--db-max-rows`: caps every read.
    pub max_rows: Option<i64>,
}

/// A column reference, possibly into JSON: `"t0"."data"->'a'->>'b'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColExpr {
    pub table_alias: String,
    pub column: String,
    pub json_path: Vec<JsonOp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Column {
        expr: ColExpr,
        cast: Option<String>,
        aggregate: Option<Aggregate>,
        aggregate_cast: Option<String>,
        name: String,
    },
    CountAll {
        cast: Option<String>,
        name: String,
    },
    /// A computed field: `schema.fn(row)`.
    Computed {
        function: QualifiedName,
        table_alias: String,
        name: String,
    },
    /// The embed at this index in `ReadNode::embeds`, as a key (or spread into this level).
    Embed(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    Filter {
        expr: ColExpr,
        negated: bool,
        op: Operation,
    },
    Logic {
        negated: bool,
        op: LogicOp,
        children: Vec<Cond>,
    },
    /// `rel=is.null` / `rel=not.is.null`: whether the embed at this index found rows.
    EmbedNull { embed: usize, is_null: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderExpr {
    Column(ColExpr),
    /// A column of a to-one related row: `(SELECT alias.col FROM rel alias WHERE join)`.
    Related {
        relation: QualifiedName,
        alias: String,
        pairs: Vec<(String, String)>,
        parent_alias: String,
        expr: ColExpr,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub expr: OrderExpr,
    pub direction: Option<Direction>,
    pub nulls: Option<Nulls>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Relation(QualifiedName),
    /// The CTE `pgrst_source` (mutation results, function results).
    Cte,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadNode {
    pub source: Source,
    pub alias: String,
    pub outputs: Vec<Output>,
    pub embeds: Vec<Embed>,
    pub conds: Vec<Cond>,
    pub order: Vec<OrderBy>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// Some output aggregates: group by the other outputs.
    pub grouped: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinCond {
    /// `child.c = parent.p` for each `(c, p)`.
    Direct(Vec<(String, String)>),
    /// Through a junction table: `junction.jc = child.c` and `junction.jp = parent.p`.
    Junction {
        table: QualifiedName,
        alias: String,
        child: Vec<(String, String)>,
        parent: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embed {
    pub node: ReadNode,
    pub join: JoinCond,
    pub parent_alias: String,
    pub to_one: bool,
    pub inner: bool,
    pub spread: bool,
    /// The key in the parent object (alias or relation name).
    pub name: String,
    /// Alias of the lateral subquery (`j1`, …).
    pub lateral: String,
    /// For spread embeds: the names of the keys they contribute.
    pub spread_names: Vec<String>,
    /// `rel()`: joined for filtering (`rel=is.null`, `!inner`) but not part of the output.
    pub hidden: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertColumn {
    /// Taken from the payload.
    Payload(String),
    /// `missing=default`: the payload value when the key is present, else this default (catalog SQL text).
    OrDefault {
        name: String,
        default: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Insert {
        columns: Vec<InsertColumn>,
        on_conflict: Option<(Vec<String>, Resolution)>,
        update_columns: Vec<String>,
    },
    Update {
        columns: Vec<String>,
    },
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutatePlan {
    pub target: QualifiedName,
    pub mutation: Mutation,
    /// Conditions on the target (alias `t0`), for update and delete.
    pub conds: Vec<Cond>,
    /// The JSON payload (array for inserts, object for updates).
    pub payload: String,
    /// Whether rows are read back (representation, headers-only, count).
    pub returning: bool,
    /// What the client gets back, read from `pgrst_source`.
    pub read: Option<ReadNode>,
    /// Primary key columns, for `Location`.
    pub location_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallArgs {
    /// Named arguments taken from the JSON object payload: `(name, type, variadic)`.
    Named(Vec<(String, String, bool)>),
    /// The whole payload as the single unnamed json/jsonb argument.
    Single { type_sql: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallShape {
    Void,
    Scalar,
    ScalarSet,
    /// A single composite row → a JSON object.
    Row,
    /// A set of rows → a JSON array, filterable like a table.
    Rows,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallPlan {
    pub function: QualifiedName,
    pub args: CallArgs,
    pub payload: String,
    pub shape: CallShape,
    /// For Row/Rows: the read over `pgrst_source`.
    pub read: Option<ReadNode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanKind {
    Read(ReadNode),
    Mutate(MutatePlan),
    Call(CallPlan),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub kind: PlanKind,
    pub schema: String,
    /// The relation or function name, for Location and messages.
    pub target_name: String,
    pub read_only: bool,
    pub count: bool,
    /// The root offset (Content-Range's first index).
    pub offset: i64,
    pub return_: ReturnPref,
    /// Whether `Prefer: return=…` was given for a write: only then is it echoed in Preference-Applied.
    pub media: MediaType,
}

/// The body of a write, already decoded by the request stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    None,
    Json(Value),
    /// Raw text for a function with a single unnamed text/bytea/xml argument.
    Raw(String),
}

struct Ctx<'a> {
    cache: &'a SchemaCache,
    schema: &'a str,
    next: usize,
    aggregates: bool,
}

impl Ctx<'_> {
    fn alias(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }
}

/// What a node reads from: its column names and the relation (for relationships and computed fields).
#[derive(Clone)]
struct Shape {
    label: String,
    relation: Option<QualifiedName>,
    columns: Vec<String>,
}

/// Plans a request. `schema` is the schema chosen from the profile headers.
pub fn plan(
    req: &ApiRequest,
    payload: &Payload,
    cache: &SchemaCache,
    schema: &str,
    cfg: &PlanConfig,
) -> Result<Plan, PlanError> {
    let mut ctx = Ctx {
        cache,
        schema,
        next: 0,
        aggregates: cache.flag("pgrst.db_aggregates_enabled", false),
    };
    let count = matches!(
        req.prefer.count,
        Some(CountPref::Exact | CountPref::Planned | CountPref::Estimated)
    );
    let (root_limit, root_offset) = root_paging(req, cfg);
    match (&req.target, req.action) {
        (Target::Relation(name), Action::Read { .. }) => {
            let rel = find_relation(cache, schema, name)?;
            let shape = relation_shape(rel);
            let node = read_node(
                &mut ctx,
                req,
                &shape,
                Source::Relation(rel.name.clone()),
                "t0".into(),
                (root_limit, root_offset),
            )?;
            Ok(Plan {
                kind: PlanKind::Read(node),
                schema: schema.into(),
                target_name: name.clone(),
                read_only: true,
                count,
                offset: root_offset.unwrap_or(0),
                return_: ReturnPref::Representation,
                media: req.accept.media,
            })
        }
        (
            Target::Relation(name),
            Action::Insert | Action::Update | Action::Delete | Action::Upsert,
        ) => {
            let rel = find_relation(cache, schema, name)?;
            let m = mutate(&mut ctx, req, payload, rel)?;
            Ok(Plan {
                kind: PlanKind::Mutate(m),
                schema: schema.into(),
                target_name: name.clone(),
                read_only: false,
                count,
                offset: 0,
                return_: req.prefer.return_.unwrap_or_default(),
                media: req.accept.media,
            })
        }
        (Target::Rpc(name), Action::Call { method }) => {
            let c = call(
                &mut ctx,
                req,
                payload,
                name,
                method,
                (root_limit, root_offset),
            )?;
            let read_only = method != CallMethod::Post || c.1 != Volatility::Volatile;
            Ok(Plan {
                kind: PlanKind::Call(c.0),
                schema: schema.into(),
                target_name: name.clone(),
                read_only,
                count,
                offset: root_offset.unwrap_or(0),
                return_: ReturnPref::Representation,
                media: req.accept.media,
            })
        }
        _ => Err(PlanError::NotImplemented(format!(
            "{:?} on {:?}",
            req.action, req.target
        ))),
    }
}

/// The root's limit and offset: query parameters win over the Range header; max-rows caps both.
fn root_paging(req: &ApiRequest, cfg: &PlanConfig) -> (Option<i64>, Option<i64>) {
    let p = req.paging.get(&Vec::new()).copied().unwrap_or_default();
    let (mut limit, mut offset) = (p.limit, p.offset);
    if let Some((first, last)) = req.range
        && matches!(req.action, Action::Read { .. } | Action::Call { .. })
    {
        let range_limit = last.map(|l| (l - first + 1).max(0));
        offset = Some(offset.unwrap_or(0) + first);
        limit = match (limit, range_limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    if let Some(max) = cfg.max_rows {
        limit = Some(limit.map_or(max, |l| l.min(max)));
    }
    (limit, offset)
}

pub fn find_relation<'a>(
    cache: &'a SchemaCache,
    schema: &str,
    name: &str,
) -> Result<&'a Relation, PlanError> {
    cache.relation(schema, name).ok_or_else(|| {
        let suggestion = cache
            .relations
            .keys()
            .filter(|q| q.schema == schema)
            .map(|q| (strsim(&q.name, name), q.name.clone()))
            .filter(|(d, _)| *d <= 3)
            .min()
            .map(|(_, n)| n);
        PlanError::TableNotFound {
            schema: schema.into(),
            name: name.into(),
            suggestion,
        }
    })
}

/// Levenshtein distance, for "perhaps you meant".
fn strsim(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn relation_shape(rel: &Relation) -> Shape {
    Shape {
        label: rel.name.name.clone(),
        relation: Some(rel.name.clone()),
        columns: rel.columns.iter().map(|c| c.name.clone()).collect(),
    }
}

/// Plans the read tree of a request rooted at `shape`.
fn read_node(
    ctx: &mut Ctx,
    req: &ApiRequest,
    shape: &Shape,
    source: Source,
    alias: String,
    paging: (Option<i64>, Option<i64>),
) -> Result<ReadNode, PlanError> {
    let default_select = vec![SelectItem::Star];
    let select = req.select.as_ref().unwrap_or(&default_select);
    let mut node = build_node(ctx, select, shape, source, alias)?;
    node.limit = paging.0;
    node.offset = paging.1;
    attach_params(ctx, req, &mut node, shape)?;
    Ok(node)
}

fn build_node(
    ctx: &mut Ctx,
    select: &[SelectItem],
    shape: &Shape,
    source: Source,
    alias: String,
) -> Result<ReadNode, PlanError> {
    let mut node = ReadNode {
        source,
        alias: alias.clone(),
        outputs: Vec::new(),
        embeds: Vec::new(),
        conds: Vec::new(),
        order: Vec::new(),
        limit: None,
        offset: None,
        grouped: false,
    };
    for item in select {
        match item {
            SelectItem::Star => {
                for c in &shape.columns {
                    node.outputs.push(Output::Column {
                        expr: ColExpr {
                            table_alias: alias.clone(),
                            column: c.clone(),
                            json_path: Vec::new(),
                        },
                        cast: None,
                        aggregate: None,
                        aggregate_cast: None,
                        name: c.clone(),
                    });
                }
            }
            SelectItem::Field {
                alias: out_alias,
                field: None,
                aggregate_cast,
                ..
            } => {
                if !ctx.aggregates {
                    return Err(PlanError::AggregatesDisabled);
                }
                node.grouped = true;
                node.outputs.push(Output::CountAll {
                    cast: aggregate_cast.clone(),
                    name: out_alias.clone().unwrap_or_else(|| "count".into()),
                });
            }
            SelectItem::Field {
                alias: out_alias,
                field: Some(field),
                cast,
                aggregate,
                aggregate_cast,
            } => {
                if aggregate.is_some() && !ctx.aggregates {
                    return Err(PlanError::AggregatesDisabled);
                }
                check_cast(cast.as_deref())?;
                check_cast(aggregate_cast.as_deref())?;
                if !shape.columns.contains(&field.name) {
                    // `rel(count)`: a bare `count` is the count aggregate when there is no such column.
                    if field.name == "count"
                        && field.json_path.is_empty()
                        && cast.is_none()
                        && aggregate.is_none()
                    {
                        if !ctx.aggregates {
                            return Err(PlanError::AggregatesDisabled);
                        }
                        node.grouped = true;
                        node.outputs.push(Output::CountAll {
                            cast: aggregate_cast.clone(),
                            name: out_alias.clone().unwrap_or_else(|| "count".into()),
                        });
                        continue;
                    }
                    if let Some(f) = computed_field(ctx, shape, &field.name) {
                        node.outputs.push(Output::Computed {
                            function: f,
                            table_alias: alias.clone(),
                            name: out_alias.clone().unwrap_or_else(|| field.name.clone()),
                        });
                        continue;
                    }
                    return Err(PlanError::ColumnNotFound {
                        relation: shape.label.clone(),
                        column: field.name.clone(),
                    });
                }
                if aggregate.is_some() {
                    node.grouped = true;
                }
                let name = out_alias.clone().unwrap_or_else(|| match aggregate {
                    Some(a) => a.name().to_string(),
                    None => field.output_name(),
                });
                node.outputs.push(Output::Column {
                    expr: ColExpr {
                        table_alias: alias.clone(),
                        column: field.name.clone(),
                        json_path: field.json_path.clone(),
                    },
                    cast: cast.clone(),
                    aggregate: *aggregate,
                    aggregate_cast: aggregate_cast.clone(),
                    name,
                });
            }
            SelectItem::Embed {
                alias: out_alias,
                name,
                hint,
                join,
                spread,
                select,
            } => {
                let Some(parent_rel) = &shape.relation else {
                    return Err(PlanError::RelationshipNotFound {
                        parent: shape.label.clone(),
                        child: name.clone(),
                        hint: hint.clone(),
                    });
                };
                let rel = resolve_relationship(ctx.cache, parent_rel, name, hint.as_deref())?;
                let target = ctx.cache.relations.get(&rel.target).ok_or_else(|| {
                    PlanError::RelationshipNotFound {
                        parent: shape.label.clone(),
                        child: name.clone(),
                        hint: hint.clone(),
                    }
                })?;
                let child_shape = relation_shape(target);
                let child_alias = ctx.alias("t");
                let lateral = ctx.alias("j");
                let default_select = vec![SelectItem::Star];
                let sel = if select.is_empty() && !*spread {
                    &Vec::new()
                } else if select.is_empty() {
                    &default_select
                } else {
                    select
                };
                let child = build_node(
                    ctx,
                    sel,
                    &child_shape,
                    Source::Relation(target.name.clone()),
                    child_alias,
                )?;
                let join_cond = match rel.junction {
                    Some((jt, child_pairs, parent_pairs)) => JoinCond::Junction {
                        table: jt,
                        alias: ctx.alias("x"),
                        child: child_pairs,
                        parent: parent_pairs,
                    },
                    None => JoinCond::Direct(rel.pairs),
                };
                if *spread && !rel.to_one {
                    return Err(PlanError::NotImplemented(format!(
                        "spreading the to-many relationship '{name}'"
                    )));
                }
                let spread_names = if *spread {
                    child.outputs.iter().filter_map(output_name).collect()
                } else {
                    Vec::new()
                };
                let embed = Embed {
                    node: child,
                    join: join_cond,
                    parent_alias: alias.clone(),
                    to_one: rel.to_one,
                    inner: *join == Some(JoinType::Inner),
                    spread: *spread,
                    name: out_alias.clone().unwrap_or_else(|| name.clone()),
                    lateral,
                    spread_names,
                    hidden: select.is_empty() && !*spread,
                };
                node.embeds.push(embed);
                node.outputs.push(Output::Embed(node.embeds.len() - 1));
            }
        }
    }
    if node.grouped && !node.embeds.is_empty() {
        return Err(PlanError::NotImplemented(
            "aggregates together with embedded resources".into(),
        ));
    }
    Ok(node)
}

fn output_name(o: &Output) -> Option<String> {
    match o {
        Output::Column { name, .. }
        | Output::CountAll { name, .. }
        | Output::Computed { name, .. } => Some(name.clone()),
        Output::Embed(_) => None,
    }
}

/// Cast names go into SQL text: letters, digits and `_` (with `[]`) only — the grammar ensures
/// that; this re-checks so a plan built by other code cannot smuggle anything in.
fn check_cast(cast: Option<&str>) -> Result<(), PlanError> {
    match cast {
        Some(c)
            if c.is_empty()
                || !c
                    .trim_end_matches("[]")
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_') =>
        {
            Err(PlanError::Invalid {
                message: "invalid cast".into(),
                details: c.into(),
            })
        }
        _ => Ok(()),
    }
}

fn computed_field(ctx: &Ctx, shape: &Shape, name: &str) -> Option<QualifiedName> {
    let rel = shape.relation.as_ref()?;
    let fns = ctx
        .cache
        .functions
        .get(&QualifiedName::new(&rel.schema, name))?;
    fns.iter()
        .find(|f| {
            f.params.len() == 1
                && f.params[0].rowtype.as_ref() == Some(rel)
                && !f.returns_set
                && matches!(f.returns, Returns::Scalar)
        })
        .map(|f| f.name.clone())
}

/// A resolved relationship from a parent to `target`.
#[derive(Debug, Clone)]
pub struct Relationship {
    pub target: QualifiedName,
    /// (child column, parent column) for direct joins.
    pub pairs: Vec<(String, String)>,
    /// (junction, (junction col, child col), (junction col, parent col)) for many-to-many.
    #[allow(clippy::type_complexity)]
    pub junction: Option<(QualifiedName, Vec<(String, String)>, Vec<(String, String)>)>,
    pub to_one: bool,
    pub cardinality: &'static str,
    /// Names a hint may match: constraint names, single column names, junction name.
    pub hint_names: Vec<String>,
    pub description: String,
    /// Matched through a column name rather than the table name (self-references).
    pub by_column: bool,
}

/// Finds the relationship `parent → name` (a table name, a foreign key column or a constraint),
/// narrowed by `hint`.
pub fn resolve_relationship(
    cache: &SchemaCache,
    parent: &QualifiedName,
    name: &str,
    hint: Option<&str>,
) -> Result<Relationship, PlanError> {
    let mut found: Vec<Relationship> = Vec::new();
    for fk in &cache.foreign_keys {
        // Many-to-one: the key is on the parent.
        if &fk.table == parent {
            let by_column = fk.columns.len() == 1 && fk.columns[0] == name;
            if fk.ftable.name == name || fk.name == name || by_column {
                let mut hint_names = vec![fk.name.clone(), fk.ftable.name.clone()];
                hint_names.extend(fk.columns.iter().cloned());
                found.push(Relationship {
                    target: fk.ftable.clone(),
                    pairs: fk
                        .fcolumns
                        .iter()
                        .cloned()
                        .zip(fk.columns.iter().cloned())
                        .collect(),
                    junction: None,
                    to_one: true,
                    cardinality: "many-to-one",
                    hint_names,
                    description: format!(
                        "{}[{}][{}]",
                        fk.name,
                        fk.columns.join(","),
                        fk.fcolumns.join(",")
                    ),
                    by_column: by_column || fk.name == name,
                });
            }
        }
        // One-to-many (one-to-one when the key columns are unique): the key is on the child.
        if &fk.ftable == parent && fk.table.name == name {
            let child = cache.relations.get(&fk.table);
            let one = child.is_some_and(|c| c.is_unique(&fk.columns));
            let mut hint_names = vec![fk.name.clone()];
            hint_names.extend(fk.columns.iter().cloned());
            found.push(Relationship {
                target: fk.table.clone(),
                pairs: fk
                    .columns
                    .iter()
                    .cloned()
                    .zip(fk.fcolumns.iter().cloned())
                    .collect(),
                junction: None,
                to_one: one,
                cardinality: if one { "one-to-one" } else { "one-to-many" },
                hint_names,
                description: format!(
                    "{}[{}][{}]",
                    fk.name,
                    fk.fcolumns.join(","),
                    fk.columns.join(",")
                ),
                by_column: false,
            });
        }
    }
    // Many-to-many through a junction whose primary key covers both foreign keys.
    for a in cache.foreign_keys.iter().filter(|a| &a.ftable == parent) {
        for b in cache
            .foreign_keys
            .iter()
            .filter(|b| b.table == a.table && b.name != a.name && b.ftable.name == name)
        {
            let Some(j) = cache.relations.get(&a.table) else {
                continue;
            };
            let covered = |cols: &[String]| cols.iter().all(|c| j.primary_key.contains(c));
            if !covered(&a.columns) || !covered(&b.columns) {
                continue;
            }
            found.push(Relationship {
                target: b.ftable.clone(),
                pairs: Vec::new(),
                junction: Some((
                    a.table.clone(),
                    b.columns
                        .iter()
                        .cloned()
                        .zip(b.fcolumns.iter().cloned())
                        .collect(),
                    a.columns
                        .iter()
                        .cloned()
                        .zip(a.fcolumns.iter().cloned())
                        .collect(),
                )),
                to_one: false,
                cardinality: "many-to-many",
                hint_names: vec![a.table.name.clone(), a.name.clone(), b.name.clone()],
                description: format!(
                    "{}.{}[{}][{}]",
                    a.table.schema, a.table.name, a.name, b.name
                ),
                by_column: false,
            });
        }
    }
    if let Some(h) = hint {
        found.retain(|r| r.hint_names.iter().any(|n| n == h));
    }
    // A self-reference named by the table is the one-to-many side; by its column, the many-to-one side.
    if found.len() == 2 && found[0].target == found[1].target && &found[0].target == parent {
        let by_col = found.iter().any(|r| r.by_column);
        found.retain(|r| {
            if by_col {
                r.by_column
            } else {
                !r.to_one || r.cardinality == "one-to-one"
            }
        });
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(PlanError::RelationshipNotFound {
            parent: parent.name.clone(),
            child: name.into(),
            hint: hint.map(String::from),
        }),
        _ => {
            let candidates = found
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "cardinality": r.cardinality,
                        "embedding": format!("{} with {}", parent.name, r.target.name),
                        "relationship": r.description,
                    })
                })
                .collect();
            let options: Vec<String> = found
                .iter()
                .map(|r| format!("'{}!{}'", r.target.name, r.hint_names[0]))
                .collect();
            Err(PlanError::AmbiguousRelationship {
                parent: parent.name.clone(),
                child: name.into(),
                candidates,
                hint: format!(
                    "Try changing '{name}' to one of the following: {}. Find the desired relationship in the 'details' key.",
                    options.join(", ")
                ),
            })
        }
    }
}

fn find_embed_mut<'a>(node: &'a mut ReadNode, path: &[String]) -> Option<&'a mut ReadNode> {
    let Some((first, rest)) = path.split_first() else {
        return Some(node);
    };
    let e = node.embeds.iter_mut().find(|e| &e.name == first)?;
    find_embed_mut(&mut e.node, rest)
}

/// Shapes of every node by path, for column checks of filters and order.
fn shape_at(ctx: &Ctx, root: &Shape, node: &ReadNode, path: &[String]) -> Option<Shape> {
    let Some((first, rest)) = path.split_first() else {
        return Some(root.clone());
    };
    let e = node.embeds.iter().find(|e| &e.name == first)?;
    let Source::Relation(q) = &e.node.source else {
        return None;
    };
    let rel = ctx.cache.relations.get(q)?;
    shape_at(ctx, &relation_shape(rel), &e.node, rest)
}

fn attach_params(
    ctx: &mut Ctx,
    req: &ApiRequest,
    root: &mut ReadNode,
    root_shape: &Shape,
) -> Result<(), PlanError> {
    let not_selected = |p: &EmbedPath| PlanError::EmbedNotSelected(p.join("."));
    for (path, filter) in &req.filters {
        let shape = shape_at(ctx, root_shape, root, path).ok_or_else(|| not_selected(path))?;
        let node = find_embed_mut(root, path).ok_or_else(|| not_selected(path))?;
        // `rel=is.null` on an embed: whether it matched.
        if let Some(idx) = node
            .embeds
            .iter()
            .position(|e| e.name == filter.field.name && filter.field.json_path.is_empty())
            && !shape.columns.contains(&filter.field.name)
        {
            let is_null = match (&filter.op, filter.negated) {
                (Operation::Is(IsValue::Null), neg) => !neg,
                (Operation::Is(IsValue::NotNull), neg) => neg,
                _ => {
                    return Err(PlanError::Invalid {
                        message: "only is.null and not.is.null apply to an embedded resource"
                            .into(),
                        details: filter.field.name.clone(),
                    });
                }
            };
            node.conds.push(Cond::EmbedNull {
                embed: idx,
                is_null,
            });
            continue;
        }
        let expr = col_expr(&shape, &node.alias, &filter.field)?;
        node.conds.push(Cond::Filter {
            expr,
            negated: filter.negated,
            op: filter.op.clone(),
        });
    }
    for (path, tree) in &req.logic {
        let shape = shape_at(ctx, root_shape, root, path).ok_or_else(|| not_selected(path))?;
        let node = find_embed_mut(root, path).ok_or_else(|| not_selected(path))?;
        let cond = logic_cond(&shape, &node.alias, tree)?;
        node.conds.push(cond);
    }
    for (path, terms) in &req.order {
        let shape = shape_at(ctx, root_shape, root, path).ok_or_else(|| not_selected(path))?;
        let alias = find_embed_mut(root, path)
            .ok_or_else(|| not_selected(path))?
            .alias
            .clone();
        let mut order = Vec::new();
        for t in terms {
            let expr = match &t.relation {
                None => OrderExpr::Column(col_expr(&shape, &alias, &t.field)?),
                Some(relname) => {
                    let parent = shape.relation.clone().ok_or_else(|| not_selected(path))?;
                    let rel = resolve_relationship(ctx.cache, &parent, relname, None)?;
                    if !rel.to_one || rel.junction.is_some() {
                        return Err(PlanError::OrderNotToOne {
                            parent: parent.name.clone(),
                            child: relname.clone(),
                        });
                    }
                    let target = ctx
                        .cache
                        .relations
                        .get(&rel.target)
                        .ok_or_else(|| not_selected(path))?;
                    let o_alias = ctx.alias("o");
                    let expr = col_expr(&relation_shape(target), &o_alias, &t.field)?;
                    OrderExpr::Related {
                        relation: rel.target.clone(),
                        alias: o_alias,
                        pairs: rel.pairs.clone(),
                        parent_alias: alias.clone(),
                        expr,
                    }
                }
            };
            order.push(OrderBy {
                expr,
                direction: t.direction,
                nulls: t.nulls,
            });
        }
        find_embed_mut(root, path)
            .ok_or_else(|| not_selected(path))?
            .order = order;
    }
    for (path, Paging { limit, offset }) in &req.paging {
        if path.is_empty() {
            continue;
        }
        let node = find_embed_mut(root, path).ok_or_else(|| not_selected(path))?;
        node.limit = *limit;
        node.offset = *offset;
    }
    Ok(())
}

fn col_expr(shape: &Shape, alias: &str, field: &Field) -> Result<ColExpr, PlanError> {
    if !shape.columns.contains(&field.name) {
        return Err(PlanError::ColumnNotFound {
            relation: shape.label.clone(),
            column: field.name.clone(),
        });
    }
    Ok(ColExpr {
        table_alias: alias.into(),
        column: field.name.clone(),
        json_path: field.json_path.clone(),
    })
}

fn logic_cond(shape: &Shape, alias: &str, tree: &LogicTree) -> Result<Cond, PlanError> {
    Ok(match tree {
        LogicTree::Filter(f) => Cond::Filter {
            expr: col_expr(shape, alias, &f.field)?,
            negated: f.negated,
            op: f.op.clone(),
        },
        LogicTree::Expr {
            negated,
            op,
            children,
        } => Cond::Logic {
            negated: *negated,
            op: *op,
            children: children
                .iter()
                .map(|c| logic_cond(shape, alias, c))
                .collect::<Result<_, _>>()?,
        },
    })
}

fn mutate(
    ctx: &mut Ctx,
    req: &ApiRequest,
    payload: &Payload,
    rel: &Relation,
) -> Result<MutatePlan, PlanError> {
    let shape = relation_shape(rel);
    let return_ = req.prefer.return_.unwrap_or_default();
    let returning = return_ != ReturnPref::Minimal
        || req.prefer.count.is_some()
        || req.prefer.max_affected.is_some();
    // Root filters select the rows to change; the rows read back are all of those rows.
    let mut read_req = req.clone();
    read_req.filters.retain(|(p, _)| !p.is_empty());
    read_req.logic.retain(|(p, _)| !p.is_empty());
    let read = if return_ == ReturnPref::Representation {
        Some(read_node(
            ctx,
            &read_req,
            &shape,
            Source::Cte,
            "t0".into(),
            (None, None),
        )?)
    } else {
        None
    };
    let check_col = |c: &str| -> Result<(), PlanError> {
        if rel.column(c).is_none() {
            return Err(PlanError::WriteColumnNotFound {
                relation: rel.name.name.clone(),
                column: c.into(),
            });
        }
        Ok(())
    };
    let root_conds = || -> Result<Vec<Cond>, PlanError> {
        let mut conds = Vec::new();
        for (path, f) in &req.filters {
            if path.is_empty() {
                conds.push(Cond::Filter {
                    expr: col_expr(&shape, "t0", &f.field)?,
                    negated: f.negated,
                    op: f.op.clone(),
                });
            }
        }
        for (path, t) in &req.logic {
            if path.is_empty() {
                conds.push(logic_cond(&shape, "t0", t)?);
            }
        }
        Ok(conds)
    };
    let (mutation, conds, payload_text) = match req.action {
        Action::Insert | Action::Upsert => {
            let rows = payload_rows(payload)?;
            let mut columns: Vec<String> = match &req.columns {
                Some(cols) => cols.clone(),
                None => rows
                    .first()
                    .map(|r| r.keys().cloned().collect())
                    .unwrap_or_default(),
            };
            if req.columns.is_none() {
                let first: BTreeSet<&String> = columns.iter().collect();
                if rows
                    .iter()
                    .any(|r| r.keys().collect::<BTreeSet<_>>() != first)
                {
                    return Err(PlanError::InvalidBody("All object keys must match".into()));
                }
            }
            columns.dedup();
            for c in &columns {
                check_col(c)?;
            }
            let mut on_conflict = None;
            if req.action == Action::Upsert {
                if rel.primary_key.is_empty() {
                    return Err(PlanError::InvalidPut("the table has no primary key".into()));
                }
                if req
                    .paging
                    .values()
                    .any(|p| p.limit.is_some() || p.offset.is_some())
                {
                    return Err(PlanError::PutLimit);
                }
                check_put(req, rel, &rows)?;
                on_conflict = Some((rel.primary_key.clone(), Resolution::MergeDuplicates));
            } else if let Some(res) = req.prefer.resolution {
                let target = req
                    .on_conflict
                    .clone()
                    .unwrap_or_else(|| rel.primary_key.clone());
                for c in &target {
                    check_col(c)?;
                }
                if target.is_empty() {
                    return Err(PlanError::Invalid {
                        message: "on_conflict needs columns".into(),
                        details: "the table has no primary key; give on_conflict=".into(),
                    });
                }
                on_conflict = Some((target, res));
            }
            let update_columns = columns.clone();
            let cols = columns
                .into_iter()
                .map(|c| {
                    if req.prefer.missing_default {
                        let default = rel.column(&c).and_then(|col| col.default.clone());
                        InsertColumn::OrDefault { name: c, default }
                    } else {
                        InsertColumn::Payload(c)
                    }
                })
                .collect();
            let text = Value::Array(rows.into_iter().map(Value::Object).collect()).to_string();
            (
                Mutation::Insert {
                    columns: cols,
                    on_conflict,
                    update_columns,
                },
                Vec::new(),
                text,
            )
        }
        Action::Update => {
            let obj = match payload {
                Payload::Json(Value::Object(o)) => o.clone(),
                Payload::Json(Value::Array(a)) if a.len() == 1 && a[0].is_object() => {
                    a[0].as_object().cloned().unwrap_or_default()
                }
                _ => {
                    return Err(PlanError::InvalidBody(
                        "a PATCH body must be one JSON object".into(),
                    ));
                }
            };
            let columns: Vec<String> = match &req.columns {
                Some(cols) => cols.clone(),
                None => obj.keys().cloned().collect(),
            };
            for c in &columns {
                check_col(c)?;
            }
            (
                Mutation::Update { columns },
                root_conds()?,
                Value::Object(obj).to_string(),
            )
        }
        _ => (Mutation::Delete, root_conds()?, String::new()),
    };
    Ok(MutatePlan {
        target: rel.name.clone(),
        mutation,
        conds,
        payload: payload_text,
        returning,
        read,
        location_columns: if return_ == ReturnPref::HeadersOnly {
            rel.primary_key.clone()
        } else {
            Vec::new()
        },
    })
}

fn payload_rows(payload: &Payload) -> Result<Vec<serde_json::Map<String, Value>>, PlanError> {
    match payload {
        Payload::Json(Value::Object(o)) => Ok(vec![o.clone()]),
        Payload::Json(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_object().cloned().ok_or_else(|| {
                    PlanError::InvalidBody(
                        "every element of the array must be a JSON object".into(),
                    )
                })
            })
            .collect(),
        Payload::None => Err(PlanError::InvalidBody("Empty or invalid json".into())),
        _ => Err(PlanError::InvalidBody(
            "the body must be a JSON object or an array of objects".into(),
        )),
    }
}

/// PUT: the filters are exactly `pk=eq.v` for every primary key column, and the body agrees.
fn check_put(
    req: &ApiRequest,
    rel: &Relation,
    rows: &[serde_json::Map<String, Value>],
) -> Result<(), PlanError> {
    if rows.len() != 1 {
        return Err(PlanError::InvalidBody(
            "PUT takes exactly one object".into(),
        ));
    }
    let mut url_vals = Vec::new();
    for (path, f) in &req.filters {
        let ok = path.is_empty()
            && !f.negated
            && f.field.json_path.is_empty()
            && rel.primary_key.contains(&f.field.name)
            && matches!(
                &f.op,
                Operation::Simple {
                    op: super::grammar::SimpleOp::Eq,
                    quantifier: None,
                    ..
                }
            );
        if !ok {
            return Err(PlanError::InvalidPut(format!("filter on {}", f.field.name)));
        }
        if let Operation::Simple { value, .. } = &f.op {
            url_vals.push((f.field.name.clone(), value.clone()));
        }
    }
    if !req.logic.is_empty()
        || url_vals.len() != rel.primary_key.len()
        || rel
            .primary_key
            .iter()
            .any(|k| !url_vals.iter().any(|(n, _)| n == k))
    {
        return Err(PlanError::InvalidPut(
            "every primary key column needs one eq filter".into(),
        ));
    }
    for (name, v) in url_vals {
        let body_v = match rows[0].get(&name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => return Err(PlanError::PutMismatch),
            Some(other) => other.to_string(),
        };
        if body_v != v {
            return Err(PlanError::PutMismatch);
        }
    }
    Ok(())
}

fn call(
    ctx: &mut Ctx,
    req: &ApiRequest,
    payload: &Payload,
    name: &str,
    method: CallMethod,
    paging: (Option<i64>, Option<i64>),
) -> Result<(CallPlan, Volatility), PlanError> {
    let qn = QualifiedName::new(ctx.schema, name);
    let overloads = ctx
        .cache
        .functions
        .get(&qn)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    // The arguments given: JSON object keys (POST) or query parameters (GET).
    let (args_obj, single_body): (serde_json::Map<String, Value>, Option<&Payload>) = match method {
        CallMethod::Post => match payload {
            Payload::Json(Value::Object(o)) => (o.clone(), Some(payload)),
            Payload::None => (serde_json::Map::new(), None),
            p => (serde_json::Map::new(), Some(p)),
        },
        _ => {
            let mut m = serde_json::Map::new();
            for (k, v) in &req.rpc_args {
                match m.get_mut(k) {
                    Some(Value::Array(a)) => a.push(Value::String(v.clone())),
                    Some(prev) => {
                        *prev = Value::Array(vec![prev.clone(), Value::String(v.clone())])
                    }
                    None => {
                        m.insert(k.clone(), Value::String(v.clone()));
                    }
                }
            }
            (m, None)
        }
    };
    let given: BTreeSet<&String> = args_obj.keys().collect();
    let fits = |f: &&Function| {
        let named = f.params.iter().all(|p| !p.name.is_empty());
        named
            && given.iter().all(|g| f.params.iter().any(|p| &&p.name == g))
            && f.params
                .iter()
                .all(|p| p.has_default || given.contains(&p.name))
    };
    let single = |f: &&Function| {
        f.params.len() == 1
            && (f.params[0].name.is_empty() || req.prefer.single_object)
            && single_arg_type(&f.params[0].type_sql)
    };
    let mut matching: Vec<&Function> = overloads.iter().filter(fits).collect();
    let mut use_single = false;
    if matching.is_empty() && method == CallMethod::Post {
        matching = overloads.iter().filter(single).collect();
        use_single = !matching.is_empty();
    }
    let f = match matching.len() {
        1 => matching[0],
        0 => {
            return Err(PlanError::FunctionNotFound {
                schema: ctx.schema.into(),
                name: name.into(),
                args: given.iter().map(|s| s.to_string()).collect(),
            });
        }
        _ => {
            return Err(PlanError::AmbiguousFunction {
                schema: ctx.schema.into(),
                name: name.into(),
                candidates: matching
                    .iter()
                    .map(|f| {
                        f.params
                            .iter()
                            .map(|p| format!("{} => {}", p.name, p.type_sql))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .collect(),
            });
        }
    };
    let (args, payload_text) = if use_single {
        let text = match single_body {
            Some(Payload::Json(v)) => v.to_string(),
            Some(Payload::Raw(s)) => s.clone(),
            _ => "null".into(),
        };
        (
            CallArgs::Single {
                type_sql: f.params[0].type_sql.clone(),
            },
            text,
        )
    } else {
        let names: Vec<(String, String, bool)> = f
            .params
            .iter()
            .filter(|p| given.contains(&p.name))
            .map(|p| (p.name.clone(), p.type_sql.clone(), p.variadic))
            .collect();
        (CallArgs::Named(names), Value::Object(args_obj).to_string())
    };
    let (shape, read) = match &f.returns {
        Returns::Void => (CallShape::Void, None),
        Returns::Scalar => (
            if f.returns_set {
                CallShape::ScalarSet
            } else {
                CallShape::Scalar
            },
            None,
        ),
        Returns::Composite { columns, relation } => {
            let shape = Shape {
                label: name.into(),
                relation: relation.clone(),
                columns: columns.clone(),
            };
            let node = read_node(ctx, req, &shape, Source::Cte, "t0".into(), paging)?;
            (
                if f.returns_set {
                    CallShape::Rows
                } else {
                    CallShape::Row
                },
                Some(node),
            )
        }
    };
    Ok((
        CallPlan {
            function: f.name.clone(),
            args,
            payload: payload_text,
            shape,
            read,
        },
        f.volatility,
    ))
}

/// Types that take the whole body as a single unnamed argument.
fn single_arg_type(t: &str) -> bool {
    matches!(t, "json" | "jsonb" | "text" | "bytea" | "xml")
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
