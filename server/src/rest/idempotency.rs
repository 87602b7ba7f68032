//! `Idempotency-Key` on REST writes (POST, PATCH, PUT, DELETE — tables and RPC): the key's row is
//! claimed first in the write's own transaction, through `doska.idempotency_begin` (a concurrent
//! duplicate waits on the row's lock), and the rendered answer is stored beside it with
//! `doska.idempotency_finish` before the commit. A repeat of the same request (method, path and
//! query, the headers that shape the answer, the body) gets the stored answer back with
//! `Idempotent-Replayed: true`; the same key with another request is a 422. Keys are scoped to the
//! caller's role, the claims' `sub`, the method and the path (the SQL functions read them from the
//! transaction's settings), and kept 24 hours; [`spawn_cleanup`] sweeps the expired ones.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_postgres::types::{ToSql, Type};

use super::error::{RequestError, RestError};
use crate::http::body::{Body, full};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The answer header that marks a stored answer sent again.
pub const REPLAYED: &str = "idempotent-replayed";
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// Headers that change what a write does or answers: part of the request's fingerprint.
const SHAPING_HEADERS: &[&str] = &[
    "prefer",
    "content-profile",
    "accept-profile",
    "content-type",
    "accept",
    "range",
];
/// How often expired keys are swept.
const CLEANUP_EVERY: Duration = Duration::from_secs(600);

/// A write's key and its request's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// What `doska.idempotency_begin` found.
pub enum Claim {
    /// The key is new: its row is now held by this transaction.
    New,
    /// The same request ran before: its answer.
    Replay(Response<Body>),
    /// The key was used with another request.
    Conflict,
}

/// The write's key, if it carries one: `None` for reads and requests without the header; a 400
/// for an empty, over-long or non-text key.
pub fn from_request(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Idempotency>, RestError> {
    if !matches!(
        *method,
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE
    ) {
        return Ok(None);
    }
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .ok_or(RequestError::InvalidIdempotencyKey)?;
    let mut h = Sha256::new();
    for part in [method.as_str(), path, query.unwrap_or("")] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for name in SHAPING_HEADERS {
        for v in headers.get_all(*name) {
            h.update(name.as_bytes());
            h.update(b":");
            h.update(v.as_bytes());
            h.update([0]);
        }
    }
    h.update(body);
    Ok(Some(Idempotency {
        key: key.to_string(),
        request_hash: hex::encode(h.finalize()),
    }))
}

impl Idempotency {
    /// Claims the key inside the caller's open transaction.
    pub async fn begin(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<Claim, tokio_postgres::Error> {
        let params: [(&(dyn ToSql + Sync), Type); 2] =
            [(&self.key, Type::TEXT), (&self.request_hash, Type::TEXT)];
        let rows = client
            .query_typed(
                "select same_request, status, headers, body from doska.idempotency_begin($1, $2)",
                &params,
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(Claim::New);
        };
        if !row.get::<_, bool>(0) {
            return Ok(Claim::Conflict);
        }
        let status: Option<i16> = row.get(1);
        let headers: Option<serde_json::Value> = row.get(2);
        let body: Option<Vec<u8>> = row.get(3);
        Ok(Claim::Replay(replay(status, headers, body)))
    }

    /// Stores `res` beside the key (a 5xx releases the key instead) and gives it back, its body read
    /// into memory.
    pub async fn finish(
        &self,
        client: &tokio_postgres::Client,
        res: Response<Body>,
    ) -> Result<Response<Body>, tokio_postgres::Error> {
        let (parts, body) = res.into_parts();
        let bytes: Bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let headers: Vec<serde_json::Value> = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some(serde_json::json!([k.as_str(), v.to_str().ok()?])))
            .collect();
        let headers = serde_json::Value::Array(headers);
        let status = parts.status.as_u16() as i16;
        let body_vec = bytes.to_vec();
        let params: [(&(dyn ToSql + Sync), Type); 4] = [
            (&self.key, Type::TEXT),
            (&status, Type::INT2),
            (&headers, Type::JSONB),
            (&body_vec, Type::BYTEA),
        ];
        client
            .query_typed("select doska.idempotency_finish($1, $2, $3, $4)", &params)
            .await?;
        Ok(Response::from_parts(parts, full(bytes)))
    }
}

/// The stored answer, marked as replayed.
fn replay(
    status: Option<i16>,
    headers: Option<serde_json::Value>,
    body: Option<Vec<u8>>,
) -> Response<Body> {
    let mut res = Response::new(full(body.unwrap_or_default()));
    *res.status_mut() = status
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    let pairs = headers
        .as_ref()
        .and_then(|h| h.as_array())
        .cloned()
        .unwrap_or_default();
    for pair in pairs {
        if let (Some(k), Some(v)) = (pair[0].as_str(), pair[1].as_str())
            && let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            )
        {
            res.headers_mut().append(k, v);
        }
    }
    res.headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    res
}

/// Sweeps expired keys every few minutes over the admin pool, until shutdown.
pub fn spawn_cleanup(admin: deadpool_postgres::Pool, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match sweep(&admin).await {
                Ok(n) if n > 0 => {
                    tracing::debug!(removed = n, "rest: expired idempotency keys swept")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "rest: cannot sweep expired idempotency keys"),
            }
            tokio::select! {
                _ = tokio::time::sleep(CLEANUP_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

/// Deletes the expired keys; returns how many.
pub async fn sweep(admin: &deadpool_postgres::Pool) -> Result<u64, String> {
    let client = admin.get().await.map_err(|e| e.to_string())?;
    client
        .execute(
            "delete from doska.idempotency_keys where expires_at <= now()",
            &[],
        )
        .await
        .map_err(|e| crate::db::migrate::describe(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn keys_and_fingerprints() {
        let with_key = headers(&[(HEADER, "k1")]);
        let a = from_request(&Method::POST, "/t", None, &with_key, b"{}")
            .unwrap()
            .unwrap();
        assert_eq!(a.key, "k1");
        let same = from_request(&Method::POST, "/t", None, &with_key, b"{}")
            .unwrap()
            .unwrap();
        assert_eq!(a, same);
        let other_body = from_request(&Method::POST, "/t", None, &with_key, b"[]")
            .unwrap()
            .unwrap();
        assert_ne!(a.request_hash, other_body.request_hash);
        let other_query = from_request(&Method::POST, "/t", Some("select=id"), &with_key, b"{}")
            .unwrap()
            .unwrap();
        assert_ne!(a.request_hash, other_query.request_hash);
        let prefer = headers(&[(HEADER, "k1"), ("prefer", "return=representation")]);
        let other_prefer = from_request(&Method::POST, "/t", None, &prefer, b"{}")
            .unwrap()
            .unwrap();
        assert_ne!(a.request_hash, other_prefer.request_hash);
        // Reads and keyless writes carry none.
        assert_eq!(
            from_request(&Method::GET, "/t", None, &with_key, b"").unwrap(),
            None
        );
        assert_eq!(
            from_request(&Method::POST, "/t", None, &HeaderMap::new(), b"").unwrap(),
            None
        );
    }

    #[test]
    fn bad_keys() {
        let long = "k".repeat(MAX_KEY_LEN + 1);
        let fits = "k".repeat(MAX_KEY_LEN);
        for (key, ok) in [
            ("", false),
            ("  ", false),
            (long.as_str(), false),
            (fits.as_str(), true),
        ] {
            let got = from_request(&Method::DELETE, "/t", None, &headers(&[(HEADER, key)]), b"");
            assert_eq!(got.is_ok(), ok, "key of {} chars", key.len());
            if let Err(e) = got {
                assert_eq!(e.status(), 400);
                assert_eq!(e.body()["code"], "PGRST410");
            }
        }
    }
}
