//! Several doska on one external database agree without being told: started with only
//! `--database-url` (no `--jwt-secret`), they find one JWT secret in the database, so a session made
//! on one is good on the other and `doska keys` prints the same keys from either data dir. A data dir
//! that already kept a secret (an instance that ran before) gives the database its secret, so its
//! old tokens stay valid.

mod common;

use std::path::Path;

use common::{Serving, request};
use serde_json::{Value, json};

fn doska(data: &Path, url: &str) -> std::process::Command {
    let mut c = common::doska(data, &data.join("migrations"), &data.join("no-policies"));
    c.args(["--database-url", url, "--static", ""]);
    c
}

fn serve(data: &Path, url: &str) -> Serving {
    let mut c = doska(data, url);
    c.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--auth-autoconfirm", "true"]);
    common::spawn_serving(c)
}

fn keys(data: &Path, url: Option<&str>) -> Value {
    let mut c = match url {
        Some(url) => doska(data, url),
        None => common::doska(data, &data.join("migrations"), &data.join("no-policies")),
    };
    let out = c.arg("keys").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stop(s: Serving) {
    let mut child = s.child;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_without_a_jwt_secret_share_the_databases() {
    let ext_dir = common::temp_dir("shared-db-pg");
    let (cluster, url) = common::external_cluster(ext_dir).await;

    // A ran alone before, with its own data dir's secret; now it joins the database first.
    let (a_dir, b_dir) = (
        common::temp_dir("shared-db-a"),
        common::temp_dir("shared-db-b"),
    );
    let before = keys(&a_dir, None);
    let (u, d) = (url.clone(), a_dir.clone());
    let a = tokio::task::spawn_blocking(move || serve(&d, &u))
        .await
        .unwrap();
    let (u, d) = (url.clone(), b_dir.clone());
    let b = tokio::task::spawn_blocking(move || serve(&d, &u))
        .await
        .unwrap();

    let anon = before["anon_key"].as_str().unwrap().to_string();
    // Keys carry their issue time; `s3_session_key` has none, so equal keys mean one secret.
    let secret_of = |k: &Value| k["s3_session_key"].as_str().unwrap().to_string();
    let a_secret = secret_of(&before);
    assert_eq!(
        secret_of(&keys(&a_dir, Some(&url))),
        a_secret,
        "A's secret changed"
    );
    assert_eq!(
        secret_of(&keys(&b_dir, Some(&url))),
        a_secret,
        "B has another secret"
    );
    // B made no secret of its own in its data dir: the database's is the one.
    assert!(!b_dir.join("jwt-secret").exists());

    // A session signed up on A works on B.
    let r = request(
        "POST",
        &format!("{}/auth/v1/signup", a.url),
        &[("apikey", &anon), ("content-type", "application/json")],
        json!({"email": "teacher@school.test", "password": "a-long-password-1"}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    let me = request(
        "GET",
        &format!("{}/auth/v1/user", b.url),
        &[("apikey", &anon), ("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["email"], "teacher@school.test");
    // And the anon key A printed before it joined still opens REST on B.
    let rest = request(
        "GET",
        &format!("{}/rest/v1/", b.url),
        &[("apikey", &anon)],
        "",
    )
    .await;
    assert_ne!(rest.status, 401, "{}", rest.text());

    stop(a);
    stop(b);
    // Nothing but doska's admin connection may read the shared secret.
    let client = common::connect(&cluster.config("postgres")).await;
    for role in ["anon", "authenticated", "service_role", "authenticator"] {
        let can: bool = client
            .query_one(
                "select has_table_privilege($1, 'doska.shared_secrets', 'select')",
                &[&role],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!can, "{role} can read the shared secrets");
    }
    drop(client);
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap()
        .unwrap();
}
