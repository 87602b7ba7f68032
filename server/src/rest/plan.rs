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

mod call;
mod lookup;
mod relationships;
mod write;

pub use lookup::find_relation;

use call::call;
pub use relationships::{Relationship, resolve_relationship};
use write::mutate;

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
    /// A computed field: `function(table_alias::rowtype)` instead of the column. The cast lets
    /// rows of mutation and function results (records) reach functions of the table's row type.
    pub computed: Option<(QualifiedName, QualifiedName)>,
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
        /// The row type the function takes (the alias is cast to it).
        rowtype: QualifiedName,
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
    /// A computed relationship: `function(parent_row)`.
    Function {
        function: QualifiedName,
        arg_alias: String,
        target: QualifiedName,
    },
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

impl ReadNode {
    /// A node over `source` as `alias` that outputs, joins, filters and limits nothing yet.
    pub fn empty(source: Source, alias: String) -> Self {
        ReadNode {
            source,
            alias,
            outputs: Vec::new(),
            embeds: Vec::new(),
            conds: Vec::new(),
            order: Vec::new(),
            limit: None,
            offset: None,
            grouped: false,
        }
    }
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
    /// PATCH/DELETE with `limit`/`offset`: only the rows this ordered, paged scan picks.
    pub limited: Option<LimitedScope>,
}

/// The rows a limited update or delete may touch: `ctid` of a paged scan of the target (alias
/// `pgrst_lim`) under the request's filters and order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitedScope {
    pub conds: Vec<Cond>,
    pub order: Vec<OrderBy>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
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
    /// `count=planned` (or `estimated` under max-rows): the total is the planner's row estimate.
    pub planned_count: bool,
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
    /// Computed fields of the relation: `(name, function)`.
    computed: Vec<(String, QualifiedName)>,
}

impl Shape {
    /// The computed field `name`: `(function, row type)`.
    fn computed_field(&self, name: &str) -> Option<(QualifiedName, QualifiedName)> {
        let rel = self.relation.clone()?;
        self.computed
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| (f.clone(), rel))
    }
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
    // `estimated` is exact unless --db-max-rows bounds the result; then it is the planner's guess.
    let planned = match req.prefer.count {
        Some(CountPref::Planned) => true,
        Some(CountPref::Estimated) => cfg.max_rows.is_some(),
        _ => false,
    } && matches!(req.action, Action::Read { .. });
    let count = req.prefer.count.is_some() && !planned;
    let (root_limit, root_offset) = root_paging(req, cfg);
    match (&req.target, req.action) {
        (Target::Relation(name), Action::Read { .. }) => {
            let rel = find_relation(cache, schema, name)?;
            let shape = relation_shape(ctx.cache, rel);
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
                planned_count: planned,
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
                planned_count: planned,
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
                planned_count: planned,
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

/// Functions of one row of `rel` returning a scalar: its computed fields.
fn computed_of(cache: &SchemaCache, rel: &QualifiedName) -> Vec<(String, QualifiedName)> {
    let mut out: Vec<(String, QualifiedName)> = cache
        .functions
        .values()
        .flatten()
        .filter(|f| {
            f.params.len() == 1
                && f.params[0].rowtype.as_ref() == Some(rel)
                && !f.returns_set
                && matches!(f.returns, Returns::Scalar)
        })
        .map(|f| (f.name.name.clone(), f.name.clone()))
        .collect();
    out.sort();
    out
}

fn relation_shape(cache: &SchemaCache, rel: &Relation) -> Shape {
    Shape {
        label: rel.name.name.clone(),
        relation: Some(rel.name.clone()),
        columns: rel.columns.iter().map(|c| c.name.clone()).collect(),
        computed: computed_of(cache, &rel.name),
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

/// Adds `count()` over all rows (named `alias`, else `count`) to the node's outputs, grouping it;
/// refused when aggregates are disabled.
fn push_count_all(
    ctx: &Ctx,
    node: &mut ReadNode,
    cast: &Option<String>,
    alias: &Option<String>,
) -> Result<(), PlanError> {
    if !ctx.aggregates {
        return Err(PlanError::AggregatesDisabled);
    }
    node.grouped = true;
    node.outputs.push(Output::CountAll {
        cast: cast.clone(),
        name: alias.clone().unwrap_or_else(|| "count".into()),
    });
    Ok(())
}

fn build_node(
    ctx: &mut Ctx,
    select: &[SelectItem],
    shape: &Shape,
    source: Source,
    alias: String,
) -> Result<ReadNode, PlanError> {
    let mut node = ReadNode::empty(source, alias.clone());
    for item in select {
        match item {
            SelectItem::Star => {
                for c in &shape.columns {
                    node.outputs.push(Output::Column {
                        expr: ColExpr {
                            table_alias: alias.clone(),
                            column: c.clone(),
                            json_path: Vec::new(),
                            computed: None,
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
            } => push_count_all(ctx, &mut node, aggregate_cast, out_alias)?,
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
                        push_count_all(ctx, &mut node, aggregate_cast, out_alias)?;
                        continue;
                    }
                    if let Some((f, rowtype)) = shape.computed_field(&field.name) {
                        node.outputs.push(Output::Computed {
                            function: f,
                            rowtype,
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
                        computed: None,
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
                let child_shape = relation_shape(ctx.cache, target);
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
                let source = match &rel.function {
                    Some(f) => Source::Function {
                        function: f.clone(),
                        arg_alias: alias.clone(),
                        target: target.name.clone(),
                    },
                    None => Source::Relation(target.name.clone()),
                };
                let child = build_node(ctx, sel, &child_shape, source, child_alias)?;
                let join_cond = match rel.junction {
                    Some((jt, child_pairs, parent_pairs)) => JoinCond::Junction {
                        table: jt,
                        alias: ctx.alias("x"),
                        child: child_pairs,
                        parent: parent_pairs,
                    },
                    None => JoinCond::Direct(rel.pairs),
                };
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
    let q = match &e.node.source {
        Source::Relation(q) | Source::Function { target: q, .. } => q,
        Source::Cte => return None,
    };
    let rel = ctx.cache.relations.get(q)?;
    shape_at(ctx, &relation_shape(ctx.cache, rel), &e.node, rest)
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
                    let expr = col_expr(&relation_shape(ctx.cache, target), &o_alias, &t.field)?;
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
    let computed = if shape.columns.contains(&field.name) {
        None
    } else {
        match shape.computed_field(&field.name) {
            Some(pair) => Some(pair),
            None => {
                return Err(PlanError::ColumnNotFound {
                    relation: shape.label.clone(),
                    column: field.name.clone(),
                });
            }
        }
    };
    Ok(ColExpr {
        table_alias: alias.into(),
        column: field.name.clone(),
        json_path: field.json_path.clone(),
        computed,
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

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "plan_props.rs"]
mod props;
