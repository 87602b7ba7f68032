//! Relationship resolution: which foreign key (direct, through a junction, or a computed
//! relationship) an embed name and optional hint denote. Rejects unknown (PGRST200) and
//! ambiguous (PGRST201) embeds.

use super::*;
use crate::rest::schema::RelKind;

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
    /// `parent with target`, as PostgREST's PGRST201 details say it.
    pub embedding: String,
    /// `constraint using parent(cols) and target(cols)`, as PostgREST's PGRST201 details say it.
    pub description: String,
    /// The hint PGRST201 suggests: the constraint, or the junction table.
    pub hint_name: String,
    /// A computed relationship: this function of the parent row returns the target rows.
    pub function: Option<QualifiedName>,
}

/// How a candidate relationship may be named: PostgREST's matching rules (`findRel`).
struct Candidate {
    rel: Relationship,
    /// The foreign key constraint's name (direct relationships).
    constraint: Option<String>,
    /// (column of the parent, column of the target) of a single-column key.
    single: Option<(String, String)>,
    /// The junction table's name (many-to-many).
    junction: Option<String>,
    /// The target is a view (a key carried over from the table it shows).
    target_is_view: bool,
    /// Parent and target are the same relation (a self-reference).
    is_self: bool,
}

impl Candidate {
    fn is_m2o(&self) -> bool {
        self.rel.cardinality == "many-to-one"
    }
    fn constraint_is(&self, n: &str) -> bool {
        self.constraint.as_deref() == Some(n)
    }
    fn parent_column_is(&self, n: &str) -> bool {
        self.single.as_ref().is_some_and(|(c, _)| c == n)
    }
    fn target_column_is(&self, n: &str) -> bool {
        self.single.as_ref().is_some_and(|(_, c)| c == n)
    }

    /// Whether `name` (with `hint`) denotes this relationship, by PostgREST 13's rules; where
    /// PostgREST refuses a self-reference hinted by its constraint, doska takes the one-to-many side.
    fn matches(&self, name: &str, hint: Option<&str>) -> bool {
        if let Some(f) = &self.rel.function {
            return f.name == name;
        }
        let target = self.rel.target.name.as_str();
        if self.is_self {
            return match hint {
                // `children:family_tree(*)` is the one-to-many side, `parent(*)` the many-to-one.
                None => {
                    (target == name && !self.is_m2o())
                        || (self.parent_column_is(name) && self.is_m2o())
                        || (self.constraint_is(name) && self.is_m2o())
                }
                Some(h) => {
                    target == name
                        && !self.is_m2o()
                        && (self.target_column_is(h) || self.constraint_is(h))
                }
            };
        }
        match hint {
            None => {
                target == name
                    || (!self.target_is_view
                        && (self.constraint_is(name) || self.parent_column_is(name)))
            }
            Some(h) => {
                target == name
                    && (self.constraint_is(h)
                        || self.parent_column_is(h)
                        || self.target_column_is(h)
                        || self.junction.as_deref() == Some(h))
            }
        }
    }
}

fn cols(cs: &[String]) -> String {
    format!("({})", cs.join(", "))
}

/// Every relationship of `parent`: both directions of each foreign key (also through views),
/// many-to-many through junctions, computed relationships.
fn candidates(cache: &SchemaCache, parent: &QualifiedName, name: &str) -> Vec<Candidate> {
    let is_view = |q: &QualifiedName| {
        cache
            .relations
            .get(q)
            .is_some_and(|r| r.kind == RelKind::View)
    };
    let unique =
        |q: &QualifiedName, cs: &[String]| cache.relations.get(q).is_some_and(|r| r.is_unique(cs));
    let single = |a: &[String], b: &[String]| match (a, b) {
        ([x], [y]) => Some((x.clone(), y.clone())),
        _ => None,
    };
    let mut found = Vec::new();
    for fk in &cache.foreign_keys {
        let one = unique(&fk.table, &fk.columns);
        // Many-to-one (one-to-one when the key columns are unique): the key is on the parent.
        if &fk.table == parent {
            let cardinality = if one { "one-to-one" } else { "many-to-one" };
            found.push(Candidate {
                rel: Relationship {
                    target: fk.ftable.clone(),
                    pairs: fk
                        .fcolumns
                        .iter()
                        .cloned()
                        .zip(fk.columns.iter().cloned())
                        .collect(),
                    junction: None,
                    to_one: true,
                    cardinality,
                    embedding: format!("{} with {}", fk.table.name, fk.ftable.name),
                    description: format!(
                        "{} using {}{} and {}{}",
                        fk.name,
                        fk.table.name,
                        cols(&fk.columns),
                        fk.ftable.name,
                        cols(&fk.fcolumns)
                    ),
                    hint_name: fk.name.clone(),
                    function: None,
                },
                constraint: Some(fk.name.clone()),
                single: single(&fk.columns, &fk.fcolumns),
                junction: None,
                target_is_view: is_view(&fk.ftable),
                is_self: fk.ftable == fk.table,
            });
        }
        // One-to-many (one-to-one when the key columns are unique): the key is on the child.
        if &fk.ftable == parent {
            let cardinality = if one { "one-to-one" } else { "one-to-many" };
            found.push(Candidate {
                rel: Relationship {
                    target: fk.table.clone(),
                    pairs: fk
                        .columns
                        .iter()
                        .cloned()
                        .zip(fk.fcolumns.iter().cloned())
                        .collect(),
                    junction: None,
                    to_one: one,
                    cardinality,
                    embedding: format!("{} with {}", fk.ftable.name, fk.table.name),
                    description: format!(
                        "{} using {}{} and {}{}",
                        fk.name,
                        fk.ftable.name,
                        cols(&fk.fcolumns),
                        fk.table.name,
                        cols(&fk.columns)
                    ),
                    hint_name: fk.name.clone(),
                    function: None,
                },
                constraint: Some(fk.name.clone()),
                single: single(&fk.fcolumns, &fk.columns),
                junction: None,
                target_is_view: is_view(&fk.table),
                is_self: fk.ftable == fk.table,
            });
        }
    }
    // Many-to-many through a junction whose primary key covers both foreign keys.
    for a in cache.foreign_keys.iter().filter(|a| &a.ftable == parent) {
        for b in cache
            .foreign_keys
            .iter()
            .filter(|b| b.table == a.table && b.name != a.name)
        {
            let Some(j) = cache.relations.get(&a.table) else {
                continue;
            };
            let covered = |cols: &[String]| cols.iter().all(|c| j.primary_key.contains(c));
            if !covered(&a.columns) || !covered(&b.columns) {
                continue;
            }
            found.push(Candidate {
                rel: Relationship {
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
                    embedding: format!("{} with {}", parent.name, b.ftable.name),
                    description: format!(
                        "{} using {}{} and {}{}",
                        a.table.name,
                        a.name,
                        cols(&a.columns),
                        b.name,
                        cols(&b.columns)
                    ),
                    hint_name: a.table.name.clone(),
                    function: None,
                },
                constraint: None,
                single: None,
                junction: Some(a.table.name.clone()),
                target_is_view: is_view(&b.ftable),
                is_self: false,
            });
        }
    }
    // Computed relationships: `name(parent_row) returns [setof] target`; to-one unless it returns
    // a set, or a set declared `ROWS 1`.
    if let Some(fns) = cache
        .functions
        .get(&QualifiedName::new(&parent.schema, name))
    {
        for f in fns {
            if let (
                1,
                Some(rowtype),
                Returns::Composite {
                    relation: Some(target),
                    ..
                },
            ) = (
                f.params.len(),
                f.params.first().and_then(|p| p.rowtype.as_ref()),
                &f.returns,
            ) && rowtype == parent
            {
                let to_one = !f.returns_set || f.rows_one;
                found.push(Candidate {
                    rel: Relationship {
                        target: target.clone(),
                        pairs: Vec::new(),
                        junction: None,
                        to_one,
                        cardinality: if to_one { "many-to-one" } else { "one-to-many" },
                        embedding: format!("{} with {}", parent.name, target.name),
                        description: format!("{}.{}", f.name.schema, f.name.name),
                        hint_name: f.name.name.clone(),
                        function: Some(f.name.clone()),
                    },
                    constraint: None,
                    single: None,
                    junction: None,
                    target_is_view: is_view(target),
                    is_self: false,
                });
            }
        }
    }
    found
}

/// Finds the relationship `parent → name` (a table or view name, a foreign key constraint, a
/// foreign key column, or a computed relationship's function), narrowed by `hint` (a constraint,
/// a column of either side, or a junction table), by PostgREST's rules: several matches are
/// ambiguous (PGRST201), none is PGRST200.
pub fn resolve_relationship(
    cache: &SchemaCache,
    parent: &QualifiedName,
    name: &str,
    hint: Option<&str>,
) -> Result<Relationship, PlanError> {
    let mut found: Vec<Relationship> = candidates(cache, parent, name)
        .into_iter()
        .filter(|c| c.matches(name, hint))
        .map(|c| c.rel)
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(PlanError::RelationshipNotFound {
            schema: parent.schema.clone(),
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
                        "embedding": r.embedding,
                        "relationship": r.description,
                    })
                })
                .collect();
            let options: Vec<String> = found
                .iter()
                .map(|r| format!("'{}!{}'", r.target.name, r.hint_name))
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
