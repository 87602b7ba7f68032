//! Keeps the schema cache fresh: listens on the `pgrst` channel (`NOTIFY pgrst, 'reload schema'`
//! or `'reload config'`, as PostgREST does) over a dedicated connection, debounces bursts, and
//! reloads without blocking requests; a failed reload keeps the old cache. Reconnects with backoff
//! and stops on shutdown. Ignores other payloads.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use super::RestState;

/// How long to wait for more notifications before reloading once.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Spawns the listener. `config` connects as a role that may LISTEN (the admin role).
pub fn spawn(
    rest: RestState,
    admin: deadpool_postgres::Pool,
    config: tokio_postgres::Config,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let connected = config.connect(tokio_postgres::NoTls).await;
            let (client, mut conn) = match connected {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "rest: schema listener cannot connect; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let driver = tokio::spawn(async move {
                let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                while let Some(msg) = stream.next().await {
                    match msg {
                        Ok(AsyncMessage::Notification(n)) => {
                            if tx.send(n.payload().to_string()).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = client.batch_execute("LISTEN pgrst").await {
                tracing::warn!(error = %e, "rest: LISTEN pgrst failed; retrying");
                driver.abort();
                continue;
            }
            backoff = Duration::from_millis(200);
            // Anything may have changed while we were not listening.
            reload(&rest, &admin).await;
            loop {
                tokio::select! {
                    msg = rx.recv() => {
                        let Some(payload) = msg else { break };
                        if !wants_reload(&payload) {
                            continue;
                        }
                        // Debounce: swallow what arrives shortly after.
                        tokio::time::sleep(DEBOUNCE).await;
                        while rx.try_recv().is_ok() {}
                        reload(&rest, &admin).await;
                    }
                    _ = shutdown.changed() => {
                        driver.abort();
                        return;
                    }
                }
            }
            driver.abort();
            tracing::warn!("rest: schema listener connection lost; reconnecting");
        }
    })
}

fn wants_reload(payload: &str) -> bool {
    matches!(payload.trim(), "" | "reload schema" | "reload config")
}

async fn reload(rest: &RestState, admin: &deadpool_postgres::Pool) {
    match rest.reload(admin).await {
        Ok(()) => tracing::info!("rest: schema cache reloaded"),
        Err(e) => {
            tracing::warn!(error = %e, "rest: schema cache reload failed; keeping the old one")
        }
    }
}
