//! Sessions and their refresh tokens. Refresh tokens are opaque random strings stored only as
//! SHA-256 hashes, rotated on every use. Presenting an already rotated token inside the reuse
//! window (two tabs refreshing at once) mints a sibling token for the same session; outside the
//! window it is treated as theft: the whole session (and with it every token of the family) is
//! deleted and the request refused.
//! Rejects: unknown tokens (`refresh_token_not_found`), reuse outside the window
//! (`refresh_token_already_used`), tokens of expired sessions.

use std::net::IpAddr;

use base64::Engine;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::AuthError;

/// A fresh opaque token: 32 random bytes, base64url.
pub fn new_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// What is stored for a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The session a (new or rotated) refresh token belongs to.
#[derive(Debug, Clone)]
pub struct Issued {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub refresh_token: String,
    pub session_created_at: DateTime<Utc>,
}

async fn insert_token<C: GenericClient>(
    c: &C,
    user_id: Uuid,
    session_id: Uuid,
    parent: Option<&str>,
) -> Result<String, AuthError> {
    let token = new_token();
    let st = c
        .prepare_cached(
            "insert into auth.refresh_tokens (instance_id, token, user_id, revoked, created_at, \
           updated_at, parent, session_id) \
         values ('00000000-0000-0000-0000-000000000000', $1, $2::uuid::text, false, now(), now(), \
           $3, $4)",
        )
        .await?;
    c.execute(&st, &[&hash(&token), &user_id, &parent, &session_id])
        .await?;
    Ok(token)
}

/// Opens a session for `user_id` with its first refresh token.
pub async fn create_session<C: GenericClient>(
    c: &C,
    user_id: Uuid,
    ip: IpAddr,
    user_agent: Option<&str>,
) -> Result<Issued, AuthError> {
    let session_id = Uuid::new_v4();
    let row = c
        .query_one(
            "insert into auth.sessions (id, user_id, created_at, updated_at, aal, user_agent, ip) \
             values ($1, $2, now(), now(), 'aal1', $3, $4::text::inet) returning created_at",
            &[&session_id, &user_id, &user_agent, &ip.to_string()],
        )
        .await?;
    let refresh_token = insert_token(c, user_id, session_id, None).await?;
    Ok(Issued {
        session_id,
        user_id,
        refresh_token,
        session_created_at: row.get(0),
    })
}

/// Rotates `presented`. Must run inside a transaction: the token row is locked so that two
/// concurrent refreshes of one token serialize (the second one then sees it revoked).
/// On reuse outside the window the session is deleted and `Ok(Err(..))` is returned so the caller
/// commits the deletion before answering with the error.
pub async fn rotate<C: GenericClient>(
    c: &C,
    presented: &str,
    reuse_window_secs: i64,
    ip: IpAddr,
) -> Result<Result<Issued, AuthError>, AuthError> {
    let h = hash(presented);
    let select = c
        .prepare_cached(
            "select rt.revoked, extract(epoch from now() - rt.updated_at)::float8, \
               rt.session_id, s.user_id, s.created_at, (s.not_after is not null and s.not_after < now()) \
             from auth.refresh_tokens rt join auth.sessions s on s.id = rt.session_id \
             where rt.token = $1 for update of rt",
        )
        .await?;
    let Some(row) = c.query_opt(&select, &[&h]).await? else {
        return Ok(Err(AuthError::RefreshTokenNotFound));
    };
    let revoked: Option<bool> = row.get(0);
    let age_secs: f64 = row.get(1);
    let session_id: Uuid = row.get(2);
    let user_id: Uuid = row.get(3);
    let session_created_at: Option<DateTime<Utc>> = row.get(4);
    let expired: bool = row.get(5);
    if expired {
        c.execute("delete from auth.sessions where id = $1", &[&session_id])
            .await?;
        return Ok(Err(AuthError::SessionNotFound));
    }
    if revoked.unwrap_or(false) && age_secs > reuse_window_secs as f64 {
        c.execute("delete from auth.sessions where id = $1", &[&session_id])
            .await?;
        tracing::warn!(session = %session_id, user = %user_id, "refresh token reused outside the window; session revoked");
        super::audit::record(
            c,
            ip,
            super::audit::Action::TokenRevoked,
            user_id,
            serde_json::json!({"reason": "refresh_token_reused", "session_id": session_id}),
        )
        .await?;
        return Ok(Err(AuthError::RefreshTokenAlreadyUsed));
    }
    // The writes are independent of each other: send them pipelined, one round trip.
    let (revoke_st, sweep_st, touch_st) = tokio::try_join!(
        c.prepare_cached(
            "update auth.refresh_tokens set revoked = true, updated_at = now() where token = $1"
        ),
        c.prepare_cached(
            "delete from auth.refresh_tokens where session_id = $1 and revoked \
             and updated_at < now() - interval '1 day'"
        ),
        c.prepare_cached(
            "update auth.sessions set refreshed_at = now() at time zone 'utc', updated_at = now() \
             where id = $1"
        ),
    )?;
    let revoke = async {
        if !revoked.unwrap_or(false) {
            c.execute(&revoke_st, &[&h]).await?;
        }
        Ok::<(), tokio_postgres::Error>(())
    };
    let by_session: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&session_id];
    // Housekeeping: rotated tokens older than a day only ever answer "not found" (reuse
    // detection covers the recent ones), so a long session does not grow without bound.
    let sweep = c.execute(&sweep_st, &by_session);
    let touch = c.execute(&touch_st, &by_session);
    let (refresh_token, revoke, sweep, touch) = tokio::join!(
        insert_token(c, user_id, session_id, Some(&h)),
        revoke,
        sweep,
        touch
    );
    let refresh_token = refresh_token?;
    revoke?;
    sweep?;
    touch?;
    Ok(Ok(Issued {
        session_id,
        user_id,
        refresh_token,
        session_created_at: session_created_at.unwrap_or_else(Utc::now),
    }))
}

/// Which sessions /logout ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Local,
    Global,
    Others,
}

impl Scope {
    pub fn parse(s: Option<&str>) -> Option<Scope> {
        match s {
            None | Some("global") => Some(Scope::Global),
            Some("local") => Some(Scope::Local),
            Some("others") => Some(Scope::Others),
            Some(_) => None,
        }
    }
}

/// Deletes the sessions `scope` names (their refresh tokens go with them).
pub async fn logout<C: GenericClient>(
    c: &C,
    user_id: Uuid,
    session_id: Option<Uuid>,
    scope: Scope,
) -> Result<u64, AuthError> {
    Ok(match (scope, session_id) {
        (Scope::Local, Some(sid)) => {
            c.execute(
                "delete from auth.sessions where id = $1 and user_id = $2",
                &[&sid, &user_id],
            )
            .await?
        }
        (Scope::Others, Some(sid)) => {
            c.execute(
                "delete from auth.sessions where user_id = $1 and id <> $2",
                &[&user_id, &sid],
            )
            .await?
        }
        // A token without a session id: local/others cannot tell sessions apart, end them all.
        _ => {
            c.execute("delete from auth.sessions where user_id = $1", &[&user_id])
                .await?
        }
    })
}

/// True when the session still exists (not logged out, not revoked).
pub async fn session_exists<C: GenericClient>(c: &C, session_id: Uuid) -> Result<bool, AuthError> {
    Ok(c.query_opt(
        "select 1 from auth.sessions where id = $1 and (not_after is null or not_after > now())",
        &[&session_id],
    )
    .await?
    .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash(&a), hash(&a));
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), a);
    }

    #[test]
    fn scopes() {
        assert_eq!(Scope::parse(None), Some(Scope::Global));
        assert_eq!(Scope::parse(Some("local")), Some(Scope::Local));
        assert_eq!(Scope::parse(Some("others")), Some(Scope::Others));
        assert_eq!(Scope::parse(Some("everyone")), None);
    }
}
