//! The HTTP layer every front door shares: one listener (plain or TLS), routing by URL prefix, and the
//! wrapping done around every handler — request ids, CORS, compression, metrics, access logs, body
//! limits and panic containment. Rejects nothing itself except oversized declared bodies and unknown
//! routes; each front door answers its own errors in its own dialect.

pub mod assets;
pub mod body;
pub mod client_ip;
pub mod compress;
pub mod cors;
pub mod door;
pub mod metrics;
pub mod query;
pub mod router;
pub mod sdk;
pub mod server;
pub mod static_files;

use std::net::IpAddr;

pub use body::{Body, full, json};
pub use door::{Door, DoorFuture, Rejection};

/// What the foundation tells a front door about the request besides the request itself.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub client_ip: IpAddr,
    /// The path after the front door's prefix, e.g. `/todos` for `/rest/v1/todos`.
    pub path: String,
    /// The route's body limit in bytes.
    pub body_limit: u64,
}

/// The request headers as the JSON object `request.headers` holds (names lower-case; non-UTF-8 values
/// skipped). Credentials are left out: policies read claims, never raw tokens.
pub fn headers_json(headers: &http::HeaderMap) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        let n = name.as_str();
        if n == "authorization" || n == "apikey" || n == "cookie" {
            continue;
        }
        if let Ok(v) = value.to_str() {
            map.insert(n.to_string(), serde_json::Value::String(v.to_string()));
        }
    }
    serde_json::Value::Object(map)
}
