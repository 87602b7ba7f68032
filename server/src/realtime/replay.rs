//! Replay from the durable log to one joining channel: `since` (the last change position the
//! client saw) gets every logged change after it that matches the channel's bindings and that
//! PostgreSQL lets its caller see, then the live ones — exactly once. `broadcast.replay` gets a
//! private channel the latest logged broadcasts after a time.
//!
//! The seam: the channel joins the hub behind a closed [`Gate`] that holds live changes; the log
//! is read page by page (each change was logged before it was delivered live, in position
//! order); then the held live changes are drained, skipping every position the replay covered,
//! and the gate opens. Rejects (a `system` message asking the client to refetch) a `since` older
//! than what the log still holds.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::log::{self, Position};
use super::outbox::Gate;
use super::phoenix::ServerMessage;
use super::subscriptions::PostgresChanges;
use crate::jwt::Caller;
use crate::state::SharedState;

/// Most logged changes one page holds.
const PAGE: usize = 500;
/// Most broadcasts one `broadcast.replay` returns (Supabase's cap).
pub const BROADCAST_REPLAY_MAX: i64 = 25;

/// The `system` message telling a client its `since` is beyond the log's window.
pub const REFETCH_MESSAGE: &str =
    "Changes since this position are no longer available: refetch, then continue with live changes";

pub use super::outbox::CHANGES_LOST_MESSAGE;

/// What a replay needs to know about its channel.
#[derive(Debug, Clone)]
pub struct ReplayChannel {
    pub topic: Arc<str>,
    pub join_ref: Option<Arc<str>>,
    pub who: Caller,
    pub bindings: Vec<(u32, PostgresChanges)>,
}

fn system(ch: &ReplayChannel, ok: bool, message: &str) -> ServerMessage {
    ServerMessage::Json {
        join_ref: ch.join_ref.clone(),
        reference: None,
        topic: ch.topic.clone(),
        event: "system",
        payload: json!({
            "message": message,
            "status": if ok { "ok" } else { "error" },
            "extension": "postgres_changes",
            "channel": ch.topic.strip_prefix("realtime:").unwrap_or(&ch.topic),
        }),
    }
}

/// Why a replay ended early.
enum Stop {
    /// The socket or channel went away, or doska is stopping.
    Gone,
    /// `since` (or where a page started) is below the floor.
    TooOld,
    Failed(String),
}

/// Replays the log after `since` to the channel behind `gate`, then opens the gate.
pub async fn changes(state: SharedState, gate: Arc<Gate>, ch: ReplayChannel, since: Position) {
    match replay_pages(&state, &gate, &ch, since).await {
        Ok(()) => {}
        Err(Stop::Gone) => return,
        Err(Stop::TooOld) => {
            tracing::debug!(topic = %ch.topic, %since, "realtime: since is beyond the replay window");
            gate.outbox
                .send_paced(system(&ch, false, REFETCH_MESSAGE))
                .await;
        }
        Err(Stop::Failed(e)) => {
            tracing::warn!(topic = %ch.topic, error = %e, "realtime: replay failed");
            let msg = format!("Could not replay changes ({e}): {REFETCH_MESSAGE}");
            gate.outbox.send_paced(system(&ch, false, &msg)).await;
        }
    }
    while let Some(held) = gate.take_held() {
        for msg in held {
            if gate.cancelled() || !gate.outbox.send_paced(msg).await {
                return;
            }
        }
    }
}

async fn replay_pages(
    state: &SharedState,
    gate: &Gate,
    ch: &ReplayChannel,
    since: Position,
) -> Result<(), Stop> {
    let tables: Vec<(String, String)> = ch
        .bindings
        .iter()
        .map(|(_, b)| {
            (
                b.schema.clone(),
                b.table.clone().unwrap_or_else(|| "*".into()),
            )
        })
        .collect();
    let who = [ch.who.clone()];
    let mut after = since;
    loop {
        if gate.cancelled() || *state.shutdown.borrow() {
            return Err(Stop::Gone);
        }
        let page = log::changes_after(&state.admin, after, &tables, PAGE)
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?;
        if page.floor > after {
            return Err(Stop::TooOld);
        }
        for change in &page.changes {
            let ids: Vec<u32> = ch
                .bindings
                .iter()
                .filter(|(_, b)| b.matches(change))
                .map(|(id, _)| *id)
                .collect();
            if !ids.is_empty() && visible(state, change, &who).await? {
                let msg = ServerMessage::Json {
                    join_ref: None,
                    reference: None,
                    topic: ch.topic.clone(),
                    event: "postgres_changes",
                    payload: super::deliver::payload(change, &ids),
                };
                if gate.cancelled() || !gate.outbox.send_paced(msg).await {
                    return Err(Stop::Gone);
                }
            }
            after = Position::of(change);
            gate.raise(after);
        }
        // Positions the page passed without a match are not this channel's either.
        after = after.max(page.through);
        gate.raise(after);
        if !page.more {
            return Ok(());
        }
    }
}

/// The live path's check (RLS as the caller, on the current row), retried a few times.
async fn visible(
    state: &SharedState,
    change: &super::decode::Change,
    who: &[Caller],
) -> Result<bool, Stop> {
    let mut last = String::new();
    for _ in 0..5 {
        match super::deliver::visible_once_committed(&state.pool, change, who.to_vec()).await {
            Ok(allowed) => return Ok(allowed.first().copied().unwrap_or(false)),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Stop::Failed(last))
}
