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
    let existing = crate::db::existing_schemas(client, schemas).await?;
    let cat = catalog::read(client, &existing).await?;
    Ok(typescript::render(&cat, &existing))
}
