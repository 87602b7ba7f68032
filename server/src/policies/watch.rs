//! Re-applies the policy files when they change while doska serves. Polls the folder's content (a
//! few small files, so hashing them every tick is cheaper than being clever), applies once the content
//! has held still for one tick (editors write in several steps), and never applies the same content
//! twice. A bad edit is logged line by line and the policies in force stay as they were. Stops when
//! doska shuts down.

use std::{future::Future, path::PathBuf, pin::Pin, sync::Arc, time::Duration};

use tokio::task::JoinHandle;

use super::{Mode, apply, read_dir};
use crate::state::AppState;

/// How often the folder is read.
pub const POLL: Duration = Duration::from_millis(250);

/// Told after a change to the files was applied and changed the database (REST reloads its schema
/// cache), before the watcher logs it.
pub type OnApplied = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Watches `dir`; `applied` is the hash of the set already in force (from the start-up apply).
pub fn spawn(
    state: Arc<AppState>,
    dir: PathBuf,
    applied: String,
    on_applied: OnApplied,
) -> JoinHandle<()> {
    tokio::spawn(run(state, dir, applied, on_applied))
}

async fn run(state: Arc<AppState>, dir: PathBuf, applied: String, on_applied: OnApplied) {
    let mut shutdown = state.shutdown.clone();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The content last tried (applied or rejected), and the content seen on the previous tick.
    let mut tried = applied.clone();
    let mut previous = applied;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let dir2 = dir.clone();
        let sources = match tokio::task::spawn_blocking(move || read_dir(&dir2)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the policy files; the policies in force stay");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the policy files panicked");
                continue;
            }
        };
        let stable = sources.hash == previous;
        previous = sources.hash.clone();
        if !stable || sources.hash == tried {
            continue;
        }
        tried = sources.hash.clone();
        let started = std::time::Instant::now();
        let mut client = match state.admin.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no admin connection to apply the changed policy files; will retry");
                tried.clear();
                continue;
            }
        };
        match apply(&mut client, &sources, Mode::Apply, &state.config.db_schemas).await {
            Ok(outcome) => {
                for w in &outcome.warnings {
                    tracing::warn!("{w}");
                }
                // The NOTIFY reaches the REST listener too; telling it here means the next request
                // after this line sees the new grants.
                if !outcome.statements.is_empty() {
                    on_applied().await;
                }
                tracing::info!(
                    statements = outcome.statements.len(),
                    ms = started.elapsed().as_millis() as u64,
                    hash = %outcome.hash,
                    "policy files changed: applied"
                );
            }
            Err(e) => {
                for line in e.lines() {
                    tracing::error!("{line}");
                }
                tracing::error!(
                    "policy files changed but are invalid: nothing applied, the policies in force stay"
                );
            }
        }
    }
}
