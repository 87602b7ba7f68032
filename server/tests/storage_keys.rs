//! Object keys through both storage doors at once (issue #12): `doska serve` with its S3 listener,
//! and `tests/s3/keys_check.py` (boto3 and urllib) writing keys with `..` segments through one door
//! and reading them through the other, and sending NUL bytes and an unknown role to S3.

mod common;

use std::process::Command;

const KEY: &str = "DOSKAKEYSKEY";
const SECRET: &str = "doska-keys-secret-access-key";

#[test]
fn dot_segments_and_nul_bytes_agree_across_both_doors() {
    let data = common::temp_dir("keys");
    let migrations = data.join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    let mut serve = common::doska(&data, &migrations, &data.join("no-policies"));
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--s3-listen", "127.0.0.1:0"])
        .args(["--s3-access-key-id", KEY, "--s3-secret-access-key", SECRET]);
    let mut s = common::spawn_serving(serve);
    let s3_url = s
        .started
        .iter()
        .rev()
        .find_map(|v| v["fields"]["s3_url"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no S3 listener: {}", s.log.lock().unwrap()));
    let secret = doska::secret::load_or_create(None, &data).unwrap();
    let sign = |claims| doska::jwt::sign(secret.as_bytes(), &claims);
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/s3/keys_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("S3_URL", &s3_url)
        .env("S3_KEY", KEY)
        .env("S3_SECRET", SECRET)
        .env("API_URL", &s.url)
        .env("SERVICE_JWT", sign(serde_json::json!({"role": "service_role"})))
        .env("S3_SESSION_KEY", doska::jwt::s3_session_key(secret.as_bytes()))
        .env(
            "NOROLE_JWT",
            sign(serde_json::json!({"role": "no_such_role_x", "sub": "7f1d2a3e-0000-4000-8000-0000000000aa"})),
        )
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CONFIG_FILE")
        .output()
        .expect("python3 with boto3 (scripts/setup installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let _ = s.child.wait();
    let log = s.log.lock().unwrap().clone();
    assert!(out.status.success(), "keys check failed:\n{text}\n{log}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
    assert!(!log.contains("panicked"), "{log}");
}
