//! The one error type of /auth/v1 and its rendering in GoTrue's two body shapes: the legacy
//! `{"code": <status>, "error_code": "...", "msg": "..."}` and, when the request carries
//! `X-Supabase-Api-Version: 2024-01-01` or later, `{"code": "...", "message": "..."}` (plus
//! `error_code`) with the header echoed (auth-js reads `code` only then).
//! Every variant has a fixed status and code.

use http::{HeaderValue, Response, StatusCode};
use serde_json::{Value, json};

use crate::http::body::Body;

pub const API_VERSION_HEADER: &str = "x-supabase-api-version";
pub const API_VERSION_2024: &str = "2024-01-01";

#[derive(Debug)]
pub enum AuthError {
    BadJson(String),
    Validation(String),
    EmailInvalid,
    WeakPassword {
        min_length: usize,
    },
    UserAlreadyExists,
    EmailExists,
    InvalidCredentials,
    EmailNotConfirmed,
    UserBanned,
    RefreshTokenNotFound,
    RefreshTokenAlreadyUsed,
    UnsupportedGrantType,
    NoAuthorization,
    BadJwt(String),
    SessionNotFound,
    NotAdmin,
    UserNotFound,
    RoleNotAllowed(String),
    SamePassword,
    ReauthenticationNeeded,
    ReauthenticationNotValid,
    OtpExpired,
    FlowStateNotFound,
    FlowStateExpired,
    BadCodeVerifier,
    SignupDisabled,
    AnonymousDisabled,
    RateLimited {
        retry_after_secs: u64,
    },
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    /// Anything unexpected; the cause is logged, never sent.
    Internal(String),
    /// The database is down or restarting: the client may retry shortly (503).
    Unavailable(String),
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        use AuthError::*;
        match self {
            BadJson(_) | Validation(_) | EmailInvalid => StatusCode::BAD_REQUEST,
            WeakPassword { .. } | UserAlreadyExists | EmailExists | SamePassword => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            InvalidCredentials | EmailNotConfirmed | UserBanned => StatusCode::BAD_REQUEST,
            RefreshTokenNotFound | RefreshTokenAlreadyUsed | UnsupportedGrantType => {
                StatusCode::BAD_REQUEST
            }
            NoAuthorization | BadJwt(_) => StatusCode::UNAUTHORIZED,
            SessionNotFound | NotAdmin | OtpExpired => StatusCode::FORBIDDEN,
            UserNotFound | NotFound | FlowStateNotFound => StatusCode::NOT_FOUND,
            FlowStateExpired => StatusCode::UNPROCESSABLE_ENTITY,
            BadCodeVerifier => StatusCode::BAD_REQUEST,
            RoleNotAllowed(_) => StatusCode::BAD_REQUEST,
            ReauthenticationNeeded | ReauthenticationNotValid => StatusCode::BAD_REQUEST,
            SignupDisabled | AnonymousDisabled => StatusCode::UNPROCESSABLE_ENTITY,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// GoTrue's stable error code.
    pub fn code(&self) -> &'static str {
        use AuthError::*;
        match self {
            BadJson(_) => "bad_json",
            Validation(_) | RoleNotAllowed(_) | PayloadTooLarge => "validation_failed",
            EmailInvalid => "email_address_invalid",
            WeakPassword { .. } => "weak_password",
            UserAlreadyExists => "user_already_exists",
            EmailExists => "email_exists",
            InvalidCredentials => "invalid_credentials",
            EmailNotConfirmed => "email_not_confirmed",
            UserBanned => "user_banned",
            RefreshTokenNotFound => "refresh_token_not_found",
            RefreshTokenAlreadyUsed => "refresh_token_already_used",
            UnsupportedGrantType => "unsupported_grant_type",
            NoAuthorization => "no_authorization",
            BadJwt(_) => "bad_jwt",
            SessionNotFound => "session_not_found",
            NotAdmin => "not_admin",
            UserNotFound => "user_not_found",
            SamePassword => "same_password",
            ReauthenticationNeeded => "reauthentication_needed",
            ReauthenticationNotValid => "reauthentication_not_valid",
            OtpExpired => "otp_expired",
            FlowStateNotFound => "flow_state_not_found",
            FlowStateExpired => "flow_state_expired",
            BadCodeVerifier => "bad_code_verifier",
            SignupDisabled => "signup_disabled",
            AnonymousDisabled => "anonymous_provider_disabled",
            RateLimited { .. } => "over_request_rate_limit",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            Internal(_) | Unavailable(_) => "unexpected_failure",
        }
    }

    pub fn message(&self) -> String {
        use AuthError::*;
        match self {
            BadJson(m) => format!("Could not parse request body as JSON: {m}"),
            Validation(m) => m.clone(),
            EmailInvalid => "Unable to validate email address: invalid format".into(),
            WeakPassword { min_length } => {
                format!("Password should be at least {min_length} characters.")
            }
            UserAlreadyExists => "User already registered".into(),
            EmailExists => "A user with this email address has already been registered".into(),
            InvalidCredentials => "Invalid login credentials".into(),
            EmailNotConfirmed => "Email not confirmed".into(),
            UserBanned => "User is banned".into(),
            RefreshTokenNotFound => "Invalid Refresh Token: Refresh Token Not Found".into(),
            RefreshTokenAlreadyUsed => "Invalid Refresh Token: Already Used".into(),
            UnsupportedGrantType => "unsupported_grant_type".into(),
            NoAuthorization => "This endpoint requires a valid Bearer token".into(),
            BadJwt(m) => format!("invalid JWT: unable to parse or verify signature, {m}"),
            SessionNotFound => "Session from session_id claim in JWT does not exist".into(),
            NotAdmin => "User not allowed".into(),
            UserNotFound => "User not found".into(),
            RoleNotAllowed(r) => format!(
                "Role {r:?} cannot be assigned: use authenticated or a role that is a member of it"
            ),
            SamePassword => "New password should be different from the old password.".into(),
            ReauthenticationNeeded => "Password update requires reauthentication".into(),
            ReauthenticationNotValid => "Requires a valid reauthentication nonce".into(),
            OtpExpired => "Token has expired or is invalid".into(),
            FlowStateNotFound => "invalid flow state, no valid flow state found".into(),
            FlowStateExpired => "invalid flow state, flow state has expired".into(),
            BadCodeVerifier => {
                "code challenge does not match previously saved code verifier".into()
            }
            SignupDisabled => "Signups not allowed for this instance".into(),
            AnonymousDisabled => "Anonymous sign-ins are disabled".into(),
            RateLimited { .. } => "Request rate limit reached".into(),
            NotFound => "Not found".into(),
            MethodNotAllowed => "Method not allowed".into(),
            PayloadTooLarge => "Request body too large".into(),
            Internal(_) => {
                "Unexpected failure, please check server logs for more information".into()
            }
            Unavailable(_) => "The database is unavailable; retry shortly".into(),
        }
    }

    /// The response, in the shape the request's API version asks for.
    pub fn into_response(self, api_version_2024: bool, request_id: &str) -> Response<Body> {
        let status = self.status();
        match &self {
            AuthError::Internal(cause) => {
                tracing::error!(request_id, cause = %cause, "auth: unexpected failure")
            }
            AuthError::Unavailable(cause) => crate::db::outage::unavailable("auth", cause),
            _ => {}
        }
        let mut body = if api_version_2024 {
            // GoTrue's 2024 shape, plus `error_code`: should a proxy or a CORS setup hide the
            // version header from the client, auth-js falls back to reading `error_code`.
            json!({ "code": self.code(), "error_code": self.code(), "message": self.message() })
        } else {
            json!({ "code": status.as_u16(), "error_code": self.code(), "msg": self.message() })
        };
        if let AuthError::WeakPassword { .. } = &self {
            body["weak_password"] = json!({ "reasons": ["length"] });
        }
        if status.is_server_error() {
            body["error_id"] = Value::String(request_id.to_owned());
        }
        let mut resp = crate::http::body::json(status, &body);
        if api_version_2024 {
            resp.headers_mut().insert(
                API_VERSION_HEADER,
                HeaderValue::from_static(API_VERSION_2024),
            );
        }
        if let AuthError::RateLimited { retry_after_secs } = self {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        resp
    }
}

impl From<tokio_postgres::Error> for AuthError {
    fn from(e: tokio_postgres::Error) -> Self {
        // An app's trigger on auth.users refusing what the client sent (a wrong school code in
        // the sign-up metadata, say) is the client's mistake: its message, as a 400. GoTrue
        // answers every such refusal "Database error saving new user" (500).
        if let Some(db) = e.as_db_error() {
            match db.code().code() {
                "P0001" // raise_exception
                | "22023" // invalid_parameter_value
                | "23514" // check_violation
                => return AuthError::Validation(db.message().to_string()),
                _ => {}
            }
        }
        if crate::db::outage::is_unavailable(&e) {
            return AuthError::Unavailable(format!("database: {e}"));
        }
        AuthError::Internal(format!("database: {e}"))
    }
}

impl From<deadpool_postgres::PoolError> for AuthError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        AuthError::Unavailable(format!("database pool: {e}"))
    }
}

impl From<super::password::PasswordError> for AuthError {
    fn from(e: super::password::PasswordError) -> Self {
        AuthError::Internal(e.to_string())
    }
}

/// True when the request's `X-Supabase-Api-Version` is 2024-01-01 or later (ISO dates compare as
/// strings).
pub fn wants_2024_shape(headers: &http::HeaderMap) -> bool {
    headers
        .get(API_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let v = v.trim();
            v.len() == 10
                && v.as_bytes().iter().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        *b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                })
                && v >= API_VERSION_2024
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_header_parsing() {
        let mut h = http::HeaderMap::new();
        assert!(!wants_2024_shape(&h));
        for (v, want) in [
            ("2024-01-01", true),
            ("2025-06-30", true),
            ("2023-12-31", false),
            ("garbage", false),
            ("2024-1-1", false),
        ] {
            h.insert(API_VERSION_HEADER, HeaderValue::from_static(v));
            assert_eq!(wants_2024_shape(&h), want, "{v}");
        }
    }

    #[test]
    fn codes_and_statuses_are_gotrues() {
        let cases = [
            (AuthError::InvalidCredentials, 400, "invalid_credentials"),
            (AuthError::UserAlreadyExists, 422, "user_already_exists"),
            (
                AuthError::WeakPassword { min_length: 6 },
                422,
                "weak_password",
            ),
            (
                AuthError::RefreshTokenAlreadyUsed,
                400,
                "refresh_token_already_used",
            ),
            (
                AuthError::RateLimited {
                    retry_after_secs: 3,
                },
                429,
                "over_request_rate_limit",
            ),
            (AuthError::BadJwt("x".into()), 401, "bad_jwt"),
            (AuthError::SessionNotFound, 403, "session_not_found"),
            (AuthError::NotAdmin, 403, "not_admin"),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
            assert_eq!(e.code(), code);
        }
    }
}
