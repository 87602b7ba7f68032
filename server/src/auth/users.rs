//! Users as stored in `auth.users`/`auth.identities`: loading, creating, and rendering GoTrue's
//! user JSON. Every query takes user input as bind parameters. A role the row carries is used only
//! if it is `authenticated` or a plain member of `authenticated` (not a superuser, not BYPASSRLS,
//! not anon/service_role/authenticator); anything else is replaced by `authenticated` and logged.
//! Rejects: role assignments outside that set (`RoleNotAllowed`).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::{Map, Value, json};
use tokio_postgres::Row;
use uuid::Uuid;

use super::error::AuthError;

pub type Ts = Option<DateTime<Utc>>;

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: Uuid,
    pub aud: String,
    pub role: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub encrypted_password: Option<String>,
    pub email_confirmed_at: Ts,
    pub phone_confirmed_at: Ts,
    pub confirmed_at: Ts,
    pub invited_at: Ts,
    pub confirmation_sent_at: Ts,
    pub recovery_sent_at: Ts,
    pub last_sign_in_at: Ts,
    pub banned_until: Ts,
    pub created_at: Ts,
    pub updated_at: Ts,
    pub app_metadata: Value,
    pub user_metadata: Value,
    pub is_anonymous: bool,
    pub identities: Vec<Value>,
}

impl User {
    /// A blank user (tests and builders).
    pub fn empty() -> User {
        User {
            id: Uuid::nil(),
            aud: "authenticated".into(),
            role: "authenticated".into(),
            email: None,
            phone: None,
            encrypted_password: None,
            email_confirmed_at: None,
            phone_confirmed_at: None,
            confirmed_at: None,
            invited_at: None,
            confirmation_sent_at: None,
            recovery_sent_at: None,
            last_sign_in_at: None,
            banned_until: None,
            created_at: None,
            updated_at: None,
            app_metadata: json!({}),
            user_metadata: json!({}),
            is_anonymous: false,
            identities: vec![],
        }
    }

    pub fn is_banned(&self, now: DateTime<Utc>) -> bool {
        self.banned_until.is_some_and(|t| t > now)
    }

    /// GoTrue's user JSON.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("aud".into(), json!(self.aud));
        m.insert("role".into(), json!(self.role));
        m.insert(
            "email".into(),
            json!(self.email.clone().unwrap_or_default()),
        );
        m.insert(
            "phone".into(),
            json!(self.phone.clone().unwrap_or_default()),
        );
        for (k, v) in [
            ("email_confirmed_at", self.email_confirmed_at),
            ("phone_confirmed_at", self.phone_confirmed_at),
            ("confirmed_at", self.confirmed_at),
            ("invited_at", self.invited_at),
            ("confirmation_sent_at", self.confirmation_sent_at),
            ("recovery_sent_at", self.recovery_sent_at),
            ("last_sign_in_at", self.last_sign_in_at),
            ("banned_until", self.banned_until),
        ] {
            if let Some(t) = v {
                m.insert(k.into(), json!(t));
            }
        }
        m.insert("app_metadata".into(), self.app_metadata.clone());
        m.insert("user_metadata".into(), self.user_metadata.clone());
        m.insert("identities".into(), Value::Array(self.identities.clone()));
        m.insert("created_at".into(), json!(self.created_at));
        m.insert("updated_at".into(), json!(self.updated_at));
        m.insert("is_anonymous".into(), json!(self.is_anonymous));
        Value::Object(m)
    }
}

/// Columns of `auth.users u` in the order `from_row` reads them; the last one says whether the
/// stored role may be put into a token.
const USER_COLUMNS: &str = "u.id, u.aud, u.role, u.email, u.phone, u.encrypted_password, \
     u.email_confirmed_at, u.phone_confirmed_at, u.confirmed_at, u.invited_at, \
     u.confirmation_sent_at, u.recovery_sent_at, u.last_sign_in_at, u.banned_until, \
     u.created_at, u.updated_at, u.raw_app_meta_data, u.raw_user_meta_data, u.is_anonymous, \
     (coalesce(u.role, 'authenticated') = 'authenticated' or exists (select 1 from pg_roles r \
        where r.rolname = u.role and not r.rolsuper and not r.rolbypassrls \
        and r.rolname not in ('anon', 'service_role', 'authenticator') \
        and pg_has_role(r.oid, 'authenticated', 'MEMBER'))) as role_ok";

fn from_row(row: &Row) -> User {
    let role: Option<String> = row.get(2);
    let role_ok: bool = row.get(19);
    let id: Uuid = row.get(0);
    let role = match role {
        Some(r) if role_ok && !r.is_empty() => r,
        Some(r) if !r.is_empty() && r != "authenticated" => {
            tracing::warn!(user = %id, role = %r, "auth.users.role is not a member of authenticated; issuing authenticated");
            "authenticated".into()
        }
        _ => "authenticated".into(),
    };
    User {
        id,
        aud: row
            .get::<_, Option<String>>(1)
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "authenticated".into()),
        role,
        email: row.get(3),
        phone: row.get(4),
        encrypted_password: row.get(5),
        email_confirmed_at: row.get(6),
        phone_confirmed_at: row.get(7),
        confirmed_at: row.get(8),
        invited_at: row.get(9),
        confirmation_sent_at: row.get(10),
        recovery_sent_at: row.get(11),
        last_sign_in_at: row.get(12),
        banned_until: row.get(13),
        created_at: row.get(14),
        updated_at: row.get(15),
        app_metadata: row.get::<_, Option<Value>>(16).unwrap_or_else(|| json!({})),
        user_metadata: row.get::<_, Option<Value>>(17).unwrap_or_else(|| json!({})),
        is_anonymous: row.get(18),
        identities: vec![],
    }
}

fn identity_json(r: &Row) -> (Uuid, Value) {
    let user_id: Uuid = r.get(2);
    let v = json!({
        "identity_id": r.get::<_, Uuid>(0),
        "id": r.get::<_, String>(1),
        "user_id": user_id,
        "identity_data": r.get::<_, Value>(3),
        "provider": r.get::<_, String>(4),
        "last_sign_in_at": r.get::<_, Ts>(5),
        "created_at": r.get::<_, Ts>(6),
        "updated_at": r.get::<_, Ts>(7),
        "email": r.get::<_, Option<String>>(8),
    });
    (user_id, v)
}

/// Fills in the identities of `users` with one query.
async fn load_identities<C: GenericClient>(c: &C, users: &mut [User]) -> Result<(), AuthError> {
    let ids: Vec<Uuid> = users.iter().map(|u| u.id).collect();
    let st = c
        .prepare_cached(
            "select id, provider_id, user_id, identity_data, provider, last_sign_in_at, \
             created_at, updated_at, email from auth.identities where user_id = any($1) \
             order by created_at",
        )
        .await?;
    let rows = c.query(&st, &[&ids]).await?;
    for r in &rows {
        let (user_id, v) = identity_json(r);
        if let Some(u) = users.iter_mut().find(|u| u.id == user_id) {
            u.identities.push(v);
        }
    }
    Ok(())
}

/// One page of users, newest first, with their identities (two queries).
pub async fn page<C: GenericClient>(
    c: &C,
    limit: i64,
    offset: i64,
) -> Result<Vec<User>, AuthError> {
    let sql = format!(
        "select {USER_COLUMNS} from auth.users u order by u.created_at desc, u.id limit $1 offset $2"
    );
    let mut users: Vec<User> = c
        .query(&sql, &[&limit, &offset])
        .await?
        .iter()
        .map(from_row)
        .collect();
    load_identities(c, &mut users).await?;
    Ok(users)
}

pub async fn by_id<C: GenericClient>(c: &C, id: Uuid) -> Result<Option<User>, AuthError> {
    let sql = format!("select {USER_COLUMNS} from auth.users u where u.id = $1");
    let st = c.prepare_cached(&sql).await?;
    let Some(row) = c.query_opt(&st, &[&id]).await? else {
        return Ok(None);
    };
    let mut u = [from_row(&row)];
    load_identities(c, &mut u).await?;
    let [u] = u;
    Ok(Some(u))
}

/// The user with this id, with identities; `UserNotFound` when there is none.
pub async fn get<C: GenericClient>(c: &C, id: Uuid) -> Result<User, AuthError> {
    by_id(c, id).await?.ok_or(AuthError::UserNotFound)
}

/// The user with this (already lower-cased) e-mail, without identities (sign-in does not need them).
pub async fn by_email<C: GenericClient>(c: &C, email: &str) -> Result<Option<User>, AuthError> {
    let sql = format!(
        "select {USER_COLUMNS} from auth.users u where u.email = $1 and u.is_sso_user = false"
    );
    let st = c.prepare_cached(&sql).await?;
    Ok(c.query_opt(&st, &[&email]).await?.map(|r| from_row(&r)))
}

/// What a new user row is made of.
pub struct NewUser<'a> {
    pub email: Option<&'a str>,
    pub encrypted_password: Option<&'a str>,
    pub confirmed: bool,
    pub user_metadata: &'a Value,
    pub app_metadata: &'a Value,
    pub role: &'a str,
    pub is_anonymous: bool,
    pub invited: bool,
}

static NO_APP_METADATA: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| json!({}));

impl<'a> NewUser<'a> {
    /// An `authenticated` user with no password, unconfirmed, not invited, not anonymous and
    /// with empty app metadata: what the sign-up paths start from (struct update for the rest).
    pub fn authenticated(email: Option<&'a str>, user_metadata: &'a Value) -> Self {
        NewUser {
            email,
            encrypted_password: None,
            confirmed: false,
            user_metadata,
            app_metadata: &NO_APP_METADATA,
            role: "authenticated",
            is_anonymous: false,
            invited: false,
        }
    }
}

/// Inserts the user and its identity; `None` when the e-mail is taken (never a second account).
/// Triggers on auth.users run here; the caller re-reads the row in the same transaction.
pub async fn insert<C: GenericClient>(c: &C, n: &NewUser<'_>) -> Result<Option<Uuid>, AuthError> {
    let id = Uuid::new_v4();
    let mut app = json!({});
    if let Value::Object(extra) = n.app_metadata {
        app.as_object_mut()
            .expect("json!({}) is an object")
            .extend(extra.clone());
    }
    if n.email.is_some() {
        app["provider"] = json!("email");
        app["providers"] = json!(["email"]);
    }
    let inserted = c
        .query_opt(
            "insert into auth.users (instance_id, id, aud, role, email, encrypted_password, \
               email_confirmed_at, invited_at, raw_app_meta_data, raw_user_meta_data, \
               is_super_admin, created_at, updated_at, is_anonymous, confirmation_token, \
               recovery_token, email_change_token_new, email_change) \
             values ('00000000-0000-0000-0000-000000000000', $1, 'authenticated', $2, $3, $4, \
               case when $5 then now() end, case when $8 then now() end, $6, $7, false, now(), \
               now(), $9, '', '', '', '') \
             on conflict (email) where is_sso_user = false do nothing returning id",
            &[
                &id,
                &n.role,
                &n.email,
                &n.encrypted_password,
                &n.confirmed,
                &app,
                n.user_metadata,
                &n.invited,
                &n.is_anonymous,
            ],
        )
        .await?;
    if inserted.is_none() {
        return Ok(None);
    }
    if let Some(email) = n.email {
        c.execute(
            "insert into auth.identities (provider_id, user_id, identity_data, provider, \
               last_sign_in_at, created_at, updated_at) \
             values ($1::uuid::text, $1, jsonb_build_object('sub', $1::uuid::text, 'email', $2::text, \
               'email_verified', $3::bool, 'phone_verified', false), 'email', null, now(), now())",
            &[&id, &email, &n.confirmed],
        )
        .await?;
    }
    Ok(Some(id))
}

/// Fails unless `role` may be put in users' tokens: `authenticated` or a member of it that is not
/// a superuser, not BYPASSRLS and not one of the API's own roles.
pub async fn check_assignable_role<C: GenericClient>(c: &C, role: &str) -> Result<(), AuthError> {
    if role == "authenticated" {
        return Ok(());
    }
    let ok: bool = c
        .query_one(
            "select exists (select 1 from pg_roles r where r.rolname = $1 \
               and not r.rolsuper and not r.rolbypassrls \
               and r.rolname not in ('anon', 'service_role', 'authenticator') \
               and pg_has_role(r.oid, 'authenticated', 'MEMBER'))",
            &[&role],
        )
        .await?
        .get(0);
    if ok {
        Ok(())
    } else {
        Err(AuthError::RoleNotAllowed(role.to_owned()))
    }
}

/// GoTrue's metadata update: top-level keys of `patch` replace the stored ones, `null` deletes.
pub fn merge_metadata(stored: &Value, patch: &Map<String, Value>) -> Value {
    let mut out = stored.as_object().cloned().unwrap_or_default();
    for (k, v) in patch {
        if v.is_null() {
            out.remove(k);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// The one normal form of an e-mail address wherever one enters (sign-up, sign-in, mail, admin):
/// surrounding spaces trimmed, lower-cased. Lookups and rate-limit keys use it unvalidated (an
/// invalid address then simply matches nobody); stored addresses go through [`normalize_email`].
pub fn email_key(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// [`email_key`], refused (400 `email_address_invalid`) unless it is a syntactically plausible
/// address of at most 255 bytes.
pub fn normalize_email(raw: &str) -> Result<String, AuthError> {
    let e = email_key(raw);
    let valid = e.len() <= 255
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && match e.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    if valid {
        Ok(e)
    } else {
        Err(AuthError::EmailInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for (raw, want) in [
            ("A@Example.COM", Some("a@example.com")),
            ("  x.y+z@sub.example.org ", Some("x.y+z@sub.example.org")),
            ("no-at-sign", None),
            ("@example.com", None),
            ("a@b", None),
            ("a@b@c.com", None),
            ("a b@c.com", None),
            ("a@.com", None),
            ("a@c..com", None),
            ("a@c.com\n", Some("a@c.com")),
            ("a\u{0}@c.com", None),
        ] {
            assert_eq!(normalize_email(raw).ok().as_deref(), want, "{raw:?}");
        }
        let long = format!("{}@example.com", "a".repeat(300));
        assert!(normalize_email(&long).is_err());
    }

    #[test]
    fn metadata_merge() {
        let stored = json!({"a": 1, "b": 2});
        let patch = json!({"b": null, "c": {"d": 3}});
        assert_eq!(
            merge_metadata(&stored, patch.as_object().unwrap()),
            json!({"a": 1, "c": {"d": 3}})
        );
        assert_eq!(
            merge_metadata(&Value::Null, patch.as_object().unwrap()),
            json!({"c": {"d": 3}})
        );
    }

    #[test]
    fn user_json_shape() {
        let u = User {
            email: Some("a@b.co".into()),
            ..User::empty()
        };
        let j = u.to_json();
        assert_eq!(j["email"], "a@b.co");
        assert_eq!(j["phone"], "");
        assert_eq!(j["role"], "authenticated");
        assert!(j.get("email_confirmed_at").is_none());
        assert!(j["identities"].is_array());
        assert!(j.get("encrypted_password").is_none());
    }
}
