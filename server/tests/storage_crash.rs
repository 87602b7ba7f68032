//! Crash safety of stored files: `doska serve` is killed with SIGKILL while a new object and an
//! overwrite are streaming in. After a restart no partial object is visible, the overwritten object
//! still reads its old bytes, and with a short `--storage-orphan-age` the partial files are cleaned up.

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
    let mut s = TcpStream::connect(addr).unwrap();
    let key = service_key();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/octet-stream\r\ncontent-length: {total}\r\n{extra}\r\n"
    )
    .unwrap();
    s.write_all(send).unwrap();
    s.flush().unwrap();
    s
}

/// A whole request; returns status and body.
fn request(addr: &str, method: &str, path: &str, extra: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = start_request(
        addr,
        method,
        path,
        &format!("{extra}connection: close\r\n"),
        body.len(),
        body,
    );
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (status, out[split..].to_vec())
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
    let (mut child, addr) = serve(&data);
    let (status, body) = request(
        &addr,
        "POST",
        "/storage/v1/bucket",
        "",
        br#"{"name":"files"}"#,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
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
