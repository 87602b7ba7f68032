//! The user-facing endpoints: signup (password and anonymous), token (password and refresh_token
//! grants), GET/PUT user, logout, settings and health (the helpers they share with the mail and
//! admin endpoints are in `session`).
//! Rejects: malformed or mistyped JSON (400 bad_json), missing or overlong fields (400
//! validation_failed), weak passwords (422), wrong credentials (400 invalid_credentials, same body
//! and same work for an unknown user), bad tokens (401), ended sessions (403 session_not_found).

use deadpool_postgres::GenericClient;
use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Ctx;
use super::error::AuthError;
use super::password::Verified;
use super::ratelimit::{self, Class};
use super::refresh::{self, Scope};
use super::session::MAX_PASSWORD_BYTES;
use super::session::{
    check_password_strength, commit_and_mail, ip_key, metadata_object, ok_json, open_session,
    parse, rate_limit, session_response, signed_in,
};
use super::users::{self, NewUser};
use crate::http::body::{self, Body};

/// Whether the token's session was opened by a recovery code or link within the last `window_secs`:
/// that proved control of the mailbox just now, as a reauthentication nonce would, so the password
/// a forgetful user sets next needs neither the current password nor another code.
pub fn fresh_recovery(claims: &Value, window_secs: i64) -> bool {
    let now = chrono::Utc::now().timestamp();
    claims["amr"].as_array().into_iter().flatten().any(|a| {
        a["method"] == "recovery"
            && a["timestamp"]
                .as_i64()
                .is_some_and(|t| t <= now && now - t <= window_secs)
    })
}

pub fn health() -> Response<Body> {
    body::json(
        StatusCode::OK,
        &json!({
            "version": env!("CARGO_PKG_VERSION"),
            "name": "GoTrue",
            "description": "doska's GoTrue-compatible auth"
        }),
    )
}

pub fn settings(ctx: &Ctx<'_>) -> Response<Body> {
    let c = &ctx.auth.config;
    body::json(
        StatusCode::OK,
        &json!({
            "external": {
                "anonymous_users": c.anonymous_enabled,
                "email": true,
                "phone": false,
            },
            "disable_signup": c.disable_signup,
            "mailer_autoconfirm": c.autoconfirm,
            "phone_autoconfirm": false,
            "sms_provider": "",
            "saml_enabled": false,
        }),
    )
}

#[derive(Deserialize)]
struct SignupBody {
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
    data: Option<Value>,
}

pub async fn signup(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    let b: SignupBody = parse(ctx)?;
    let cfg = &ctx.auth.config;
    let data = Value::Object(metadata_object(b.data, "data")?);
    let challenge = super::pkce::parse_challenge(
        b.code_challenge.as_deref(),
        b.code_challenge_method.as_deref(),
    )?;
    let email = b.email.filter(|e| !e.trim().is_empty());
    if b.phone.as_deref().is_some_and(|p| !p.is_empty()) && email.is_none() {
        return Err(AuthError::Validation(
            "Phone sign-ups are not supported".into(),
        ));
    }
    let Some(email) = email else {
        // Anonymous sign-in.
        rate_limit(ctx, Class::Anonymous, &ip_key(ctx)).await?;
        if !cfg.anonymous_enabled {
            return Err(AuthError::AnonymousDisabled);
        }
        let mut client = ctx.state.admin.get().await?;
        let tx = client.transaction().await?;
        let id = users::insert(
            &tx,
            &NewUser {
                is_anonymous: true,
                ..NewUser::authenticated(None, &data)
            },
        )
        .await?
        .ok_or_else(|| AuthError::Internal("anonymous insert conflicted".into()))?;
        super::audit::record(
            &tx,
            ctx.rc.client_ip,
            super::audit::Action::UserSignedUp,
            id,
            json!({"provider": "anonymous"}),
        )
        .await?;
        let session = open_session(ctx, &tx, id, "anonymous").await?;
        tx.commit().await?;
        return ok_json(&session);
    };
    rate_limit(ctx, Class::SignIn, &ip_key(ctx)).await?;
    if cfg.disable_signup {
        return Err(AuthError::SignupDisabled);
    }
    let email = users::normalize_email(&email)?;
    let password = b
        .password
        .ok_or_else(|| AuthError::Validation("Signup requires a valid password".into()))?;
    check_password_strength(ctx, &password)?;
    let hash = ctx.auth.hasher.hash(&password).await?;
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    let id = users::insert(
        &tx,
        &NewUser {
            encrypted_password: Some(&hash),
            confirmed: cfg.autoconfirm,
            ..NewUser::authenticated(Some(&email), &data)
        },
    )
    .await?
    .ok_or(AuthError::UserAlreadyExists)?;
    super::audit::record(
        &tx,
        ctx.rc.client_ip,
        super::audit::Action::UserSignedUp,
        id,
        json!({"provider": "email"}),
    )
    .await?;
    if cfg.autoconfirm {
        let session = open_session(ctx, &tx, id, "password").await?;
        tx.commit().await?;
        return ok_json(&session);
    }
    super::mail::send_link_with_pkce(
        ctx,
        &tx,
        id,
        &email,
        super::mail::LinkKind::Signup,
        challenge.as_ref(),
    )
    .await?;
    let user = users::get(&tx, id).await?;
    commit_and_mail(ctx, tx, &user.to_json()).await
}

#[derive(Deserialize)]
struct PasswordGrant {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
struct RefreshGrant {
    refresh_token: Option<String>,
}

pub async fn token(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    match ctx.q("grant_type") {
        Some("password") => password_grant(ctx).await,
        Some("refresh_token") => refresh_grant(ctx).await,
        Some("pkce") => super::pkce::grant(ctx).await,
        // Grants of features doska does not have: GoTrue's answers with them switched off.
        Some("web3") => Err(AuthError::Web3Disabled),
        Some("id_token") => Err(AuthError::ProviderDisabled(id_token_issuer(ctx))),
        _ => Err(AuthError::UnsupportedGrantType),
    }
}

/// The issuer GoTrue names when an ID token's provider is not enabled: the well-known issuer of
/// `provider`, else the `issuer` or `provider` the client sent.
fn id_token_issuer(ctx: &Ctx<'_>) -> String {
    let b: Value = serde_json::from_slice(&ctx.body).unwrap_or(Value::Null);
    let provider = b["provider"].as_str().unwrap_or_default();
    match provider {
        "google" => "https://accounts.google.com".into(),
        "apple" => "https://appleid.apple.com".into(),
        _ => b["issuer"]
            .as_str()
            .unwrap_or(provider)
            .chars()
            .take(200)
            .collect(),
    }
}

async fn password_grant(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    rate_limit(ctx, Class::SignIn, &ip_key(ctx)).await?;
    let b: PasswordGrant = parse(ctx)?;
    let password = b.password.unwrap_or_default();
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::InvalidCredentials);
    }
    let email = match (b.email.as_deref(), b.phone.as_deref()) {
        (Some(e), _) if !e.is_empty() => users::email_key(e),
        (_, Some(p)) if !p.is_empty() => return Err(AuthError::InvalidCredentials),
        _ => {
            return Err(AuthError::Validation(
                "Sign in requires an email and a password".into(),
            ));
        }
    };
    if email.len() > 255 {
        return Err(AuthError::InvalidCredentials);
    }
    let ip = ip_key(ctx);
    ratelimit::sign_in_allowed(ctx.auth.limiter.as_ref(), &ip, &email)
        .await
        .map_err(|retry_after_secs| AuthError::RateLimited { retry_after_secs })?;
    let client = ctx.state.admin.get().await?;
    let user = users::by_email(&client, &email).await?;
    drop(client);
    // Same work and same answer whether the user is unknown or the password wrong.
    let stored = user.as_ref().and_then(|u| u.encrypted_password.as_deref());
    let verified = ctx.auth.hasher.verify(&password, stored).await?;
    let (user, rehash) = match (user, verified) {
        (Some(u), Verified::Yes { rehash }) => (u, rehash),
        _ => {
            ratelimit::sign_in_failed(ctx.auth.limiter.as_ref(), &ip, &email).await;
            return Err(AuthError::InvalidCredentials);
        }
    };
    let now = chrono::Utc::now();
    if user.is_banned(now) {
        return Err(AuthError::UserBanned);
    }
    if user.email_confirmed_at.is_none() && !ctx.auth.config.autoconfirm {
        return Err(AuthError::EmailNotConfirmed);
    }
    let new_hash = if rehash {
        Some(ctx.auth.hasher.hash(&password).await?)
    } else {
        None
    };
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    if let Some(h) = new_hash {
        tx.execute(
            "update auth.users set encrypted_password = $2 where id = $1",
            &[&user.id, &h],
        )
        .await?;
    }
    let session = open_session(ctx, &tx, user.id, "password").await?;
    tx.commit().await?;
    ok_json(&session)
}

async fn refresh_grant(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    rate_limit(ctx, Class::Refresh, &ip_key(ctx)).await?;
    let b: RefreshGrant = parse(ctx)?;
    let presented = b
        .refresh_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AuthError::Validation("refresh_token required".into()))?;
    if presented.len() > 255 {
        return Err(AuthError::RefreshTokenNotFound);
    }
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    let issued = match refresh::rotate(
        &tx,
        &presented,
        ctx.auth.config.refresh_reuse_window_secs,
        ctx.rc.client_ip,
    )
    .await?
    {
        Ok(i) => i,
        Err(e) => {
            // Commit the family revocation before refusing.
            tx.commit().await?;
            return Err(e);
        }
    };
    let user = users::by_id(&tx, issued.user_id)
        .await?
        .ok_or(AuthError::RefreshTokenNotFound)?;
    if user.is_banned(chrono::Utc::now()) {
        return Err(AuthError::UserBanned);
    }
    let amr = if user.is_anonymous {
        "anonymous"
    } else {
        "password"
    };
    let session = session_response(ctx, &user, &issued, amr);
    tx.commit().await?;
    ok_json(&session)
}

pub async fn get_user(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    let client = ctx.state.admin.get().await?;
    let me = signed_in(ctx, &client).await?;
    let user = users::get(&client, me.user_id).await?;
    ok_json(&user.to_json())
}

#[derive(Deserialize)]
struct UpdateUserBody {
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    email: Option<String>,
    password: Option<String>,
    current_password: Option<String>,
    nonce: Option<String>,
    data: Option<Value>,
}

pub async fn update_user(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    let b: UpdateUserBody = parse(ctx)?;
    let patch = metadata_object(b.data.clone(), "data")?;
    let challenge = super::pkce::parse_challenge(
        b.code_challenge.as_deref(),
        b.code_challenge_method.as_deref(),
    )?;
    let new_email = match b.email.as_deref().filter(|e| !e.is_empty()) {
        Some(e) => Some(users::normalize_email(e)?),
        None => None,
    };
    let new_hash = match &b.password {
        Some(p) => {
            check_password_strength(ctx, p)?;
            Some(p.clone())
        }
        None => None,
    };
    let (user, claims) = {
        // Released before any hashing, so slow password work never holds a connection.
        let client = ctx.state.admin.get().await?;
        let me = signed_in(ctx, &client).await?;
        (users::get(&client, me.user_id).await?, me.claims)
    };
    // Password change: refuse the same password, and check the current password or the
    // reauthentication nonce (consumed in the transaction below).
    let mut nonce_to_consume = None;
    let new_hash = match new_hash {
        Some(p) => {
            let stored = user.encrypted_password.as_deref().filter(|s| !s.is_empty());
            if let Some(s) = stored
                && matches!(
                    ctx.auth.hasher.verify(&p, Some(s)).await?,
                    Verified::Yes { .. }
                )
            {
                return Err(AuthError::SamePassword);
            }
            if ctx.auth.config.secure_password_change
                && stored.is_some()
                && !fresh_recovery(&claims, ctx.auth.config.otp_exp_secs)
            {
                match (&b.current_password, &b.nonce) {
                    (Some(cur), _) => {
                        // A stolen access token must not become a password-guessing oracle:
                        // only its holder can fail here, so the failures count per user.
                        let key = format!("user {}", user.id);
                        ctx.auth
                            .limiter
                            .check(Class::SignInFailure, &key)
                            .await
                            .map_err(|retry_after_secs| AuthError::RateLimited {
                                retry_after_secs,
                            })?;
                        if ctx.auth.hasher.verify(cur, stored).await? == Verified::No {
                            let _ = ctx.auth.limiter.record(Class::SignInFailure, &key).await;
                            return Err(AuthError::InvalidCredentials);
                        }
                    }
                    (None, Some(nonce)) => nonce_to_consume = Some(nonce.clone()),
                    (None, None) => return Err(AuthError::ReauthenticationNeeded),
                }
            }
            Some(ctx.auth.hasher.hash(&p).await?)
        }
        None => None,
    };
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    if let Some(nonce) = nonce_to_consume {
        super::mail::consume_reauth_nonce(&tx, user.id, &nonce, ctx).await?;
    }
    if !patch.is_empty() {
        let stored: Option<Value> = tx
            .query_one(
                "select raw_user_meta_data from auth.users where id = $1 for update",
                &[&user.id],
            )
            .await?
            .get(0);
        let merged = users::merge_metadata(&stored.unwrap_or(Value::Null), &patch);
        super::session::check_metadata_size(
            merged.as_object().expect("merge makes an object"),
            "data",
        )?;
        tx.execute(
            "update auth.users set raw_user_meta_data = $2, updated_at = now() where id = $1",
            &[&user.id, &merged],
        )
        .await?;
    }
    let password_changed = new_hash.is_some();
    if let Some(h) = new_hash {
        tx.execute(
            "update auth.users set encrypted_password = $2, updated_at = now() where id = $1",
            &[&user.id, &h],
        )
        .await?;
    }
    if let Some(email) = new_email.filter(|e| Some(e) != user.email.as_ref()) {
        let taken = tx
            .query_opt(
                "select 1 from auth.users where email = $1 and id <> $2 and is_sso_user = false",
                &[&email, &user.id],
            )
            .await?
            .is_some();
        if taken {
            return Err(AuthError::EmailExists);
        }
        if ctx.auth.config.autoconfirm || user.is_anonymous {
            // No mail server to confirm through: the change applies at once (GoTrue does the same
            // with autoconfirm).
            tx.execute(
                "update auth.users set email = $2, email_confirmed_at = coalesce(email_confirmed_at, now()), \
                   is_anonymous = false, updated_at = now(), \
                   raw_app_meta_data = coalesce(raw_app_meta_data, '{}'::jsonb) || \
                     '{\"provider\": \"email\", \"providers\": [\"email\"]}'::jsonb where id = $1",
                &[&user.id, &email],
            )
            .await?;
            tx.execute(
                "insert into auth.identities (provider_id, user_id, identity_data, provider, created_at, updated_at) \
                 values ($1::uuid::text, $1, jsonb_build_object('sub', $1::uuid::text, 'email', $2::text, \
                   'email_verified', true, 'phone_verified', false), 'email', now(), now()) \
                 on conflict (provider_id, provider) do update set identity_data = excluded.identity_data, \
                   updated_at = now()",
                &[&user.id, &email],
            )
            .await?;
        } else {
            if let Some(ch) = &challenge {
                let method = super::mail::LinkKind::EmailChange.auth_method();
                super::pkce::start(&tx, user.id, ch, method).await?;
            }
            super::mail::send_email_change(ctx, &tx, user.id, &email).await?;
        }
    }
    let action = if password_changed {
        super::audit::Action::UserUpdatedPassword
    } else {
        super::audit::Action::UserModified
    };
    super::audit::record(&tx, ctx.rc.client_ip, action, user.id, json!({})).await?;
    let user = users::get(&tx, user.id).await?;
    commit_and_mail(ctx, tx, &user.to_json()).await
}

pub async fn logout(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    let scope = Scope::parse(ctx.q("scope"))
        .ok_or_else(|| AuthError::Validation("scope must be local, global or others".into()))?;
    let client = ctx.state.admin.get().await?;
    let me = signed_in(ctx, &client).await?;
    refresh::logout(&client, me.user_id, me.session_id, scope).await?;
    super::audit::record(
        &client,
        ctx.rc.client_ip,
        super::audit::Action::Logout,
        me.user_id,
        json!({"scope": format!("{scope:?}").to_lowercase()}),
    )
    .await?;
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_recovery_table() {
        let now = chrono::Utc::now().timestamp();
        let amr = |method: &str, t: i64| json!({"amr": [{"method": method, "timestamp": t}]});
        let cases = [
            (amr("recovery", now - 60), true),
            (amr("recovery", now - 3600), true),
            (amr("recovery", now - 3601), false),
            (amr("recovery", now + 600), false),
            (amr("password", now), false),
            (amr("otp", now), false),
            (json!({"amr": "recovery"}), false),
            (json!({}), false),
            (json!({"amr": [{"method": "recovery"}]}), false),
        ];
        for (claims, want) in cases {
            assert_eq!(fresh_recovery(&claims, 3600), want, "{claims}");
        }
    }
}
