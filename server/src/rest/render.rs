//! Turns a plan and what the database returned into the HTTP response: status (200/201/204/206,
//! 416 past the end), `Content-Range`, `Location`, `Preference-Applied`, the media type, and the
//! `response.status`/`response.headers` settings a function chose. Also renders [`RestError`]s.
//! Rejects malformed `response.*` settings (PGRST111/PGRST112).

use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use serde_json::Value;

use super::error::{RequestError, RestError};
use super::execute::Outcome;
use super::plan::{CallShape, Plan, PlanKind};
use super::request::{Action, MediaType, Preferences, ReturnPref};
use crate::http::body::{Body, empty, full};

pub struct RenderInput<'a> {
    pub plan: &'a Plan,
    pub action: Action,
    pub prefer: &'a Preferences,
    pub outcome: Outcome,
}

/// The response for a successful statement.
pub fn success(input: RenderInput) -> Result<Response<Body>, RestError> {
    let RenderInput {
        plan,
        action,
        prefer,
        outcome,
    } = input;
    let n = outcome.page_total;
    let total = outcome.total;
    let range = |first: i64| -> String {
        let t = total.map_or("*".to_string(), |t| t.to_string());
        if n == 0 {
            format!("*/{t}")
        } else {
            format!("{first}-{}/{t}", first + n - 1)
        }
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut body = outcome.body.clone();
    let status = match (&plan.kind, action) {
        (PlanKind::Read(_), _) | (PlanKind::Call(_), _) => {
            let first = plan.offset;
            let is_rows = match &plan.kind {
                PlanKind::Call(c) => matches!(c.shape, CallShape::Rows | CallShape::ScalarSet),
                _ => true,
            };
            if is_rows {
                headers.push(("Content-Range".into(), range(first)));
            }
            match (&plan.kind, total) {
                (PlanKind::Call(c), _) if c.shape == CallShape::Void => {
                    body = None;
                    204
                }
                // PostgREST's rule: past the end is 416, a page smaller than the total is 206.
                (_, Some(t)) if is_rows && first > t => {
                    return Err(RequestError::InvalidRange.into());
                }
                (_, Some(t)) if is_rows && n < t => 206,
                _ => 200,
            }
        }
        (PlanKind::Mutate(_), _) => {
            headers.push((
                "Content-Range".into(),
                if plan.return_ == ReturnPref::Representation {
                    range(0)
                } else {
                    format!("*/{}", total.map_or("*".to_string(), |t| t.to_string()))
                },
            ));
            if let Some(loc) = &outcome.location
                && let Ok(Value::Object(m)) = serde_json::from_str::<Value>(loc)
            {
                let q: Vec<String> = m
                    .iter()
                    .map(|(k, v)| {
                        let v = v.as_str().map_or_else(|| v.to_string(), String::from);
                        format!("{}=eq.{}", enc(k), enc(&v))
                    })
                    .collect();
                headers.push((
                    "Location".into(),
                    format!("/{}?{}", enc(&plan.target_name), q.join("&")),
                ));
            }
            let representation = plan.return_ == ReturnPref::Representation;
            match action {
                Action::Insert => 201,
                _ if representation => 200,
                _ => {
                    body = None;
                    204
                }
            }
        }
    };
    if plan.return_ != ReturnPref::Representation && matches!(plan.kind, PlanKind::Mutate(_)) {
        body = None;
    }
    if !prefer.applied.is_empty() {
        headers.push(("Preference-Applied".into(), prefer.applied.join(", ")));
    }
    let mut status = status;
    if let Some(s) = &outcome.response_status {
        status = s
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|s| (100..600).contains(s))
            .ok_or_else(|| RestError::ResponseGuc {
                code: "PGRST112",
                message: "response.status guc must be a valid status code".into(),
            })?;
    }
    if let Some(h) = &outcome.response_headers {
        headers.extend(guc_headers(h)?);
    }
    let headers_only = matches!(action, Action::Read { headers_only: true })
        || matches!(
            action,
            Action::Call {
                method: super::request::CallMethod::Head
            }
        );
    let (content_type, bytes) = match (body, plan.media) {
        (None, _) => (None, None),
        (Some(b), MediaType::Csv) => (Some("text/csv; charset=utf-8"), Some(json_to_csv(&b))),
        (Some(b), MediaType::SingleObject) => (
            Some("application/vnd.pgrst.object+json; charset=utf-8"),
            Some(b),
        ),
        (Some(b), MediaType::Json) => (Some("application/json; charset=utf-8"), Some(b)),
    };
    let mut res = Response::new(match (&bytes, headers_only) {
        (Some(b), false) => full(b.clone()),
        _ => empty(),
    });
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Some(ct) = content_type {
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            res.headers_mut().append(k, v);
        }
    }
    Ok(res)
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `response.headers`: a JSON array of single-key objects, `[{"Set-Cookie": "…"}]`.
fn guc_headers(raw: &str) -> Result<Vec<(String, String)>, RestError> {
    let bad = || {
        RestError::ResponseGuc { code: "PGRST111", message: "response.headers guc must be a JSON array composed of objects with a single key and a string value".into() }
    };
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(raw) else {
        return Err(bad());
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Object(m) = item else {
            return Err(bad());
        };
        if m.len() != 1 {
            return Err(bad());
        }
        for (k, v) in m {
            let Value::String(v) = v else {
                return Err(bad());
            };
            out.push((k, v));
        }
    }
    Ok(out)
}

/// Renders the JSON array PostgreSQL built as CSV: a header line of the first object's keys, then
/// one line per object; null is an empty field, strings are quoted when they need to be.
pub fn json_to_csv(body: &str) -> String {
    let rows: Vec<serde_json::Map<String, Value>> = match serde_json::from_str::<Value>(body) {
        Ok(Value::Array(a)) => a
            .into_iter()
            .filter_map(|v| {
                if let Value::Object(o) = v {
                    Some(o)
                } else {
                    None
                }
            })
            .collect(),
        Ok(Value::Object(o)) => vec![o],
        _ => return String::new(),
    };
    let Some(first) = rows.first() else {
        return String::new();
    };
    let keys: Vec<String> = first.keys().cloned().collect();
    let field = |v: Option<&Value>| -> String {
        let s = match v {
            None | Some(Value::Null) => return String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        if s.contains([',', '"', '\n', '\r']) || s.is_empty() {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    };
    let mut out = keys
        .iter()
        .map(|k| field(Some(&Value::String(k.clone()))))
        .collect::<Vec<_>>()
        .join(",");
    for r in &rows {
        out.push('\n');
        out.push_str(
            &keys
                .iter()
                .map(|k| field(r.get(k)))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    out
}

/// The response for an error.
pub fn error(e: &RestError) -> Response<Body> {
    let status = e.status();
    // A database that cannot be reached was logged (rate-limited) where it was found.
    if status >= 500 && !matches!(e, RestError::Unavailable { .. }) {
        tracing::warn!(status, body = %e.body(), "rest: server-side error");
    }
    let mut res = Response::new(full(e.body().to_string()));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    for (k, v) in e.headers() {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            res.headers_mut().append(k, v);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_table() {
        let cases = [
            (
                r#"[{"a":1,"b":"x"},{"a":null,"b":"y,z"}]"#,
                "a,b\n1,x\n,\"y,z\"",
            ),
            (r#"[{"q":"say \"hi\""}]"#, "q\n\"say \"\"hi\"\"\""),
            ("[]", ""),
        ];
        for (json, csv) in cases {
            assert_eq!(json_to_csv(json), csv, "{json}");
        }
    }

    #[test]
    fn guc_headers_table() {
        assert_eq!(
            guc_headers(r#"[{"X-A":"1"},{"Set-Cookie":"c=2"}]"#).unwrap(),
            vec![
                ("X-A".into(), "1".into()),
                ("Set-Cookie".into(), "c=2".into())
            ]
        );
        for bad in [
            r#"{"a":"b"}"#,
            r#"[{"a":1}]"#,
            r#"[{"a":"1","b":"2"}]"#,
            "nope",
        ] {
            assert!(guc_headers(bad).is_err(), "{bad}");
        }
    }
}
