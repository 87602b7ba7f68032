//! Which callers may see a change, decided by PostgreSQL: for each distinct (role, claims)
//! among a change's subscribers, one read-only transaction as that caller checks that the row
//! is visible by primary key (RLS SELECT policies and table privileges apply); for a DELETE,
//! that the caller may read the table at all. Changes are checked in batches: per caller one
//! transaction with one statement per table covering all its rows, and every caller's
//! transaction pipelined on one connection — one round trip per batch of changes, never one
//! per subscriber or per change.
//!
//! Rejects (answers "not visible"): tables the caller lacks SELECT on, rows its policies hide,
//! rows gone since the change, and — for tables without a key — any caller for whom the table
//! has row-level security it does not bypass (there is no key to check the row by).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio_postgres::types::{ToSql, Type};

use super::decode::{Change, ChangeKind};
use crate::db::{
    caller::{Caller, SET_CALLER, SET_CHANNEL_CALLER},
    ordered::join_in_order,
    quote_ident, quote_literal,
};

#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error("realtime authorization: no connection: {0}")]
    Pool(String),
    /// The connection broke mid-check (a denial is not an error; this is).
    #[error("realtime authorization: {0}")]
    Db(tokio_postgres::Error),
    /// A check failed for a reason that may pass ([`transient`]): the batch is checked again.
    #[error("realtime authorization: a check failed and will be asked again: {0}")]
    Transient(tokio_postgres::Error),
}

/// How long one check may run (`statement_timeout`): a policy that hangs must not stall delivery.
const CHECK_TIMEOUT: &str = "5000";

/// What PostgreSQL answered for a batch: `allowed[c][j]` for change `c` and its `j`-th asked
/// caller, and the snapshots taken before the checks ran, one per connection they ran on (none
/// when nothing was asked).
#[derive(Debug)]
pub struct Answers {
    pub allowed: Vec<Vec<bool>>,
    pub snapshots: Vec<Snapshot>,
}

impl Answers {
    /// Whether the checks could see transaction `xid`'s rows. PostgreSQL may hand a commit to
    /// the WAL reader a moment before other sessions see it; until then a row check's "no"
    /// means "not yet".
    pub fn saw_commit(&self, xid: u32) -> bool {
        self.snapshots.iter().all(|s| s.sees(xid))
    }
}

/// Which transactions a snapshot sees as finished: `pg_current_snapshot()`, `xmin:xmax:xip,…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    xmin: u64,
    xmax: u64,
    xip: Vec<u64>,
}

impl Snapshot {
    /// `None` when the text is not `xmin:xmax:xip,…`.
    pub fn parse(text: &str) -> Option<Snapshot> {
        let mut parts = text.splitn(3, ':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<u64>>>()?,
        };
        (xmin <= xmax).then_some(Snapshot { xmin, xmax, xip })
    }

    /// Whether transaction `xid` (32 bits, as the WAL names it; 0 = unknown, taken as seen) had
    /// finished when the snapshot was taken. A 32-bit xid is placed in the 64-bit space by its
    /// distance below `xmax`, PostgreSQL's modulo-2^32 comparison.
    pub fn sees(&self, xid: u32) -> bool {
        if xid == 0 {
            return true;
        }
        #[allow(clippy::cast_possible_truncation)]
        let behind = (self.xmax as u32).wrapping_sub(xid);
        if behind == 0 || behind > 1 << 31 {
            // At or past xmax: it had not finished yet.
            return false;
        }
        let Some(full) = self.xmax.checked_sub(u64::from(behind)) else {
            // Older than the first transaction ever: long finished.
            return true;
        };
        full < self.xmin || !self.xip.contains(&full)
    }
}

const SNAPSHOT: &str = "select pg_current_snapshot()::text";

/// Table privilege only: what a DELETE needs.
const CAN_READ_TABLE: &str =
    "select coalesce(has_table_privilege(current_user, to_regclass($1), 'SELECT'), false)";

/// No key to find the row by: visible only where RLS does not apply to the caller.
const CAN_READ_UNKEYED: &str = "select coalesce((select has_table_privilege(current_user, c.oid, 'SELECT') \
     and (not c.relrowsecurity or r.rolbypassrls) from pg_class c, pg_roles r \
     where c.oid = to_regclass($1) and r.rolname = current_user), false)";

/// How one change is checked; changes with equal checks share one statement per caller.
#[derive(Debug, Clone)]
enum Check {
    /// INSERT/UPDATE with a key: the rows must be visible by key. The statement takes a JSON
    /// array of key records as `$1` and returns the (0-based) positions of the visible ones.
    Rows(String),
    /// A table-wide answer (DELETE: table privilege; no key: privilege and no RLS), `$1` the
    /// table's name.
    Table(&'static str, String),
}

fn check_sql(check: &Check) -> &str {
    match check {
        Check::Rows(sql) => sql,
        Check::Table(sql, _) => sql,
    }
}

/// The statement that decides whether the caller in force may see `change`, and its one text
/// parameter; it answers one boolean. It is the statement [`visible_batch`] runs, for this one
/// change. `doska policies test` runs it too.
pub fn single_check(change: &Change) -> (String, String) {
    match check_for(change) {
        Check::Rows(sql) => (
            format!("select exists ({sql})"),
            key_records(std::iter::once(change)),
        ),
        Check::Table(sql, table) => (sql.to_string(), table),
    }
}

/// What decides a change's check: its table, whether it is a DELETE, and which key columns its
/// record holds. Changes with equal keys share one check (and its SQL is written once).
#[derive(PartialEq, Eq, Hash)]
struct CheckKey<'a> {
    schema: &'a str,
    table: &'a str,
    delete: bool,
    keys: Vec<&'a str>,
}

impl<'a> CheckKey<'a> {
    fn of(change: &'a Change) -> CheckKey<'a> {
        let delete = change.kind == ChangeKind::Delete;
        let keys = if delete {
            Vec::new()
        } else {
            change
                .columns
                .iter()
                .filter(|c| c.key && change.record.contains_key(&c.name))
                .map(|c| c.name.as_str())
                .collect()
        };
        CheckKey {
            schema: &change.schema,
            table: &change.table,
            delete,
            keys,
        }
    }
}

/// The check `change` needs.
fn check_for(change: &Change) -> Check {
    check_of(&CheckKey::of(change))
}

fn check_of(key: &CheckKey<'_>) -> Check {
    let table = format!("{}.{}", quote_ident(key.schema), quote_ident(key.table));
    if key.delete {
        return Check::Table(CAN_READ_TABLE, table);
    }
    let keys: Vec<String> = key.keys.iter().map(|k| quote_ident(k)).collect();
    if keys.is_empty() {
        return Check::Table(CAN_READ_UNKEYED, table);
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
    // Inside the subquery `k` joins `x`, so each key is looked up by index. Where
    // row-level security does not apply to the caller (no RLS on the table, its owner, a role
    // that bypasses it) PostgreSQL answers that once for the statement and no row is looked up,
    // as Supabase does; the table is still read in the statement, so its privileges apply.
    let name = quote_literal(&table);
    Check::Rows(format!(
        "select (o.i - 1)::int from json_array_elements($1::json) with ordinality o(v, i) \
         where (select not row_security_active({name}::regclass)) \
         or exists (select 1 from json_populate_record(null::{table}, o.v) k, {table} x \
                    where ({row}) = ({key}))"
    ))
}

/// The key records of `changes` as a JSON array (a row check's parameter), written straight
/// from their records.
fn key_records<'a>(changes: impl Iterator<Item = &'a Change>) -> String {
    struct Keys<'a>(&'a Change);
    impl serde::Serialize for Keys<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(key_entries(self.0, &self.0.record))
        }
    }
    let keys: Vec<Keys<'_>> = changes.map(Keys).collect();
    serde_json::to_string(&keys).expect("key records serialize to JSON")
}

/// The key columns of `record` that it holds, by name, in the table's column order.
fn key_entries<'a>(
    change: &'a Change,
    record: &'a Map<String, Value>,
) -> impl Iterator<Item = (&'a String, &'a Value)> {
    change
        .columns
        .iter()
        .filter(|c| c.key)
        .filter_map(|c| record.get(&c.name).map(|v| (&c.name, v)))
}

/// The key columns of a change's record (what a DELETE may reveal, and what finds the row).
pub fn key_only(change: &Change, record: &Map<String, Value>) -> Map<String, Value> {
    key_entries(change, record)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// For each caller in `who`, whether it may see `change` (`allowed[0][j]`). One pooled
/// connection, every check pipelined.
pub async fn visible(
    pool: &deadpool_postgres::Pool,
    change: &Change,
    who: &[Caller],
) -> Result<Answers, AuthorizeError> {
    let asks: Vec<usize> = (0..who.len()).collect();
    let mut answers = visible_batch(pool, &[change], who, &[asks]).await?;
    Ok(Answers {
        allowed: vec![answers.allowed.pop().unwrap_or_default()],
        snapshots: answers.snapshots,
    })
}

/// One statement of a caller's transaction: which check, on which of the batch's changes.
struct Statement<'a> {
    check: &'a Check,
    /// Which of the batch's distinct checks `check` is.
    ix: usize,
    changes: Vec<usize>,
}

/// One caller's check statement.
#[derive(Clone)]
struct Unit<'a> {
    who: &'a Caller,
    w: usize,
    statement: &'a Statement<'a>,
    param: &'a String,
}

/// What one unit answered.
enum Outcome {
    Rows(Vec<tokio_postgres::Row>),
    /// Its own statement was refused (no privilege, a role it may not become, a policy that
    /// raises or times out): not visible.
    Failed,
    /// Not answered: an earlier statement of a shared transaction failed, or its own failed
    /// for a reason that may pass. Asked again in a transaction of its own.
    Aborted,
}

/// The connection and statements the units run with.
struct Ctx<'a> {
    client: &'a tokio_postgres::Client,
    set_caller: &'a tokio_postgres::Statement,
    /// By the check's index among the batch's distinct checks.
    prepared: &'a HashMap<usize, Option<tokio_postgres::Statement>>,
}

impl Ctx<'_> {
    /// Sets the unit's caller, then runs its check, as two pipelined statements.
    async fn unit(
        &self,
        u: &Unit<'_>,
    ) -> (
        Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>,
        Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>,
    ) {
        let client = self.client;
        let set: [&(dyn ToSql + Sync); 3] = [&u.who.role, &u.who.claims.text(), &CHECK_TIMEOUT];
        let check = async move {
            match &self.prepared[&u.statement.ix] {
                Some(st) => client.query(st, &[u.param as &(dyn ToSql + Sync)]).await,
                None => {
                    let typed: [(&(dyn ToSql + Sync), Type); 1] = [(u.param, Type::TEXT)];
                    client
                        .query_typed(check_sql(u.statement.check), &typed)
                        .await
                }
            }
        };
        tokio::join!(client.query(self.set_caller, &set), check)
    }

    /// Runs `units` pipelined — all in one read-only transaction (`shared`), or each in its
    /// own — and rolls back. tokio-postgres writes a message when its future is first polled:
    /// `join_in_order` polls every unit before the ROLLBACK, so every message goes out before
    /// any answer is read, in this order.
    async fn run(&self, units: &[Unit<'_>], shared: bool) -> Result<Vec<Outcome>, AuthorizeError> {
        let client = self.client;
        let results = if shared {
            let (b, results, r) = tokio::join!(
                client.batch_execute("BEGIN READ ONLY"),
                join_in_order(units.iter().map(|u| self.unit(u))),
                client.batch_execute("ROLLBACK"),
            );
            b.map_err(AuthorizeError::Db)?;
            r.map_err(AuthorizeError::Db)?;
            results
        } else {
            let each = units.iter().map(|u| async move {
                let (b, result, r) = tokio::join!(
                    client.batch_execute("BEGIN READ ONLY"),
                    self.unit(u),
                    client.batch_execute("ROLLBACK"),
                );
                (b, result, r)
            });
            let mut results = Vec::with_capacity(units.len());
            for (b, result, r) in join_in_order(each).await {
                b.map_err(AuthorizeError::Db)?;
                r.map_err(AuthorizeError::Db)?;
                results.push(result);
            }
            results
        };
        let aborted = |e: &tokio_postgres::Error| {
            e.code() == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
        };
        let mut outcomes = Vec::with_capacity(results.len());
        for (s, c) in results {
            let e = match (s, c) {
                (Ok(_), Ok(rows)) => {
                    outcomes.push(Outcome::Rows(rows));
                    continue;
                }
                (Err(e), _) | (Ok(_), Err(e)) => e,
            };
            // Not answered yet: asked again, each in its own transaction. A unit that fails
            // there for a passing reason fails the batch, which is checked again whole.
            if aborted(&e) || (shared && transient(&e)) {
                outcomes.push(Outcome::Aborted);
            } else if transient(&e) {
                return Err(AuthorizeError::Transient(e));
            } else {
                tracing::debug!(error = ?e, "realtime: visibility check refused");
                outcomes.push(Outcome::Failed);
            }
        }
        Ok(outcomes)
    }
}

/// Whether a check's error says nothing about the caller's access and may pass when asked again:
/// a broken connection, a transaction rolled back (serialization, deadlock), resources or I/O
/// short, PostgreSQL's internal errors. Everything else — no privilege, a policy that raises or
/// runs past the check's statement timeout — is the caller's answer: not visible.
fn transient(e: &tokio_postgres::Error) -> bool {
    let Some(code) = e.code() else {
        return true;
    };
    matches!(&code.code()[..2], "08" | "40" | "53" | "58" | "XX")
}

/// For many changes at once: `asks[c]` lists the callers (indices into `who`) to check
/// `changes[c]` for; the answer `[c][j]` is whether `who[asks[c][j]]` may see it.
///
/// Each distinct caller gets, per table, two statements — set role and claims, then one check
/// covering all its rows of that table — so PostgreSQL decides every row as that caller with
/// the settings fixed for the statement. All of them run in one read-only transaction, rolled
/// back, pipelined on one connection: one round trip for the whole batch (more than
/// [`SPLIT_AT`] statements are split in two halves, each so on a connection of its own, checked
/// at once). If a statement fails
/// (a caller without privilege on the table), the ones after it are asked again, each in its
/// own transaction: a second round trip, never a wrong answer. A check PostgreSQL refuses (no
/// privilege, a policy that raises or times out) answers "not visible" for what it covered; one
/// that fails for a reason that may pass ([`transient`]) or a broken connection is an error, and
/// the caller checks the batch again.
pub async fn visible_batch(
    pool: &deadpool_postgres::Pool,
    changes: &[&Change],
    who: &[Caller],
    asks: &[Vec<usize>],
) -> Result<Answers, AuthorizeError> {
    let mut answers: Vec<Vec<bool>> = asks.iter().map(|a| vec![false; a.len()]).collect();
    if asks.iter().all(Vec::is_empty) {
        return Ok(Answers {
            allowed: answers,
            snapshots: Vec::new(),
        });
    }
    // Each change's check, as an index into the batch's distinct checks.
    let mut distinct: Vec<Check> = Vec::new();
    let mut index: HashMap<CheckKey<'_>, usize> = HashMap::new();
    let checks: Vec<usize> = changes
        .iter()
        .map(|c| {
            *index.entry(CheckKey::of(c)).or_insert_with_key(|key| {
                distinct.push(check_of(key));
                distinct.len() - 1
            })
        })
        .collect();
    // Per caller, its statements in first-seen order.
    let mut plans: Vec<Vec<Statement<'_>>> = (0..who.len()).map(|_| Vec::new()).collect();
    for (c, ask) in asks.iter().enumerate() {
        for &w in ask {
            let plan = &mut plans[w];
            match plan.iter_mut().find(|s| s.ix == checks[c]) {
                Some(s) => s.changes.push(c),
                None => plan.push(Statement {
                    check: &distinct[checks[c]],
                    ix: checks[c],
                    changes: vec![c],
                }),
            }
        }
    }
    // The parameter of each statement: the key records of its rows, or the table name.
    let params: Vec<Vec<String>> = plans
        .iter()
        .map(|plan| {
            plan.iter()
                .map(|s| match s.check {
                    Check::Rows(_) => key_records(s.changes.iter().map(|&c| changes[c])),
                    Check::Table(_, table) => table.clone(),
                })
                .collect()
        })
        .collect();
    let units: Vec<Unit<'_>> = plans
        .iter()
        .enumerate()
        .flat_map(|(w, plan)| {
            plan.iter()
                .zip(&params[w])
                .map(move |(statement, param)| Unit {
                    who: &who[w],
                    w,
                    statement,
                    param,
                })
        })
        .collect();
    // Many units are split over two connections: two backends check them at once.
    let per = if units.len() >= SPLIT_AT {
        units.len().div_ceil(2)
    } else {
        units.len()
    };
    let mut snapshots = Vec::new();
    let mut outcomes = Vec::with_capacity(units.len());
    for part in join_in_order(units.chunks(per).map(|part| check_part(pool, part))).await {
        let (snapshot, part) = part?;
        snapshots.extend(snapshot);
        outcomes.extend(part);
    }
    for (unit, outcome) in units.iter().zip(outcomes) {
        let Outcome::Rows(rows) = outcome else {
            continue;
        };
        let statement = unit.statement;
        let seen: Vec<usize> = match statement.check {
            Check::Rows(_) => rows
                .iter()
                .filter_map(|row| row.try_get::<_, i32>(0).ok())
                .filter_map(|i| statement.changes.get(usize::try_from(i).ok()?).copied())
                .collect(),
            Check::Table(..) => {
                let ok = rows
                    .first()
                    .and_then(|row| row.try_get::<_, bool>(0).ok())
                    .unwrap_or(false);
                if ok {
                    statement.changes.clone()
                } else {
                    Vec::new()
                }
            }
        };
        for c in seen {
            if let Some(j) = asks[c].iter().position(|&x| x == unit.w) {
                answers[c][j] = true;
            }
        }
    }
    Ok(Answers {
        allowed: answers,
        snapshots,
    })
}

/// Fewer units than this run on one connection; more are split over two.
const SPLIT_AT: usize = 64;

/// Checks `units` on one pooled connection: the snapshot, then every unit in one read-only
/// transaction, all pipelined; the units a failed statement left unanswered are asked again,
/// each in a transaction of its own.
async fn check_part(
    pool: &deadpool_postgres::Pool,
    units: &[Unit<'_>],
) -> Result<(Option<Snapshot>, Vec<Outcome>), AuthorizeError> {
    let client = tokio::time::timeout(Duration::from_secs(10), pool.get())
        .await
        .map_err(|_| AuthorizeError::Pool("timed out".into()))?
        .map_err(|e| AuthorizeError::Pool(e.to_string()))?;
    // Statements are prepared once per connection and reused: only binds go out per batch.
    let set_caller = client
        .prepare_typed_cached(SET_CALLER, &[Type::TEXT, Type::TEXT, Type::TEXT])
        .await
        .map_err(AuthorizeError::Db)?;
    let snapshot_statement = client
        .prepare_typed_cached(SNAPSHOT, &[])
        .await
        .map_err(AuthorizeError::Db)?;
    // A check statement that cannot be prepared outside the caller's role (a schema only the
    // caller may use) is sent unprepared, parsed as the caller.
    let mut prepared: HashMap<usize, Option<tokio_postgres::Statement>> = HashMap::new();
    for u in units {
        if let std::collections::hash_map::Entry::Vacant(slot) = prepared.entry(u.statement.ix) {
            let st = client
                .prepare_typed_cached(check_sql(u.statement.check), &[Type::TEXT])
                .await
                .ok();
            slot.insert(st);
        }
    }
    let client: &tokio_postgres::Client = &client;
    let ctx = Ctx {
        client,
        set_caller: &set_caller,
        prepared: &prepared,
    };
    // First every unit in one transaction (each sets its own caller before its check). A
    // statement that fails aborts the rest of that transaction: those units are asked again,
    // each in its own transaction, so one caller's missing privilege never answers for another.
    // The snapshot is taken before any check runs: a transaction it sees as committed is seen by
    // every check after it.
    let (snapshot, outcomes) = tokio::join!(
        client.query_one(&snapshot_statement, &[]),
        ctx.run(units, true)
    );
    let snapshot = Snapshot::parse(snapshot.map_err(AuthorizeError::Db)?.get::<_, &str>(0));
    let mut outcomes = outcomes?;
    let aborted: Vec<usize> = (0..units.len())
        .filter(|&i| matches!(outcomes[i], Outcome::Aborted))
        .collect();
    if !aborted.is_empty() {
        let again: Vec<Unit<'_>> = aborted.iter().map(|&i| units[i].clone()).collect();
        for (i, outcome) in aborted.into_iter().zip(ctx.run(&again, false).await?) {
            outcomes[i] = outcome;
        }
    }
    Ok((snapshot, outcomes))
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
const READABLE: &str = "select extension from realtime.messages where id::text = any($1)";
const WRITE_PROBE: &str =
    "insert into realtime.messages (topic, extension, private) values ($1, $2, true)";

/// Asks PostgreSQL, as the caller, what its policies on `realtime.messages` allow on `topic`
/// (the channel name without `realtime:`). Supabase's way: probe rows are inserted as admin,
/// read back as the caller, then written as the caller; everything is rolled back, so nothing
/// reaches the replication stream.
pub async fn channel_permissions(
    admin: &deadpool_postgres::Pool,
    who: &Caller,
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
    who: &Caller,
    topic: &str,
) -> Result<ChannelPermissions, tokio_postgres::Error> {
    let probes = tx.query(PROBE_ROWS, &[&topic]).await?;
    let ids: Vec<String> = probes.iter().map(|r| r.get(0)).collect();
    tx.query(
        SET_CHANNEL_CALLER,
        &[&who.role, &who.claims.text(), &topic, &CHECK_TIMEOUT],
    )
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

#[cfg(test)]
mod snapshot_tests {
    use super::Snapshot;

    #[test]
    fn snapshots_parse_and_place_32_bit_xids() {
        let s = Snapshot::parse("100:110:102,105").unwrap();
        assert!(s.sees(99) && s.sees(100) && s.sees(101) && s.sees(104) && s.sees(109));
        assert!(!s.sees(102) && !s.sees(105), "in progress");
        assert!(!s.sees(110) && !s.sees(111), "at or past xmax");
        assert!(s.sees(0), "unknown counts as seen");
        let empty = Snapshot::parse("7:7:").unwrap();
        assert!(empty.sees(6) && !empty.sees(7));
        // Epoch 1: xmax = 2^32 + 10. xid 5 is 2^32 + 5 (seen), 4_294_967_290 is epoch 0 (seen).
        let e = (1u64 << 32) + 10;
        let s = Snapshot::parse(&format!("{}:{}:{}", e - 20, e, e - 3)).unwrap();
        assert!(s.sees(5) && s.sees(4_294_967_290));
        assert!(!s.sees(7), "2^32 + 7 is in progress");
        assert!(!s.sees(10) && !s.sees(11));
        for bad in ["", "1", "1:2", "x:2:", "3:2:", "1:2:a", "1:2:3,"] {
            assert!(Snapshot::parse(bad).is_none(), "{bad:?} accepted");
        }
    }
}
