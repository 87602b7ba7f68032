//! Delivery of database changes: takes committed transactions from the change [`Source`],
//! finds the joined channels whose bindings want each change, has PostgreSQL decide which of
//! their callers may see it ([`authorize`]), queues a `postgres_changes` message to those, and
//! only then acknowledges the transaction's WAL — so a restart resumes with whatever was not
//! handed to every matching subscriber.
//!
//! Rejects nothing from clients (bindings were checked at join). Changes nobody subscribed to are
//! acknowledged without a query; a failed authorization check is retried, never skipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::{Value, json};

use super::authorize::{self, Who, key_only};
use super::decode::{Change, ChangeKind, Event};
use super::hub::{ChangeTarget, Hub};
use super::phoenix::{BroadcastBody, ServerMessage};
use super::source::{Source, SourceItem, SourceOptions};
use crate::state::SharedState;

/// Transactions larger than this are delivered as they stream instead of at their commit,
/// so one huge transaction cannot hold unbounded memory.
const MAX_BUFFERED: usize = 10_000;
/// Committed changes delivered together (one authorization round trip) at most.
const MAX_BATCH: usize = 1_000;

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
    let columns: Vec<Value> = change
        .columns
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_name}))
        .collect();
    let mut data = json!({
        "schema": change.schema,
        "table": change.table,
        "commit_timestamp": change.commit_timestamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "type": change.kind.as_str(),
        "columns": columns,
        "errors": null,
    });
    match change.kind {
        ChangeKind::Insert => {
            data["record"] = Value::Object(change.record.clone());
        }
        ChangeKind::Update => {
            data["record"] = Value::Object(change.record.clone());
            data["old_record"] = Value::Object(
                change
                    .old_record
                    .as_ref()
                    .map(|o| key_only(change, o))
                    .unwrap_or_else(|| key_only(change, &change.record)),
            );
        }
        ChangeKind::Delete => {
            // A delete reveals only the key, whatever the replica identity sent.
            let old = change.old_record.as_ref().unwrap_or(&change.record);
            data["old_record"] = Value::Object(key_only(change, old));
        }
    }
    if !change.unchanged_toast.is_empty() {
        data["errors"] = json!([format!(
            "unchanged TOAST values not sent: {}",
            change.unchanged_toast.join(", ")
        )]);
    }
    data
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
    /// The callers to check for this change (indices into the caller list), probe first.
    asks: Vec<usize>,
    /// Whether `asks[0]` is the visibility probe.
    probe: bool,
}

/// Hands a batch of changes, in order, to every matching subscriber allowed to see each. The
/// checks of the whole batch go to PostgreSQL in one round trip ([`authorize::visible_batch`]):
/// one transaction per distinct (role, claims), one statement per table in it.
pub async fn deliver_batch(
    pool: &deadpool_postgres::Pool,
    hub: &Hub,
    changes: &[Change],
) -> Result<usize, authorize::AuthorizeError> {
    // Caller 0 probes visibility: PostgreSQL may hand a commit to the WAL reader a moment
    // before other sessions can see it. A caller that bypasses RLS (`service_role`) goes first:
    // until it sees the row, the answers say "not yet", not "no". After the retries (a row
    // deleted since, or a table service_role may not read) the answers stand.
    let mut who: Vec<Who> = vec![Who {
        role: "service_role".into(),
        claims: "{}".into(),
    }];
    let mut index: HashMap<Who, usize> = HashMap::new();
    index.insert(who[0].clone(), 0);
    let mut planned: Vec<Option<Planned>> = Vec::with_capacity(changes.len());
    for change in changes {
        if change.schema == "realtime" && change.table == "messages" {
            planned.push(None);
            continue;
        }
        let targets = hub.change_targets(change);
        let probe = change.kind != ChangeKind::Delete && !targets.is_empty();
        let mut asks: Vec<usize> = if probe { vec![0] } else { Vec::new() };
        let mut target_who = Vec::with_capacity(targets.len());
        for t in &targets {
            let w = Who {
                role: t.caller.role.clone(),
                claims: t.caller.claims.to_string(),
            };
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
            targets,
            target_who,
            asks,
            probe,
        }));
    }
    let refs: Vec<&Change> = changes.iter().collect();
    let asks: Vec<Vec<usize>> = planned
        .iter()
        .map(|p| p.as_ref().map(|p| p.asks.clone()).unwrap_or_default())
        .collect();
    let started = std::time::Instant::now();
    let mut allowed = authorize::visible_batch(pool, &refs, &who, &asks).await?;
    let mut retries = 0;
    for _ in 0..VISIBILITY_RETRIES {
        // Changes whose probe has not seen the row yet are checked again.
        let waiting: Vec<usize> = (0..changes.len())
            .filter(|&c| planned[c].as_ref().is_some_and(|p| p.probe) && !allowed[c][0])
            .collect();
        if waiting.is_empty() {
            break;
        }
        retries += 1;
        tokio::time::sleep(VISIBILITY_WAIT).await;
        let again: Vec<&Change> = waiting.iter().map(|&c| refs[c]).collect();
        let again_asks: Vec<Vec<usize>> = waiting.iter().map(|&c| asks[c].clone()).collect();
        let answers = authorize::visible_batch(pool, &again, &who, &again_asks).await?;
        for (c, a) in waiting.into_iter().zip(answers) {
            allowed[c] = a;
        }
    }
    tracing::debug!(
        changes = changes.len(),
        callers = who.len(),
        retries,
        elapsed = ?started.elapsed(),
        "realtime: batch checked"
    );
    let mut sent = 0;
    for ((change, plan), allowed) in changes.iter().zip(&planned).zip(&allowed) {
        let Some(plan) = plan else {
            sent += usize::from(sql_broadcast(hub, change));
            continue;
        };
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
                .get_or_insert_with(|| Arc::from(payload_data(change).to_string()))
                .clone();
            t.outbox.send(ServerMessage::Change {
                topic: t.topic.clone(),
                ids: t.ids.clone(),
                data,
            });
            sent += 1;
        }
    }
    Ok(sent)
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

/// How long `realtime.messages` rows are kept (they are only needed until delivered).
const MESSAGES_KEPT: &str = "10 minutes";

async fn trim_messages(admin: &deadpool_postgres::Pool) {
    let sql = format!(
        "delete from realtime.messages where inserted_at < now() - interval '{MESSAGES_KEPT}'"
    );
    let result = match admin.get().await {
        Ok(c) => c.execute(&sql, &[]).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "realtime: trimming realtime.messages failed");
    }
}

/// Delivers a batch of changes, retrying a failed check until it succeeds or doska stops.
async fn deliver_retrying(state: &SharedState, hub: &Hub, changes: &[Change]) -> bool {
    if changes.is_empty() {
        return true;
    }
    let mut shutdown = state.shutdown.clone();
    loop {
        match deliver_batch(&state.pool, hub, changes).await {
            Ok(_) => return true,
            Err(e) => {
                tracing::warn!(error = %e, changes = changes.len(), "realtime: delivery check failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => return false,
                }
            }
        }
    }
}

/// Runs the change source and delivers its transactions until shutdown. Committed
/// transactions that arrived together (up to `MAX_BATCH` changes) are delivered as one batch —
/// one authorization round trip — and only then acknowledged.
pub async fn run(
    state: SharedState,
    hub: Arc<Hub>,
    config: tokio_postgres::Config,
    options: SourceOptions,
) {
    let mut source = Source::spawn(config, options, state.shutdown.clone());
    // The open transaction's changes (until its Commit).
    let mut buffered: Vec<Change> = Vec::new();
    let mut streaming = false;
    // Committed changes waiting for delivery, and the commit to acknowledge after them.
    let mut ready: Vec<Change> = Vec::new();
    let mut ack: Option<super::lsn::Lsn> = None;
    let mut shutdown = state.shutdown.clone();
    let mut trim = tokio::time::interval(Duration::from_secs(60));
    trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Take what already arrived without waiting; deliver once nothing more is waiting.
        let waiting = if ready.is_empty() && ack.is_none() {
            None
        } else {
            source.recv().now_or_never()
        };
        let item = match waiting {
            Some(item) => item,
            None if !ready.is_empty() || ack.is_some() => {
                if !deliver_retrying(&state, &hub, &ready).await {
                    break;
                }
                ready.clear();
                if let Some(end_lsn) = ack.take() {
                    source.ack(end_lsn);
                }
                continue;
            }
            None => tokio::select! {
                item = source.recv() => item,
                _ = shutdown.changed() => None,
                _ = trim.tick() => {
                    trim_messages(&state.admin).await;
                    continue;
                }
            },
        };
        let Some(item) = item else { break };
        match item {
            SourceItem::Started { slot_created } => {
                // Everything not acknowledged comes again.
                buffered.clear();
                ready.clear();
                ack = None;
                streaming = false;
                if let Some(lsn) = slot_created {
                    tracing::info!(%lsn, "realtime: replication slot created");
                }
            }
            SourceItem::Interrupted { error, retry_in } => {
                tracing::warn!(%error, ?retry_in, "realtime: change stream interrupted");
            }
            SourceItem::Event(Event::Change(change)) => {
                if streaming {
                    ready.push(*change);
                } else {
                    buffered.push(*change);
                    if buffered.len() >= MAX_BUFFERED {
                        // Delivered before the commit is known: nothing to wait for yet, so
                        // rows of a still-running transaction are checked as they stand.
                        streaming = true;
                        ready.append(&mut buffered);
                    }
                }
                if ready.len() >= MAX_BATCH {
                    // Deliver now; the acknowledgement waits for a commit after these.
                    if !deliver_retrying(&state, &hub, &ready).await {
                        break;
                    }
                    ready.clear();
                    if let Some(end_lsn) = ack.take() {
                        source.ack(end_lsn);
                    }
                }
            }
            SourceItem::Event(Event::Commit { end_lsn, .. }) => {
                tracing::debug!(%end_lsn, changes = buffered.len(), "realtime: commit");
                ready.append(&mut buffered);
                streaming = false;
                ack = Some(end_lsn);
            }
            SourceItem::Event(Event::Begin { .. } | Event::Truncate(_)) => {}
        }
    }
    source.close().await;
}
