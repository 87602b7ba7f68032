//! The client address behind a proxy: `X-Forwarded-For` counts only from `--trusted-proxies`, which
//! per-IP rate limits (auth's) then key on.

mod common;

use common::{TestDb, request};
use doska::{
    auth::{AuthConfig, password::Argon2Cost, ratelimit::Rate},
    config::Settings,
};

async fn sign_in_as(url: &str, anon: &str, forwarded: &str) -> u16 {
    request(
        "POST",
        &format!("{url}/auth/v1/token?grant_type=password"),
        &[
            ("apikey", anon),
            ("content-type", "application/json"),
            ("x-forwarded-for", forwarded),
        ],
        r#"{"email":"nobody@school.test","password":"wrong-password"}"#,
    )
    .await
    .status
}

async fn server(trusted: Option<&str>) -> (TestDb, String, String) {
    let db = TestDb::with_settings(Settings {
        trusted_proxies: trusted.map(str::to_string),
        ..Default::default()
    })
    .await;
    let mut cfg = AuthConfig {
        argon2: Argon2Cost {
            m_kib: 1024,
            t: 1,
            p: 1,
        },
        ..AuthConfig::default()
    };
    cfg.rate_limits.enabled = true;
    cfg.rate_limits.sign_in = Rate::new(1, 60);
    cfg.rate_limits.sign_in_account = Rate::new(100, 60);
    let url = db.serve(&db.doors_with_auth(cfg).await).await;
    let anon = db.sign(serde_json::json!({"role": "anon"}));
    (db, url, anon)
}

#[tokio::test]
async fn forwarded_clients_get_their_own_buckets_only_behind_a_trusted_proxy() {
    // The test client connects from 127.0.0.1: the trusted proxy.
    let (_db, url, anon) = server(Some("127.0.0.1, 10.0.0.0/8")).await;
    assert_eq!(sign_in_as(&url, &anon, "198.51.100.7").await, 400);
    assert_eq!(sign_in_as(&url, &anon, "198.51.100.7").await, 429);
    // Another client behind the same proxy has a bucket of its own...
    assert_eq!(sign_in_as(&url, &anon, "198.51.100.8").await, 400);
    // ...and cannot borrow one by prepending a made-up address.
    assert_eq!(
        sign_in_as(&url, &anon, "1.1.1.1, 198.51.100.8, 10.0.0.3").await,
        429
    );
}

#[tokio::test]
async fn without_trusted_proxies_the_header_is_ignored() {
    let (_db, url, anon) = server(None).await;
    assert_eq!(sign_in_as(&url, &anon, "198.51.100.7").await, 400);
    // A different forwarded address does not escape the socket's bucket.
    assert_eq!(sign_in_as(&url, &anon, "198.51.100.8").await, 429);
}

async fn password_sign_in(
    url: &str,
    anon: &str,
    from: &str,
    email: &str,
    pw: &str,
) -> (u16, String, Option<String>) {
    let r = request(
        "POST",
        &format!("{url}/auth/v1/token?grant_type=password"),
        &[
            ("apikey", anon),
            ("content-type", "application/json"),
            ("x-forwarded-for", from),
        ],
        serde_json::json!({"email": email, "password": pw}).to_string(),
    )
    .await;
    (
        r.status,
        r.text(),
        r.header("retry-after").map(str::to_string),
    )
}

/// The lockout issue #12 found: ten wrong passwords for a teacher's e-mail from one address used to
/// make her right password answer 429 from every address. Failures now count per (address, e-mail),
/// with the default limits; a per-e-mail backstop never holds back an address that has not failed.
#[tokio::test]
async fn wrong_passwords_from_one_address_do_not_lock_the_account_elsewhere() {
    let db = TestDb::with_settings(Settings {
        trusted_proxies: Some("127.0.0.1".into()),
        ..Default::default()
    })
    .await;
    let cfg = AuthConfig {
        argon2: Argon2Cost {
            m_kib: 1024,
            t: 1,
            p: 1,
        },
        ..AuthConfig::default()
    };
    assert!(cfg.rate_limits.enabled);
    let url = db.serve(&db.doors_with_auth(cfg).await).await;
    let anon = db.sign(serde_json::json!({"role": "anon"}));
    let r = request(
        "POST",
        &format!("{url}/auth/v1/signup"),
        &[
            ("apikey", &anon),
            ("content-type", "application/json"),
            ("x-forwarded-for", "203.0.113.5"),
        ],
        r#"{"email":"teacher@school.test","password":"right-password-1"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let attacker = "198.51.100.66";
    // The e-mail in other spellings is the same account: normalized once, so it shares the count.
    for (i, spelling) in [
        " Teacher@School.test ",
        "TEACHER@school.test",
        "teacher@school.test",
    ]
    .iter()
    .cycle()
    .take(10)
    .enumerate()
    {
        let (status, body, _) = password_sign_in(&url, &anon, attacker, spelling, "guess").await;
        assert_eq!(status, 400, "attempt {i}: {body}");
    }
    let (status, body, retry) =
        password_sign_in(&url, &anon, attacker, "teacher@school.test", "guess").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("over_request_rate_limit"), "{body}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    // Even the right password from the attacker's address waits.
    let (status, _, _) = password_sign_in(
        &url,
        &anon,
        attacker,
        "teacher@school.test",
        "right-password-1",
    )
    .await;
    assert_eq!(status, 429);

    // The teacher, from her own address, signs in.
    let (status, body, _) = password_sign_in(
        &url,
        &anon,
        "203.0.113.5",
        "Teacher@School.test",
        "right-password-1",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The attacker's address is still free for another account.
    let (status, _, _) =
        password_sign_in(&url, &anon, attacker, "other@school.test", "guess").await;
    assert_eq!(status, 400);
}
