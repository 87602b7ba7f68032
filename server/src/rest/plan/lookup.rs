//! Finding a table or view in the schema cache by name, and when it is not there, the closest
//! name in the same schema (edit distance at most 3) as PostgREST's "Perhaps you meant".

use super::*;

/// The relation `schema.name`, or `TableNotFound` with the suggestion.
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
