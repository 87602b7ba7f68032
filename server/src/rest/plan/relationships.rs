//! Relationship resolution: which foreign key (direct, through a junction, or a computed
//! relationship) an embed name and optional hint denote. Rejects unknown (PGRST200) and
//! ambiguous (PGRST201) embeds.

use super::*;

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
    /// A computed relationship: this function of the parent row returns the target rows.
    pub function: Option<QualifiedName>,
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
                    function: None,
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
                function: None,
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
                function: None,
            });
        }
    }
    // Computed relationships: `name(parent_row) returns [setof] target`.
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
                found.push(Relationship {
                    target: target.clone(),
                    pairs: Vec::new(),
                    junction: None,
                    to_one: !f.returns_set,
                    cardinality: if f.returns_set {
                        "one-to-many"
                    } else {
                        "many-to-one"
                    },
                    hint_names: vec![f.name.name.clone()],
                    description: format!("{}.{}", f.name.schema, f.name.name),
                    by_column: false,
                    function: Some(f.name.clone()),
                });
            }
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
