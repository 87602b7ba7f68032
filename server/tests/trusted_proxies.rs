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
