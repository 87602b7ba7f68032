//! The change source: keeps one logical replication stream running for as long as doska runs —
//! connect, ensure the slot, stream, decode — and hands typed [`Event`]s to one consumer,
//! reconnecting with backoff when the stream breaks. Acknowledgements go through one
//! [`Acker`] that outlives connections, so after a reconnect PostgreSQL resends exactly what
//! was not acknowledged.
//!
//! It never drops or skips an event on its own: a consumer that falls behind slows it down
//! (bounded queue), and a broken stream is retried, not abandoned. It refuses nothing itself;
//! connection and decode errors are reported as [`SourceItem::Interrupted`] and retried.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::decode::{DecodeError, Decoder, Event, PgOutput, RelationFacts};
use super::lsn::Lsn;
use super::replication::{
    Acker, ReplicationConnection, ReplicationError, SlotStatus, StreamOptions,
};

/// Settings of the source.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub slot: String,
    pub stream: StreamOptions,
    /// First wait after a failure; doubled per consecutive failure up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// How many items may wait for the consumer.
    pub capacity: usize,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            slot: "doska_realtime".to_string(),
            stream: StreamOptions::default(),
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(10),
            capacity: 4096,
        }
    }
}

/// What the consumer receives.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    /// Streaming (re)started from the slot's confirmed position: every transaction after the
    /// last acknowledged commit comes (again). Discard any transaction seen without its Commit.
    /// `slot_created` is set when the slot had to be made, at the given consistent point: on a
    /// restart that means the slot was lost and changes made meanwhile were not captured.
    Started {
        slot_created: Option<Lsn>,
    },
    Event(Event),
    /// The stream broke; the source retries after `retry_in`.
    Interrupted {
        error: String,
        retry_in: Duration,
    },
}

/// Handle to the running source.
pub struct Source {
    items: mpsc::Receiver<SourceItem>,
    acker: Acker,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("acked", &self.acker.acked())
            .finish_non_exhaustive()
    }
}

impl Source {
    /// Starts the source task. It stops when `shutdown` turns true or the `Source` is dropped.
    pub fn spawn(
        config: tokio_postgres::Config,
        options: SourceOptions,
        shutdown: watch::Receiver<bool>,
    ) -> Source {
        let (tx, items) = mpsc::channel(options.capacity.max(1));
        let acker = Acker::default();
        let task = tokio::spawn(run(config, options, acker.clone(), tx, shutdown));
        Source { items, acker, task }
    }

    /// The next item; `None` once the source has stopped.
    pub async fn recv(&mut self) -> Option<SourceItem> {
        self.items.recv().await
    }

    /// The next item if one is already waiting.
    pub fn try_recv(&mut self) -> Option<SourceItem> {
        self.items.try_recv().ok()
    }

    /// Marks everything up to `lsn` (a Commit's `end_lsn`) handled.
    pub fn ack(&self, lsn: Lsn) {
        self.acker.ack(lsn);
    }

    pub fn acker(&self) -> Acker {
        self.acker.clone()
    }

    /// Stops the source and waits until its connection is closed (after a final status update).
    pub async fn close(mut self) {
        self.items.close();
        while self.items.recv().await.is_some() {}
        let _ = self.task.await;
    }
}

/// Why a streaming session ended.
enum Ended {
    /// Shutdown, or the consumer is gone: stop for good.
    Stop,
    Failed(String),
    /// Another walsender still streams the slot (the previous holder's, ending): retried soon,
    /// without growing the backoff.
    Busy(String),
}

impl From<ReplicationError> for Ended {
    fn from(e: ReplicationError) -> Self {
        match e {
            ReplicationError::Shutdown => Ended::Stop,
            e if e.is_slot_in_use() => Ended::Busy(e.to_string()),
            e => Ended::Failed(e.to_string()),
        }
    }
}

impl From<DecodeError> for Ended {
    fn from(e: DecodeError) -> Self {
        Ended::Failed(e.to_string())
    }
}

async fn run(
    config: tokio_postgres::Config,
    options: SourceOptions,
    acker: Acker,
    items: mpsc::Sender<SourceItem>,
    shutdown: watch::Receiver<bool>,
) {
    let mut backoff = options.retry_min;
    let mut first = true;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let (ended, streamed) = session(&config, &options, &acker, &items, &shutdown, first).await;
        let (error, busy) = match ended {
            Ended::Stop => return,
            Ended::Failed(error) => (error, false),
            Ended::Busy(error) => (error, true),
        };
        if *shutdown.borrow() {
            return;
        }
        if streamed {
            // It worked for a while: start the backoff over.
            first = false;
        }
        if streamed || busy {
            // (A busy slot is only waited for, at the shortest interval.)
            backoff = options.retry_min;
        }
        tracing::warn!(slot = %options.slot, %error, retry_in = ?backoff, "realtime replication interrupted");
        let interrupted = SourceItem::Interrupted {
            error,
            retry_in: backoff,
        };
        if !send(&items, interrupted, &shutdown).await {
            return;
        }
        let mut stop = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|stop| *stop) => return,
            _ = items.closed() => return,
        }
        if !busy {
            backoff = (backoff * 2).min(options.retry_max);
        }
    }
}

/// Hands `item` to the consumer unless shutdown comes first; false when it was not delivered.
async fn send(
    items: &mpsc::Sender<SourceItem>,
    item: SourceItem,
    shutdown: &watch::Receiver<bool>,
) -> bool {
    // Room in the queue (the usual case while the consumer keeps up): no waiting, no wakeups.
    let item = match items.try_send(item) {
        Ok(()) => return true,
        Err(mpsc::error::TrySendError::Closed(_)) => return false,
        Err(mpsc::error::TrySendError::Full(item)) => item,
    };
    let mut stop = shutdown.clone();
    tokio::select! {
        sent = items.send(item) => sent.is_ok(),
        _ = stop.wait_for(|stop| *stop) => false,
    }
}

async fn session(
    config: &tokio_postgres::Config,
    options: &SourceOptions,
    acker: &Acker,
    items: &mpsc::Sender<SourceItem>,
    shutdown: &watch::Receiver<bool>,
    first: bool,
) -> (Ended, bool) {
    let attempt = async {
        let mut conn = ReplicationConnection::connect(config, shutdown.clone()).await?;
        let slot_created = match conn.create_slot(&options.slot).await? {
            SlotStatus::Created { consistent_point } => {
                if !first {
                    tracing::error!(
                        slot = %options.slot,
                        "replication slot was missing and has been recreated: changes committed \
                         while it was missing were not captured"
                    );
                }
                Some(consistent_point)
            }
            SlotStatus::AlreadyExists => None,
        };
        let stream = conn
            .start_replication_with(
                &options.slot,
                Lsn::INVALID,
                options.stream.clone(),
                acker.clone(),
            )
            .await?;
        Ok::<_, ReplicationError>((stream, slot_created))
    };
    let (mut stream, slot_created) = match attempt.await {
        Ok(started) => started,
        Err(e) => return (e.into(), false),
    };
    if !send(items, SourceItem::Started { slot_created }, shutdown).await {
        let _ = stream.close().await;
        return (Ended::Stop, true);
    }
    // pgoutput describes relations once per connection: a fresh decoder per session.
    let mut decoder = Decoder::new();
    let mut catalog = Catalog::default();
    // Made once and polled in every round: not a new waiter per message.
    let consumer_gone = items.closed();
    tokio::pin!(consumer_gone);
    loop {
        let received = tokio::select! {
            received = stream.recv() => received,
            // The consumer is gone: close cleanly so the final status update goes out.
            _ = &mut consumer_gone => {
                let _ = stream.close().await;
                return (Ended::Stop, true);
            }
        };
        let message = match received {
            Ok(Some(message)) => message,
            Ok(None) if *shutdown.borrow() => return (Ended::Stop, true),
            Ok(None) => {
                let ended = Ended::Failed("the server ended the replication stream".into());
                return (ended, true);
            }
            Err(e) => return (e.into(), true),
        };
        let parsed = match PgOutput::parse(&message.data) {
            Ok(parsed) => parsed,
            Err(e) => {
                let _ = stream.close().await;
                return (e.into(), true);
            }
        };
        if let PgOutput::Relation(relation) = &parsed {
            match catalog.facts(config, relation.id).await {
                Ok(facts) => decoder.set_facts(relation.id, facts),
                Err(e) => {
                    let _ = stream.close().await;
                    let ended = Ended::Failed(format!(
                        "looking up relation {}.{}: {e}",
                        relation.namespace, relation.name
                    ));
                    return (ended, true);
                }
            }
        }
        let event = match decoder.apply(parsed) {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(e) => {
                let _ = stream.close().await;
                return (e.into(), true);
            }
        };
        if !send(items, SourceItem::Event(event), shutdown).await {
            // Shutdown or no consumer: close cleanly so the final status update goes out.
            let _ = stream.close().await;
            return (Ended::Stop, true);
        }
    }
}

/// A plain connection for what pgoutput's `Relation` message leaves out: opened on the first
/// relation of a session, kept until it ends.
#[derive(Default)]
struct Catalog {
    client: Option<tokio_postgres::Client>,
}

/// The primary key's columns (in key order) and whether row-level security is on. A relation
/// dropped since its change was written counts as under row security, without a key.
const RELATION_FACTS: &str = "select coalesce((select c.relrowsecurity from pg_class c where c.oid = $1), true), \
     coalesce((select array_agg(a.attname::text order by k.n) \
       from pg_index i cross join lateral unnest(i.indkey::int2[]) with ordinality k(attnum, n) \
       join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum \
      where i.indrelid = $1 and i.indisprimary), '{}')";

impl Catalog {
    async fn facts(
        &mut self,
        config: &tokio_postgres::Config,
        relation: u32,
    ) -> Result<RelationFacts, tokio_postgres::Error> {
        let client = match &mut self.client {
            Some(client) if !client.is_closed() => client,
            slot => {
                let (client, connection) = config.connect(crate::db::tls::connector()).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "realtime: catalog connection ended");
                    }
                });
                slot.insert(client)
            }
        };
        let row = client.query_one(RELATION_FACTS, &[&relation]).await?;
        Ok(RelationFacts {
            row_security: row.get(0),
            primary_key: row.get(1),
        })
    }
}
