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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;

use super::authorize::Who;
use super::hub::Outbox;
use super::log::{self, Position};
use super::phoenix::ServerMessage;
use super::subscriptions::PostgresChanges;
use crate::state::SharedState;

/// Live changes a closed gate holds before its socket counts as a slow consumer.
const HELD_MAX: usize = super::socket::SEND_QUEUE;
/// Most logged changes one page holds.
const PAGE: usize = 500;
/// Most broadcasts one `broadcast.replay` returns (Supabase's cap).
pub const BROADCAST_REPLAY_MAX: i64 = 25;

/// The `system` message telling a client its `since` is beyond the log's window.
pub const REFETCH_MESSAGE: &str =
    "Changes since this position are no longer available: refetch, then continue with live changes";

/// The `system` message every channel with `postgres_changes` bindings gets when the replication
/// slot had to be recreated while doska ran: changes committed meanwhile were never captured.
pub const CHANGES_LOST_MESSAGE: &str = "Changes were lost (the replication slot was recreated): refetch, then continue with live changes";

#[derive(Debug)]
struct GateState {
    open: bool,
    held: Vec<(Position, ServerMessage)>,
    /// Positions at or below this were replayed (or the client saw them): never sent live.
    through: Position,
}

/// Stands between live delivery and a channel that is still replaying.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<GateState>,
    outbox: Outbox,
    /// The channel left: the replay stops.
    cancelled: AtomicBool,
}

impl Gate {
    /// A closed gate for a client that saw everything up to `since`.
    pub fn new(outbox: Outbox, since: Position) -> Gate {
        Gate {
            state: Mutex::new(GateState {
                open: false,
                held: Vec::new(),
                through: since,
            }),
            outbox,
            cancelled: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live change for the channel: dropped when the replay covered it, held while the gate is
    /// closed, queued when open. Returns whether it was kept.
    pub fn offer(&self, position: Position, msg: ServerMessage) -> bool {
        let mut s = self.lock();
        if position <= s.through {
            return false;
        }
        if s.open {
            drop(s);
            return self.outbox.send(msg);
        }
        if s.held.len() >= HELD_MAX {
            self.outbox.mark_overflowed();
            return false;
        }
        s.held.push((position, msg));
        true
    }

    fn raise(&self, position: Position) {
        let mut s = self.lock();
        s.through = s.through.max(position);
    }

    /// The held changes past the replay, or `None` after opening the gate when none are left.
    fn take_held(&self) -> Option<Vec<ServerMessage>> {
        let mut s = self.lock();
        if s.held.is_empty() {
            s.open = true;
            return None;
        }
        let through = s.through;
        let held = std::mem::take(&mut s.held);
        Some(
            held.into_iter()
                .filter(|(p, _)| *p > through)
                .map(|(_, m)| m)
                .collect(),
        )
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// What a replay needs to know about its channel.
#[derive(Debug, Clone)]
pub struct ReplayChannel {
    pub topic: Arc<str>,
    pub join_ref: Option<Arc<str>>,
    pub who: Who,
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
    who: &[Who],
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
