//! The durable change log: a bounded table (`doska.realtime_log`, outside the publication) of
//! every decoded database change at its [`Position`] and of every broadcast on a private channel,
//! so a client that reconnects within the window gets what it missed (`since`, and
//! `broadcast.replay`). Written in one statement per batch on the admin pool before the batch is
//! delivered; trimmed by age and row count, raising the floor below which a client must refetch.
//!
//! Rejects: positions that are not `X/X:N` (a [`ParsePositionError`]); log rows it cannot read
//! back as a change (skipped with a warning: they come from a future or corrupt entry).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use super::decode::{Change, ChangeKind, ColumnInfo};
use super::lsn::Lsn;
use super::phoenix::BroadcastBody;

/// Where a change sits in the stream: its transaction's commit LSN and its index within the
/// transaction. Unique and ordered; printed `X/X:N` (PostgreSQL's LSN form, a colon, the index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub lsn: Lsn,
    pub index: u32,
}

impl Position {
    pub fn of(change: &Change) -> Position {
        Position {
            lsn: change.commit_lsn,
            index: change.index_in_tx,
        }
    }

    /// Everything at `lsn` (used for a floor: all of that transaction and before).
    pub fn end_of(lsn: Lsn) -> Position {
        Position {
            lsn,
            index: u32::MAX,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.lsn, self.index)
    }
}

/// The text was not `X/X:N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePositionError(pub String);

impl fmt::Display for ParsePositionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid position {:?}: expected X/X:N (an LSN, a colon, an index)",
            self.0
        )
    }
}

impl std::error::Error for ParsePositionError {}

impl FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePositionError(s.to_string());
        let (lsn, index) = s.split_once(':').ok_or_else(err)?;
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        Ok(Position {
            lsn: lsn.parse().map_err(|_| err())?,
            index: index.parse().map_err(|_| err())?,
        })
    }
}

#[derive(Debug)]
pub enum LogError {
    Pool(String),
    Db(tokio_postgres::Error),
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Pool(e) => write!(f, "realtime log: no connection: {e}"),
            LogError::Db(e) => write!(f, "realtime log: {e}"),
        }
    }
}

impl std::error::Error for LogError {}

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

/// A change as the log stores it (everything [`change_from_entry`] needs to rebuild it).
pub fn change_entry(change: &Change) -> Value {
    let columns: Vec<Value> = change
        .columns
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_name, "oid": c.type_oid, "key": c.key}))
        .collect();
    json!({
        "kind": change.kind.as_str(),
        "commit_timestamp": change.commit_timestamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "columns": columns,
        "record": change.record,
        "old_record": change.old_record,
        "unchanged_toast": change.unchanged_toast,
    })
}

/// Rebuilds a logged change; `None` when the entry is not one this version wrote.
pub fn change_from_entry(
    position: Position,
    schema: String,
    table: String,
    entry: &Value,
) -> Option<Change> {
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
    let object = |v: &Value| v.as_object().cloned();
    Some(Change {
        schema,
        table,
        kind,
        commit_lsn: position.lsn,
        commit_timestamp,
        index_in_tx: position.index,
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

const APPEND: &str = "insert into doska.realtime_log (commit_lsn, idx, schema_name, table_name, topic, entry) \
     select (e->>'lsn')::pg_lsn, (e->>'idx')::bigint, e->>'schema', e->>'table', e->>'topic', e->'entry' \
     from jsonb_array_elements($1::text::jsonb) e \
     on conflict (commit_lsn, idx) do nothing";

/// Logs a batch of decoded changes in one statement (one round trip). A change logged before
/// (PostgreSQL resends what was not acknowledged) is kept as it was. `realtime.messages` inserts
/// are logged only as private broadcasts.
pub async fn append(admin: &deadpool_postgres::Pool, changes: &[&Change]) -> Result<(), LogError> {
    let mut rows = Vec::with_capacity(changes.len());
    for c in changes {
        let pos = Position::of(c);
        if c.schema == "realtime" && c.table == "messages" {
            if let Some((topic, entry)) = sql_broadcast_entry(c) {
                rows.push(json!({"lsn": pos.lsn.to_string(), "idx": pos.index, "topic": topic, "entry": entry}));
            }
            continue;
        }
        rows.push(json!({
            "lsn": pos.lsn.to_string(),
            "idx": pos.index,
            "schema": c.schema,
            "table": c.table,
            "entry": change_entry(c),
        }));
    }
    if rows.is_empty() {
        return Ok(());
    }
    // One statement, unless the rows are large: then one per ~8 MiB of JSON.
    let client = client(admin).await?;
    let mut text = String::from("[");
    for row in rows {
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str(&row.to_string());
        if text.len() >= APPEND_CHUNK_BYTES {
            text.push(']');
            client.execute(APPEND, &[&text]).await?;
            text = String::from("[");
        }
    }
    if text.len() > 1 {
        text.push(']');
        client.execute(APPEND, &[&text]).await?;
    }
    Ok(())
}

/// Past this much JSON, a batch is split into several statements.
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

/// Deletes entries older than `window` and all but the newest `max_rows`, raising the floor to
/// the newest change deleted. Returns how many entries went.
pub async fn trim(
    admin: &deadpool_postgres::Pool,
    window: Duration,
    max_rows: u64,
) -> Result<u64, LogError> {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let max_rows = i64::try_from(max_rows).unwrap_or(i64::MAX);
    let row = client(admin)
        .await?
        .query_one(
            "with bound as (
               -- Entries are logged in seq order, so both limits are a seq bound (index scans,
               -- never a pass over the whole log).
               select greatest(
                 (select max(seq) from doska.realtime_log) - $2::bigint,
                 (select max(seq) from doska.realtime_log
                  where logged_at < clock_timestamp() - make_interval(secs => $1::bigint / 1000.0))
               ) as seq),
             gone as (
               delete from doska.realtime_log l using bound where l.seq <= bound.seq
               returning l.commit_lsn, l.idx),
             top as (
               select commit_lsn, idx from gone where commit_lsn is not null
               order by commit_lsn desc, idx desc limit 1),
             raised as (
               update doska.realtime_log_floor f set commit_lsn = top.commit_lsn, idx = top.idx
               from top where (top.commit_lsn, top.idx) > (f.commit_lsn, f.idx))
             select count(*) from gone",
            &[&window_ms, &max_rows],
        )
        .await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// One page of logged changes after a position.
#[derive(Debug)]
pub struct ChangePage {
    /// In position order.
    pub changes: Vec<Change>,
    /// The floor when the page was read: if it is above the position the page started after,
    /// entries the client needs may be gone.
    pub floor: Position,
}

/// Up to `limit` logged changes after `after` on tables any of `tables` names (`(schema, table)`,
/// `*` for any), with the floor, read in one statement.
pub async fn changes_after(
    admin: &deadpool_postgres::Pool,
    after: Position,
    tables: &[(String, String)],
    limit: i64,
) -> Result<ChangePage, LogError> {
    let lsn = after.lsn.to_string();
    let idx = i64::from(after.index);
    let schemas: Vec<&str> = tables.iter().map(|(s, _)| s.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|(_, t)| t.as_str()).collect();
    let rows = client(admin)
        .await?
        .query(
            "select f.commit_lsn::text, f.idx, l.commit_lsn::text, l.idx, l.schema_name, l.table_name, l.entry
             from doska.realtime_log_floor f
             left join lateral (
               select * from doska.realtime_log l
               where l.topic is null and l.commit_lsn is not null
                 and (l.commit_lsn, l.idx) > ($1::text::pg_lsn, $2::bigint)
                 and exists (select 1 from unnest($3::text[], $4::text[]) b(s, t)
                             where (b.s = '*' or b.s = l.schema_name) and (b.t = '*' or b.t = l.table_name))
               order by l.commit_lsn, l.idx
               limit $5) l on true",
            &[&lsn, &idx, &schemas, &names, &limit],
        )
        .await?;
    let mut floor = Position::default();
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        floor = parse_row_position(row.get(0), row.get(1)).unwrap_or_default();
        let (Some(lsn), Some(idx)) = (row.get::<_, Option<&str>>(2), row.get::<_, Option<i64>>(3))
        else {
            continue;
        };
        let Some(pos) = parse_row_position(lsn, idx) else {
            continue;
        };
        let entry: Value = row.get(6);
        match change_from_entry(pos, row.get(4), row.get(5), &entry) {
            Some(c) => changes.push(c),
            None => tracing::warn!(position = %pos, "realtime log: unreadable entry skipped"),
        }
    }
    Ok(ChangePage { changes, floor })
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
        };
        let entry = change_entry(&change);
        let back = change_from_entry(
            Position::of(&change),
            "public".into(),
            "notes".into(),
            &entry,
        )
        .unwrap();
        assert_eq!(back, change);
        assert!(
            change_from_entry(Position::default(), "a".into(), "b".into(), &json!({})).is_none()
        );
    }
}
