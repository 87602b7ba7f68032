//! The only I/O of the REST door: runs one statement inside the per-request transaction as the
//! caller's role, checks what must hold before committing (singular responses, `max-affected`),
//! then commits — or rolls back on `Prefer: tx=rollback` or any failure. Database errors become
//! [`DbError`]s with their SQLSTATE; `RAISE … SQLSTATE 'PGRST'` becomes a custom response.

use bytes::BytesMut;
use tokio_postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};

use http::Response;

use super::error::{DbError, RestError};
use super::idempotency::{Claim, Idempotency};
use super::sql::Statement;
use crate::db::caller::{RequestInfo, RequestTx, TxError};
use crate::http::body::Body;
use crate::jwt::Caller;

/// A parameter sent as text with type `unknown`: PostgreSQL types it from where it is used, as it
/// does a literal, and parses the text with that type's input function.
#[derive(Debug)]
struct TextParam<'a>(&'a str);

impl ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }
    to_sql_checked!();
}

/// Runs `sql` with `params` sent as [`TextParam`]s, each typed by PostgreSQL from where it is used.
pub async fn query_text<C: tokio_postgres::GenericClient>(
    client: &C,
    sql: &str,
    params: &[String],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let params = text_params(params);
    client.query_typed(sql, &typed(&params)).await
}

fn text_params(params: &[String]) -> Vec<TextParam<'_>> {
    params.iter().map(|p| TextParam(p)).collect()
}

/// The parameters as `query_typed` takes them, each of type `unknown`.
fn typed<'a>(params: &'a [TextParam<'_>]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .map(|p| (p as &(dyn ToSql + Sync), Type::UNKNOWN))
        .collect()
}

/// What the statement returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    pub total: Option<i64>,
    pub page_total: i64,
    pub body: Option<String>,
    pub location: Option<String>,
    pub response_headers: Option<String>,
    pub response_status: Option<String>,
}

/// Checks made after the statement ran and before the transaction ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Guards {
    /// `application/vnd.pgrst.object+json`: exactly one row.
    pub singular: bool,
    /// `Prefer: handling=strict, max-affected=n`.
    pub max_affected: Option<i64>,
    /// `Prefer: tx=rollback`.
    pub rollback: bool,
}

/// Per-request session settings that come from `Prefer`.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// `Prefer: timezone=…`: the transaction's `TimeZone`.
    pub timezone: Option<String>,
}

pub struct ExecRequest<'a> {
    pub session: Session,
    pub pool: &'a deadpool_postgres::Pool,
    pub caller: &'a Caller,
    pub info: RequestInfo<'a>,
    pub read_only: bool,
    pub statement_timeout_ms: u64,
}

impl ExecRequest<'_> {
    /// Opens the request's transaction, and says whether the caller is anonymous: PostgREST answers
    /// 401 rather than 403 to the anonymous role, token or not (the anon key is a JWT).
    async fn begin(&self) -> Result<(RequestTx, bool), RestError> {
        let anonymous = self.caller.role == "anon";
        let tx = RequestTx::begin(
            self.pool,
            self.caller,
            &self.info,
            self.read_only,
            self.statement_timeout_ms,
        )
        .await
        .map_err(|e| tx_error(e, anonymous))?;
        Ok((tx, anonymous))
    }
}

/// What the statement's one row says.
fn outcome(rows: &[tokio_postgres::Row], planned: Option<i64>) -> Outcome {
    match rows.first() {
        Some(row) => Outcome {
            total: row
                .try_get::<_, Option<i64>>("total")
                .ok()
                .flatten()
                .or(planned),
            page_total: row
                .try_get::<_, Option<i64>>("page_total")
                .ok()
                .flatten()
                .unwrap_or(0),
            body: row.try_get("body").ok().flatten(),
            location: row.try_get("location").ok().flatten(),
            response_headers: row.try_get("response_headers").ok().flatten(),
            response_status: row.try_get("response_status").ok().flatten(),
        },
        None => Outcome::default(),
    }
}

/// A read with nothing to decide between its statement and the transaction's end: the whole
/// transaction in one round trip. Committing a read-only transaction undoes nothing a rollback
/// would, so the singular check can come after it.
async fn run_read(req: ExecRequest<'_>, stmt: &Statement) -> Result<Outcome, RestError> {
    let anonymous = req.caller.role == "anon";
    let params = text_params(&stmt.params);
    let rows = RequestTx::read_once(
        req.pool,
        req.caller,
        &req.info,
        req.statement_timeout_ms,
        &stmt.sql,
        &typed(&params),
    )
    .await
    .map_err(|e| tx_error(e, anonymous))?;
    Ok(outcome(&rows, None))
}

/// Runs the statement and answers with `render`'s response. With an `Idempotency-Key`, the key is
/// claimed first in the same transaction (a stored answer is sent again instead of running) and the
/// answer is stored beside it before the commit.
pub async fn run(
    req: ExecRequest<'_>,
    stmt: &Statement,
    guards: Guards,
    idem: Option<&Idempotency>,
    render: impl FnOnce(Outcome) -> Result<Response<Body>, RestError>,
) -> Result<Response<Body>, RestError> {
    if idem.is_none() && req.read_only && stmt.explain.is_none() && req.session.timezone.is_none() {
        let outcome = run_read(req, stmt).await?;
        if guards.singular && outcome.page_total != 1 {
            return Err(RestError::Singular {
                rows: outcome.page_total,
            });
        }
        return render(outcome);
    }
    let (tx, anonymous) = req.begin().await?;
    if let Some(idem) = idem {
        let claim = match idem.begin(tx.client()).await {
            Ok(claim) => claim,
            Err(e) => {
                tx.rollback().await.ok();
                return Err(db_error(&e, anonymous));
            }
        };
        match claim {
            Claim::New => {}
            Claim::Replay(res) => {
                tx.rollback().await.ok();
                return Ok(res);
            }
            Claim::Conflict => {
                tx.rollback().await.ok();
                return Err(RestError::IdempotencyKeyReused);
            }
        }
    }
    let planned = match &stmt.explain {
        Some((sql, params)) => match planned_rows(tx.client(), sql, params).await {
            Ok(n) => Some(n),
            Err(e) => {
                tx.rollback().await.ok();
                return Err(db_error(&e, anonymous));
            }
        },
        None => None,
    };
    let rows = match &req.session.timezone {
        None => query_text(tx.client(), &stmt.sql, &stmt.params).await,
        Some(tz) => {
            // Sent together with the statement: one round trip. If the zone is unknown, its error
            // (not the aborted statement's) is the answer.
            let tz_param: [(&(dyn ToSql + Sync), Type); 1] = [(tz, Type::TEXT)];
            let set = tx.client().query_typed(
                "SELECT pg_catalog.set_config('timezone', $1, true)",
                &tz_param,
            );
            let (set, rows) = tokio::join!(set, query_text(tx.client(), &stmt.sql, &stmt.params));
            set.and(rows)
        }
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            tx.rollback().await.ok();
            return Err(db_error(&e, anonymous));
        }
    };
    let outcome = outcome(&rows, planned);
    if guards.singular && outcome.page_total != 1 {
        tx.rollback().await.ok();
        return Err(RestError::Singular {
            rows: outcome.page_total,
        });
    }
    if let Some(max) = guards.max_affected
        && outcome.page_total > max
    {
        tx.rollback().await.ok();
        return Err(RestError::MaxAffected {
            affected: outcome.page_total,
            max,
        });
    }
    let res = match render(outcome) {
        Ok(res) => res,
        Err(e) => {
            tx.rollback().await.ok();
            return Err(e);
        }
    };
    let res = match idem {
        Some(idem) if !guards.rollback => match idem.finish(tx.client(), res).await {
            Ok(res) => res,
            Err(e) => {
                tx.rollback().await.ok();
                return Err(db_error(&e, anonymous));
            }
        },
        _ => res,
    };
    let end = if guards.rollback {
        tx.rollback().await
    } else {
        tx.commit().await
    };
    end.map_err(|e| tx_error(e, anonymous))?;
    Ok(res)
}

/// `EXPLAIN` of the statement, in the caller's transaction, always rolled back (ANALYZE runs it).
pub async fn explain(
    req: ExecRequest<'_>,
    stmt: &Statement,
    ex: super::request::ExplainRequest,
) -> Result<String, RestError> {
    let (tx, anonymous) = req.begin().await?;
    let mut opts = vec![if ex.json {
        "FORMAT JSON"
    } else {
        "FORMAT TEXT"
    }];
    for (on, name) in [
        (ex.analyze, "ANALYZE"),
        (ex.verbose, "VERBOSE"),
        (ex.settings, "SETTINGS"),
        (ex.buffers, "BUFFERS"),
        (ex.wal, "WAL"),
    ] {
        if on {
            opts.push(name);
        }
    }
    let sql = format!("EXPLAIN ({}) {}", opts.join(", "), stmt.sql);
    let result = query_text(tx.client(), &sql, &stmt.params).await;
    tx.rollback().await.ok();
    let rows = result.map_err(|e| db_error(&e, anonymous))?;
    Ok(if ex.json {
        rows.first()
            .and_then(|r| r.try_get::<_, serde_json::Value>(0).ok())
            .map(|v| v.to_string())
            .unwrap_or_default()
    } else {
        rows.iter()
            .filter_map(|r| r.try_get::<_, String>(0).ok())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// The planner's row estimate of the top plan node.
async fn planned_rows(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[String],
) -> Result<i64, tokio_postgres::Error> {
    let rows = query_text(client, sql, params).await?;
    let plan: Option<serde_json::Value> = rows
        .first()
        .and_then(|r| r.try_get::<_, serde_json::Value>(0).ok());
    Ok(plan
        .as_ref()
        .and_then(|p| p[0]["Plan"]["Plan Rows"].as_f64())
        .map_or(0, |n| n as i64))
}

fn tx_error(e: TxError, anonymous: bool) -> RestError {
    match e {
        TxError::Pool(e) => pool_error(&e),
        TxError::Db(e) => db_error(&e, anonymous),
    }
}

/// No connection from the pool, as PostgREST says it: every connection busy past the wait is
/// PGRST003 (504); a server that cannot be reached is PGRST000 (503), which clients retry.
pub fn pool_error(e: &deadpool_postgres::PoolError) -> RestError {
    use deadpool_postgres::{PoolError, TimeoutType};
    crate::db::outage::unavailable("rest", e);
    match e {
        PoolError::Timeout(TimeoutType::Wait) => RestError::Unavailable {
            code: "PGRST003",
            message: "Timed out acquiring connection from connection pool.".into(),
        },
        _ => RestError::Unavailable {
            code: "PGRST000",
            message: "Could not connect with the database".into(),
        },
    }
}

/// A database error as the REST door reports it.
pub fn db_error(e: &tokio_postgres::Error, anonymous: bool) -> RestError {
    let db = match e.as_db_error() {
        Some(db) if !crate::db::outage::is_unavailable_code(db.code().code()) => db,
        // The connection is gone, or the server is shutting down, crashed or still recovering.
        _ => {
            crate::db::outage::unavailable("rest", e);
            return RestError::Unavailable {
                code: "PGRST000",
                message: "Could not connect with the database".into(),
            };
        }
    };
    let code = db.code().code();
    if code == "PGRST" {
        return raise_pgrst(db.message(), db.detail());
    }
    if code.starts_with("XX") || code.starts_with("58") {
        tracing::error!(
            sqlstate = code,
            message = db.message(),
            "rest: internal database error"
        );
    }
    RestError::Db(DbError {
        sqlstate: code.to_string(),
        message: db.message().to_string(),
        details: db.detail().map(String::from),
        hint: db.hint().map(String::from),
        anonymous,
    })
}

/// `RAISE SQLSTATE 'PGRST' USING message = '{"code":…,"message":…}', detail = '{"status":…,"headers":{…}}'`.
fn raise_pgrst(message: &str, detail: Option<&str>) -> RestError {
    let Ok(body @ serde_json::Value::Object(_)) =
        serde_json::from_str::<serde_json::Value>(message)
    else {
        return RestError::RaiseJson(format!("Invalid JSON value for MESSAGE: '{message}'"));
    };
    let detail_v = match detail.map(serde_json::from_str::<serde_json::Value>) {
        Some(Ok(v @ serde_json::Value::Object(_))) => v,
        _ => {
            return RestError::RaiseJson(format!(
                "Invalid JSON value for DETAIL: '{}'",
                detail.unwrap_or("")
            ));
        }
    };
    let status = detail_v["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..600).contains(s));
    let Some(status) = status else {
        return RestError::RaiseJson("DETAIL must have a numeric \"status\"".into());
    };
    let headers = detail_v["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), String::from),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut body = body;
    for k in ["code", "message", "details", "hint"] {
        if body.get(k).is_none() {
            body[k] = serde_json::Value::Null;
        }
    }
    RestError::Custom {
        status,
        body,
        headers,
    }
}
