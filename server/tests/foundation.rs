//! The foundation against a real PostgreSQL: the request transaction's role and claims, health,
//! metrics, CORS, TLS, app migrations (broken, changed, re-run) and default grants.

mod common;

use common::{TestDb, get, get_with, request};
use doska::{
    config::{DefaultGrants, Settings},
    db::{
        self,
        caller::{RequestInfo, RequestTx},
    },
    jwt::Caller,
};
use serde_json::json;

fn info() -> RequestInfo<'static> {
    RequestInfo {
        method: "GET",
        path: "/rest/v1/x",
        headers: json!({"x-app": "t"}),
        search_path: None,
    }
}

#[tokio::test]
async fn request_tx_runs_as_the_caller_with_claims() {
    let t = TestDb::new().await;
    let caller = Caller {
        role: "authenticated".into(),
        claims: json!({"sub": "7f1d2a3e-0000-4000-8000-000000000001", "role": "authenticated"})
            .into(),
        token: None,
    };
    let tx = RequestTx::begin(t.pool(), &caller, &info(), true, 0)
        .await
        .unwrap();
    let row = tx
        .client()
        .query_one(
            "select current_user::text, auth.uid()::text, auth.role(), current_setting('request.method'),
                    current_setting('request.headers')::jsonb ->> 'x-app', current_setting('transaction_read_only')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "authenticated");
    assert_eq!(
        row.get::<_, String>(1),
        "7f1d2a3e-0000-4000-8000-000000000001"
    );
    assert_eq!(row.get::<_, String>(2), "authenticated");
    assert_eq!(row.get::<_, String>(3), "GET");
    assert_eq!(row.get::<_, String>(4), "t");
    assert_eq!(row.get::<_, String>(5), "on");
    tx.commit().await.unwrap();

    // Settings are transaction-local: the next transaction on the pool starts clean.
    let tx = RequestTx::begin(t.pool(), &Caller::anonymous(), &info(), false, 250)
        .await
        .unwrap();
    let row = tx
        .client()
        .query_one(
            "select current_user::text, auth.uid() is null, current_setting('statement_timeout')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "anon");
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, String>(2), "250ms");
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn request_tx_rejects_unknown_roles_and_discards_unfinished() {
    let t = TestDb::new().await;
    let bad = Caller {
        role: "postgres".into(),
        claims: json!({"role": "postgres"}).into(),
        token: None,
    };
    // authenticator is not a member of postgres: SET ROLE is refused by PostgreSQL itself.
    assert!(
        RequestTx::begin(t.pool(), &bad, &info(), false, 0)
            .await
            .is_err()
    );
    let ghost = Caller {
        role: "no_such_role".into(),
        claims: json!({}).into(),
        token: None,
    };
    assert!(
        RequestTx::begin(t.pool(), &ghost, &info(), false, 0)
            .await
            .is_err()
    );

    let tx = RequestTx::begin(t.pool(), &Caller::anonymous(), &info(), false, 0)
        .await
        .unwrap();
    drop(tx);
    // The dropped transaction's connection was not returned mid-transaction.
    let tx = RequestTx::begin(t.pool(), &Caller::anonymous(), &info(), false, 0)
        .await
        .unwrap();
    let row = tx
        .client()
        .query_one("select current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "anon");
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn health_metrics_request_id_and_unknown_route() {
    let t = TestDb::new().await;
    let url = t.server().await;
    let res = get(&format!("{url}/health")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json(), json!({"status": "ok", "database": "ok"}));
    assert!(res.header("x-request-id").is_some_and(|v| v.len() >= 16));
    let res = get_with(&format!("{url}/health"), &[("x-request-id", "abc-123")]).await;
    assert_eq!(res.header("x-request-id"), Some("abc-123"));
    let res = get_with(&format!("{url}/health"), &[("x-request-id", "bad id\"")]).await;
    assert_ne!(res.header("x-request-id"), Some("bad id\""));

    let res = get(&format!("{url}/nope")).await;
    assert_eq!(res.status, 404);
    assert!(res.json()["message"].is_string());

    let res = get(&format!("{url}/metrics")).await;
    assert_eq!(res.status, 200);
    let text = res.text();
    assert_prometheus_text(&text);
    assert!(
        text.contains("doska_http_requests_total{door=\"health\",status=\"200\"}"),
        "{text}"
    );
    assert!(text.contains(
        "doska_http_request_duration_seconds_bucket{door=\"health\",status=\"200\",le=\"+Inf\"}"
    ));
    assert!(text.contains("doska_http_requests_total{door=\"other\",status=\"404\"} 1"));
}

#[tokio::test]
async fn pool_use_is_in_metrics() {
    let t = TestDb::new().await;
    // Register the gauges as startup does, then scrape.
    let p = t.state.pool.clone();
    t.state.metrics.gauge(
        "doska_db_pool_request_connections",
        "Request pool.",
        move || {
            let s = p.status();
            vec![
                ("state=\"open\"".into(), s.size as f64),
                ("state=\"max\"".into(), s.max_size as f64),
            ]
        },
    );
    let url = t.server().await;
    let text = get(&format!("{url}/metrics")).await.text();
    assert_prometheus_text(&text);
    assert!(
        text.contains("doska_db_pool_request_connections{state=\"max\"} 4"),
        "{text}"
    );
}

/// Every line is a comment or `name{labels} value` with a numeric value.
fn assert_prometheus_text(text: &str) {
    let re = regex::Regex::new(
        r#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? [-+0-9.eEInfa]+$"#,
    )
    .unwrap();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.is_empty() {
            continue;
        }
        assert!(re.is_match(line), "not Prometheus text: {line}");
        let value = line.rsplit(' ').next().unwrap();
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf",
            "bad value in {line}"
        );
    }
}

#[tokio::test]
async fn cors_preflight_and_exposed_headers() {
    let t = TestDb::new().await;
    let url = t.server().await;
    let res = request(
        "OPTIONS",
        &format!("{url}/rest/v1/todos"),
        &[
            ("origin", "http://localhost:5173"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,apikey,content-type,prefer,x-client-info",
            ),
        ],
        "",
    )
    .await;
    assert_eq!(res.status, 204);
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    assert_eq!(
        res.header("access-control-allow-headers"),
        Some("authorization,apikey,content-type,prefer,x-client-info")
    );
    assert!(
        res.header("access-control-allow-methods")
            .unwrap()
            .contains("PATCH")
    );
    let res = get_with(
        &format!("{url}/health"),
        &[("origin", "http://localhost:5173")],
    )
    .await;
    assert!(
        res.header("access-control-expose-headers")
            .unwrap()
            .contains("Content-Range")
    );
}

#[tokio::test]
async fn cors_refuses_origins_not_listed() {
    let t = TestDb::with_settings(Settings {
        cors_origins: Some("https://app.example".into()),
        ..Default::default()
    })
    .await;
    let url = t.server().await;
    let res = request(
        "OPTIONS",
        &format!("{url}/health"),
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "GET"),
        ],
        "",
    )
    .await;
    assert!(res.header("access-control-allow-origin").is_none());
    let res = get_with(
        &format!("{url}/health"),
        &[("origin", "https://app.example")],
    )
    .await;
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );
}

/// Each door's refusal, in its own dialect: a field that must be there and what it must say.
fn door_dialects() -> Vec<(&'static str, &'static str, serde_json::Value)> {
    vec![
        // PostgREST: {code, message, details, hint}.
        ("/rest/v1/x", "code", json!("PGRST413")),
        // GoTrue (legacy shape): {code, error_code, msg}.
        ("/auth/v1/signup", "error_code", json!("validation_failed")),
        // storage-js: {statusCode, error, message}.
        ("/storage/v1/bucket", "error", json!("EntityTooLarge")),
        // Realtime's HTTP side: {message, error, code}.
        (
            "/realtime/v1/api/broadcast",
            "code",
            json!("PayloadTooLarge"),
        ),
    ]
}

#[tokio::test]
async fn declared_oversized_bodies_get_413_in_each_doors_dialect() {
    let t = TestDb::with_settings(Settings {
        body_limits: Some("/rest/v1=10,/auth/v1=10,/storage/v1=10,/realtime/v1=10".into()),
        ..Default::default()
    })
    .await;
    let url = t.server().await;
    for (path, field, want) in door_dialects() {
        let res = request(
            "POST",
            &format!("{url}{path}"),
            &[("content-type", "application/json")],
            "x".repeat(11),
        )
        .await;
        assert_eq!(res.status, 413, "{path}: {}", res.text());
        assert_eq!(res.json()[field], want, "{path}: {}", res.text());
    }
    // Outside every door the foundation answers in its own shape.
    let res = request("POST", &format!("{url}/nowhere"), &[], "x".repeat(11)).await;
    assert!((400..500).contains(&res.status), "{}", res.text());
    assert!(res.json()["message"].is_string(), "{}", res.text());
}

#[tokio::test]
async fn a_panic_inside_a_door_is_answered_in_that_doors_dialect() {
    use doska::http::Door;
    let t = TestDb::new().await;
    let doors = t.doors().await;
    let state = || t.state.clone();
    let cases: Vec<(std::sync::Arc<dyn Door>, &str, serde_json::Value)> = vec![
        (
            std::sync::Arc::new(doska::rest::RestDoor::new(state(), doors.rest.clone())),
            "code",
            json!("PGRSTX00"),
        ),
        (
            std::sync::Arc::new(doska::auth::AuthDoor::new(state(), doors.auth.clone())),
            "error_code",
            json!("unexpected_failure"),
        ),
        (
            std::sync::Arc::new(doska::storage::http::StorageDoor::new(state())),
            "error",
            json!("InternalError"),
        ),
        (
            std::sync::Arc::new(doska::realtime::RealtimeDoor::new(
                state(),
                doors.hub.clone(),
            )),
            "code",
            json!("InternalError"),
        ),
    ];
    for (door, field, want) in cases {
        let router = doska::http::router::Router::new(t.state.clone())
            .mount("/test", std::sync::Arc::new(Panics(door)));
        let url = common::serve_router(std::sync::Arc::new(router), t.state.shutdown.clone()).await;
        let res = get(&format!("{url}/test/x")).await;
        assert_eq!(res.status, 500, "{}", res.text());
        assert_eq!(res.json()[field], want, "{}", res.text());
        assert!(!res.text().contains("handler bug"), "{}", res.text());
    }
}

/// A door whose handler panics and whose refusals are the wrapped real door's.
struct Panics(std::sync::Arc<dyn doska::http::Door>);

impl doska::http::Door for Panics {
    fn handle(
        self: std::sync::Arc<Self>,
        _req: http::Request<hyper::body::Incoming>,
        _ctx: doska::http::RequestContext,
    ) -> doska::http::DoorFuture {
        Box::pin(async { panic!("handler bug") })
    }

    fn reject(
        &self,
        why: &doska::http::Rejection,
        request_id: &str,
    ) -> http::Response<doska::http::Body> {
        self.0.reject(why, request_id)
    }
}

#[tokio::test]
async fn json_is_compressed_when_asked() {
    let t = TestDb::new().await;
    let url = t.server().await;
    for _ in 0..30 {
        get(&format!("{url}/health")).await;
    }
    let res = get_with(&format!("{url}/metrics"), &[("accept-encoding", "gzip")]).await;
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    let res = get_with(&format!("{url}/metrics"), &[("accept-encoding", "br")]).await;
    assert_eq!(res.header("content-encoding"), Some("br"));
    let res = get(&format!("{url}/metrics")).await;
    assert!(res.header("content-encoding").is_none());
}

#[tokio::test]
async fn tls_serves_with_a_self_signed_certificate() {
    let t = TestDb::new().await;
    let dir = common::temp_dir("tls");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let acceptor =
        doska::http::server::tls_acceptor(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(doska::http::server::run(
        listener,
        Some(acceptor),
        t.doors().await.router(&t.state),
        rx,
        std::time::Duration::from_secs(1),
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/health")
        .header("host", "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);

    // A plain-HTTP client gets no HTTP answer from the TLS listener.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        plain.read_to_end(&mut buf),
    )
    .await;
    assert!(!buf.starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn migrations_apply_once_fail_whole_and_refuse_changes() {
    let t = TestDb::new().await;
    let dir = common::temp_dir("mig");
    std::fs::write(
        dir.join("001_a.sql"),
        "create table a (id int primary key);\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("002_b.sql"),
        "create table b (id int);\ninsert into b values (1);\n",
    )
    .unwrap();
    let mut admin = common::connect(&common::cluster().config(&t.name)).await;
    let applied = db::migrate::apply_dir(&mut admin, &dir).await.unwrap();
    assert_eq!(applied, vec!["001_a.sql", "002_b.sql"]);
    assert!(
        db::migrate::apply_dir(&mut admin, &dir)
            .await
            .unwrap()
            .is_empty()
    );

    // A broken file: its first statement must not survive, the error names file and line.
    std::fs::write(
        dir.join("003_broken.sql"),
        "create table c (id int);\n\ninsert into c values (1);\nselec oops;\n",
    )
    .unwrap();
    let err = db::migrate::apply_dir(&mut admin, &dir)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("003_broken.sql") && err.contains("line 4") && err.contains("syntax error"),
        "{err}"
    );
    let c_exists: bool = admin
        .query_one("select to_regclass('public.c') is not null", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!c_exists);
    std::fs::remove_file(dir.join("003_broken.sql")).unwrap();

    // A changed, applied file is refused by name.
    std::fs::write(
        dir.join("001_a.sql"),
        "create table a (id bigint primary key);\n",
    )
    .unwrap();
    let err = db::migrate::apply_dir(&mut admin, &dir)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("001_a.sql") && err.contains("changed"),
        "{err}"
    );
}

/// Supabase runs migrations with `search_path = "$user", public, extensions`: seeds written for it
/// call pgcrypto's and uuid-ossp's functions unqualified, and their tables still land in `public`.
#[tokio::test]
async fn migrations_see_the_extensions_schema() {
    let t = TestDb::new().await;
    let dir = common::temp_dir("mig-ext");
    std::fs::write(
        dir.join("001_seed.sql"),
        "create table seeded (id uuid default uuid_generate_v4(), pw text);
         insert into seeded (pw) values (crypt('password123', gen_salt('bf')));
",
    )
    .unwrap();
    let mut admin = common::connect(&common::cluster().config(&t.name)).await;
    db::migrate::apply_dir(&mut admin, &dir).await.unwrap();
    let row = admin
        .query_one(
            "select id is not null, extensions.crypt('password123', pw) = pw from public.seeded",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1));
    // The setting ended with the migration's transaction.
    let path: String = admin
        .query_one("show search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!path.contains("extensions"), "{path}");
}

#[tokio::test]
async fn default_grants_follow_the_setting() {
    let t = TestDb::new().await;
    let a = t.admin();
    a.batch_execute("create table g1 (id int)").await.unwrap();
    let anon_can: bool = a
        .query_one("select has_table_privilege('anon', 'g1', 'select')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        anon_can,
        "supabase default grants give anon access to new tables"
    );
    let warned = db::grants::tables_without_rls(a, &["public".into()])
        .await
        .unwrap();
    assert_eq!(warned, vec!["public.g1"]);
    a.batch_execute("alter table g1 enable row level security")
        .await
        .unwrap();
    assert!(
        db::grants::tables_without_rls(a, &["public".into()])
            .await
            .unwrap()
            .is_empty()
    );

    db::grants::apply_default_grants(a, DefaultGrants::None, &["public".into()])
        .await
        .unwrap();
    a.batch_execute("create table g2 (id int)").await.unwrap();
    let anon_can: bool = a
        .query_one("select has_table_privilege('anon', 'g2', 'select')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!anon_can);
    // Applying twice is harmless.
    db::grants::apply_default_grants(a, DefaultGrants::Supabase, &["public".into()])
        .await
        .unwrap();
    db::grants::apply_default_grants(a, DefaultGrants::Supabase, &["public".into()])
        .await
        .unwrap();
}

#[tokio::test]
async fn internal_schema_is_supabase_shaped() {
    let t = TestDb::new().await;
    let row = t
        .admin()
        .query_one(
            "select (select count(*) from pg_namespace where nspname in ('auth','storage','realtime','extensions','doska'))::int,
                    (select count(*) from pg_publication where pubname = 'supabase_realtime')::int,
                    (select rolbypassrls from pg_roles where rolname = 'service_role'),
                    pg_has_role('authenticator', 'anon', 'member'),
                    (select rolinherit from pg_roles where rolname = 'authenticator')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 5);
    assert_eq!(row.get::<_, i32>(1), 1);
    assert!(row.get::<_, bool>(2));
    assert!(row.get::<_, bool>(3));
    assert!(
        !row.get::<_, bool>(4),
        "authenticator must not inherit the API roles' rights"
    );
    // Re-applying is a no-op.
    let mut admin = common::connect(&common::cluster().config(&t.name)).await;
    assert!(db::internal::apply(&mut admin).await.unwrap().is_empty());
}

/// A door that panics on `/boom` and answers anything else.
struct Boom;

impl doska::http::Door for Boom {
    fn handle(
        self: std::sync::Arc<Self>,
        _req: http::Request<hyper::body::Incoming>,
        ctx: doska::http::RequestContext,
    ) -> doska::http::DoorFuture {
        Box::pin(async move {
            if ctx.path == "/boom" {
                panic!("handler bug");
            }
            doska::http::json(http::StatusCode::OK, &json!({"fine": true}))
        })
    }
}

#[tokio::test]
async fn a_panicking_handler_becomes_a_logged_500_and_the_server_lives_on() {
    let t = TestDb::new().await;
    let router =
        doska::http::router::Router::new(t.state.clone()).mount("/test", std::sync::Arc::new(Boom));
    let url = common::serve_router(std::sync::Arc::new(router), t.state.shutdown.clone()).await;
    let res = get(&format!("{url}/test/boom")).await;
    assert_eq!(res.status, 500);
    let body = res.json();
    assert_eq!(body["message"], "Internal server error");
    assert_eq!(body["request_id"].as_str(), res.header("x-request-id"));
    let res = get(&format!("{url}/test/fine")).await;
    assert_eq!(res.status, 200);
}

#[tokio::test]
async fn health_is_503_with_the_reason_when_the_database_is_down() {
    let t = TestDb::new().await;
    // The same state, but its pools point at a socket where no PostgreSQL listens.
    let mut gone = tokio_postgres::Config::new();
    gone.host_path(common::temp_dir("no-db"))
        .port(5432)
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(std::time::Duration::from_secs(1));
    let pool = db::pools::pool(gone, 1).unwrap();
    let state = std::sync::Arc::new(doska::state::AppState {
        config: t.state.config.clone(),
        admin: pool.clone(),
        commit_group: db::group::Group::new(pool.clone(), db::group::RUNNING),
        pool,
        verifier: doska::jwt::Verifier::hs256(common::JWT_SECRET.as_bytes()),
        jwt_secret: t.state.jwt_secret.clone(),
        metrics: Default::default(),
        shutdown: t.state.shutdown.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(doska::http::server::run(
        listener,
        None,
        std::sync::Arc::new(doska::http::router::Router::new(state)),
        rx,
        std::time::Duration::from_secs(1),
    ));
    let res = get(&format!("http://{addr}/health")).await;
    assert_eq!(res.status, 503);
    let body = res.json();
    assert_eq!(body["status"], "error");
    assert!(!body["database"].as_str().unwrap().is_empty(), "{body}");
}
