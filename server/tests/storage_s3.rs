//! The S3 front door as operators and clients meet it: `doska serve` with an S3 key pair opens the S3
//! listener (plain, then TLS with a self-signed certificate), and boto3 with its default configuration
//! runs `tests/s3/boto3_suite.py` against it — over TLS that includes aws-chunked uploads with trailing
//! checksums. SIGTERM stops both listeners.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
};

const KEY: &str = "DOSKATESTKEY";
const SECRET: &str = "doska-test-secret-access-key";

struct Serving {
    child: Child,
    s3_url: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

fn serve(data: &Path, extra: &[&str]) -> Serving {
    let mut serve = common::doska(data, &migrations(data), &data.join("no-policies"));
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--s3-listen", "127.0.0.1:0"])
        .args(["--s3-access-key-id", KEY, "--s3-secret-access-key", SECRET])
        .args(extra);
    let common::Serving {
        child,
        started,
        log,
        ..
    } = common::spawn_serving(serve);
    // The S3 listener logs its URL before the main one's "listening" line.
    let s3_url = started
        .iter()
        .rev()
        .find_map(|v| v["fields"]["s3_url"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("doska did not start S3: {}", log.lock().unwrap()));
    Serving { child, s3_url, log }
}

/// A bucket where each user may write and read only under their own id.
fn migrations(data: &Path) -> PathBuf {
    let dir = data.join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("0001_userkeys.sql"),
        "insert into storage.buckets (id, name) values ('userkeys', 'userkeys');
         create policy own_folder on storage.objects for all to authenticated
           using (bucket_id = 'userkeys' and (storage.foldername(name))[1] = auth.uid()::text)
           with check (bucket_id = 'userkeys' and (storage.foldername(name))[1] = auth.uid()::text);",
    )
    .unwrap();
    dir
}

/// `doska s3-keys …` against the running serve's database.
fn s3_keys(data: &Path, args: &[&str]) -> String {
    let out = common::doska(data, &migrations(data), &data.join("no-policies"))
        .arg("s3-keys")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn user_key_check(s3_url: &str, key: &serde_json::Value, user: &str, expect: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/s3/user_key_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("S3_URL", s3_url)
        .env("S3_KEY", key["access_key_id"].as_str().unwrap())
        .env("S3_SECRET", key["secret_access_key"].as_str().unwrap())
        .env("S3_USER", user)
        .env("S3_OPERATOR_KEY", KEY)
        .env("S3_OPERATOR_SECRET", SECRET)
        .env("S3_EXPECT", expect)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A user's JWT as the S3 session token, signed with the S3 session key `doska keys` prints.
fn session_token_check(data: &Path, s3_url: &str, user: &str) {
    let keys: serde_json::Value = serde_json::from_str(&{
        let out = common::doska(data, &migrations(data), &data.join("no-policies"))
            .arg("keys")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    })
    .unwrap();
    let secret = doska::secret::load_or_create(None, data).unwrap();
    let now = chrono::Utc::now().timestamp();
    let user_claims = |exp: i64| serde_json::json!({"sub": user, "role": "authenticated", "aud": "authenticated", "exp": exp});
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/s3/session_token_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("S3_URL", s3_url)
        .env("S3_SESSION_KEY", keys["s3_session_key"].as_str().unwrap())
        .env("S3_USER", user)
        .env(
            "S3_USER_JWT",
            doska::jwt::sign(secret.as_bytes(), &user_claims(now + 600)),
        )
        .env(
            "S3_EXPIRED_JWT",
            doska::jwt::sign(secret.as_bytes(), &user_claims(now - 600)),
        )
        .env(
            "S3_FORGED_JWT",
            doska::jwt::sign(
                b"another-secret-another-secret-32b",
                &user_claims(now + 600),
            ),
        )
        .env("S3_OPERATOR_KEY", KEY)
        .env("S3_OPERATOR_SECRET", SECRET)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
}

fn stop(mut s: Serving) {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let status = s.child.wait().unwrap();
    assert!(
        status.success(),
        "doska exit: {status}\n{}",
        s.log.lock().unwrap()
    );
}

fn boto3(data: &Path, s3_url: &str, verify: Option<&Path>) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/s3/boto3_suite.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .env("S3_URL", s3_url)
        .env("S3_KEY", KEY)
        .env("S3_SECRET", SECRET)
        .env("S3_STORAGE_DIR", data.join("storage"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CONFIG_FILE");
    if let Some(v) = verify {
        cmd.env("S3_VERIFY", v);
    }
    let out = cmd
        .output()
        .expect("python3 with boto3 (scripts/setup installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "boto3 suite failed:\n{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
}

#[test]
fn boto3_against_the_s3_listener_plain_and_tls() {
    let data = common::temp_dir("s3");
    let s = serve(&data, &[]);
    assert!(s.s3_url.starts_with("http://"), "{}", s.s3_url);
    boto3(&data, &s.s3_url, None);
    // Keys made with `doska s3-keys`: bound to a user they act under that user's policies.
    let user = "7f1d2a3e-0000-4000-8000-0000000000aa";
    let key: serde_json::Value =
        serde_json::from_str(&s3_keys(&data, &["create", "--user", user])).unwrap();
    assert!(s3_keys(&data, &["list"]).contains(key["access_key_id"].as_str().unwrap()));
    assert!(!s3_keys(&data, &["list"]).contains(key["secret_access_key"].as_str().unwrap()));
    user_key_check(&s.s3_url, &key, user, "active");
    s3_keys(&data, &["revoke", key["access_key_id"].as_str().unwrap()]);
    user_key_check(&s.s3_url, &key, user, "revoked");
    session_token_check(&data, &s.s3_url, user);
    stop(s);

    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = (data.join("cert.pem"), data.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let s = serve(
        &data,
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    assert!(s.s3_url.starts_with("https://"), "{}", s.s3_url);
    // The certificate names localhost; boto3 checks the host name.
    let url = s.s3_url.replace("127.0.0.1", "localhost");
    boto3(&data, &url, Some(&cert_path));
    stop(s);
}
