//! Routing by URL prefix and everything wrapped around a front door: request id, CORS, declared-body
//! limits, panic containment, compression, metrics and the access log line (method, path without query,
//! status, latency — never a token or password). Unknown routes get a JSON 404.

use std::{net::SocketAddr, panic::AssertUnwindSafe, sync::Arc, time::Instant};

use futures_util::FutureExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;

use super::{
    RequestContext,
    body::{Body, json},
    compress, cors,
    door::{Door, Rejection, foundation_error, foundation_reject, panic_message},
    metrics::door_of,
    sdk, static_files,
};
use crate::state::SharedState;

/// A request id the client sent, if it is short and harmless; else a fresh one.
fn request_id(req: &Request<Incoming>) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        })
        .map(str::to_string)
        // From the thread-local RNG: `new_v4` asks the OS for randomness on every request.
        .unwrap_or_else(|| {
            uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string()
        })
}

/// Error body of the foundation's own routes.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    foundation_error(status, message)
}

/// Strips `prefix` from `path` when it is that route (`/rest/v1`, `/rest/v1/…`), not `/rest/v10`.
fn strip<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The doors by URL prefix, and the shared state the foundation's own routes need.
pub struct Router {
    state: SharedState,
    doors: Vec<(&'static str, Arc<dyn Door>)>,
}

impl Router {
    pub fn new(state: SharedState) -> Router {
        Router {
            state,
            doors: Vec::new(),
        }
    }

    /// Mounts `door` at `prefix` (`/rest/v1` takes `/rest/v1` and `/rest/v1/…`, not `/rest/v10`).
    pub fn mount(mut self, prefix: &'static str, door: Arc<dyn Door>) -> Router {
        self.doors.push((prefix, door));
        self
    }

    /// The door that owns `path`, and the path after its prefix.
    fn door_for<'p>(&self, path: &'p str) -> Option<(&Arc<dyn Door>, &'p str)> {
        self.doors
            .iter()
            .find_map(|(prefix, door)| strip(path, prefix).map(|sub| (door, sub)))
    }
}

async fn health(state: &SharedState) -> Response<Body> {
    let check = async {
        let client = state.admin.get().await.map_err(|e| e.to_string())?;
        client
            .simple_query("select 1")
            .await
            .map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), check).await {
        Ok(Ok(())) => json(StatusCode::OK, &json!({"status": "ok", "database": "ok"})),
        Ok(Err(e)) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "error", "database": e}),
        ),
        Err(_) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "error", "database": "no answer within 3 seconds"}),
        ),
    }
}

fn metrics(state: &SharedState) -> Response<Body> {
    let mut res = Response::new(super::body::full(state.metrics.render()));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

async fn dispatch(router: &Router, req: Request<Incoming>, ctx: RequestContext) -> Response<Body> {
    let state = &router.state;
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match path.as_str() {
        "/health" | "/health/" => return health(state).await,
        "/metrics" => return metrics(state),
        _ => {}
    }
    if let Some((door, sub)) = router.door_for(&path) {
        let ctx = RequestContext {
            path: sub.to_string(),
            ..ctx
        };
        return door.clone().handle(req, ctx).await;
    }
    if path == "/sdk/config.json" {
        return sdk::config(&method, &state.jwt_secret);
    }
    if let Some(sub) = strip(&path, "/sdk") {
        return sdk::serve(&method, req.headers(), sub).await;
    }
    if let Some(dir) = &state.config.static_dir {
        return static_files::serve(dir, &method, req.headers(), &path).await;
    }
    error(StatusCode::NOT_FOUND, "No route for this path")
}

/// Handles one request end to end: request id, CORS, limits, panic containment, compression,
/// metrics and the log line around the door (or the foundation's own route) that answers it.
pub async fn handle(
    router: Arc<Router>,
    req: Request<Incoming>,
    remote: SocketAddr,
) -> Response<Body> {
    let state = &router.state;
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let door = door_of(&path);
    let req_headers = req.headers().clone();
    let body_limit = state.config.body_limits.for_path(&path);
    // Whose dialect the router's own refusals speak: the door's that owns the path, else its own.
    let reject = |why: Rejection, id: &str| match router.door_for(&path) {
        Some((door, _)) => door.reject(&why, id),
        None => foundation_reject(&why, id),
    };

    let mut res =
        if let Some(pre) = cors::preflight(&state.config.cors_origins, &method, &req_headers) {
            pre
        } else if req_headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|len| len > body_limit)
        {
            reject(Rejection::TooLarge { limit: body_limit }, &id)
        } else {
            let ctx = RequestContext {
                request_id: id.clone(),
                client_ip: super::client_ip::resolve(
                    remote.ip(),
                    &req_headers,
                    &state.config.trusted_proxies,
                ),
                path: path.clone(),
                body_limit,
            };
            match AssertUnwindSafe(dispatch(&router, req, ctx))
                .catch_unwind()
                .await
            {
                Ok(res) => res,
                Err(panic) => {
                    let what = panic_message(panic.as_ref());
                    tracing::error!(request_id = %id, panic = %what, "handler panicked");
                    reject(Rejection::Panicked, &id)
                }
            }
        };

    if method != Method::HEAD
        && let Some(enc) = compress::eligible(&path, &req_headers, &res)
    {
        res = compress::apply(enc, res).await;
    }
    cors::decorate(&state.config.cors_origins, &req_headers, &mut res);
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    let status = res.status().as_u16();
    let latency = started.elapsed();
    state.metrics.observe(door, status, latency);
    tracing::info!(
        request_id = %id,
        method = %method,
        path = %path,
        status,
        latency_ms = latency.as_secs_f64() * 1000.0,
        "request"
    );
    res
}
