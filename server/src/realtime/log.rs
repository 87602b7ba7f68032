//! The durable change log: a bounded table (`doska.realtime_log`, outside the publication) of
//! every decoded database change at its [`Position`] and of every broadcast on a private channel,
//! so a client that reconnects within the window gets what it missed (`since`, and
//! `broadcast.replay`). Written in one statement per batch on the admin pool before the batch is
//! delivered; trimmed by age and row count, raising the floor below which a client must refetch.
//!
//! Rejects: positions that are not `X/X:N` (a [`ParsePositionError`]); log rows it cannot read
//! back as a change (skipped with a warning: they come from a future or corrupt entry).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio_postgres::types::Type;

use super::decode::{Change, ChangeKind, ColumnInfo};
pub use super::lsn::{ParsePositionError, Position};
use super::phoenix::BroadcastBody;

/// Where a change sits: its transaction's commit LSN and its index within it.
impl Position {
    pub fn of(change: &Change) -> Position {
        Position {
            lsn: change.commit_lsn,
            index: change.index_in_tx,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("realtime log: no connection: {0}")]
    Pool(String),
    #[error("realtime log: {0}")]
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for LogError {
    fn from(e: tokio_postgres::Error) -> Self {
        LogError::Db(e)
    }
}

async fn client(pool: &deadpool_postgres::Pool) -> Result<deadpool_postgres::Object, LogError> {
    tokio::time::timeout(Duration::from_secs(10), pool.get())
        .await
        .map_err(|_| LogError::Pool("timed out".into()))?
        .map_err(|e| LogError::Pool(e.to_string()))
}

/// A change as the log stores it: its position, transaction and table, and everything
/// [`change_from_entry`] needs to rebuild it. Serialized straight from the change, no copies.
#[derive(Serialize)]
struct Entry<'a> {
    lsn: String,
    idx: u32,
    xid: u32,
    schema: &'a str,
    table: &'a str,
    kind: &'static str,
    commit_timestamp: String,
    columns: Vec<EntryColumn<'a>>,
    record: &'a Map<String, Value>,
    old_record: Option<&'a Map<String, Value>>,
    unchanged_toast: &'a [String],
    rls: bool,
}

#[derive(Serialize)]
struct EntryColumn<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    type_name: &'a str,
    oid: u32,
    key: bool,
}

/// Appends `change`'s log entry (a JSON object) to `out`.
pub fn write_entry(out: &mut Vec<u8>, change: &Change) {
    let pos = Position::of(change);
    let entry = Entry {
        lsn: pos.lsn.to_string(),
        idx: pos.index,
        xid: change.xid,
        schema: &change.schema,
        table: &change.table,
        kind: change.kind.as_str(),
        commit_timestamp: change
            .commit_timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        columns: change
            .columns
            .iter()
            .map(|c| EntryColumn {
                name: &c.name,
                type_name: &c.type_name,
                oid: c.type_oid,
                key: c.key,
            })
            .collect(),
        record: &change.record,
        old_record: change.old_record.as_ref(),
        unchanged_toast: &change.unchanged_toast,
        rls: change.row_security,
    };
    serde_json::to_writer(out, &entry).expect("a change serializes to JSON");
}

/// Rebuilds a logged change; `None` when the entry is not one this version wrote.
pub fn change_from_entry(entry: &Value) -> Option<Change> {
    let position = parse_row_position(entry.get("lsn")?.as_str()?, entry.get("idx")?.as_i64()?)?;
    let kind = match entry.get("kind")?.as_str()? {
        "INSERT" => ChangeKind::Insert,
        "UPDATE" => ChangeKind::Update,
        "DELETE" => ChangeKind::Delete,
        _ => return None,
    };
    let commit_timestamp =
        chrono::DateTime::parse_from_rfc3339(entry.get("commit_timestamp")?.as_str()?)
            .ok()?
            .with_timezone(&chrono::Utc);
    let mut columns = Vec::new();
    for c in entry.get("columns")?.as_array()? {
        columns.push(ColumnInfo {
            name: c.get("name")?.as_str()?.to_string(),
            type_name: c.get("type")?.as_str()?.to_string(),
            type_oid: u32::try_from(c.get("oid")?.as_u64()?).ok()?,
            key: c.get("key")?.as_bool()?,
        });
    }
    // Entries from before `rls` was logged: take row security as on, and a key of every column
    // (pgoutput's flags under identity FULL) as no key, so their old rows reveal nothing more.
    let row_security = entry.get("rls").and_then(Value::as_bool);
    if row_security.is_none() && columns.len() > 1 && columns.iter().all(|c| c.key) {
        for c in &mut columns {
            c.key = false;
        }
    }
    let object = |v: &Value| v.as_object().cloned();
    Some(Change {
        schema: entry.get("schema")?.as_str()?.to_string(),
        table: entry.get("table")?.as_str()?.to_string(),
        kind,
        commit_lsn: position.lsn,
        commit_timestamp,
        index_in_tx: position.index,
        xid: entry
            .get("xid")
            .and_then(Value::as_u64)
            .and_then(|x| u32::try_from(x).ok())
            .unwrap_or(0),
        columns: Arc::from(columns),
        record: object(entry.get("record")?)?,
        old_record: match entry.get("old_record") {
            None | Some(Value::Null) => None,
            Some(v) => Some(object(v)?),
        },
        unchanged_toast: entry
            .get("unchanged_toast")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        row_security: row_security.unwrap_or(true),
    })
}

/// A private broadcast from SQL (`realtime.send`): the insert into `realtime.messages` carries
/// its topic, event, payload and id.
fn sql_broadcast_entry(change: &Change) -> Option<(String, Value)> {
    let r = &change.record;
    if change.kind != ChangeKind::Insert
        || r.get("extension").and_then(Value::as_str) != Some("broadcast")
        || r.get("private").and_then(Value::as_bool) != Some(true)
    {
        return None;
    }
    let topic = r.get("topic")?.as_str()?.to_string();
    let event = r.get("event")?.as_str()?;
    Some((
        topic,
        json!({
            "event": event,
            "payload": r.get("payload").cloned().unwrap_or(Value::Null),
            "id": r.get("id").cloned().unwrap_or(Value::Null),
        }),
    ))
}

fn broadcast_entry(event: &str, body: &BroadcastBody) -> Value {
    let id = uuid::Uuid::new_v4().to_string();
    match body {
        BroadcastBody::Json(payload) => json!({"event": event, "payload": payload, "id": id}),
        BroadcastBody::Binary(bytes) => json!({
            "event": event,
            "binary": base64::engine::general_purpose::STANDARD.encode(bytes),
            "id": id,
        }),
    }
}

/// One batch row: positions of its first and last change, how many, and the entries. A batch
/// whose last change is not past everything logged (PostgreSQL resending what was logged but not
/// acknowledged) is not logged again; a batch that only starts with such changes is, and readers
/// skip what they saw. In the same statement: the newest position logged before it and the floor
/// (the writer's instance may hand the batch to its own subscribers without reading it back when
/// it delivered everything before), and a `NOTIFY` ([`CHANNEL`], the batch's last position) that
/// wakes every instance's [log follower](super::follow) once the row commits.
const APPEND_CHANGES: &str = "with prev as (
       select last_lsn, last_idx from doska.realtime_changes
       order by last_lsn desc, last_idx desc limit 1),
     ins as (
       insert into doska.realtime_changes (first_lsn, first_idx, last_lsn, last_idx, n, upto, entries)
       select $1::text::pg_lsn, $2, $3::text::pg_lsn, $4, $5,
         coalesce((select upto from doska.realtime_changes order by seq desc limit 1), 0) + $5, $6
       where not exists (select 1 from prev
                         where (prev.last_lsn, prev.last_idx) >= ($3::text::pg_lsn, $4))
       returning seq),
     notified as (select pg_notify('doska_realtime_log', $3 || ':' || $4) from ins)
     select (select last_lsn::text from prev), (select last_idx from prev),
            f.commit_lsn::text, f.idx,
            (select count(*) from ins)::int4, (select count(*) from notified)::int4
     from doska.realtime_log_floor f";

/// The `LISTEN`/`NOTIFY` channel on which a logged batch is announced (payload: its last
/// position, `X/X:N`).
pub const CHANNEL: &str = "doska_realtime_log";

/// The newest position in the log, or the floor when that is higher (an empty or trimmed log).
const TAIL: &str = "select (select last_lsn::text from doska.realtime_changes
                            order by last_lsn desc, last_idx desc limit 1),
        (select last_idx from doska.realtime_changes order by last_lsn desc, last_idx desc limit 1),
        f.commit_lsn::text, f.idx
     from doska.realtime_log_floor f";

/// The higher of a row's (newest logged, floor) positions in columns 0..4.
fn tail_of(row: &tokio_postgres::Row) -> Position {
    let newest = match (row.get::<_, Option<&str>>(0), row.get::<_, Option<i64>>(1)) {
        (Some(lsn), Some(idx)) => parse_row_position(lsn, idx).unwrap_or_default(),
        _ => Position::default(),
    };
    let floor = parse_row_position(row.get(2), row.get(3)).unwrap_or_default();
    newest.max(floor)
}

/// Where the log ends: the newest logged position, or the floor when that is higher. A log
/// follower starting now delivers what comes after it.
pub async fn tail(admin: &deadpool_postgres::Pool) -> Result<Position, LogError> {
    let row = client(admin).await?.query_one(TAIL, &[]).await?;
    Ok(tail_of(&row))
}

/// What [`append`] did with a batch's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Where the log ended before the batch (the newest position, or the floor when higher);
    /// `None` when the batch had no change to log (only `realtime.messages` inserts).
    pub before: Option<Position>,
    /// Every row of the batch was new: none had been logged already (by an instance that held
    /// the slot before, or before a reconnect).
    pub fresh: bool,
}

/// Private broadcasts sent from SQL, one row each (`broadcast.replay` reads them by topic).
const APPEND_BROADCASTS: &str = "insert into doska.realtime_log (commit_lsn, idx, topic, entry) \
     select (e->>'lsn')::pg_lsn, (e->>'idx')::bigint, e->>'topic', e->'entry' \
     from jsonb_array_elements($1::text::jsonb) e \
     on conflict (commit_lsn, idx) do nothing";

/// Logs a batch of decoded changes: one row holding them all (one statement, one round trip;
/// a batch past ~8 MiB of JSON takes a row per chunk), announced on [`CHANNEL`].
/// `realtime.messages` inserts are logged only as private broadcasts.
pub async fn append(
    admin: &deadpool_postgres::Pool,
    changes: &[&Change],
) -> Result<Appended, LogError> {
    let mut broadcasts = Vec::new();
    // (first, last, count, entries) per row.
    let mut rows: Vec<(Position, Position, i32, Vec<u8>)> = Vec::new();
    let mut open: Option<(Position, Position, i32, Vec<u8>)> = None;
    for c in changes {
        let pos = Position::of(c);
        if c.schema == "realtime" && c.table == "messages" {
            if let Some((topic, entry)) = sql_broadcast_entry(c) {
                broadcasts.push(json!({"lsn": pos.lsn.to_string(), "idx": pos.index, "topic": topic, "entry": entry}));
            }
            continue;
        }
        let row = open.get_or_insert_with(|| (pos, pos, 0, b"[".to_vec()));
        if row.2 > 0 {
            row.3.push(b',');
        }
        write_entry(&mut row.3, c);
        row.1 = pos;
        row.2 += 1;
        if row.3.len() >= APPEND_CHUNK_BYTES {
            rows.extend(open.take());
        }
    }
    rows.extend(open);
    let mut appended = Appended {
        before: None,
        fresh: true,
    };
    if rows.is_empty() && broadcasts.is_empty() {
        return Ok(appended);
    }
    let client = client(admin).await?;
    if !rows.is_empty() {
        let statement = client
            .prepare_typed_cached(
                APPEND_CHANGES,
                &[
                    Type::TEXT,
                    Type::INT8,
                    Type::TEXT,
                    Type::INT8,
                    Type::INT4,
                    Type::BYTEA,
                ],
            )
            .await?;
        for (first, last, n, mut entries) in rows {
            entries.push(b']');
            let (first_lsn, last_lsn) = (first.lsn.to_string(), last.lsn.to_string());
            let (first_idx, last_idx) = (i64::from(first.index), i64::from(last.index));
            let row = client
                .query_one(
                    &statement,
                    &[&first_lsn, &first_idx, &last_lsn, &last_idx, &n, &entries],
                )
                .await?;
            appended.before.get_or_insert_with(|| tail_of(&row));
            appended.fresh &= row.get::<_, i32>(4) == 1;
        }
    }
    if !broadcasts.is_empty() {
        let text = Value::Array(broadcasts).to_string();
        client.execute(APPEND_BROADCASTS, &[&text]).await?;
    }
    Ok(appended)
}

/// Past this much JSON, a batch is logged as several rows.
const APPEND_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Logs a broadcast on a private channel that did not come through the WAL (socket or REST).
pub async fn append_broadcast(
    admin: &deadpool_postgres::Pool,
    topic: &str,
    event: &str,
    body: &BroadcastBody,
) -> Result<(), LogError> {
    let entry = broadcast_entry(event, body).to_string();
    client(admin)
        .await?
        .execute(
            "insert into doska.realtime_log (topic, entry) values ($1, $2::text::jsonb)",
            &[&topic, &entry],
        )
        .await?;
    Ok(())
}

/// Raises the floor to at least `floor` (a slot made anew: what came before was not captured).
pub async fn raise_floor(admin: &deadpool_postgres::Pool, floor: Position) -> Result<(), LogError> {
    let lsn = floor.lsn.to_string();
    let idx = i64::from(floor.index);
    client(admin)
        .await?
        .execute(
            "update doska.realtime_log_floor set commit_lsn = $1::text::pg_lsn, idx = $2 \
             where (commit_lsn, idx) < ($1::text::pg_lsn, $2)",
            &[&lsn, &idx],
        )
        .await?;
    Ok(())
}

fn parse_row_position(lsn: &str, idx: i64) -> Option<Position> {
    Some(Position {
        lsn: lsn.parse().ok()?,
        index: u32::try_from(idx).ok()?,
    })
}

/// The position at or below which changes may be gone from the log.
pub async fn floor(admin: &deadpool_postgres::Pool) -> Result<Position, LogError> {
    let row = client(admin)
        .await?
        .query_one(
            "select commit_lsn::text, idx from doska.realtime_log_floor",
            &[],
        )
        .await?;
    Ok(parse_row_position(row.get(0), row.get(1)).unwrap_or_default())
}

/// Deletes logged changes older than `window` and all but the newest `max_rows` (whole batches:
/// at least the newest `max_rows` stay), raising the floor to the newest change deleted; and
/// private broadcasts by the same limits. Returns how many changes and broadcasts went.
pub async fn trim(
    admin: &deadpool_postgres::Pool,
    window: Duration,
    max_rows: u64,
) -> Result<u64, LogError> {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let max_rows = i64::try_from(max_rows).unwrap_or(i64::MAX);
    let client = client(admin).await?;
    let changes = client
        .query_one(
            "with bound as (
               -- Batches are logged in seq order, so both limits are a seq bound (index scans,
               -- never a pass over the whole log).
               select greatest(
                 (select max(seq) from doska.realtime_changes
                  where upto <= (select max(upto) from doska.realtime_changes) - $2::bigint),
                 (select max(seq) from doska.realtime_changes
                  where logged_at < clock_timestamp() - make_interval(secs => $1::bigint / 1000.0))
               ) as seq),
             gone as (
               delete from doska.realtime_changes c using bound where c.seq <= bound.seq
               returning c.last_lsn, c.last_idx, c.n),
             top as (
               select last_lsn, last_idx from gone order by last_lsn desc, last_idx desc limit 1),
             raised as (
               update doska.realtime_log_floor f set commit_lsn = top.last_lsn, idx = top.last_idx
               from top where (top.last_lsn, top.last_idx) > (f.commit_lsn, f.idx))
             select coalesce(sum(n), 0)::bigint from gone",
            &[&window_ms, &max_rows],
        )
        .await?;
    let broadcasts = client
        .execute(
            "with bound as (
               select greatest(
                 (select max(seq) from doska.realtime_log) - $2::bigint,
                 (select max(seq) from doska.realtime_log
                  where logged_at < clock_timestamp() - make_interval(secs => $1::bigint / 1000.0))
               ) as seq)
             delete from doska.realtime_log l using bound where l.seq <= bound.seq",
            &[&window_ms, &max_rows],
        )
        .await?;
    Ok(u64::try_from(changes.get::<_, i64>(0)).unwrap_or(0) + broadcasts)
}

/// One page of logged changes after a position.
#[derive(Debug)]
pub struct ChangePage {
    /// In position order.
    pub changes: Vec<Change>,
    /// The floor when the page was read: if it is above the position the page started after,
    /// entries the client needs may be gone.
    pub floor: Position,
    /// The last position the page looked at (matching or not): the next page starts after it.
    pub through: Position,
    /// The log may hold more after `through`.
    pub more: bool,
}

/// Batches read per statement.
const BATCHES_PER_PAGE: i64 = 16;

/// Up to `limit` logged changes after `after` on tables any of `tables` names (`(schema, table)`,
/// `*` for any), with the floor, read in one statement.
pub async fn changes_after(
    admin: &deadpool_postgres::Pool,
    after: Position,
    tables: &[(String, String)],
    limit: usize,
) -> Result<ChangePage, LogError> {
    let lsn = after.lsn.to_string();
    let idx = i64::from(after.index);
    let rows = client(admin)
        .await?
        .query(
            "select f.commit_lsn::text, f.idx, c.entries
             from doska.realtime_log_floor f
             left join lateral (
               select entries from doska.realtime_changes c
               where (c.last_lsn, c.last_idx) > ($1::text::pg_lsn, $2::bigint)
               order by c.last_lsn, c.last_idx
               limit $3) c on true",
            &[&lsn, &idx, &BATCHES_PER_PAGE],
        )
        .await?;
    let wanted = |schema: &str, table: &str| {
        tables
            .iter()
            .any(|(s, t)| (s == "*" || s == schema) && (t == "*" || t == table))
    };
    let mut page = ChangePage {
        changes: Vec::new(),
        floor: Position::default(),
        through: after,
        more: rows.len() as i64 >= BATCHES_PER_PAGE,
    };
    'rows: for row in &rows {
        page.floor = parse_row_position(row.get(0), row.get(1)).unwrap_or_default();
        let Some(bytes) = row.get::<_, Option<&[u8]>>(2) else {
            continue;
        };
        let entries: Vec<Value> = match serde_json::from_slice(bytes) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = %e, "realtime log: unreadable batch skipped");
                continue;
            }
        };
        for entry in &entries {
            let Some(change) = change_from_entry(entry) else {
                tracing::warn!("realtime log: unreadable entry skipped");
                continue;
            };
            let pos = Position::of(&change);
            if pos <= page.through {
                // Before the start, or logged twice (resent after a crash): seen already.
                continue;
            }
            page.through = pos;
            if wanted(&change.schema, &change.table) {
                page.changes.push(change);
                if page.changes.len() >= limit {
                    page.more = true;
                    break 'rows;
                }
            }
        }
    }
    Ok(page)
}

/// A logged private broadcast, for `broadcast.replay`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedBroadcast {
    pub id: String,
    pub event: String,
    pub body: BroadcastBody,
}

/// The newest `limit` broadcasts logged on the private `topic` after `since_ms` (milliseconds
/// since the Unix epoch), oldest first.
pub async fn broadcasts_since(
    admin: &deadpool_postgres::Pool,
    topic: &str,
    since_ms: i64,
    limit: i64,
) -> Result<Vec<LoggedBroadcast>, LogError> {
    let rows = client(admin)
        .await?
        .query(
            "select entry from (
               select seq, entry from doska.realtime_log
               where topic = $1 and logged_at > to_timestamp($2::bigint / 1000.0)
               order by seq desc limit $3) newest
             order by seq",
            &[&topic, &since_ms, &limit],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let entry: Value = row.get(0);
        let Some(event) = entry.get("event").and_then(Value::as_str) else {
            continue;
        };
        let body = match entry.get("binary").and_then(Value::as_str) {
            Some(b64) => match base64::engine::general_purpose::STANDARD.decode(b64) {
                Ok(bytes) => BroadcastBody::Binary(bytes.into()),
                Err(_) => continue,
            },
            None => BroadcastBody::Json(entry.get("payload").cloned().unwrap_or(Value::Null)),
        };
        let id = match entry.get("id") {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        out.push(LoggedBroadcast {
            id,
            event: event.to_string(),
            body,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::lsn::Lsn;

    #[test]
    fn positions_round_trip_and_order() {
        let p: Position = "16/B374D848:3".parse().unwrap();
        assert_eq!(
            p,
            Position {
                lsn: Lsn(0x16_B374_D848),
                index: 3
            }
        );
        assert_eq!(p.to_string(), "16/B374D848:3");
        let q: Position = "16/B374D848:10".parse().unwrap();
        let r: Position = "17/0:0".parse().unwrap();
        assert!(p < q && q < r);
        assert!(Position::end_of(Lsn(0x16_B374_D848)) < r);
        for bad in [
            "",
            "16/B374D848",
            "16/B374D848:",
            ":3",
            "x/1:1",
            "1/1:-1",
            "1/1:1.5",
            "1/1:99999999999",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_change_survives_the_log() {
        let change = Change {
            schema: "public".into(),
            table: "notes".into(),
            kind: ChangeKind::Update,
            commit_lsn: Lsn(0x1_0000_0010),
            commit_timestamp: chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456)
                .unwrap(),
            index_in_tx: 7,
            xid: 4_000_000_123,
            columns: Arc::from(vec![
                ColumnInfo {
                    name: "id".into(),
                    type_name: "int8".into(),
                    type_oid: 20,
                    key: true,
                },
                ColumnInfo {
                    name: "body".into(),
                    type_name: "text".into(),
                    type_oid: 25,
                    key: false,
                },
            ]),
            record: json!({"id": 1, "body": "x"}).as_object().cloned().unwrap(),
            old_record: Some(json!({"id": 1}).as_object().cloned().unwrap()),
            unchanged_toast: vec!["big".into()],
            row_security: false,
        };
        let mut bytes = Vec::new();
        write_entry(&mut bytes, &change);
        let entry: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(change_from_entry(&entry).unwrap(), change);
        assert!(change_from_entry(&json!({})).is_none());
        let mut other = entry.clone();
        other["kind"] = json!("MERGE");
        assert!(change_from_entry(&other).is_none());
    }

    /// Entries written before `rls` was logged: row security is assumed, and pgoutput's
    /// every-column key of identity FULL is no key, so a replayed old row reveals nothing.
    #[test]
    fn an_entry_without_rls_reveals_no_more_than_its_key() {
        let legacy = json!({"lsn": "1/10", "idx": 0, "xid": 1, "schema": "public", "table": "notes",
            "kind": "DELETE", "commit_timestamp": "2026-01-01T00:00:00.000000Z",
            "columns": [{"name": "id", "type": "int8", "oid": 20, "key": true},
                        {"name": "body", "type": "text", "oid": 25, "key": true}],
            "record": {}, "old_record": {"id": 1, "body": "secret"}, "unchanged_toast": []});
        let change = change_from_entry(&legacy).unwrap();
        assert!(change.row_security);
        assert!(change.columns.iter().all(|c| !c.key));
        let payload = crate::realtime::deliver::payload_data(&change);
        assert_eq!(payload["old_record"], json!({}));
    }
}
