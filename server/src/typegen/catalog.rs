//! Reads what `doska gen types` describes from PostgreSQL's catalog, in a few queries over one
//! connection: every type (for mapping by oid), the relations and their columns, foreign keys, and
//! the functions of the exposed schemas.

use std::collections::HashMap;

use tokio_postgres::GenericClient;

/// A type from `pg_type`.
#[derive(Debug, Clone)]
pub struct PgType {
    pub schema: String,
    pub name: String,
    /// `typtype`: b(ase), c(omposite), d(omain), e(num), p(seudo), r(ange), m(ultirange).
    pub kind: char,
    /// The element type of an array type (0 otherwise).
    pub elem: u32,
    /// The relation of a composite type (0 otherwise).
    pub relid: u32,
    /// The base type of a domain (0 otherwise).
    pub base: u32,
    /// An enum's labels in their order.
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    pub nullable: bool,
    /// A default, an identity or a generation expression: the column may be left out of an insert.
    pub has_default: bool,
    /// `GENERATED ALWAYS AS IDENTITY` or a generated column: never written.
    pub always: bool,
    pub updatable: bool,
}

#[derive(Debug, Clone)]
pub struct Relation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// r, p, f (tables), v, m (views), c (standalone composite types).
    pub kind: char,
    /// A view that takes inserts and updates (`pg_relation_is_updatable`).
    pub updatable: bool,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub name: String,
    pub schema: String,
    pub relation: String,
    pub columns: Vec<String>,
    pub referenced_schema: String,
    pub referenced_relation: String,
    pub referenced_columns: Vec<String>,
    /// The referencing columns are a unique key of their table.
    pub one_to_one: bool,
}

#[derive(Debug, Clone)]
pub struct Arg {
    pub name: String,
    /// i(n), o(ut), b (inout), v(ariadic), t(able).
    pub mode: char,
    pub type_oid: u32,
    pub has_default: bool,
}

#[derive(Debug, Clone)]
pub struct Function {
    pub schema: String,
    pub name: String,
    pub args: Vec<Arg>,
    pub returns: u32,
    pub returns_set: bool,
}

/// Everything the generator needs.
#[derive(Debug, Default)]
pub struct Catalog {
    pub types: HashMap<u32, PgType>,
    pub relations: Vec<Relation>,
    pub foreign_keys: Vec<ForeignKey>,
    pub functions: Vec<Function>,
}

impl Catalog {
    pub fn relation(&self, oid: u32) -> Option<&Relation> {
        self.relations.iter().find(|r| r.oid == oid)
    }
}

const TYPES_SQL: &str = "
select t.oid, n.nspname::text, t.typname::text, t.typtype::text, t.typelem, t.typrelid,
       t.typbasetype,
       coalesce((select array_agg(e.enumlabel::text order by e.enumsortorder)
                   from pg_enum e where e.enumtypid = t.oid), '{}')
  from pg_type t join pg_namespace n on n.oid = t.typnamespace";

/// Relations of every user schema (a function may return a row of a relation in a schema that is
/// not exposed); partitions are left out, as their parent stands for them.
const RELATIONS_SQL: &str = "
select c.oid, n.nspname::text, c.relname::text, c.relkind::text,
       c.relkind in ('v', 'm') and (pg_relation_is_updatable(c.oid, false) & 20) = 20
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('r', 'p', 'f', 'v', 'm', 'c') and not c.relispartition
   and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%'";

const COLUMNS_SQL: &str = "
select a.attrelid, a.attname::text, a.atttypid, not a.attnotnull,
       a.atthasdef or a.attidentity <> '' or a.attgenerated <> '',
       a.attidentity = 'a' or a.attgenerated <> '',
       coalesce(pg_column_is_updatable(a.attrelid, a.attnum, false), false)
  from pg_attribute a join pg_class c on c.oid = a.attrelid
  join pg_namespace n on n.oid = c.relnamespace
 where a.attnum > 0 and not a.attisdropped and c.relkind in ('r', 'p', 'f', 'v', 'm', 'c')
   and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%'
 order by a.attrelid, a.attnum";

const FOREIGN_KEYS_SQL: &str = "
select con.conname::text, n.nspname::text, c.relname::text,
       array(select a.attname::text from unnest(con.conkey) with ordinality k(num, i)
               join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.num order by k.i),
       rn.nspname::text, rc.relname::text,
       array(select a.attname::text from unnest(con.confkey) with ordinality k(num, i)
               join pg_attribute a on a.attrelid = con.confrelid and a.attnum = k.num order by k.i),
       exists(select 1 from pg_index i where i.indrelid = con.conrelid and i.indisunique
                and array(select unnest(i.indkey::int2[]) order by 1)
                  = array(select unnest(con.conkey) order by 1))
  from pg_constraint con
  join pg_class c on c.oid = con.conrelid join pg_namespace n on n.oid = c.relnamespace
  join pg_class rc on rc.oid = con.confrelid join pg_namespace rn on rn.oid = rc.relnamespace
 where con.contype = 'f' and n.nspname = any($1)";

/// Plain functions of the exposed schemas; those PostgREST cannot call (trigger functions, internal
/// argument types) are left out.
const FUNCTIONS_SQL: &str = "
select n.nspname::text, p.proname::text, p.prorettype, p.proretset,
       coalesce(p.proallargtypes, p.proargtypes::oid[]),
       coalesce(p.proargmodes::text[], '{}'),
       coalesce(p.proargnames, '{}'),
       p.pronargdefaults::int4
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
 where n.nspname = any($1) and p.prokind = 'f'
   and p.prorettype not in ('trigger'::regtype, 'event_trigger'::regtype, 'internal'::regtype,
                            'language_handler'::regtype, 'fdw_handler'::regtype,
                            'index_am_handler'::regtype, 'table_am_handler'::regtype,
                            'tsm_handler'::regtype, 'cstring'::regtype)
   and not ('internal'::regtype = any(p.proargtypes::oid[])
            or 'cstring'::regtype = any(p.proargtypes::oid[]))
 order by p.oid";

/// Reads the catalog for `schemas`.
pub async fn read<C: GenericClient>(
    client: &C,
    schemas: &[String],
) -> Result<Catalog, tokio_postgres::Error> {
    let mut cat = Catalog::default();
    for r in client.query(TYPES_SQL, &[]).await? {
        let kind: String = r.get(3);
        cat.types.insert(
            r.get(0),
            PgType {
                schema: r.get(1),
                name: r.get(2),
                kind: kind.chars().next().unwrap_or('b'),
                elem: r.get(4),
                relid: r.get(5),
                base: r.get(6),
                labels: r.get(7),
            },
        );
    }
    let mut columns: HashMap<u32, Vec<Column>> = HashMap::new();
    for r in client.query(COLUMNS_SQL, &[]).await? {
        columns.entry(r.get(0)).or_default().push(Column {
            name: r.get(1),
            type_oid: r.get(2),
            nullable: r.get(3),
            has_default: r.get(4),
            always: r.get(5),
            updatable: r.get(6),
        });
    }
    for r in client.query(RELATIONS_SQL, &[]).await? {
        let oid: u32 = r.get(0);
        let kind: String = r.get(3);
        cat.relations.push(Relation {
            oid,
            schema: r.get(1),
            name: r.get(2),
            kind: kind.chars().next().unwrap_or('r'),
            updatable: r.get(4),
            columns: columns.remove(&oid).unwrap_or_default(),
        });
    }
    for r in client.query(FOREIGN_KEYS_SQL, &[&schemas]).await? {
        cat.foreign_keys.push(ForeignKey {
            name: r.get(0),
            schema: r.get(1),
            relation: r.get(2),
            columns: r.get(3),
            referenced_schema: r.get(4),
            referenced_relation: r.get(5),
            referenced_columns: r.get(6),
            one_to_one: r.get(7),
        });
    }
    for r in client.query(FUNCTIONS_SQL, &[&schemas]).await? {
        let types: Vec<u32> = r.get(4);
        let modes: Vec<String> = r.get(5);
        let names: Vec<String> = r.get(6);
        let defaults = r.get::<_, i32>(7).max(0) as usize;
        let mut args: Vec<Arg> = types
            .iter()
            .enumerate()
            .map(|(i, t)| Arg {
                name: names.get(i).cloned().unwrap_or_default(),
                mode: modes.get(i).and_then(|m| m.chars().next()).unwrap_or('i'),
                type_oid: *t,
                has_default: false,
            })
            .collect();
        // The last `pronargdefaults` input arguments have defaults.
        let inputs: Vec<usize> = (0..args.len())
            .filter(|i| matches!(args[*i].mode, 'i' | 'b' | 'v'))
            .collect();
        for i in inputs.iter().rev().take(defaults) {
            args[*i].has_default = true;
        }
        cat.functions.push(Function {
            schema: r.get(0),
            name: r.get(1),
            returns: r.get(2),
            returns_set: r.get(3),
            args,
        });
    }
    Ok(cat)
}
