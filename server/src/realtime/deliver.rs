//! Delivery of database changes to this instance's subscribers: finds the joined channels whose
//! bindings want each change, has PostgreSQL decide which of their callers may see it
//! ([`authorize`]), and queues a `postgres_changes` message to those. Called by the slot holder's
//! [`writer`](super::writer) and every instance's log [`follow`](super::follow)er.
//!
//! Rejects nothing from clients (bindings were checked at join). Changes nobody subscribed to are
//! acknowledged without a query; a failed authorization check is retried, never skipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::authorize::{self, key_only};
use super::decode::{Change, ChangeKind};
use super::hub::{ChangeTarget, Hub};
use super::log::Position;
use super::phoenix::{BroadcastBody, ServerMessage};
use crate::jwt::Caller;
use crate::state::SharedState;

/// How long one batch's delivery waits for room in full socket queues before closing them.
const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(2);

/// How long a change's rows may take to become visible after the WAL reader got its commit.
const VISIBILITY_WAIT: Duration = Duration::from_millis(10);
const VISIBILITY_RETRIES: usize = 100;

/// The `postgres_changes` payload realtime-js reads (`ids`, `data.{schema, table,
/// commit_timestamp, type, columns, record, old_record, errors}`).
pub fn payload(change: &Change, ids: &[u32]) -> Value {
    json!({"ids": ids, "data": payload_data(change)})
}

/// The `data` of a `postgres_changes` payload: the same for every subscriber of a change.
pub fn payload_data(change: &Change) -> Value {
    serde_json::to_value(PayloadData::of(change)).expect("a change serializes to JSON")
}

/// [`payload_data`] as JSON text, serialized straight from the change.
pub fn payload_data_text(change: &Change) -> String {
    serde_json::to_string(&PayloadData::of(change)).expect("a change serializes to JSON")
}

#[derive(Serialize)]
struct PayloadColumn<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    type_name: &'a str,
}

#[derive(Serialize)]
struct PayloadData<'a> {
    schema: &'a str,
    table: &'a str,
    commit_timestamp: String,
    #[serde(rename = "type")]
    kind: &'static str,
    columns: Vec<PayloadColumn<'a>>,
    errors: Option<[String; 1]>,
    /// Where the change sits in the stream; a client sends the last one back as `since`.
    position: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_record: Option<Map<String, Value>>,
}

impl<'a> PayloadData<'a> {
    fn of(change: &'a Change) -> PayloadData<'a> {
        // Under row security an old row reveals only its key (whatever the replica identity
        // sent): a subscriber's SELECT policy cannot be asked about a row that is gone, and the
        // old values of an updated row were not checked. Without it, the old row as logged.
        let old = |old: Option<&Map<String, Value>>| match old {
            Some(old) if !change.row_security => old.clone(),
            old => key_only(change, old.unwrap_or(&change.record)),
        };
        let (record, old_record) = match change.kind {
            ChangeKind::Insert => (Some(&change.record), None),
            ChangeKind::Update => (Some(&change.record), Some(old(change.old_record.as_ref()))),
            ChangeKind::Delete => (None, Some(old(change.old_record.as_ref()))),
        };
        PayloadData {
            schema: &change.schema,
            table: &change.table,
            commit_timestamp: change
                .commit_timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            kind: change.kind.as_str(),
            columns: change
                .columns
                .iter()
                .map(|c| PayloadColumn {
                    name: &c.name,
                    type_name: &c.type_name,
                })
                .collect(),
            errors: (!change.unchanged_toast.is_empty()).then(|| {
                [format!(
                    "unchanged TOAST values not sent: {}",
                    change.unchanged_toast.join(", ")
                )]
            }),
            position: Position::of(change).to_string(),
            record,
            old_record,
        }
    }
}

/// For each caller, whether it may see `change` (`authorize::visible`), once the change's
/// commit is visible at all: PostgreSQL may hand a commit to the WAL reader a moment before other
/// sessions see it, so until the checks' snapshot sees the transaction, their answers say "not
/// yet", not "no". Used by replay.
pub async fn visible_once_committed(
    pool: &deadpool_postgres::Pool,
    change: &Change,
    who: Vec<Caller>,
) -> Result<Vec<bool>, authorize::AuthorizeError> {
    let mut answers = authorize::visible(pool, change, &who).await?;
    for _ in 0..VISIBILITY_RETRIES {
        if answers.saw_commit(change.xid) {
            break;
        }
        tokio::time::sleep(VISIBILITY_WAIT).await;
        answers = authorize::visible(pool, change, &who).await?;
    }
    Ok(answers.allowed.pop().unwrap_or_default())
}

/// Hands one change to every matching subscriber allowed to see it.
pub async fn deliver(
    pool: &deadpool_postgres::Pool,
    hub: &Hub,
    change: &Change,
) -> Result<usize, authorize::AuthorizeError> {
    deliver_batch(pool, hub, std::slice::from_ref(change)).await
}

/// What one change of a batch goes to.
struct Planned {
    targets: Vec<ChangeTarget>,
    /// Per target, its caller's index in the batch's caller list.
    target_who: Vec<usize>,
    /// The callers to check for this change (indices into the caller list).
    asks: Vec<usize>,
    /// Its rows are looked up (INSERT/UPDATE with subscribers): the answers count only once the
    /// checks' snapshot saw its commit.
    rows_checked: bool,
}

/// Hands a batch of changes, in order, to every matching subscriber allowed to see each. The
/// checks of the whole batch go to PostgreSQL in one round trip ([`authorize::visible_batch`]):
/// one transaction per distinct (role, claims), one statement per table in it.
pub async fn deliver_batch(
    pool: &deadpool_postgres::Pool,
    hub: &Hub,
    changes: &[Change],
) -> Result<usize, authorize::AuthorizeError> {
    let checked = check_batch(pool, hub, changes).await?;
    Ok(send_checked(hub, changes, checked, Some(Position::default())).await)
}

/// A batch's targets and what PostgreSQL answered for them, not yet sent.
pub(super) struct Checked {
    planned: Vec<Option<Planned>>,
    allowed: Vec<Vec<bool>>,
    /// Distinct callers asked, how often the visibility wait ran, and how long finding the
    /// targets took (for tracing).
    pub callers: usize,
    pub retries: usize,
    pub planned_in: Duration,
}

/// Finds each change's targets and asks PostgreSQL who may see it; sends nothing.
async fn check_batch(
    pool: &deadpool_postgres::Pool,
    hub: &Hub,
    changes: &[Change],
) -> Result<Checked, authorize::AuthorizeError> {
    let mut who: Vec<Caller> = Vec::new();
    let mut index: HashMap<Caller, usize> = HashMap::new();
    let mut planned: Vec<Option<Planned>> = Vec::with_capacity(changes.len());
    let planning = std::time::Instant::now();
    for change in changes {
        if change.schema == "realtime" && change.table == "messages" {
            planned.push(None);
            continue;
        }
        let targets = hub.change_targets(change);
        let mut asks: Vec<usize> = Vec::new();
        let mut target_who = Vec::with_capacity(targets.len());
        for t in &targets {
            let w = t.caller.clone();
            let i = match index.get(&w) {
                Some(&i) => i,
                None => {
                    who.push(w.clone());
                    index.insert(w, who.len() - 1);
                    who.len() - 1
                }
            };
            if !asks.contains(&i) {
                asks.push(i);
            }
            target_who.push(i);
        }
        planned.push(Some(Planned {
            rows_checked: change.kind != ChangeKind::Delete && !targets.is_empty(),
            targets,
            target_who,
            asks,
        }));
    }
    let planned_in = planning.elapsed();
    let refs: Vec<&Change> = changes.iter().collect();
    let asks: Vec<Vec<usize>> = planned
        .iter()
        .map(|p| p.as_ref().map(|p| p.asks.clone()).unwrap_or_default())
        .collect();
    let started = std::time::Instant::now();
    let answers = authorize::visible_batch(pool, &refs, &who, &asks).await?;
    // Changes whose rows were looked up before their commit was visible are checked again.
    let mut waiting: Vec<usize> = (0..changes.len())
        .filter(|&c| planned[c].as_ref().is_some_and(|p| p.rows_checked))
        .filter(|&c| !answers.saw_commit(changes[c].xid))
        .collect();
    let mut allowed = answers.allowed;
    let mut retries = 0;
    while !waiting.is_empty() && retries < VISIBILITY_RETRIES {
        retries += 1;
        tokio::time::sleep(VISIBILITY_WAIT).await;
        let again: Vec<&Change> = waiting.iter().map(|&c| refs[c]).collect();
        let again_asks: Vec<Vec<usize>> = waiting.iter().map(|&c| asks[c].clone()).collect();
        let answers = authorize::visible_batch(pool, &again, &who, &again_asks).await?;
        let still: Vec<usize> = waiting
            .iter()
            .copied()
            .filter(|&c| !answers.saw_commit(changes[c].xid))
            .collect();
        for (&c, a) in waiting.iter().zip(answers.allowed) {
            allowed[c] = a;
        }
        waiting = still;
    }
    tracing::debug!(
        changes = changes.len(),
        callers = who.len(),
        retries,
        elapsed = ?started.elapsed(),
        "realtime: batch checked"
    );
    Ok(Checked {
        planned,
        allowed,
        callers: who.len(),
        retries,
        planned_in,
    })
}

/// Queues each change of a checked batch, in order, to the targets allowed to see it: database
/// changes past `after` (none when `None`), and every `realtime.send` broadcast. A socket
/// whose queue is full gets until [`SLOW_CONSUMER_GRACE`] after the batch started for room, and
/// meanwhile nothing else is sent (the replication stream waits); still full then, it is closed.
pub(super) async fn send_checked(
    hub: &Hub,
    changes: &[Change],
    checked: Checked,
    after: Option<Position>,
) -> usize {
    let deadline = tokio::time::Instant::now() + SLOW_CONSUMER_GRACE;
    let Checked {
        planned, allowed, ..
    } = checked;
    let mut sent = 0;
    for ((change, plan), allowed) in changes.iter().zip(&planned).zip(&allowed) {
        let Some(plan) = plan else {
            sent += usize::from(sql_broadcast(hub, change));
            continue;
        };
        if after.is_none_or(|after| Position::of(change) <= after) {
            continue;
        }
        tracing::debug!(
            schema = %change.schema,
            table = %change.table,
            kind = change.kind.as_str(),
            channels = plan.targets.len(),
            ?allowed,
            "realtime: change matched"
        );
        // Serialized once, shared by every channel that gets it.
        let mut data: Option<Arc<str>> = None;
        for (t, w) in plan.targets.iter().zip(&plan.target_who) {
            let ok = plan
                .asks
                .iter()
                .position(|a| a == w)
                .is_some_and(|j| allowed[j]);
            if !ok {
                continue;
            }
            let data = data
                .get_or_insert_with(|| Arc::from(payload_data_text(change)))
                .clone();
            t.send(
                Position::of(change),
                ServerMessage::Change {
                    topic: t.topic.clone(),
                    ids: t.ids.clone(),
                    data,
                },
                deadline,
            )
            .await;
            sent += 1;
        }
    }
    sent
}

/// A committed `realtime.send` (an insert into `realtime.messages` with extension `broadcast`)
/// becomes a broadcast on its topic; nothing of that table is a `postgres_changes` event.
fn sql_broadcast(hub: &Hub, change: &Change) -> bool {
    let r = &change.record;
    if change.kind != ChangeKind::Insert
        || r.get("extension").and_then(Value::as_str) != Some("broadcast")
    {
        return false;
    }
    let (Some(topic), Some(event)) = (
        r.get("topic").and_then(Value::as_str),
        r.get("event").and_then(Value::as_str),
    ) else {
        return false;
    };
    let private = r.get("private").and_then(Value::as_bool).unwrap_or(false);
    let payload = r.get("payload").cloned().unwrap_or(Value::Null);
    hub.broadcast(
        None,
        &format!("realtime:{topic}"),
        private,
        event.to_string(),
        None,
        BroadcastBody::Json(payload),
    );
    true
}

/// Checks a batch of changes, retrying a failed check until it succeeds; `None` when doska
/// stops first.
pub(super) async fn check_retrying(
    state: &SharedState,
    hub: &Hub,
    changes: &[Change],
) -> Option<Checked> {
    let mut shutdown = state.shutdown.clone();
    loop {
        match check_batch(&state.pool, hub, changes).await {
            Ok(checked) => return Some(checked),
            Err(e) => {
                static REPEATS: crate::db::outage::Repeats = crate::db::outage::Repeats::new();
                if let Some(held) = REPEATS.check() {
                    tracing::warn!(error = %e, changes = changes.len(), "realtime: delivery check failed; retrying{held}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => return None,
                }
            }
        }
    }
}

/// Retries `attempt` every 500 ms until it succeeds; `None` when doska stops first.
pub(super) async fn retrying<F, Fut, T, E>(
    state: &SharedState,
    what: &str,
    mut attempt: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut shutdown = state.shutdown.clone();
    loop {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(e) => {
                static REPEATS: crate::db::outage::Repeats = crate::db::outage::Repeats::new();
                if let Some(held) = REPEATS.check() {
                    tracing::warn!(error = %e, "realtime: {what} failed; retrying{held}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => return None,
                }
            }
        }
    }
}
