//! Object bytes on an S3 service (`--storage-backend s3`), against a real one the test starts: another
//! doska's own S3 listener, on its own database and data dir (the backend, "B"). The doska under
//! test ("F") keeps its rows in PostgreSQL and its bytes in B's bucket `blobs`; every check of the
//! bytes reads them straight from B, by the blob names F's rows give. Covered: the storage API and
//! the S3 door (boto3) with ranges, multipart and copy; two F processes on one database and one
//! bucket reading each other's files; B stopped (503s in both dialects while the rest of F works)
//! and started again (F recovers without a restart); a wrong key and a missing bucket (503 with the
//! reason); SIGKILL of F mid-upload (no partial object, and after cleanup no orphan bytes and no
//! multipart upload left in B).

mod common;

use std::{
    io::Write,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use md5::{Digest, Md5};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "upstream-test-secret-0123456789-0123456789";
const BACKEND_KEY: &str = "BACKENDKEY";
const BACKEND_SECRET: &str = "backend-secret-access-key";
const DOOR_KEY: &str = "DOORKEY";
const DOOR_SECRET: &str = "door-secret-access-key";

fn service_key() -> String {
    doska::jwt::sign(SECRET.as_bytes(), &json!({"role": "service_role"}))
}

/// A fresh database on the harness's cluster; its connection string.
async fn database(tag: &str) -> (String, String) {
    let cluster = tokio::task::spawn_blocking(common::cluster).await.unwrap();
    let name = format!("{tag}_{}_{}", std::process::id(), rand_suffix());
    common::connect(&cluster.config("postgres"))
        .await
        .batch_execute(&format!("create database {name}"))
        .await
        .unwrap();
    let url = format!(
        "host={} port={} user={} dbname={name}",
        cluster.socket_dir().display(),
        cluster.port(),
        cluster.superuser()
    );
    (name, url)
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

async fn admin(name: &str) -> tokio_postgres::Client {
    common::connect(&common::cluster().config(name)).await
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc {
    child: Child,
    url: String,
    s3_url: Option<String>,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Proc {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(data: &Path, db: &str, args: &[&str]) -> Proc {
    let mut serve = common::doska(data, &data.join("no-migrations"), &data.join("no-policies"));
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--database-url", db, "--jwt-secret", SECRET, "--static", ""])
        .args(args);
    let s = common::spawn_serving(serve);
    let s3_url = s
        .started
        .iter()
        .find_map(|v| v["fields"]["s3_url"].as_str())
        .map(str::to_string);
    Proc {
        child: s.child,
        url: s.url,
        s3_url,
        log: s.log,
    }
}

/// The S3 service: a doska serving S3 on `port`, with the bucket `blobs`.
struct Backend {
    proc: Proc,
    data: PathBuf,
    db: String,
    db_name: String,
    port: u16,
}

impl Backend {
    async fn start() -> Backend {
        let (db_name, db) = database("upb").await;
        let data = common::temp_dir("up-backend");
        let port = free_port();
        let proc = Backend::spawn(&data, &db, port);
        create_bucket(&proc.url, "blobs").await;
        Backend {
            proc,
            data,
            db,
            db_name,
            port,
        }
    }

    fn spawn(data: &Path, db: &str, port: u16) -> Proc {
        let listen = format!("127.0.0.1:{port}");
        spawn(
            data,
            db,
            &[
                "--s3-listen",
                &listen,
                "--s3-access-key-id",
                BACKEND_KEY,
                "--s3-secret-access-key",
                BACKEND_SECRET,
            ],
        )
    }

    fn restart(&mut self) {
        self.proc = Backend::spawn(&self.data, &self.db, self.port);
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A blob's bytes, read straight from the backend; `None` when it has no such object.
    async fn blob(&self, name: &str) -> Option<Vec<u8>> {
        let r = api(
            &self.proc.url,
            "GET",
            &format!("/object/blobs/{name}"),
            &[],
            "",
        )
        .await;
        match r.status {
            200 => Some(r.body.to_vec()),
            400 | 404 => None,
            s => panic!("backend read {name}: {s} {}", r.text()),
        }
    }

    /// Every blob name in the bucket, and the multipart uploads in progress (rows of B).
    async fn contents(&self) -> (Vec<String>, i64) {
        let c = admin(&self.db_name).await;
        let mut names: Vec<String> = c
            .query(
                "select name from storage.objects where bucket_id = 'blobs' order by name",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        names.sort();
        let uploads: i64 = c
            .query_one("select count(*) from storage.s3_multipart_uploads", &[])
            .await
            .unwrap()
            .get(0);
        (names, uploads)
    }
}

/// `--storage-backend s3` settings pointing at `b` (`bucket` and `secret` overridable).
fn s3_args(endpoint: &str, bucket: &str, secret: &str) -> Vec<String> {
    [
        "--storage-backend",
        "s3",
        "--storage-s3-endpoint",
        endpoint,
        "--storage-s3-bucket",
        bucket,
        "--storage-s3-access-key-id",
        BACKEND_KEY,
        "--storage-s3-secret-access-key",
        secret,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A doska with its bytes on `b`, and its S3 door on. Its orphan cleanup takes what is `orphan_age`
/// old: an upload whose first part is still on its way counts as abandoned once that old, so only a
/// doska restarted after a crash gets a short one (a loaded machine may take seconds per part).
fn front(data: &Path, db: &str, b: &Backend, orphan_age: &str) -> Proc {
    let mut args = s3_args(&b.endpoint(), "blobs", BACKEND_SECRET);
    args.extend(
        [
            "--storage-orphan-age",
            orphan_age,
            "--s3-listen",
            "127.0.0.1:0",
            "--s3-access-key-id",
            DOOR_KEY,
            "--s3-secret-access-key",
            DOOR_SECRET,
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn(data, db, &args)
}

/// A bucket made through the storage API.
async fn create_bucket(base: &str, id: &str) {
    let r = api(
        base,
        "POST",
        "/bucket",
        &[],
        json!({"id": id, "name": id}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A storage API request as service_role.
async fn api(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> common::Response {
    let key = service_key();
    let auth = format!("Bearer {key}");
    let mut h = vec![
        ("authorization", auth.as_str()),
        ("apikey", key.as_str()),
        ("content-type", "application/octet-stream"),
    ];
    h.extend_from_slice(headers);
    common::request(method, &format!("{base}/storage/v1{path}"), &h, body).await
}

/// The blob names holding an object's bytes, per F's rows: its parts in order, or its one blob.
async fn blob_names(f_db: &str, bucket: &str, key: &str) -> Vec<String> {
    let c = admin(f_db).await;
    let row = c
        .query_one(
            "select id, version, storage.doska_layout(id, version) from storage.objects
             where bucket_id = $1 and name = $2",
            &[&bucket, &key],
        )
        .await
        .unwrap();
    let (id, version): (uuid::Uuid, String) = (row.get(0), row.get(1));
    let layout: Option<Value> = row.get(2);
    let name = |id: &str, rest: &str| format!("data/{}/{id}.{rest}", &id.replace('-', "")[..2]);
    match layout {
        Some(parts) => parts
            .as_array()
            .unwrap()
            .iter()
            .map(|p| name(p[0].as_str().unwrap(), "part"))
            .collect(),
        None => vec![name(&id.to_string(), &version)],
    }
}

/// An object's bytes as the backend holds them (its blobs, concatenated).
async fn backend_bytes(b: &Backend, f_db: &str, bucket: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for name in blob_names(f_db, bucket, key).await {
        out.extend(
            b.blob(&name)
                .await
                .unwrap_or_else(|| panic!("{name} is not in the backend")),
        );
    }
    out
}

/// Every blob F's rows refer to (objects' blobs and parts, uploads' parts), sorted.
async fn live_blobs(f_db: &str) -> Vec<String> {
    let c = admin(f_db).await;
    let rows = c
        .query(
            "select 'data/' || substr(replace(id::text, '-', ''), 1, 2) || '/' || id || '.' || version
               from storage.objects o where storage.doska_layout(id, version) is null
             union all
             select 'data/' || substr(replace(part_id::text, '-', ''), 1, 2) || '/' || part_id || '.part'
               from storage.doska_object_parts
             union all
             select 'data/' || substr(replace(id::text, '-', ''), 1, 2) || '/' || id || '.part'
               from storage.s3_multipart_uploads_parts",
            &[],
        )
        .await
        .unwrap();
    let mut names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    names.sort();
    names
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32 * 31 + seed as u32 * 7 + (i as u32 >> 13)) as u8)
        .collect()
}

fn boto3(s3_url: &str, bucket: &str) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/s3/upstream_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("S3_URL", s3_url)
        .env("S3_KEY", DOOR_KEY)
        .env("S3_SECRET", DOOR_SECRET)
        .env("BUCKET", bucket)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CONFIG_FILE")
        .output()
        .expect("python3 with boto3 (scripts/setup installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "boto3 check failed:\n{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
    let result = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap();
    serde_json::from_str(result).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_live_in_the_backend_through_both_doors_and_two_instances() {
    let b = Backend::start().await;
    let (f_db_name, f_db) = database("upf").await;
    let f_data = common::temp_dir("up-front");
    let f = front(&f_data, &f_db, &b, "1h");
    create_bucket(&f.url, "docs").await;

    // A small body (one PUT upstream, buffered), a 20 MiB one of declared length (streamed on in
    // one PUT) and a 20 MiB one sent chunked, length unknown (an upstream multipart upload of 3 parts).
    let small = pattern(5000, 1);
    let big = pattern(20 << 20, 2);
    for (key, bytes) in [
        ("a/small.txt", &small),
        ("a/big.bin", &big),
        ("a/chunked.bin", &big),
    ] {
        if key == "a/chunked.bin" {
            let mut s = start_chunked(&f.url, &format!("/object/docs/{key}"));
            for piece in bytes.chunks(1 << 20) {
                write!(s, "{:x}\r\n", piece.len()).unwrap();
                s.write_all(piece).unwrap();
                s.write_all(b"\r\n").unwrap();
            }
            s.write_all(b"0\r\n\r\n").unwrap();
            let mut answer = String::new();
            std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        } else {
            let r = api(
                &f.url,
                "POST",
                &format!("/object/docs/{key}"),
                &[],
                bytes.clone(),
            )
            .await;
            assert_eq!(r.status, 200, "{key}: {}", r.text());
        }
        let r = api(&f.url, "GET", &format!("/object/docs/{key}"), &[], "").await;
        assert_eq!(r.status, 200);
        assert!(r.body == bytes[..], "{key} reads back");
        assert_eq!(
            r.header("etag").unwrap().trim_matches('"'),
            hex::encode(Md5::digest(bytes)),
            "the ETag is the MD5, as on disk"
        );
        assert_eq!(
            backend_bytes(&b, &f_db_name, "docs", key).await,
            *bytes,
            "{key} in the backend"
        );
    }
    // How the backend received them: one PUT (its ETag the MD5) or a multipart upload of 3 parts.
    let c = admin(&b.db_name).await;
    for (key, suffix) in [("a/big.bin", "\""), ("a/chunked.bin", "-3\"")] {
        let names = blob_names(&f_db_name, "docs", key).await;
        let etag: String = c
            .query_one(
                "select metadata->>'eTag' from storage.objects where bucket_id = 'blobs' and name = $1",
                &[&names[0]],
            )
            .await
            .unwrap()
            .get(0);
        assert!(etag.ends_with(suffix) && etag.len() <= 37, "{key}: {etag}");
        if suffix == "\"" {
            assert_eq!(etag.trim_matches('"'), hex::encode(Md5::digest(&big)));
        }
    }
    // Nothing of it on F's own disk.
    assert!(!f_data.join("storage").join("data").exists());

    // Ranges pass through: inside, across the upstream part boundary, suffix, past the end.
    for (range, want) in [
        ("bytes=10-19", &big[10..20]),
        ("bytes=8388600-8388620", &big[8388600..8388621]),
        ("bytes=-5", &big[big.len() - 5..]),
    ] {
        let r = api(
            &f.url,
            "GET",
            "/object/docs/a/big.bin",
            &[("range", range)],
            "",
        )
        .await;
        assert_eq!(r.status, 206, "{range}");
        assert!(r.body == want, "{range}");
    }
    let r = api(
        &f.url,
        "GET",
        "/object/docs/a/big.bin",
        &[("range", "bytes=99999999-")],
        "",
    )
    .await;
    assert_eq!(r.status, 416);

    // An overwrite replaces the blob upstream; a delete removes it; a copy makes its own.
    let old = blob_names(&f_db_name, "docs", "a/small.txt").await;
    let newer = pattern(7000, 3);
    let r = api(
        &f.url,
        "POST",
        "/object/docs/a/small.txt",
        &[("x-upsert", "true")],
        newer.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        backend_bytes(&b, &f_db_name, "docs", "a/small.txt").await,
        newer
    );
    assert_eq!(
        b.blob(&old[0]).await,
        None,
        "the replaced version is gone upstream"
    );
    let r = api(
        &f.url,
        "POST",
        "/object/copy",
        &[("content-type", "application/json")],
        json!({"bucketId": "docs", "sourceKey": "a/big.bin", "destinationKey": "a/copy.bin"})
            .to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        backend_bytes(&b, &f_db_name, "docs", "a/copy.bin").await,
        big
    );
    let gone = blob_names(&f_db_name, "docs", "a/copy.bin").await;
    let r = api(
        &f.url,
        "DELETE",
        "/object/docs",
        &[("content-type", "application/json")],
        json!({"prefixes": ["a/copy.bin"]}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        b.blob(&gone[0]).await,
        None,
        "a deleted object's bytes are gone upstream"
    );

    // The S3 door on top, unchanged: boto3 stores, reads by ranges, uploads in parts, copies.
    let stored = boto3(f.s3_url.as_deref().unwrap(), "boto");
    for (key, sha) in stored.as_object().unwrap() {
        let bytes = backend_bytes(&b, &f_db_name, "boto", key).await;
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            sha.as_str().unwrap(),
            "{key} upstream"
        );
    }
    assert_eq!(
        blob_names(&f_db_name, "boto", "boto/big.bin").await.len(),
        3,
        "kept as its parts"
    );

    // TUS on top, unchanged: each PATCH is one blob upstream, the object reads as their sequence.
    let pieces = [pattern(6 << 20, 5), pattern(3 << 20, 6)];
    tus_upload(&f.url, "docs", "t/resumed.bin", &pieces).await;
    let whole = pieces.concat();
    let r = api(&f.url, "GET", "/object/docs/t/resumed.bin", &[], "").await;
    assert!(
        r.status == 200 && r.body == whole[..],
        "the TUS upload reads back"
    );
    assert_eq!(
        blob_names(&f_db_name, "docs", "t/resumed.bin").await.len(),
        2
    );
    assert_eq!(
        backend_bytes(&b, &f_db_name, "docs", "t/resumed.bin").await,
        whole
    );

    // A second doska on the same database and bucket reads what the first wrote, and back.
    let f2 = front(&common::temp_dir("up-front2"), &f_db, &b, "1h");
    let r = api(&f2.url, "GET", "/object/docs/a/big.bin", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body == big[..],
        "the second instance reads the first's file"
    );
    let r = api(
        &f2.url,
        "POST",
        "/object/docs/b/from-two.txt",
        &[],
        "written by two",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = api(&f.url, "GET", "/object/docs/b/from-two.txt", &[], "").await;
    assert_eq!(r.text(), "written by two");

    // Every blob upstream is one a row refers to, and the other way round.
    assert_eq!(b.contents().await, (live_blobs(&f_db_name).await, 0));
}

/// One TUS upload of `pieces` (a PATCH each) to `bucket`/`key`, as service_role.
async fn tus_upload(base: &str, bucket: &str, key: &str, pieces: &[Vec<u8>]) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let sk = service_key();
    let auth = format!("Bearer {sk}");
    let total: usize = pieces.iter().map(Vec::len).sum();
    let (total, meta) = (
        total.to_string(),
        format!("bucketName {},objectName {}", b64(bucket), b64(key)),
    );
    let url = format!("{base}/storage/v1/upload/resumable");
    let r = common::request(
        "POST",
        &url,
        &[
            ("authorization", &auth),
            ("tus-resumable", "1.0.0"),
            ("upload-length", &total),
            ("upload-metadata", &meta),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let location = r.header("location").unwrap().to_string();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let mut offset = 0;
    for piece in pieces {
        let at = offset.to_string();
        let r = common::request(
            "PATCH",
            &location,
            &[
                ("authorization", &auth),
                ("tus-resumable", "1.0.0"),
                ("upload-offset", &at),
                ("content-type", "application/offset+octet-stream"),
            ],
            piece.clone(),
        )
        .await;
        assert_eq!(r.status, 204, "{}", r.text());
        offset += piece.len();
    }
}

/// Starts an upload of unknown length (`transfer-encoding: chunked`); the caller sends the chunks.
fn start_chunked(base: &str, path: &str) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    let key = service_key();
    write!(
        s,
        "POST /storage/v1{path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n\r\n"
    )
    .unwrap();
    s
}

/// Starts a `total`-byte upload to `path` and sends `send` bytes of it; the socket stays open.
fn start_upload(base: &str, path: &str, total: usize, send: &[u8]) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    let key = service_key();
    write!(
        s,
        "POST /storage/v1{path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/octet-stream\r\ncontent-length: {total}\r\n\r\n"
    )
    .unwrap();
    s.write_all(send).unwrap();
    s.flush().unwrap();
    s
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_faults_answer_503_and_recover_and_a_crash_leaves_nothing_behind() {
    let mut b = Backend::start().await;
    let (f_db_name, f_db) = database("upf").await;
    let f_data = common::temp_dir("up-front");
    let mut f = front(&f_data, &f_db, &b, "1h");
    create_bucket(&f.url, "docs").await;
    let r = api(&f.url, "POST", "/object/docs/kept.txt", &[], "kept bytes").await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The backend stopped: storage requests that need it answer 503 saying why, and write nothing;
    // the rest of doska works.
    b.proc.kill();
    for (method, path, body) in [
        ("POST", "/object/docs/new.txt", "new bytes"),
        ("GET", "/object/docs/kept.txt", ""),
    ] {
        let r = api(&f.url, method, path, &[], body).await;
        assert_eq!(r.status, 503, "{method} {path}: {}", r.text());
        let v = r.json();
        assert_eq!(v["statusCode"], "503");
        assert_eq!(v["error"], "ServiceUnavailable");
        assert!(
            v["message"].as_str().unwrap().contains("unreachable"),
            "{v}"
        );
    }
    let r = api(&f.url, "GET", "/object/info/docs/kept.txt", &[], "").await;
    assert_eq!(r.status, 200, "metadata needs no bytes: {}", r.text());
    assert_eq!(common::get(&format!("{}/health", f.url)).await.status, 200);
    let c = admin(&f_db_name).await;
    let n: i64 = c
        .query_one(
            "select count(*) from storage.objects where name = 'new.txt'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "no row without its bytes");
    // The S3 door says it in S3 XML.
    let s3 = f.s3_url.clone().unwrap();
    let r = s3_get(&s3, "docs", "kept.txt").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("<Code>ServiceUnavailable</Code>"),
        "{}",
        r.text()
    );

    // Started again: works without restarting doska.
    b.restart();
    let r = api(&f.url, "POST", "/object/docs/new.txt", &[], "new bytes").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = api(&f.url, "GET", "/object/docs/kept.txt", &[], "").await;
    assert_eq!(r.text(), "kept bytes");
    assert_eq!(s3_get(&s3, "docs", "new.txt").await.text(), "new bytes");

    // SIGKILL mid-upload: 20 MiB of a 30 MiB body of declared length (streamed on in one PUT), and
    // 20 MiB of a chunked one (an upstream multipart upload, with parts already written).
    let total = 30 << 20;
    let sent = pattern(20 << 20, 4);
    let _sock = start_upload(&f.url, "/object/docs/crash.bin", total, &sent);
    let mut chunked = start_chunked(&f.url, "/object/docs/crash-chunked.bin");
    for piece in sent.chunks(1 << 20) {
        write!(chunked, "{:x}\r\n", piece.len()).unwrap();
        chunked.write_all(piece).unwrap();
        chunked.write_all(b"\r\n").unwrap();
    }
    let bc = admin(&b.db_name).await;
    eventually("the backend receives parts", || async {
        let n: i64 = bc
            .query_one(
                "select count(*) from storage.s3_multipart_uploads_parts",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        n >= 1
    })
    .await;
    f.kill();
    let n: i64 = c
        .query_one(
            "select count(*) from storage.objects where name = 'crash.bin'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "no partial object");
    // Restarted with a 1 s orphan age, its cleanup aborts the upload and removes stray blobs.
    let f = front(&f_data, &f_db, &b, "1s");
    eventually(
        "cleanup leaves only live blobs and no upload upstream",
        || async { b.contents().await == (live_blobs(&f_db_name).await, 0) },
    )
    .await;
    let r = api(&f.url, "GET", "/object/docs/kept.txt", &[], "").await;
    assert_eq!(r.text(), "kept bytes");
    drop(f);

    // Refusals: a wrong secret and a missing bucket are 503s that say why.
    for (bucket, secret, why) in [
        ("blobs", "wrong-secret", "refused"),
        ("no-such-bucket", BACKEND_SECRET, "does not exist"),
    ] {
        let args = s3_args(&b.endpoint(), bucket, secret);
        let (_, db) = database("upw").await;
        let data = common::temp_dir("up-refused");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = spawn(&data, &db, &args);
        create_bucket(&p.url, "docs").await;
        let r = api(&p.url, "POST", "/object/docs/x.txt", &[], "x").await;
        assert_eq!(r.status, 503, "{}", r.text());
        let msg = r.json()["message"].as_str().unwrap().to_string();
        assert!(msg.contains(why), "{msg}");
        assert!(
            !msg.contains(secret) || secret == BACKEND_SECRET,
            "no secret in messages"
        );
        assert!(
            !p.log.lock().unwrap().contains("wrong-secret"),
            "no secret in logs"
        );
    }
}

/// A signed S3 GET on doska's S3 door (SigV4 presigned, as any client may send).
async fn s3_get(s3_url: &str, bucket: &str, key: &str) -> common::Response {
    use rusty_s3::S3Action;
    let b = rusty_s3::Bucket::new(
        s3_url.parse().unwrap(),
        rusty_s3::UrlStyle::Path,
        bucket.to_string(),
        "us-east-1",
    )
    .unwrap();
    let creds = rusty_s3::Credentials::new(DOOR_KEY, DOOR_SECRET);
    let url = b
        .get_object(Some(&creds), key)
        .sign(Duration::from_secs(600));
    common::request("GET", url.as_str(), &[], bytes::Bytes::new()).await
}

/// `doska storage migrate --to <to>` on F's database; its JSON report.
fn storage_migrate(data: &Path, db: &str, to: &str, b: &Backend, extra: &[&str]) -> Value {
    let args = s3_args(&b.endpoint(), "blobs", BACKEND_SECRET);
    let out = common::doska(data, &data.join("no-migrations"), &data.join("no-policies"))
        .args(["storage", "migrate", "--to", to])
        .args(["--database-url", db, "--jwt-secret", SECRET])
        .args(&args)
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_migrate_moves_a_data_dirs_files_to_the_backend_and_back() {
    let b = Backend::start().await;
    let (f_db_name, f_db) = database("upm").await;
    let f_data = common::temp_dir("up-migrate");
    // Serving from its own disk: a small object, a 20 MiB one, a TUS upload kept as two parts.
    let f = spawn(&f_data, &f_db, &[]);
    create_bucket(&f.url, "docs").await;
    let mut objects = vec![
        ("m/small.txt", pattern(3000, 7)),
        ("m/big.bin", pattern(20 << 20, 8)),
    ];
    for (key, bytes) in &objects {
        let r = api(
            &f.url,
            "POST",
            &format!("/object/docs/{key}"),
            &[],
            bytes.clone(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let pieces = [pattern(6 << 20, 9), pattern(1 << 20, 10)];
    tus_upload(&f.url, "docs", "m/resumed.bin", &pieces).await;
    objects.push(("m/resumed.bin", pieces.concat()));

    // Copied to the backend while doska serves from its disk, each blob verified.
    let report = storage_migrate(&f_data, &f_db, "s3", &b, &[]);
    assert_eq!(report["copied"], 4, "{report}");
    assert_eq!(report["gone"], 0, "{report}");
    // A write after the copy, before the switch.
    let late = ("m/late.txt", b"written before the switch".to_vec());
    let r = api(
        &f.url,
        "POST",
        &format!("/object/docs/{}", late.0),
        &[],
        late.1.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    objects.push(late);
    drop(f);
    // Switched: restarted on the backend, and the command run once more takes the late write.
    let f = front(&f_data, &f_db, &b, "1h");
    let report = storage_migrate(&f_data, &f_db, "s3", &b, &[]);
    assert_eq!(
        (report["copied"].as_u64(), report["already_there"].as_u64()),
        (Some(1), Some(4)),
        "{report}"
    );
    for (key, bytes) in &objects {
        let r = api(&f.url, "GET", &format!("/object/docs/{key}"), &[], "").await;
        assert!(
            r.status == 200 && r.body == bytes[..],
            "{key} reads from the backend"
        );
        assert_eq!(
            backend_bytes(&b, &f_db_name, "docs", key).await,
            *bytes,
            "{key} upstream"
        );
    }

    // And back to a fresh storage dir.
    let back = common::temp_dir("up-migrate-back");
    let dir = back.display().to_string();
    let report = storage_migrate(&f_data, &f_db, "disk", &b, &["--storage-dir", &dir]);
    assert_eq!(report["copied"], 5, "{report}");
    drop(f);
    let f = spawn(&f_data, &f_db, &["--storage-dir", &dir]);
    for (key, bytes) in &objects {
        let r = api(&f.url, "GET", &format!("/object/docs/{key}"), &[], "").await;
        assert!(
            r.status == 200 && r.body == bytes[..],
            "{key} reads from the new disk"
        );
    }
}
