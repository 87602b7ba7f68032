//! Serves @doska/client at `/sdk/` (`/sdk/index.js` and every other file of `client-js/src`), from
//! bytes embedded at build time (`build.rs`), so each doska serves the SDK that matches it with no
//! build step and no files beside the binary. Caching, ETags and compression as for static files
//! (`http::assets`; each file compressed once, at first request). Unknown paths are 404 — no
//! fallback, no listing. Beside the files, `/sdk/config.json` tells a page served by this doska
//! its public (anon) key, so the frontend needs no key written into it.

use std::{collections::HashMap, sync::OnceLock};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};

use super::{
    assets::{self, Asset},
    body::Body,
};

include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// The embedded files by their path under `/sdk/`, hashed once.
fn files() -> &'static HashMap<&'static str, Asset> {
    static FILES: OnceLock<HashMap<&'static str, Asset>> = OnceLock::new();
    FILES.get_or_init(|| {
        SDK_FILES
            .iter()
            .map(|(path, bytes)| {
                let name = path.rsplit('/').next().unwrap_or(path);
                (*path, Asset::new(name, Bytes::from_static(bytes)))
            })
            .collect()
    })
}

/// The paths of the embedded files (relative to `/sdk/`), sorted.
pub fn paths() -> Vec<&'static str> {
    SDK_FILES.iter().map(|(p, _)| *p).collect()
}

/// `/sdk/config.json`: `{"anon_key": …}`, the project's public key (what `doska keys` prints as
/// `anon_key`; it grants only what RLS grants `anon`, and Supabase ships it in every frontend). A
/// page calls `createClient(location.origin, anon_key)` with it. Never cached: a new JWT secret
/// means a new key.
pub fn config(method: &Method, secret: &[u8]) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return assets::method_not_allowed();
    }
    let keys = crate::jwt::project_keys(secret);
    let mut res = super::body::json(
        StatusCode::OK,
        &serde_json::json!({"anon_key": keys["anon_key"]}),
    );
    res.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    res
}

/// Answers `/sdk{sub}`; `sub` is the path after `/sdk`.
pub async fn serve(method: &Method, headers: &HeaderMap, sub: &str) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return assets::method_not_allowed();
    }
    // Names are matched exactly, so no decoded form can reach anything but an embedded file.
    let Some(asset) = sub.strip_prefix('/').and_then(|p| files().get(p)) else {
        return super::body::json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"message": "No such SDK file", "code": 404}),
        );
    };
    assets::respond(method, headers, asset, async |_| None).await
}
