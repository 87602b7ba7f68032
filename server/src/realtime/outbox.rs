//! The sending side of one socket: its bounded [`Outbox`], and the [`Gate`] that stands in front
//! of it while a joining channel replays the log. Never waits on a client without a bound: a full
//! queue marks its socket as a slow consumer, which the socket then closes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, mpsc};

use super::lsn::Position;
use super::phoenix::ServerMessage;

/// Messages queued for one socket before it counts as a slow consumer and is closed.
pub const SEND_QUEUE: usize = 1024;
/// Live changes a closed gate holds before its socket counts as a slow consumer.
const HELD_MAX: usize = SEND_QUEUE;

/// The `system` message every channel with `postgres_changes` bindings gets when the replication
/// slot had to be recreated while doska ran: changes committed meanwhile were never captured.
pub const CHANGES_LOST_MESSAGE: &str = "Changes were lost (the replication slot was recreated): refetch, then continue with live changes";

/// The sending side of one socket: its bounded queue and the flag that it fell behind.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<ServerMessage>,
    overflowed: Arc<Notify>,
}

impl Outbox {
    pub fn new(capacity: usize) -> (Outbox, mpsc::Receiver<ServerMessage>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(capacity);
        let overflowed = Arc::new(Notify::new());
        (
            Outbox {
                tx,
                overflowed: overflowed.clone(),
            },
            rx,
            overflowed,
        )
    }

    /// Queues without waiting; a full queue marks the socket as too slow (it gets closed).
    /// Returns whether the message was queued.
    pub fn send(&self, msg: ServerMessage) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflowed.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues, waiting until `deadline` for room if the queue is full: a consumer that is briefly
    /// behind slows the sender down (and, for database changes, the replication stream) instead
    /// of being dropped. Still full at the deadline: the socket is marked too slow (it gets
    /// closed). Returns whether the message was queued.
    pub async fn send_until(&self, msg: ServerMessage, deadline: tokio::time::Instant) -> bool {
        let msg = match self.tx.try_send(msg) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(msg)) => msg,
        };
        match tokio::time::timeout_at(deadline, self.tx.send(msg)).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                self.overflowed.notify_one();
                false
            }
        }
    }

    /// Marks the socket as too slow (it gets closed).
    pub fn mark_overflowed(&self) {
        self.overflowed.notify_one();
    }

    /// Queues once at least half the queue is free, so a long replay never fills it and starves
    /// the hub's own messages. Returns false once the socket is gone.
    pub async fn send_paced(&self, msg: ServerMessage) -> bool {
        loop {
            if self.tx.is_closed() {
                return false;
            }
            if self.tx.capacity() >= self.tx.max_capacity() / 2 {
                return match self.tx.try_send(msg) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(m)) => self.tx.send(m).await.is_ok(),
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                };
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
}

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
    pub(super) outbox: Outbox,
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

    pub(super) fn raise(&self, position: Position) {
        let mut s = self.lock();
        s.through = s.through.max(position);
    }

    /// The held changes past the replay, or `None` after opening the gate when none are left.
    pub(super) fn take_held(&self) -> Option<Vec<ServerMessage>> {
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

    pub(super) fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}
