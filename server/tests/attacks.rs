//! The standing attack table (issue #12): one row per attack, sent byte for byte over TCP to a live
//! doska (REST, auth, storage and static files on one port) with canary data in place — a secret
//! row under RLS, a private storage object, a file beside the static root. Each row states the status
//! and the front door's error dialect it must get, and every answer is checked for the canaries.
//! Positive controls first prove the canaries are there to be leaked (service_role reads them).

mod common;

use common::TestDb;
use doska::{
    config::Settings,
    storage::{
        self,
        core::{Actor, PutSpec},
        disk,
    },
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VAULT_CANARY: &str = "CANARY-vault-5d1e9c";
const OBJECT_CANARY: &str = "CANARY-object-77ab02";
const FILE_CANARY: &str = "CANARY-file-0c44f1";
const CANARIES: [&str; 3] = [VAULT_CANARY, OBJECT_CANARY, FILE_CANARY];
const OWNER: &str = "11111111-2222-4333-8444-555555555555";

const SCHEMA: &str = "
create table public.vault (id int primary key, owner uuid not null, secret text not null);
alter table public.vault enable row level security;
create policy vault_own on public.vault using (owner = auth.uid()) with check (owner = auth.uid());
insert into public.vault values (1, '11111111-2222-4333-8444-555555555555', 'CANARY-vault-5d1e9c');
create table public.notes (id int primary key, body text);
insert into public.notes values (1, 'hello');
create function public.echo(msg text) returns text language sql as $$ select msg $$;
insert into storage.buckets (id, name, public) values ('pub', 'pub', true), ('private', 'private', false);
";

/// The front door's error dialect a row must be answered in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dialect {
    /// PostgREST: `{code, message, details, hint}`.
    Rest,
    /// GoTrue: `{code, error_code, msg}`.
    Auth,
    /// Supabase storage: `{statusCode, error, message}`, `statusCode` equal to the status.
    Storage,
    /// Refused by the HTTP layer before any door (a bare status from the server).
    Http,
    /// Anything: a static-file answer, or a success whose body only must not leak.
    Any,
}

struct Attack {
    name: String,
    request: Vec<u8>,
    /// Acceptable statuses (most rows name one).
    status: Vec<u16>,
    dialect: Dialect,
}

fn row(name: impl Into<String>, request: Vec<u8>, status: u16, dialect: Dialect) -> Attack {
    Attack {
        name: name.into(),
        request,
        status: vec![status],
        dialect,
    }
}

/// A request as bytes: the target exactly as given, `Host` and `Connection: close` added, and a
/// `Content-Length` when there is a body.
fn req(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut s = format!("{method} {target} HTTP/1.1\r\nHost: doska.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        s.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    s.push_str("\r\n");
    s.push_str(body);
    s.into_bytes()
}

struct Answer {
    status: u16,
    /// Every byte that came back (all responses, if the server answered more than one).
    text: String,
    body: String,
}

async fn send(addr: &str, bytes: &[u8]) -> Answer {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything (oversized requests): a failed
    // write is part of the answer, not of the test.
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Answer { status, text, body }
}

/// The body's JSON (a chunked body is de-chunked crudely: the JSON object or array in it).
fn json_of(body: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str(body) {
        return Some(v);
    }
    let start = body.find(['{', '['])?;
    let end = body.rfind(['}', ']'])?;
    serde_json::from_str(&body[start..=end]).ok()
}

fn check_dialect(a: &Attack, ans: &Answer) {
    let name = &a.name;
    let v =
        || json_of(&ans.body).unwrap_or_else(|| panic!("{name}: body is not JSON: {}", ans.text));
    match a.dialect {
        Dialect::Rest => {
            let v = v();
            assert!(
                v.get("code").is_some() && v.get("message").is_some(),
                "{name}: not PostgREST's error shape: {v}"
            );
        }
        Dialect::Auth => {
            let v = v();
            assert!(
                v.get("error_code").is_some()
                    && (v.get("msg").is_some() || v.get("message").is_some()),
                "{name}: not GoTrue's error shape: {v}"
            );
        }
        Dialect::Storage => {
            let v = v();
            assert_eq!(
                v["statusCode"],
                ans.status.to_string(),
                "{name}: not storage's error shape: {v}"
            );
            assert!(
                v["error"].is_string() && v["message"].is_string(),
                "{name}: {v}"
            );
        }
        Dialect::Http | Dialect::Any => {}
    }
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn hs(secret: &[u8], header: Header, claims: Value) -> String {
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
}

struct Site {
    db: TestDb,
    addr: String,
}

async fn site() -> Site {
    let tmp = common::temp_dir("attacks");
    let www = tmp.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "<!doctype html><p>app</p>").unwrap();
    std::fs::write(tmp.join("secret.txt"), FILE_CANARY).unwrap();
    let db = TestDb::with_settings(Settings {
        static_dir: Some(www),
        ..Default::default()
    })
    .await;
    db.admin().batch_execute(SCHEMA).await.expect("schema");
    let core = storage::core_of(&db.state);
    let svc = Actor::service("PUT", "/");
    let put = |bucket: &str, key: &str| PutSpec {
        bucket: bucket.into(),
        key: key.into(),
        upsert: true,
        content_type: "text/plain".into(),
        cache_control: None,
        user_metadata: None,
        declared_len: None,
        extra: None,
    };
    core.put(
        &svc,
        &put("private", "canary.txt"),
        disk::once(bytes::Bytes::from_static(OBJECT_CANARY.as_bytes())),
    )
    .await
    .unwrap();
    core.put(
        &svc,
        &put("pub", "hello.txt"),
        disk::once(bytes::Bytes::from_static(b"public hello")),
    )
    .await
    .unwrap();
    let url = db.server().await;
    let addr = url.trim_start_matches("http://").to_string();
    Site { db, addr }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_attack_table() {
    let s = site().await;
    let secret = common::JWT_SECRET.as_bytes();
    let anon = s.db.sign(json!({"role": "anon"}));
    let service = s.db.sign(json!({"role": "service_role"}));
    let bearer = |t: &str| format!("Bearer {t}");
    let now = chrono::Utc::now().timestamp();

    // Positive controls: the canaries exist and the right caller reads them, so a leak would show.
    let svc_auth = bearer(&service);
    let owner = s.db.sign(json!({"role": "authenticated", "sub": OWNER}));
    let owner_auth = bearer(&owner);
    for (what, request, canary) in [
        (
            "service_role reads the vault",
            req(
                "GET",
                "/rest/v1/vault?select=secret",
                &[("authorization", &svc_auth)],
                "",
            ),
            VAULT_CANARY,
        ),
        (
            "the owner reads her row",
            req(
                "GET",
                "/rest/v1/vault?select=secret",
                &[("authorization", &owner_auth)],
                "",
            ),
            VAULT_CANARY,
        ),
        (
            "service_role downloads the private object",
            req(
                "GET",
                "/storage/v1/object/private/canary.txt",
                &[("authorization", &svc_auth)],
                "",
            ),
            OBJECT_CANARY,
        ),
    ] {
        let a = send(&s.addr, &request).await;
        assert_eq!(a.status, 200, "{what}: {}", a.text);
        assert!(a.text.contains(canary), "{what}: {}", a.text);
    }

    let mut rows: Vec<Attack> = Vec::new();
    let vault = "/rest/v1/vault?select=id,secret";

    // --- JWT forgeries, each at the REST door reading the vault ---
    let forged = |name: &str, token: String, status: u16| {
        row(
            format!("jwt: {name}"),
            req("GET", vault, &[("authorization", &bearer(&token))], ""),
            status,
            Dialect::Rest,
        )
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&json!({"role": "service_role"}))
    );
    rows.push(forged("alg none", none, 401));
    let none_upper = format!(
        "{}.{}.",
        b64(&json!({"alg": "NONE", "typ": "JWT"})),
        b64(&json!({"role": "service_role"}))
    );
    rows.push(forged("alg NONE", none_upper, 401));
    rows.push(forged(
        "wrong key",
        hs(
            b"not-the-secret-not-the-secret-xx",
            Header::new(Algorithm::HS256),
            json!({"role": "service_role"}),
        ),
        401,
    ));
    rows.push(forged(
        "HS512 with the right secret (algorithm not configured)",
        hs(
            secret,
            Header::new(Algorithm::HS512),
            json!({"role": "service_role"}),
        ),
        401,
    ));
    // Algorithm confusion: an RS256 header over an HMAC signature made with the secret.
    let hs_sig = hs(
        secret,
        Header::new(Algorithm::HS256),
        json!({"role": "service_role"}),
    );
    let sig = hs_sig.rsplit('.').next().unwrap();
    let rs_header = format!(
        "{}.{}.{sig}",
        b64(&json!({"alg": "RS256", "typ": "JWT"})),
        b64(&json!({"role": "service_role"}))
    );
    rows.push(forged("RS256 header, HMAC signature", rs_header, 401));
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("../../../../dev/null".into());
    rows.push(forged(
        "kid path traversal, signed with an empty key",
        hs(b"", h, json!({"role": "service_role"})),
        401,
    ));
    let mut h = Header::new(Algorithm::HS256);
    h.jku = Some("http://evil.example/jwks.json".into());
    rows.push(forged(
        "jku pointing at the attacker's keys",
        hs(
            b"attacker-key-attacker-key-attack",
            h,
            json!({"role": "service_role"}),
        ),
        401,
    ));
    let jwk_header = format!(
        "{}.{}.",
        b64(&json!({"alg": "HS256", "typ": "JWT",
                    "jwk": {"kty": "oct", "k": "YXR0YWNrZXI"}})),
        b64(&json!({"role": "service_role"}))
    );
    let jwk_token = {
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"attacker").unwrap();
        m.update(jwk_header.trim_end_matches('.').as_bytes());
        use base64::Engine;
        format!(
            "{jwk_header}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
        )
    };
    rows.push(forged(
        "embedded jwk with the attacker's key",
        jwk_token,
        401,
    ));
    rows.push(forged(
        "expired",
        s.db.sign(json!({"role": "service_role", "exp": now - 3600})),
        401,
    ));
    rows.push(forged(
        "nbf in the future",
        s.db.sign(json!({"role": "service_role", "nbf": now + 3600})),
        401,
    ));
    rows.push(forged(
        "iat a year ahead",
        s.db.sign(json!({"role": "service_role", "iat": now + 365 * 24 * 3600})),
        401,
    ));
    rows.push(forged(
        "tampered claims",
        {
            let t = s.db.sign(json!({"role": "anon"}));
            let p: Vec<&str> = t.split('.').collect();
            format!(
                "{}.{}.{}",
                p[0],
                b64(&json!({"role": "service_role"})),
                p[2]
            )
        },
        401,
    ));
    rows.push(forged(
        "role that does not exist",
        s.db.sign(json!({"role": "no_such_role_x"})),
        400,
    ));
    rows.push(forged("garbage", "a.b.c".into(), 401));
    rows.push(forged(
        "huge forged token (100 KiB)",
        hs(
            b"not-the-secret-not-the-secret-xx",
            Header::new(Algorithm::HS256),
            json!({"role": "service_role", "pad": "x".repeat(100 * 1024)}),
        ),
        401,
    ));
    // Past the server's header limit even when genuine: refused before any door.
    let huge =
        s.db.sign(json!({"role": "service_role", "pad": "x".repeat(512 * 1024)}));
    rows.push(row(
        "jwt: huge token (512 KiB header)",
        req("GET", vault, &[("authorization", &bearer(&huge))], ""),
        431,
        Dialect::Http,
    ));

    // --- The same forgeries at the other doors: auth and storage answer in their dialects ---
    let expired =
        s.db.sign(json!({"role": "service_role", "exp": now - 3600}));
    let future_iat =
        s.db.sign(json!({"role": "service_role", "iat": now + 365 * 24 * 3600}));
    for (name, token) in [("expired", &expired), ("iat a year ahead", &future_iat)] {
        rows.push(row(
            format!("auth admin with a token {name}"),
            req(
                "GET",
                "/auth/v1/admin/users",
                &[("authorization", &bearer(token)), ("apikey", &anon)],
                "",
            ),
            401,
            Dialect::Auth,
        ));
        rows.push(row(
            format!("storage with a token {name}"),
            req(
                "GET",
                "/storage/v1/object/private/canary.txt",
                &[("authorization", &bearer(token))],
                "",
            ),
            400,
            Dialect::Storage,
        ));
    }
    let no_role = s.db.sign(json!({"role": "no_such_role_x"}));
    for (method, target) in [
        ("GET", "/storage/v1/bucket"),
        ("GET", "/storage/v1/object/private/canary.txt"),
        ("GET", "/storage/v1/object/info/private/canary.txt"),
        ("POST", "/storage/v1/object/list/private"),
    ] {
        rows.push(row(
            format!("storage: {method} {target} with a role that does not exist"),
            req(
                method,
                target,
                &[
                    ("authorization", &bearer(&no_role)),
                    ("content-type", "application/json"),
                ],
                if method == "POST" {
                    r#"{"prefix":""}"#
                } else {
                    ""
                },
            ),
            400,
            Dialect::Storage,
        ));
    }

    // --- SQL injection through each REST surface, as anon ---
    let inj = |name: &str,
               method: &str,
               target: &str,
               headers: &[(&str, &str)],
               body: &str,
               status: u16| {
        let mut h: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        row(
            format!("sqli: {name}"),
            req(method, target, &h, body),
            status,
            Dialect::Rest,
        )
    };
    // Filter values are bind parameters: they match nothing.
    for (name, target) in [
        (
            "filter value",
            "/rest/v1/vault?select=secret&secret=eq.x'%20or%20'1'='1",
        ),
        (
            "filter value with a comment",
            "/rest/v1/vault?select=secret&id=eq.1;--",
        ),
        (
            "in list",
            "/rest/v1/vault?select=secret&secret=in.(x')%20or%20true%20or%20('y)",
        ),
        ("like pattern", "/rest/v1/vault?select=secret&secret=like.*"),
        (
            "or tree values",
            "/rest/v1/vault?select=secret&or=(id.eq.1,secret.eq.x')or(true)--)",
        ),
        (
            "and tree nested",
            "/rest/v1/vault?select=secret&and=(or(id.eq.1,id.eq.2),secret.neq.x)",
        ),
    ] {
        let mut r = inj(name, "GET", target, &[], "", 200);
        r.dialect = Dialect::Any;
        // Either nothing (RLS hides the row, the value matches nothing) or a grammar error.
        r.status = vec![200, 400];
        rows.push(r);
    }
    for (name, target) in [
        ("column name", "/rest/v1/vault?select=secret)from%20vault--"),
        (
            "column name in a filter",
            "/rest/v1/vault?secret)%20or%20(1=1=eq.x",
        ),
        (
            "quoted column name",
            "/rest/v1/vault?select=%22secret%22%22%20from%20vault--%22",
        ),
        ("order by", "/rest/v1/vault?order=secret;select%201"),
        ("or tree column", "/rest/v1/vault?or=(id)or(true.eq.1)"),
        ("cast", "/rest/v1/notes?select=body::text);select(1"),
        ("embed name", "/rest/v1/notes?select=*,vault(*);--(*)"),
    ] {
        let mut r = inj(name, "GET", target, &[], "", 400);
        r.status = vec![400, 404];
        rows.push(r);
    }
    rows.push(inj(
        "on_conflict",
        "POST",
        "/rest/v1/notes?on_conflict=id);drop%20table%20vault;--",
        &[("prefer", "resolution=merge-duplicates")],
        r#"{"id":1,"body":"x"}"#,
        400,
    ));
    rows.push(inj(
        "columns parameter",
        "POST",
        "/rest/v1/notes?columns=id,body)values(1,(select%20secret%20from%20vault))--",
        &[],
        r#"{"id":9,"body":"x"}"#,
        400,
    ));
    rows.push(inj(
        "JSON key as a column",
        "POST",
        "/rest/v1/notes",
        &[],
        r#"{"id":5,"body) values (6,(select secret from vault))--":"x"}"#,
        400,
    ));
    rows.push(inj(
        "RPC argument name",
        "POST",
        "/rest/v1/rpc/echo",
        &[],
        r#"{"msg) || (select secret from vault) || (":"x"}"#,
        404,
    ));
    rows.push(inj(
        "RPC name",
        "POST",
        "/rest/v1/rpc/echo(msg)%3Bselect%20secret%20from%20vault--",
        &[],
        r#"{"msg":"x"}"#,
        404,
    ));
    rows.push(inj(
        "RPC argument in the query string",
        "GET",
        "/rest/v1/rpc/echo?msg=x')%20||%20(select%20secret%20from%20vault)%20||%20('",
        &[],
        "",
        200,
    ));
    rows.push(inj(
        "Accept-Profile",
        "GET",
        "/rest/v1/vault?select=secret",
        &[("accept-profile", "public\"; select secret from vault; --")],
        "",
        406,
    ));
    rows.push(inj(
        "Content-Profile",
        "POST",
        "/rest/v1/notes",
        &[("content-profile", "public\".notes; drop table vault; --")],
        r#"{"id":7,"body":"x"}"#,
        406,
    ));
    rows.push(inj(
        "Prefer header",
        "GET",
        "/rest/v1/vault?select=secret",
        &[("prefer", "count=exact; select secret from vault")],
        "",
        200,
    ));
    rows.last_mut().unwrap().dialect = Dialect::Any;
    rows.iter_mut()
        .filter(|r| r.name == "sqli: RPC argument in the query string")
        .for_each(|r| r.dialect = Dialect::Any);

    // --- Traversal: storage paths and static files ---
    for target in [
        "/storage/v1/object/public/pub/../private/canary.txt",
        "/storage/v1/object/public/pub/..%2F..%2Fprivate%2Fcanary.txt",
        "/storage/v1/object/public/pub/%2E%2E/private/canary.txt",
        "/storage/v1/object/public/private/canary.txt",
        "/storage/v1/object/public/pub%2F..%2Fprivate/canary.txt",
        "/storage/v1/object/private/canary.txt",
        "/storage/v1/object/authenticated/private/canary.txt",
        "/storage/v1/object/info/private/canary.txt",
    ] {
        let mut r = row(
            format!("traversal: {target}"),
            req("GET", target, &[], ""),
            404,
            Dialect::Storage,
        );
        // A bucket id with a slash in it is no bucket id.
        r.status = vec![400, 404];
        rows.push(r);
    }
    for target in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/static/..%2f..%2fsecret.txt",
        "/%00/../secret.txt",
        "/rest/v1/../../secret.txt",
    ] {
        let mut r = row(
            format!("static traversal: {target}"),
            req("GET", target, &[], ""),
            404,
            Dialect::Any,
        );
        r.status = vec![400, 404];
        rows.push(r);
    }

    // --- NUL bytes on storage's read routes (a 500 before issue #12) ---
    let j = [("content-type", "application/json")];
    for (method, target, body) in [
        ("GET", "/storage/v1/object/info/pub/a%00b", ""),
        ("GET", "/storage/v1/object/info/p%00ub/a", ""),
        ("GET", "/storage/v1/object/pub/a%00b", ""),
        ("GET", "/storage/v1/object/p%00ub/a", ""),
        ("HEAD", "/storage/v1/object/pub/a%00b", ""),
        ("DELETE", "/storage/v1/object/pub/a%00b", ""),
        ("DELETE", "/storage/v1/object/p%00ub/a", ""),
        (
            "POST",
            "/storage/v1/object/sign/pub/a%00b",
            r#"{"expiresIn":60}"#,
        ),
        ("POST", "/storage/v1/object/upload/sign/pub/a%00b", ""),
        ("GET", "/storage/v1/object/public/pub/a%00b", ""),
        ("GET", "/storage/v1/object/public/p%00ub/a", ""),
        ("GET", "/storage/v1/object/authenticated/pub/a%00b", ""),
        ("GET", "/storage/v1/bucket/p%00ub", ""),
        ("POST", "/storage/v1/object/list/p%00ub", r#"{"prefix":""}"#),
        (
            "POST",
            "/storage/v1/object/list/pub",
            "{\"prefix\":\"a\\u0000b\"}",
        ),
        (
            "POST",
            "/storage/v1/object/list-v2/pub",
            "{\"prefix\":\"a\\u0000b\"}",
        ),
        (
            "DELETE",
            "/storage/v1/object/pub",
            "{\"prefixes\":[\"a\\u0000b\"]}",
        ),
        (
            "POST",
            "/storage/v1/object/move",
            "{\"bucketId\":\"pub\",\"sourceKey\":\"a\\u0000\",\"destinationKey\":\"b\"}",
        ),
    ] {
        let mut h = j.to_vec();
        let auth = bearer(&service);
        h.push(("authorization", &auth));
        let mut r = row(
            format!("storage NUL: {method} {target} {body}"),
            req(method, target, &h, body),
            400,
            Dialect::Storage,
        );
        if method == "HEAD" {
            r.dialect = Dialect::Http; // no body on HEAD
        }
        rows.push(r);
    }

    // --- Request smuggling and malformed framing, raw bytes ---
    let smuggled =
        "GET /rest/v1/vault?select=secret HTTP/1.1\r\nHost: doska.test\r\nAuthorization: Bearer ";
    rows.push(Attack {
        name: "smuggling: Content-Length and Transfer-Encoding together".into(),
        request: format!(
            "POST /rest/v1/notes HTTP/1.1\r\nHost: doska.test\r\nContent-Type: application/json\r\n\
             Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}{}\r\n\r\n",
            service
        )
        .into_bytes(),
        // Refused outright, or framed by Transfer-Encoding alone (RFC 9112 §6.1).
        status: vec![400],
        dialect: Dialect::Any,
    });
    rows.push(row(
        "smuggling: two different Content-Lengths",
        format!(
            "POST /rest/v1/notes HTTP/1.1\r\nHost: doska.test\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nContent-Length: 40\r\nConnection: close\r\n\r\n{{}}{smuggled}x\r\n\r\n"
        )
        .into_bytes(),
        400,
        Dialect::Http,
    ));
    rows.push(row(
        "smuggling: obfuscated Transfer-Encoding",
        "POST /rest/v1/notes HTTP/1.1\r\nHost: doska.test\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: xchunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
            .as_bytes()
            .to_vec(),
        400,
        Dialect::Http,
    ));
    rows.push(row(
        "smuggling: Content-Length with a sign",
        "POST /rest/v1/notes HTTP/1.1\r\nHost: doska.test\r\nContent-Length: +2\r\nConnection: close\r\n\r\n{}"
            .as_bytes()
            .to_vec(),
        400,
        Dialect::Http,
    ));
    // RFC 9112 §2.2 lets a recipient take a bare LF as a line end, and hyper does: the line after
    // it is a header of its own (here a bad token: refused), never part of the one before.
    rows.push(row(
        "smuggling: bare LF in a header",
        "GET /rest/v1/vault?select=secret HTTP/1.1\r\nHost: doska.test\r\nX-A: a\nAuthorization: Bearer x\r\nConnection: close\r\n\r\n"
            .as_bytes()
            .to_vec(),
        401,
        Dialect::Rest,
    ));

    // --- Oversized headers, URIs, bodies ---
    let long = "a".repeat(512 * 1024);
    rows.push(row(
        "oversized: one 512 KiB header",
        req("GET", "/rest/v1/notes", &[("x-big", &long)], ""),
        431,
        Dialect::Http,
    ));
    let many: Vec<(String, String)> = (0..500).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let many_ref: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    rows.push(row(
        "oversized: 500 headers",
        req("GET", "/rest/v1/notes", &many_ref, ""),
        431,
        Dialect::Http,
    ));
    let long_uri = format!("/rest/v1/notes?body=eq.{}", "a".repeat(512 * 1024));
    let mut r = row(
        "oversized: 512 KiB URI",
        req("GET", &long_uri, &[], ""),
        414,
        Dialect::Http,
    );
    r.status = vec![414, 431];
    rows.push(r);
    let big_body = format!("[{}]", vec![r#"{"id":1,"body":"x"}"#; 600_000].join(","));
    rows.push(row(
        "oversized: REST body past the limit",
        req(
            "POST",
            "/rest/v1/notes",
            &[("content-type", "application/json")],
            &big_body,
        ),
        413,
        Dialect::Rest,
    ));
    let big_signup =
        json!({"email": "a@b.co", "password": "password-1", "data": {"x": "y".repeat(2 << 20)}})
            .to_string();
    rows.push(row(
        "oversized: auth body past the limit",
        req(
            "POST",
            "/auth/v1/signup",
            &[("content-type", "application/json"), ("apikey", &anon)],
            &big_signup,
        ),
        413,
        Dialect::Auth,
    ));

    let mut failures = Vec::new();
    for a in &rows {
        let ans = send(&s.addr, &a.request).await;
        for c in CANARIES {
            if ans.text.contains(c) {
                failures.push(format!("{}: LEAKED {c}: {}", a.name, ans.text));
            }
        }
        if !a.status.contains(&ans.status) {
            let head: String = ans.text.chars().take(600).collect();
            failures.push(format!(
                "{}: status {} (want {:?}): {head}",
                a.name, ans.status, a.status
            ));
            continue;
        }
        if let Err(p) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_dialect(a, &ans)))
        {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "dialect".into());
            failures.push(msg);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );

    // Nothing an attack sent was written.
    let notes: i64 = s.db.value("select count(*) from public.notes", &[]).await;
    assert_eq!(notes, 1);
    let vault_rows: i64 = s.db.value("select count(*) from public.vault", &[]).await;
    assert_eq!(vault_rows, 1);
}
