//! Serves the frontend's static files from `--static DIR` at `/`. Rejects any path that would leave the
//! folder (`..`, absolute segments, NUL) and anything that is not a regular file inside it.

use std::path::{Component, Path, PathBuf};

use http::{HeaderValue, Method, Response, StatusCode, header};

use super::body::{Body, empty, full};

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "application/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// The file a URL path names inside `root`, or `None` when the path tries to leave it.
pub fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(url_path)
        .decode_utf8()
        .ok()?;
    if decoded.contains('\0') {
        return None;
    }
    let mut out = root.to_path_buf();
    for comp in Path::new(decoded.trim_start_matches('/')).components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

pub async fn serve(root: &Path, method: &Method, url_path: &str) -> Response<Body> {
    let not_found = || {
        super::body::json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"message": "Not found"}),
        )
    };
    if method != Method::GET && method != Method::HEAD {
        return super::body::json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"message": "Static files accept GET and HEAD"}),
        );
    }
    let Some(mut path) = resolve(root, url_path) else {
        return not_found();
    };
    if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_dir()) {
        path.push("index.html");
    }
    // Symlinks inside the folder must not lead outside it.
    let (Ok(canon), Ok(canon_root)) = (
        tokio::fs::canonicalize(&path).await,
        tokio::fs::canonicalize(root).await,
    ) else {
        return not_found();
    };
    if !canon.starts_with(&canon_root) {
        return not_found();
    }
    match tokio::fs::read(&canon).await {
        Ok(bytes) => {
            let len = bytes.len();
            let mut res = Response::new(if method == Method::HEAD {
                empty()
            } else {
                full(bytes)
            });
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(&canon)),
            );
            res.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            res
        }
        Err(_) => not_found(),
    }
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
            ("/../etc/passwd", None),
            ("/a/../../etc/passwd", None),
            ("/%2e%2e/etc/passwd", None),
            ("/a%00b", None),
            ("/caf%C3%A9.txt", Some("/srv/www/café.txt")),
        ];
        for (input, want) in cases {
            assert_eq!(
                resolve(root, input).as_deref(),
                want.map(Path::new),
                "{input}"
            );
        }
    }
}
