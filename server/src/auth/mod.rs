//! The /auth/v1 front door: GoTrue's endpoints as auth-js calls them. Routes a request to its
//! handler, reads the body within the route's limit, and renders every failure in GoTrue's error
//! body (legacy or 2024-01-01 shape, by the request's `X-Supabase-Api-Version`).
//! Rejects: unknown paths (404), wrong methods (405), oversized bodies (413).
//! All database work here runs on the admin pool: auth is doska's own trusted service (as GoTrue's
//! own database user is); user input only ever reaches SQL as bind parameters.

pub mod admin;
pub mod audit;
pub mod buckets;
pub mod error;
pub mod handlers;
pub mod keys;
pub mod mail;
pub mod password;
pub mod pkce;
pub mod ratelimit;
pub mod refresh;
pub mod session;
pub mod smtp;
pub mod tokens;
pub mod users;

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderValue, Method, Response};
use hyper::body::Incoming;
use uuid::Uuid;

use crate::http::body::{Body, BodyError};
use crate::http::{DoorFuture, RequestContext};
use crate::state::AppState;
use error::AuthError;

/// Auth's settings. `from_config` maps the shared `Config` onto it; fields the shared config does
/// not carry yet keep these defaults.
#[derive(Clone)]
pub struct AuthConfig {
    /// Access token lifetime in seconds (`--jwt-exp`).
    pub jwt_exp: i64,
    /// The `iss` claim.
    pub jwt_issuer: String,
    /// Where links in mail lead by default, and always an allowed redirect (`--site-url`).
    pub site_url: String,
    /// More allowed redirect targets; an entry ending in `*` allows that prefix (`--redirect-urls`).
    pub redirect_urls: Vec<String>,
    /// doska's public base URL for links in mail (`--external-url`); `None` → `http://<listen>`.
    pub external_url: Option<String>,
    pub password_min_length: usize,
    /// Sign-ups are confirmed at once (no mail server needed). GoTrue's `MAILER_AUTOCONFIRM`.
    pub autoconfirm: bool,
    pub disable_signup: bool,
    pub anonymous_enabled: bool,
    /// A password change through PUT /user needs `current_password` or a /reauthenticate nonce.
    pub secure_password_change: bool,
    pub argon2: password::Argon2Cost,
    /// Concurrent hash computations (default: cores − 1, at least 1).
    pub hash_pool_size: usize,
    /// Seconds a rotated refresh token may still be presented (two tabs refreshing at once).
    pub refresh_reuse_window_secs: i64,
    /// Lifetime of e-mailed links and one-time codes.
    pub otp_exp_secs: i64,
    pub rate_limits: ratelimit::RateLimits,
    /// Relay for auth mail (`--smtp-url`); without it mail waits in auth.mail_outbox.
    pub smtp_url: Option<String>,
    /// PEM of an EC P-256 or RSA private key (`--jwt-signing-key FILE`): access tokens are then
    /// ES256/RS256 with a `kid`, published at /.well-known/jwks.json. The shared verifier must be
    /// given the same key (`keys::SigningKey::decoding_key`).
    pub jwt_signing_key_pem: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The SMTP URL may carry a password and the PEM is a private key: never print them.
        let mask = |o: &Option<String>| o.as_ref().map(|_| "***");
        f.debug_struct("AuthConfig")
            .field("jwt_exp", &self.jwt_exp)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("site_url", &self.site_url)
            .field("redirect_urls", &self.redirect_urls)
            .field("external_url", &self.external_url)
            .field("password_min_length", &self.password_min_length)
            .field("autoconfirm", &self.autoconfirm)
            .field("disable_signup", &self.disable_signup)
            .field("anonymous_enabled", &self.anonymous_enabled)
            .field("secure_password_change", &self.secure_password_change)
            .field("argon2", &self.argon2)
            .field("hash_pool_size", &self.hash_pool_size)
            .field("refresh_reuse_window_secs", &self.refresh_reuse_window_secs)
            .field("otp_exp_secs", &self.otp_exp_secs)
            .field("rate_limits", &self.rate_limits)
            .field("smtp_url", &mask(&self.smtp_url))
            .field("jwt_signing_key_pem", &mask(&self.jwt_signing_key_pem))
            .finish()
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_exp: 3600,
            jwt_issuer: "doska".into(),
            site_url: "http://localhost:3000".into(),
            redirect_urls: vec![],
            external_url: None,
            password_min_length: 6,
            autoconfirm: true,
            disable_signup: false,
            anonymous_enabled: true,
            secure_password_change: true,
            argon2: password::Argon2Cost::default(),
            hash_pool_size: password::default_pool_size(),
            refresh_reuse_window_secs: 10,
            otp_exp_secs: 3600,
            rate_limits: ratelimit::RateLimits::default(),
            smtp_url: None,
            jwt_signing_key_pem: None,
        }
    }
}

impl AuthConfig {
    /// Maps the shared configuration's auth settings, parsing the ones with a grammar of their own;
    /// unset ones keep GoTrue's defaults. Rejects malformed values and unreadable key files.
    pub fn from_config(c: &crate::config::Config) -> Result<AuthConfig, SetupError> {
        let a = &c.auth;
        let d = AuthConfig::default();
        let bad = |key: &str, e: String| SetupError::Config(format!("setting {key}: {e}"));
        Ok(AuthConfig {
            jwt_exp: c.jwt_exp,
            site_url: c.site_url.clone(),
            redirect_urls: a.redirect_urls.clone(),
            external_url: a.external_url.clone(),
            password_min_length: a.password_min_length.unwrap_or(d.password_min_length),
            autoconfirm: a.autoconfirm.unwrap_or(d.autoconfirm),
            disable_signup: a.disable_signup.unwrap_or(d.disable_signup),
            anonymous_enabled: a.anonymous.unwrap_or(d.anonymous_enabled),
            secure_password_change: a.secure_password_change.unwrap_or(d.secure_password_change),
            argon2: match &a.argon2 {
                Some(spec) => password::Argon2Cost::parse(spec).map_err(|e| bad("argon2", e))?,
                None => d.argon2,
            },
            hash_pool_size: a.hash_pool.unwrap_or(d.hash_pool_size).max(1),
            refresh_reuse_window_secs: a
                .refresh_reuse_window
                .unwrap_or(d.refresh_reuse_window_secs),
            otp_exp_secs: a.otp_exp.unwrap_or(d.otp_exp_secs),
            rate_limits: match &a.rate_limits {
                Some(spec) => {
                    ratelimit::RateLimits::parse(spec).map_err(|e| bad("rate_limits", e))?
                }
                None => d.rate_limits,
            },
            smtp_url: a.smtp_url.clone(),
            jwt_signing_key_pem: match &a.jwt_signing_key {
                Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                    bad(
                        "jwt_signing_key",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?),
                None => None,
            },
            ..d
        })
    }
}

/// Auth's per-process machinery: settings, the hashing pool, the rate-limit buckets, the relay.
pub struct Auth {
    pub config: AuthConfig,
    pub hasher: password::Hasher,
    /// In this process today; any [`ratelimit::RateStore`] (a shared one when scaled out).
    pub limiter: Box<dyn ratelimit::RateStore>,
    pub smtp: Option<Arc<smtp::Relay>>,
    pub signing_key: Option<keys::SigningKey>,
}

/// Auth settings that cannot work (reported at start-up).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Password(password::PasswordError),
    #[error("{0}")]
    Smtp(smtp::SmtpError),
    #[error("{0}")]
    Key(keys::KeyError),
}

impl Auth {
    pub fn new(config: AuthConfig) -> Result<Auth, SetupError> {
        let smtp = config
            .smtp_url
            .as_deref()
            .map(|u| smtp::SmtpConfig::parse(u).and_then(smtp::Relay::new))
            .transpose()
            .map_err(SetupError::Smtp)?
            .map(Arc::new);
        let signing_key = config
            .jwt_signing_key_pem
            .as_deref()
            .map(|text| keys::SigningKey::from_file_content(text.as_bytes()))
            .transpose()
            .map_err(SetupError::Key)?;
        Ok(Auth {
            signing_key,
            hasher: password::Hasher::new(config.argon2, config.hash_pool_size)
                .map_err(SetupError::Password)?,
            limiter: Box::new(ratelimit::Limiter::new(config.rate_limits.clone())),
            smtp,
            config,
        })
    }
}

/// The endpoints, one variant per (method, path).
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    Health,
    Settings,
    Jwks,
    Signup,
    Token,
    GetUser,
    UpdateUser,
    Logout,
    Recover,
    Resend,
    Otp,
    Verify,
    VerifyLink,
    Reauthenticate,
    Invite,
    AdminListUsers,
    AdminCreateUser,
    AdminGetUser(Uuid),
    AdminUpdateUser(Uuid),
    AdminDeleteUser(Uuid),
    AdminGenerateLink,
}

/// Routes `method path` (path after /auth/v1) to an endpoint.
pub fn route(method: &Method, path: &str) -> Result<Endpoint, AuthError> {
    use Endpoint::*;
    let path = path.trim_end_matches('/');
    let m = method.as_str();
    let found = match path {
        "/health" => [("GET", Health)].to_vec(),
        "/settings" => [("GET", Settings)].to_vec(),
        "/.well-known/jwks.json" => [("GET", Jwks)].to_vec(),
        "/signup" => [("POST", Signup)].to_vec(),
        "/token" => [("POST", Token)].to_vec(),
        "/user" => [("GET", GetUser), ("PUT", UpdateUser)].to_vec(),
        "/logout" => [("POST", Logout)].to_vec(),
        "/recover" => [("POST", Recover)].to_vec(),
        "/resend" => [("POST", Resend)].to_vec(),
        "/otp" | "/magiclink" => [("POST", Otp)].to_vec(),
        "/verify" => [("POST", Verify), ("GET", VerifyLink)].to_vec(),
        "/reauthenticate" => [("GET", Reauthenticate), ("POST", Reauthenticate)].to_vec(),
        "/invite" => [("POST", Invite)].to_vec(),
        "/admin/users" => [("GET", AdminListUsers), ("POST", AdminCreateUser)].to_vec(),
        "/admin/generate_link" => [("POST", AdminGenerateLink)].to_vec(),
        // Features doska does not have: GoTrue's answers with them switched off.
        "/sso" => return Err(AuthError::SamlDisabled),
        p if p.starts_with("/sso/") => return Err(AuthError::SamlDisabled),
        p if p.starts_with("/user/identities") => return Err(AuthError::ManualLinkingDisabled),
        p => match p.strip_prefix("/admin/users/") {
            Some(id) if !id.contains('/') => {
                let id = Uuid::parse_str(id).map_err(|_| AuthError::UserNotFound)?;
                [
                    ("GET", AdminGetUser(id)),
                    ("PUT", AdminUpdateUser(id)),
                    ("DELETE", AdminDeleteUser(id)),
                ]
                .to_vec()
            }
            _ => return Err(AuthError::NotFound),
        },
    };
    found
        .into_iter()
        .find(|(fm, _)| *fm == m)
        .map(|(_, e)| e)
        .ok_or(AuthError::MethodNotAllowed)
}

/// What a handler gets besides the shared state.
pub struct Ctx<'a> {
    pub state: &'a Arc<AppState>,
    pub auth: &'a Auth,
    pub headers: &'a http::HeaderMap,
    pub query: HashMap<String, String>,
    pub body: bytes::Bytes,
    pub rc: &'a RequestContext,
}

impl Ctx<'_> {
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// After a commit that queued mail: hand it to the relay, if one is configured.
    pub fn kick_mail(&self) {
        if let Some(relay) = &self.auth.smtp {
            smtp::deliver_pending(self.state.admin.clone(), relay.clone());
        }
    }
}

/// The /auth/v1 front door: the shared state and auth's own machinery, built once at start-up.
pub struct AuthDoor {
    state: Arc<AppState>,
    auth: Arc<Auth>,
}

impl AuthDoor {
    pub fn new(state: Arc<AppState>, auth: Arc<Auth>) -> AuthDoor {
        AuthDoor { state, auth }
    }
}

impl crate::http::Door for AuthDoor {
    fn handle(self: Arc<Self>, req: hyper::Request<Incoming>, ctx: RequestContext) -> DoorFuture {
        Box::pin(async move {
            let api_2024 = error::wants_2024_shape(req.headers());
            let mut resp = match serve(&self.state, &self.auth, req, &ctx).await {
                Ok(r) => r,
                Err(e) => e.into_response(api_2024, &ctx.request_id),
            };
            if api_2024 {
                resp.headers_mut().insert(
                    error::API_VERSION_HEADER,
                    HeaderValue::from_static(error::API_VERSION_2024),
                );
            }
            resp
        })
    }

    /// GoTrue's shape (the legacy one: the request's version header is not at hand here, and
    /// auth-js reads `error_code` from it): 413 validation_failed, or 500 unexpected_failure with the
    /// request id as `error_id`.
    fn reject(&self, why: &crate::http::Rejection, request_id: &str) -> Response<Body> {
        match why {
            crate::http::Rejection::TooLarge { .. } => AuthError::PayloadTooLarge,
            crate::http::Rejection::Panicked => AuthError::Internal("the handler panicked".into()),
        }
        .into_response(false, request_id)
    }
}

async fn serve(
    state: &Arc<AppState>,
    auth: &Auth,
    req: hyper::Request<Incoming>,
    rc: &RequestContext,
) -> Result<Response<Body>, AuthError> {
    let endpoint = route(req.method(), &rc.path)?;
    let (parts, incoming) = req.into_parts();
    let body = if parts.method == Method::GET || parts.method == Method::HEAD {
        bytes::Bytes::new()
    } else {
        crate::http::body::read_limited(incoming, rc.body_limit)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { .. } => AuthError::PayloadTooLarge,
                BodyError::Read(m) => AuthError::BadJson(m),
            })?
    };
    let ctx = Ctx {
        state,
        auth,
        headers: &parts.headers,
        query: crate::http::query::first_values(parts.uri.query()),
        body,
        rc,
    };
    use Endpoint::*;
    match endpoint {
        Health => Ok(handlers::health()),
        Settings => Ok(handlers::settings(&ctx)),
        Jwks => session::ok_json(&keys::jwks(auth.signing_key.as_ref())),
        Signup => handlers::signup(&ctx).await,
        Token => handlers::token(&ctx).await,
        GetUser => handlers::get_user(&ctx).await,
        UpdateUser => handlers::update_user(&ctx).await,
        Logout => handlers::logout(&ctx).await,
        Recover => mail::recover(&ctx).await,
        Resend => mail::resend(&ctx).await,
        Otp => mail::otp(&ctx).await,
        Verify => mail::verify(&ctx).await,
        VerifyLink => mail::verify_link(&ctx).await,
        Reauthenticate => mail::reauthenticate(&ctx).await,
        Invite => mail::invite(&ctx).await,
        AdminGenerateLink => mail::generate_link(&ctx).await,
        AdminListUsers => admin::list(&ctx).await,
        AdminCreateUser => admin::create(&ctx).await,
        AdminGetUser(id) => admin::get(&ctx, id).await,
        AdminUpdateUser(id) => admin::update(&ctx, id).await,
        AdminDeleteUser(id) => admin::delete(&ctx, id).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let id = Uuid::new_v4();
        let cases: Vec<(Method, String, Result<Endpoint, &str>)> = vec![
            (Method::POST, "/signup".into(), Ok(Endpoint::Signup)),
            (Method::POST, "/token".into(), Ok(Endpoint::Token)),
            (Method::GET, "/user".into(), Ok(Endpoint::GetUser)),
            (Method::PUT, "/user/".into(), Ok(Endpoint::UpdateUser)),
            (Method::DELETE, "/user".into(), Err("method_not_allowed")),
            (Method::GET, "/nope".into(), Err("not_found")),
            (Method::POST, "/sso".into(), Err("saml_provider_disabled")),
            (
                Method::GET,
                "/sso/saml/metadata".into(),
                Err("saml_provider_disabled"),
            ),
            (
                Method::GET,
                "/user/identities/authorize".into(),
                Err("manual_linking_disabled"),
            ),
            (
                Method::DELETE,
                format!("/user/identities/{id}"),
                Err("manual_linking_disabled"),
            ),
            (
                Method::GET,
                format!("/admin/users/{id}"),
                Ok(Endpoint::AdminGetUser(id)),
            ),
            (
                Method::GET,
                "/admin/users/not-a-uuid".into(),
                Err("user_not_found"),
            ),
            (
                Method::GET,
                format!("/admin/users/{id}/x"),
                Err("not_found"),
            ),
            (Method::GET, "/verify".into(), Ok(Endpoint::VerifyLink)),
        ];
        for (m, p, want) in cases {
            let got = route(&m, &p).map_err(|e| e.code());
            assert_eq!(got, want, "{m} {p}");
        }
    }

    #[test]
    fn config_debug_masks_secrets() {
        let c = AuthConfig {
            smtp_url: Some("smtp://u:hunter2@x".into()),
            jwt_signing_key_pem: Some("-----BEGIN PRIVATE KEY-----".into()),
            ..AuthConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("BEGIN"),
            "{shown}"
        );
    }

    #[test]
    fn query_parsing() {
        let q = crate::http::query::first_values(Some(
            "grant_type=password&redirect_to=http%3A%2F%2Fx%2Fa+b&x",
        ));
        assert_eq!(q["grant_type"], "password");
        assert_eq!(q["redirect_to"], "http://x/a b");
        assert_eq!(q["x"], "");
    }
}
