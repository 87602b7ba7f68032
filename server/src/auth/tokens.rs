//! Access tokens and the session object: GoTrue's claim set (iss, sub, aud, exp, iat, email, phone,
//! role, app_metadata, user_metadata, aal, amr, session_id, is_anonymous), HS256-signed with the
//! shared secret, and the JSON session auth-js stores. Pure: no I/O.
//! Rejects nothing; callers pass an already-authorized user and session.

use serde_json::{Value, json};
use uuid::Uuid;

use super::users::User;

/// What the token is for: the user, their session and how they signed in.
pub struct TokenInput<'a> {
    pub user: &'a User,
    pub session_id: Uuid,
    /// Authentication method reference, e.g. "password", "anonymous", "otp".
    pub amr_method: &'a str,
    /// When that sign-in happened (unix seconds).
    pub amr_timestamp: i64,
}

/// The claims of an access token issued at `now` for `exp_secs`.
pub fn access_claims(input: &TokenInput<'_>, issuer: &str, now: i64, exp_secs: i64) -> Value {
    let u = input.user;
    json!({
        "iss": issuer,
        "sub": u.id.to_string(),
        "aud": u.aud,
        "exp": now + exp_secs,
        "iat": now,
        "email": u.email.clone().unwrap_or_default(),
        "phone": u.phone.clone().unwrap_or_default(),
        "app_metadata": u.app_metadata,
        "user_metadata": u.user_metadata,
        "role": u.role,
        "aal": "aal1",
        "amr": [{ "method": input.amr_method, "timestamp": input.amr_timestamp }],
        "session_id": input.session_id.to_string(),
        "is_anonymous": u.is_anonymous,
    })
}

/// The session object of /token and /signup (auth-js checks access_token, refresh_token and
/// expires_in, and reads expires_at).
pub fn session_body(
    access_token: &str,
    refresh_token: &str,
    now: i64,
    exp_secs: i64,
    user: &Value,
) -> Value {
    json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": exp_secs,
        "expires_at": now + exp_secs,
        "refresh_token": refresh_token,
        "user": user,
    })
}

/// Signs an access token for `input`.
pub fn sign_access(
    secret: &[u8],
    input: &TokenInput<'_>,
    issuer: &str,
    now: i64,
    exp_secs: i64,
) -> String {
    crate::jwt::sign(secret, &access_claims(input, issuer, now, exp_secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::Verifier;

    const SECRET: &[u8] = b"unit-test-secret-unit-test-secret!!";

    fn user() -> User {
        User {
            id: Uuid::new_v4(),
            aud: "authenticated".into(),
            role: "teacher".into(),
            email: Some("a@example.com".into()),
            app_metadata: json!({"provider": "email", "providers": ["email"]}),
            user_metadata: json!({"name": "A"}),
            ..User::empty()
        }
    }

    #[test]
    fn claims_are_gotrues_and_verify_with_the_shared_verifier() {
        let u = user();
        let sid = Uuid::new_v4();
        let now = chrono::Utc::now().timestamp();
        let input = TokenInput {
            user: &u,
            session_id: sid,
            amr_method: "password",
            amr_timestamp: now,
        };
        let token = sign_access(SECRET, &input, "doska", now, 3600);
        let caller = Verifier::hs256(SECRET).caller_from_token(&token).unwrap();
        assert_eq!(caller.role, "teacher");
        let c = caller.claims;
        for key in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "email",
            "phone",
            "role",
            "app_metadata",
            "user_metadata",
            "aal",
            "amr",
            "session_id",
            "is_anonymous",
        ] {
            assert!(c.get(key).is_some(), "missing claim {key}");
        }
        assert_eq!(c["sub"], u.id.to_string());
        assert_eq!(c["aud"], "authenticated");
        assert_eq!(c["exp"], now + 3600);
        assert_eq!(c["session_id"], sid.to_string());
        assert_eq!(c["amr"][0]["method"], "password");
        assert_eq!(c["user_metadata"]["name"], "A");
        assert_eq!(c["is_anonymous"], false);
    }

    #[test]
    fn expired_token_is_refused_by_the_verifier() {
        let u = user();
        let now = chrono::Utc::now().timestamp();
        let input = TokenInput {
            user: &u,
            session_id: Uuid::new_v4(),
            amr_method: "password",
            amr_timestamp: now,
        };
        let token = sign_access(SECRET, &input, "doska", now - 7200, 3600);
        assert_eq!(
            Verifier::hs256(SECRET).verify(&token),
            Err(crate::jwt::JwtError::Expired)
        );
    }

    #[test]
    fn session_shape() {
        let s = session_body("a", "r", 100, 3600, &json!({"id": "x"}));
        assert_eq!(s["expires_at"], 3700);
        assert_eq!(s["token_type"], "bearer");
        assert_eq!(s["user"]["id"], "x");
    }
}
