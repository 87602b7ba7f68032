//! Serves the frontend's static files from `--static DIR` at `/` (answers, caching and compression by
//! `http::assets`), with the single-page-app fallback: a browser asking for HTML at a path that is no
//! file gets `index.html`. Rejects any path that would leave the folder (`..`, encoded slashes,
//! backslashes, NUL, symlinks pointing out), dotfiles (but `.well-known`), and folders without an
//! `index.html` — there is no directory listing.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};

use super::{
    assets::{self, Asset},
    body::Body,
    compress::Encoding,
};

/// Paths owned by doska's own routes: a missing file there is a 404, never the app's `index.html`.
const RESERVED: &[&str] = &[
    "/rest",
    "/auth",
    "/realtime",
    "/storage",
    "/sdk",
    "/_",
    "/health",
    "/metrics",
];

/// The file a URL path names inside `root`, or `None` when the path is not one doska serves.
pub fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let lower = url_path.to_ascii_lowercase();
    // An encoded `/` or `\` only exists to smuggle a separator past a check.
    if lower.contains("%2f") || lower.contains("%5c") {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(url_path)
        .decode_utf8()
        .ok()?;
    if decoded.contains(['\0', '\\']) {
        return None;
    }
    let mut out = root.to_path_buf();
    for comp in Path::new(decoded.trim_start_matches('/')).components() {
        match comp {
            Component::Normal(c) => {
                let c_str = c.to_str()?;
                if c_str.starts_with('.') && c_str != ".well-known" {
                    return None;
                }
                out.push(c)
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Whether a request for a missing file gets the app's `index.html`: a GET or HEAD from something
/// that accepts HTML (a browser navigating, not a script or stylesheet load), outside doska's own
/// routes, for a path whose last segment has no extension or `.html`.
pub fn spa_fallback(method: &Method, headers: &HeaderMap, url_path: &str) -> bool {
    let reserved = RESERVED
        .iter()
        .any(|p| url_path == *p || url_path.starts_with(&format!("{p}/")));
    let accepts_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"));
    let last = url_path.rsplit('/').next().unwrap_or("");
    let page_like = match last.rsplit_once('.') {
        None => true,
        Some((_, ext)) => ext.eq_ignore_ascii_case("html") || ext.eq_ignore_ascii_case("htm"),
    };
    (method == Method::GET || method == Method::HEAD) && !reserved && accepts_html && page_like
}

/// `path` if it is a regular file inside the (canonical) root once symlinks are followed.
async fn regular_file_inside(canon_root: &Path, path: &Path) -> Option<PathBuf> {
    let canon = tokio::fs::canonicalize(path).await.ok()?;
    let meta = tokio::fs::metadata(&canon).await.ok()?;
    (canon.starts_with(canon_root) && meta.is_file()).then_some(canon)
}

/// The file to answer with for a resolved path: itself, or a folder's `index.html`.
async fn find(canon_root: &Path, path: &Path) -> Option<PathBuf> {
    if tokio::fs::metadata(path).await.is_ok_and(|m| m.is_dir()) {
        return regular_file_inside(canon_root, &path.join("index.html")).await;
    }
    regular_file_inside(canon_root, path).await
}

/// Warns at start when the static folder (the default one included) is not there: serve runs on,
/// and `/` answers 404 until it exists.
pub fn warn_if_missing(root: Option<&Path>) {
    if let Some(root) = root
        && !root.is_dir()
    {
        tracing::warn!(
            r#static = %root.display(),
            "no static folder there: nothing is served at / (choose one with --static)"
        );
    }
}

fn not_found() -> Response<Body> {
    super::body::json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({"message": "Not found", "code": 404}),
    )
}

pub async fn serve(
    root: &Path,
    method: &Method,
    headers: &HeaderMap,
    url_path: &str,
) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return assets::method_not_allowed();
    }
    let Ok(canon_root) = tokio::fs::canonicalize(root).await else {
        return not_found();
    };
    let Some(path) = resolve(root, url_path) else {
        return not_found();
    };
    let file = match find(&canon_root, &path).await {
        Some(f) => f,
        None if spa_fallback(method, headers, url_path) => {
            match regular_file_inside(&canon_root, &canon_root.join("index.html")).await {
                Some(f) => f,
                None => return not_found(),
            }
        }
        None => return not_found(),
    };
    let Ok(bytes) = tokio::fs::read(&file).await else {
        return not_found();
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let asset = Asset::new(&name, Bytes::from(bytes));
    assets::respond(method, headers, &asset, async |enc| {
        let suffix = match enc {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gz",
        };
        let mut sibling = file.clone().into_os_string();
        sibling.push(".");
        sibling.push(suffix);
        let sibling = regular_file_inside(&canon_root, Path::new(&sibling)).await?;
        tokio::fs::read(sibling).await.ok().map(Bytes::from)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_table() {
        let root = Path::new("/srv/www");
        let cases = [
            ("/index.html", Some("/srv/www/index.html")),
            ("/a/b.js", Some("/srv/www/a/b.js")),
            ("/", Some("/srv/www")),
            ("//etc/passwd", Some("/srv/www/etc/passwd")),
            ("/./a.js", Some("/srv/www/a.js")),
            (
                "/.well-known/security.txt",
                Some("/srv/www/.well-known/security.txt"),
            ),
            ("/caf%C3%A9.txt", Some("/srv/www/café.txt")),
            ("/../etc/passwd", None),
            ("/a/../../etc/passwd", None),
            ("/a/../b.js", None),
            ("/%2e%2e/etc/passwd", None),
            ("/%2E%2E/etc/passwd", None),
            ("/..%2fetc%2fpasswd", None),
            ("/a%2Fb.js", None),
            ("/..%5c..%5cetc", None),
            ("/..\\..\\etc\\passwd", None),
            ("/a%00b", None),
            ("/%ff.js", None),
            ("/.env", None),
            ("/.git/config", None),
            ("/a/.hidden/b.js", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                resolve(root, input).as_deref(),
                want.map(Path::new),
                "{input}"
            );
        }
    }

    #[test]
    fn spa_fallback_table() {
        let html = {
            let mut h = HeaderMap::new();
            h.insert(
                header::ACCEPT,
                "text/html,application/xhtml+xml,*/*;q=0.8".parse().unwrap(),
            );
            h
        };
        let any = {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, "*/*".parse().unwrap());
            h
        };
        let cases = [
            (Method::GET, &html, "/teacher/grades", true),
            (Method::HEAD, &html, "/student", true),
            (Method::GET, &html, "/old/page.html", true),
            (Method::GET, &html, "/", true),
            (Method::POST, &html, "/teacher", false),
            (Method::GET, &any, "/teacher", false),
            (Method::GET, &HeaderMap::new(), "/teacher", false),
            (Method::GET, &html, "/app.3f9a2c1b.js", false),
            (Method::GET, &html, "/style.css", false),
            (Method::GET, &html, "/rest", false),
            (Method::GET, &html, "/rest/v2/x", false),
            (Method::GET, &html, "/auth/callback", false),
            (Method::GET, &html, "/realtime/v1", false),
            (Method::GET, &html, "/storage/x", false),
            (Method::GET, &html, "/sdk/nope", false),
            (Method::GET, &html, "/_/studio", false),
            (Method::GET, &html, "/health/x", false),
            (Method::GET, &html, "/metrics", false),
            (Method::GET, &html, "/restaurants", true),
            (Method::GET, &html, "/sdkdocs", true),
        ];
        for (method, headers, path, want) in cases {
            assert_eq!(
                spa_fallback(&method, headers, path),
                want,
                "{method} {path}"
            );
        }
    }
}
