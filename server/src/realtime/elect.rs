//! Slot election: of all doska instances on one database, exactly one at a time reads the
//! replication slot and writes the durable change log — the one holding a PostgreSQL session-level
//! advisory lock keyed by the slot's name, on a connection of its own. The others (standbys) try
//! the lock every [`POLL`]; a holder that dies loses its session, and with it the lock, as soon as
//! PostgreSQL notices the connection is gone (at once for a killed process, whose kernel closes
//! the socket; within the TCP keepalive settings below for a vanished host).
//!
//! A new holder ends a walsender still streaming the slot (the old holder's, not yet noticed
//! dead, or a holder that lost its lock session but not yet its stream), so it can start at once.
//! A holder whose lock session breaks stops streaming ([`Term::stop`]) and stands by again.
//!
//! Rejects nothing; connection failures are retried.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often a standby tries the lock (and a holder checks its lock session is alive).
pub const POLL: Duration = Duration::from_millis(500);

/// The advisory lock's first key (the second is `hashtext(slot)`): "doska realtime" in 32 bits.
const LOCK_CLASS: i32 = 0x6472_746c;

/// Server-side keepalives of the lock session: a holder whose host vanishes without closing its
/// socket loses the lock after about idle + interval × count seconds.
const KEEPALIVES: &str = "set tcp_keepalives_idle = 5; set tcp_keepalives_interval = 1; \
     set tcp_keepalives_count = 3; set application_name = 'doska_realtime_election'";

/// One term as slot holder: the lock session stays open (and the lock held) until dropped.
pub struct Term {
    stop: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Term {
    /// Turns true when the term ends: the lock session broke, or doska is stopping.
    pub fn stop(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        // Dropping the task's client closes the session, which releases the lock.
        self.task.abort();
    }
}

#[derive(Debug, thiserror::Error)]
enum ElectError {
    #[error("{0}")]
    Db(#[from] tokio_postgres::Error),
}

async fn connect(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, ElectError> {
    let mut config = config.clone();
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = config.connect(crate::db::tls::connector()).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "realtime: election session ended");
        }
    });
    client.batch_execute(KEEPALIVES).await?;
    Ok(client)
}

async fn try_lock(client: &tokio_postgres::Client, slot: &str) -> Result<bool, ElectError> {
    Ok(client
        .query_one(
            "select pg_try_advisory_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &slot],
        )
        .await?
        .get(0))
}

/// Ends any walsender streaming `slot` (none of ours is, before a term starts).
async fn end_stale_walsender(client: &tokio_postgres::Client, slot: &str) {
    let ended = client
        .query(
            "select pg_terminate_backend(active_pid) from pg_replication_slots \
             where slot_name = $1 and active_pid is not null",
            &[&slot],
        )
        .await;
    match ended {
        Ok(rows) if !rows.is_empty() => {
            tracing::info!(slot, "realtime: ended the previous holder's walsender")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(slot, error = %e, "realtime: ending a stale walsender failed"),
    }
}

/// Waits until this instance holds the slot's lock; `None` when doska stops first.
pub async fn acquire(
    config: &tokio_postgres::Config,
    slot: &str,
    shutdown: &watch::Receiver<bool>,
) -> Option<Term> {
    let mut shutdown = shutdown.clone();
    let mut session: Option<tokio_postgres::Client> = None;
    let mut said_standby = false;
    loop {
        if *shutdown.borrow() {
            return None;
        }
        let attempt = async {
            let client = match session.take() {
                Some(c) if !c.is_closed() => c,
                _ => connect(config).await?,
            };
            let held = try_lock(&client, slot).await?;
            Ok::<_, ElectError>((client, held))
        };
        let attempt = attempt.await;
        match attempt {
            Ok((client, true)) => {
                end_stale_walsender(&client, slot).await;
                tracing::info!(slot, "realtime: this instance holds the replication slot");
                return Some(hold(client, shutdown));
            }
            Ok((client, false)) => {
                if !said_standby {
                    said_standby = true;
                    tracing::info!(
                        slot,
                        "realtime: another instance holds the replication slot; standing by"
                    );
                }
                session = Some(client);
            }
            Err(e) => {
                static REPEATS: crate::db::outage::Repeats = crate::db::outage::Repeats::new();
                if let Some(held) = REPEATS.check() {
                    tracing::warn!(slot, error = %e, "realtime: slot election failed; retrying{held}");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait_for(|stop| *stop) => return None,
        }
    }
}

/// Keeps the lock session, checking it every [`POLL`]; the term's stop turns true when it
/// breaks or doska stops.
fn hold(client: tokio_postgres::Client, mut shutdown: watch::Receiver<bool>) -> Term {
    let (tx, stop) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            let alive = tokio::time::timeout(POLL * 4, client.simple_query("select 1")).await;
            if !matches!(alive, Ok(Ok(_))) {
                tracing::warn!("realtime: the slot election session broke; giving up the slot");
                break;
            }
        }
        let _ = tx.send(true);
        // The session (and the lock) stays until the term is dropped: the stream must end first.
        std::future::pending::<()>().await;
    });
    Term { stop, task }
}
