//! Response and request bodies: the one boxed body type every front door returns, constructors for
//! common responses, and bounded reading of request bodies. Rejects bodies over their route's limit.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut res = Response::new(full(value.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over the route's limit: answer 413.
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The client went away or sent a broken chunked body.
    #[error("could not read the request body: {0}")]
    Read(String),
}

/// Reads a whole request body, refusing more than `limit` bytes (checked against Content-Length
/// first, then while reading, so a lying client cannot get past it).
pub async fn read_limited(body: Incoming, limit: u64) -> Result<Bytes, BodyError> {
    use http_body::Body as _;
    if body.size_hint().lower() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    match Limited::new(body, limit as usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}
