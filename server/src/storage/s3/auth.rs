//! Who an S3 request acts as: SigV4 secrets by access key (the operator's pair, keys made with
//! `doska s3-keys`, or — with a session token — the fixed S3 session key), and the request's actor
//! from its credentials, its session token (a user's JWT) or, unsigned, what the access check
//! allowed (acl.rs).

use s3s::auth::{S3Auth, SecretKey};

use super::*;

tokio::task_local! {
    /// The session token of the request being served: s3s asks for a secret by access key alone,
    /// and the token decides which secret applies.
    pub(super) static SESSION_TOKEN: Option<String>;
}

/// The session token a request carries: `X-Amz-Security-Token` as a header, or as a query parameter
/// of a presigned URL. Either way SigV4 signs it.
pub(super) fn session_token(headers: &http::HeaderMap, uri: &http::Uri) -> Option<String> {
    if let Some(v) = headers.get("x-amz-security-token") {
        return v.to_str().ok().map(str::to_string);
    }
    // Decoded as s3s decodes the same query (form rules), so both read one token.
    crate::http::query::pairs(uri.query()?)
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("X-Amz-Security-Token"))
        .map(|(_, v)| v)
}

/// Secrets for SigV4 verification: the fixed S3 session key when a session token rides along (as
/// Supabase signs those with its anon key, whatever the access key id), else the operator's pair
/// from config, then keys made with `doska s3-keys create` (looked up on the admin pool, decrypted
/// with the JWT secret).
#[derive(Clone)]
pub(super) struct KeyAuth {
    pub(super) operator: S3Keys,
    pub(super) admin: deadpool_postgres::Pool,
    pub(super) jwt_secret: std::sync::Arc<[u8]>,
    pub(super) session_key: std::sync::Arc<str>,
}

impl KeyAuth {
    pub(super) fn is_operator(&self, access_key: &str) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(
            access_key
                .as_bytes()
                .ct_eq(self.operator.access_key_id.as_bytes()),
        )
    }

    pub(super) async fn stored(
        &self,
        access_key: &str,
    ) -> S3Result<Option<crate::storage::s3_keys::StoredKey>> {
        let client = self.admin.get().await.map_err(|e| {
            tracing::error!(error = %e, "S3 key lookup: no database connection");
            s3_error!(InternalError)
        })?;
        crate::storage::s3_keys::lookup(&**client, &self.jwt_secret, access_key)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "S3 key lookup failed");
                s3_error!(InternalError)
            })
    }
}

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if SESSION_TOKEN.try_with(Option::is_some).unwrap_or(false) {
            return Ok(SecretKey::from(&*self.session_key));
        }
        if self.is_operator(access_key) {
            return Ok(SecretKey::from(self.operator.secret_access_key.as_str()));
        }
        match self.stored(access_key).await? {
            Some(k) => Ok(SecretKey::from(k.secret)),
            None => Err(s3_error!(InvalidAccessKeyId)),
        }
    }
}

impl S3Door {
    /// Who a signed request acts as: with a session token, that JWT's role and claims (the signature
    /// was checked against the S3 session key); the operator and unbound keys as service_role; a key
    /// bound to a user as that user (role `authenticated`), under the storage policies. Unsigned
    /// requests act as the access check allowed them (acl.rs).
    pub(super) async fn actor<T>(&self, req: &S3Request<T>) -> S3Result<Actor> {
        let service = Actor::service(req.method.as_str(), req.uri.path());
        let Some(access_key) = req.credentials.as_ref().map(|c| c.access_key.as_str()) else {
            return match req.extensions.get::<acl::Anonymous>() {
                Some(acl::Anonymous::PublicRead) => Ok(service),
                Some(acl::Anonymous::Anon) => Ok(Actor {
                    caller: crate::jwt::Caller::anonymous(),
                    ..service
                }),
                None => Err(s3_error!(AccessDenied, "Signed requests only")),
            };
        };
        if let Some(token) = session_token(&req.headers, &req.uri) {
            let caller = self.state.verifier.caller_from_token(&token).map_err(|e| {
                S3Error::with_message(
                    S3ErrorCode::AccessDenied,
                    format!("Invalid session token: {}", e.message()),
                )
            })?;
            return Ok(Actor { caller, ..service });
        }
        if self.auth.is_operator(access_key) {
            return Ok(service);
        }
        match self.auth.stored(access_key).await? {
            None => Err(s3_error!(InvalidAccessKeyId)),
            Some(k) => match k.user_id {
                None => Ok(service),
                Some(user) => Ok(Actor {
                    caller: crate::jwt::Caller {
                        role: "authenticated".into(),
                        claims: serde_json::json!({
                            "sub": user.to_string(), "role": "authenticated", "aud": "authenticated"
                        })
                        .into(),
                        token: None,
                    },
                    ..service
                }),
            },
        }
    }
}
