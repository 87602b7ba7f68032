//! The clock jumping forward under a running doska. doska runs under libfaketime (Debian's
//! `faketime`, installed by scripts/setup) whose offset the test changes at run time, as an NTP
//! step or a VM resumed after hours would change the wall clock; the monotonic clock (timers,
//! timeouts) is left alone, as such a step leaves it. The embedded PostgreSQL gets a clean
//! environment, so only doska's clock moves.
//!
//! A user's access token that works before a two-hour jump is refused after it — by REST (401
//! PGRST303 "JWT expired") and by auth — and the refresh token still gets a new access token,
//! issued on the new clock, that works.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const SECRET: &str = "clock-jump-secret-0123456789-0123456789-0123";
const JUMP_SECS: i64 = 2 * 3600;

/// libfaketime's preload library (Debian puts it under the multiarch lib dir).
fn libfaketime() -> PathBuf {
    let mut candidates = vec![PathBuf::from("/usr/lib/faketime/libfaketime.so.1")];
    if let Ok(dirs) = std::fs::read_dir("/usr/lib") {
        for d in dirs.flatten() {
            candidates.push(d.path().join("faketime/libfaketime.so.1"));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.exists())
        .expect("libfaketime is not installed: run scripts/setup (it installs Debian's faketime)")
}

fn key(role: &str) -> String {
    doska::jwt::sign(SECRET.as_bytes(), &json!({"role": role}))
}

async fn call(method: &str, url: &str, token: &str, body: Value) -> (u16, Value) {
    let anon = key("anon");
    let bearer = format!("Bearer {token}");
    let res = common::request(
        method,
        url,
        &[
            ("apikey", anon.as_str()),
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ],
        if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        },
    )
    .await;
    let json = serde_json::from_slice(&res.body).unwrap_or(Value::Null);
    (res.status, json)
}

fn real_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The token's `exp` claim (the payload is not verified here; doska made it).
fn exp_of(token: &str) -> i64 {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["exp"]
        .as_i64()
        .unwrap()
}

fn set_offset(file: &Path, offset: &str) {
    std::fs::write(file, format!("{offset}\n")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_valid_before_a_forward_clock_jump_is_refused_after_it_and_refresh_still_works() {
    let lib = libfaketime();
    let data = common::temp_dir("clock-jump");
    std::fs::create_dir_all(data.join("migrations")).unwrap();
    std::fs::write(
        data.join("migrations/0001_notes.sql"),
        "create table public.notes (id bigint primary key);
         insert into public.notes values (1);",
    )
    .unwrap();
    let offset = data.join("faketime-offset");
    set_offset(&offset, "+0");

    let mut serve = common::doska(&data, &data.join("migrations"), &data.join("no-policies"));
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--jwt-secret", SECRET, "--jwt-exp", "3600"])
        .env("LD_PRELOAD", &lib)
        .env("FAKETIME_TIMESTAMP_FILE", &offset)
        // Re-read the offset file at most once a second.
        .env("FAKETIME_CACHE_DURATION", "1")
        // Only the wall clock jumps: timers keep their monotonic clock.
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let doska = tokio::task::spawn_blocking(move || common::spawn_serving(serve))
        .await
        .unwrap();
    let url = doska.url.clone();

    let (status, session) = call(
        "POST",
        &format!("{url}/auth/v1/signup"),
        &key("anon"),
        json!({"email": "clock@example.com", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    let access = session["access_token"].as_str().unwrap().to_string();
    let refresh = session["refresh_token"].as_str().unwrap().to_string();
    // Issued on the real clock (give or take the test's own seconds).
    assert!((exp_of(&access) - real_now() - 3600).abs() < 600);

    let notes = format!("{url}/rest/v1/notes?select=id");
    let user = format!("{url}/auth/v1/user");
    assert_eq!(call("GET", &notes, &access, Value::Null).await.0, 200);
    assert_eq!(call("GET", &user, &access, Value::Null).await.0, 200);

    // The wall clock steps two hours forward: the token's hour is over.
    set_offset(&offset, &format!("+{JUMP_SECS}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let (status, body) = call("GET", &notes, &access, Value::Null).await;
        if status != 200 {
            break (status, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the token was never refused after the jump; log:\n{}",
            doska.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(refused.0, 401, "{}", refused.1);
    assert_eq!(refused.1["code"], "PGRST303", "{}", refused.1);
    assert_eq!(refused.1["message"], "JWT expired", "{}", refused.1);
    let (status, body) = call("GET", &user, &access, Value::Null).await;
    assert!(
        status == 401 || status == 403,
        "auth took an expired token: {status} {body}"
    );

    // The refresh token still works, and its new access token is dated on the new clock.
    let (status, renewed) = call(
        "POST",
        &format!("{url}/auth/v1/token?grant_type=refresh_token"),
        &key("anon"),
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    let fresh = renewed["access_token"].as_str().unwrap().to_string();
    let ahead = exp_of(&fresh) - real_now() - 3600;
    assert!(
        (ahead - JUMP_SECS).abs() < 600,
        "the new token's exp is {ahead} s past the real clock's hour, not the jump"
    );
    assert_eq!(call("GET", &notes, &fresh, Value::Null).await.0, 200);
    let (status, me) = call("GET", &user, &fresh, Value::Null).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], "clock@example.com");

    let mut child = doska.child;
    // SAFETY: our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
