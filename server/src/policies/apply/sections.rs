//! What the `storage` and `realtime` sections make: buckets (created, updated, or kept while they
//! hold objects) and the tables in the publication `supabase_realtime`, with their checks (a table
//! to publish needs a primary key or a replica identity).

use super::*;

pub(super) async fn buckets(
    tx: &Transaction<'_>,
    run: &mut Run<'_, '_>,
    plan: &Plan,
    owned: &[Owned],
    warnings: &mut Vec<String>,
) -> Result<(), ApplyError> {
    for b in &plan.buckets {
        let row = tx
            .query_opt(
                "select name, public, file_size_limit, allowed_mime_types
                   from storage.buckets where id = $1",
                &[&b.id],
            )
            .await?;
        let ours = owned.iter().any(|o| o.kind == "bucket" && o.name == b.id);
        match row {
            None => {
                run.exec(&b.insert_sql(), &b.loc, &[]).await?;
                own(
                    tx, "bucket", "storage", "buckets", &b.id, "", "", "created", &b.loc,
                )
                .await?;
            }
            Some(r) => {
                let same = r.get::<_, String>(0) == b.name
                    && r.get::<_, bool>(1) == b.public
                    && r.get::<_, Option<i64>>(2) == b.file_size_limit
                    && r.get::<_, Option<Vec<String>>>(3) == b.allowed_mime_types;
                if !same {
                    run.exec(&b.update_sql(), &b.loc, &[]).await?;
                }
                if !ours {
                    // Made by a migration or the storage API: now managed, never removed by doska.
                    own(
                        tx, "bucket", "storage", "buckets", &b.id, "", "", "adopted", &b.loc,
                    )
                    .await?;
                }
            }
        }
    }
    for o in owned.iter().filter(|o| o.kind == "bucket") {
        if plan.buckets.iter().any(|b| b.id == o.name) {
            continue;
        }
        disown(tx, o).await?;
        if o.fingerprint != "created" {
            continue;
        }
        let sql = BucketPlan::delete_sql(&o.name);
        tx.batch_execute("SAVEPOINT doska_bucket").await?;
        match tx.execute(&sql, &[]).await {
            Ok(n) => {
                tx.batch_execute("RELEASE SAVEPOINT doska_bucket").await?;
                if n > 0 {
                    run.statements.push(sql);
                }
            }
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT doska_bucket")
                    .await?;
                warnings.push(format!(
                    "bucket {} is no longer declared but was kept: it still holds objects or uploads",
                    o.name
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub(super) async fn published(
    tx: &Transaction<'_>,
) -> Result<HashSet<(String, String)>, ApplyError> {
    Ok(tx
        .query(
            "select schemaname::text, tablename::text from pg_publication_tables where pubname = $1",
            &[&PUBLICATION],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

pub(super) async fn publication(
    tx: &Transaction<'_>,
    run: &mut Run<'_, '_>,
    plan: &Plan,
    owned: &[Owned],
) -> Result<(), ApplyError> {
    let ledger: Vec<&Owned> = owned.iter().filter(|o| o.kind == "publication").collect();
    if plan.publish.is_empty() && ledger.is_empty() {
        return Ok(());
    }
    let there = published(tx).await?;
    for t in &plan.publish {
        if there.contains(&(t.schema.clone(), t.name.clone())) {
            // Ours from an earlier apply, or a migration's (then never ours to remove).
            continue;
        }
        run.exec(&publish_sql(&t.schema, &t.name), &t.loc, &[])
            .await?;
        own(
            tx,
            "publication",
            &t.schema,
            &t.name,
            PUBLICATION,
            "",
            "",
            "",
            &t.loc,
        )
        .await?;
    }
    for o in ledger {
        if plan
            .publish
            .iter()
            .any(|t| t.schema == o.schema && t.name == o.table)
        {
            continue;
        }
        if there.contains(&(o.schema.clone(), o.table.clone())) {
            run.exec_undeclared(&unpublish_sql(&o.schema, &o.table))
                .await?;
        }
        disown(tx, o).await?;
    }
    Ok(())
}

/// Tables to publish: they exist, are tables, and have a replica identity PostgreSQL can publish
/// updates and deletes with (else it refuses those statements once the table is published).
pub(super) async fn check_publish(
    tx: &Transaction<'_>,
    plan: &Plan,
) -> Result<Vec<Diagnostic>, ApplyError> {
    let mut diags = Vec::new();
    let Some(first) = plan.publish.first() else {
        return Ok(diags);
    };
    let exists = tx
        .query_opt(
            "select 1 from pg_publication where pubname = $1",
            &[&PUBLICATION],
        )
        .await?
        .is_some();
    if !exists {
        diags.push(Diagnostic {
            loc: first.loc.clone(),
            message: format!(
                "the publication {PUBLICATION} does not exist (doska's internal migrations create it)"
            ),
        });
        return Ok(diags);
    }
    for t in &plan.publish {
        let row = tx
            .query_opt(
                "select c.relkind::text, c.relreplident::text,
                        exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisprimary)
                   from pg_class c join pg_namespace n on n.oid = c.relnamespace
                  where n.nspname = $1 and c.relname = $2",
                &[&t.schema, &t.name],
            )
            .await?;
        let message = match row {
            None => Some(format!(
                "unknown table {}.{} (policy files name tables that migrations create)",
                t.schema, t.name
            )),
            Some(r) => {
                let (kind, ident, pk): (String, String, bool) = (r.get(0), r.get(1), r.get(2));
                if kind != "r" && kind != "p" {
                    Some(format!("{}.{} is not a table", t.schema, t.name))
                } else if ident == "n" || (ident == "d" && !pk) {
                    Some(format!(
                        "table {}.{} has no primary key (or replica identity): once published, PostgreSQL would refuse its updates and deletes; add a primary key or `alter table … replica identity full` in a migration",
                        t.schema, t.name
                    ))
                } else {
                    None
                }
            }
        };
        if let Some(message) = message {
            diags.push(Diagnostic {
                loc: t.loc.clone(),
                message,
            });
        }
    }
    Ok(diags)
}
