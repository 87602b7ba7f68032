//! The one JWT verifier every front door shares (REST, auth, realtime, storage): HS256 with the project
//! secret, exp/nbf/iat checked with a small leeway. Rejects `alg: none`, any algorithm it was not given a
//! key for, bad signatures, expired and not-yet-valid tokens, tokens issued in the future (`iat` past
//! the skew), and claims that are not a JSON object.
//! Also turns request headers into the `Caller` whose role and claims a request transaction runs as.

use std::fmt;

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde_json::{Value, json};

/// Seconds of clock skew tolerated on exp/nbf/iat (PostgREST allows 30).
const LEEWAY_SECS: u64 = 30;

/// Who is calling — the one type every door uses: the role the caller's transaction switches to
/// and the claims it exposes as `request.jwt.claims` (see `db::caller`). Two callers are the same
/// caller when role and claims are (realtime checks each distinct caller once per batch); the raw
/// token does not count.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: String,
    /// Always a JSON object (empty for an anonymous caller without a token).
    pub claims: Claims,
    /// The raw token, for front doors that hand it on (realtime's access_token refresh).
    pub token: Option<String>,
}

impl Caller {
    pub fn anonymous() -> Caller {
        Caller::new("anon", json!({}))
    }

    /// A caller without a token (the operator, a test case, a signed URL's claims).
    pub fn new(role: &str, claims: Value) -> Caller {
        Caller {
            role: role.to_string(),
            claims: Claims::new(claims),
            token: None,
        }
    }
}

impl PartialEq for Caller {
    fn eq(&self, other: &Caller) -> bool {
        self.role == other.role && self.claims == other.claims
    }
}

impl Eq for Caller {}

impl std::hash::Hash for Caller {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.role.hash(state);
        self.claims.hash(state);
    }
}

/// A caller's JWT claims: the JSON object, and its text as `request.jwt.claims` holds it — made once
/// per token (the verifier keeps both), shared on clone. Reads as the JSON value (`claims.get("sub")`);
/// equal and hashed by the text.
#[derive(Clone)]
pub struct Claims {
    value: std::sync::Arc<Value>,
    text: std::sync::Arc<str>,
}

impl Claims {
    pub fn new(value: Value) -> Claims {
        Claims {
            text: value.to_string().into(),
            value: std::sync::Arc::new(value),
        }
    }

    /// The JSON text, as `request.jwt.claims` holds it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// These claims with `key` set to `value`.
    pub fn with(&self, key: &str, value: Value) -> Claims {
        let mut v = Value::clone(&self.value);
        v[key] = value;
        Claims::new(v)
    }
}

impl std::ops::Deref for Claims {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.value
    }
}

impl From<Value> for Claims {
    fn from(value: Value) -> Claims {
        Claims::new(value)
    }
}

impl PartialEq for Claims {
    fn eq(&self, other: &Claims) -> bool {
        self.text == other.text
    }
}

impl Eq for Claims {}

impl std::hash::Hash for Claims {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl fmt::Display for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub enum JwtError {
    /// Not three base64url parts, undecodable header or claims.
    Malformed,
    BadSignature,
    Expired,
    NotYetValid,
    /// `iat` later than now plus the skew (PostgREST: "JWT issued at future").
    IssuedInFuture,
    /// `alg: none` or an algorithm no key is configured for.
    AlgorithmNotAllowed,
    /// The `Authorization` header is not `Bearer <token>`.
    BadAuthorizationHeader,
    /// Claims are valid JSON but not an object, or `role` is not a string.
    BadClaims,
}

impl JwtError {
    /// Stable code, shared by the front doors' error bodies.
    pub fn message(&self) -> &'static str {
        match self {
            JwtError::Malformed => "JWT is malformed",
            JwtError::BadSignature => "JWT signature is invalid",
            JwtError::Expired => "JWT expired",
            JwtError::NotYetValid => "JWT is not yet valid",
            JwtError::IssuedInFuture => "JWT issued at future",
            JwtError::AlgorithmNotAllowed => "JWT algorithm is not allowed",
            JwtError::BadAuthorizationHeader => "Authorization header is not a Bearer token",
            JwtError::BadClaims => "JWT claims are invalid",
        }
    }
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

pub struct Verifier {
    keys: Vec<Key>,
    /// Tokens whose signature already checked out, with their claims: most requests repeat a token
    /// (a client's session, the anon key), and HMAC + base64 + JSON parsing was a measurable share of
    /// a REST read. Only successful verifications are kept; `exp`/`nbf` are checked again on every
    /// hit. Bounded: emptied when full.
    verified: std::sync::Mutex<std::collections::HashMap<String, Claims>>,
}

/// Verified tokens remembered at most (a few MiB at worst).
const VERIFIED_CACHE_MAX: usize = 4096;

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Verifier {
    pub fn hs256(secret: &[u8]) -> Verifier {
        Verifier {
            keys: vec![Key {
                kid: None,
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(secret),
            }],
            verified: Default::default(),
        }
    }

    /// Adds an asymmetric public key (ES256/RS256) selected by `kid`.
    pub fn with_key(mut self, kid: Option<String>, alg: Algorithm, key: DecodingKey) -> Verifier {
        self.keys.push(Key { kid, alg, key });
        self.verified_cache().clear();
        self
    }

    fn verified_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Claims>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn verify(&self, token: &str) -> Result<Value, JwtError> {
        self.verify_claims(token).map(|c| Value::clone(&c))
    }

    /// As [`Verifier::verify`], with the claims' text made once per token.
    pub fn verify_claims(&self, token: &str) -> Result<Claims, JwtError> {
        let cached = self.verified_cache().get(token).cloned();
        if let Some(claims) = cached {
            check_times(&claims, chrono::Utc::now().timestamp())?;
            return Ok(claims);
        }
        let claims = Claims::new(self.verify_uncached(token)?);
        let mut cache = self.verified_cache();
        if cache.len() >= VERIFIED_CACHE_MAX {
            cache.clear();
        }
        cache.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str) -> Result<Value, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            // `alg: none` and algorithms the library does not know fail header parsing: tell them
            // apart from garbage, so the error says what is wrong.
            if header_alg(token).is_some() {
                JwtError::AlgorithmNotAllowed
            } else {
                JwtError::Malformed
            }
        })?;
        let key = self
            .keys
            .iter()
            .filter(|k| k.alg == header.alg)
            .find(|k| k.kid.is_none() || k.kid == header.kid)
            .ok_or(JwtError::AlgorithmNotAllowed)?;
        let mut validation = Validation::new(key.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        // PostgREST checks `aud` only when configured to; Supabase's anon key has none.
        validation.validate_aud = false;
        // PostgREST accepts tokens without `exp`.
        validation.required_spec_claims.clear();
        let data =
            jsonwebtoken::decode::<Value>(token, &key.key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => JwtError::Expired,
                    ErrorKind::ImmatureSignature => JwtError::NotYetValid,
                    ErrorKind::InvalidSignature => JwtError::BadSignature,
                    ErrorKind::InvalidAlgorithm => JwtError::AlgorithmNotAllowed,
                    ErrorKind::Json(_) => JwtError::BadClaims,
                    _ => JwtError::Malformed,
                }
            })?;
        if !data.claims.is_object() {
            return Err(JwtError::BadClaims);
        }
        // The library checks neither the type nor the value of `iat`; PostgREST refuses both.
        if data.claims.get("iat").is_some_and(|iat| !iat.is_number()) {
            return Err(JwtError::BadClaims);
        }
        check_times(&data.claims, chrono::Utc::now().timestamp())?;
        Ok(data.claims)
    }

    /// The caller of a request: `Authorization: Bearer` first, then the `apikey` header; no token at
    /// all is the anonymous caller. A token without `role` runs as `anon` (PostgREST's rule).
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, JwtError> {
        match bearer_token(headers)? {
            Some(token) => self.caller_from_token(token),
            None => Ok(Caller::anonymous()),
        }
    }

    pub fn caller_from_token(&self, token: &str) -> Result<Caller, JwtError> {
        let claims = self.verify_claims(token)?;
        let role = match claims.get("role") {
            None => "anon".to_string(),
            Some(Value::String(r)) if !r.is_empty() => r.clone(),
            Some(_) => return Err(JwtError::BadClaims),
        };
        Ok(Caller {
            role,
            claims,
            token: Some(token.to_string()),
        })
    }
}

/// `exp`, `nbf` and `iat` of claims whose signature checked out (`exp`/`nbf` are then numbers when
/// present: the library checked them), against `now`, with the leeway. Run on every verification,
/// cached or not, so the clock moving on is seen.
fn check_times(claims: &Value, now: i64) -> Result<(), JwtError> {
    let leeway = LEEWAY_SECS as f64;
    let now = now as f64;
    if let Some(exp) = claims.get("exp").and_then(Value::as_f64)
        && exp < now - leeway
    {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_f64)
        && nbf > now + leeway
    {
        return Err(JwtError::NotYetValid);
    }
    if let Some(iat) = claims.get("iat").and_then(Value::as_f64)
        && iat > now + leeway
    {
        return Err(JwtError::IssuedInFuture);
    }
    Ok(())
}

/// The `alg` of a token's header, read leniently.
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine;
    let first = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("alg")?.as_str().map(str::to_string)
}

/// The token a request carries: `Authorization: Bearer …`, else `apikey`.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, JwtError> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| JwtError::BadAuthorizationHeader)?;
        let (scheme, token) = v.split_once(' ').ok_or(JwtError::BadAuthorizationHeader)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(JwtError::BadAuthorizationHeader);
        }
        return Ok(Some(token.trim()));
    }
    match headers.get("apikey") {
        Some(v) => Ok(Some(v.to_str().map_err(|_| JwtError::Malformed)?.trim())),
        None => Ok(None),
    }
}

/// Signs claims with HS256.
pub fn sign(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing of a JSON value cannot fail")
}

/// The project keys `doska keys` prints: long-lived, `role` and no `aud`, as Supabase's.
pub fn project_keys(secret: &[u8]) -> Value {
    let iat = chrono::Utc::now().timestamp();
    // Ten years, as Supabase's keys.
    let exp = iat + 10 * 365 * 24 * 3600;
    let key = |role: &str| {
        sign(
            secret,
            &json!({"iss": "doska", "role": role, "iat": iat, "exp": exp}),
        )
    };
    json!({
        "anon_key": key("anon"),
        "service_role_key": key("service_role"),
        "s3_session_key": s3_session_key(secret),
    })
}

/// The secret access key S3 clients sign with when a user's JWT rides along as the session token
/// (Supabase's S3 session-token access signs with the project's anon key). doska mints a new anon key
/// on every `doska keys`, so this one is fixed instead: an anon-role key without expiry, derived
/// from the JWT secret. It grants nothing by itself — the session token decides who acts.
pub fn s3_session_key(secret: &[u8]) -> String {
    sign(
        secret,
        &json!({"iss": "doska", "role": "anon", "use": "s3-session"}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const SECRET: &[u8] = b"a-test-secret-that-is-long-enough-32";

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn b64(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn table() {
        let v = Verifier::hs256(SECRET);
        let valid = sign(
            SECRET,
            &json!({"role": "authenticated", "sub": "u1", "exp": now() + 60}),
        );
        let other_secret = sign(
            b"another-secret-another-secret-xx",
            &json!({"role": "anon"}),
        );
        let expired = sign(SECRET, &json!({"role": "anon", "exp": now() - 3600}));
        let future = sign(SECRET, &json!({"role": "anon", "nbf": now() + 3600}));
        let issued_next_year = sign(
            SECRET,
            &json!({"role": "anon", "iat": now() + 365 * 24 * 3600}),
        );
        let issued_past_skew = sign(
            SECRET,
            &json!({"role": "anon", "iat": now() + LEEWAY_SECS as i64 + 5}),
        );
        let issued_within_skew = sign(SECRET, &json!({"role": "anon", "iat": now() + 10}));
        let iat_string = sign(SECRET, &json!({"role": "anon", "iat": "yesterday"}));
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&json!({"role": "service_role"}))
        );
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &json!({"role": "service_role"}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let array_claims = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!([1, 2]),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let numeric_role = sign(SECRET, &json!({"role": 5}));
        let cases: Vec<(&str, String, Result<&str, JwtError>)> = vec![
            ("valid", valid, Ok("authenticated")),
            ("bad signature", other_secret, Err(JwtError::BadSignature)),
            ("expired", expired, Err(JwtError::Expired)),
            ("not yet valid", future, Err(JwtError::NotYetValid)),
            (
                "issued next year",
                issued_next_year,
                Err(JwtError::IssuedInFuture),
            ),
            (
                "issued past the skew",
                issued_past_skew,
                Err(JwtError::IssuedInFuture),
            ),
            ("issued within the skew", issued_within_skew, Ok("anon")),
            ("iat not a number", iat_string, Err(JwtError::BadClaims)),
            ("alg none", none, Err(JwtError::AlgorithmNotAllowed)),
            ("wrong algorithm", hs384, Err(JwtError::AlgorithmNotAllowed)),
            ("garbage", "abc".into(), Err(JwtError::Malformed)),
            (
                "claims not an object",
                array_claims,
                Err(JwtError::BadClaims),
            ),
            ("role not a string", numeric_role, Err(JwtError::BadClaims)),
            ("no role", sign(SECRET, &json!({"sub": "x"})), Ok("anon")),
        ];
        // Twice: the second round answers valid tokens from the verified-token cache.
        for round in 0..2 {
            for (name, token, want) in &cases {
                let got = v.caller_from_token(token).map(|c| c.role);
                let want = want.clone();
                assert_eq!(
                    got.as_deref().map_err(Clone::clone),
                    want,
                    "case {name}, round {round}"
                );
            }
        }
    }

    #[test]
    fn cached_tokens_still_expire_and_mature() {
        let v = Verifier::hs256(SECRET);
        let t = sign(
            SECRET,
            &json!({"role": "anon", "exp": now() + 60, "nbf": now() - 60}),
        );
        let claims = v.verify(&t).unwrap();
        assert!(v.verified_cache().contains_key(&t));
        assert_eq!(check_times(&claims, now()), Ok(()));
        assert_eq!(
            check_times(&claims, now() + 60 + LEEWAY_SECS as i64 + 1),
            Err(JwtError::Expired)
        );
        assert_eq!(
            check_times(&claims, now() - 60 - LEEWAY_SECS as i64 - 1),
            Err(JwtError::NotYetValid)
        );
        let t0 = now();
        let issued = json!({"role": "anon", "iat": t0});
        assert_eq!(check_times(&issued, t0 - LEEWAY_SECS as i64), Ok(()));
        assert_eq!(
            check_times(&issued, t0 - LEEWAY_SECS as i64 - 1),
            Err(JwtError::IssuedInFuture)
        );
        // A forged token is never answered from the cache of a genuine one.
        let sig_start = t.rfind('.').unwrap() + 5;
        let flipped = if &t[sig_start..sig_start + 1] == "A" {
            "B"
        } else {
            "A"
        };
        let forged = format!("{}{flipped}{}", &t[..sig_start], &t[sig_start + 1..]);
        assert!(v.verify(&forged).is_err());
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let v = Verifier::hs256(SECRET);
        let t = sign(SECRET, &json!({"role": "anon"}));
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(&json!({"role": "service_role"})),
            parts[2]
        );
        assert_eq!(v.verify(&forged), Err(JwtError::BadSignature));
    }

    #[test]
    fn headers() {
        let v = Verifier::hs256(SECRET);
        let t = sign(SECRET, &json!({"role": "service_role"}));
        let mut h = HeaderMap::new();
        assert_eq!(v.caller(&h).unwrap(), Caller::anonymous());
        h.insert("apikey", t.parse().unwrap());
        assert_eq!(v.caller(&h).unwrap().role, "service_role");
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(v.caller(&h), Err(JwtError::BadAuthorizationHeader));
        let user = sign(SECRET, &json!({"role": "authenticated"}));
        h.insert("authorization", format!("Bearer {user}").parse().unwrap());
        assert_eq!(v.caller(&h).unwrap().role, "authenticated");
    }

    #[test]
    fn project_keys_verify() {
        let v = Verifier::hs256(SECRET);
        let keys = project_keys(SECRET);
        let anon = v.verify(keys["anon_key"].as_str().unwrap()).unwrap();
        assert_eq!(anon["role"], "anon");
        assert!(anon.get("aud").is_none());
        let svc = v
            .caller_from_token(keys["service_role_key"].as_str().unwrap())
            .unwrap();
        assert_eq!(svc.role, "service_role");
    }
}
