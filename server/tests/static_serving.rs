//! Static files and the embedded SDK over real HTTP: ETag and 304, Cache-Control by name
//! (fingerprinted or not), compression of text at any size (precompressed siblings first),
//! `Vary`, HEAD, 405, the single-page-app fallback and where it must not apply, a table of paths
//! that try to leave the folder, and `/sdk/` serving exactly the files of client-js/src.

mod common;

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
};

use common::{TestDb, get_with, request};
use doska::config::{Config, Settings};

const INDEX: &str = "<!doctype html><title>Учитель</title><p>app</p>";
const SECRET: &str = "SECRET-OUTSIDE-THE-ROOT";

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("gzip body");
    out
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096)
        .read_to_end(&mut out)
        .expect("brotli body");
    out
}

fn brotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(b).unwrap();
    }
    out
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    w.write_all(b).unwrap();
    w.finish().unwrap()
}

/// `<tmp>/www` with an app in it, and a secret file beside it (outside the root).
fn site() -> PathBuf {
    let tmp = common::temp_dir("static");
    let www = tmp.join("www");
    std::fs::create_dir_all(www.join("docs")).unwrap();
    std::fs::create_dir_all(www.join("empty")).unwrap();
    std::fs::write(tmp.join("secret.txt"), SECRET).unwrap();
    std::fs::write(www.join("index.html"), INDEX).unwrap();
    std::fs::write(www.join("docs/index.html"), "<p>docs</p>").unwrap();
    std::fs::write(www.join("app.3f9a2c1b.js"), "export const a = 1;\n").unwrap();
    // The siblings differ from what compressing style.css here would give, so the test sees which
    // one was sent.
    std::fs::write(www.join("style.css"), "body{color:red}").unwrap();
    std::fs::write(www.join("style.css.br"), brotli(b"/*br*/body{color:red}")).unwrap();
    std::fs::write(www.join("style.css.gz"), gzip(b"/*gz*/body{color:red}")).unwrap();
    std::fs::write(www.join("logo.png"), [0x89, b'P', b'N', b'G', 0, 1, 2, 3]).unwrap();
    std::fs::write(www.join(".env"), SECRET).unwrap();
    std::os::unix::fs::symlink(tmp.join("secret.txt"), www.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(&tmp, www.join("up")).unwrap();
    www
}

async fn serving(www: &Path) -> (TestDb, String) {
    let db = TestDb::with_settings(Settings {
        static_dir: Some(www.to_path_buf()),
        ..Default::default()
    })
    .await;
    let url = db.server().await;
    (db, url)
}

/// One request with a raw request target, as an attacker would write it (no client normalizing).
fn raw_get(base: &str, target: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn etags_cache_headers_and_compression() {
    let www = site();
    let (_db, url) = serving(&www).await;

    // A tiny HTML file is compressed all the same, and is never cached without asking.
    let gz = get_with(&format!("{url}/index.html"), &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&gz.body), INDEX.as_bytes());
    assert_eq!(gz.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(gz.header("cache-control"), Some("no-cache"));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    assert_eq!(
        gz.header("content-length"),
        Some(gz.body.len().to_string().as_str())
    );
    let gz_tag = gz.header("etag").unwrap().to_string();
    assert!(
        gz_tag.starts_with('"') && gz_tag.ends_with("-gzip\""),
        "{gz_tag}"
    );

    let br = get_with(&format!("{url}/"), &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(unbrotli(&br.body), INDEX.as_bytes());
    let br_tag = br.header("etag").unwrap().to_string();
    assert_ne!(br_tag, gz_tag);

    let plain = get_with(&format!("{url}/index.html"), &[]).await;
    assert_eq!(plain.body, INDEX.as_bytes());
    assert_eq!(plain.header("content-encoding"), None);
    let plain_tag = plain.header("etag").unwrap().to_string();
    assert!(![&gz_tag, &br_tag].contains(&&plain_tag));

    // Revalidation: the tag of what the client holds gives 304 with no body; another tag, 200.
    let cases: [(&str, &str, u16); 6] = [
        ("gzip", &gz_tag, 304),
        ("br", &br_tag, 304),
        ("", &plain_tag, 304),
        ("br", &gz_tag, 200),
        ("gzip", "\"stale\"", 200),
        ("gzip", "*", 304),
    ];
    for (accept, tag, want) in cases {
        let mut headers = vec![("if-none-match", tag)];
        if !accept.is_empty() {
            headers.push(("accept-encoding", accept));
        }
        let r = get_with(&format!("{url}/index.html"), &headers).await;
        assert_eq!(r.status, want, "{accept} {tag}");
        if want == 304 {
            assert!(r.body.is_empty());
            assert_eq!(r.header("cache-control"), Some("no-cache"));
            assert!(r.header("etag").is_some());
        }
    }

    // Fingerprinted names are cached for a year.
    let js = get_with(
        &format!("{url}/app.3f9a2c1b.js"),
        &[("accept-encoding", "br")],
    )
    .await;
    assert_eq!(
        js.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(
        js.header("content-type"),
        Some("application/javascript; charset=utf-8")
    );
    assert_eq!(unbrotli(&js.body), b"export const a = 1;\n");

    // Precompressed siblings win over compressing here.
    let css = get_with(&format!("{url}/style.css"), &[("accept-encoding", "br")]).await;
    assert_eq!(unbrotli(&css.body), b"/*br*/body{color:red}");
    let css = get_with(&format!("{url}/style.css"), &[("accept-encoding", "gzip")]).await;
    assert_eq!(gunzip(&css.body), b"/*gz*/body{color:red}");
    let css = get_with(&format!("{url}/style.css"), &[]).await;
    assert_eq!(css.body, &b"body{color:red}"[..]);

    // Binary files are sent as they are, with no Vary.
    let png = get_with(
        &format!("{url}/logo.png"),
        &[("accept-encoding", "gzip, br")],
    )
    .await;
    assert_eq!(png.header("content-encoding"), None);
    assert_eq!(png.header("vary"), None);
    assert_eq!(png.body.len(), 8);

    // HEAD: the headers of GET, no body. Other methods: 405.
    let head = request(
        "HEAD",
        &format!("{url}/index.html"),
        &[("accept-encoding", "gzip")],
        "",
    )
    .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("etag"), Some(gz_tag.as_str()));
    assert_eq!(head.header("content-encoding"), Some("gzip"));
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = request(method, &format!("{url}/index.html"), &[], "x").await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spa_fallback_and_no_listing() {
    let www = site();
    let (_db, url) = serving(&www).await;
    let browser = "text/html,application/xhtml+xml,*/*;q=0.8";
    let cases = [
        // (path, Accept, status, body starts with)
        ("/teacher/grades", browser, 200, INDEX),
        ("/student", browser, 200, INDEX),
        ("/docs", browser, 200, "<p>docs</p>"),
        ("/docs/", "", 200, "<p>docs</p>"),
        ("/empty", browser, 200, INDEX),
        ("/empty/", "", 404, ""),
        ("/teacher", "*/*", 404, ""),
        ("/teacher", "", 404, ""),
        ("/missing.js", browser, 404, ""),
        ("/missing.css", "*/*", 404, ""),
        ("/app.00000000.js", browser, 404, ""),
        ("/rest/other", browser, 404, ""),
        ("/auth/callback", browser, 404, ""),
        ("/storage/x", browser, 404, ""),
        ("/realtime", browser, 404, ""),
        ("/sdk/missing", browser, 404, ""),
        ("/_/studio", browser, 404, ""),
        ("/metrics/x", browser, 404, ""),
        ("/health/x", browser, 404, ""),
    ];
    for (path, accept, status, body) in cases {
        let headers: Vec<(&str, &str)> = if accept.is_empty() {
            vec![]
        } else {
            vec![("accept", accept)]
        };
        let r = get_with(&format!("{url}{path}"), &headers).await;
        assert_eq!(r.status, status, "{path} ({accept})");
        if status == 200 {
            assert!(r.text().starts_with(body), "{path}: {}", r.text());
            assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        } else {
            assert!(!r.text().contains("<title>"), "{path}: {}", r.text());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_that_leave_the_folder_are_refused() {
    let www = site();
    let (_db, url) = serving(&www).await;
    let url2 = url.clone();
    // Sent byte for byte, as written; each must neither show the secret nor any file but the
    // app's index.html (what the fallback gives a page-like path).
    let targets = [
        "/../secret.txt",
        "/a/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/..%5csecret.txt",
        "/..\\secret.txt",
        "/%00secret.txt",
        "/secret.txt%00.html",
        "/link.txt",
        "/up/secret.txt",
        "/.env",
        "//secret.txt",
        "/%2fsecret.txt",
        "http://evil.example/../secret.txt",
        "/%c0%ae%c0%ae/secret.txt",
        "/..",
        "/../www/index.html",
    ];
    let results = tokio::task::spawn_blocking(move || {
        targets
            .iter()
            .map(|t| (*t, raw_get(&url2, t)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (target, (status, text)) in results {
        assert!(!text.contains(SECRET), "{target} leaked: {text}");
        assert!(
            status == 400 || status == 404,
            "{target}: status {status}: {text}"
        );
    }
    // The fallback never turns a refused path into index.html, but a plain absolute-looking path
    // inside the root is just a missing page.
    let (status, text) = tokio::task::spawn_blocking(move || raw_get(&url, "/etc/passwd"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(text.ends_with(INDEX), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_static_folder_and_defaults() {
    let gone = common::temp_dir("static-gone").join("nothing-here");
    let (_db, url) = serving(&gone).await;
    let r = get_with(&format!("{url}/"), &[("accept", "text/html")]).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        get_with(&format!("{url}/health"), &[]).await.status,
        200,
        "serving goes on"
    );

    let default = Config::resolve(Settings::default()).unwrap();
    assert_eq!(
        default.static_dir.as_deref(),
        Some(Path::new("./examples/teacheruchit"))
    );
    let off = Config::resolve(Settings {
        static_dir: Some(PathBuf::new()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(off.static_dir, None);
}

/// Every file under client-js/src, as paths relative to it.
fn sdk_sources() -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let kind = e.file_type().unwrap();
            if name.starts_with('.') {
                continue;
            }
            if kind.is_dir() {
                walk(&e.path(), &format!("{rel}{name}/"), out);
            } else if kind.is_file() {
                out.push((format!("{rel}{name}"), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client-js/src");
    walk(&src, "", &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_is_served_from_the_binary() {
    // No static folder at all: /sdk/ does not depend on one.
    let db = TestDb::with_settings(Settings {
        static_dir: Some(PathBuf::new()),
        ..Default::default()
    })
    .await;
    let url = db.server().await;
    let sources = sdk_sources();
    assert_eq!(
        doska::http::sdk::paths(),
        sources.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        "the binary embeds exactly client-js/src"
    );
    for (path, bytes) in &sources {
        let plain = get_with(&format!("{url}/sdk/{path}"), &[]).await;
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(&plain.body[..], &bytes[..], "{path}");
        assert_eq!(plain.header("cache-control"), Some("no-cache"), "{path}");
        if path.ends_with(".js") {
            assert_eq!(
                plain.header("content-type"),
                Some("application/javascript; charset=utf-8")
            );
            let br = get_with(&format!("{url}/sdk/{path}"), &[("accept-encoding", "br")]).await;
            assert_eq!(br.header("content-encoding"), Some("br"), "{path}");
            assert_eq!(unbrotli(&br.body), *bytes, "{path}");
            let tag = br.header("etag").unwrap();
            let again = get_with(
                &format!("{url}/sdk/{path}"),
                &[("accept-encoding", "br"), ("if-none-match", tag)],
            )
            .await;
            assert_eq!(again.status, 304, "{path}");
        }
    }
    for (method, path, status) in [
        ("GET", "/sdk/", 404),
        ("GET", "/sdk", 404),
        ("GET", "/sdk/nope.js", 404),
        ("GET", "/sdk/../Cargo.toml", 404),
        ("GET", "/sdk/%2e%2e/Cargo.toml", 404),
        ("GET", "/sdk//index.js", 404),
        ("POST", "/sdk/index.js", 405),
    ] {
        let r = request(
            method,
            &format!("{url}{path}"),
            &[("accept", "text/html")],
            "",
        )
        .await;
        assert_eq!(r.status, status, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_config_gives_pages_the_anon_key() {
    use base64::Engine as _;
    let db = TestDb::with_settings(Settings {
        static_dir: Some(PathBuf::new()),
        ..Default::default()
    })
    .await;
    let url = db.server().await;
    let r = get_with(&format!("{url}/sdk/config.json"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let config: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let key = config["anon_key"].as_str().expect("anon_key");
    assert_eq!(
        config.as_object().unwrap().len(),
        1,
        "only the public key: {config}"
    );
    let claims = key.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["role"], "anon");
    // doska takes it as a key; a key signed with another secret it refuses.
    let ok = get_with(&format!("{url}/auth/v1/settings"), &[("apikey", key)]).await;
    assert_eq!(ok.status, 200);
    let forged = doska::jwt::project_keys(b"another secret of at least 32 bytes!!");
    let bad = get_with(
        &format!("{url}/rest/v1/"),
        &[("apikey", forged["anon_key"].as_str().unwrap())],
    )
    .await;
    assert_eq!(bad.status, 401);
    let ok = get_with(&format!("{url}/rest/v1/"), &[("apikey", key)]).await;
    assert_eq!(ok.status, 200);
    for (method, status) in [("POST", 405), ("PUT", 405), ("DELETE", 405), ("HEAD", 200)] {
        let r = request(method, &format!("{url}/sdk/config.json"), &[], "").await;
        assert_eq!(r.status, status, "{method}");
    }
}
