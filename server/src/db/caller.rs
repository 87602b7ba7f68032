//! Acting as the caller — the one place that does it, for every door: a transaction that runs as a
//! [`Caller`] carries its role, its JWT claims (`request.jwt.claims`), the request's method, path
//! and headers (`request.*`) and a statement timeout as transaction-local settings, all set by the
//! `select set_config(…)` statements written here.
//!
//! [`RequestTx`] is the per-request transaction (REST, storage): BEGIN (read-only when the work only
//! reads), then the settings — sent pipelined, in one round trip — then the door's work, then
//! COMMIT or ROLLBACK. A transaction dropped unfinished (a panic, a cancelled request) discards its
//! connection instead of returning it to the pool mid-way. Realtime's batched checks pipeline
//! [`SET_CALLER`] / [`SET_CHANNEL_CALLER`] before each check on a transaction of their own; `doska
//! policies test` switches callers inside savepoints with [`act_as`] and [`with_claims`].

use deadpool_postgres::{Object, Pool};
use tokio_postgres::types::{ToSql, Type};

pub use crate::jwt::{Caller, Claims};

/// What PostgreSQL code may read about the request (`current_setting('request.method')`, …).
pub struct RequestInfo<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Header names lower-cased → values, a JSON object.
    pub headers: serde_json::Value,
    /// The transaction's `search_path` (REST: the exposed schema, then the extra schemas), as
    /// PostgreSQL takes it (identifiers quoted); `None` keeps the role's.
    pub search_path: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// No connection could be had (pool exhausted past its wait, or the server is down).
    #[error("no database connection: {0}")]
    Pool(deadpool_postgres::PoolError),
    #[error("{}", super::migrate::describe(.0))]
    Db(tokio_postgres::Error),
}

impl TxError {
    /// No connection, or the server went away / is not accepting work (see `db::outage`).
    pub fn is_unavailable(&self) -> bool {
        match self {
            TxError::Pool(deadpool_postgres::PoolError::Timeout(_)) => true,
            TxError::Pool(deadpool_postgres::PoolError::Backend(e)) => {
                super::outage::is_unavailable(e)
            }
            TxError::Pool(_) => true,
            TxError::Db(e) => super::outage::is_unavailable(e),
        }
    }
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        TxError::Db(e)
    }
}

pub struct RequestTx {
    client: Option<Object>,
}

/// The settings statement, with `statement_timeout` and/or `search_path` when the request sets
/// them (`$6`, `$7` in that order).
const SETTINGS_SQL: [&str; 4] = {
    macro_rules! base {
        ($($tail:literal)*) => {
            concat!(
                "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true), ",
                "set_config('request.method', $3, true), set_config('request.path', $4, true), ",
                "set_config('request.headers', $5, true)",
                $($tail,)*
            )
        };
    }
    [
        base!(),
        base!(", set_config('statement_timeout', $6, true)"),
        base!(", set_config('search_path', $6, true)"),
        base!(", set_config('statement_timeout', $6, true), set_config('search_path', $7, true)"),
    ]
};

/// Role, claims and statement timeout (`$1`, `$2`, `$3`, text): what each of realtime's batched
/// checks sets before it runs, pipelined.
pub const SET_CALLER: &str = "select set_config('role', $1, true), \
    set_config('request.jwt.claims', $2, true), set_config('statement_timeout', $3, true)";

/// Role, claims, the channel's topic (`realtime.topic`) and statement timeout (`$1`…`$4`, text):
/// what a private channel's policies are checked under.
pub const SET_CHANNEL_CALLER: &str = "select set_config('role', $1, true), \
    set_config('request.jwt.claims', $2, true), set_config('realtime.topic', $3, true), \
    set_config('statement_timeout', $4, true)";

const ACT_AS_SQL: &str =
    "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)";
const CLAIMS_SQL: &str = "select set_config('request.jwt.claims', $1, true)";
const CLAIMS_TOPIC_SQL: &str =
    "select set_config('request.jwt.claims', $1, true), set_config('realtime.topic', $2, true)";

/// Runs the rest of `c`'s open transaction (or savepoint) as `caller`: its role and claims.
pub async fn act_as<C: tokio_postgres::GenericClient>(
    c: &C,
    caller: &Caller,
) -> Result<(), tokio_postgres::Error> {
    c.execute(ACT_AS_SQL, &[&caller.role, &caller.claims.text()])
        .await
        .map(drop)
}

/// Sets only `claims` (and `realtime.topic`, when given) on `c`'s open transaction, keeping its
/// role: the admin reads policies' expressions as they would evaluate for that caller.
pub async fn with_claims<C: tokio_postgres::GenericClient>(
    c: &C,
    claims: &Claims,
    topic: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    match topic {
        None => c.execute(CLAIMS_SQL, &[&claims.text()]).await,
        Some(t) => c.execute(CLAIMS_TOPIC_SQL, &[&claims.text(), &t]).await,
    }
    .map(drop)
}

/// The caller's transaction-local settings, as text parameters of `SETTINGS_SQL`.
struct Settings<'a> {
    role: &'a str,
    claims: &'a str,
    method: &'a str,
    path: &'a str,
    headers: String,
    /// `None` leaves the server's statement timeout.
    timeout: Option<String>,
    search_path: Option<&'a str>,
}

impl<'a> Settings<'a> {
    fn new(caller: &'a Caller, info: &'a RequestInfo<'_>, statement_timeout_ms: u64) -> Self {
        Settings {
            role: &caller.role,
            claims: caller.claims.text(),
            method: info.method,
            path: info.path,
            headers: info.headers.to_string(),
            timeout: (statement_timeout_ms > 0).then(|| statement_timeout_ms.to_string()),
            search_path: info.search_path,
        }
    }

    fn sql(&self) -> &'static str {
        SETTINGS_SQL
            [usize::from(self.timeout.is_some()) + 2 * usize::from(self.search_path.is_some())]
    }

    fn params(&self) -> Vec<(&(dyn ToSql + Sync), Type)> {
        let mut p: Vec<(&(dyn ToSql + Sync), Type)> = vec![
            (&self.role, Type::TEXT),
            (&self.claims, Type::TEXT),
            (&self.method, Type::TEXT),
            (&self.path, Type::TEXT),
            (&self.headers, Type::TEXT),
        ];
        if let Some(t) = &self.timeout {
            p.push((t, Type::TEXT));
        }
        if let Some(path) = &self.search_path {
            p.push((path, Type::TEXT));
        }
        p
    }
}

fn types(params: &[(&(dyn ToSql + Sync), Type)]) -> Vec<Type> {
    params.iter().map(|(_, t)| t.clone()).collect()
}

fn values<'v>(params: &[(&'v (dyn ToSql + Sync), Type)]) -> Vec<&'v (dyn ToSql + Sync)> {
    params.iter().map(|(v, _)| *v).collect()
}

/// A typed bind parameter of a pipelined statement.
pub type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// A fixed SQL text and its parameters.
pub type Statement<'a> = (&'static str, &'a [Param<'a>]);

/// One caller's work in a shared transaction ([`RequestTx::run_shared`]).
pub struct Work<'a> {
    /// Names the work's savepoint (`doska_w<n>`): unique within the transaction.
    pub savepoint: usize,
    pub caller: &'a Caller,
    pub info: &'a RequestInfo<'a>,
    pub statement_timeout_ms: u64,
    pub statements: &'a [Statement<'a>],
}

/// What a round of shared work starts with.
#[derive(Debug, Clone, Copy)]
pub enum Lead {
    Begin,
    /// ROLLBACK TO SAVEPOINT of the work with this savepoint number: it and every work after it
    /// are undone.
    UndoTo(usize),
}

/// How a request's transaction starts: read-only when its work only reads.
fn begin_sql(read_only: bool) -> &'static str {
    if read_only {
        "BEGIN READ ONLY"
    } else {
        "BEGIN"
    }
}

impl RequestTx {
    /// Opens the transaction as `caller`. `statement_timeout_ms` 0 leaves the server's setting.
    pub async fn begin(
        pool: &Pool,
        caller: &Caller,
        info: &RequestInfo<'_>,
        read_only: bool,
        statement_timeout_ms: u64,
    ) -> Result<RequestTx, TxError> {
        let client = pool.get().await.map_err(TxError::Pool)?;
        let tx = RequestTx {
            client: Some(client),
        };
        let c = tx.client();
        let settings = Settings::new(caller, info, statement_timeout_ms);
        let params = settings.params();
        let begin = begin_sql(read_only);
        // Polled together, tokio-postgres writes both before reading either answer: one round trip.
        let (b, s) = tokio::join!(
            c.batch_execute(begin),
            c.query_typed(settings.sql(), &params)
        );
        b?;
        if let Err(e) = s {
            tx.rollback().await.ok();
            return Err(TxError::Db(e));
        }
        Ok(tx)
    }

    /// A whole read-only request in one round trip: BEGIN READ ONLY, the caller's settings, `sql`
    /// and COMMIT, written together before any answer is read. After a failure PostgreSQL skips to
    /// the COMMIT, which then ends the aborted transaction, so the connection goes back clean; the
    /// first error is the answer.
    pub async fn read_once(
        pool: &Pool,
        caller: &Caller,
        info: &RequestInfo<'_>,
        statement_timeout_ms: u64,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<tokio_postgres::Row>, TxError> {
        let client = pool.get().await.map_err(TxError::Pool)?;
        let settings = Settings::new(caller, info, statement_timeout_ms);
        let settings_params = settings.params();
        let (b, s, rows, end) = tokio::join!(
            client.batch_execute("BEGIN READ ONLY"),
            client.query_typed(settings.sql(), &settings_params),
            client.query_typed(sql, params),
            client.batch_execute("COMMIT"),
        );
        if let Err(e) = end {
            // The connection's state is unknown now: do not reuse it.
            drop(Object::take(client));
            return Err(TxError::Db(b.err().unwrap_or(e)));
        }
        b?;
        s?;
        Ok(rows?)
    }

    /// A whole short transaction in one round trip: BEGIN, the caller's settings, `statements` in
    /// order, then COMMIT or ROLLBACK (`commit`), all written before any answer is read. Each
    /// statement's own result comes back; after a failure PostgreSQL refuses the statements that
    /// follow and the final COMMIT ends the aborted transaction as a rollback, so a statement that
    /// failed never has its transaction's other work committed. `Err` only when the transaction
    /// itself could not start, take the settings or end (or a statement could not be prepared).
    #[allow(clippy::type_complexity)]
    pub async fn pipelined(
        pool: &Pool,
        caller: &Caller,
        info: &RequestInfo<'_>,
        read_only: bool,
        statement_timeout_ms: u64,
        statements: &[(&'static str, &[(&(dyn ToSql + Sync), Type)])],
        commit: bool,
    ) -> Result<Vec<Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>, TxError> {
        let finish = if commit { "COMMIT" } else { "ROLLBACK" };
        let (_, results) = Self::pipeline(
            pool,
            caller,
            info,
            read_only,
            statement_timeout_ms,
            statements,
            Some(finish),
        )
        .await?;
        Ok(results)
    }

    /// As [`RequestTx::pipelined`], but the transaction stays open after `statements`: BEGIN, the
    /// settings and the statements go out in one round trip, and the caller then commits or rolls
    /// back (a second, tiny round trip) once it has looked at the results — for work that must
    /// happen between the statements and the commit without a transaction of its own. After a
    /// failed statement the transaction is aborted; only a rollback (or a commit that rolls back)
    /// can follow.
    #[allow(clippy::type_complexity)]
    pub async fn pipelined_open(
        pool: &Pool,
        caller: &Caller,
        info: &RequestInfo<'_>,
        statement_timeout_ms: u64,
        statements: &[(&'static str, &[(&(dyn ToSql + Sync), Type)])],
    ) -> Result<
        (
            RequestTx,
            Vec<Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>,
        ),
        TxError,
    > {
        let (client, results) = Self::pipeline(
            pool,
            caller,
            info,
            false,
            statement_timeout_ms,
            statements,
            None,
        )
        .await?;
        Ok((
            RequestTx {
                client: Some(client),
            },
            results,
        ))
    }

    /// BEGIN, settings, `statements`, and `finish` (COMMIT or ROLLBACK) when given, written before any
    /// answer is read; returns the connection (in the open transaction when `finish` is `None`).
    #[allow(clippy::type_complexity)]
    async fn pipeline(
        pool: &Pool,
        caller: &Caller,
        info: &RequestInfo<'_>,
        read_only: bool,
        statement_timeout_ms: u64,
        statements: &[(&'static str, &[(&(dyn ToSql + Sync), Type)])],
        finish: Option<&'static str>,
    ) -> Result<
        (
            Object,
            Vec<Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>,
        ),
        TxError,
    > {
        let client = pool.get().await.map_err(TxError::Pool)?;
        let settings = Settings::new(caller, info, statement_timeout_ms);
        let settings_params = settings.params();
        let begin = begin_sql(read_only);
        // Statements are prepared once per connection and kept, so PostgreSQL neither parses them
        // nor, once it settles on a generic plan, plans them again; it still re-plans when the role,
        // a policy or a table changes. Fixed SQL texts only: the cache keeps every text it sees.
        // The settings statement needs no privileges: it can be prepared before the transaction.
        let settings_stmt = client
            .prepare_typed_cached(settings.sql(), &types(&settings_params))
            .await
            .map_err(TxError::Db)?;
        let settings_values = values(&settings_params);
        let statement_values: Vec<_> = statements.iter().map(|(_, p)| values(p)).collect();
        let statement_types: Vec<_> = statements.iter().map(|(_, p)| types(p)).collect();
        // The row statements are prepared inside the transaction, as the caller's role (the
        // connection's own role may not even see the storage schema). Once cached, preparing takes
        // no round trip, so BEGIN, settings, statements and COMMIT still go out together; the first
        // time on a connection, the pipeline waits once for the preparation.
        let work = async {
            let prepared = futures_util::future::try_join_all(
                statements
                    .iter()
                    .zip(&statement_types)
                    .map(|((sql, _), types)| client.prepare_typed_cached(sql, types)),
            )
            .await;
            match prepared {
                Err(e) => (Err(e), client.batch_execute("ROLLBACK").await),
                Ok(stmts) => {
                    let end = async {
                        match finish {
                            Some(finish) => client.batch_execute(finish).await,
                            None => Ok(()),
                        }
                    };
                    // Each statement is written when first polled: all of them before `end`.
                    let (results, end) = tokio::join!(
                        super::ordered::join_in_order(
                            stmts
                                .iter()
                                .zip(&statement_values)
                                .map(|(stmt, values)| client.query(stmt, values))
                        ),
                        end,
                    );
                    (Ok(results), end)
                }
            }
        };
        let (b, s, (results, end)) = tokio::join!(
            client.batch_execute(begin),
            client.query(&settings_stmt, &settings_values),
            work,
        );
        if let Err(e) = end {
            drop(Object::take(client));
            return Err(TxError::Db(b.err().unwrap_or(e)));
        }
        // Left open, a transaction that failed to start or take the settings is in an unknown state:
        // its connection is closed rather than returned to the pool. (A failed preparation has
        // rolled back already.)
        if finish.is_none() && results.is_ok() && (b.is_err() || s.is_err()) {
            drop(Object::take(client));
            return Err(TxError::Db(match (b, s) {
                (Err(e), _) | (Ok(()), Err(e)) => e,
                (Ok(()), Ok(_)) => unreachable!("one of the two failed"),
            }));
        }
        b?;
        s?;
        Ok((client, results?))
    }

    /// A connection for a transaction several callers share (`db::group`'s group commit); the
    /// first [`RequestTx::run_shared`] begins it.
    pub async fn shared(pool: &Pool) -> Result<RequestTx, TxError> {
        let client = pool.get().await.map_err(TxError::Pool)?;
        Ok(RequestTx {
            client: Some(client),
        })
    }

    /// Runs `works` in the shared transaction, each as its own caller in a savepoint of its own:
    /// after `lead` (BEGIN, or a rollback to an earlier work's savepoint), for each work SAVEPOINT,
    /// its caller's settings and its statements — every message written before any answer is read.
    /// A work's result is its statements' results, or the error that stopped its savepoint or
    /// settings. After a failed statement the transaction is aborted and the works after it fail
    /// too: roll back to the failed work's savepoint ([`Lead::UndoTo`]) and run them again. `Err`
    /// when the lead or a preparation failed: the transaction is unusable then.
    #[allow(clippy::type_complexity)]
    pub async fn run_shared(
        &self,
        lead: Lead,
        works: &[Work<'_>],
    ) -> Result<
        Vec<
            Result<
                Vec<Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>,
                tokio_postgres::Error,
            >,
        >,
        TxError,
    > {
        let c = self.client.as_ref().expect("transaction already finished");
        let lead_sql = match lead {
            Lead::Begin => "BEGIN".to_string(),
            Lead::UndoTo(n) => format!("ROLLBACK TO SAVEPOINT doska_w{n}"),
        };
        let savepoints: Vec<String> = works
            .iter()
            .map(|w| format!("SAVEPOINT doska_w{}", w.savepoint))
            .collect();
        let settings: Vec<Settings> = works
            .iter()
            .map(|w| Settings::new(w.caller, w.info, w.statement_timeout_ms))
            .collect();
        let settings_params: Vec<_> = settings.iter().map(Settings::params).collect();
        let settings_types: Vec<_> = settings_params.iter().map(|p| types(p)).collect();
        // The settings statements need no privileges: prepared before anything else is written.
        let settings_stmts = futures_util::future::try_join_all(
            settings
                .iter()
                .zip(&settings_types)
                .map(|(s, t)| c.prepare_typed_cached(s.sql(), t)),
        )
        .await
        .map_err(TxError::Db)?;
        let settings_values: Vec<_> = settings_params.iter().map(|p| values(p)).collect();
        let statement_values: Vec<Vec<_>> = works
            .iter()
            .map(|w| w.statements.iter().map(|(_, p)| values(p)).collect())
            .collect();
        let statement_types: Vec<Vec<_>> = works
            .iter()
            .map(|w| w.statements.iter().map(|(_, p)| types(p)).collect())
            .collect();
        // As in `pipeline`: the row statements are prepared after the first work's settings (as its
        // role); once cached that takes no round trip and everything goes out together.
        let rest = async {
            let prepared =
                futures_util::future::try_join_all(works.iter().enumerate().map(|(i, w)| {
                    futures_util::future::try_join_all(
                        w.statements
                            .iter()
                            .zip(&statement_types[i])
                            .map(|((sql, _), t)| c.prepare_typed_cached(sql, t)),
                    )
                }))
                .await?;
            let run = |i: usize| {
                super::ordered::join_in_order(
                    prepared[i]
                        .iter()
                        .zip(&statement_values[i])
                        .map(|(stmt, v)| c.query(stmt, v)),
                )
            };
            // Each work's messages are written when it is first polled: in order, whole.
            let later = super::ordered::join_in_order((1..works.len()).map(|i| {
                let (sp, st, sv) = (&savepoints[i], &settings_stmts[i], &settings_values[i]);
                let run = &run;
                async move {
                    let (p, s, r) = tokio::join!(c.batch_execute(sp), c.query(st, sv), run(i));
                    p?;
                    s?;
                    Ok::<_, tokio_postgres::Error>(r)
                }
            }));
            let (first, later) = tokio::join!(run(0), later);
            Ok::<_, tokio_postgres::Error>((first, later))
        };
        if works.is_empty() {
            c.batch_execute(&lead_sql).await.map_err(TxError::Db)?;
            return Ok(Vec::new());
        }
        let (l, p0, s0, rest) = tokio::join!(
            c.batch_execute(&lead_sql),
            c.batch_execute(&savepoints[0]),
            c.query(&settings_stmts[0], &settings_values[0]),
            rest,
        );
        l.map_err(TxError::Db)?;
        let (first, later) = rest.map_err(TxError::Db)?;
        let first = match (p0, s0) {
            (Err(e), _) | (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(_)) => Ok(first),
        };
        Ok(std::iter::once(first).chain(later).collect())
    }

    pub fn client(&self) -> &tokio_postgres::Client {
        // Only `commit`/`rollback` take the client out, and they consume `self`.
        self.client.as_ref().expect("transaction already finished")
    }

    pub async fn commit(self) -> Result<(), TxError> {
        self.end("COMMIT").await
    }

    pub async fn rollback(self) -> Result<(), TxError> {
        self.end("ROLLBACK").await
    }

    async fn end(mut self, statement: &str) -> Result<(), TxError> {
        let client = self.client.take().expect("transaction already finished");
        match client.batch_execute(statement).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // The connection's state is unknown now: do not reuse it.
                drop(Object::take(client));
                Err(TxError::Db(e))
            }
        }
    }
}

impl Drop for RequestTx {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Unfinished: close the connection rather than hand a live transaction to the next request.
            drop(Object::take(client));
        }
    }
}
