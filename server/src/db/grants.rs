//! Start-time grants and warnings: Supabase's default privileges for the API roles on the exposed
//! schemas (`--default-grants supabase`), or their removal (`none`), applied idempotently on every start
//! so changing the flag takes effect; the warning about exposed tables without row-level security.

use tokio_postgres::Client;

use crate::config::DefaultGrants;

use super::quote_ident;

/// Applies (or revokes) the default privileges for objects the admin user creates in `schemas`.
pub async fn apply_default_grants(
    client: &Client,
    mode: DefaultGrants,
    schemas: &[String],
) -> Result<(), tokio_postgres::Error> {
    let existing = super::existing_schemas(client, schemas).await?;
    let mut sql = String::new();
    for schema in existing {
        let s = quote_ident(&schema);
        sql.push_str(&format!(
            "grant usage on schema {s} to anon, authenticated, service_role;\n"
        ));
        for kind in ["tables", "sequences", "functions"] {
            match mode {
                DefaultGrants::Supabase => sql.push_str(&format!(
                    "alter default privileges in schema {s} grant all on {kind} to anon, authenticated, service_role;\n"
                )),
                DefaultGrants::None => sql.push_str(&format!(
                    "alter default privileges in schema {s} revoke all on {kind} from anon, authenticated, service_role;\n"
                )),
            }
        }
    }
    client.batch_execute(&sql).await
}

/// Tables in the exposed schemas that an API role may touch but that have no row-level security.
pub async fn tables_without_rls(
    client: &impl tokio_postgres::GenericClient,
    schemas: &[String],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "select format('%I.%I', n.nspname, c.relname)
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where c.relkind in ('r', 'p') and n.nspname = any($1) and not c.relrowsecurity
                and (has_table_privilege('anon', c.oid, 'select, insert, update, delete')
                  or has_table_privilege('authenticated', c.oid, 'select, insert, update, delete'))
              order by 1",
            &[&schemas],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
