//! One file's answer, as static files and the embedded SDK both give it: content type by extension,
//! a strong `ETag` per representation (a SHA-256 of the file, suffixed by its encoding), `304 Not
//! Modified` for a matching `If-None-Match`, `Cache-Control` (long and immutable for fingerprinted
//! names, `no-cache` for everything else), and brotli or gzip for every text file whatever its size —
//! a precompressed sibling when the caller has one, else compressed here once and kept in a bounded
//! cache keyed by content hash. Answers only GET and HEAD (405 otherwise).

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use sha2::{Digest, Sha256};

use super::{
    body::{Body, empty, full},
    compress::{self, Encoding, Level},
};

/// The Content-Type for a file name, by extension; unknown types are opaque bytes.
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "application/javascript; charset=utf-8",
        "ts" | "mts" => "text/plain; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "xml" => "application/xml",
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

/// Whether a file name carries a content hash, so its bytes never change under that name: a
/// `.`- or `-`-separated part just before the extension of 8 to 64 hexadecimal digits, as in
/// `app.3f9a2c1b.js` or `chunk-0123abcd4567.css`. Such files may be cached for a year.
///
/// ```
/// use doska::http::assets::fingerprinted;
/// assert!(fingerprinted("app.3f9a2c1b.js"));
/// assert!(fingerprinted("chunk-0123ABCD4567.css"));
/// assert!(!fingerprinted("index.html"));
/// assert!(!fingerprinted("app.js"));
/// assert!(!fingerprinted("3f9a2c1b.js")); // the hash is the whole name: nothing says it is one
/// assert!(!fingerprinted("app.3f9a2c1.js")); // 7 digits
/// assert!(!fingerprinted("app.deadbeefs.js")); // not hexadecimal
/// ```
pub fn fingerprinted(name: &str) -> bool {
    let Some((stem, _ext)) = name.rsplit_once('.') else {
        return false;
    };
    let Some(split) = stem.rfind(['.', '-']) else {
        return false;
    };
    let hash = &stem[split + 1..];
    split > 0 && (8..=64).contains(&hash.len()) && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One file ready to answer with.
pub struct Asset {
    /// The file's name (its last path segment), for the content type and the cache rule.
    pub name: String,
    pub bytes: Bytes,
    /// The identity representation's tag, without quotes: hex SHA-256 of `bytes`, shortened.
    pub tag: String,
}

impl Asset {
    pub fn new(name: &str, bytes: Bytes) -> Asset {
        let tag = hex::encode(&Sha256::digest(&bytes)[..16]);
        Asset {
            name: name.to_string(),
            bytes,
            tag,
        }
    }
}

/// Where an encoded form of an asset comes from when the caller keeps one (a `.br`/`.gz` sibling).
pub type Precompressed = Option<Bytes>;

/// Compressed forms made here, by (content tag, encoding); at most [`CACHE_BYTES`] in all — when full
/// it is emptied and refilled, which only costs compressing again.
static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
const CACHE_BYTES: usize = 32 * 1024 * 1024;

#[derive(Default)]
struct Cache {
    /// Bytes held in `forms`.
    total: usize,
    forms: HashMap<(String, Encoding), Bytes>,
}

async fn compressed(asset: &Asset, enc: Encoding) -> Bytes {
    let cache = CACHE.get_or_init(Default::default);
    let key = (asset.tag.clone(), enc);
    if let Some(hit) = cache.lock().expect("asset cache lock").forms.get(&key) {
        return hit.clone();
    }
    let data = asset.bytes.clone();
    let out = tokio::task::spawn_blocking(move || compress::encode(enc, Level::Best, &data))
        .await
        .ok()
        .and_then(Result::ok)
        .map(Bytes::from);
    // Encoding into memory cannot fail short of a panic; the caller then sends the file as it is.
    let Some(out) = out else {
        return Bytes::new();
    };
    let mut cache = cache.lock().expect("asset cache lock");
    if cache.total + out.len() > CACHE_BYTES {
        cache.forms.clear();
        cache.total = 0;
    }
    if out.len() <= CACHE_BYTES && !cache.forms.contains_key(&key) {
        cache.total += out.len();
        cache.forms.insert(key, out.clone());
    }
    out
}

/// Whether `If-None-Match` names this tag (or is `*`); weak tags match too (RFC 9110 §13.1.2).
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// 405 for anything but GET and HEAD.
pub fn method_not_allowed() -> Response<Body> {
    let mut res = super::body::json(
        StatusCode::METHOD_NOT_ALLOWED,
        &serde_json::json!({"message": "Static files accept GET and HEAD"}),
    );
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    res
}

/// The answer for `asset`: 304 when the client's copy is current, else the file in the best
/// encoding the client accepts. `precompressed` supplies ready-made forms (the `.br`/`.gz` files).
pub async fn respond(
    method: &Method,
    headers: &HeaderMap,
    asset: &Asset,
    precompressed: impl AsyncFnOnce(Encoding) -> Precompressed,
) -> Response<Body> {
    let ctype = content_type(&asset.name);
    let text = compress::compressible(ctype);
    let enc = text
        .then(|| {
            headers
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .and_then(compress::negotiate)
        })
        .flatten();
    let mut etag = match enc {
        None => format!("\"{}\"", asset.tag),
        Some(e) => format!("\"{}-{}\"", asset.tag, e.name()),
    };
    let mut res = if none_match(headers, &etag) {
        let mut res = Response::new(empty());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        res
    } else {
        let body = match enc {
            None => None,
            Some(e) => match precompressed(e).await {
                Some(b) => Some(b),
                None => Some(compressed(asset, e).await).filter(|b| !b.is_empty()),
            },
        };
        let mut res = Response::new(empty());
        let bytes = match (enc, body) {
            (Some(e), Some(b)) => {
                res.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static(e.name()));
                b
            }
            (_, _) => {
                // No encoded form after all (compressing failed): the plain file, tagged as such.
                etag = format!("\"{}\"", asset.tag);
                asset.bytes.clone()
            }
        };
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        if method != Method::HEAD {
            *res.body_mut() = full(bytes);
        }
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        res
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if fingerprinted(&asset.name) {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    if text {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_table() {
        let cases = [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abc-br\"", false),
            ("abc", false),
            ("", false),
        ];
        for (value, want) in cases {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
            assert_eq!(none_match(&h, "\"abc\""), want, "{value}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("a/B.JS"),
            "application/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert!(compress::compressible(content_type("x.svg")));
        assert!(!compress::compressible(content_type("x.png")));
    }
}
