//! Which callers may see a change, decided by PostgreSQL: for each distinct (role, claims)
//! among a change's subscribers, one read-only transaction as that caller checks that the row
//! is visible by primary key (RLS SELECT policies and table privileges apply); for a DELETE,
//! that the caller may read the table at all. All groups of one change go to PostgreSQL
//! pipelined on one connection: one round trip per change, not one per subscriber.
//!
//! Rejects (answers "not visible"): tables the caller lacks SELECT on, rows its policies hide,
//! rows gone since the change, and — for tables without a key — any caller for whom the table
//! has row-level security it does not bypass (there is no key to check the row by).

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Map, Value};
use tokio_postgres::types::{ToSql, Type};

use super::decode::{Change, ChangeKind};
use crate::db::quote_ident;

#[derive(Debug)]
pub enum AuthorizeError {
    Pool(String),
    /// The connection broke mid-check (a denial is not an error; this is).
    Db(tokio_postgres::Error),
}

impl std::fmt::Display for AuthorizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthorizeError::Pool(e) => write!(f, "realtime authorization: no connection: {e}"),
            AuthorizeError::Db(e) => write!(f, "realtime authorization: {e}"),
        }
    }
}

impl std::error::Error for AuthorizeError {}

/// One caller to check: role and claims (JSON text, as `request.jwt.claims` holds it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Who {
    pub role: String,
    pub claims: String,
}

const SET_CALLER: &str = "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true), set_config('statement_timeout', '5000', true)";

/// Table privilege only: what a DELETE needs.
const CAN_READ_TABLE: &str =
    "select coalesce(has_table_privilege(current_user, to_regclass($1), 'SELECT'), false)";

/// No key to find the row by: visible only where RLS does not apply to the caller.
const CAN_READ_UNKEYED: &str = "select coalesce((select has_table_privilege(current_user, c.oid, 'SELECT') \
     and (not c.relrowsecurity or r.rolbypassrls) from pg_class c, pg_roles r \
     where c.oid = to_regclass($1) and r.rolname = current_user), false)";

/// The statement that checks `change` is visible (`$1` the table, `$2` the key as JSON text, when
/// it takes one), and whether it takes the record as `$2`. `doska policies test` runs it too.
pub fn check_sql(change: &Change) -> (String, bool) {
    let table = format!(
        "{}.{}",
        quote_ident(&change.schema),
        quote_ident(&change.table)
    );
    if change.kind == ChangeKind::Delete {
        return (CAN_READ_TABLE.to_string(), false);
    }
    let keys: Vec<String> = change
        .columns
        .iter()
        .filter(|c| c.key && change.record.contains_key(&c.name))
        .map(|c| quote_ident(&c.name))
        .collect();
    if keys.is_empty() {
        return (CAN_READ_UNKEYED.to_string(), false);
    }
    let row = keys
        .iter()
        .map(|k| format!("x.{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let key = keys
        .iter()
        .map(|k| format!("k.{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    // `$1` is unused here but keeps one parameter list for every check statement.
    (
        format!(
            "select $1::text is not null and exists (select 1 from {table} x where ({row}) = \
             (select {key} from json_populate_record(null::{table}, $2::json) k))"
        ),
        true,
    )
}

/// The key columns of a change's record (what a DELETE may reveal, and what finds the row).
pub fn key_only(change: &Change, record: &Map<String, Value>) -> Map<String, Value> {
    change
        .columns
        .iter()
        .filter(|c| c.key)
        .filter_map(|c| record.get(&c.name).map(|v| (c.name.clone(), v.clone())))
        .collect()
}

/// For each caller in `who`, whether it may see `change`. One pooled connection, every check
/// pipelined.
pub async fn visible(
    pool: &deadpool_postgres::Pool,
    change: &Change,
    who: &[Who],
) -> Result<Vec<bool>, AuthorizeError> {
    if who.is_empty() {
        return Ok(Vec::new());
    }
    let client = tokio::time::timeout(Duration::from_secs(10), pool.get())
        .await
        .map_err(|_| AuthorizeError::Pool("timed out".into()))?
        .map_err(|e| AuthorizeError::Pool(e.to_string()))?;
    let (sql, with_record) = check_sql(change);
    let table = format!(
        "{}.{}",
        quote_ident(&change.schema),
        quote_ident(&change.table)
    );
    let record = Value::Object(key_only(change, &change.record)).to_string();
    let client: &tokio_postgres::Client = &client;
    // Each caller: BEGIN; set role and claims; check; ROLLBACK. Polled together, tokio-postgres
    // writes every message before reading any answer, in this order.
    let groups = who.iter().map(|w| {
        let sql = sql.as_str();
        let table = table.as_str();
        let record = record.as_str();
        async move {
            let set: [(&(dyn ToSql + Sync), Type); 2] =
                [(&w.role, Type::TEXT), (&w.claims, Type::TEXT)];
            let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![(&table, Type::TEXT)];
            if with_record {
                params.push((&record, Type::TEXT));
            }
            let (b, s, c, r) = tokio::join!(
                client.batch_execute("BEGIN READ ONLY"),
                client.query_typed(SET_CALLER, &set),
                client.query_typed(sql, &params),
                client.batch_execute("ROLLBACK"),
            );
            (b, s, c, r)
        }
    });
    let results = join_all(groups).await;
    let mut out = Vec::with_capacity(results.len());
    for (b, s, c, r) in results {
        b.map_err(AuthorizeError::Db)?;
        r.map_err(AuthorizeError::Db)?;
        if let Err(e) = &s {
            tracing::debug!(error = %e, "realtime: setting the caller failed");
        }
        if let Err(e) = &c {
            tracing::debug!(error = %e, "realtime: visibility check failed");
        }
        let ok = s.is_ok()
            && c.ok()
                .and_then(|rows| rows.first().and_then(|row| row.try_get::<_, bool>(0).ok()))
                .unwrap_or(false);
        out.push(ok);
    }
    Ok(out)
}

/// What RLS on `realtime.messages` lets a caller do on a private channel's topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelPermissions {
    pub read_broadcast: bool,
    pub read_presence: bool,
    pub write_broadcast: bool,
    pub write_presence: bool,
}

impl ChannelPermissions {
    /// Joining needs read access to broadcast or presence (Supabase's rule).
    pub fn can_join(&self) -> bool {
        self.read_broadcast || self.read_presence
    }
}

/// The probe rows (broadcast, presence) inserted as admin: `doska policies test` inserts the same.
pub const PROBE_ROWS: &str = "insert into realtime.messages (topic, extension, private) \
     values ($1, 'broadcast', true), ($1, 'presence', true) returning id::text, extension";
const SET_CHANNEL_CALLER: &str = "select set_config('role', $1, true), \
     set_config('request.jwt.claims', $2, true), set_config('realtime.topic', $3, true), \
     set_config('statement_timeout', '5000', true)";
const READABLE: &str = "select extension from realtime.messages where id::text = any($1)";
const WRITE_PROBE: &str =
    "insert into realtime.messages (topic, extension, private) values ($1, $2, true)";

/// Asks PostgreSQL, as the caller, what its policies on `realtime.messages` allow on `topic`
/// (the channel name without `realtime:`). Supabase's way: probe rows are inserted as admin,
/// read back as the caller, then written as the caller; everything is rolled back, so nothing
/// reaches the replication stream.
pub async fn channel_permissions(
    admin: &deadpool_postgres::Pool,
    who: &Who,
    topic: &str,
) -> Result<ChannelPermissions, AuthorizeError> {
    let mut client = tokio::time::timeout(Duration::from_secs(10), admin.get())
        .await
        .map_err(|_| AuthorizeError::Pool("timed out".into()))?
        .map_err(|e| AuthorizeError::Pool(e.to_string()))?;
    let tx = client.transaction().await.map_err(AuthorizeError::Db)?;
    let perms = probe_channel(&tx, who, topic)
        .await
        .map_err(AuthorizeError::Db)?;
    tx.rollback().await.map_err(AuthorizeError::Db)?;
    Ok(perms)
}

/// The probe of [`channel_permissions`] inside a transaction the caller rolls back (`doska
/// policies test` runs it in a savepoint of its own transaction). Leaves the caller's role set.
pub async fn probe_channel(
    tx: &tokio_postgres::Transaction<'_>,
    who: &Who,
    topic: &str,
) -> Result<ChannelPermissions, tokio_postgres::Error> {
    let probes = tx.query(PROBE_ROWS, &[&topic]).await?;
    let ids: Vec<String> = probes.iter().map(|r| r.get(0)).collect();
    tx.query(SET_CHANNEL_CALLER, &[&who.role, &who.claims, &topic])
        .await?;
    let mut perms = ChannelPermissions::default();
    // A caller without SELECT on the table reads nothing; that is an answer, not an error.
    tx.batch_execute("savepoint probe").await?;
    match tx.query(READABLE, &[&ids]).await {
        Ok(rows) => {
            for r in rows {
                match r.get::<_, &str>(0) {
                    "broadcast" => perms.read_broadcast = true,
                    "presence" => perms.read_presence = true,
                    _ => {}
                }
            }
        }
        Err(_) => tx.batch_execute("rollback to savepoint probe").await?,
    }
    for (extension, flag) in [
        ("broadcast", &mut perms.write_broadcast),
        ("presence", &mut perms.write_presence),
    ] {
        tx.batch_execute("savepoint probe").await?;
        *flag = tx.execute(WRITE_PROBE, &[&topic, &extension]).await.is_ok();
        tx.batch_execute("rollback to savepoint probe").await?;
    }
    Ok(perms)
}
