//! The admin user API (`/admin/users`), for callers holding the service_role key: create users
//! with a password or an imported argon2/bcrypt hash, list them with GoTrue's paging headers,
//! read, update (metadata, role, ban, password) and delete them.
//! Rejects: any caller whose role is not service_role (403 not_admin), roles that are not
//! `authenticated` or a member of it (400), unsupported imported hashes, malformed ban durations.

use http::{HeaderValue, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Ctx;
use super::error::AuthError;
use super::session::{check_password_strength, metadata_object, ok_json, parse};
use super::users::{self, NewUser};
use crate::http::body::{self, Body};

const MAX_PER_PAGE: i64 = 1000;

/// Fails unless the request carries the service_role key (or another service_role token).
pub fn require_admin(ctx: &Ctx<'_>) -> Result<(), AuthError> {
    let caller = ctx
        .state
        .verifier
        .caller(ctx.headers)
        .map_err(|e| AuthError::BadJwt(e.message().into()))?;
    if caller.role == "service_role" {
        Ok(())
    } else {
        Err(AuthError::NotAdmin)
    }
}

#[derive(Deserialize, Default)]
pub struct AdminUserBody {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub password: Option<String>,
    pub password_hash: Option<String>,
    pub email_confirm: Option<bool>,
    pub user_metadata: Option<Value>,
    pub app_metadata: Option<Value>,
    pub role: Option<String>,
    pub ban_duration: Option<String>,
    pub id: Option<Uuid>,
}

/// A Go duration as GoTrue accepts for `ban_duration` ("24h", "1h30m", "90s"), or "none".
pub fn parse_ban(s: &str) -> Result<Option<chrono::Duration>, AuthError> {
    let bad = || AuthError::Validation(format!("invalid ban_duration: {s:?}"));
    if s == "none" {
        return Ok(None);
    }
    let mut total_ms: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else {
            return Err(bad());
        };
        total_ms = total_ms.checked_add(n * unit_ms).ok_or_else(bad)?;
        rest = &rest[len..];
    }
    Ok(Some(chrono::Duration::milliseconds(total_ms)))
}

pub async fn create(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    require_admin(ctx)?;
    let b: AdminUserBody = parse(ctx)?;
    let email = match b.email.as_deref().filter(|e| !e.is_empty()) {
        Some(e) => users::normalize_email(e)?,
        None => {
            return Err(AuthError::Validation(
                "Unable to validate email address: an email is required".into(),
            ));
        }
    };
    if b.phone.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(AuthError::Validation(
            "Phone users are not supported".into(),
        ));
    }
    let user_meta = Value::Object(metadata_object(b.user_metadata, "user_metadata")?);
    let app_meta = Value::Object(metadata_object(b.app_metadata, "app_metadata")?);
    let hash = match (&b.password, &b.password_hash) {
        (Some(_), Some(_)) => {
            return Err(AuthError::Validation(
                "Only one of password or password_hash may be given".into(),
            ));
        }
        (Some(p), None) => {
            check_password_strength(ctx, p)?;
            Some(ctx.auth.hasher.hash(p).await?)
        }
        (None, Some(h)) => {
            if !super::password::is_supported_hash(h) || h.len() > 255 {
                return Err(AuthError::Validation(
                    "password_hash must be an argon2 PHC string or a bcrypt hash".into(),
                ));
            }
            Some(h.clone())
        }
        (None, None) => None,
    };
    let role = b.role.clone().unwrap_or_else(|| "authenticated".into());
    let ban = b
        .ban_duration
        .as_deref()
        .map(parse_ban)
        .transpose()?
        .flatten();
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    users::check_assignable_role(&tx, &role).await?;
    let id = users::insert(
        &tx,
        &NewUser {
            encrypted_password: hash.as_deref(),
            confirmed: b.email_confirm.unwrap_or(false),
            app_metadata: &app_meta,
            role: &role,
            ..NewUser::authenticated(Some(&email), &user_meta)
        },
    )
    .await?
    .ok_or(AuthError::EmailExists)?;
    super::audit::record(
        &tx,
        ctx.rc.client_ip,
        super::audit::Action::UserSignedUp,
        id,
        json!({"provider": "email", "by": "service_role"}),
    )
    .await?;
    if let Some(d) = ban {
        tx.execute(
            "update auth.users set banned_until = now() + make_interval(secs => $2) where id = $1",
            &[&id, &(d.num_milliseconds() as f64 / 1000.0)],
        )
        .await?;
    }
    let user = users::get(&tx, id).await?;
    tx.commit().await?;
    ok_json(&user.to_json())
}

pub async fn list(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    require_admin(ctx)?;
    let num =
        |k: &str, default: i64| -> Result<i64, AuthError> {
            match ctx.q(k).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    AuthError::Validation(format!("{k} must be a positive integer"))
                }),
            }
        };
    let page = num("page", 1)?;
    let per_page = num("per_page", 50)?.min(MAX_PER_PAGE);
    let client = ctx.state.admin.get().await?;
    let total: i64 = client
        .query_one("select count(*) from auth.users", &[])
        .await?
        .get(0);
    let out: Vec<Value> = users::page(&client, per_page, (page - 1).saturating_mul(per_page))
        .await?
        .iter()
        .map(users::User::to_json)
        .collect();
    let mut resp = body::json(
        StatusCode::OK,
        &json!({ "users": out, "aud": "authenticated" }),
    );
    let last = ((total + per_page - 1) / per_page).max(1);
    let mut links = vec![];
    if page < last {
        links.push(format!(
            "</admin/users?page={}&per_page={per_page}>; rel=\"next\"",
            page + 1
        ));
    }
    links.push(format!(
        "</admin/users?page={last}&per_page={per_page}>; rel=\"last\""
    ));
    let h = resp.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
        h.insert(http::header::LINK, v);
    }
    Ok(resp)
}

pub async fn get(ctx: &Ctx<'_>, id: Uuid) -> Result<Response<Body>, AuthError> {
    require_admin(ctx)?;
    let client = ctx.state.admin.get().await?;
    let user = users::get(&client, id).await?;
    ok_json(&user.to_json())
}

pub async fn update(ctx: &Ctx<'_>, id: Uuid) -> Result<Response<Body>, AuthError> {
    require_admin(ctx)?;
    let b: AdminUserBody = parse(ctx)?;
    let user_patch = metadata_object(b.user_metadata, "user_metadata")?;
    let app_patch = metadata_object(b.app_metadata, "app_metadata")?;
    let email = match b.email.as_deref().filter(|e| !e.is_empty()) {
        Some(e) => Some(users::normalize_email(e)?),
        None => None,
    };
    let hash = match (&b.password, &b.password_hash) {
        (Some(p), _) => {
            check_password_strength(ctx, p)?;
            Some(ctx.auth.hasher.hash(p).await?)
        }
        (None, Some(h)) if super::password::is_supported_hash(h) && h.len() <= 255 => {
            Some(h.clone())
        }
        (None, Some(_)) => {
            return Err(AuthError::Validation(
                "password_hash must be an argon2 PHC string or a bcrypt hash".into(),
            ));
        }
        (None, None) => None,
    };
    let ban = b.ban_duration.as_deref().map(parse_ban).transpose()?;
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    let Some(row) = tx
        .query_opt(
            "select raw_user_meta_data, raw_app_meta_data from auth.users where id = $1 for update",
            &[&id],
        )
        .await?
    else {
        return Err(AuthError::UserNotFound);
    };
    if let Some(role) = &b.role {
        users::check_assignable_role(&tx, role).await?;
        tx.execute(
            "update auth.users set role = $2 where id = $1",
            &[&id, role],
        )
        .await?;
    }
    // Each patch merges into the stored column it was read from (`row`'s columns in this order).
    let patches = [
        (&user_patch, "raw_user_meta_data"),
        (&app_patch, "raw_app_meta_data"),
    ];
    for (i, (patch, column)) in patches.into_iter().enumerate() {
        if !patch.is_empty() {
            let stored: Option<Value> = row.get(i);
            let merged = users::merge_metadata(&stored.unwrap_or(Value::Null), patch);
            let field = column
                .trim_start_matches("raw_")
                .replace("meta_data", "metadata");
            super::session::check_metadata_size(
                merged.as_object().expect("merge makes an object"),
                &field,
            )?;
            let sql = format!("update auth.users set {column} = $2 where id = $1");
            tx.execute(&sql, &[&id, &merged]).await?;
        }
    }
    if let Some(h) = hash {
        tx.execute(
            "update auth.users set encrypted_password = $2 where id = $1",
            &[&id, &h],
        )
        .await?;
    }
    if let Some(e) = email {
        let taken = tx
            .query_opt(
                "select 1 from auth.users where email = $1 and id <> $2 and is_sso_user = false",
                &[&e, &id],
            )
            .await?
            .is_some();
        if taken {
            return Err(AuthError::EmailExists);
        }
        tx.execute("update auth.users set email = $2 where id = $1", &[&id, &e])
            .await?;
        tx.execute(
            "update auth.identities set identity_data = identity_data || jsonb_build_object('email', $2::text) \
             where user_id = $1 and provider = 'email'",
            &[&id, &e],
        )
        .await?;
    }
    if b.email_confirm == Some(true) {
        tx.execute(
            "update auth.users set email_confirmed_at = coalesce(email_confirmed_at, now()) where id = $1",
            &[&id],
        )
        .await?;
    }
    match ban {
        Some(Some(d)) => {
            tx.execute(
                "update auth.users set banned_until = now() + make_interval(secs => $2) where id = $1",
                &[&id, &(d.num_milliseconds() as f64 / 1000.0)],
            )
            .await?;
            // A banned user's sessions end now.
            tx.execute("delete from auth.sessions where user_id = $1", &[&id])
                .await?;
        }
        Some(None) => {
            tx.execute(
                "update auth.users set banned_until = null where id = $1",
                &[&id],
            )
            .await?;
        }
        None => {}
    }
    tx.execute(
        "update auth.users set updated_at = now() where id = $1",
        &[&id],
    )
    .await?;
    super::audit::record(
        &tx,
        ctx.rc.client_ip,
        super::audit::Action::UserModified,
        id,
        json!({"by": "service_role"}),
    )
    .await?;
    let user = users::get(&tx, id).await?;
    tx.commit().await?;
    ok_json(&user.to_json())
}

#[derive(Deserialize, Default)]
struct DeleteBody {
    should_soft_delete: Option<bool>,
}

pub async fn delete(ctx: &Ctx<'_>, id: Uuid) -> Result<Response<Body>, AuthError> {
    require_admin(ctx)?;
    let b: DeleteBody = parse(ctx)?;
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    let user = users::get(&tx, id).await?;
    super::audit::record(
        &tx,
        ctx.rc.client_ip,
        super::audit::Action::UserDeleted,
        id,
        json!({"by": "service_role", "soft": b.should_soft_delete.unwrap_or(false)}),
    )
    .await?;
    if b.should_soft_delete.unwrap_or(false) {
        // GoTrue's soft delete: keep the row (foreign keys stay valid), scrub what identifies it,
        // end its sessions and make it unable to sign in.
        tx.execute(
            "update auth.users set deleted_at = now(), email = null, phone = null, \
               encrypted_password = '', raw_app_meta_data = '{}'::jsonb, \
               raw_user_meta_data = '{}'::jsonb, banned_until = 'infinity' where id = $1",
            &[&id],
        )
        .await?;
        tx.execute("delete from auth.identities where user_id = $1", &[&id])
            .await?;
        tx.execute("delete from auth.sessions where user_id = $1", &[&id])
            .await?;
    } else {
        tx.execute("delete from auth.users where id = $1", &[&id])
            .await?;
    }
    tx.commit().await?;
    ok_json(&user.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_durations() {
        let ok = |s: &str| parse_ban(s).unwrap().map(|d| d.num_milliseconds());
        assert_eq!(ok("none"), None);
        assert_eq!(ok("24h"), Some(86_400_000));
        assert_eq!(ok("1h30m"), Some(5_400_000));
        assert_eq!(ok("90s"), Some(90_000));
        assert_eq!(ok("250ms"), Some(250));
        for bad in ["", "h", "10", "10d", "-1h", "1h-", "9999999999h"] {
            assert!(parse_ban(bad).is_err(), "{bad}");
        }
    }
}
