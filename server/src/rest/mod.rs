//! The REST front door: PostgREST's dialect at `/rest/v1`. Pipeline: [`request`] (parse) →
//! [`plan`] (resolve against the [`schema`] cache) → [`sql`] (one parameterized statement) →
//! [`execute`] (the only I/O) → [`render`]. Every error is answered here, as PostgREST would.
//! Bodies: JSON by serde_json, forms by `http::query`, CSV by the `csv` crate; PostgREST's grammar
//! (`select=`, filters, `or=(…)`) is hand-written in [`grammar`] because no crate speaks it.

pub mod error;
pub mod execute;
pub mod fuzzy;
pub mod grammar;
pub mod idempotency;
pub mod listen;
pub mod openapi;
pub mod plan;
pub mod render;
pub mod request;
pub mod schema;
pub mod sql;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::db::caller::RequestInfo;
use crate::http::body::{Body, empty};
use crate::http::headers_json;
use crate::http::{DoorFuture, Rejection, RequestContext};
use crate::jwt::JwtError;
use crate::state::AppState;
use error::{RequestError, RestError};
use hyper::body::Incoming;
use plan::Payload;
use request::{Action, ApiRequest, ContentType, MediaType, Target, TxPref};
pub use schema::SchemaCacheHandle;

/// What the REST door keeps between requests: the schema cache and its settings.
#[derive(Clone, Debug)]
pub struct RestState {
    pub cache: SchemaCacheHandle,
    /// Exposed schemas, the first being the default (`--db-schemas`).
    pub schemas: Vec<String>,
    pub max_rows: Option<i64>,
    pub statement_timeout_ms: u64,
    /// Each exposed schema's `search_path` for its requests: that schema, then
    /// `--db-extra-search-path`, every name quoted (PostgREST's rule).
    pub search_paths: std::collections::HashMap<String, String>,
}

impl RestState {
    /// REST's settings from `config`, with an empty schema cache (see [`RestState::reload`]).
    pub fn new(config: &crate::config::Config) -> RestState {
        RestState {
            cache: SchemaCacheHandle::default(),
            schemas: config.db_schemas.clone(),
            max_rows: config.db_max_rows,
            statement_timeout_ms: config.db_statement_timeout_ms,
            search_paths: config
                .db_schemas
                .iter()
                .map(|s| {
                    let path = std::iter::once(s)
                        .chain(&config.db_extra_search_path)
                        .map(|n| sql::ident(n))
                        .collect::<Vec<_>>()
                        .join(", ");
                    (s.clone(), path)
                })
                .collect(),
        }
    }

    /// Loads the schema cache over an admin connection.
    pub async fn load(
        admin: &deadpool_postgres::Pool,
        config: &crate::config::Config,
    ) -> Result<RestState, schema::SchemaError> {
        let state = RestState::new(config);
        state.reload(admin).await?;
        Ok(state)
    }

    /// Reloads the schema cache; on failure the old cache stays and the error is returned.
    pub async fn reload(&self, admin: &deadpool_postgres::Pool) -> Result<(), schema::SchemaError> {
        let client = admin
            .get()
            .await
            .map_err(|e| schema::SchemaError::Pool(e.to_string()))?;
        let cache = schema::load(&client, &self.schemas).await?;
        self.cache.set(cache);
        Ok(())
    }

    /// Keeps the schema cache fresh on `NOTIFY pgrst` (and DDL) over a dedicated connection made
    /// from `config`, and sweeps expired idempotency keys, until shutdown.
    pub async fn listen(&self, state: &AppState, config: tokio_postgres::Config) {
        listen::install_ddl_watch(&state.admin).await;
        listen::spawn(
            self.clone(),
            state.admin.clone(),
            config,
            state.shutdown.clone(),
        );
        idempotency::spawn_cleanup(state.admin.clone(), state.shutdown.clone());
    }
}

/// Loads REST's state for `state`; with `listen`, also keeps its schema cache fresh (see
/// [`RestState::listen`]).
pub async fn start(
    state: &AppState,
    listen: Option<tokio_postgres::Config>,
) -> Result<RestState, schema::SchemaError> {
    let rest = RestState::load(&state.admin, &state.config).await?;
    if let Some(config) = listen {
        rest.listen(state, config).await;
    }
    Ok(rest)
}

/// The front door as the router mounts it at `/rest/v1`: the shared state and REST's own.
pub struct RestDoor {
    state: Arc<AppState>,
    rest: RestState,
}

impl RestDoor {
    pub fn new(state: Arc<AppState>, rest: RestState) -> RestDoor {
        RestDoor { state, rest }
    }
}

impl crate::http::Door for RestDoor {
    fn handle(self: Arc<Self>, req: Request<Incoming>, ctx: RequestContext) -> DoorFuture {
        Box::pin(async move {
            // A schema cache that could not be loaded at start-up is loaded by the next request.
            if self.rest.cache.get().schemas.is_empty()
                && let Err(e) = self.rest.reload(&self.state.admin).await
            {
                tracing::error!(error = %e, "rest: cannot load the schema cache");
                return render::error(&RestError::SchemaCacheNotLoaded);
            }
            serve(&self.rest, &self.state, req, ctx).await
        })
    }

    /// PostgREST's shape: PGRST413 for a body over the limit, PGRSTX00 for a panic (the request id
    /// in `details`, so a report can be matched to the log line).
    fn reject(&self, why: &Rejection, request_id: &str) -> Response<Body> {
        render::error(&match why {
            Rejection::TooLarge { .. } => RestError::Request(RequestError::BodyTooLarge),
            Rejection::Panicked => RestError::Custom {
                status: 500,
                body: serde_json::json!({
                    "code": "PGRSTX00",
                    "message": why.message(),
                    "details": format!("request id {request_id}"),
                    "hint": null,
                }),
                headers: Vec::new(),
            },
        })
    }
}

/// Handles one request under `/rest/v1` (`ctx.path` is what follows the prefix).
pub async fn serve<B>(
    rest: &RestState,
    state: &AppState,
    req: Request<B>,
    ctx: RequestContext,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match serve_inner(rest, state, req, &ctx).await {
        Ok(res) => res,
        Err(e) => render::error(&e),
    }
}

async fn serve_inner<B>(
    rest: &RestState,
    state: &AppState,
    req: Request<B>,
    ctx: &RequestContext,
) -> Result<Response<Body>, RestError>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let caller = state.verifier.caller(&parts.headers).map_err(jwt_error)?;
    let mut api = request::parse(&parts.method, &ctx.path, parts.uri.query(), &parts.headers)?;
    let cache = rest.cache.get();
    if cache.schemas.is_empty() {
        return Err(RestError::SchemaCacheNotLoaded);
    }
    let schema = match &api.profile {
        Some(p) if !rest.schemas.contains(p) => {
            return Err(RequestError::UnacceptableSchema {
                schema: p.clone(),
                exposed: rest.schemas.clone(),
            }
            .into());
        }
        Some(p) => p.clone(),
        None => rest.schemas[0].clone(),
    };
    if api.action == Action::Info {
        return Ok(options(&api));
    }
    let bytes = http_body_util::Limited::new(body, ctx.body_limit as usize)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                RestError::Request(RequestError::BodyTooLarge)
            } else {
                RestError::Request(RequestError::InvalidBody(format!(
                    "could not read the body: {e}"
                )))
            }
        })?;
    let bytes = bytes.to_bytes();
    let payload = decode_body(&api, &bytes)?;
    let idem = idempotency::from_request(
        &parts.method,
        &ctx.path,
        parts.uri.query(),
        &parts.headers,
        &bytes,
    )?;
    let info = RequestInfo {
        method: parts.method.as_str(),
        path: &ctx.path,
        headers: headers_json(&parts.headers),
        search_path: rest.search_paths.get(&schema).map(String::as_str),
    };
    if api.target == Target::Root {
        return openapi::serve(state, &cache, &schema, &caller, info).await;
    }
    // `alter role authenticator set pgrst.db_max_rows = …` wins over --db-max-rows, as in PostgREST.
    let max_rows = cache
        .settings
        .get("pgrst.db_max_rows")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n > 0)
        .or(rest.max_rows);
    let plan_cfg = plan::PlanConfig { max_rows };
    let plan = plan::plan(&api, &payload, &cache, &schema, &plan_cfg)?;
    let stmt = sql::build(
        &plan,
        sql::BodyOptions {
            strip_nulls: api.accept.strip_nulls,
            csv: false,
            geojson: false,
        },
    )
    .map_err(|e| {
        RestError::Plan(error::PlanError::Invalid {
            message: "invalid filter value".into(),
            details: e.0,
        })
    })?;
    let exec = execute::ExecRequest {
        session: execute::Session {
            timezone: api.prefer.timezone.clone(),
        },
        pool: &state.pool,
        caller: &caller,
        info,
        // Claiming an idempotency key writes its row, in the write's own transaction.
        read_only: plan.read_only && idem.is_none(),
        statement_timeout_ms: rest.statement_timeout_ms,
    };
    if let Some(ex) = api.accept.plan {
        // Plans reveal the query and the data's shape: off unless pgrst.db_plan_enabled, as in PostgREST.
        if !cache.flag("pgrst.db_plan_enabled", false) {
            return Err(RequestError::NotAcceptable("application/vnd.pgrst.plan".into()).into());
        }
        let text = execute::explain(exec, &stmt, ex).await?;
        let for_media = match api.accept.media {
            MediaType::Json => "application/json",
            MediaType::SingleObject => "application/vnd.pgrst.object+json",
            MediaType::Csv => "text/csv",
            MediaType::GeoJson => "application/geo+json",
        };
        let ct = format!(
            "application/vnd.pgrst.plan+{}; for=\"{for_media}\"; charset=utf-8",
            if ex.json { "json" } else { "text" }
        );
        let mut res = Response::new(crate::http::body::full(text));
        if let Ok(v) = HeaderValue::from_str(&ct) {
            res.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        return Ok(res);
    }
    let guards = execute::Guards {
        singular: api.accept.media == MediaType::SingleObject,
        max_affected: if api.prefer.strict {
            api.prefer.max_affected
        } else {
            None
        },
        rollback: tx_rollback(&cache, &mut api.prefer),
    };
    execute::run(exec, &stmt, guards, idem.as_ref(), |outcome| {
        render::success(render::RenderInput {
            plan: &plan,
            action: api.action,
            prefer: &api.prefer,
            outcome,
        })
    })
    .await
}

/// How the transaction ends: `pgrst.db_tx_end` (commit, commit-allow-override, rollback,
/// rollback-allow-override; default commit) and, when it allows, `Prefer: tx=`. A preference that
/// is not honoured is dropped from Preference-Applied.
fn tx_rollback(cache: &schema::SchemaCache, prefer: &mut request::Preferences) -> bool {
    let setting = cache
        .settings
        .get("pgrst.db_tx_end")
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "commit".into());
    let base = setting.starts_with("rollback");
    if setting.ends_with("allow-override")
        && let Some(tx) = prefer.tx
    {
        return tx == TxPref::Rollback;
    }
    prefer.applied.retain(|a| !a.starts_with("tx="));
    base
}

fn jwt_error(e: JwtError) -> RestError {
    let code = match e {
        JwtError::Expired
        | JwtError::NotYetValid
        | JwtError::IssuedInFuture
        | JwtError::BadClaims => "PGRST303",
        _ => "PGRST301",
    };
    RestError::Jwt {
        code,
        message: e.message().to_string(),
    }
}

fn options(api: &ApiRequest) -> Response<Body> {
    let allow = match api.target {
        Target::Rpc(_) => "OPTIONS,GET,HEAD,POST",
        Target::Root => "OPTIONS,GET,HEAD",
        Target::Relation(_) => "OPTIONS,GET,HEAD,POST,PUT,PATCH,DELETE",
    };
    let mut res = Response::new(empty());
    *res.status_mut() = StatusCode::OK;
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

/// Decodes the body by Content-Type: JSON as is, CSV and form-urlencoded into JSON objects.
fn decode_body(api: &ApiRequest, bytes: &[u8]) -> Result<Payload, RestError> {
    let writes = matches!(
        api.action,
        Action::Insert
            | Action::Update
            | Action::Upsert
            | Action::Call {
                method: request::CallMethod::Post
            }
    );
    if !writes {
        return Ok(Payload::None);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| RequestError::InvalidBody("the body is not UTF-8".into()))?;
    match api.content_type {
        ContentType::Json => {
            if text.trim().is_empty() {
                return Ok(if matches!(api.action, Action::Call { .. }) {
                    Payload::None
                } else {
                    Payload::Json(Value::Object(Default::default()))
                });
            }
            serde_json::from_str(text)
                .map(Payload::Json)
                .map_err(|_| RequestError::InvalidBody("Empty or invalid json".into()).into())
        }
        ContentType::Form => {
            let obj: serde_json::Map<String, Value> = crate::http::query::pairs(text)
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            Ok(Payload::Json(Value::Object(obj)))
        }
        ContentType::Csv => csv_rows(text).map(Payload::Json),
        ContentType::Raw(_) => Ok(Payload::Raw(text.to_string())),
    }
}

/// Parses CSV (RFC 4180, by the `csv` crate) into an array of objects keyed by the header line;
/// blank lines are skipped. A `NULL` field is SQL NULL, as PostgREST reads it (its CSV reader,
/// like this one, does not see quotes, so `"NULL"` is NULL too). Rejects lines with another field
/// count than the header and a quoted field left open at the end.
fn csv_rows(text: &str) -> Result<Value, RestError> {
    let bad = |m: String| -> RestError { RequestError::InvalidBody(m).into() };
    // The csv crate reads an open quote to the end of the input without complaint; a last line of
    // its own shows whether quoting was closed (an open field swallows it).
    const SENTINEL: &str = "\u{1}";
    let input = format!("{text}\n{SENTINEL}");
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(input.as_bytes());
    let header = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    let mut records = reader
        .records()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let last = records.pop();
    match &last {
        Some(r) if r.len() == 1 && &r[0] == SENTINEL => {}
        None if header.len() == 1 && &header[0] == SENTINEL => {
            return Ok(Value::Array(Vec::new()));
        }
        _ => return Err(bad("unterminated quoted CSV field".into())),
    }
    let mut rows = Vec::new();
    for record in records {
        if record.len() != header.len() {
            return Err(bad(
                "every CSV line must have as many fields as the header".into()
            ));
        }
        let obj = header
            .iter()
            .zip(record.iter())
            .map(|(k, v)| {
                let v = if v == "NULL" {
                    Value::Null
                } else {
                    Value::String(v.to_owned())
                };
                (k.to_owned(), v)
            })
            .collect();
        rows.push(Value::Object(obj));
    }
    Ok(Value::Array(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_parsing() {
        let v = csv_rows("a,b\n1,\"x,\"\"y\"\"\"\r\n2,NULL\n").unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"a": "1", "b": "x,\"y\""}, {"a": "2", "b": null}])
        );
        assert!(csv_rows("a,b\n1\n").is_err());
        assert!(csv_rows("a\n\"open").is_err());
        assert_eq!(csv_rows("").unwrap(), serde_json::json!([]));
        let cases = [
            ("a\n\n", serde_json::json!([])),
            ("a,b\n\n1,2\n\n", serde_json::json!([{"a": "1", "b": "2"}])),
            (
                "a,b\n1,2\n,\n",
                serde_json::json!([{"a": "1", "b": "2"}, {"a": "", "b": ""}]),
            ),
            ("a\n\"\"\n", serde_json::json!([{"a": ""}])),
            ("a\n\"NULL\"\n", serde_json::json!([{"a": null}])),
            ("a\nx\"y\n", serde_json::json!([{"a": "x\"y"}])),
            (
                "a\n\"line\nbreak\"",
                serde_json::json!([{"a": "line\nbreak"}]),
            ),
            (
                "a\n\u{1}\n2",
                serde_json::json!([{"a": "\u{1}"}, {"a": "2"}]),
            ),
            ("\u{1}\nx", serde_json::json!([{"\u{1}": "x"}])),
        ];
        for (csv, want) in cases {
            assert_eq!(csv_rows(csv).unwrap(), want, "{csv:?}");
        }
        for bad in ["a,b\n1,2,3\n", "a\n\"open\n\u{1}", "a,b\n\"x,1\n", "\"a"] {
            assert!(csv_rows(bad).is_err(), "{bad:?}");
        }
    }
}
