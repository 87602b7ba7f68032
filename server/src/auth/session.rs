//! What every auth endpoint shares: the JSON answer, body parsing, rate limits, password and
//! metadata checks, the signed-in caller, and opening a session (a refresh token and an access
//! token) for a user. Rejects malformed or mistyped JSON (400 bad_json), weak or overlong
//! passwords, metadata that is not an object, and bad or ended sessions.

use deadpool_postgres::GenericClient;
use http::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::Ctx;
use super::error::AuthError;
use super::ratelimit::Class;
use super::refresh::{self, Issued};
use super::tokens::{self, TokenInput};
use super::users::{self, User};
use crate::http::body::{self, Body};

/// Longest password accepted (bytes); longer ones are refused before any hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

pub fn ok_json(v: &Value) -> Result<Response<Body>, AuthError> {
    Ok(body::json(StatusCode::OK, v))
}

/// Commits a transaction that queued mail, hands the mail to the relay, and answers 200 with `v`.
pub async fn commit_and_mail(
    ctx: &Ctx<'_>,
    tx: deadpool_postgres::Transaction<'_>,
    v: &Value,
) -> Result<Response<Body>, AuthError> {
    tx.commit().await?;
    ctx.kick_mail();
    ok_json(v)
}

/// Parses the JSON body; an empty body counts as `{}`.
pub fn parse<T: DeserializeOwned>(ctx: &Ctx<'_>) -> Result<T, AuthError> {
    let raw: &[u8] = if ctx.body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &ctx.body
    };
    serde_json::from_slice(raw).map_err(|e| AuthError::BadJson(e.to_string()))
}

/// Counts one request against `class`'s bucket for `key`; 429 when it is empty.
pub async fn rate_limit(ctx: &Ctx<'_>, class: Class, key: &str) -> Result<(), AuthError> {
    ctx.auth
        .limiter
        .record(class, key)
        .await
        .map_err(|retry_after_secs| AuthError::RateLimited { retry_after_secs })
}

pub fn ip_key(ctx: &Ctx<'_>) -> String {
    ctx.rc.client_ip.to_string()
}

pub fn check_password_strength(ctx: &Ctx<'_>, password: &str) -> Result<(), AuthError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::Validation(format!(
            "Password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    let min = ctx.auth.config.password_min_length;
    if password.chars().count() < min {
        return Err(AuthError::WeakPassword { min_length: min });
    }
    Ok(())
}

/// Largest metadata object (`user_metadata`, `app_metadata`) a user may hold, as serialized JSON:
/// it rides in every access token, and a token past the servers' header limit (about 64 KiB) makes
/// every request of that user answer 431.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// `data`/`user_metadata` must be an object when given, of at most [`MAX_METADATA_BYTES`].
pub fn metadata_object(v: Option<Value>, field: &str) -> Result<Map<String, Value>, AuthError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => {
            check_metadata_size(&m, field)?;
            Ok(m)
        }
        Some(_) => Err(AuthError::Validation(format!(
            "{field} must be a JSON object"
        ))),
    }
}

/// Refuses (400 `validation_failed`) metadata whose JSON is over [`MAX_METADATA_BYTES`] — checked on
/// what the client sent and again on what a merge into the stored object makes.
pub fn check_metadata_size(m: &Map<String, Value>, field: &str) -> Result<(), AuthError> {
    let size = serde_json::to_vec(m).map_or(usize::MAX, |v| v.len());
    if size > MAX_METADATA_BYTES {
        return Err(AuthError::Validation(format!(
            "{field} is too large: {size} bytes of JSON, at most {MAX_METADATA_BYTES} allowed \
             (it is carried in every access token)"
        )));
    }
    Ok(())
}

/// The signed-in user making the request: a valid token with a `sub`, whose session (if named)
/// still exists.
pub struct SignedIn {
    pub user_id: Uuid,
    pub session_id: Option<Uuid>,
    pub claims: Value,
}

pub async fn signed_in<C: GenericClient>(ctx: &Ctx<'_>, c: &C) -> Result<SignedIn, AuthError> {
    let token = crate::jwt::bearer_token(ctx.headers)
        .map_err(|e| AuthError::BadJwt(e.message().into()))?
        .ok_or(AuthError::NoAuthorization)?;
    let caller = ctx
        .state
        .verifier
        .caller_from_token(token)
        .map_err(|e| AuthError::BadJwt(e.message().into()))?;
    let user_id = caller
        .claims
        .get("sub")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| AuthError::BadJwt("invalid claim: missing sub claim".into()))?;
    let session_id = match caller.claims.get("session_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| AuthError::BadJwt("invalid claim: session_id".into()))?,
        ),
    };
    if let Some(sid) = session_id
        && !refresh::session_exists(c, sid).await?
    {
        return Err(AuthError::SessionNotFound);
    }
    Ok(SignedIn {
        user_id,
        session_id,
        claims: Value::clone(&caller.claims),
    })
}

/// Signs an access token for the user's (re-read) row and builds the session object.
pub fn session_response(ctx: &Ctx<'_>, user: &User, issued: &Issued, amr: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    let cfg = &ctx.auth.config;
    let input = TokenInput {
        user,
        session_id: issued.session_id,
        amr_method: amr,
        amr_timestamp: issued.session_created_at.timestamp(),
    };
    let claims = tokens::access_claims(&input, &cfg.jwt_issuer, now, cfg.jwt_exp);
    // HS256 keys are symmetric and never published; with an asymmetric key, clients can verify.
    let access = match &ctx.auth.signing_key {
        Some(k) => k.sign(&claims),
        None => crate::jwt::sign(&ctx.state.jwt_secret, &claims),
    };
    tokens::session_body(
        &access,
        &issued.refresh_token,
        now,
        cfg.jwt_exp,
        &user.to_json(),
    )
}

/// Opens a session for `user_id` inside `c`'s transaction, stamps the sign-in and re-reads the user
/// (so whatever triggers set is in the token).
pub async fn open_session<C: GenericClient>(
    ctx: &Ctx<'_>,
    c: &C,
    user_id: Uuid,
    amr: &str,
) -> Result<Value, AuthError> {
    let ua = ctx
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let issued = refresh::create_session(c, user_id, ctx.rc.client_ip, ua).await?;
    c.execute(
        "update auth.users set last_sign_in_at = now() where id = $1",
        &[&user_id],
    )
    .await?;
    c.execute(
        "update auth.identities set last_sign_in_at = now() where user_id = $1",
        &[&user_id],
    )
    .await?;
    let user = users::get(c, user_id).await?;
    super::audit::record(
        c,
        ctx.rc.client_ip,
        super::audit::Action::Login,
        user_id,
        json!({"provider": amr}),
    )
    .await?;
    Ok(session_response(ctx, &user, &issued, amr))
}
