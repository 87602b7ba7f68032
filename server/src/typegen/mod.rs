//! `doska gen types`: TypeScript types of the exposed schemas in the shape `supabase gen types
//! typescript` prints, so they type both @doska/client's and supabase-js's `createClient<Database>()`.
//! Pipeline: [`catalog`] (read PostgreSQL's catalog) → [`typescript`] (render).

pub mod catalog;
pub mod typescript;

/// Reads the catalog over `client` and renders the types of `schemas` (those that exist).
pub async fn generate<C: tokio_postgres::GenericClient>(
    client: &C,
    schemas: &[String],
) -> Result<String, tokio_postgres::Error> {
    let existing: Vec<String> = client
        .query(
            "select nspname::text from pg_namespace where nspname = any($1)",
            &[&schemas],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let cat = catalog::read(client, &existing).await?;
    Ok(typescript::render(&cat, &existing))
}
