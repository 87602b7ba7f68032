//! CORS for browsers: answers preflights for allowed origins with exactly the headers they ask for
//! (supabase-js, storage-js and TUS clients send many), and marks responses to allowed origins with
//! the headers clients need to read. A disallowed origin gets no CORS headers, so the browser blocks it.

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use super::body::{Body, empty};
use crate::config::CorsOrigins;

/// Response headers browsers may let scripts read.
pub const EXPOSED: &str = "Content-Range, Content-Length, Content-Type, Content-Location, \
    Preference-Applied, Location, ETag, X-Total-Count, Link, X-Request-Id, Range-Unit, \
    Upload-Offset, Upload-Length, Upload-Metadata, Tus-Resumable, Tus-Version, Tus-Max-Size, \
    Tus-Extension, X-Supabase-Api-Version, Retry-After, Last-Modified, Cache-Control, \
    Idempotent-Replayed";

const METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

fn allowed_origin<'a>(origins: &CorsOrigins, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    origins
        .allows(origin.to_str().ok()?.trim_end_matches('/'))
        .then_some(origin)
}

/// A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin: its answer.
/// From a disallowed origin: a plain 204 without CORS headers. Not a preflight: `None`.
pub fn preflight(
    origins: &CorsOrigins,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Response<Body>> {
    if method != Method::OPTIONS || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return None;
    }
    let mut res = Response::new(empty());
    *res.status_mut() = StatusCode::NO_CONTENT;
    if let Some(origin) = allowed_origin(origins, headers) {
        allow(res.headers_mut(), origin);
        let h = res.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(METHODS),
        );
        if let Some(req_headers) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, req_headers.clone());
        }
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
    Some(res)
}

/// The headers every CORS answer to an allowed origin carries.
fn allow(h: &mut HeaderMap, origin: &HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// Adds CORS headers to an actual response for an allowed origin.
pub fn decorate(origins: &CorsOrigins, req_headers: &HeaderMap, res: &mut Response<Body>) {
    let Some(origin) = allowed_origin(origins, req_headers) else {
        return;
    };
    allow(res.headers_mut(), origin);
    res.headers_mut().insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdrs(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn preflight_table() {
        let list = CorsOrigins::List(vec!["https://app.example".into()]);
        let asking = hdrs(&[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, apikey, x-client-info, prefer",
            ),
        ]);
        let res = preflight(&list, &Method::OPTIONS, &asking).unwrap();
        assert_eq!(res.status(), 204);
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "https://app.example"
        );
        assert_eq!(
            res.headers()["access-control-allow-headers"],
            "authorization, apikey, x-client-info, prefer"
        );
        let evil = hdrs(&[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "GET"),
        ]);
        let res = preflight(&list, &Method::OPTIONS, &evil).unwrap();
        assert!(res.headers().get("access-control-allow-origin").is_none());
        // A plain OPTIONS is the front door's business (PostgREST answers it with Allow).
        assert!(
            preflight(
                &list,
                &Method::OPTIONS,
                &hdrs(&[("origin", "https://app.example")])
            )
            .is_none()
        );
        assert!(preflight(&CorsOrigins::Any, &Method::GET, &asking).is_none());
    }

    #[test]
    fn decorate_exposes_content_range() {
        let mut res = Response::new(empty());
        decorate(
            &CorsOrigins::Any,
            &hdrs(&[("origin", "http://localhost:5173")]),
            &mut res,
        );
        let exposed = res.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap();
        assert!(exposed.contains("Content-Range") && exposed.contains("X-Request-Id"));
        let mut res = Response::new(empty());
        decorate(&CorsOrigins::Any, &HeaderMap::new(), &mut res);
        assert!(res.headers().is_empty());
    }
}
