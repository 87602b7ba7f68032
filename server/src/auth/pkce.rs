//! PKCE (RFC 7636) for mailed links, as auth-js's `flowType: 'pkce'` uses it: a request that
//! mails a link (signup, otp, recover, e-mail change) may carry `code_challenge`; the link then
//! redirects with a one-time `?code=` instead of tokens in the fragment, and
//! `POST /token?grant_type=pkce {auth_code, code_verifier}` turns code + verifier into a session.
//! Flow state lives in GoTrue's `auth.flow_state`; the code is stored only as its SHA-256.
//! Rejects: malformed challenges (400), unknown or used codes (404 flow_state_not_found), codes
//! older than five minutes (422 flow_state_expired), wrong verifiers (400 bad_code_verifier).

use base64::Engine;
use deadpool_postgres::GenericClient;
use http::Response;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Ctx;
use super::error::AuthError;
use super::session::{ok_json, open_session, parse};
use crate::http::body::Body;

/// Seconds a code stays redeemable after the link was followed (GoTrue's default).
const CODE_TTL_SECS: f64 = 300.0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub challenge: String,
    /// `s256` or `plain`, as stored in auth.flow_state.
    pub method: &'static str,
}

/// The challenge of a request, if it carries one.
pub fn parse_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<Option<Challenge>, AuthError> {
    let Some(challenge) = challenge.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let method = match method.map(str::to_ascii_lowercase).as_deref() {
        Some("s256") | None => "s256",
        Some("plain") => "plain",
        Some(_) => {
            return Err(AuthError::Validation(
                "code_challenge_method must be s256 or plain".into(),
            ));
        }
    };
    let ok_chars = challenge
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !(43..=128).contains(&challenge.len()) || !ok_chars {
        return Err(AuthError::Validation(
            "code_challenge must be 43 to 128 URL-safe characters".into(),
        ));
    }
    Ok(Some(Challenge {
        challenge: challenge.to_owned(),
        method,
    }))
}

/// Does `verifier` answer `challenge`?
pub fn verifies(verifier: &str, challenge: &str, method: &str) -> bool {
    let derived = match method {
        "plain" => verifier.to_owned(),
        _ => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier)),
    };
    // Constant time: the challenge is not secret, but the comparison costs nothing to harden.
    use subtle::ConstantTimeEq;
    derived.len() == challenge.len() && bool::from(derived.as_bytes().ct_eq(challenge.as_bytes()))
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Records a flow for the link about to be mailed.
pub async fn start<C: GenericClient>(
    c: &C,
    user_id: Uuid,
    ch: &Challenge,
    auth_method: &str,
) -> Result<(), AuthError> {
    // Flows nobody finished within a day are dead; drop them as new ones start.
    c.execute(
        "delete from auth.flow_state where created_at < now() - interval '1 day'",
        &[],
    )
    .await?;
    c.execute(
        "insert into auth.flow_state (id, user_id, auth_code, code_challenge_method, \
           code_challenge, provider_type, created_at, updated_at, authentication_method) \
         values ($1, $2, '', $3::text::auth.code_challenge_method, $4, 'email', now(), now(), $5)",
        &[
            &Uuid::new_v4(),
            &user_id,
            &ch.method,
            &ch.challenge,
            &auth_method,
        ],
    )
    .await?;
    Ok(())
}

/// When the followed link belongs to a PKCE flow: a fresh one-time code for it.
pub async fn issue_code<C: GenericClient>(
    c: &C,
    user_id: Uuid,
    auth_method: &str,
    ctx: &Ctx<'_>,
) -> Result<Option<String>, AuthError> {
    let code = Uuid::new_v4().to_string();
    let n = c
        .execute(
            "update auth.flow_state set auth_code = $3, auth_code_issued_at = now(), \
               updated_at = now() \
             where id = (select id from auth.flow_state where user_id = $1 \
               and authentication_method = $2 and auth_code_issued_at is null \
               and created_at > now() - make_interval(secs => $4) \
               order by created_at desc limit 1)",
            &[
                &user_id,
                &auth_method,
                &sha256_hex(&code),
                &(ctx.auth.config.otp_exp_secs as f64),
            ],
        )
        .await?;
    Ok((n == 1).then_some(code))
}

#[derive(Deserialize)]
struct PkceGrant {
    auth_code: Option<String>,
    code_verifier: Option<String>,
}

/// `POST /token?grant_type=pkce`.
pub async fn grant(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    let b: PkceGrant = parse(ctx)?;
    let (Some(code), Some(verifier)) = (
        b.auth_code.filter(|c| !c.is_empty() && c.len() <= 128),
        b.code_verifier.filter(|v| !v.is_empty() && v.len() <= 128),
    ) else {
        return Err(AuthError::Validation(
            "invalid request: both auth code and code verifier should be non-empty".into(),
        ));
    };
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "select id, user_id, code_challenge_method::text, code_challenge, \
               authentication_method, auth_code_issued_at < now() - make_interval(secs => $2) \
             from auth.flow_state where auth_code = $1 and auth_code_issued_at is not null \
             for update",
            &[&sha256_hex(&code), &CODE_TTL_SECS],
        )
        .await?
        .ok_or(AuthError::FlowStateNotFound)?;
    let (id, user_id): (Uuid, Option<Uuid>) = (row.get(0), row.get(1));
    let user_id = user_id.ok_or(AuthError::FlowStateNotFound)?;
    let (method, challenge, auth_method): (String, String, String) =
        (row.get(2), row.get(3), row.get(4));
    if row.get::<_, bool>(5) {
        tx.execute("delete from auth.flow_state where id = $1", &[&id])
            .await?;
        tx.commit().await?;
        return Err(AuthError::FlowStateExpired);
    }
    if !verifies(&verifier, &challenge, &method) {
        return Err(AuthError::BadCodeVerifier);
    }
    tx.execute("delete from auth.flow_state where id = $1", &[&id])
        .await?;
    let mut session = open_session(ctx, &tx, user_id, &auth_method).await?;
    tx.commit().await?;
    session["redirect_type"] = serde_json::Value::Null;
    ok_json(&session)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636, appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_example() {
        assert!(verifies(VERIFIER, CHALLENGE, "s256"));
        assert!(!verifies("something-else", CHALLENGE, "s256"));
        assert!(verifies(CHALLENGE, CHALLENGE, "plain"));
        assert!(!verifies(VERIFIER, CHALLENGE, "plain"));
    }

    #[test]
    fn challenges() {
        assert_eq!(parse_challenge(None, None).unwrap(), None);
        assert_eq!(parse_challenge(Some(""), Some("s256")).unwrap(), None);
        let c = parse_challenge(Some(CHALLENGE), Some("S256"))
            .unwrap()
            .unwrap();
        assert_eq!(c.method, "s256");
        assert_eq!(
            parse_challenge(Some(CHALLENGE), Some("plain"))
                .unwrap()
                .unwrap()
                .method,
            "plain"
        );
        for (ch, m) in [
            (CHALLENGE, "md5"),
            ("short", "s256"),
            (&"a".repeat(129)[..], "s256"),
            ("E9Melhoa2OwvFr+MaZl5q9nDHi0GeRTh9n1zMsgFoGM/", "s256"),
        ] {
            assert!(parse_challenge(Some(ch), Some(m)).is_err(), "{ch} {m}");
        }
    }
}
