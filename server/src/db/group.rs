//! Group commit of short writes: the row statements of concurrent requests share one transaction —
//! BEGIN, each request's statements in a savepoint of its own, run as its own caller with its own
//! settings ([`RequestTx::run_shared`]), then one COMMIT — so PostgreSQL starts, flushes and ends one
//! transaction, and doska makes a few round trips, for many requests. Each request still has its
//! statements decided by the database as its own caller (row-level security, constraints).
//!
//! A request refused (a statement failed, or its `keep` said no) is rolled back to its savepoint
//! alone; the requests after it in the group run again from there. A request whose `ready` says no
//! (its bytes did not become durable) is taken out the same way. Nothing commits before every request
//! left in the transaction is ready. When the shared transaction itself fails before its COMMIT,
//! nothing of it committed and each request is told to run alone; when the COMMIT fails, each is told
//! that the outcome is unknown.

use std::sync::{Arc, Mutex};

use deadpool_postgres::Pool;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_postgres::types::{ToSql, Type};

use super::caller::{Caller, Lead, Param, RequestInfo, RequestTx, Statement, Work};

/// The results of a request's statements, one per statement, in order.
pub type Results = Vec<Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>;

/// A bind parameter a job owns (it travels to the task that runs the group).
pub type OwnedParam = (Box<dyn ToSql + Send + Sync>, Type);

/// Requests one group transaction takes at most.
const MAX_BATCH: usize = 32;

/// Group transactions running at once (each on a pooled connection): one collects requests while
/// another waits for its flushes.
pub const RUNNING: usize = 2;

/// One request's short write.
pub struct Job {
    pub caller: Caller,
    pub method: String,
    pub path: String,
    pub headers: Value,
    pub statement_timeout_ms: u64,
    /// Fixed SQL texts (they are prepared and cached per connection) and their parameters.
    pub statements: Vec<(&'static str, Vec<OwnedParam>)>,
    /// Orders the jobs of a group, so that concurrent groups lock rows in one order and never
    /// wait for each other in a cycle (the storage core: bucket and key).
    pub order: String,
    /// Whether the statements' results (all successful) let the request stay in the transaction.
    pub keep: Box<dyn Fn(&Results) -> bool + Send + Sync>,
    /// Resolves `true` once what the request's rows point to is durable; `false` (or dropped): the
    /// request is taken out of the transaction.
    pub ready: oneshot::Receiver<bool>,
}

/// How a job ended.
pub enum Outcome {
    /// The transaction committed with the request's statements in it; their results.
    Committed(Results),
    /// A statement failed, or `keep` said no: rolled back to its savepoint, nothing of it kept. The
    /// results (or the error that stopped its savepoint or settings).
    Refused(Result<Results, tokio_postgres::Error>),
    /// `ready` said no: nothing of it kept.
    NotReady,
    /// The shared transaction failed for a reason not the request's own: nothing of it committed;
    /// the request may run on its own.
    Alone,
    /// The COMMIT failed (or the group's task died while committing): whether the request's rows
    /// committed is unknown.
    Unknown(String),
}

/// The group committer: requests queue here, and up to `max_running` group transactions run at
/// once, each taking the requests queued when it starts.
pub struct Group {
    pool: Pool,
    max_running: usize,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(Job, oneshot::Sender<Outcome>)>,
    running: usize,
}

/// A running group task: counted down when it finds the queue empty (under the queue's lock, so a
/// job queued meanwhile starts a task of its own) or, should it panic, when it is dropped.
struct Running {
    group: Arc<Group>,
    counted_down: std::cell::Cell<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.counted_down.get() {
            self.group.lock().running -= 1;
        }
    }
}

impl Group {
    pub fn new(pool: Pool, max_running: usize) -> Arc<Group> {
        Arc::new(Group {
            pool,
            max_running: max_running.max(1),
            queue: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job` and waits for its outcome.
    pub async fn submit(self: &Arc<Self>, job: Job) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.lock();
            q.waiting.push((job, tx));
            let start = q.running < self.max_running;
            if start {
                q.running += 1;
            }
            start
        };
        if start {
            let running = Running {
                group: self.clone(),
                counted_down: std::cell::Cell::new(false),
            };
            tokio::spawn(async move {
                loop {
                    let batch: Vec<_> = {
                        let mut q = running.group.lock();
                        if q.waiting.is_empty() {
                            q.running -= 1;
                            running.counted_down.set(true);
                            return;
                        }
                        let n = q.waiting.len().min(MAX_BATCH);
                        q.waiting.drain(..n).collect()
                    };
                    running.group.run(batch).await;
                }
            });
        }
        rx.await
            .unwrap_or_else(|_| Outcome::Unknown("the group commit task ended".into()))
    }

    /// Runs one group transaction over `batch` and answers every job in it.
    async fn run(&self, mut batch: Vec<(Job, oneshot::Sender<Outcome>)>) {
        batch.sort_by(|a, b| a.0.order.cmp(&b.0.order));
        let (mut jobs, mut replies): (Vec<Job>, Vec<_>) = batch.into_iter().unzip();
        let mut replies: Vec<Option<oneshot::Sender<Outcome>>> =
            replies.drain(..).map(Some).collect();
        let mut answer = |i: usize, o: Outcome| {
            if let Some(r) = replies[i].take() {
                let _ = r.send(o);
            }
        };
        let tx = match RequestTx::shared(&self.pool).await {
            Ok(tx) => tx,
            Err(_) => {
                (0..jobs.len()).for_each(|i| answer(i, Outcome::Alone));
                return;
            }
        };
        // Per job: still in the transaction, its latest results, and whether it is known ready.
        let mut alive = vec![true; jobs.len()];
        let mut results: Vec<Option<Results>> = (0..jobs.len()).map(|_| None).collect();
        let mut ready: Vec<Option<bool>> = vec![None; jobs.len()];
        let (mut lead, mut from) = (Lead::Begin, 0);
        loop {
            // Runs the alive jobs from `from` on, after `lead`.
            let idx: Vec<usize> = (from..jobs.len()).filter(|&i| alive[i]).collect();
            let infos: Vec<RequestInfo> = idx
                .iter()
                .map(|&i| RequestInfo {
                    method: &jobs[i].method,
                    path: &jobs[i].path,
                    headers: jobs[i].headers.clone(),
                    search_path: None,
                })
                .collect();
            let params: Vec<Vec<Vec<Param>>> = idx
                .iter()
                .map(|&i| {
                    jobs[i]
                        .statements
                        .iter()
                        .map(|(_, p)| {
                            p.iter()
                                .map(|(v, t)| (&**v as &(dyn ToSql + Sync), t.clone()))
                                .collect()
                        })
                        .collect()
                })
                .collect();
            let statements: Vec<Vec<Statement>> = idx
                .iter()
                .zip(&params)
                .map(|(&i, p)| {
                    jobs[i]
                        .statements
                        .iter()
                        .zip(p)
                        .map(|((sql, _), p)| (*sql, p.as_slice()))
                        .collect()
                })
                .collect();
            let works: Vec<Work> = idx
                .iter()
                .zip(&infos)
                .zip(&statements)
                .map(|((&i, info), statements)| Work {
                    savepoint: i,
                    caller: &jobs[i].caller,
                    info,
                    statement_timeout_ms: jobs[i].statement_timeout_ms,
                    statements,
                })
                .collect();
            // With no work left after a rollback, the round is the rollback alone.
            let ran = tx.run_shared(lead, &works).await;
            drop(works);
            let ran = match ran {
                Ok(r) => r,
                Err(_) => {
                    // The transaction is unusable (dropped: its connection is closed, nothing commits).
                    drop(tx);
                    (0..jobs.len())
                        .filter(|&i| alive[i])
                        .for_each(|i| answer(i, Outcome::Alone));
                    return;
                }
            };
            // The first job refused stops the round: the jobs after it ran in a transaction that
            // rolls back to its savepoint, and run again.
            let mut refused = None;
            for (&i, r) in idx.iter().zip(ran) {
                let kept = match &r {
                    Ok(rs) => rs.iter().all(Result::is_ok) && (jobs[i].keep)(rs),
                    Err(_) => false,
                };
                if kept {
                    results[i] = r.ok();
                } else {
                    alive[i] = false;
                    answer(i, Outcome::Refused(r));
                    refused = Some(i);
                    break;
                }
            }
            if let Some(i) = refused {
                (lead, from) = (Lead::UndoTo(i), i + 1);
                continue;
            }
            // Every job left has its statements in: wait until each is ready.
            let mut not_ready = None;
            for i in (0..jobs.len()).filter(|&i| alive[i]) {
                let ok = match ready[i] {
                    Some(ok) => ok,
                    None => {
                        let ok = (&mut jobs[i].ready).await.unwrap_or(false);
                        ready[i] = Some(ok);
                        ok
                    }
                };
                if !ok {
                    alive[i] = false;
                    answer(i, Outcome::NotReady);
                    not_ready = Some(i);
                    break;
                }
            }
            if let Some(i) = not_ready {
                (lead, from) = (Lead::UndoTo(i), i + 1);
                continue;
            }
            break;
        }
        let committed = tx.commit().await;
        for i in (0..jobs.len()).filter(|&i| alive[i]) {
            answer(
                i,
                match &committed {
                    Ok(()) => Outcome::Committed(results[i].take().unwrap_or_default()),
                    Err(e) => Outcome::Unknown(e.to_string()),
                },
            );
        }
    }
}
