//! Realtime: database changes, broadcast and presence to Phoenix channel subscribers. Pipeline
//! stages, one module each: `replication` (the WAL stream from PostgreSQL) → `decode` (pgoutput
//! bytes → typed changes), run together and kept alive by `source`, on the instance `elect`
//! chose; its `writer` puts them in the durable `log` (then acks WAL), which every instance's
//! `follow`er reads; then `subscriptions` (which binding wants which change) → `authorize` (RLS,
//! per caller) → `deliver` (queue).
//! The socket side: `phoenix` (wire messages) → `socket` (one connection) ↔ `hub` (who joined
//! what). See docs/realtime.md.
//!
//! The front door answers `/realtime/v1/websocket` (upgrade) and `/realtime/v1/api/broadcast`;
//! every other path is a 404 in this door's JSON dialect.

pub mod authorize;
pub mod bus;
pub mod decode;
pub mod deliver;
pub mod elect;
pub mod follow;
pub mod gossip;
pub mod hub;
pub mod log;
pub mod lsn;
pub mod outbox;
pub mod phoenix;
pub mod pipeline;
pub mod replay;
pub mod replication;
pub mod socket;
pub mod source;
pub mod subscriptions;
pub mod wire;
pub mod writer;

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::http::body::{Body, json as json_response, read_limited};
use crate::http::{DoorFuture, RequestContext};
use crate::state::SharedState;
use hub::Hub;
use phoenix::BroadcastBody;

/// Starts delivering database changes to `hub`'s subscribers (the replication source on `admin`, a
/// superuser config) until shutdown; await the handle before stopping PostgreSQL so the slot is
/// released cleanly.
pub fn start(
    state: &SharedState,
    hub: Arc<Hub>,
    admin: tokio_postgres::Config,
) -> tokio::task::JoinHandle<()> {
    let h = hub.clone();
    state.metrics.gauge(
        "doska_realtime_slot_lag_bytes",
        "WAL bytes between the server's current position and what the realtime slot confirmed (refreshed every 10 s).",
        move || vec![(String::new(), h.slot_lag() as f64)],
    );
    let holder = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = holder.clone();
    state.metrics.gauge(
        "doska_realtime_slot_holder",
        "1 while this instance holds the replication slot (reads it and writes the change log), else 0.",
        move || {
            let held = h.load(std::sync::atomic::Ordering::Relaxed);
            vec![(String::new(), f64::from(u8::from(held)))]
        },
    );
    let h = hub.clone();
    state.metrics.gauge(
        "doska_realtime_sockets",
        "Open realtime WebSocket connections.",
        move || vec![(String::new(), h.sockets() as f64)],
    );
    let h = hub.clone();
    state.metrics.gauge(
        "doska_realtime_channels",
        "Joined realtime channels.",
        move || vec![(String::new(), h.channels() as f64)],
    );
    tokio::spawn(pipeline::run_with(
        state.clone(),
        hub,
        admin,
        source::SourceOptions::default(),
        holder,
    ))
}

/// Realtime's HTTP error body: `{message, error, code}`, the code stable per status.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<Body> {
    let code = match status {
        StatusCode::BAD_REQUEST => "InvalidRequest",
        StatusCode::UNAUTHORIZED => "InvalidJWT",
        StatusCode::FORBIDDEN => "Unauthorized",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::PAYLOAD_TOO_LARGE => "PayloadTooLarge",
        _ => "InternalError",
    };
    json_response(
        status,
        &json!({"message": message, "error": message, "code": code}),
    )
}

/// A private broadcast needs the caller's policies on `realtime.messages` to allow writing it.
async fn may_send_private(
    state: &SharedState,
    caller: &crate::jwt::Caller,
    topic: &str,
) -> Result<(), Response<Body>> {
    match authorize::channel_permissions(&state.admin, caller, topic).await {
        Ok(p) if p.write_broadcast => Ok(()),
        Ok(_) => Err(error(
            StatusCode::FORBIDDEN,
            &format!(
                "Unauthorized: You do not have permissions to write to this Channel topic: {topic}"
            ),
        )),
        Err(e) => {
            tracing::error!(error = %e, "realtime: private broadcast check failed");
            Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not check this channel's policies",
            ))
        }
    }
}

/// A private broadcast goes into the durable log (for `broadcast.replay`) before it is sent.
async fn log_private(state: &SharedState, topic: &str, event: &str, body: &BroadcastBody) {
    if let Err(e) = log::append_broadcast(&state.admin, topic, event, body).await {
        tracing::warn!(error = %e, "realtime: logging a private broadcast failed");
    }
}

fn accepted() -> Response<Body> {
    let mut res = Response::new(crate::http::body::empty());
    *res.status_mut() = StatusCode::ACCEPTED;
    res
}

/// The /realtime/v1 front door: the shared state and the hub (who joined what), made at start-up.
pub struct RealtimeDoor {
    state: SharedState,
    hub: Arc<Hub>,
}

impl RealtimeDoor {
    pub fn new(state: SharedState, hub: Arc<Hub>) -> RealtimeDoor {
        RealtimeDoor { state, hub }
    }
}

impl crate::http::Door for RealtimeDoor {
    fn handle(self: Arc<Self>, req: Request<Incoming>, ctx: RequestContext) -> DoorFuture {
        Box::pin(async move { handle(&self.state, &self.hub, req, ctx).await })
    }

    fn reject(&self, why: &crate::http::Rejection, _request_id: &str) -> Response<Body> {
        error(why.status(), &why.message())
    }
}

async fn handle(
    state: &SharedState,
    hub: &Arc<Hub>,
    req: Request<Incoming>,
    ctx: RequestContext,
) -> Response<Body> {
    let path = ctx.path.trim_end_matches('/');
    if path == "/websocket" {
        return socket::upgrade(state.clone(), hub.clone(), req).await;
    }
    if path == "/api/broadcast" || path.starts_with("/api/broadcast/") {
        if req.method() != Method::POST {
            return error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        }
        let rest = path["/api/broadcast".len()..].to_string();
        return broadcast_api(state.clone(), hub, req, &rest, ctx.body_limit).await;
    }
    error(StatusCode::NOT_FOUND, "No realtime route for this path")
}

/// `POST /api/broadcast` `{messages: [{topic, event, payload, private?}]}` and realtime-js's
/// `httpSend`: `POST /api/broadcast/{topic}/events/{event}` with the payload as body. 202.
async fn broadcast_api(
    state: SharedState,
    hub: &Hub,
    req: Request<Incoming>,
    rest: &str,
    limit: u64,
) -> Response<Body> {
    let caller = match state.verifier.caller(req.headers()) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::UNAUTHORIZED, e.message()),
    };
    let private_query = req.uri().query().is_some_and(|q| {
        crate::http::query::pairs(q)
            .iter()
            .any(|(k, v)| k == "private" && v == "true")
    });
    let binary = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"));
    let body = match read_limited(
        req.into_body(),
        limit.min(state.config.realtime_max_message_bytes as u64),
    )
    .await
    {
        Ok(b) => b,
        Err(e @ crate::http::body::BodyError::TooLarge { .. }) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string());
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    if !rest.is_empty() {
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let [topic, "events", event] = parts.as_slice() else {
            return error(StatusCode::NOT_FOUND, "No realtime route for this path");
        };
        let body = if binary {
            BroadcastBody::Binary(body)
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => BroadcastBody::Json(v),
                Err(e) => return error(StatusCode::BAD_REQUEST, &format!("body is not JSON: {e}")),
            }
        };
        let topic = decode(topic);
        let event = decode(event);
        if private_query {
            if let Err(res) = may_send_private(&state, &caller, &topic).await {
                return res;
            }
            log_private(&state, &topic, &event, &body).await;
        }
        hub.broadcast(
            None,
            &format!("realtime:{topic}"),
            private_query,
            event,
            None,
            body,
        );
        return accepted();
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("body is not JSON: {e}")),
    };
    let Some(messages) = parsed.get("messages").and_then(Value::as_array) else {
        return error(
            StatusCode::BAD_REQUEST,
            "body must be {\"messages\": [...]}",
        );
    };
    let mut valid = Vec::with_capacity(messages.len());
    for m in messages {
        let (Some(topic), Some(event)) = (
            m.get("topic").and_then(Value::as_str),
            m.get("event").and_then(Value::as_str),
        ) else {
            return error(
                StatusCode::BAD_REQUEST,
                "each message needs a topic and an event",
            );
        };
        let private = m.get("private").and_then(Value::as_bool) == Some(true);
        if private && let Err(res) = may_send_private(&state, &caller, topic).await {
            return res;
        }
        valid.push((
            format!("realtime:{topic}"),
            private,
            event.to_string(),
            m.get("payload").cloned().unwrap_or(Value::Null),
        ));
    }
    for (topic, private, event, payload) in valid {
        let payload = BroadcastBody::Json(payload);
        if private {
            log_private(
                &state,
                topic.trim_start_matches("realtime:"),
                &event,
                &payload,
            )
            .await;
        }
        hub.broadcast(None, &topic, private, event, None, payload);
    }
    accepted()
}
