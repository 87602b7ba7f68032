//! /auth/v1 against a live in-process doska and a real PostgreSQL: the happy paths auth-js takes,
//! refresh-token rotation and reuse detection, the admin API, mail flows through the outbox, and a
//! table of bad inputs and attacks.

mod common;

use std::time::Duration;

use common::{Response, TestDb, request};
use doska::auth::{self, AuthConfig, password::Argon2Cost, ratelimit::Rate};
use serde_json::{Value, json};

/// Cheap hashing keeps the suite fast; the cost itself is covered by password.rs's tests.
fn test_config() -> AuthConfig {
    let mut c = AuthConfig {
        argon2: Argon2Cost {
            m_kib: 1024,
            t: 1,
            p: 1,
        },
        hash_pool_size: 2,
        site_url: "http://school.test".into(),
        redirect_urls: vec!["http://app.test/*".into()],
        ..AuthConfig::default()
    };
    c.rate_limits.enabled = false;
    c
}

struct Env {
    db: TestDb,
    url: String,
    anon: String,
    service: String,
}

async fn env_with(cfg: AuthConfig) -> Env {
    let db = TestDb::new().await;
    let url = format!("{}/auth/v1", db.serve(&db.doors_with_auth(cfg).await).await);
    let anon = db.sign(json!({"role": "anon"}));
    let service = db.sign(json!({"role": "service_role"}));
    Env {
        db,
        url,
        anon,
        service,
    }
}

async fn env() -> Env {
    env_with(test_config()).await
}

impl Env {
    async fn call(&self, method: &str, path: &str, bearer: Option<&str>, body: &str) -> Response {
        let auth = format!("Bearer {}", bearer.unwrap_or(&self.anon));
        request(
            method,
            &format!("{}{}", self.url, path),
            &[
                ("apikey", &self.anon),
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.to_owned(),
        )
        .await
    }
    async fn post(&self, path: &str, body: Value) -> Response {
        self.call("POST", path, None, &body.to_string()).await
    }
    async fn signup(&self, email: &str, password: &str) -> Value {
        let r = self
            .post("/signup", json!({"email": email, "password": password}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }
    async fn get_user(&self, token: &str) -> Response {
        self.call("GET", "/user", Some(token), "").await
    }
    async fn put_user(&self, token: &str, body: Value) -> Response {
        self.call("PUT", "/user", Some(token), &body.to_string())
            .await
    }
    async fn sign_in(&self, email: &str, password: &str) -> Response {
        self.post(
            "/token?grant_type=password",
            json!({"email": email, "password": password}),
        )
        .await
    }
    async fn refresh(&self, token: &str) -> Response {
        self.post(
            "/token?grant_type=refresh_token",
            json!({"refresh_token": token}),
        )
        .await
    }
    fn claims(&self, token: &str) -> Value {
        self.db
            .state
            .verifier
            .verify(token)
            .expect("a valid access token")
    }
    /// The body of the latest mail of this kind in the outbox.
    async fn mail_body(&self, kind: &str) -> String {
        self.db
            .value(
                "select body from auth.mail_outbox where kind = $1 order by id desc limit 1",
                &[&kind],
            )
            .await
    }
    /// The verify link in the latest mail of this kind.
    async fn mail_link(&self, kind: &str) -> String {
        let body = self.mail_body(kind).await;
        let link = body.lines().find(|l| l.contains("/auth/v1/verify?"));
        link.unwrap().to_owned()
    }
    async fn outbox_code(&self, to: &str) -> String {
        let row = self
            .db
            .admin()
            .query_one(
                "select body from auth.mail_outbox where recipient = $1 order by id desc limit 1",
                &[&to],
            )
            .await
            .unwrap();
        let body: String = row.get(0);
        body.split("code")
            .last()
            .unwrap()
            .chars()
            .filter(char::is_ascii_digit)
            .collect()
    }
}

fn access_token(session: &Value) -> &str {
    session["access_token"].as_str().unwrap()
}

fn error_code(r: &Response) -> String {
    r.json()["error_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn signup_sign_in_get_user_refresh_and_logout() {
    let e = env().await;
    let s = e.signup("Ada@Example.com", "correct-horse").await;
    for k in [
        "access_token",
        "refresh_token",
        "expires_in",
        "expires_at",
        "user",
    ] {
        assert!(s.get(k).is_some(), "session lacks {k}: {s}");
    }
    assert_eq!(s["token_type"], "bearer");
    assert_eq!(s["user"]["email"], "ada@example.com");
    let c = e.claims(access_token(&s));
    assert_eq!(c["role"], "authenticated");
    assert_eq!(c["aud"], "authenticated");
    assert_eq!(c["sub"], s["user"]["id"]);
    assert_eq!(c["amr"][0]["method"], "password");

    let r = e.sign_in("ada@example.com", "correct-horse").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s2 = r.json();
    let at = access_token(&s2);
    let r = e.get_user(at).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["email"], "ada@example.com");
    assert_eq!(r.json()["identities"][0]["provider"], "email");

    let r = e.refresh(s2["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s3 = r.json();
    assert_ne!(s3["refresh_token"], s2["refresh_token"]);
    assert_eq!(
        e.claims(access_token(&s3))["session_id"],
        e.claims(at)["session_id"]
    );

    // logout local ends this session only
    let r = e
        .call("POST", "/logout?scope=local", Some(access_token(&s3)), "")
        .await;
    assert_eq!(r.status, 204);
    let r = e.get_user(at).await;
    assert_eq!(r.status, 403);
    assert_eq!(error_code(&r), "session_not_found");
    let first = access_token(&s);
    assert_eq!(e.get_user(first).await.status, 200);
    assert_eq!(
        error_code(&e.refresh(s3["refresh_token"].as_str().unwrap()).await),
        "refresh_token_not_found"
    );
    // global ends the rest
    let r = e
        .call("POST", "/logout?scope=global", Some(first), "")
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(e.get_user(first).await.status, 403);

    // The audit trail, in GoTrue's payload shape, without secrets.
    let rows =
        e.db.admin()
            .query(
                "select payload::jsonb from auth.audit_log_entries order by created_at, id",
                &[],
            )
            .await
            .unwrap();
    let payloads: Vec<Value> = rows.iter().map(|r| r.get(0)).collect();
    let count = |action: &str| payloads.iter().filter(|p| p["action"] == action).count();
    assert_eq!(count("user_signedup"), 1, "{payloads:?}");
    assert_eq!(count("login"), 2, "{payloads:?}");
    assert_eq!(count("logout"), 2, "{payloads:?}");
    let all = format!("{payloads:?}");
    assert!(all.contains("ada@example.com"));
    assert!(!all.contains("correct-horse"));
    assert!(!all.contains(s2["refresh_token"].as_str().unwrap()));
}

#[tokio::test]
async fn logout_others_keeps_the_callers_session() {
    let e = env().await;
    let a = e.signup("o@example.com", "password-1").await;
    let b = e.sign_in("o@example.com", "password-1").await.json();
    let r = e
        .call("POST", "/logout?scope=others", Some(access_token(&a)), "")
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(e.get_user(access_token(&a)).await.status, 200);
    assert_eq!(e.get_user(access_token(&b)).await.status, 403);
    let r = e
        .call("POST", "/logout?scope=everyone", Some(access_token(&a)), "")
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn trigger_set_role_is_in_the_first_token() {
    let e = env().await;
    let role = format!("teacher_{}", e.db.name);
    e.db.admin()
        .batch_execute(&format!(
            "create role {role} nologin noinherit; grant authenticated to {role}; grant {role} to authenticator;
             create table public.profiles (id uuid primary key references auth.users(id) on delete cascade, kind text);
             create function public.on_new_user() returns trigger language plpgsql security definer as $$
             begin
               insert into public.profiles (id, kind) values (new.id, new.raw_user_meta_data->>'kind');
               if new.raw_user_meta_data->>'kind' = 'teacher' then
                 update auth.users set role = '{role}' where id = new.id;
               end if;
               return new;
             end $$;
             create trigger on_auth_user_created after insert on auth.users
               for each row execute function public.on_new_user();"
        ))
        .await
        .unwrap();
    let r = e
        .post(
            "/signup",
            json!({"email": "t@school.test", "password": "secret-123", "data": {"kind": "teacher"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = r.json();
    assert_eq!(s["user"]["role"], role.as_str());
    assert_eq!(e.claims(access_token(&s))["role"], role.as_str());
    assert_eq!(s["user"]["user_metadata"]["kind"], "teacher");
    let n: i64 =
        e.db.value("select count(*) from public.profiles", &[])
            .await;
    assert_eq!(n, 1);

    // A trigger that sets a role outside `authenticated` does not get it into a token.
    e.db.admin()
        .batch_execute(
            "create or replace function public.on_new_user() returns trigger language plpgsql as $$
             begin update auth.users set role = 'service_role' where id = new.id; return new; end $$;",
        )
        .await
        .unwrap();
    let s = e.signup("evil@school.test", "secret-123").await;
    assert_eq!(e.claims(access_token(&s))["role"], "authenticated");
}

/// A trigger refusing the sign-up's metadata is the client's mistake: 400 with its message, and
/// no user is left behind.
#[tokio::test]
async fn a_trigger_refusing_a_sign_up_is_a_400_with_its_message() {
    let e = env().await;
    e.db.admin()
        .batch_execute(
            "create function public.check_code() returns trigger language plpgsql as $$
             begin
               if new.raw_user_meta_data->>'code' is distinct from 'ok' then
                 raise exception 'a valid school code is needed' using errcode = '22023';
               end if;
               if new.raw_user_meta_data->>'kind' = 'nobody' then
                 raise exception 'no such kind';
               end if;
               return new;
             end $$;
             create trigger check_code before insert on auth.users
               for each row execute function public.check_code();",
        )
        .await
        .unwrap();
    for (data, message) in [
        (json!({"code": "wrong"}), "a valid school code is needed"),
        (json!({"code": "ok", "kind": "nobody"}), "no such kind"),
    ] {
        let r = e
            .post(
                "/signup",
                json!({"email": "t@school.test", "password": "secret-123", "data": data}),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error_code"], "validation_failed", "{}", r.text());
        assert_eq!(r.json()["msg"], message, "{}", r.text());
    }
    let n: i64 = e.db.value("select count(*) from auth.users", &[]).await;
    assert_eq!(n, 0);
    let r = e
        .post(
            "/signup",
            json!({"email": "t@school.test", "password": "secret-123", "data": {"code": "ok"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn existing_email_is_refused_without_a_second_account() {
    let e = env().await;
    e.signup("dup@example.com", "password-1").await;
    let r = e
        .post(
            "/signup",
            json!({"email": "DUP@example.com", "password": "password-2"}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(error_code(&r), "user_already_exists");
    let n: i64 = e.db.value("select count(*) from auth.users", &[]).await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn anonymous_sign_in() {
    let e = env().await;
    let r = e.post("/signup", json!({"data": {"nick": "x"}})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = r.json();
    assert_eq!(s["user"]["is_anonymous"], true);
    let c = e.claims(access_token(&s));
    assert_eq!(c["is_anonymous"], true);
    assert_eq!(c["role"], "authenticated");
    assert_eq!(c["amr"][0]["method"], "anonymous");

    let mut cfg = test_config();
    cfg.anonymous_enabled = false;
    let e = env_with(cfg).await;
    let r = e.post("/signup", json!({})).await;
    assert_eq!(r.status, 422);
    assert_eq!(error_code(&r), "anonymous_provider_disabled");
}

#[tokio::test]
async fn concurrent_refresh_inside_the_window_keeps_both_signed_in() {
    let e = env().await;
    let s = e.signup("tabs@example.com", "password-1").await;
    let rt = s["refresh_token"].as_str().unwrap();
    let (a, b) = tokio::join!(e.refresh(rt), e.refresh(rt));
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(b.status, 200, "{}", b.text());
    // Both tabs keep refreshing independently.
    for s in [a.json(), b.json()] {
        let r = e.refresh(s["refresh_token"].as_str().unwrap()).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

#[tokio::test]
async fn reuse_outside_the_window_revokes_the_family() {
    let mut cfg = test_config();
    cfg.refresh_reuse_window_secs = 0;
    let e = env_with(cfg).await;
    let s = e.signup("thief@example.com", "password-1").await;
    let old = s["refresh_token"].as_str().unwrap().to_owned();
    let newer = e.refresh(&old).await.json();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = e.refresh(&old).await;
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r), "refresh_token_already_used");
    // the legitimate holder's newer token and access token are dead too
    let r = e.refresh(newer["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status, 400);
    let r = e.get_user(access_token(&newer)).await;
    assert_eq!(error_code(&r), "session_not_found");
    let revoked: i64 = e
        .db.value("select count(*) from auth.audit_log_entries where payload->>'action' = 'token_revoked'", &[]).await;
    assert_eq!(revoked, 1);
}

#[tokio::test]
async fn update_user_metadata_email_and_password() {
    let e = env().await;
    let s = e.signup("upd@example.com", "password-1").await;
    let at = access_token(&s);
    let r = e.put_user(at, json!({"data": {"a": 1, "b": 2}})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = e.put_user(at, json!({"data": {"b": null, "c": 3}})).await;
    assert_eq!(r.json()["user_metadata"], json!({"a": 1, "c": 3}));

    // password change needs the current password (or a nonce)
    let r = e.put_user(at, json!({"password": "password-2"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r), "reauthentication_needed");
    let body = json!({"password": "password-2", "current_password": "nope-nope"}).to_string();
    assert_eq!(
        error_code(&e.call("PUT", "/user", Some(at), &body).await),
        "invalid_credentials"
    );
    let body = json!({"password": "password-1", "current_password": "password-1"}).to_string();
    assert_eq!(
        error_code(&e.call("PUT", "/user", Some(at), &body).await),
        "same_password"
    );
    let body = json!({"password": "password-2", "current_password": "password-1"}).to_string();
    assert_eq!(e.call("PUT", "/user", Some(at), &body).await.status, 200);
    assert_eq!(e.sign_in("upd@example.com", "password-1").await.status, 400);
    assert_eq!(e.sign_in("upd@example.com", "password-2").await.status, 200);

    // reauthentication nonce from the outbox
    let r = e.call("GET", "/reauthenticate", Some(at), "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let nonce = e.outbox_code("upd@example.com").await;
    let body = json!({"password": "password-3", "nonce": "000000"}).to_string();
    assert_eq!(
        error_code(&e.call("PUT", "/user", Some(at), &body).await),
        "reauthentication_not_valid"
    );
    let body = json!({"password": "password-3", "nonce": nonce}).to_string();
    assert_eq!(e.call("PUT", "/user", Some(at), &body).await.status, 200);
    assert_eq!(e.sign_in("upd@example.com", "password-3").await.status, 200);

    // e-mail change (autoconfirm) and a taken address
    e.signup("taken@example.com", "password-1").await;
    let r = e.put_user(at, json!({"email": "taken@example.com"})).await;
    assert_eq!(error_code(&r), "email_exists");
    let r = e.put_user(at, json!({"email": "new@example.com"})).await;
    assert_eq!(r.json()["email"], "new@example.com");
    assert_eq!(e.sign_in("new@example.com", "password-3").await.status, 200);
}

#[tokio::test]
async fn admin_users_api() {
    let e = env().await;
    let role = format!("staff_{}", e.db.name);
    e.db.admin()
        .batch_execute(&format!(
            "create role {role} nologin; grant authenticated to {role};"
        ))
        .await
        .unwrap();
    // Not with the anon key, nor a user token.
    let r = e.post("/admin/users", json!({"email": "x@y.co"})).await;
    assert_eq!(r.status, 403);
    assert_eq!(error_code(&r), "not_admin");
    let svc = e.service.clone();
    let admin = |m: &'static str, p: String, b: Value| {
        let svc = svc.clone();
        let e = &e;
        async move { e.call(m, &p, Some(&svc), &b.to_string()).await }
    };
    let r = admin(
        "POST",
        "/admin/users".into(),
        json!({"email": "staff@school.test", "password": "staff-pass", "email_confirm": true,
               "role": role, "user_metadata": {"name": "S"}, "app_metadata": {"school": 7}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let u = r.json();
    assert_eq!(u["role"], role.as_str());
    assert_eq!(u["app_metadata"]["school"], 7);
    assert_eq!(u["app_metadata"]["provider"], "email");
    let id = u["id"].as_str().unwrap().to_owned();
    let s = e.sign_in("staff@school.test", "staff-pass").await.json();
    assert_eq!(e.claims(access_token(&s))["role"], role.as_str());

    for bad in [
        "anon",
        "service_role",
        "authenticator",
        "postgres",
        "no_such_role",
    ] {
        let r = admin("PUT", format!("/admin/users/{id}"), json!({"role": bad})).await;
        assert_eq!(r.status, 400, "role {bad}: {}", r.text());
    }
    let r = admin(
        "PUT",
        format!("/admin/users/{id}"),
        json!({"role": "authenticated", "user_metadata": {"x": 1}}),
    )
    .await;
    assert_eq!(r.json()["role"], "authenticated");
    assert_eq!(r.json()["user_metadata"], json!({"name": "S", "x": 1}));

    for i in 0..3 {
        e.signup(&format!("p{i}@example.com"), "password-1").await;
    }
    let r = admin("GET", "/admin/users?page=1&per_page=2".into(), json!(null)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-total-count"), Some("4"));
    let link = r.header("link").unwrap().to_owned();
    assert!(link.contains("page=2&per_page=2>; rel=\"next\""), "{link}");
    assert!(link.contains("rel=\"last\""), "{link}");
    assert_eq!(r.json()["users"].as_array().unwrap().len(), 2);

    assert_eq!(
        admin("GET", format!("/admin/users/{id}"), json!(null))
            .await
            .status,
        200
    );
    // ban: sign-in refused, sessions gone
    let r = admin(
        "PUT",
        format!("/admin/users/{id}"),
        json!({"ban_duration": "24h"}),
    )
    .await;
    assert!(r.json()["banned_until"].is_string());
    assert_eq!(
        error_code(&e.sign_in("staff@school.test", "staff-pass").await),
        "user_banned"
    );
    assert_eq!(e.get_user(access_token(&s)).await.status, 403);
    admin(
        "PUT",
        format!("/admin/users/{id}"),
        json!({"ban_duration": "none"}),
    )
    .await;
    assert_eq!(
        e.sign_in("staff@school.test", "staff-pass").await.status,
        200
    );

    assert_eq!(
        admin("DELETE", format!("/admin/users/{id}"), json!({}))
            .await
            .status,
        200
    );
    let r = admin("GET", format!("/admin/users/{id}"), json!(null)).await;
    assert_eq!(r.status, 404);
    assert_eq!(error_code(&r), "user_not_found");
}

#[tokio::test]
async fn imported_bcrypt_hash_is_rehashed_on_sign_in() {
    let e = env().await;
    let bc = bcrypt::hash("imported-pw", 4).unwrap();
    let r = e
        .call(
            "POST",
            "/admin/users",
            Some(&e.service),
            &json!({"email": "old@example.com", "password_hash": bc, "email_confirm": true})
                .to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = e
        .call(
            "POST",
            "/admin/users",
            Some(&e.service),
            &json!({"email": "bad@example.com", "password_hash": "md5$abc"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(e.sign_in("old@example.com", "wrong").await.status, 400);
    assert_eq!(
        e.sign_in("old@example.com", "imported-pw").await.status,
        200
    );
    let stored: String =
        e.db.value(
            "select encrypted_password from auth.users where email = 'old@example.com'",
            &[],
        )
        .await;
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert_eq!(
        e.sign_in("old@example.com", "imported-pw").await.status,
        200
    );
}

#[tokio::test]
async fn magic_link_recovery_and_verify_link() {
    let e = env().await;
    // otp to a new address creates the user; the mailed code signs in
    let r = e
        .post(
            "/otp",
            json!({"email": "ml@example.com", "create_user": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let code = e.outbox_code("ml@example.com").await;
    assert_eq!(code.len(), 6);
    let r = e
        .post(
            "/verify",
            json!({"type": "email", "email": "ml@example.com", "token": code}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["user"]["email_confirmed_at"].is_string());
    // a code works once
    let r = e
        .post(
            "/verify",
            json!({"type": "email", "email": "ml@example.com", "token": code}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(error_code(&r), "otp_expired");
    // the log never carries the code, the table has it
    let r = e
        .post(
            "/otp",
            json!({"email": "nobody@example.com", "create_user": false}),
        )
        .await;
    assert_eq!(r.status, 422);

    // recovery: unknown addresses look the same
    assert_eq!(
        e.post("/recover", json!({"email": "ghost@example.com"}))
            .await
            .status,
        200
    );
    e.signup("rec@example.com", "password-1").await;
    assert_eq!(
        e.post("/recover", json!({"email": "rec@example.com"}))
            .await
            .status,
        200
    );
    let code = e.outbox_code("rec@example.com").await;
    let r = e
        .post(
            "/verify",
            json!({"type": "recovery", "email": "rec@example.com", "token": code}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"]["email"], "rec@example.com");

    // generate_link (admin) + the GET /verify link redirects with the session in the fragment
    let r = e
        .call(
            "POST",
            "/admin/generate_link",
            Some(&e.service),
            &json!({"type": "magiclink", "email": "rec@example.com", "redirect_to": "http://app.test/cb"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let g = r.json();
    assert_eq!(g["redirect_to"], "http://app.test/cb");
    assert_eq!(g["verification_type"], "magiclink");
    let link = g["action_link"].as_str().unwrap();
    let path = link.split("/auth/v1").nth(1).unwrap();
    let r = e.call("GET", path, None, "").await;
    assert_eq!(r.status, 303);
    let loc = r.header("location").unwrap();
    assert!(loc.starts_with("http://app.test/cb#access_token="), "{loc}");
    // redeemed: the same link now redirects with an error
    let r = e.call("GET", path, None, "").await;
    assert!(
        r.header("location")
            .unwrap()
            .contains("error_code=otp_expired")
    );
    // redirect_to off the allow-list falls back to the site URL
    let r = e
        .call(
            "POST",
            "/admin/generate_link",
            Some(&e.service),
            &json!({"type": "recovery", "email": "rec@example.com", "redirect_to": "https://evil.test/"}).to_string(),
        )
        .await;
    assert_eq!(r.json()["redirect_to"], "http://school.test");

    // invite
    let r = e
        .call(
            "POST",
            "/invite",
            Some(&e.service),
            &json!({"email": "inv@example.com"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["invited_at"].is_string());
    let code = e.outbox_code("inv@example.com").await;
    let r = e
        .post(
            "/verify",
            json!({"type": "invite", "email": "inv@example.com", "token": code}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn settings_and_health() {
    let e = env().await;
    let r = e.call("GET", "/settings", None, "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["external"]["email"], true);
    assert_eq!(r.json()["mailer_autoconfirm"], true);
    let r = e.call("GET", "/health", None, "").await;
    assert_eq!(r.status, 200);
    let r = e.call("GET", "/.well-known/jwks.json", None, "").await;
    assert_eq!(r.json(), json!({"keys": []}));
}

#[tokio::test]
async fn bad_inputs_and_attacks() {
    let e = env().await;
    e.signup("victim@example.com", "right-password").await;
    let long_email = format!("{}@example.com", "a".repeat(300));
    let now = chrono::Utc::now().timestamp();
    let expired =
        e.db.sign(json!({"role": "authenticated", "sub": uuid::Uuid::new_v4(), "exp": now - 3600}));
    let forged = doska::jwt::sign(
        b"not-the-secret-not-the-secret-000",
        &json!({"role": "service_role", "sub": uuid::Uuid::new_v4()}),
    );
    use base64::Engine;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"role": "authenticated", "sub": uuid::Uuid::new_v4()}))
    );
    let not_yet =
        e.db.sign(json!({"role": "authenticated", "sub": uuid::Uuid::new_v4(), "nbf": now + 3600}));
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &json!({"role": "authenticated", "sub": uuid::Uuid::new_v4()}),
        &jsonwebtoken::EncodingKey::from_secret(common::JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let huge = format!(
        "{{\"email\":\"a@b.co\",\"password\":\"{}\"}}",
        "x".repeat(2_000_000)
    );
    struct Case {
        name: &'static str,
        method: &'static str,
        path: &'static str,
        bearer: Option<String>,
        body: String,
        status: u16,
        code: &'static str,
    }
    let c = |name, method, path, bearer: Option<&str>, body: &str, status, code| Case {
        name,
        method,
        path,
        bearer: bearer.map(str::to_owned),
        body: body.to_owned(),
        status,
        code,
    };
    let cases = vec![
        c(
            "malformed json",
            "POST",
            "/signup",
            None,
            "{\"email\":",
            400,
            "bad_json",
        ),
        c(
            "email not a string",
            "POST",
            "/signup",
            None,
            "{\"email\": 5, \"password\": \"abcdefg\"}",
            400,
            "bad_json",
        ),
        c(
            "data not an object",
            "POST",
            "/signup",
            None,
            "{\"email\": \"d@e.co\", \"password\": \"abcdefg\", \"data\": [1]}",
            400,
            "validation_failed",
        ),
        c(
            "missing password",
            "POST",
            "/signup",
            None,
            "{\"email\": \"m@e.co\"}",
            400,
            "validation_failed",
        ),
        c(
            "bad email",
            "POST",
            "/signup",
            None,
            "{\"email\": \"not-an-email\", \"password\": \"abcdefg\"}",
            400,
            "validation_failed",
        ),
        c(
            "overlong email",
            "POST",
            "/signup",
            None,
            &json!({"email": long_email, "password": "abcdefg"}).to_string(),
            400,
            "validation_failed",
        ),
        c(
            "weak password",
            "POST",
            "/signup",
            None,
            "{\"email\": \"w@e.co\", \"password\": \"123\"}",
            422,
            "weak_password",
        ),
        c(
            "overlong password",
            "POST",
            "/signup",
            None,
            &json!({"email": "l@e.co", "password": "x".repeat(5000)}).to_string(),
            400,
            "validation_failed",
        ),
        c(
            "unknown grant",
            "POST",
            "/token?grant_type=magic",
            None,
            "{}",
            400,
            "unsupported_grant_type",
        ),
        c(
            "password grant without fields",
            "POST",
            "/token?grant_type=password",
            None,
            "{}",
            400,
            "validation_failed",
        ),
        c(
            "wrong password",
            "POST",
            "/token?grant_type=password",
            None,
            "{\"email\": \"victim@example.com\", \"password\": \"wrong-password\"}",
            400,
            "invalid_credentials",
        ),
        c(
            "unknown user",
            "POST",
            "/token?grant_type=password",
            None,
            "{\"email\": \"nobody@example.com\", \"password\": \"wrong-password\"}",
            400,
            "invalid_credentials",
        ),
        c(
            "unknown refresh token",
            "POST",
            "/token?grant_type=refresh_token",
            None,
            "{\"refresh_token\": \"abc\"}",
            400,
            "refresh_token_not_found",
        ),
        c(
            "user without token (anon key)",
            "GET",
            "/user",
            None,
            "",
            401,
            "bad_jwt",
        ),
        c(
            "expired jwt",
            "GET",
            "/user",
            Some(&expired),
            "",
            401,
            "bad_jwt",
        ),
        c(
            "forged jwt",
            "GET",
            "/user",
            Some(&forged),
            "",
            401,
            "bad_jwt",
        ),
        c(
            "not yet valid jwt",
            "GET",
            "/user",
            Some(&not_yet),
            "",
            401,
            "bad_jwt",
        ),
        c(
            "unexpected algorithm (HS384)",
            "GET",
            "/user",
            Some(&hs384),
            "",
            401,
            "bad_jwt",
        ),
        c(
            "alg none jwt",
            "GET",
            "/user",
            Some(&alg_none),
            "",
            401,
            "bad_jwt",
        ),
        c(
            "garbage jwt",
            "GET",
            "/user",
            Some("abc.def"),
            "",
            401,
            "bad_jwt",
        ),
        c(
            "admin with forged service key",
            "GET",
            "/admin/users",
            Some(&forged),
            "",
            401,
            "bad_jwt",
        ),
        c("unknown path", "GET", "/nope", None, "", 404, "not_found"),
        c(
            "wrong method",
            "DELETE",
            "/signup",
            None,
            "",
            405,
            "method_not_allowed",
        ),
    ];
    let mut bodies = vec![];
    for case in &cases {
        let r = e
            .call(case.method, case.path, case.bearer.as_deref(), &case.body)
            .await;
        assert_eq!(r.status, case.status, "{}: {}", case.name, r.text());
        let j = r.json();
        assert_eq!(j["error_code"], case.code, "{}: {j}", case.name);
        assert_eq!(j["code"], case.status, "{}", case.name);
        assert!(j["msg"].is_string(), "{}", case.name);
        if case.name == "wrong password" || case.name == "unknown user" {
            bodies.push(r.body.clone());
        }
    }
    assert_eq!(
        bodies[0], bodies[1],
        "wrong password and unknown user must look the same"
    );

    // Over the body limit: refused before any parsing or hashing.
    assert_eq!(e.call("POST", "/signup", None, &huge).await.status, 413);

    // No token at all on /user.
    let r = request("GET", &format!("{}/user", e.url), &[], "").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_code"], "no_authorization");

    // With X-Supabase-Api-Version the body carries the string code (what auth-js reads then).
    let r = request(
        "POST",
        &format!("{}/token?grant_type=password", e.url),
        &[
            ("x-supabase-api-version", "2024-01-01"),
            ("apikey", &e.anon),
        ],
        json!({"email": "victim@example.com", "password": "nope-nope"}).to_string(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-supabase-api-version"), Some("2024-01-01"));
    assert_eq!(r.json()["code"], "invalid_credentials");
    assert!(r.json()["message"].is_string());
}

/// What GoTrue answers where doska differs in features: switched-off features with their codes
/// (apps branch on `error.code`), GoTrue's e-mail format on the admin routes, phone OTP types.
#[tokio::test]
async fn gotrue_answers_for_switched_off_features_and_malformed_input() {
    let e = env().await;
    let s = e.signup("linker@example.com", "password-1").await;
    let user = access_token(&s).to_owned();
    let svc = e.service.clone();
    let admin_user = json!({"email": "xx:;x@x.x", "password": "password-1"}).to_string();
    let bad_email = json!({"email": "xx:;x@x.x"}).to_string();
    let link = json!({"type": "magiclink", "email": "xx:;x@x.x"}).to_string();
    let phone = |kind: &str, number: &str| {
        json!({"type": kind, "phone": number, "token": "123456"}).to_string()
    };
    /// name, method, path, bearer, body, status, error_code, msg
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        String,
        u16,
        &'a str,
        &'a str,
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("sso", "POST", "/sso", None, json!({"domain": "x.com"}).to_string(), 404,
         "saml_provider_disabled", "SAML 2.0 is disabled"),
        ("link identity", "GET", "/user/identities/authorize?provider=google&skip_http_redirect=true",
         Some(&user), String::new(), 404, "manual_linking_disabled", "Manual linking is disabled"),
        ("unlink identity", "DELETE", "/user/identities/00000000-0000-0000-0000-000000000001",
         Some(&user), String::new(), 404, "manual_linking_disabled", "Manual linking is disabled"),
        ("web3", "POST", "/token?grant_type=web3", None,
         json!({"chain": "solana", "message": "m", "signature": "s"}).to_string(), 422,
         "web3_provider_disabled", "Web3 provider is disabled"),
        ("id token", "POST", "/token?grant_type=id_token", None,
         json!({"provider": "google", "id_token": "x"}).to_string(), 400, "provider_disabled",
         "Provider (issuer \"https://accounts.google.com\") is not enabled"),
        ("verify sms", "POST", "/verify", None, phone("sms", "+15555550100"), 403, "otp_expired",
         "Token has expired or is invalid"),
        ("verify phone_change", "POST", "/verify", None, phone("phone_change", "15555550100"), 403,
         "otp_expired", "Token has expired or is invalid"),
        ("verify sms, bad number", "POST", "/verify", None, phone("sms", "+1555-invalid"), 400,
         "validation_failed", "Invalid phone number format (E.164 required)"),
        ("resend sms, bad number", "POST", "/resend", None, phone("sms", "0123"), 400,
         "validation_failed", "Invalid phone number format (E.164 required)"),
        ("admin create, bad email", "POST", "/admin/users", Some(&svc), admin_user, 400,
         "validation_failed", "Unable to validate email address: invalid format"),
        ("invite, bad email", "POST", "/invite", Some(&svc), bad_email.clone(), 400,
         "validation_failed", "Unable to validate email address: invalid format"),
        ("generate link, bad email", "POST", "/admin/generate_link", Some(&svc), link, 400,
         "validation_failed", "Unable to validate email address: invalid format"),
        ("sign-up, bad email", "POST", "/signup", None,
         json!({"email": "xx:;x@x.x", "password": "password-1"}).to_string(), 400,
         "validation_failed", "Unable to validate email address: invalid format"),
    ];
    for (name, method, path, bearer, body, status, code, msg) in cases {
        let r = e.call(method, path, bearer, &body).await;
        assert_eq!(r.status, status, "{name}: {}", r.text());
        let j = r.json();
        assert_eq!(j["error_code"], code, "{name}: {j}");
        assert_eq!(j["msg"], msg, "{name}: {j}");
    }
    // No user was made for the malformed address.
    let n: i64 =
        e.db.admin()
            .query_one(
                "select count(*) from auth.users where email like 'xx%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(n, 0);
    // A well-formed number with nothing to resend: the same quiet answer as for an address.
    let r = e
        .call("POST", "/resend", None, &phone("sms", "+15555550100"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// GoTrue's admin roles are `service_role` and `supabase_admin`; `generate_link` makes the links of
/// an e-mail change for either address, with `new_email` on the user.
#[tokio::test]
async fn supabase_admin_tokens_and_email_change_links() {
    let e = env().await;
    let s = e.signup("old@example.com", "password-1").await;
    let id = s["user"]["id"].as_str().unwrap().to_owned();
    let supabase_admin =
        e.db.sign(json!({"role": "supabase_admin", "sub": "1234567890"}));
    let r = e
        .call("GET", "/admin/users", Some(&supabase_admin), "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // An authenticated user's token is still no admin's.
    let r = e
        .call("GET", "/admin/users", Some(access_token(&s)), "")
        .await;
    assert_eq!(r.status, 403, "{}", r.text());

    for (kind, to) in [
        ("email_change_new", "new@example.com"),
        ("email_change_current", "old@example.com"),
    ] {
        let body = json!({"type": kind, "email": "old@example.com", "new_email": "new@example.com",
                          "redirect_to": "http://app.test/welcome"});
        let r = e
            .call(
                "POST",
                "/admin/generate_link",
                Some(&e.service),
                &body.to_string(),
            )
            .await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text());
        let j = r.json();
        assert_eq!(j["new_email"], "new@example.com", "{kind}: {j}");
        assert_eq!(j["verification_type"], kind);
        let link = j["action_link"].as_str().unwrap();
        assert!(link.contains("type=email_change&"), "{link}");
        assert!(
            j["hashed_token"].is_string() && j["email_otp"].is_string(),
            "{j}"
        );
        if kind == "email_change_current" {
            // Its code goes with the current address, and confirms the change.
            let r = e
                .post(
                    "/verify",
                    json!({"type": "email_change", "email": to, "token": j["email_otp"]}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["user"]["email"], "new@example.com");
        }
    }
    let r = e
        .call(
            "DELETE",
            &format!("/admin/users/{id}"),
            Some(&supabase_admin),
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A user without an e-mail (anonymous) asking for a reauthentication nonce: GoTrue's words.
#[tokio::test]
async fn reauthenticate_without_an_email() {
    let e = env().await;
    let r = e.post("/signup", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let anon_user = r.json()["access_token"].as_str().unwrap().to_owned();
    let r = e.call("GET", "/reauthenticate", Some(&anon_user), "").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["msg"],
        "Reauthentication requires the user to have an email or a phone number"
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let mut cfg = test_config();
    cfg.rate_limits.enabled = true;
    cfg.rate_limits.sign_in = Rate::new(2, 60);
    let e = env_with(cfg).await;
    for _ in 0..2 {
        let r = e.sign_in("a@example.com", "whatever-pw").await;
        assert_eq!(r.status, 400);
    }
    let r = e.sign_in("a@example.com", "whatever-pw").await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(error_code(&r), "over_request_rate_limit");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    // signup shares the sign-in bucket
    let r = e
        .post(
            "/signup",
            json!({"email": "n@example.com", "password": "password-1"}),
        )
        .await;
    assert_eq!(r.status, 429);
    // refresh has its own bucket
    assert_eq!(e.refresh("nope").await.status, 400);

    let mut cfg = test_config();
    cfg.rate_limits.enabled = true;
    // The per-e-mail backstop: it holds back an address that has failed for the e-mail.
    cfg.rate_limits.sign_in_account = Rate::new(1, 60);
    let e = env_with(cfg).await;
    assert_eq!(
        e.sign_in("acct@example.com", "x-password").await.status,
        400
    );
    assert_eq!(
        e.sign_in("ACCT@example.com", "x-password").await.status,
        429
    );
    assert_eq!(
        e.sign_in("other@example.com", "x-password").await.status,
        400
    );

    // Guessing the current password through PUT /user is limited per account too (its failures
    // count as failed sign-ins of that user).
    let mut cfg = test_config();
    cfg.rate_limits.enabled = true;
    cfg.rate_limits.sign_in_failure = Rate::new(1, 60);
    let e = env_with(cfg).await;
    let s = e.signup("guess@example.com", "password-1").await;
    let at = access_token(&s);
    let body = json!({"password": "password-2", "current_password": "guess-1"}).to_string();
    assert_eq!(
        error_code(&e.call("PUT", "/user", Some(at), &body).await),
        "invalid_credentials"
    );
    let r = e.call("PUT", "/user", Some(at), &body).await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn without_autoconfirm_sign_up_waits_for_the_mailed_link() {
    let mut cfg = test_config();
    cfg.autoconfirm = false;
    let e = env_with(cfg).await;
    let r = e
        .post(
            "/signup",
            json!({"email": "conf@example.com", "password": "password-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let u = r.json();
    assert!(
        u.get("access_token").is_none(),
        "no session before confirmation: {u}"
    );
    assert_eq!(u["email"], "conf@example.com");
    assert!(u["confirmation_sent_at"].is_string());
    assert_eq!(
        error_code(&e.sign_in("conf@example.com", "password-1").await),
        "email_not_confirmed"
    );
    // The outbox holds the link; its token_hash redeems it.
    let link = e.mail_link("signup").await;
    let th = link
        .split("token=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let r = e
        .post("/verify", json!({"type": "signup", "token_hash": th}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["access_token"].is_string());
    // After confirmation there is nothing to resend; the answer looks the same.
    let r = e
        .post(
            "/resend",
            json!({"type": "signup", "email": "conf@example.com"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let s = e.sign_in("conf@example.com", "password-1").await.json();
    let at = access_token(&s);

    // E-mail change goes through a link to the new address.
    let r = e.put_user(at, json!({"email": "moved@example.com"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["email"], "conf@example.com");
    let code = e.outbox_code("moved@example.com").await;
    let r = e
        .post(
            "/verify",
            json!({"type": "email_change", "email": "moved@example.com", "token": code}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"]["email"], "moved@example.com");
    assert_eq!(
        e.sign_in("moved@example.com", "password-1").await.status,
        200
    );
}

#[tokio::test]
async fn mail_links_ignore_a_forged_host_header() {
    let mut cfg = test_config();
    cfg.external_url = Some("https://api.school.test/".into());
    let e = env_with(cfg).await;
    e.signup("host@example.com", "password-1").await;
    let r = request(
        "POST",
        &format!("{}/recover", e.url),
        &[
            ("apikey", &e.anon),
            ("host", "evil.test"),
            ("content-type", "application/json"),
        ],
        json!({"email": "host@example.com"}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = e.mail_body("recovery").await;
    assert!(
        body.contains("https://api.school.test/auth/v1/verify?token="),
        "{body}"
    );
    assert!(!body.contains("evil.test"), "{body}");
}

#[tokio::test]
async fn pkce_link_redirects_with_a_code_that_a_verifier_exchanges() {
    use base64::Engine;
    use sha2::Digest;
    let e = env().await;
    e.signup("pkce@example.com", "password-1").await;
    let verifier = "a-very-long-code-verifier-of-enough-length-0123456789";
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier));
    let r = e
        .post(
            "/recover?redirect_to=http%3A%2F%2Fapp.test%2Freset",
            json!({"email": "pkce@example.com", "code_challenge": challenge, "code_challenge_method": "s256"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let link = e.mail_link("recovery").await;
    let path = link.split("/auth/v1").nth(1).unwrap();
    let r = e.call("GET", path, None, "").await;
    assert_eq!(r.status, 303);
    let loc = r.header("location").unwrap().to_owned();
    assert!(loc.starts_with("http://app.test/reset?code="), "{loc}");
    assert!(!loc.contains("access_token"), "{loc}");
    let code = loc.split("code=").nth(1).unwrap();
    let grant = |code: &str, verifier: &str| {
        e.post(
            "/token?grant_type=pkce",
            json!({"auth_code": code, "code_verifier": verifier}),
        )
    };
    let r = grant(code, "the-wrong-verifier-the-wrong-verifier-the-wrong").await;
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r), "bad_code_verifier");
    let r = grant(code, verifier).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = r.json();
    assert_eq!(s["user"]["email"], "pkce@example.com");
    assert_eq!(e.claims(access_token(&s))["amr"][0]["method"], "recovery");
    // one use only
    let r = grant(code, verifier).await;
    assert_eq!(r.status, 404);
    assert_eq!(error_code(&r), "flow_state_not_found");
    let r = grant("", verifier).await;
    assert_eq!(error_code(&r), "validation_failed");
    // A malformed challenge is refused up front.
    let r = e
        .post(
            "/recover",
            json!({"email": "pkce@example.com", "code_challenge": "short"}),
        )
        .await;
    assert_eq!(error_code(&r), "validation_failed");
    // Without a challenge the link still signs in through the fragment.
    e.post("/recover", json!({"email": "pkce@example.com"}))
        .await;
    let link = e.mail_link("recovery").await;
    let r = e
        .call("GET", link.split("/auth/v1").nth(1).unwrap(), None, "")
        .await;
    assert!(r.header("location").unwrap().contains("#access_token="));
}

#[tokio::test]
async fn rotated_tokens_older_than_a_day_are_cleaned_up() {
    let e = env().await;
    let s = e.signup("long@example.com", "password-1").await;
    let first = s["refresh_token"].as_str().unwrap().to_owned();
    let second = e.refresh(&first).await.json();
    // Age the rotated token by a day.
    e.db.admin()
        .execute(
            "update auth.refresh_tokens set updated_at = now() - interval '2 days' where revoked",
            &[],
        )
        .await
        .unwrap();
    let third = e.refresh(second["refresh_token"].as_str().unwrap()).await;
    assert_eq!(third.status, 200);
    let n: i64 =
        e.db.value("select count(*) from auth.refresh_tokens", &[])
            .await;
    assert_eq!(
        n, 2,
        "the day-old rotated token is gone; the fresh rotated one and the live one stay"
    );
    assert_eq!(
        error_code(&e.refresh(&first).await),
        "refresh_token_not_found"
    );
}

#[tokio::test]
async fn es256_signing_key_tokens_and_jwks() {
    use std::sync::Arc;
    let db = TestDb::new().await;
    let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let key = doska::auth::keys::SigningKey::from_pem(pem.as_bytes()).unwrap();
    // The state startup would build: the shared verifier knows the public key too.
    let state = Arc::new(doska::state::AppState {
        config: db.state.config.clone(),
        admin: db.state.admin.clone(),
        pool: db.state.pool.clone(),
        commit_group: db.state.commit_group.clone(),
        verifier: doska::jwt::Verifier::hs256(common::JWT_SECRET.as_bytes()).with_key(
            Some(key.kid.clone()),
            jsonwebtoken::Algorithm::ES256,
            key.decoding_key().unwrap(),
        ),
        jwt_secret: db.state.jwt_secret.clone(),
        metrics: Default::default(),
        shutdown: db.state.shutdown.clone(),
    });
    let cfg = AuthConfig {
        jwt_signing_key_pem: Some(pem),
        ..test_config()
    };
    let doors = doska::startup::Doors::open(&state, auth::Auth::new(cfg).unwrap());
    let base = common::serve_router(doors.router(&state), db.state.shutdown.clone()).await;
    let e = Env {
        url: format!("{base}/auth/v1"),
        anon: db.sign(json!({"role": "anon"})),
        service: db.sign(json!({"role": "service_role"})),
        db,
    };
    let s = e.signup("es@example.com", "password-1").await;
    let at = access_token(&s);
    let header = jsonwebtoken::decode_header(at).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
    // What a client does: fetch the JWKS, pick the key by kid, verify.
    let jwks = e
        .call("GET", "/.well-known/jwks.json", None, "")
        .await
        .json();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    assert_eq!(jwk.common.key_id.as_deref(), Some(key.kid.as_str()));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["authenticated"]);
    let claims = jsonwebtoken::decode::<Value>(
        at,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["email"], "es@example.com");
    // doska itself accepts it, and an HS256 token with the shared secret still works.
    assert_eq!(e.get_user(at).await.status, 200);
    let r = e.refresh(s["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        jsonwebtoken::decode_header(r.json()["access_token"].as_str().unwrap())
            .unwrap()
            .alg,
        jsonwebtoken::Algorithm::ES256
    );
    assert_eq!(
        e.call("GET", "/admin/users", Some(&e.service), "")
            .await
            .status,
        200
    );
}

/// Issue #12: ~900 KB of user_metadata made a 1.2 MB token that every endpoint answered 431. The
/// metadata is capped at 16 KiB of JSON wherever it enters: sign-up, PUT /user (the merged result),
/// admin create and update; ordinary metadata still works.
#[tokio::test]
async fn oversized_user_metadata_is_refused_everywhere_it_enters() {
    let e = env().await;
    let huge = "x".repeat(900 * 1024);
    let near = "y".repeat(10 * 1024);
    let refused = |r: &Response, what: &str| {
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert_eq!(error_code(r), "validation_failed", "{what}");
        assert!(r.text().contains("16384"), "{what}: {}", r.text());
    };
    let r = e
        .post(
            "/signup",
            json!({"email": "big@example.com", "password": "password-1", "data": {"bio": huge}}),
        )
        .await;
    refused(&r, "signup");
    let n: i64 =
        e.db.value(
            "select count(*) from auth.users where email = 'big@example.com'",
            &[],
        )
        .await;
    assert_eq!(n, 0, "a refused sign-up creates no user");

    let r = e
        .post(
            "/signup",
            json!({"email": "fine@example.com", "password": "password-1",
                   "data": {"name": "Анна Петровна", "class": "5Б", "school": "Школа № 7", "bio": near}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let at = access_token(&r.json()).to_string();
    assert_eq!(e.claims(&at)["user_metadata"]["class"], "5Б");
    // Each patch is small, the merged object is not.
    let r = e.put_user(&at, json!({"data": {"more": near}})).await;
    refused(&r, "PUT /user merge");
    let r = e.put_user(&at, json!({"data": {"huge": huge}})).await;
    refused(&r, "PUT /user");
    let r = e.put_user(&at, json!({"data": {"class": "6А"}})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user_metadata"]["class"], "6А");

    let svc = e.service.clone();
    let r = e
        .call(
            "POST",
            "/admin/users",
            Some(&svc),
            &json!({"email": "adm@example.com", "password": "password-1", "user_metadata": {"h": huge}})
                .to_string(),
        )
        .await;
    refused(&r, "admin create");
    let id = r_user_id(&e.get_user(&at).await);
    let r = e
        .call(
            "PUT",
            &format!("/admin/users/{id}"),
            Some(&svc),
            &json!({"user_metadata": {"more": near}}).to_string(),
        )
        .await;
    refused(&r, "admin update");
    let r = e
        .call(
            "PUT",
            &format!("/admin/users/{id}"),
            Some(&svc),
            &json!({"app_metadata": {"h": huge}}).to_string(),
        )
        .await;
    refused(&r, "admin app_metadata");
    // The refused updates changed nothing.
    let r = e.get_user(&at).await;
    assert_eq!(r.json()["user_metadata"]["class"], "6А");
    assert!(r.json()["user_metadata"].get("more").is_none());
}

fn r_user_id(r: &Response) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}
