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
            let connected = config.connect(crate::db::tls::connector()).await;
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

/// Makes DDL announce itself: an event trigger that sends `NOTIFY pgrst, 'reload schema'` after
/// every DDL command, as Supabase's `pgrst_watch` does. Needs a superuser; where the database does
/// not allow one (a managed server), NOTIFY and restarts remain the ways to reload.
pub async fn install_ddl_watch(admin: &deadpool_postgres::Pool) {
    const SQL: &str = r#"
        CREATE OR REPLACE FUNCTION doska.rest_ddl_watch() RETURNS event_trigger LANGUAGE plpgsql AS $$
        BEGIN NOTIFY pgrst, 'reload schema'; END $$;
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'doska_rest_ddl_watch') THEN
            CREATE EVENT TRIGGER doska_rest_ddl_watch ON ddl_command_end EXECUTE FUNCTION doska.rest_ddl_watch();
          END IF;
          IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'doska_rest_drop_watch') THEN
            CREATE EVENT TRIGGER doska_rest_drop_watch ON sql_drop EXECUTE FUNCTION doska.rest_ddl_watch();
          END IF;
        END $$;"#;
    let result = match admin.get().await {
        Ok(client) => client.batch_execute(SQL).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        tracing::info!(error = %e, "rest: no DDL event trigger (reload with NOTIFY pgrst instead)");
    }
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
