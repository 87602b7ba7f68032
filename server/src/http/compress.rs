//! Response compression: brotli or gzip, as the client's Accept-Encoding prefers, for JSON and text
//! bodies only. Never for /storage (objects are served byte-exact, often already compressed, and
//! ranged), 206 responses, upgrades, bodies already encoded, or API answers too small to gain.
//! Static files and the SDK compress themselves (`http::assets`, any size, cached) with the same
//! negotiation and encoders, so this layer leaves their already-encoded answers alone.

use std::io::Write;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt;

use super::body::{Body, full};

/// API answers smaller than this are sent as they are (static text is compressed at any size).
const MIN_SIZE: usize = 1024;
/// Bodies larger than this are streamed uncompressed rather than buffered.
const MAX_SIZE: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Brotli,
    Gzip,
}

/// How hard to compress: `Fast` for answers made per request, `Best` for files compressed once and
/// kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Fast,
    Best,
}

impl Encoding {
    /// The token of Content-Encoding and Accept-Encoding.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }
}

/// The encoding to use for a client's Accept-Encoding: the best-quality one we support, brotli on ties.
pub fn negotiate(accept: &str) -> Option<Encoding> {
    let mut best: Option<(Encoding, f32)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        let enc = match name.as_str() {
            "br" => Encoding::Brotli,
            "gzip" | "x-gzip" => Encoding::Gzip,
            _ => continue,
        };
        if q <= 0.0 {
            continue;
        }
        let better = match best {
            None => true,
            Some((e, bq)) => {
                q > bq || (q == bq && enc == Encoding::Brotli && e != Encoding::Brotli)
            }
        };
        if better {
            best = Some((enc, q));
        }
    }
    best.map(|(e, _)| e)
}

/// Whether a body of this Content-Type is text that compresses (JSON, JavaScript, CSS, HTML, SVG…).
pub fn compressible(content_type: &str) -> bool {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    ct.starts_with("text/")
        || ct == "application/json"
        || ct.ends_with("+json")
        || ct == "application/javascript"
        || ct == "application/xml"
        || ct.ends_with("+xml")
        || ct == "application/wasm"
}

/// Whether a response to `path` may be compressed at all.
pub fn eligible(path: &str, req_headers: &HeaderMap, res: &Response<Body>) -> Option<Encoding> {
    if path.starts_with("/storage/")
        || res.status() == StatusCode::PARTIAL_CONTENT
        || res.status() == StatusCode::SWITCHING_PROTOCOLS
        || res.status() == StatusCode::NO_CONTENT
        || res.status() == StatusCode::NOT_MODIFIED
        || res.headers().contains_key(header::CONTENT_ENCODING)
        || !res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(compressible)
    {
        return None;
    }
    negotiate(req_headers.get(header::ACCEPT_ENCODING)?.to_str().ok()?)
}

/// `data` compressed with `enc` at `level`.
pub fn encode(enc: Encoding, level: Level, data: &[u8]) -> std::io::Result<Vec<u8>> {
    match enc {
        Encoding::Gzip => {
            let level = match level {
                Level::Fast => 5,
                Level::Best => 9,
            };
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            w.write_all(data)?;
            w.finish()
        }
        Encoding::Brotli => {
            let quality = match level {
                Level::Fast => 4,
                Level::Best => 11,
            };
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, quality, 22);
                w.write_all(data)?;
            }
            Ok(out)
        }
    }
}

/// Compresses the response body when it is worth it; otherwise returns the response unchanged.
pub async fn apply(enc: Encoding, res: Response<Body>) -> Response<Body> {
    use http_body::Body as _;
    let hint = res.body().size_hint();
    if hint.upper().is_some_and(|u| u < MIN_SIZE as u64) || hint.lower() > MAX_SIZE {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes: Bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            // The handler's body failed mid-way; nothing sensible can be sent now.
            tracing::error!(error = %e, "response body failed before compression");
            parts.status = StatusCode::INTERNAL_SERVER_ERROR;
            return Response::from_parts(parts, full(Bytes::new()));
        }
    };
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if bytes.len() < MIN_SIZE {
        return Response::from_parts(parts, full(bytes));
    }
    match encode(enc, Level::Fast, &bytes) {
        Ok(out) => {
            parts.headers.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(enc.name()),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, full(out))
        }
        Err(_) => Response::from_parts(parts, full(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_table() {
        let cases = [
            ("gzip, deflate, br", Some(Encoding::Brotli)),
            ("gzip", Some(Encoding::Gzip)),
            ("br;q=0.5, gzip;q=0.9", Some(Encoding::Gzip)),
            ("identity", None),
            ("br;q=0, gzip;q=0", None),
            ("", None),
            ("*", None),
        ];
        for (accept, want) in cases {
            assert_eq!(negotiate(accept), want, "{accept}");
        }
    }

    #[tokio::test]
    async fn compresses_json_not_storage_or_partial() {
        let mut req = HeaderMap::new();
        req.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let big = serde_json::json!({"rows": vec!["a fairly repetitive value"; 200]});
        let res = super::super::body::json(StatusCode::OK, &big);
        let enc = eligible("/rest/v1/t", &req, &res).unwrap();
        let out = apply(enc, res).await;
        assert_eq!(out.headers()[header::CONTENT_ENCODING], "gzip");
        let body = out.into_body().collect().await.unwrap().to_bytes();
        let mut d = flate2::read::GzDecoder::new(&body[..]);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut d, &mut s).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&s).unwrap(), big);

        let res = super::super::body::json(StatusCode::OK, &big);
        assert!(eligible("/storage/v1/object/x", &req, &res).is_none());
        let mut res = super::super::body::json(StatusCode::OK, &big);
        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
        assert!(eligible("/rest/v1/t", &req, &res).is_none());
        let mut res = super::super::body::json(StatusCode::OK, &big);
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        assert!(eligible("/x", &req, &res).is_none());
    }
}
