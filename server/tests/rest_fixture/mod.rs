//! Shared fixture of the REST tests: a schema with one-to-many, many-to-many, one-to-one and
//! self relations, an ambiguous pair of keys, a view, functions and an RLS-protected table; and
//! a helper that sends requests through `doska::rest::serve`.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::Full;

use super::common::{Response, TestDb};
use doska::rest::RestState;

pub const FIXTURE: &str = include_str!("fixture.sql");

pub struct Rest {
    pub db: TestDb,
    pub rest: RestState,
}

impl Rest {
    pub async fn new() -> Rest {
        Rest::with(FIXTURE).await
    }

    pub async fn with(sql: &str) -> Rest {
        let db = TestDb::new().await;
        db.admin().batch_execute(sql).await.expect("fixture");
        let rest = RestState::load(&db.state.admin, &db.state.config)
            .await
            .expect("schema cache");
        Rest { db, rest }
    }

    /// Sends `method path?query` with headers and body through the REST door.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        // Tests write URLs readably; encode what a URI may not hold, as a client library would.
        let url: String = url
            .chars()
            .map(|c| match c {
                '"' | '{' | '}' | '|' | '^' | '`' | '<' | '>' | ' ' | '\\' => {
                    format!("%{:02X}", c as u32)
                }
                _ => c.to_string(),
            })
            .collect();
        let uri: http::Uri = format!("http://localhost/rest/v1{url}")
            .parse()
            .expect("test URL");
        let path = uri
            .path()
            .strip_prefix("/rest/v1")
            .unwrap_or("")
            .to_string();
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        let ctx = doska::http::RequestContext {
            request_id: "test".into(),
            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            path,
            body_limit: 1 << 20,
        };
        let res = doska::rest::serve(&self.rest, &self.db.state, req, ctx).await;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        use http_body_util::BodyExt;
        let body = res
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Response {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, url: &str) -> Response {
        self.send("GET", url, &[], "").await
    }

    /// A bearer token for `role` (and `sub`).
    pub fn token(&self, role: &str, sub: Option<&str>) -> String {
        let mut claims = serde_json::json!({ "role": role, "exp": 4102444800i64 });
        if let Some(s) = sub {
            claims["sub"] = s.into();
        }
        self.db.sign(claims)
    }
}

/// What a scenario expects of the body.
pub enum Expect {
    /// Exactly this JSON.
    Json(serde_json::Value),
    /// An error body with this `code`.
    Code(&'static str),
    /// Exactly this text.
    Text(&'static str),
    /// An empty body.
    Empty,
    /// Only the status (and headers) matter.
    Any,
}

/// One table-driven HTTP scenario.
pub struct Case {
    pub name: &'static str,
    pub method: &'static str,
    pub url: &'static str,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: &'static str,
    pub status: u16,
    pub expect: Expect,
    /// Response headers that must be present with these values.
    pub want_headers: Vec<(&'static str, &'static str)>,
}

pub fn case(
    name: &'static str,
    method: &'static str,
    url: &'static str,
    status: u16,
    expect: Expect,
) -> Case {
    Case {
        name,
        method,
        url,
        headers: Vec::new(),
        body: "",
        status,
        expect,
        want_headers: Vec::new(),
    }
}

impl Case {
    pub fn h(mut self, k: &'static str, v: &'static str) -> Case {
        self.headers.push((k, v));
        self
    }
    pub fn body(mut self, b: &'static str) -> Case {
        self.body = b;
        self
    }
    pub fn want(mut self, k: &'static str, v: &'static str) -> Case {
        self.want_headers.push((k, v));
        self
    }
}

/// Runs every case (in order, on one database) and reports all failures at once.
pub async fn run(r: &Rest, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in cases {
        let res = r.send(c.method, c.url, &c.headers, c.body).await;
        let mut problems = Vec::new();
        if res.status != c.status {
            problems.push(format!("status {} (want {})", res.status, c.status));
        }
        match &c.expect {
            Expect::Json(v) => {
                let got: serde_json::Value = serde_json::from_slice(&res.body)
                    .unwrap_or(serde_json::Value::String(res.text()));
                if &got != v {
                    problems.push(format!("body {got} (want {v})"));
                }
            }
            Expect::Code(code) => {
                let got: serde_json::Value = serde_json::from_slice(&res.body).unwrap_or_default();
                if got["code"] != *code {
                    problems.push(format!("body {} (want code {code})", res.text()));
                }
                for k in ["message", "details", "hint"] {
                    if got.get(k).is_none() {
                        problems.push(format!("error body lacks {k}"));
                    }
                }
            }
            Expect::Text(t) => {
                if res.text() != *t {
                    problems.push(format!("body {:?} (want {t:?})", res.text()));
                }
            }
            Expect::Empty => {
                if !res.body.is_empty() {
                    problems.push(format!("body {:?} (want empty)", res.text()));
                }
            }
            Expect::Any => {}
        }
        for (k, v) in &c.want_headers {
            if res.header(k) != Some(v) {
                problems.push(format!("header {k}: {:?} (want {v:?})", res.header(k)));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{} [{} {}]: {}",
                c.name,
                c.method,
                c.url,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} scenario(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

impl Rest {
    /// The fixture on a database whose doska runs with these settings.
    pub async fn with_settings(settings: doska::config::Settings) -> Rest {
        let db = TestDb::with_settings(settings).await;
        db.admin().batch_execute(FIXTURE).await.expect("fixture");
        let rest = RestState::load(&db.state.admin, &db.state.config)
            .await
            .expect("schema cache");
        Rest { db, rest }
    }
}
