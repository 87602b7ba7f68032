//! The slot holder's side of delivery: takes committed transactions from the change [`Source`],
//! logs each batch durably (one statement, announced to every instance with `NOTIFY`) while
//! PostgreSQL checks who may see it, hands it to this instance's own subscribers when this
//! instance's [`Cursor`] shows it delivered everything logged before (else its follower reads it
//! back from the log), and only then acknowledges the WAL — so a restart, or another instance
//! taking the slot, resumes with whatever was not logged. `realtime.send` broadcasts (not in the
//! change log) go to this instance's hub from here.
//!
//! Runs only while this instance holds the slot ([`elect`](super::elect)); also trims the log and
//! `realtime.messages` and measures the slot's lag. Rejects nothing; failures are retried.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::decode::{Change, Event};
use super::deliver::{check_retrying, retrying, send_checked};
use super::follow::Cursor;
use super::hub::Hub;
use super::log::{self, Position};
use super::source::{Source, SourceItem, SourceOptions};
use crate::state::SharedState;

/// Transactions larger than this are delivered as they stream instead of at their commit,
/// so one huge transaction cannot hold unbounded memory.
const MAX_BUFFERED: usize = 10_000;
/// While a huge transaction streams, its changes are logged and delivered this many at a time.
const STREAM_CHUNK: usize = 1_000;
/// Committed changes logged together in one statement at most.
const MAX_BATCH: usize = 1_000;
/// How often the change log and `realtime.messages` are trimmed.
const TRIM_EVERY: Duration = Duration::from_secs(10);
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

/// Records how many WAL bytes the slot has not confirmed (for /metrics).
async fn measure_slot_lag(state: &SharedState, hub: &Hub, slot: &str) {
    let lag = match state.admin.get().await {
        Ok(c) => c
            .query_opt(
                "select pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint \
                 from pg_replication_slots where slot_name = $1",
                &[&slot],
            )
            .await
            .map(|row| row.and_then(|r| r.get::<_, Option<i64>>(0)))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match lag {
        Ok(lag) => hub.set_slot_lag(lag.unwrap_or(0)),
        Err(e) => tracing::debug!(error = %e, "realtime: measuring slot lag failed"),
    }
}

/// Every [`TRIM_EVERY`] until `stop`: trims the change log and `realtime.messages`, and measures
/// the slot's lag.
async fn housekeeping(
    state: SharedState,
    hub: Arc<Hub>,
    slot: String,
    mut stop: watch::Receiver<bool>,
) {
    let window = Duration::from_secs(state.config.realtime_replay_window_secs);
    let max_rows = state.config.realtime_replay_max_rows;
    let mut trim = tokio::time::interval(TRIM_EVERY);
    trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = trim.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        trim_messages(&state.admin).await;
        if let Err(e) = log::trim(&state.admin, window, max_rows).await {
            tracing::warn!(error = %e, "realtime: trimming the change log failed");
        }
        measure_slot_lag(&state, &hub, &slot).await;
    }
}

/// What stays of the writer between terms.
pub struct Writer {
    state: SharedState,
    hub: Arc<Hub>,
    cursor: Arc<Cursor>,
    /// Position of the newest change handed over (logged, and delivered or left to the
    /// follower): after the stream restarts, PostgreSQL sends again what was not acknowledged
    /// yet, and what was handed over already is not taken twice.
    handed: Position,
    /// A stream started before in this process (a slot made anew then means one was lost).
    started_before: bool,
}

impl Writer {
    pub fn new(state: SharedState, hub: Arc<Hub>, cursor: Arc<Cursor>) -> Writer {
        Writer {
            state,
            hub,
            cursor,
            handed: Position::default(),
            started_before: false,
        }
    }

    /// Logs `changes` durably (one statement) while PostgreSQL checks who may see them (one
    /// authorization round trip for the batch); once both are done — logged before anything is
    /// sent — hands them to this instance's subscribers if it delivered everything logged before
    /// them, else wakes the follower, which reads them back. False when doska stops first.
    async fn hand_over(&self, changes: &[Change]) -> bool {
        if changes.is_empty() {
            return true;
        }
        let (state, hub) = (&self.state, &*self.hub);
        // Held throughout: the follower delivers nothing meanwhile, so the answer to "did this
        // instance deliver everything before the batch" cannot change under us.
        let mut through = self.cursor.lock().await;
        let refs: Vec<&Change> = changes.iter().collect();
        let started = std::time::Instant::now();
        let logging = async {
            let r = retrying(state, "logging changes", || {
                log::append(&state.admin, &refs)
            })
            .await;
            (r, started.elapsed())
        };
        let checking = async {
            let r = check_retrying(state, hub, changes).await;
            (r, started.elapsed())
        };
        let age = |c: Option<&Change>| {
            c.map_or(0, |c| {
                (chrono::Utc::now() - c.commit_timestamp)
                    .num_microseconds()
                    .unwrap_or(0)
            })
        };
        let (oldest, newest) = (age(changes.first()), age(changes.last()));
        let ((appended, tl), (checked, tc)) = tokio::join!(logging, checking);
        let (Some(appended), Some(checked)) = (appended, checked) else {
            return false;
        };
        let (callers, retries, planned) = (checked.callers, checked.retries, checked.planned_in);
        let last_logged = changes
            .iter()
            .rev()
            .find(|c| !(c.schema == "realtime" && c.table == "messages"))
            .map(Position::of);
        match (appended.before, last_logged) {
            (Some(before), Some(last)) if appended.fresh && before <= *through => {
                send_checked(hub, changes, checked, Some(*through)).await;
                *through = (*through).max(last);
            }
            // Only broadcasts; or the log holds changes this instance has not delivered (another
            // holder's, or the batch was logged before): the follower reads them in order.
            (before, _) => {
                send_checked(hub, changes, checked, None).await;
                if before.is_some() {
                    drop(through);
                    self.cursor.wake();
                }
            }
        }
        tracing::debug!(
            changes = changes.len(),
            callers,
            retries,
            oldest_us = oldest,
            newest_us = newest,
            logged_us = tl.as_micros() as u64,
            checked_us = tc.as_micros() as u64,
            planned_us = planned.as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            "realtime: batch handed over"
        );
        true
    }

    /// Streams the slot through `config` and hands over its transactions until `stop` (the term
    /// ended: the lock session broke, or doska stops): each batch of committed transactions
    /// (whatever arrived together, up to `MAX_BATCH` changes) is logged in one statement, handed
    /// over, and only then acknowledged.
    pub async fn term(
        &mut self,
        config: &tokio_postgres::Config,
        options: &SourceOptions,
        mut stop: watch::Receiver<bool>,
    ) {
        let slot = options.slot.clone();
        // Everything up to the log's end is logged (each holder logs the stream contiguously
        // from the slot's confirmed position, which never passes what was not logged): the
        // previous holder's unacknowledged tail, sent again, is skipped without a check.
        let Some(tail) = retrying(&self.state, "reading the change log's end", || {
            log::tail(&self.state.admin)
        })
        .await
        else {
            return;
        };
        self.handed = self.handed.max(tail);
        let mut source = Source::spawn(config.clone(), options.clone(), stop.clone());
        // The newest position taken from the stream.
        let mut taken = self.handed;
        // The open transaction's changes (until its Commit).
        let mut open: Vec<Change> = Vec::new();
        // The open transaction grew past MAX_BUFFERED: its changes go out in chunks as they stream.
        let mut streaming = false;
        let mut ready = Ready::default();
        // Beside the stream, not in its way: a trim's deletes never hold up a batch.
        let housekeeping = tokio::spawn(housekeeping(
            self.state.clone(),
            self.hub.clone(),
            slot,
            stop.clone(),
        ));
        // Made once and polled in every round: not a new waiter per item.
        let stopping = stop.wait_for(|stop| *stop);
        tokio::pin!(stopping);
        loop {
            let item = if ready.end_lsn.is_some() {
                // Committed work is waiting: take what already arrived, else hand it over now.
                match source.try_recv() {
                    Some(item) => Some(item),
                    None => {
                        if !self.flush(&mut ready, &source).await {
                            break;
                        }
                        continue;
                    }
                }
            } else {
                tokio::select! {
                    item = source.recv() => item,
                    _ = &mut stopping => None,
                }
            };
            let Some(item) = item else { break };
            match item {
                SourceItem::Started { slot_created } => {
                    // Everything not acknowledged comes again: what was handed over already is
                    // not taken twice, what was still being collected is taken again.
                    open.clear();
                    ready = Ready::default();
                    taken = self.handed;
                    streaming = false;
                    tracing::info!(
                        slot_created = slot_created.is_some(),
                        "realtime: streaming changes from the replication slot"
                    );
                    if let Some(lsn) = slot_created
                        && !self.slot_created(lsn).await
                    {
                        break;
                    }
                    self.started_before = true;
                }
                SourceItem::Interrupted { error, retry_in } => {
                    tracing::debug!(%error, ?retry_in, "realtime: change stream interrupted");
                }
                SourceItem::Event(Event::Change(change)) => {
                    let position = Position::of(&change);
                    if position <= taken {
                        continue;
                    }
                    taken = position;
                    open.push(*change);
                    let limit = if streaming {
                        STREAM_CHUNK
                    } else {
                        MAX_BUFFERED
                    };
                    if open.len() >= limit {
                        // Delivered before the commit is known: nothing to wait for yet, so rows
                        // of a still-running transaction are checked as they stand. Earlier
                        // transactions go first.
                        if !self.flush(&mut ready, &source).await {
                            break;
                        }
                        streaming = true;
                        if !self.hand_over(&open).await {
                            break;
                        }
                        self.handed = taken;
                        open.clear();
                    } else if ready.changes.len() + open.len() >= MAX_BATCH
                        && !self.flush(&mut ready, &source).await
                    {
                        break;
                    }
                }
                SourceItem::Event(Event::Commit { end_lsn, .. }) => {
                    tracing::debug!(%end_lsn, changes = open.len(), "realtime: commit");
                    if streaming {
                        if !self.hand_over(&open).await {
                            break;
                        }
                        self.handed = taken;
                        open.clear();
                        streaming = false;
                        source.ack(end_lsn);
                    } else {
                        ready.changes.append(&mut open);
                        ready.end_lsn = Some(end_lsn);
                        if ready.changes.len() >= MAX_BATCH
                            && !self.flush(&mut ready, &source).await
                        {
                            break;
                        }
                    }
                }
                SourceItem::Event(Event::Begin { .. } | Event::Truncate(_)) => {}
            }
        }
        housekeeping.abort();
        source.close().await;
    }

    /// The slot was made now, at `lsn`: nothing before it was captured, so older `since`
    /// positions must refetch (the floor rises). Made while this process streamed before, a slot
    /// was lost: every instance's follower finds the floor above its cursor and tells its
    /// subscribers. Made for the first time, nobody missed anything: this instance's cursor
    /// rises with the floor. False when doska stops first.
    async fn slot_created(&self, lsn: super::lsn::Lsn) -> bool {
        tracing::info!(%lsn, "realtime: replication slot created");
        let floor = Position::end_of(lsn);
        let mut through = self.cursor.lock().await;
        if retrying(&self.state, "raising the log floor", || {
            log::raise_floor(&self.state.admin, floor)
        })
        .await
        .is_none()
        {
            return false;
        }
        if !self.started_before {
            *through = (*through).max(floor);
        } else {
            drop(through);
            self.cursor.wake();
        }
        true
    }

    /// Hands over the waiting batch, then acknowledges it. False when doska stops first.
    async fn flush(&mut self, ready: &mut Ready, source: &Source) -> bool {
        if !self.hand_over(&ready.changes).await {
            return false;
        }
        if let Some(last) = ready.changes.last() {
            self.handed = Position::of(last);
        }
        ready.changes.clear();
        if let Some(end) = ready.end_lsn.take() {
            source.ack(end);
        }
        true
    }
}

/// Committed transactions waiting to be logged, handed over and acknowledged together.
#[derive(Default)]
struct Ready {
    changes: Vec<Change>,
    end_lsn: Option<super::lsn::Lsn>,
}
