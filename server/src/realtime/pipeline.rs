//! The change pipeline of one instance, wired: every instance follows the durable change log
//! ([`follow`](super::follow)); the one elected slot holder ([`elect`](super::elect)) also
//! streams the replication slot and writes the log ([`writer`](super::writer)), handing what it
//! logged to its own subscribers at once when its follower is not behind. Rejects nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::deliver::retrying;
use super::hub::Hub;
use super::log;
use super::source::SourceOptions;
use crate::state::SharedState;

/// Delivers database changes to `hub`'s subscribers until shutdown; the slot is `options.slot`,
/// streamed through `config` (a superuser config) while this instance holds it.
pub async fn run(
    state: SharedState,
    hub: Arc<Hub>,
    config: tokio_postgres::Config,
    options: SourceOptions,
) {
    run_with(state, hub, config, options, Arc::default()).await
}

/// [`run`], keeping `holder` true while this instance holds the slot (for /metrics).
pub async fn run_with(
    state: SharedState,
    hub: Arc<Hub>,
    config: tokio_postgres::Config,
    options: SourceOptions,
    holder: Arc<AtomicBool>,
) {
    // A follower starting now delivers what is logged from now on.
    let Some(tail) = retrying(&state, "reading the change log's end", || {
        log::tail(&state.admin)
    })
    .await
    else {
        return;
    };
    let cursor = Arc::new(super::follow::Cursor::new(tail));
    let follower = tokio::spawn(super::follow::run(
        state.clone(),
        hub.clone(),
        config.clone(),
        cursor.clone(),
    ));
    let mut writer = super::writer::Writer::new(state.clone(), hub.clone(), cursor);
    while let Some(term) = super::elect::acquire(&config, &options.slot, &state.shutdown).await {
        holder.store(true, Ordering::Relaxed);
        writer.term(&config, &options, term.stop()).await;
        holder.store(false, Ordering::Relaxed);
        drop(term);
    }
    let _ = follower.await;
}
