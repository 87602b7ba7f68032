//! The schema cache: the exposed schemas' tables, views, columns, keys, foreign keys and
//! functions, loaded from pg_catalog in three queries and swapped atomically on reload. A failed
//! reload keeps the old cache. Objects outside the exposed schemas are not visible to the API,
//! except as targets of foreign keys (which are ignored unless both sides are exposed).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    pub fn new(schema: &str, name: &str) -> Self {
        QualifiedName {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Column {
    pub name: String,
    /// `format_type(atttypid, atttypmod)`: SQL text of the type, from the catalog.
    #[serde(rename = "type")]
    pub type_sql: String,
    pub nullable: bool,
    /// `pg_get_expr` of the default, from the catalog.
    pub default: Option<String>,
    pub generated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelKind {
    Table,
    View,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: QualifiedName,
    pub kind: RelKind,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    /// Column sets of unique constraints and the primary key (for one-to-one detection).
    pub unique: Vec<Vec<String>>,
}

impl Relation {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
    pub fn is_unique(&self, cols: &[String]) -> bool {
        self.unique
            .iter()
            .any(|u| u.iter().all(|c| cols.contains(c)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ForeignKey {
    pub name: String,
    pub table: QualifiedName,
    pub columns: Vec<String>,
    pub ftable: QualifiedName,
    pub fcolumns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Param {
    pub name: String,
    #[serde(rename = "type")]
    pub type_sql: String,
    pub has_default: bool,
    pub variadic: bool,
    /// The table or view whose row type this parameter is (computed fields and relationships).
    pub rowtype: Option<QualifiedName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returns {
    Void,
    /// A scalar (or array, or domain) type.
    Scalar,
    /// A table or composite type: its columns, and the relation when it is a table or view.
    Composite {
        columns: Vec<String>,
        relation: Option<QualifiedName>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatility {
    Immutable,
    Stable,
    Volatile,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub name: QualifiedName,
    /// Input parameters in order; unnamed ones have an empty name.
    pub params: Vec<Param>,
    pub returns: Returns,
    pub returns_set: bool,
    /// A set-returning function declared `ROWS 1`: embedded as to-one, as PostgREST does.
    pub rows_one: bool,
    pub volatility: Volatility,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SchemaCache {
    /// The exposed schemas, the first being the default.
    pub schemas: Vec<String>,
    pub relations: HashMap<QualifiedName, Relation>,
    pub foreign_keys: Vec<ForeignKey>,
    pub functions: HashMap<QualifiedName, Vec<Function>>,
    /// `pgrst.*` settings of the `authenticator` role (`alter role authenticator set pgrst.x = …`).
    pub settings: HashMap<String, String>,
}

impl SchemaCache {
    pub fn relation(&self, schema: &str, name: &str) -> Option<&Relation> {
        self.relations.get(&QualifiedName::new(schema, name))
    }
    /// A boolean `pgrst.*` setting (`true`/`on`/`1`), `default` when unset.
    pub fn flag(&self, key: &str, default: bool) -> bool {
        match self.settings.get(key).map(|v| v.to_ascii_lowercase()) {
            Some(v) => matches!(v.as_str(), "true" | "on" | "1" | "yes"),
            None => default,
        }
    }
}

#[derive(Deserialize)]
struct RelRow {
    schema: String,
    name: String,
    kind: String,
    columns: Vec<Column>,
}

#[derive(Deserialize)]
struct KeyRow {
    kind: String,
    table: QualifiedName,
    columns: Vec<String>,
}

#[derive(Deserialize)]
struct ViewColumn {
    schema: String,
    view: String,
    column: String,
    base: QualifiedName,
    base_column: String,
}

#[derive(Deserialize)]
struct FnRow {
    schema: String,
    name: String,
    params: Vec<Param>,
    ret_kind: String,
    ret_columns: Option<Vec<String>>,
    ret_relation: Option<QualifiedName>,
    returns_set: bool,
    rows_one: bool,
    volatility: String,
}

const RELATIONS_SQL: &str = r#"
SELECT coalesce(json_agg(r), '[]')::text FROM (
  SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
    coalesce((SELECT json_agg(json_build_object(
        'name', a.attname,
        'type', format_type(a.atttypid, a.atttypmod),
        'nullable', NOT a.attnotnull,
        'default', CASE WHEN a.attidentity = 'd' THEN format('nextval(%L::regclass)',
            pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname))
          ELSE pg_get_expr(d.adbin, d.adrelid) END,
        'generated', a.attgenerated <> '') ORDER BY a.attnum)
      FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS columns
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p') AND n.nspname = ANY($1::text[])
) r"#;

const KEYS_SQL: &str = r#"
SELECT coalesce(json_agg(k), '[]')::text FROM (
  SELECT con.contype::text AS kind, con.conname AS name,
    json_build_object('schema', n.nspname, 'name', c.relname) AS table,
    (SELECT json_agg(a.attname ORDER BY u.ord) FROM unnest(con.conkey) WITH ORDINALITY u(num, ord)
       JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = u.num) AS columns,
    CASE WHEN con.contype = 'f' THEN json_build_object('schema', fn.nspname, 'name', fc.relname) END AS ftable,
    (SELECT json_agg(a.attname ORDER BY u.ord) FROM unnest(con.confkey) WITH ORDINALITY u(num, ord)
       JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = u.num) AS fcolumns
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class fc ON fc.oid = con.confrelid LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
  WHERE con.contype IN ('p', 'u', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND cardinality($1::text[]) >= 0
) k"#;

/// Where each view column comes from: PostgreSQL records the origin table and column of every
/// output column (`resorigtbl`, `resorigcol`) in the view's stored query tree.
const VIEW_COLUMNS_SQL: &str = r#"
SELECT coalesce(json_agg(v), '[]')::text FROM (
  SELECT n.nspname AS schema, c.relname AS view, a.attname AS column,
    json_build_object('schema', bn.nspname, 'name', bc.relname) AS base, ba.attname AS base_column
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_rewrite r ON r.ev_class = c.oid AND r.rulename = '_RETURN'
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  CROSS JOIN LATERAL (
    SELECT (m[3])::oid AS tbl, (m[4])::int2 AS col
    FROM regexp_matches(r.ev_action::text, ':resno (\d+) :resname (\S+) :ressortgroupref \d+ :resorigtbl (\d+) :resorigcol (\d+)', 'g') m
    WHERE (m[1])::int = a.attnum AND m[3] <> '0'
    LIMIT 1) o
  JOIN pg_class bc ON bc.oid = o.tbl JOIN pg_namespace bn ON bn.oid = bc.relnamespace
  JOIN pg_attribute ba ON ba.attrelid = o.tbl AND ba.attnum = o.col
  WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY($1::text[])
) v"#;

const SETTINGS_SQL: &str = r#"
SELECT coalesce(json_object_agg(split_part(s, '=', 1), substr(s, strpos(s, '=') + 1)), '{}')::text
FROM pg_db_role_setting r, unnest(r.setconfig) s
WHERE r.setrole = (SELECT oid FROM pg_roles WHERE rolname = 'authenticator') AND r.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
  AND s LIKE 'pgrst.%' AND cardinality($1::text[]) >= 0"#;

const FUNCTIONS_SQL: &str = r#"
SELECT coalesce(json_agg(f), '[]')::text FROM (
  SELECT n.nspname AS schema, p.proname AS name,
    coalesce((SELECT json_agg(json_build_object(
        'name', coalesce(p.proargnames[a.ord], ''),
        'type', format_type(a.t, NULL),
        'has_default', a.inpos > p.pronargs - p.pronargdefaults,
        'variadic', coalesce(p.proargmodes[a.ord], 'i') = 'v',
        'rowtype', (SELECT json_build_object('schema', tn.nspname, 'name', tc.relname)
                    FROM pg_type tt JOIN pg_class tc ON tc.oid = tt.typrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
                    WHERE tt.oid = a.t AND tc.relkind IN ('r', 'v', 'm', 'f', 'p'))) ORDER BY a.ord)
      FROM (SELECT t, ord, row_number() OVER (ORDER BY ord) AS inpos
            FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY x(t, ord)
            WHERE coalesce(p.proargmodes[ord], 'i') IN ('i', 'b', 'v')) a), '[]') AS params,
    CASE WHEN p.prorettype = 'void'::regtype THEN 'void'
         WHEN t.typtype = 'c' OR (p.prorettype = 'record'::regtype AND p.proargmodes IS NOT NULL) THEN 'composite'
         ELSE 'scalar' END AS ret_kind,
    CASE WHEN t.typtype = 'c' THEN
           (SELECT json_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a
             WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)
         WHEN p.prorettype = 'record'::regtype AND p.proargmodes IS NOT NULL THEN
           (SELECT json_agg(p.proargnames[ord] ORDER BY ord) FROM unnest(p.proargmodes) WITH ORDINALITY m(mode, ord)
             WHERE m.mode IN ('o', 'b', 't'))
    END AS ret_columns,
    CASE WHEN rc.relkind IN ('r', 'v', 'm', 'f', 'p') THEN json_build_object('schema', rn.nspname, 'name', rc.relname) END AS ret_relation,
    p.proretset AS returns_set,
    p.proretset AND p.prorows = 1 AS rows_one,
    p.provolatile::text AS volatility
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_type t ON t.oid = p.prorettype
  LEFT JOIN pg_class rc ON rc.oid = t.typrelid LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
  WHERE p.prokind = 'f' AND p.prorettype <> 'trigger'::regtype AND n.nspname = ANY($1::text[])
) f"#;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("no connection for the schema cache: {0}")]
    Pool(String),
    #[error("loading the schema cache: {0}")]
    Db(tokio_postgres::Error),
    #[error("decoding the schema cache: {0}")]
    Decode(serde_json::Error),
}

async fn json_query<T: for<'de> Deserialize<'de>>(
    client: &tokio_postgres::Client,
    sql: &str,
    schemas: &[String],
) -> Result<T, SchemaError> {
    let row = client
        .query_one(sql, &[&schemas])
        .await
        .map_err(SchemaError::Db)?;
    let text: String = row.get(0);
    serde_json::from_str(&text).map_err(SchemaError::Decode)
}

/// Loads the cache for `schemas` (the first is the default schema).
pub async fn load(
    client: &tokio_postgres::Client,
    schemas: &[String],
) -> Result<SchemaCache, SchemaError> {
    let rels: Vec<RelRow> = json_query(client, RELATIONS_SQL, schemas).await?;
    let keys: Vec<serde_json::Value> = json_query(client, KEYS_SQL, schemas).await?;
    let view_columns: Vec<ViewColumn> = json_query(client, VIEW_COLUMNS_SQL, schemas).await?;
    let fns: Vec<FnRow> = json_query(client, FUNCTIONS_SQL, schemas).await?;

    let settings: HashMap<String, String> = json_query(client, SETTINGS_SQL, schemas).await?;

    let mut cache = SchemaCache {
        schemas: schemas.to_vec(),
        settings,
        ..Default::default()
    };
    for r in rels {
        let name = QualifiedName {
            schema: r.schema,
            name: r.name,
        };
        let kind = if r.kind == "r" || r.kind == "p" || r.kind == "f" {
            RelKind::Table
        } else {
            RelKind::View
        };
        cache.relations.insert(
            name.clone(),
            Relation {
                name,
                kind,
                columns: r.columns,
                primary_key: Vec::new(),
                unique: Vec::new(),
            },
        );
    }
    let mut all_fks = Vec::new();
    let mut base_unique: HashMap<QualifiedName, Vec<Vec<String>>> = HashMap::new();
    let mut base_pk: HashMap<QualifiedName, Vec<String>> = HashMap::new();
    for k in keys {
        let kind = k["kind"].as_str().unwrap_or_default().to_string();
        if kind == "f" {
            all_fks.push(serde_json::from_value::<ForeignKey>(k).map_err(SchemaError::Decode)?);
            continue;
        }
        let key: KeyRow = serde_json::from_value(k).map_err(SchemaError::Decode)?;
        if key.kind == "p" {
            base_pk.insert(key.table.clone(), key.columns.clone());
        }
        base_unique.entry(key.table).or_default().push(key.columns);
    }
    for rel in cache.relations.values_mut() {
        rel.primary_key = base_pk.get(&rel.name).cloned().unwrap_or_default();
        rel.unique = base_unique.get(&rel.name).cloned().unwrap_or_default();
    }
    // Base tables of views may live outside the exposed schemas: their keys still count.
    let mut with_bases = cache.relations.clone();
    for (q, pk) in &base_pk {
        with_bases.entry(q.clone()).or_insert_with(|| Relation {
            name: q.clone(),
            kind: RelKind::Table,
            columns: Vec::new(),
            primary_key: pk.clone(),
            unique: base_unique.get(q).cloned().unwrap_or_default(),
        });
    }
    let fks = with_view_keys(all_fks, &view_columns, &mut with_bases);
    for (q, rel) in cache.relations.iter_mut() {
        if let Some(updated) = with_bases.remove(q) {
            *rel = updated;
        }
    }
    cache.foreign_keys = fks
        .into_iter()
        .filter(|f| {
            cache.relations.contains_key(&f.table) && cache.relations.contains_key(&f.ftable)
        })
        .collect();
    cache
        .foreign_keys
        .sort_by(|a, b| (&a.table, &a.name).cmp(&(&b.table, &b.name)));
    for f in fns {
        let returns = match f.ret_kind.as_str() {
            "void" => Returns::Void,
            "composite" => Returns::Composite {
                columns: f.ret_columns.unwrap_or_default(),
                relation: f.ret_relation,
            },
            _ => Returns::Scalar,
        };
        let volatility = match f.volatility.as_str() {
            "i" => Volatility::Immutable,
            "s" => Volatility::Stable,
            _ => Volatility::Volatile,
        };
        let name = QualifiedName {
            schema: f.schema,
            name: f.name,
        };
        cache
            .functions
            .entry(name.clone())
            .or_default()
            .push(Function {
                name,
                params: f.params,
                returns,
                returns_set: f.returns_set,
                rows_one: f.rows_one,
                volatility,
            });
    }
    Ok(cache)
}

/// Gives views the keys of the tables they show: a view column taken unchanged from a base
/// column stands for it, so foreign keys (both directions), primary keys and unique keys whose
/// columns all appear in the view hold for the view too. Runs twice so view-to-view keys appear.
fn with_view_keys(
    fks: Vec<ForeignKey>,
    view_columns: &[ViewColumn],
    relations: &mut HashMap<QualifiedName, Relation>,
) -> Vec<ForeignKey> {
    // view → base table → (base column → view column)
    let mut maps: HashMap<QualifiedName, HashMap<QualifiedName, HashMap<String, String>>> =
        HashMap::new();
    for vc in view_columns {
        maps.entry(QualifiedName::new(&vc.schema, &vc.view))
            .or_default()
            .entry(vc.base.clone())
            .or_default()
            .entry(vc.base_column.clone())
            .or_insert_with(|| vc.column.clone());
    }
    let map_cols = |m: &HashMap<String, String>, cols: &[String]| -> Option<Vec<String>> {
        cols.iter().map(|c| m.get(c).cloned()).collect()
    };
    let mut out = fks;
    for _ in 0..2 {
        let mut added = Vec::new();
        for (view, bases) in &maps {
            for (base, m) in bases {
                for fk in &out {
                    if &fk.table == base
                        && let Some(cols) = map_cols(m, &fk.columns)
                    {
                        added.push(ForeignKey {
                            name: fk.name.clone(),
                            table: view.clone(),
                            columns: cols,
                            ftable: fk.ftable.clone(),
                            fcolumns: fk.fcolumns.clone(),
                        });
                    }
                    if &fk.ftable == base
                        && let Some(cols) = map_cols(m, &fk.fcolumns)
                    {
                        added.push(ForeignKey {
                            name: fk.name.clone(),
                            table: fk.table.clone(),
                            columns: fk.columns.clone(),
                            ftable: view.clone(),
                            fcolumns: cols,
                        });
                    }
                }
            }
        }
        for a in added {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    let mut keys: Vec<(QualifiedName, Vec<String>, Vec<Vec<String>>)> = Vec::new();
    for (view, bases) in &maps {
        for (base, m) in bases {
            let Some(rel) = relations.get(base) else {
                continue;
            };
            let pk = map_cols(m, &rel.primary_key)
                .filter(|p| !p.is_empty())
                .unwrap_or_default();
            let unique = rel.unique.iter().filter_map(|u| map_cols(m, u)).collect();
            keys.push((view.clone(), pk, unique));
        }
    }
    for (view, pk, unique) in keys {
        if let Some(v) = relations.get_mut(&view) {
            if v.primary_key.is_empty() && !pk.is_empty() {
                v.primary_key = pk;
            }
            v.unique.extend(unique);
        }
    }
    out
}

/// Shared, swappable cache: readers clone the inner `Arc` and never wait for a reload.
#[derive(Clone, Debug, Default)]
pub struct SchemaCacheHandle(Arc<RwLock<Arc<SchemaCache>>>);

impl SchemaCacheHandle {
    pub fn new(cache: SchemaCache) -> Self {
        SchemaCacheHandle(Arc::new(RwLock::new(Arc::new(cache))))
    }
    pub fn get(&self) -> Arc<SchemaCache> {
        // A poisoned lock still holds a complete cache: it is only ever replaced whole.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub fn set(&self, cache: SchemaCache) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cache);
    }
}
