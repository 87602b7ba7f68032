//! Everything doska does with PostgreSQL outside the front doors: connecting (admin and request pools),
//! TLS to it (`tls`), checking an external server, the internal schema, the app's migrations, default grants, and acting
//! as the caller (`caller`: the transaction every door runs a caller's work in), and group commit of
//! short writes (`group`).

pub mod caller;
pub mod checks;
pub mod grants;
pub mod group;
pub mod internal;
pub mod migrate;
pub mod ordered;
pub mod outage;
pub mod pools;
pub mod tls;

/// Advisory lock key shared by every doska migration runner (internal and app).
pub const MIGRATION_LOCK: i64 = 0x646f_736b_615f_6d67; // "doska_mg"

/// Quotes an identifier for SQL text (doubling embedded quotes). Only for names doska itself controls
/// or has checked against the catalog.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for SQL text (statements that take no bind parameters, such as ALTER ROLE).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Those of `schemas` that exist, in the order PostgreSQL returns them.
pub async fn existing_schemas(
    client: &impl tokio_postgres::GenericClient,
    schemas: &[String],
) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(client
        .query(
            "select nspname::text from pg_namespace where nspname = any($1)",
            &[&schemas],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting() {
        assert_eq!(super::quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(super::quote_literal("it's"), "'it''s'");
    }
}
