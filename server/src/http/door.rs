//! What a front door is to the HTTP layer: a handler for the requests under its prefix that answers
//! every error in its own dialect — including the ones the router finds before or around it (a
//! declared body over the route's limit, a panic inside the door). Each door holds its own state;
//! `startup` builds the doors and mounts them on the [`Router`](super::router::Router), so this
//! layer knows no door by name.

use std::{future::Future, pin::Pin, sync::Arc};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::{
    RequestContext,
    body::{Body, json},
};

/// The future a door answers with.
pub type DoorFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// Why the router answered for a door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The declared `Content-Length` is over the route's limit (in bytes).
    TooLarge { limit: u64 },
    /// The door panicked; the cause is logged, never sent.
    Panicked,
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::Panicked => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The sentence a client reads.
    pub fn message(&self) -> String {
        match self {
            Rejection::TooLarge { limit } => format!("Request body is larger than {limit} bytes"),
            Rejection::Panicked => "Internal server error".into(),
        }
    }
}

/// A front door mounted at a URL prefix.
pub trait Door: Send + Sync + 'static {
    /// Answers one request (`ctx.path` is what follows the prefix).
    fn handle(self: Arc<Self>, req: Request<Incoming>, ctx: RequestContext) -> DoorFuture;

    /// The door's answer, in its own dialect, when the router turns a request away for it.
    fn reject(&self, why: &Rejection, request_id: &str) -> Response<Body> {
        foundation_reject(why, request_id)
    }
}

/// The HTTP layer's own answer for a rejection (`{message, code}`, and the request id of a panic).
pub fn foundation_reject(why: &Rejection, request_id: &str) -> Response<Body> {
    match why {
        Rejection::TooLarge { .. } => foundation_error(why.status(), &why.message()),
        Rejection::Panicked => json(
            why.status(),
            &json!({"message": why.message(), "code": 500, "request_id": request_id}),
        ),
    }
}

/// The HTTP layer's own error body (`{message, code}`), for routes that belong to no door.
pub fn foundation_error(status: StatusCode, message: &str) -> Response<Body> {
    json(
        status,
        &json!({"message": message, "code": status.as_u16()}),
    )
}

/// What a caught panic says (its `&str` or `String` payload), for the log line only.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}
