//! CORS on the S3 listener, as S3 does it: a bucket's rules (Put/Get/DeleteBucketCors, kept on the
//! bucket's row), browsers' `OPTIONS` preflight requests answered from them before s3s sees the
//! request (a preflight carries no credentials), and the `Access-Control-*` headers added to the
//! actual requests' answers — errors included — when a rule allows the request's origin and method.

use serde::{Deserialize, Serialize};

use super::*;
use crate::storage::core::BucketSetting;

/// The methods a CORS rule may allow (S3 refuses the rest).
const METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];
/// S3's limit on a bucket's rules.
const MAX_RULES: usize = 100;

/// One CORS rule as doska keeps it (`storage.buckets.s3_cors` holds a JSON array of these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    origins: Vec<String>,
    methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    expose: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_age: Option<i32>,
}

fn invalid(message: String) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidRequest, message)
}

/// A PutBucketCors configuration checked as S3 checks it.
pub(super) fn rules_of(config: dto::CORSConfiguration) -> S3Result<Vec<Rule>> {
    if config.cors_rules.is_empty() || config.cors_rules.len() > MAX_RULES {
        return Err(s3_error!(
            MalformedXML,
            "A CORS configuration holds 1 to 100 rules"
        ));
    }
    let wildcards = |what: &str, v: &[String]| match v.iter().find(|s| s.matches('*').count() > 1) {
        Some(s) => Err(invalid(format!(
            "{what} \"{s}\" can not have more than one wildcard."
        ))),
        None => Ok(()),
    };
    config
        .cors_rules
        .into_iter()
        .map(|r| {
            if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
                return Err(s3_error!(
                    MalformedXML,
                    "Each CORS rule needs an AllowedOrigin and an AllowedMethod"
                ));
            }
            if let Some(m) = r
                .allowed_methods
                .iter()
                .find(|m| !METHODS.contains(&m.as_str()))
            {
                return Err(invalid(format!(
                    "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
                )));
            }
            wildcards("AllowedOrigin", &r.allowed_origins)?;
            let headers = r.allowed_headers.unwrap_or_default();
            wildcards("AllowedHeader", &headers)?;
            if r.id.as_ref().is_some_and(|id| id.chars().count() > 255) {
                return Err(s3_error!(
                    InvalidArgument,
                    "A CORS rule's ID is at most 255 characters"
                ));
            }
            if r.max_age_seconds.is_some_and(|s| s < 0) {
                return Err(s3_error!(
                    InvalidArgument,
                    "MaxAgeSeconds may not be negative"
                ));
            }
            Ok(Rule {
                id: r.id,
                origins: r.allowed_origins,
                methods: r.allowed_methods,
                headers,
                expose: r.expose_headers.unwrap_or_default(),
                max_age: r.max_age_seconds,
            })
        })
        .collect()
}

fn to_dto(rules: Vec<Rule>) -> dto::CORSRules {
    rules
        .into_iter()
        .map(|r| dto::CORSRule {
            id: r.id,
            allowed_origins: r.origins,
            allowed_methods: r.methods,
            allowed_headers: (!r.headers.is_empty()).then_some(r.headers),
            expose_headers: (!r.expose.is_empty()).then_some(r.expose),
            max_age_seconds: r.max_age,
        })
        .collect()
}

/// `pattern` (with at most one `*`, standing for any run of characters) matches `value`.
fn wildcard(pattern: &str, value: &str, fold_case: bool) -> bool {
    let (p, v) = if fold_case {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_string(), value.to_string())
    };
    match p.split_once('*') {
        None => p == v,
        Some((head, tail)) => {
            v.len() >= head.len() + tail.len() && v.starts_with(head) && v.ends_with(tail)
        }
    }
}

/// The first rule allowing `origin` to use `method` with the `headers` a preflight asks for.
pub(super) fn matching<'r>(
    rules: &'r [Rule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<&'r Rule> {
    rules.iter().find(|r| {
        r.origins.iter().any(|o| wildcard(o, origin, false))
            && r.methods.iter().any(|m| m == method)
            && headers
                .iter()
                .all(|h| r.headers.iter().any(|p| wildcard(p, h, true)))
    })
}

/// The `Access-Control-*` headers a matching rule gives an answer (`requested`: the headers a
/// preflight asked for, echoed when allowed).
fn allow(res: &mut http::HeaderMap, rule: &Rule, origin: &str, requested: &[String]) {
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            res.insert(name, v);
        }
    };
    let any = rule.origins.iter().any(|o| o == "*");
    set(
        "access-control-allow-origin",
        if any { "*".into() } else { origin.into() },
    );
    set("access-control-allow-methods", rule.methods.join(", "));
    if !any {
        set("access-control-allow-credentials", "true".into());
    }
    if !requested.is_empty() {
        set("access-control-allow-headers", requested.join(", "));
    }
    if !rule.expose.is_empty() {
        set("access-control-expose-headers", rule.expose.join(", "));
    }
    if let Some(age) = rule.max_age {
        set("access-control-max-age", age.to_string());
    }
    set(
        "vary",
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".into(),
    );
}

/// The bucket a path-style request names (the listener parses no virtual hosts).
fn bucket_of(uri: &http::Uri) -> Option<String> {
    let first = uri.path().trim_start_matches('/').split('/').next()?;
    let bucket = percent_encoding::percent_decode_str(first)
        .decode_utf8()
        .ok()?
        .into_owned();
    (!bucket.is_empty()).then_some(bucket)
}

fn header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// What an actual (non-preflight) request needs to get its CORS headers: its bucket and origin,
/// and the method to match (`Access-Control-Request-Method` when sent, as Ceph reads it, else the
/// request's own).
pub(super) struct CorsAsk {
    bucket: String,
    origin: String,
    method: String,
}

impl CorsAsk {
    pub(super) fn of<B>(req: &http::Request<B>) -> Option<CorsAsk> {
        let origin = header(req.headers(), "origin")?;
        Some(CorsAsk {
            bucket: bucket_of(req.uri())?,
            origin,
            method: header(req.headers(), "access-control-request-method")
                .unwrap_or_else(|| req.method().as_str().to_string()),
        })
    }
}

/// Reads buckets' CORS rules for requests not yet (or never) tied to a caller: as the operator, as
/// S3 answers preflights to anyone.
#[derive(Clone)]
pub(super) struct Cors {
    pub(super) core: Storage,
}

impl Cors {
    async fn rules(&self, bucket: &str) -> Result<Option<Vec<Rule>>, StorageError> {
        let actor = Actor::service("GET", &format!("/{bucket}?cors"));
        let v = self
            .core
            .bucket_setting(&actor, bucket, BucketSetting::Cors)
            .await?;
        Ok(v.and_then(|v| serde_json::from_value(v).ok()))
    }

    /// The answer to an `OPTIONS` request: 200 with the matching rule's headers, 400 without an
    /// `Origin` or `Access-Control-Request-Method`, 403 when no rule allows it.
    pub(super) async fn preflight<B>(&self, req: &http::Request<B>) -> http::Response<s3s::Body> {
        use super::respond::xml_error;
        let forbidden = || {
            xml_error(
                http::StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed. This is usually because the \
                 evaluation of Origin, request method / Access-Control-Request-Method or \
                 Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
            )
        };
        let Some(origin) = header(req.headers(), "origin") else {
            return xml_error(
                http::StatusCode::BAD_REQUEST,
                "BadRequest",
                "Insufficient information. Origin request header needed.",
            );
        };
        let Some(method) = header(req.headers(), "access-control-request-method") else {
            return xml_error(
                http::StatusCode::BAD_REQUEST,
                "BadRequest",
                "Invalid Access-Control-Request-Method: null",
            );
        };
        let requested: Vec<String> = header(req.headers(), "access-control-request-headers")
            .map(|h| {
                h.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let Some(bucket) = bucket_of(req.uri()) else {
            return forbidden();
        };
        let rules = match self.rules(&bucket).await {
            Ok(Some(rules)) => rules,
            Ok(None) => return forbidden(),
            Err(StorageError::NoSuchBucket) => {
                return xml_error(
                    http::StatusCode::NOT_FOUND,
                    "NoSuchBucket",
                    "The specified bucket does not exist",
                );
            }
            Err(e) => {
                let e = s3_err(e);
                let status = e
                    .status_code()
                    .unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE);
                return xml_error(
                    status,
                    e.code().as_str(),
                    "The CORS rules could not be read",
                );
            }
        };
        match matching(&rules, &origin, &method, &requested) {
            None => forbidden(),
            Some(rule) => {
                let mut res = http::Response::new(s3s::Body::empty());
                allow(res.headers_mut(), rule, &origin, &requested);
                res
            }
        }
    }

    /// Adds the matching rule's headers to an actual request's answer (none when the bucket has
    /// no rules, none matches, or they cannot be read: the answer itself stands).
    pub(super) async fn decorate(
        &self,
        ask: CorsAsk,
        mut res: http::Response<s3s::Body>,
    ) -> http::Response<s3s::Body> {
        if let Ok(Some(rules)) = self.rules(&ask.bucket).await
            && let Some(rule) = matching(&rules, &ask.origin, &ask.method, &[])
        {
            allow(res.headers_mut(), rule, &ask.origin, &[]);
        }
        res
    }
}

impl S3Door {
    pub(super) async fn serve_put_bucket_cors(
        &self,
        req: S3Request<dto::PutBucketCorsInput>,
    ) -> S3Result<S3Response<dto::PutBucketCorsOutput>> {
        let actor = self.actor(&req).await?;
        let i = req.input;
        let rules = rules_of(i.cors_configuration)?;
        let value = serde_json::to_value(rules).map_err(|_| s3_error!(InternalError))?;
        self.core
            .set_bucket_setting(&actor, &i.bucket, BucketSetting::Cors, Some(&value))
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::PutBucketCorsOutput::default()))
    }

    pub(super) async fn serve_get_bucket_cors(
        &self,
        req: S3Request<dto::GetBucketCorsInput>,
    ) -> S3Result<S3Response<dto::GetBucketCorsOutput>> {
        let actor = self.actor(&req).await?;
        let stored = self
            .core
            .bucket_setting(&actor, &req.input.bucket, BucketSetting::Cors)
            .await
            .map_err(s3_err)?;
        let rules: Vec<Rule> = match stored {
            None => return Err(s3_error!(NoSuchCORSConfiguration)),
            Some(v) => serde_json::from_value(v).map_err(|e| {
                tracing::error!(error = %e, "a bucket's stored CORS rules do not parse");
                s3_error!(InternalError)
            })?,
        };
        Ok(S3Response::new(dto::GetBucketCorsOutput {
            cors_rules: Some(to_dto(rules)),
        }))
    }

    pub(super) async fn serve_delete_bucket_cors(
        &self,
        req: S3Request<dto::DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketCorsOutput>> {
        let actor = self.actor(&req).await?;
        self.core
            .set_bucket_setting(&actor, &req.input.bucket, BucketSetting::Cors, None)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::DeleteBucketCorsOutput::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> Rule {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect();
        Rule {
            id: None,
            origins: v(origins),
            methods: v(methods),
            headers: v(headers),
            expose: vec![],
            max_age: None,
        }
    }

    #[test]
    fn origins_match_with_one_wildcard() {
        let rules = [
            rule(&["*suffix"], &["GET"], &[]),
            rule(&["start*end"], &["GET"], &[]),
            rule(&["prefix*"], &["GET"], &[]),
            rule(&["*.put"], &["PUT"], &[]),
        ];
        let hit = |o: &str, m: &str| matching(&rules, o, m, &[]).is_some();
        assert!(hit("foo.suffix", "GET"));
        assert!(!hit("foo.suffix", "PUT"));
        assert!(!hit("foo.suffix.get", "GET"));
        assert!(hit("startend", "GET"));
        assert!(hit("start12end", "GET"));
        assert!(!hit("0start12end", "GET"));
        assert!(!hit("bla.prefix", "GET"));
        assert!(hit("foo.put", "PUT"));
        assert!(!hit("foo.put", "GET"));
        // The wildcard's two sides may not overlap.
        assert!(!wildcard("ab*ba", "aba", false));
    }

    #[test]
    fn requested_headers_must_each_be_allowed() {
        let rules = [rule(&["*"], &["GET"], &["x-amz-*", "Content-Type"])];
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matching(&rules, "o", "GET", &h(&["x-amz-meta-a", "content-type"])).is_some());
        assert!(matching(&rules, "o", "GET", &h(&["authorization"])).is_none());
        let none = [rule(&["*"], &["GET"], &[])];
        assert!(matching(&none, "o", "GET", &h(&["x-amz-meta-header2"])).is_none());
    }

    #[test]
    fn bad_configurations_are_refused() {
        let config = |r: dto::CORSRule| dto::CORSConfiguration {
            cors_rules: vec![r],
        };
        let base = dto::CORSRule {
            allowed_origins: vec!["*".into()],
            allowed_methods: vec!["GET".into()],
            allowed_headers: None,
            expose_headers: None,
            id: None,
            max_age_seconds: None,
        };
        assert!(rules_of(config(base.clone())).is_ok());
        let code = |r: dto::CORSRule| rules_of(config(r)).unwrap_err().code().clone();
        assert_eq!(
            code(dto::CORSRule {
                allowed_methods: vec!["PATCH".into()],
                ..base.clone()
            }),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(dto::CORSRule {
                allowed_origins: vec!["*.a.*".into()],
                ..base.clone()
            }),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(dto::CORSRule {
                allowed_origins: vec![],
                ..base.clone()
            }),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            code(dto::CORSRule {
                max_age_seconds: Some(-1),
                ..base.clone()
            }),
            S3ErrorCode::InvalidArgument
        );
        assert_eq!(
            rules_of(dto::CORSConfiguration { cors_rules: vec![] })
                .unwrap_err()
                .code()
                .clone(),
            S3ErrorCode::MalformedXML
        );
    }

    #[test]
    fn buckets_come_from_the_path() {
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        assert_eq!(bucket_of(&uri("/b/k?x=1")).as_deref(), Some("b"));
        assert_eq!(bucket_of(&uri("/b")).as_deref(), Some("b"));
        assert_eq!(bucket_of(&uri("/")), None);
    }
}
