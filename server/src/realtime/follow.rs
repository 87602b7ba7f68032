//! The log follower: every instance delivers the durable change log's changes to its own
//! subscribers (RLS as each, as the live path does), whoever wrote them. It keeps one
//! [`Cursor`] — the position through which this instance delivered — and reads the log after it
//! when woken: by `LISTEN` on [`log::CHANNEL`] (the slot holder `NOTIFY`s each batch it logs),
//! by its own instance's writer, after (re)connecting its `LISTEN` session (notifications sent
//! meanwhile are gone), and every [`POLL`] in case a wake-up was lost. Positions only go up, so
//! each change reaches a subscriber at most once; every logged change is read, so at least once.
//!
//! Rejects nothing. A floor above the cursor (the log was trimmed past it, or the slot was made
//! anew) tells this instance's subscribers to refetch.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Mutex, MutexGuard, Notify, mpsc};

use super::deliver::{check_retrying, send_checked};
use super::hub::Hub;
use super::log::{self, Position};
use crate::state::SharedState;

/// The safety poll: how long a lost wake-up can delay delivery at most.
pub const POLL: Duration = Duration::from_secs(2);
/// Changes read and delivered together.
const PAGE: usize = 1_000;
/// Wait before reconnecting a broken `LISTEN` session.
const RECONNECT: Duration = Duration::from_secs(1);

/// The position through which this instance delivered the log's changes. Whoever holds the lock
/// is the only one delivering changes from the log.
#[derive(Debug)]
pub struct Cursor {
    through: Mutex<Position>,
    /// Wakes the follower (the writer logged a batch it did not deliver itself).
    wake: Notify,
}

impl Cursor {
    pub fn new(through: Position) -> Cursor {
        Cursor {
            through: Mutex::new(through),
            wake: Notify::new(),
        }
    }

    pub async fn lock(&self) -> MutexGuard<'_, Position> {
        self.through.lock().await
    }

    /// Asks the follower to read the log.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// A `LISTEN` session: notification payloads arrive on the receiver until it breaks.
struct Listening {
    _client: tokio_postgres::Client,
    payloads: mpsc::UnboundedReceiver<String>,
}

async fn listen(config: &tokio_postgres::Config) -> Result<Listening, tokio_postgres::Error> {
    let mut config = config.clone();
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(10));
    let (client, mut connection) = config.connect(crate::db::tls::connector()).await?;
    let (tx, payloads) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "realtime: log LISTEN session ended");
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!(
            "set application_name = 'doska_realtime_follower'; listen {}",
            log::CHANNEL
        ))
        .await?;
    Ok(Listening {
        _client: client,
        payloads,
    })
}

/// Follows the log until shutdown, delivering to `hub`'s subscribers.
pub async fn run(
    state: SharedState,
    hub: Arc<Hub>,
    config: tokio_postgres::Config,
    cursor: Arc<Cursor>,
) {
    let mut shutdown = state.shutdown.clone();
    let mut listening: Option<Listening> = None;
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reconnect_at = tokio::time::Instant::now();
    loop {
        if listening.is_none() && tokio::time::Instant::now() >= reconnect_at {
            match listen(&config).await {
                Ok(l) => {
                    listening = Some(l);
                    // Whatever was announced while no session listened.
                    catch_up(&state, &hub, &mut *cursor.lock().await).await;
                }
                Err(e) => {
                    static REPEATS: crate::db::outage::Repeats = crate::db::outage::Repeats::new();
                    if let Some(held) = REPEATS.check() {
                        tracing::warn!(error = %e, "realtime: listening for logged changes failed; retrying{held}");
                    }
                    reconnect_at = tokio::time::Instant::now() + RECONNECT;
                }
            }
        }
        let wake = {
            let notified = async {
                match listening.as_mut() {
                    Some(l) => l.payloads.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                payload = notified => Wake::Announced(payload),
                _ = cursor.wake.notified() => Wake::Read,
                _ = poll.tick() => Wake::Read,
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        };
        match wake {
            Wake::Announced(Some(payload)) => {
                let mut through = cursor.lock().await;
                // Announced batches this instance delivered already (its own writer's) cost no
                // read.
                match payload.parse::<Position>() {
                    Ok(last) if last <= *through => {}
                    _ => catch_up(&state, &hub, &mut through).await,
                }
            }
            Wake::Announced(None) => {
                listening = None;
                reconnect_at = tokio::time::Instant::now() + RECONNECT;
            }
            Wake::Read => catch_up(&state, &hub, &mut *cursor.lock().await).await,
        }
    }
}

/// Why the follower woke.
enum Wake {
    /// A `NOTIFY` (its payload), or `None`: the `LISTEN` session broke.
    Announced(Option<String>),
    /// The writer asked, or the safety poll.
    Read,
}

/// Reads the log after `through` and delivers it, page by page, raising `through`. Stops early
/// (to be retried by the next wake-up or poll) when the log cannot be read, or doska stops.
pub async fn catch_up(state: &SharedState, hub: &Hub, through: &mut Position) {
    let all = [("*".to_string(), "*".to_string())];
    loop {
        let page = match log::changes_after(&state.admin, *through, &all, PAGE).await {
            Ok(page) => page,
            Err(e) => {
                static REPEATS: crate::db::outage::Repeats = crate::db::outage::Repeats::new();
                if let Some(held) = REPEATS.check() {
                    tracing::warn!(error = %e, "realtime: reading the change log failed; retrying{held}");
                }
                return;
            }
        };
        if page.floor > *through {
            tracing::warn!(floor = %page.floor, through = %*through, "realtime: changes this instance had not delivered are gone from the log");
            hub.tell_changes_lost(super::outbox::CHANGES_LOST_MESSAGE);
            *through = page.floor;
            continue;
        }
        if !page.changes.is_empty() {
            let Some(checked) = check_retrying(state, hub, &page.changes).await else {
                return;
            };
            send_checked(hub, &page.changes, checked, Some(*through)).await;
        }
        *through = (*through).max(page.through);
        if !page.more {
            return;
        }
    }
}
