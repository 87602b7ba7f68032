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

const SETTINGS_SQL: &str = "select set_config('role', $1, true), \
    set_config('request.jwt.claims', $2, true), set_config('request.method', $3, true), \
    set_config('request.path', $4, true), set_config('request.headers', $5, true)";

const SETTINGS_TIMEOUT_SQL: &str = "select set_config('role', $1, true), \
    set_config('request.jwt.claims', $2, true), set_config('request.method', $3, true), \
    set_config('request.path', $4, true), set_config('request.headers', $5, true), \
    set_config('statement_timeout', $6, true)";

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
        }
    }

    fn sql(&self) -> &'static str {
        if self.timeout.is_some() {
            SETTINGS_TIMEOUT_SQL
        } else {
            SETTINGS_SQL
        }
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
        p
    }
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
        fn types(params: &[(&(dyn ToSql + Sync), Type)]) -> Vec<Type> {
            params.iter().map(|(_, t)| t.clone()).collect()
        }
        fn values<'v>(params: &[(&'v (dyn ToSql + Sync), Type)]) -> Vec<&'v (dyn ToSql + Sync)> {
            params.iter().map(|(v, _)| *v).collect()
        }
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
                    // join_all polls its futures in order, so the statements are written in order.
                    let (results, end) = tokio::join!(
                        futures_util::future::join_all(
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
