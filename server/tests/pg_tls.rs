//! doska on a PostgreSQL that requires TLS, as managed ones do. The server (started here with a
//! certificate made by openssl here) refuses every connection without TLS; with `sslmode=verify-full`
//! and its CA as `sslrootcert`, doska's pools and its replication stream both connect over TLS, and
//! a change written over REST reaches a realtime subscriber. A certificate that does not name the
//! host, or one from another CA, is refused at start with a message naming the host; `verify-ca`
//! checks the chain only.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{manual_pg::ManualPostgres, phx::Phx, request};
use serde_json::json;

const SECRET: &str = "pg-tls-secret-0123456789-0123456789-0123456789";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a server certificate it signed for `localhost` only.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

fn make_server_cert(dir: &Path) {
    make_ca(dir, "test-ca");
    make_ca(dir, "other-ca");
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "test-ca.pem",
            "-CAkey",
            "test-ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn doska(data: &Path, url: &str) -> Command {
    let mut c = common::doska(data, &data.join("migrations"), &data.join("no-policies"));
    c.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args([
            "--jwt-secret",
            SECRET,
            "--static",
            "",
            "--database-url",
            url,
        ]);
    c
}

fn data_dir(tag: &str) -> PathBuf {
    let data = common::temp_dir(tag);
    std::fs::create_dir_all(data.join("migrations")).unwrap();
    std::fs::write(
        data.join("migrations/0001_items.sql"),
        "create table public.items (id bigint primary key);
         alter publication supabase_realtime add table public.items;",
    )
    .unwrap();
    data
}

/// `doska serve` must refuse to start; returns what it said.
fn refused(tag: &str, url: &str) -> String {
    let out = doska(&data_dir(tag), url).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started with {url}: {err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doska_speaks_tls_to_a_postgresql_that_requires_it_and_checks_its_certificate() {
    let certs = common::temp_dir("pg-tls-certs");
    make_server_cert(&certs);
    common::manual_pg::give_to_postgres(&certs);
    std::fs::set_permissions(
        certs.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let port = free_port();
    let (cert, key) = (certs.join("server.pem"), certs.join("server.key"));
    let port_s = port.to_string();
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let pg = tokio::task::spawn_blocking(move || {
        ManualPostgres::start(
            "pg-tls",
            &[
                ("listen_addresses", "127.0.0.1"),
                ("port", &port_s),
                ("wal_level", "logical"),
                ("ssl", "on"),
                ("ssl_cert_file", &cert_s),
                ("ssl_key_file", &key_s),
            ],
            Some(
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 scram-sha-256\n\
                 hostnossl all all 0.0.0.0/0 reject\n",
            ),
        )
    })
    .await
    .unwrap();
    let mut socket = tokio_postgres::Config::new();
    socket
        .host_path(&pg.socket)
        .port(port)
        .user("postgres")
        .dbname("postgres");
    let admin = common::connect(&socket).await;
    admin
        .batch_execute("alter user postgres password 'tls-test-pw'")
        .await
        .unwrap();
    let ca = certs.join("test-ca.pem");
    let url = |host: &str, mode: &str, ca: &Path| {
        format!(
            "postgres://postgres:tls-test-pw@{host}:{port}/postgres?sslmode={mode}&sslrootcert={}",
            ca.display()
        )
    };

    // Without TLS the server refuses doska outright.
    let plain = refused(
        "pg-tls-plain",
        &format!("postgres://postgres:tls-test-pw@localhost:{port}/postgres?sslmode=disable"),
    );
    assert!(
        plain.contains("pg_hba.conf") || plain.contains("no encryption"),
        "{plain}"
    );
    // The certificate names localhost, not 127.0.0.1: verify-full refuses, naming the host.
    let wrong_name = refused("pg-tls-name", &url("127.0.0.1", "verify-full", &ca));
    assert!(wrong_name.contains("127.0.0.1"), "{wrong_name}");
    assert!(
        wrong_name.to_lowercase().contains("certificate"),
        "{wrong_name}"
    );
    // Another CA: refused too.
    let other = refused(
        "pg-tls-ca",
        &url("localhost", "verify-full", &certs.join("other-ca.pem")),
    );
    assert!(other.contains("localhost"), "{other}");
    assert!(other.to_lowercase().contains("certificate"), "{other}");

    // verify-full with the right CA and host: serves, streams realtime over TLS.
    let data = data_dir("pg-tls-ok");
    let full = url("localhost", "verify-full", &ca);
    let serving = tokio::task::spawn_blocking(move || common::spawn_serving(doska(&data, &full)))
        .await
        .unwrap();
    for _ in 0..600 {
        if serving
            .log
            .lock()
            .unwrap()
            .contains("streaming changes from the replication slot")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let key = doska::jwt::sign(SECRET.as_bytes(), &json!({"role": "service_role"}));
    let mut phx = Phx::connect(&serving.url, &key).await.unwrap();
    let config =
        json!({"postgres_changes": [{"event": "INSERT", "schema": "public", "table": "items"}]});
    let reply = phx.join("items", config, None).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let auth = format!("Bearer {key}");
    let r = request(
        "POST",
        &format!("{}/rest/v1/items", serving.url),
        &[
            ("apikey", &key),
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        r#"{"id": 7}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let mut got = None;
    while let Some(m) = phx.next(Duration::from_secs(20)).await {
        if m.event == "postgres_changes" {
            got = Some(m.payload);
            break;
        }
    }
    let got = got.unwrap_or_else(|| panic!("no change arrived: {}", serving.log.lock().unwrap()));
    assert_eq!(got["data"]["record"]["id"], 7, "{got}");

    // Every doska connection, the replication stream's included, is encrypted.
    let rows = admin
        .query(
            "select a.application_name, s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid)
             where a.application_name like 'doska%'",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(seen.iter().any(|(a, _)| a == "doska_realtime"), "{seen:?}");
    assert!(seen.iter().all(|(_, ssl)| *ssl), "{seen:?}");
    let mut child = serving.child;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());

    // verify-ca checks the chain only: 127.0.0.1 is accepted with the right CA.
    let data = data_dir("pg-tls-ca-only");
    let ca_only = url("127.0.0.1", "verify-ca", &ca);
    let serving =
        tokio::task::spawn_blocking(move || common::spawn_serving(doska(&data, &ca_only)))
            .await
            .unwrap();
    let health = common::get(&format!("{}/health", serving.url)).await;
    assert_eq!(health.status, 200, "{}", health.text());
    let mut child = serving.child;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    drop(admin);
    drop(pg);
}
