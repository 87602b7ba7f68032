//! E-mailed one-time credentials: sign-up confirmation, magic link, recovery, invite, e-mail
//! change and the reauthentication nonce; the /verify endpoints that redeem them; and the outbox:
//! every mail is stored in `auth.mail_outbox` (an admin can read it there) and, with `--smtp-url`,
//! handed to the relay after the commit (smtp.rs). The log only says that a message is waiting,
//! never its token.
//! Each mail carries a 6-digit code and a link with `token_hash = sha256(email ":" code)`; the user
//! row stores only `sha256(token_hash)`, so neither the code nor the link can be read back from the
//! database. Links redirect only to the site URL or an allow-listed URL (else the site URL).
//! Rejects: unknown, used or expired codes (403 otp_expired), bad `type`s (400).

use deadpool_postgres::GenericClient;
use http::{HeaderValue, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Ctx;
use super::admin::require_admin;
use super::error::AuthError;
use super::ratelimit::Class;
use super::session::{
    check_password_strength, commit_and_mail, ip_key, metadata_object, ok_json, open_session,
    parse, rate_limit, signed_in,
};
use super::users::{self, NewUser};
use crate::http::body::{self, Body};

/// What a mailed credential is for; decides the user column it lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Signup,
    Invite,
    MagicLink,
    Recovery,
    EmailChange,
}

impl LinkKind {
    fn parse(s: &str) -> Option<LinkKind> {
        Some(match s {
            "signup" => LinkKind::Signup,
            "invite" => LinkKind::Invite,
            "magiclink" | "email" => LinkKind::MagicLink,
            "recovery" => LinkKind::Recovery,
            // GoTrue mails a change's two links to the current and the new address; doska asks
            // for one confirmation, so either link confirms the change.
            "email_change" | "email_change_new" | "email_change_current" => LinkKind::EmailChange,
            _ => return None,
        })
    }
    fn as_str(self) -> &'static str {
        match self {
            LinkKind::Signup => "signup",
            LinkKind::Invite => "invite",
            LinkKind::MagicLink => "magiclink",
            LinkKind::Recovery => "recovery",
            LinkKind::EmailChange => "email_change",
        }
    }
    /// (token column, sent-at column) in auth.users. Fixed names, never user input.
    fn columns(self) -> (&'static str, &'static str) {
        match self {
            LinkKind::Signup | LinkKind::Invite => ("confirmation_token", "confirmation_sent_at"),
            LinkKind::MagicLink | LinkKind::Recovery => ("recovery_token", "recovery_sent_at"),
            LinkKind::EmailChange => ("email_change_token_new", "email_change_sent_at"),
        }
    }
    /// GoTrue's authentication method names (the `amr` claim, the PKCE flow's method).
    pub fn auth_method(self) -> &'static str {
        match self {
            LinkKind::Signup => "email/signup",
            LinkKind::Invite => "invite",
            LinkKind::MagicLink => "magiclink",
            LinkKind::Recovery => "recovery",
            LinkKind::EmailChange => "email_change",
        }
    }
    fn subject(self) -> &'static str {
        match self {
            LinkKind::Signup => "Confirm your signup",
            LinkKind::Invite => "You have been invited",
            LinkKind::MagicLink => "Your magic link",
            LinkKind::Recovery => "Reset your password",
            LinkKind::EmailChange => "Confirm your new email address",
        }
    }
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The link's `token_hash` for a code sent to `email`.
pub fn token_hash(email: &str, code: &str) -> String {
    sha256_hex(&format!("{}:{}", super::users::email_key(email), code))
}

/// A 6-digit code.
fn new_code() -> String {
    format!("{:06}", rand::random_range(0..1_000_000u32))
}

/// doska's public base URL for links: the configured one, else the listen address. Never the
/// request's Host header: a forged Host would put an attacker's server into a victim's reset link.
fn external_url(ctx: &Ctx<'_>) -> String {
    match &ctx.auth.config.external_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => format!("http://{}", ctx.state.config.listen),
    }
}

/// `wanted` if the allow-list permits it, else the site URL.
pub fn allowed_redirect(site_url: &str, allow: &[String], wanted: Option<&str>) -> String {
    let Some(w) = wanted.filter(|w| !w.is_empty()) else {
        return site_url.to_owned();
    };
    let site = site_url.trim_end_matches('/');
    let same_site = w == site
        || w.starts_with(&format!("{site}/"))
        || w.starts_with(&format!("{site}?"))
        || w.starts_with(&format!("{site}#"));
    let listed = allow.iter().any(|a| match a.strip_suffix('*') {
        Some(prefix) => w.starts_with(prefix),
        None => w == a,
    });
    if same_site || listed {
        w.to_owned()
    } else {
        site_url.to_owned()
    }
}

fn redirect_for(ctx: &Ctx<'_>, wanted: Option<&str>) -> String {
    let c = &ctx.auth.config;
    allowed_redirect(
        &c.site_url,
        &c.redirect_urls,
        wanted.or(ctx.q("redirect_to")),
    )
}

/// Everything but RFC 3986's unreserved characters is escaped.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

/// A freshly minted credential, stored on the user row.
struct Minted {
    code: String,
    token_hash: String,
    action_link: String,
    redirect_to: String,
}

async fn mint<C: GenericClient>(
    ctx: &Ctx<'_>,
    c: &C,
    user_id: Uuid,
    email: &str,
    kind: LinkKind,
    redirect: Option<&str>,
) -> Result<Minted, AuthError> {
    let code = new_code();
    let th = token_hash(email, &code);
    let (tok_col, sent_col) = kind.columns();
    c.execute(
        &format!("update auth.users set {tok_col} = $2, {sent_col} = now() where id = $1"),
        &[&user_id, &sha256_hex(&th)],
    )
    .await?;
    let redirect_to = redirect_for(ctx, redirect);
    let action_link = format!(
        "{}/auth/v1/verify?token={}&type={}&redirect_to={}",
        external_url(ctx),
        th,
        kind.as_str(),
        enc(&redirect_to)
    );
    Ok(Minted {
        code,
        token_hash: th,
        action_link,
        redirect_to,
    })
}

/// Queues a mail in the outbox; the log says only that one is waiting.
async fn enqueue<C: GenericClient>(
    c: &C,
    to: &str,
    kind: &str,
    subject: &str,
    body_text: &str,
) -> Result<(), AuthError> {
    let id: i64 = c
        .query_one(
            "insert into auth.mail_outbox (recipient, kind, subject, body) values ($1, $2, $3, $4) \
             returning id",
            &[&to, &kind, &subject, &body_text],
        )
        .await?
        .get(0);
    tracing::info!(
        outbox_id = id,
        kind,
        "auth: a message is waiting in auth.mail_outbox"
    );
    Ok(())
}

/// Mints a credential of `kind` for the user and mails it.
/// Sends `kind`'s link, first tying the client's PKCE challenge (when it sent one) to that flow.
pub async fn send_link_with_pkce<C: GenericClient>(
    ctx: &Ctx<'_>,
    c: &C,
    user_id: Uuid,
    email: &str,
    kind: LinkKind,
    challenge: Option<&super::pkce::Challenge>,
) -> Result<(), AuthError> {
    if let Some(ch) = challenge {
        super::pkce::start(c, user_id, ch, kind.auth_method()).await?;
    }
    send_link(ctx, c, user_id, email, kind).await
}

pub async fn send_link<C: GenericClient>(
    ctx: &Ctx<'_>,
    c: &C,
    user_id: Uuid,
    email: &str,
    kind: LinkKind,
) -> Result<(), AuthError> {
    let m = mint(ctx, c, user_id, email, kind, None).await?;
    let text = format!(
        "{}\n\nFollow this link: {}\n\nOr enter this code: {}\n",
        kind.subject(),
        m.action_link,
        m.code
    );
    enqueue(c, email, kind.as_str(), kind.subject(), &text).await
}

/// Starts an e-mail change: the new address gets a link; the change applies when it is used.
pub async fn send_email_change<C: GenericClient>(
    ctx: &Ctx<'_>,
    c: &C,
    user_id: Uuid,
    new_email: &str,
) -> Result<(), AuthError> {
    c.execute(
        "update auth.users set email_change = $2 where id = $1",
        &[&user_id, &new_email],
    )
    .await?;
    send_link(ctx, c, user_id, new_email, LinkKind::EmailChange).await
}

#[derive(Deserialize)]
struct EmailBody {
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    email: Option<String>,
    data: Option<Value>,
    create_user: Option<bool>,
    phone: Option<String>,
}

impl EmailBody {
    /// The PKCE challenge the client sent, if any.
    fn challenge(&self) -> Result<Option<super::pkce::Challenge>, AuthError> {
        super::pkce::parse_challenge(
            self.code_challenge.as_deref(),
            self.code_challenge_method.as_deref(),
        )
    }
}

fn required_email(e: Option<String>) -> Result<String, AuthError> {
    users::normalize_email(
        e.as_deref()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| AuthError::Validation("An email address is required".into()))?,
    )
}

pub async fn recover(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    rate_limit(ctx, Class::Otp, &ip_key(ctx)).await?;
    let b: EmailBody = parse(ctx)?;
    let challenge = b.challenge()?;
    let email = required_email(b.email)?;
    rate_limit(ctx, Class::OtpAccount, &email).await?;
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    // Unknown addresses get the same answer: the endpoint does not reveal who has an account.
    if let Some(u) = users::by_email(&tx, &email).await? {
        send_link_with_pkce(
            ctx,
            &tx,
            u.id,
            &email,
            LinkKind::Recovery,
            challenge.as_ref(),
        )
        .await?;
        super::audit::record(
            &tx,
            ctx.rc.client_ip,
            super::audit::Action::UserRecoveryRequested,
            u.id,
            json!({}),
        )
        .await?;
    }
    commit_and_mail(ctx, tx, &json!({})).await
}

pub async fn otp(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    rate_limit(ctx, Class::Otp, &ip_key(ctx)).await?;
    let b: EmailBody = parse(ctx)?;
    if b.phone.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(AuthError::Validation(
            "Phone one-time passwords are not supported".into(),
        ));
    }
    let challenge = b.challenge()?;
    let email = required_email(b.email)?;
    rate_limit(ctx, Class::OtpAccount, &email).await?;
    let data = Value::Object(metadata_object(b.data, "data")?);
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    match users::by_email(&tx, &email).await? {
        Some(u) => {
            send_link_with_pkce(
                ctx,
                &tx,
                u.id,
                &email,
                LinkKind::MagicLink,
                challenge.as_ref(),
            )
            .await?
        }
        None => {
            if !b.create_user.unwrap_or(true) || ctx.auth.config.disable_signup {
                return Err(AuthError::SignupDisabled);
            }
            let id = users::insert(&tx, &NewUser::authenticated(Some(&email), &data))
                .await?
                .ok_or(AuthError::UserAlreadyExists)?;
            send_link_with_pkce(ctx, &tx, id, &email, LinkKind::Signup, challenge.as_ref()).await?;
        }
    }
    commit_and_mail(ctx, tx, &json!({})).await
}

#[derive(Deserialize)]
struct ResendBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

/// Sends a sign-up confirmation or a pending e-mail change's link again. Like /recover it answers
/// the same whether or not there is anything to resend.
pub async fn resend(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    rate_limit(ctx, Class::Otp, &ip_key(ctx)).await?;
    let b: ResendBody = parse(ctx)?;
    let kind = match b.kind.as_deref() {
        Some("signup") => LinkKind::Signup,
        Some("email_change") => LinkKind::EmailChange,
        // No phone number has a code to resend (doska keeps none): the same answer as when an
        // address has nothing pending, once the number is well-formed.
        Some(t) if PHONE_TYPES.contains(&t) => {
            check_phone(b.phone.as_deref())?;
            return ok_json(&json!({}));
        }
        _ => {
            return Err(AuthError::Validation(
                "resend type must be signup, email_change, sms or phone_change".into(),
            ));
        }
    };
    let email = required_email(b.email)?;
    rate_limit(ctx, Class::OtpAccount, &email).await?;
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    let target = match kind {
        LinkKind::Signup => {
            tx.query_opt(
                "select id, email from auth.users where email = $1 and email_confirmed_at is null",
                &[&email],
            )
            .await?
        }
        _ => {
            tx.query_opt(
                "select id, email_change from auth.users where email = $1 and email_change <> ''",
                &[&email],
            )
            .await?
        }
    };
    if let Some(row) = target {
        let to: String = row.get(1);
        send_link(ctx, &tx, row.get(0), &to, kind).await?;
    }
    commit_and_mail(ctx, tx, &json!({})).await
}

#[derive(Deserialize)]
struct VerifyBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    token: Option<String>,
    token_hash: Option<String>,
    redirect_to: Option<String>,
}

/// Redeems a credential: finds its user, clears it, applies what it confirms and opens a session.
/// Redeems a credential inside `tx`: finds its user, clears it and applies what it confirms.
/// Returns the user and the kind of credential that matched.
async fn confirm<C: GenericClient>(
    ctx: &Ctx<'_>,
    tx: &C,
    kind: LinkKind,
    th: &str,
) -> Result<(Uuid, LinkKind), AuthError> {
    // "email"/"magiclink" codes also redeem a sign-up confirmation (a magic link to a new user
    // confirms the sign-up), as GoTrue's `email` type does.
    let tries: &[LinkKind] = match kind {
        LinkKind::MagicLink => &[LinkKind::MagicLink, LinkKind::Signup],
        _ => std::slice::from_ref(&kind),
    };
    let mut found = None;
    for k in tries {
        let (tok_col, sent_col) = k.columns();
        if let Some(row) = tx
            .query_opt(
                &format!(
                    "select id, email_change from auth.users where {tok_col} = $1 and {tok_col} <> '' \
                     and {sent_col} > now() - make_interval(secs => $2) for update"
                ),
                &[&sha256_hex(th), &(ctx.auth.config.otp_exp_secs as f64)],
            )
            .await?
        {
            found = Some((row, tok_col, *k));
            break;
        }
    }
    let (row, tok_col, found_kind) = found.ok_or(AuthError::OtpExpired)?;
    let id: Uuid = row.get(0);
    let email_change: Option<String> = row.get(1);
    tx.execute(
        &format!("update auth.users set {tok_col} = '' where id = $1"),
        &[&id],
    )
    .await?;
    if kind == LinkKind::EmailChange {
        let new_email = email_change
            .filter(|e| !e.is_empty())
            .ok_or(AuthError::OtpExpired)?;
        let taken = tx
            .query_opt(
                "select 1 from auth.users where email = $1 and id <> $2",
                &[&new_email, &id],
            )
            .await?
            .is_some();
        if taken {
            return Err(AuthError::EmailExists);
        }
        tx.execute(
            "update auth.users set email = $2, email_change = '', updated_at = now() where id = $1",
            &[&id, &new_email],
        )
        .await?;
        tx.execute(
            "update auth.identities set identity_data = identity_data || jsonb_build_object('email', $2::text) \
             where user_id = $1 and provider = 'email'",
            &[&id, &new_email],
        )
        .await?;
    }
    tx.execute(
        "update auth.users set email_confirmed_at = coalesce(email_confirmed_at, now()), \
           updated_at = now() where id = $1",
        &[&id],
    )
    .await?;
    let user = users::by_id(tx, id).await?.ok_or(AuthError::OtpExpired)?;
    if user.is_banned(chrono::Utc::now()) {
        return Err(AuthError::UserBanned);
    }
    Ok((id, found_kind))
}

/// Redeems a credential and opens a session with it.
async fn redeem(ctx: &Ctx<'_>, kind: LinkKind, th: &str) -> Result<Value, AuthError> {
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    let (id, found) = confirm(ctx, &tx, kind, th).await?;
    let session = open_session(ctx, &tx, id, found.auth_method()).await?;
    tx.commit().await?;
    Ok(session)
}

/// What the mailed link leads to: a session in the fragment (implicit flow), or, when the mail
/// was requested with a PKCE challenge, a one-time `code` for `grant_type=pkce`.
enum LinkOutcome {
    Session(Value),
    Code(String),
}

async fn redeem_link(ctx: &Ctx<'_>, kind: LinkKind, th: &str) -> Result<LinkOutcome, AuthError> {
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    let (id, found) = confirm(ctx, &tx, kind, th).await?;
    let outcome = match super::pkce::issue_code(&tx, id, found.auth_method(), ctx).await? {
        Some(code) => LinkOutcome::Code(code),
        None => LinkOutcome::Session(open_session(ctx, &tx, id, found.auth_method()).await?),
    };
    tx.commit().await?;
    Ok(outcome)
}

/// GoTrue's phone rule: E.164 digits, the `+` optional.
fn check_phone(phone: Option<&str>) -> Result<(), AuthError> {
    let digits = phone.unwrap_or_default().trim();
    let digits = digits.strip_prefix('+').unwrap_or(digits);
    let ok = (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(AuthError::PhoneInvalid)
    }
}

/// The OTP types of phone numbers. doska keeps no phone numbers, so no such code can be pending:
/// a well-formed number answers what GoTrue answers for a wrong code.
const PHONE_TYPES: [&str; 2] = ["sms", "phone_change"];

fn verify_input(b: &VerifyBody) -> Result<(LinkKind, String), AuthError> {
    if b.kind.as_deref().is_some_and(|t| PHONE_TYPES.contains(&t)) {
        check_phone(b.phone.as_deref())?;
        return Err(AuthError::OtpExpired);
    }
    let kind = b
        .kind
        .as_deref()
        .and_then(LinkKind::parse)
        .ok_or_else(|| AuthError::Validation("Verify requires a valid type".into()))?;
    let th = match (&b.token_hash, &b.token, &b.email) {
        (Some(h), _, _) if !h.is_empty() && h.len() <= 128 => h.clone(),
        (_, Some(t), Some(e)) if !t.is_empty() && t.len() <= 64 => {
            token_hash(&users::normalize_email(e)?, t.trim())
        }
        (_, Some(t), None) if !t.is_empty() && t.len() <= 128 => t.clone(),
        _ => {
            return Err(AuthError::Validation(
                "Verify requires a token or a token_hash".into(),
            ));
        }
    };
    Ok((kind, th))
}

pub async fn verify(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    rate_limit(ctx, Class::Verify, &ip_key(ctx)).await?;
    let b: VerifyBody = parse(ctx)?;
    let (kind, th) = verify_input(&b)?;
    ok_json(&redeem(ctx, kind, &th).await?)
}

/// The link in the mail: redeems and redirects with the session (or the error) in the fragment,
/// as GoTrue's implicit flow does.
pub async fn verify_link(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    rate_limit(ctx, Class::Verify, &ip_key(ctx)).await?;
    let b = VerifyBody {
        kind: ctx.q("type").map(str::to_owned),
        email: None,
        phone: None,
        token: ctx.q("token").map(str::to_owned),
        token_hash: None,
        redirect_to: ctx.q("redirect_to").map(str::to_owned),
    };
    let target = redirect_for(ctx, b.redirect_to.as_deref());
    let error_fragment = |e: &AuthError| {
        format!(
            "#error=access_denied&error_code={}&error_description={}",
            e.code(),
            enc(&e.message())
        )
    };
    let suffix = match verify_input(&b) {
        Ok((kind, th)) => match redeem_link(ctx, kind, &th).await {
            Ok(LinkOutcome::Session(s)) => format!(
                "#access_token={}&expires_at={}&expires_in={}&refresh_token={}&token_type=bearer&type={}",
                enc(s["access_token"].as_str().unwrap_or_default()),
                s["expires_at"],
                s["expires_in"],
                enc(s["refresh_token"].as_str().unwrap_or_default()),
                kind.as_str()
            ),
            Ok(LinkOutcome::Code(code)) => {
                let sep = if target.contains('?') { '&' } else { '?' };
                format!("{sep}code={}", enc(&code))
            }
            Err(e @ AuthError::Internal(_)) => return Err(e),
            Err(e) => error_fragment(&e),
        },
        Err(e) => error_fragment(&e),
    };
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let loc = HeaderValue::from_str(&format!("{target}{suffix}"))
        .map_err(|e| AuthError::Internal(e.to_string()))?;
    resp.headers_mut().insert(http::header::LOCATION, loc);
    Ok(resp)
}

/// Mails the signed-in user a nonce that PUT /user accepts for a password change.
pub async fn reauthenticate(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    rate_limit(ctx, Class::Otp, &ip_key(ctx)).await?;
    let client = ctx.state.admin.get().await?;
    let me = signed_in(ctx, &client).await?;
    let user = users::get(&client, me.user_id).await?;
    let email = user.email.filter(|e| !e.is_empty()).ok_or_else(|| {
        // GoTrue's words; doska has no phone numbers, so an e-mail is what it needs.
        AuthError::Validation(
            "Reauthentication requires the user to have an email or a phone number".into(),
        )
    })?;
    rate_limit(ctx, Class::OtpAccount, &email).await?;
    let code = new_code();
    client
        .execute(
            "update auth.users set reauthentication_token = $2, reauthentication_sent_at = now() \
             where id = $1",
            &[&user.id, &sha256_hex(&token_hash(&email, &code))],
        )
        .await?;
    let text = format!("Enter this code to confirm it is you: {code}\n");
    enqueue(
        &client,
        &email,
        "reauthentication",
        "Confirm reauthentication",
        &text,
    )
    .await?;
    ctx.kick_mail();
    ok_json(&json!({}))
}

/// Checks and clears the reauthentication nonce for a password change.
pub async fn consume_reauth_nonce<C: GenericClient>(
    c: &C,
    user_id: Uuid,
    nonce: &str,
    ctx: &Ctx<'_>,
) -> Result<(), AuthError> {
    let email: Option<String> = c
        .query_opt("select email from auth.users where id = $1", &[&user_id])
        .await?
        .and_then(|r| r.get(0));
    let email = email.ok_or(AuthError::ReauthenticationNotValid)?;
    let n = c
        .execute(
            "update auth.users set reauthentication_token = '' where id = $1 \
             and reauthentication_token = $2 and reauthentication_token <> '' \
             and reauthentication_sent_at > now() - make_interval(secs => $3)",
            &[
                &user_id,
                &sha256_hex(&token_hash(&email, nonce.trim())),
                &(ctx.auth.config.otp_exp_secs as f64),
            ],
        )
        .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(AuthError::ReauthenticationNotValid)
    }
}

pub async fn invite(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    require_admin(ctx)?;
    let b: EmailBody = parse(ctx)?;
    let email = required_email(b.email)?;
    let data = Value::Object(metadata_object(b.data, "data")?);
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    let id = users::insert(
        &tx,
        &NewUser {
            invited: true,
            ..NewUser::authenticated(Some(&email), &data)
        },
    )
    .await?
    .ok_or(AuthError::EmailExists)?;
    send_link(ctx, &tx, id, &email, LinkKind::Invite).await?;
    super::audit::record(
        &tx,
        ctx.rc.client_ip,
        super::audit::Action::UserInvited,
        id,
        json!({"by": "service_role"}),
    )
    .await?;
    let user = users::get(&tx, id).await?;
    commit_and_mail(ctx, tx, &user.to_json()).await
}

#[derive(Deserialize)]
struct GenerateLinkBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    email: Option<String>,
    password: Option<String>,
    data: Option<Value>,
    new_email: Option<String>,
    redirect_to: Option<String>,
}

/// Mints a link without mailing it (the admin delivers it), creating the user for signup/invite.
pub async fn generate_link(ctx: &Ctx<'_>) -> Result<Response<Body>, AuthError> {
    require_admin(ctx)?;
    let b: GenerateLinkBody = parse(ctx)?;
    let requested = b.kind.clone().unwrap_or_default();
    let kind = LinkKind::parse(&requested)
        .ok_or_else(|| AuthError::Validation("Invalid link type".into()))?;
    let email = required_email(b.email)?;
    let data = Value::Object(metadata_object(b.data, "data")?);
    let hash = match (&b.password, kind) {
        (Some(p), LinkKind::Signup) => {
            check_password_strength(ctx, p)?;
            Some(ctx.auth.hasher.hash(p).await?)
        }
        (None, LinkKind::Signup) => {
            return Err(AuthError::Validation(
                "A signup link requires a password".into(),
            ));
        }
        _ => None,
    };
    let mut client = ctx.state.admin.get().await?;
    let tx = client.transaction().await?;
    let existing = users::by_email(&tx, &email).await?;
    let id = match (existing, kind) {
        (Some(_), LinkKind::Signup | LinkKind::Invite) => return Err(AuthError::EmailExists),
        (Some(u), _) => u.id,
        (None, LinkKind::Signup | LinkKind::Invite | LinkKind::MagicLink) => users::insert(
            &tx,
            &NewUser {
                encrypted_password: hash.as_deref(),
                invited: kind == LinkKind::Invite,
                ..NewUser::authenticated(Some(&email), &data)
            },
        )
        .await?
        .ok_or(AuthError::EmailExists)?,
        (None, _) => return Err(AuthError::UserNotFound),
    };
    let (kind, mail_to) = match kind {
        LinkKind::EmailChange => {
            let new_email = required_email(b.new_email)?;
            tx.execute(
                "update auth.users set email_change = $2 where id = $1",
                &[&id, &new_email],
            )
            .await?;
            // `email_change_current` is the link for the current address: its code goes with it.
            let to = if requested == "email_change_current" {
                email
            } else {
                new_email
            };
            (kind, to)
        }
        // A magic link for a brand-new user confirms the sign-up.
        _ => (kind, email),
    };
    let m = mint(ctx, &tx, id, &mail_to, kind, b.redirect_to.as_deref()).await?;
    let user = users::get(&tx, id).await?;
    tx.commit().await?;
    let mut out = user.to_json();
    out["action_link"] = json!(m.action_link);
    out["email_otp"] = json!(m.code);
    out["hashed_token"] = json!(m.token_hash);
    out["redirect_to"] = json!(m.redirect_to);
    out["verification_type"] = json!(match kind {
        LinkKind::EmailChange => requested.as_str(),
        _ => kind.as_str(),
    });
    ok_json(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_allow_list() {
        let allow = vec![
            "https://app.example.com/cb".to_string(),
            "http://localhost:5173/*".to_string(),
        ];
        let site = "https://school.example.com";
        for (wanted, want) in [
            (None, site),
            (
                Some("https://school.example.com/welcome"),
                "https://school.example.com/welcome",
            ),
            (Some("https://school.example.com.evil.io/"), site),
            (
                Some("https://app.example.com/cb"),
                "https://app.example.com/cb",
            ),
            (Some("https://app.example.com/cb2"), site),
            (
                Some("http://localhost:5173/any/path"),
                "http://localhost:5173/any/path",
            ),
            (Some("javascript:alert(1)"), site),
        ] {
            assert_eq!(allowed_redirect(site, &allow, wanted), want, "{wanted:?}");
        }
    }

    #[test]
    fn codes_and_hashes() {
        let c = new_code();
        assert_eq!(c.len(), 6);
        assert!(c.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(
            token_hash("A@b.co", "123456"),
            token_hash("a@b.co", "123456")
        );
        assert_ne!(
            token_hash("a@b.co", "123456"),
            token_hash("a@b.co", "123457")
        );
        for k in ["signup", "invite", "magiclink", "recovery", "email_change"] {
            assert_eq!(LinkKind::parse(k).unwrap().as_str(), k);
        }
        assert!(LinkKind::parse("sms").is_none());
    }
}
