//! Test cases written as what a front door does: `download`, `upload`, `overwrite`, `delete` of an
//! object (the storage core's own row statements, as the caller), `join`, `send`, `track` on a
//! private channel (realtime's own probe of `realtime.messages`, as the caller) and `receive` of a
//! change of a published table's row (realtime's own visibility check, as the subscriber). Coverage
//! is counted on the one object, topic or row the case names: a policy of the touched table whose
//! command the action uses and whose roles include the caller allows when its expressions are true
//! on that row, and denies when they are not. Rejects cases missing their bucket, path, topic, table
//! or row, objects or rows that must (or must not) exist beforehand, unknown buckets, unpublished
//! tables and unknown actions.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{Map, Value, json};
use tokio_postgres::Transaction;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::{CaseDoc, Coverage, TestError, TestFile, caller};
use crate::{
    db::{
        caller::{Caller, act_as, with_claims},
        migrate::describe,
    },
    policies::{
        compile::{PolicyPlan, qualified},
        parse::Command,
        syntax::split_table,
    },
    realtime::{
        authorize::{PROBE_ROWS, probe_channel, single_check},
        decode::{Change, ChangeKind, ColumnInfo},
        lsn::Lsn,
    },
    storage::core::{INSERT_SQL, UPSERT_SQL},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Download,
    Upload,
    Overwrite,
    Delete,
    Join,
    Send,
    Track,
    /// A change of a published table's row reaching a subscriber.
    Receive,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "download" => Op::Download,
            "upload" => Op::Upload,
            "overwrite" => Op::Overwrite,
            "delete" => Op::Delete,
            "join" => Op::Join,
            "send" => Op::Send,
            "track" => Op::Track,
            "receive" => Op::Receive,
            _ => return None,
        })
    }
    /// The command whose policies decide it.
    fn command(self) -> Command {
        match self {
            Op::Download | Op::Join | Op::Receive => Command::Select,
            Op::Upload | Op::Send | Op::Track => Command::Insert,
            Op::Overwrite => Command::Update,
            Op::Delete => Command::Delete,
        }
    }
}

type Outcome = Result<Result<(), String>, TestError>;

pub(super) async fn run(
    tx: &Transaction<'_>,
    doc: &TestFile,
    case: &CaseDoc,
    action: &str,
    policies: &[PolicyPlan],
    coverage: &mut Coverage,
) -> Outcome {
    let Some(op) = Op::parse(action) else {
        return Ok(Err(format!(
            "unknown action {action:?}; use download, upload, overwrite, delete, join, send, track or receive"
        )));
    };
    if case.allowed == case.denied
        || case.rows.is_some()
        || case.count.is_some()
        || case.error.is_some()
    {
        return Ok(Err(
            "an `action` case expects exactly one of `allowed = true` or `denied = true`".into(),
        ));
    }
    if case.sql.is_some() || case.rest.is_some() || case.body.is_some() {
        return Ok(Err(
            "a case has one of `sql`, `rest` or `action`, not several".into(),
        ));
    }
    let given = (
        case.bucket.is_some(),
        case.path.is_some(),
        case.topic.is_some(),
        case.table.is_some() || case.row.is_some(),
    );
    let target = match op {
        Op::Download | Op::Upload | Op::Overwrite | Op::Delete => {
            if given != (true, true, false, false) {
                return Ok(Err(format!(
                    "`action = {action:?}` names `bucket` and `path` (no `topic`, `table` or `row`)"
                )));
            }
            Target::Object {
                bucket: case.bucket.clone().unwrap_or_default(),
                path: case.path.clone().unwrap_or_default(),
            }
        }
        Op::Join | Op::Send | Op::Track => {
            if given != (false, false, true, false) {
                return Ok(Err(format!(
                    "`action = {action:?}` names `topic` (the channel without `realtime:`; no `bucket`, `path`, `table` or `row`)"
                )));
            }
            Target::Topic(case.topic.clone().unwrap_or_default())
        }
        Op::Receive => {
            let (Some(t), Some(row), (false, false, false, _)) = (&case.table, &case.row, given)
            else {
                return Ok(Err(
                    "`action = \"receive\"` names `table` and `row` (the row's primary key, as `row = { id = 1 }`)".into(),
                ));
            };
            let (schema, name) = match split_table(t) {
                Ok(x) => x,
                Err(m) => return Ok(Err(m)),
            };
            Target::Row {
                schema,
                table: name,
                key: row.clone(),
            }
        }
    };
    let caller = caller(doc, case);
    let member_of = match super::memberships(tx, &caller.role, &case.who).await? {
        Ok(m) => m,
        Err(message) => return Ok(Err(message)),
    };
    let (schema, table) = match &target {
        Target::Object { .. } => ("storage", "objects"),
        Target::Topic(_) => ("realtime", "messages"),
        Target::Row { schema, table, .. } => (schema.as_str(), table.as_str()),
    };
    // The policies this case exercises.
    let exercised: Vec<usize> = policies
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            p.schema == schema
                && p.table == table
                && (p.command == Command::All || p.command == op.command())
                && p.roles
                    .iter()
                    .any(|r| r.name == "public" || member_of.contains(&r.name))
        })
        .map(|(i, _)| i)
        .collect();
    tx.batch_execute("SAVEPOINT doska_case").await?;
    let verdict = match &target {
        Target::Object { bucket, path } => {
            storage_case(
                tx, op, bucket, path, &caller, policies, &exercised, coverage,
            )
            .await
        }
        Target::Row { schema, table, key } => {
            row_case(
                tx, schema, table, key, &caller, policies, &exercised, coverage,
            )
            .await
        }
        Target::Topic(topic) => {
            channel_case(tx, op, topic, &caller, policies, &exercised, coverage).await
        }
    };
    tx.batch_execute("ROLLBACK TO SAVEPOINT doska_case").await?;
    let allowed = match verdict? {
        Ok(a) => a,
        Err(why) => return Ok(Err(why)),
    };
    Ok(match (allowed, case.allowed) {
        (true, true) | (false, false) => Ok(()),
        (false, true) => Err("expected it to be allowed; it was refused".into()),
        (true, false) => Err("expected it to be refused; it was allowed".into()),
    })
}

enum Target {
    Object {
        bucket: String,
        path: String,
    },
    Topic(String),
    Row {
        schema: String,
        table: String,
        key: Map<String, Value>,
    },
}

/// Whether `exprs` all hold (as the admin, with the case's claims) on some row `from_where` selects.
async fn holds(
    tx: &Transaction<'_>,
    exprs: &[&String],
    from_where: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<bool, tokio_postgres::Error> {
    let all = exprs
        .iter()
        .map(|e| format!("coalesce(({e}\n), false)"))
        .collect::<Vec<_>>()
        .join(" and ");
    let all = if all.is_empty() { "true".into() } else { all };
    let row = tx
        .query_one(
            &format!("select coalesce(bool_or({all}), false) {from_where}"),
            params,
        )
        .await?;
    Ok(row.get(0))
}

fn note(coverage: &mut Coverage, i: usize, allows: bool) {
    if allows {
        coverage[i].0 = true;
    } else {
        coverage[i].1 = true;
    }
}

/// Records what each exercised policy said of the case's row; `Err(why)` (the case fails) when
/// evaluating them failed on `what`.
fn note_all(
    coverage: &mut Coverage,
    evaluated: Result<Vec<(usize, bool)>, tokio_postgres::Error>,
    what: &str,
) -> Result<(), String> {
    match evaluated {
        Ok(notes) => {
            notes.into_iter().for_each(|(i, a)| note(coverage, i, a));
            Ok(())
        }
        Err(e) => Err(format!(
            "evaluating the policies on {what} failed: {}",
            describe(&e)
        )),
    }
}

/// `Ok(Ok(allowed))`, or `Ok(Err(why))` when the case itself is wrong.
#[allow(clippy::too_many_arguments)]
async fn storage_case(
    tx: &Transaction<'_>,
    op: Op,
    bucket: &str,
    path: &str,
    caller: &Caller,
    policies: &[PolicyPlan],
    exercised: &[usize],
    coverage: &mut Coverage,
) -> Result<Result<bool, String>, TestError> {
    let existing: Option<Uuid> = tx
        .query_opt(
            "select id from storage.objects where bucket_id = $1 and name = $2",
            &[&bucket, &path],
        )
        .await?
        .map(|r| r.get(0));
    let bucket_known = tx
        .query_opt("select 1 from storage.buckets where id = $1", &[&bucket])
        .await?
        .is_some();
    if !bucket_known {
        return Ok(Err(format!(
            "there is no bucket {bucket:?}: declare it in a policy file's storage section (or insert it in the fixtures)"
        )));
    }
    match (op, existing) {
        (Op::Upload, Some(_)) => {
            return Ok(Err(format!(
                "{bucket}/{path} exists already: an upload creates a new object (use `action = \"overwrite\"`)"
            )));
        }
        (Op::Download | Op::Overwrite | Op::Delete, None) => {
            return Ok(Err(format!(
                "there is no object {bucket}/{path}: insert it into storage.objects in the fixtures"
            )));
        }
        _ => {}
    }
    let sub = caller
        .claims
        .get("sub")
        .and_then(Value::as_str)
        .map(str::to_string);
    let owner = sub.as_deref().and_then(|s| Uuid::parse_str(s).ok());
    with_claims(tx, &caller.claims, None).await?;
    // Coverage on this one object, before the statement runs (as the admin, with the claims). A
    // policy that fails on it (a cast, say) fails the case, not the run.
    let id = existing.unwrap_or_else(Uuid::new_v4);
    tx.batch_execute("SAVEPOINT doska_eval").await?;
    let evaluated = async {
        match op {
            Op::Upload => {
                tx.execute(
                    "insert into storage.objects (id, bucket_id, name, owner, owner_id, version, metadata)
                     values ($1, $2, $3, $4, $5, 'doska-policy-test', '{}')",
                    &[&id, &bucket, &path, &owner, &sub],
                )
                .await?;
            }
            Op::Overwrite => {
                tx.execute(
                    "update storage.objects set owner = $2, owner_id = $3 where id = $1",
                    &[&id, &owner, &sub],
                )
                .await?;
            }
            _ => {}
        }
        let from = "from storage.objects where id = $1";
        let mut notes = Vec::new();
        for &i in exercised {
            let p = &policies[i];
            // Upload: the new row through `with_check`. Otherwise both expressions on the row as the
            // case leaves it (an overwrite makes the caller its owner).
            let exprs: Vec<&String> = match op {
                Op::Upload => p.with_check.iter().collect(),
                _ => [&p.using, &p.with_check].into_iter().flatten().collect(),
            };
            notes.push((i, holds(tx, &exprs, from, &[&id]).await?));
        }
        Ok::<_, tokio_postgres::Error>(notes)
    }
    .await;
    if let Err(why) = note_all(coverage, evaluated, &format!("{bucket}/{path}")) {
        return Ok(Err(why));
    }
    tx.batch_execute("ROLLBACK TO SAVEPOINT doska_eval").await?;
    // The storage core's statement, as the caller.
    act_as(tx, caller).await?;
    let version = Uuid::new_v4().to_string();
    let metadata = json!({});
    let user_metadata: Option<Value> = None;
    let row_params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
        &id,
        &bucket,
        &path,
        &owner,
        &sub,
        &version,
        &metadata,
        &user_metadata,
    ];
    let result = match op {
        Op::Download => tx
            .query(
                "select id from storage.objects where bucket_id = $1 and name = $2",
                &[&bucket, &path],
            )
            .await
            .map(|rows| !rows.is_empty()),
        Op::Delete => tx
            .query(
                "delete from storage.objects where bucket_id = $1 and name = any($2) returning id",
                &[&bucket, &vec![path.to_string()]],
            )
            .await
            .map(|rows| !rows.is_empty()),
        Op::Upload => tx.query(INSERT_SQL, &row_params).await.map(|_| true),
        Op::Overwrite => tx.query(UPSERT_SQL, &row_params).await.map(|_| true),
        _ => unreachable!("storage actions only"),
    };
    Ok(match result {
        Ok(allowed) => Ok(allowed),
        Err(e) if e.code().is_some_and(|c| c.code() == "42501") => Ok(false),
        Err(e) => Err(format!("failed: {}", describe(&e))),
    })
}

#[allow(clippy::too_many_arguments)]
async fn channel_case(
    tx: &Transaction<'_>,
    op: Op,
    topic: &str,
    caller: &Caller,
    policies: &[PolicyPlan],
    exercised: &[usize],
    coverage: &mut Coverage,
) -> Result<Result<bool, String>, TestError> {
    with_claims(tx, &caller.claims, Some(topic)).await?;
    // Coverage on the probe rows realtime itself uses: joining reads either extension, sending
    // writes a broadcast row, tracking a presence row.
    tx.batch_execute("SAVEPOINT doska_eval").await?;
    let evaluated = async {
        let probes = tx.query(PROBE_ROWS, &[&topic]).await?;
        let wanted: Vec<String> = probes
            .iter()
            .filter(|r| match op {
                Op::Send => r.get::<_, &str>(1) == "broadcast",
                Op::Track => r.get::<_, &str>(1) == "presence",
                _ => true,
            })
            .map(|r| r.get(0))
            .collect();
        let from = "from realtime.messages where id::text = any($1)";
        let mut notes = Vec::new();
        for &i in exercised {
            let p = &policies[i];
            let expr = if op == Op::Join {
                &p.using
            } else {
                &p.with_check
            };
            let exprs: Vec<&String> = expr.iter().collect();
            notes.push((i, holds(tx, &exprs, from, &[&wanted]).await?));
        }
        Ok::<_, tokio_postgres::Error>(notes)
    }
    .await;
    if let Err(why) = note_all(coverage, evaluated, &format!("topic {topic:?}")) {
        return Ok(Err(why));
    }
    tx.batch_execute("ROLLBACK TO SAVEPOINT doska_eval").await?;
    let perms = match probe_channel(tx, caller, topic).await {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("the channel probe failed: {}", describe(&e)))),
    };
    Ok(Ok(match op {
        Op::Join => perms.can_join(),
        Op::Send => perms.write_broadcast,
        Op::Track => perms.write_presence,
        _ => unreachable!("channel actions only"),
    }))
}

/// `receive`: realtime's own visibility check of a change of this row (its primary key), as the
/// caller; the table must be published.
#[allow(clippy::too_many_arguments)]
async fn row_case(
    tx: &Transaction<'_>,
    schema: &str,
    table: &str,
    key: &Map<String, Value>,
    caller: &Caller,
    policies: &[PolicyPlan],
    exercised: &[usize],
    coverage: &mut Coverage,
) -> Result<Result<bool, String>, TestError> {
    let published = tx
        .query_opt(
            "select 1 from pg_publication_tables
              where pubname = 'supabase_realtime' and schemaname = $1 and tablename = $2",
            &[&schema, &table],
        )
        .await?
        .is_some();
    if !published {
        return Ok(Err(format!(
            "{schema}.{table} is not in the publication supabase_realtime: no change of it reaches anyone (add it to `[realtime] tables`)"
        )));
    }
    let qualified_name = qualified(schema, table);
    let columns: Vec<ColumnInfo> = tx
        .query(
            "select a.attname::text, t.typname::text, a.atttypid,
                    coalesce(a.attnum = any (i.indkey), false)
               from pg_attribute a join pg_type t on t.oid = a.atttypid
               left join pg_index i on i.indrelid = a.attrelid and i.indisprimary
              where a.attrelid = $1::text::regclass and a.attnum > 0 and not a.attisdropped
              order by a.attnum",
            &[&qualified_name],
        )
        .await?
        .iter()
        .map(|r| ColumnInfo {
            name: r.get(0),
            type_name: r.get(1),
            type_oid: r.get(2),
            key: r.get(3),
        })
        .collect();
    let mut wanted: Vec<&str> = columns
        .iter()
        .filter(|c| c.key)
        .map(|c| c.name.as_str())
        .collect();
    let mut given: Vec<&str> = key.keys().map(String::as_str).collect();
    wanted.sort();
    given.sort();
    if wanted != given {
        return Ok(Err(format!(
            "`row` gives exactly the primary key of {schema}.{table}: {}",
            wanted.join(", ")
        )));
    }
    let change = Change {
        schema: schema.to_string(),
        table: table.to_string(),
        kind: ChangeKind::Insert,
        commit_lsn: Lsn::INVALID,
        commit_timestamp: Utc::now(),
        index_in_tx: 0,
        xid: 0,
        columns: Arc::from(columns),
        record: key.clone(),
        old_record: None,
        unchanged_toast: Vec::new(),
        row_security: true,
    };
    let (sql, param) = single_check(&change);
    let record = Value::Object(key.clone()).to_string();
    let params: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 1] = [(&param, Type::TEXT)];
    with_claims(tx, &caller.claims, None).await?;
    // As the admin: the row is there, and what the exercised policies say of it.
    tx.batch_execute("SAVEPOINT doska_eval").await?;
    let keys: Vec<String> = key.keys().map(|k| crate::db::quote_ident(k)).collect();
    let from = format!(
        "from {qualified_name} where ({}) = (select {} from json_populate_record(null::{qualified_name}, $1::text::json) k)",
        keys.join(", "),
        keys.iter()
            .map(|k| format!("k.{k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let evaluated = async {
        // The check below skips row lookups where RLS does not apply (as for the admin), so
        // whether the row exists is asked on its own.
        let there: bool = tx
            .query_one(&format!("select exists (select 1 {from})"), &[&record])
            .await?
            .get(0);
        let mut notes = Vec::new();
        if there {
            for &i in exercised {
                let exprs: Vec<&String> = policies[i].using.iter().collect();
                notes.push((i, holds(tx, &exprs, &from, &[&record]).await?));
            }
        }
        Ok::<_, tokio_postgres::Error>((there, notes))
    }
    .await;
    if let Ok((false, _)) = evaluated {
        return Ok(Err(format!(
            "there is no row {record} in {schema}.{table}: insert it in the fixtures"
        )));
    }
    let evaluated = evaluated.map(|(_, notes)| notes);
    if let Err(why) = note_all(coverage, evaluated, &format!("{schema}.{table} {record}")) {
        return Ok(Err(why));
    }
    tx.batch_execute("ROLLBACK TO SAVEPOINT doska_eval").await?;
    // As the caller, the statement realtime runs for each subscriber.
    act_as(tx, caller).await?;
    Ok(match tx.query_typed(&sql, &params).await {
        Ok(rows) => Ok(rows.first().is_some_and(|r| r.get::<_, bool>(0))),
        Err(e) if e.code().is_some_and(|c| c.code() == "42501") => Ok(false),
        Err(e) => Err(format!("failed: {}", describe(&e))),
    })
}
