//! Crash safety of stored files: `doska serve` is killed with SIGKILL while a new object and an
//! overwrite are streaming in. After a restart no partial object is visible, the overwritten object
//! still reads its old bytes, and with a short `--storage-orphan-age` the partial files are cleaned up.
//! The same for an object kept as its multipart upload's parts (made here with TUS), overwritten
//! while doska dies; then deleted, it leaves no file behind. And for small bodies, which take one
//! transaction: killed amid many small writes, every acknowledged write survives whole, nothing
//! reads partly written, and no file outlives cleanup.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

const SECRET: &str = "crash-test-secret-0123456789-0123456789";

fn serve(data: &Path) -> (Child, String) {
    let mut serve = common::doska(data, &data.join("no-migrations"), &data.join("no-policies"));
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--jwt-secret", SECRET, "--storage-orphan-age", "1s"]);
    let s = common::spawn_serving(serve);
    (s.child, s.url.trim_start_matches("http://").to_string())
}

fn service_key() -> String {
    doska::jwt::sign(
        SECRET.as_bytes(),
        &serde_json::json!({"role": "service_role"}),
    )
}

/// Sends a request's head and the first `send` bytes of a `total`-byte body; returns the open socket.
fn start_request(
    addr: &str,
    method: &str,
    path: &str,
    extra: &str,
    total: usize,
    send: &[u8],
) -> TcpStream {
    try_start_request(addr, method, path, extra, total, send).unwrap()
}

/// [`start_request`], failing instead of panicking when doska is gone.
fn try_start_request(
    addr: &str,
    method: &str,
    path: &str,
    extra: &str,
    total: usize,
    send: &[u8],
) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    let key = service_key();
    let content_type = if extra.contains("content-type:") {
        ""
    } else {
        "content-type: application/octet-stream\r\n"
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         {content_type}content-length: {total}\r\n{extra}\r\n"
    )?;
    s.write_all(send)?;
    s.flush()?;
    Ok(s)
}

/// A whole request; returns status and body.
fn request(addr: &str, method: &str, path: &str, extra: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let (status, _, body) = request_head(addr, method, path, extra, body);
    (status, body)
}

/// A whole request; returns status, response head and body.
fn request_head(
    addr: &str,
    method: &str,
    path: &str,
    extra: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    try_request_head(addr, method, path, extra, body).expect("an answer")
}

/// [`request_head`], `None` when no whole answer came (doska died meanwhile).
fn try_request_head(
    addr: &str,
    method: &str,
    path: &str,
    extra: &str,
    body: &[u8],
) -> Option<(u16, String, Vec<u8>)> {
    let extra = format!("{extra}connection: close\r\n");
    let mut s = try_start_request(addr, method, path, &extra, body.len(), body).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    Some((status, head, out[split..].to_vec()))
}

/// Uploads `pieces` as one TUS upload (one PATCH each) to `files/<key>`: a multipart object.
fn tus_upload(addr: &str, key: &str, pieces: &[&[u8]]) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let (status, head, _) = request_head(
        addr,
        "POST",
        "/storage/v1/upload/resumable",
        &format!(
            "tus-resumable: 1.0.0\r\nupload-length: {total}\r\nx-upsert: true\r\n\
             upload-metadata: bucketName {},objectName {}\r\n",
            b64("files"),
            b64(key)
        ),
        b"",
    );
    assert_eq!(status, 201, "{head}");
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .trim()
        .to_string();
    let mut offset = 0;
    for piece in pieces {
        let (status, head, body) = request_head(
            addr,
            "PATCH",
            &location,
            &format!(
                "tus-resumable: 1.0.0\r\nupload-offset: {offset}\r\n\
                 content-type: application/offset+octet-stream\r\n"
            ),
            piece,
        );
        assert_eq!(status, 204, "{head}{}", String::from_utf8_lossy(&body));
        offset += piece.len();
    }
}

fn blob_files(storage: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let Ok(shards) = std::fs::read_dir(storage.join("data")) else {
        return out;
    };
    for shard in shards.flatten() {
        for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
            out.push((f.path(), f.metadata().unwrap().len()));
        }
    }
    out
}

#[test]
fn sigkill_during_upload_and_overwrite_leaves_old_bytes_and_no_partial_object() {
    let data = common::temp_dir("crash");
    let storage = data.join("storage");
    let (mut child, addr) = serve_with_bucket(&data);
    let (status, body) = request(
        &addr,
        "POST",
        "/storage/v1/object/files/kept.txt",
        "",
        b"old bytes",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(blob_files(&storage).len(), 1);

    // Two uploads in flight: an overwrite of kept.txt and a new object, each 64 MiB announced.
    let total = 64 * 1024 * 1024;
    let chunk = vec![b'x'; 4 * 1024 * 1024];
    let _overwrite = start_request(
        &addr,
        "PUT",
        "/storage/v1/object/files/kept.txt",
        "",
        total,
        &chunk,
    );
    let _fresh = start_request(
        &addr,
        "POST",
        "/storage/v1/object/files/new.bin",
        "",
        total,
        &chunk,
    );
    // Wait until both are streaming into their own new files.
    let deadline = Instant::now() + Duration::from_secs(20);
    while blob_files(&storage)
        .iter()
        .filter(|(_, len)| *len > 0)
        .count()
        < 3
    {
        assert!(
            Instant::now() < deadline,
            "uploads did not start: {:?}",
            blob_files(&storage)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        blob_files(&storage).len(),
        3,
        "partial files stay until cleanup"
    );

    // After the restart: old bytes, no partial object, and the orphans go once older than 1 s.
    std::thread::sleep(Duration::from_millis(1500));
    let (mut child, addr) = serve(&data);
    let (status, body) = request(&addr, "GET", "/storage/v1/object/files/kept.txt", "", b"");
    assert_eq!((status, body.as_slice()), (200, &b"old bytes"[..]));
    let (status, _) = request(&addr, "GET", "/storage/v1/object/files/new.bin", "", b"");
    assert_eq!(status, 404);
    let deadline = Instant::now() + Duration::from_secs(30);
    while blob_files(&storage).len() > 1 {
        assert!(
            Instant::now() < deadline,
            "orphans outlived cleanup: {:?}",
            blob_files(&storage)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = request(&addr, "GET", "/storage/v1/object/files/kept.txt", "", b"");
    assert_eq!((status, body.as_slice()), (200, &b"old bytes"[..]));
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_multipart_object_keeps_its_parts_through_a_crashed_overwrite_and_leaves_nothing_when_deleted()
{
    let data = common::temp_dir("crash-multipart");
    let storage = data.join("storage");
    let (mut child, addr) = serve_with_bucket(&data);
    tus_upload(&addr, "multi.bin", &[b"first piece, ", b"second piece"]);
    let old = b"first piece, second piece";
    let (status, body) = request(&addr, "GET", "/storage/v1/object/files/multi.bin", "", b"");
    assert_eq!((status, body.as_slice()), (200, &old[..]));
    assert_eq!(blob_files(&storage).len(), 2, "the object is its two parts");

    // An overwrite of the multipart object in flight when doska dies.
    let total = 64 * 1024 * 1024;
    let chunk = vec![b'y'; 4 * 1024 * 1024];
    let _overwrite = start_request(
        &addr,
        "PUT",
        "/storage/v1/object/files/multi.bin",
        "",
        total,
        &chunk,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while blob_files(&storage).len() < 3 {
        assert!(Instant::now() < deadline, "the overwrite did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // After the restart: the old bytes, whole and by a range across the parts' boundary; the
    // partial overwrite goes with the cleanup, the parts stay.
    std::thread::sleep(Duration::from_millis(1500));
    let (mut child, addr) = serve(&data);
    let (status, body) = request(&addr, "GET", "/storage/v1/object/files/multi.bin", "", b"");
    assert_eq!((status, body.as_slice()), (200, &old[..]));
    let (status, body) = request(
        &addr,
        "GET",
        "/storage/v1/object/files/multi.bin",
        "range: bytes=6-18\r\n",
        b"",
    );
    assert_eq!((status, body.as_slice()), (206, &old[6..19]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while blob_files(&storage).len() > 2 {
        assert!(
            Instant::now() < deadline,
            "the partial overwrite outlived cleanup: {:?}",
            blob_files(&storage)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let (status, body) = request(&addr, "GET", "/storage/v1/object/files/multi.bin", "", b"");
    assert_eq!(
        (status, body.as_slice()),
        (200, &old[..]),
        "cleanup kept the parts"
    );

    // Overwritten for real by another multipart object, then deleted: no file remains.
    tus_upload(&addr, "multi.bin", &[b"new ", b"bytes ", b"here"]);
    let (status, body) = request(&addr, "GET", "/storage/v1/object/files/multi.bin", "", b"");
    assert_eq!((status, body.as_slice()), (200, &b"new bytes here"[..]));
    assert_eq!(blob_files(&storage).len(), 3, "the old parts are gone");
    let (status, body) = request(
        &addr,
        "DELETE",
        "/storage/v1/object/files",
        "content-type: application/json\r\n",
        br#"{"prefixes":["multi.bin"]}"#,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        blob_files(&storage).is_empty(),
        "{:?}",
        blob_files(&storage)
    );
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// A whole request that may fail because doska died meanwhile: status and body, if an answer came.
fn try_request(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    try_request_head(addr, method, path, "", body).map(|(status, _, body)| (status, body))
}

/// doska on `data` with an empty bucket `files`.
fn serve_with_bucket(data: &Path) -> (Child, String) {
    let (child, addr) = serve(data);
    let (status, body) = request(
        &addr,
        "POST",
        "/storage/v1/bucket",
        "",
        br#"{"name":"files"}"#,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    (child, addr)
}

#[test]
fn sigkill_amid_small_writes_keeps_every_acknowledged_one_whole() {
    let data = common::temp_dir("crash-small");
    let storage = data.join("storage");
    let (mut child, addr) = serve_with_bucket(&data);
    // Each writer overwrites its own key and creates fresh ones, in order, until doska dies;
    // it records the last overwrite and the fresh keys that were acknowledged.
    let writers: Vec<_> = (0..6)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let (mut acked_overwrite, mut acked_fresh, mut tried) = (None, Vec::new(), 0);
                for n in 0.. {
                    tried = n;
                    let body = format!("writer {t} write {n}");
                    let path = format!("/storage/v1/object/files/w{t}.txt");
                    let method = if n == 0 { "POST" } else { "PUT" };
                    match try_request(&addr, method, &path, body.as_bytes()) {
                        Some((200, _)) => acked_overwrite = Some(n),
                        Some((status, body)) => {
                            panic!("writer {t}: {status} {}", String::from_utf8_lossy(&body))
                        }
                        None => break,
                    }
                    let path = format!("/storage/v1/object/files/w{t}-{n}.txt");
                    match try_request(&addr, "POST", &path, body.as_bytes()) {
                        Some((200, _)) => acked_fresh.push(n),
                        Some((status, body)) => {
                            panic!("writer {t}: {status} {}", String::from_utf8_lossy(&body))
                        }
                        None => break,
                    }
                }
                (acked_overwrite, acked_fresh, tried)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(
        results.iter().all(|(_, fresh, _)| fresh.len() >= 3),
        "too few writes before the kill: {results:?}"
    );

    // After the restart, with orphans older than 1 s removed.
    std::thread::sleep(Duration::from_millis(1500));
    let (mut child, addr) = serve(&data);
    let mut objects = 0;
    for (t, (acked_overwrite, acked_fresh, tried)) in results.iter().enumerate() {
        // The kept key holds an acknowledged write or a later one, whole.
        let (status, body) = request(
            &addr,
            "GET",
            &format!("/storage/v1/object/files/w{t}.txt"),
            "",
            b"",
        );
        assert_eq!(status, 200, "writer {t}");
        objects += 1;
        let body = String::from_utf8(body).unwrap();
        let n: usize = body
            .strip_prefix(&format!("writer {t} write "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("writer {t}: {body:?} is not a whole write"));
        assert!(
            Some(n) >= *acked_overwrite && n <= *tried,
            "writer {t}: {n} after {acked_overwrite:?}"
        );
        // Every acknowledged fresh key is there, whole; the one in flight is whole or absent.
        for n in 0..=*tried {
            let (status, body) = request(
                &addr,
                "GET",
                &format!("/storage/v1/object/files/w{t}-{n}.txt"),
                "",
                b"",
            );
            if acked_fresh.contains(&n) {
                assert_eq!(status, 200, "writer {t} fresh {n}");
            }
            if status == 200 {
                objects += 1;
                assert_eq!(body, format!("writer {t} write {n}").as_bytes());
            } else {
                assert_eq!(
                    status,
                    404,
                    "writer {t} fresh {n}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while blob_files(&storage).len() > objects {
        assert!(
            Instant::now() < deadline,
            "orphans outlived cleanup: {} files for {objects} objects",
            blob_files(&storage).len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(blob_files(&storage).len(), objects);
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}
