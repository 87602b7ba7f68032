//! The audit trail in `auth.audit_log_entries`, in GoTrue's payload shape, written in the same
//! transaction as the event it records: sign-ups, sign-ins, sign-outs, password changes, recovery
//! requests, admin changes and refresh-token reuse. Never holds a password, a token or a code.
//! Rejects nothing.

use deadpool_postgres::GenericClient;
use serde_json::{Value, json};
use uuid::Uuid;

use std::net::IpAddr;

use super::error::AuthError;

/// What happened (GoTrue's action names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    UserSignedUp,
    Login,
    Logout,
    UserRecoveryRequested,
    UserUpdatedPassword,
    UserModified,
    UserDeleted,
    UserInvited,
    TokenRevoked,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::UserSignedUp => "user_signedup",
            Action::Login => "login",
            Action::Logout => "logout",
            Action::UserRecoveryRequested => "user_recovery_requested",
            Action::UserUpdatedPassword => "user_updated_password",
            Action::UserModified => "user_modified",
            Action::UserDeleted => "user_deleted",
            Action::UserInvited => "user_invited",
            Action::TokenRevoked => "token_revoked",
        }
    }
    fn log_type(self) -> &'static str {
        match self {
            Action::UserSignedUp | Action::UserInvited | Action::UserDeleted => "team",
            Action::TokenRevoked => "token",
            Action::UserModified | Action::UserUpdatedPassword => "user",
            _ => "account",
        }
    }
}

/// The payload GoTrue stores.
pub fn payload(action: Action, actor_id: Uuid, actor_username: &str, traits: Value) -> Value {
    json!({
        "actor_id": actor_id,
        "actor_username": actor_username,
        "actor_via_sso": false,
        "action": action.name(),
        "log_type": action.log_type(),
        "traits": traits,
    })
}

/// Records `action` by `actor_id` (whose e-mail is looked up in the same statement).
pub async fn record<C: GenericClient>(
    c: &C,
    ip: IpAddr,
    action: Action,
    actor_id: Uuid,
    traits: Value,
) -> Result<(), AuthError> {
    let username: Option<String> = c
        .query_opt("select email from auth.users where id = $1", &[&actor_id])
        .await?
        .and_then(|r| r.get(0));
    let p = payload(action, actor_id, username.as_deref().unwrap_or(""), traits);
    c.execute(
        "insert into auth.audit_log_entries (instance_id, id, payload, created_at, ip_address) \
         values ('00000000-0000-0000-0000-000000000000', $1, $2::jsonb::json, now(), $3)",
        &[&Uuid::new_v4(), &p, &ip.to_string()],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_shape() {
        let id = Uuid::new_v4();
        let p = payload(Action::Login, id, "a@b.co", json!({"provider": "email"}));
        assert_eq!(p["action"], "login");
        assert_eq!(p["log_type"], "account");
        assert_eq!(p["actor_id"], id.to_string());
        assert_eq!(p["actor_username"], "a@b.co");
        assert_eq!(p["traits"]["provider"], "email");
        assert_eq!(Action::TokenRevoked.log_type(), "token");
    }
}
