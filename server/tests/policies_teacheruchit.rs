//! TeacherUchit's schema (`migrations/`) and rules (`policies/`) from the repository: the migrations
//! apply, `policies test` passes every case with full allow/deny coverage, coverage gaps and wrong
//! expectations are failures, and the sign-up trigger decides roles (teacher only with a valid code,
//! never school admin) while staff roles change only by a school admin; and the whole path through
//! the front doors: sign up with metadata, get a token with the app role, read and write over REST.

mod common;

use std::path::PathBuf;

use doska::policies::{self, Mode};
use doska::testing;

fn repo(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir)
}

/// TeacherUchit on a fresh database (auth.users comes from doska's internal auth schema).
async fn teacheruchit() -> common::TestDb {
    let db = common::TestDb::new().await;
    let mut admin = db.state.admin.get().await.unwrap();
    doska::db::migrate::apply_dir(&mut admin, &repo("migrations"))
        .await
        .expect("TeacherUchit's migrations apply");
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn teacheruchit_policy_tests_pass_with_full_coverage() {
    let db = teacheruchit().await;
    let sources = policies::read_dir(&repo("policies")).unwrap();
    let mut admin = db.state.admin.get().await.unwrap();
    let report = testing::run(
        &mut admin,
        &sources,
        &repo("policies").join("tests"),
        &["public".to_string()],
    )
    .await
    .unwrap();
    let text = report.lines.join("\n");
    eprintln!("{text}");
    assert_eq!(report.failed, 0, "{text}");
    assert!(report.passed >= 40, "{text}");
    assert_eq!(
        report.lines.last().unwrap(),
        &format!("{} passed, 0 failed", report.passed)
    );
    // The run changed nothing: no policy, role grant or row stayed behind.
    let left: i64 = db
        .value(
            "select (select count(*) from pg_policy
                       where polrelid <> 'public.doska_local_store'::regclass)
                  + (select count(*) from public.schools)
                  + (select count(*) from doska.policy_objects)",
            &[],
        )
        .await;
    assert_eq!(left, 0);

    // And the files apply for real.
    let out = policies::apply(&mut admin, &sources, Mode::Apply, &["public".to_string()])
        .await
        .unwrap();
    assert_eq!((out.roles, out.tables), (3, 11));
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_cases_and_wrong_expectations_fail() {
    let db = teacheruchit().await;
    let sources = policies::read_dir(&repo("policies")).unwrap();
    let full = std::fs::read_to_string(repo("policies/tests/teacheruchit.toml")).unwrap();
    // Keep the fixtures and users, and two cases: one right, one wrong.
    let head = full.split("# ---- schools ----").next().unwrap();
    let dir = common::temp_dir("policy-tests");
    std::fs::write(
        dir.join("few.toml"),
        format!(
            "{head}
[[cases]]
name = \"right\"
as = \"anna\"
sql = \"select grade from grades\"
rows = [{{ grade = 5 }}]

[[cases]]
name = \"wrong\"
as = \"anna\"
sql = \"select grade from grades\"
rows = [{{ grade = 4 }}]

[[cases]]
name = \"rest wrong\"
as = \"anna\"
rest = \"GET /grades?select=grade\"
rows = [{{ grade = 3 }}]

[[cases]]
name = \"rest refused\"
as = \"anna\"
rest = \"GET /nope\"
count = 0

[[cases]]
name = \"unknown user\"
as = \"nobody\"
sql = \"select 1\"
count = 1
"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("broken.toml"), "[[cases]]\nname = 1\n").unwrap();
    let mut admin = db.state.admin.get().await.unwrap();
    let report = testing::run(&mut admin, &sources, &dir, &["public".to_string()])
        .await
        .unwrap();
    let text = report.lines.join("\n");
    assert_eq!(report.passed, 1, "{text}");
    assert!(
        text.contains("broken.toml:2: invalid type: integer `1`, expected a string"),
        "{text}"
    );
    assert!(
        text.contains("few.toml:")
            && text.contains("wrong: expected rows [{\"grade\":4}], got [{\"grade\":5}]"),
        "{text}"
    );
    assert!(
        text.contains("unknown user: `as = \"nobody\"` is neither a user"),
        "{text}"
    );
    assert!(
        text.contains("rest wrong: expected rows [{\"grade\":3}], got [{\"grade\":5}]"),
        "{text}"
    );
    assert!(
        text.contains("rest refused: the REST door refuses it (PGRST205)"),
        "{text}"
    );
    // Anna's read allowed her row and denied the others: that policy is covered both ways.
    assert!(
        !text.contains("\"students read their own grades\" on public.grades"),
        "{text}"
    );
    assert!(text.contains(
        "FAIL  coverage: policy \"teachers manage their school's grades\" on public.grades (policies/grades.toml:"
    ) || text.contains("FAIL  coverage: policy \"teachers manage their school's grades\" on public.grades ("), "{text}");
    assert!(text.contains("has no case where it allows a row"), "{text}");
    assert!(
        report
            .lines
            .last()
            .unwrap()
            .ends_with(&format!("{} failed", report.failed)),
        "{text}"
    );
    assert!(report.failed > 10, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_up_decides_roles_and_only_admins_appoint_admins() {
    let db = teacheruchit().await;
    let sources = policies::read_dir(&repo("policies")).unwrap();
    let mut admin = db.state.admin.get().await.unwrap();
    policies::apply(&mut admin, &sources, Mode::Apply, &["public".to_string()])
        .await
        .unwrap();
    let c = db.admin();
    c.batch_execute(
        "insert into public.schools (id, name, city)
           values ('a0000000-0000-0000-0000-00000000000a', 'Школа', 'Казань');
         insert into public.school_codes (code, school_id)
           values ('ALPHA-2024', 'a0000000-0000-0000-0000-00000000000a'),
                  ('OLD-CODE', 'a0000000-0000-0000-0000-00000000000a');
         update public.school_codes set expires_at = now() - interval '1 day' where code = 'OLD-CODE';",
    )
    .await
    .unwrap();
    // As GoTrue inserts a new user: role 'authenticated', the client's wishes in the metadata.
    let sign_up = |id: &'static str, meta: &'static str| async move {
        c.query_one(
            "insert into auth.users (id, aud, role, email, raw_user_meta_data)
             values ($1::text::uuid, 'authenticated', 'authenticated', $1 || '@x.test', $2::text::jsonb)
             returning role",
            &[&id, &meta],
        )
        .await
        .map(|r| r.get::<_, String>(0))
        .map_err(|e| doska::db::migrate::describe(&e))
    };
    assert_eq!(
        sign_up("00000000-0000-0000-0000-000000000001", r#"{"name": "Аня", "school_id": "a0000000-0000-0000-0000-00000000000a", "class": "7", "letter": "б"}"#).await,
        Ok("student".into())
    );
    assert_eq!(
        sign_up(
            "00000000-0000-0000-0000-000000000002",
            r#"{"role": "teacher", "name": "Т", "school_code": "alpha-2024 "}"#
        )
        .await,
        Ok("teacher".into())
    );
    let no_code = sign_up(
        "00000000-0000-0000-0000-000000000003",
        r#"{"role": "teacher", "school_code": "NOPE-0000"}"#,
    )
    .await;
    assert!(
        no_code
            .unwrap_err()
            .contains("a valid school code is needed")
    );
    let expired = sign_up(
        "00000000-0000-0000-0000-000000000004",
        r#"{"role": "teacher", "school_code": "OLD-CODE"}"#,
    )
    .await;
    assert!(
        expired
            .unwrap_err()
            .contains("a valid school code is needed")
    );
    let admin_wish = sign_up(
        "00000000-0000-0000-0000-000000000005",
        r#"{"role": "school_admin", "school_code": "ALPHA-2024"}"#,
    )
    .await;
    assert!(
        admin_wish
            .unwrap_err()
            .contains("school admins are appointed")
    );
    let profile: (Option<i16>, Option<String>, String) = c
        .query_one(
            "select class, letter, s.name from student_profiles p join schools s on s.id = p.school_id",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert_eq!(profile, (Some(7), Some("Б".into()), "Школа".into()));
    let teacher_school: bool = c
        .query_one(
            "select school_id = 'a0000000-0000-0000-0000-00000000000a' from teacher_profiles
              where user_id = '00000000-0000-0000-0000-000000000002'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(teacher_school);

    // A teacher cannot make themselves an admin; the service role can; then that admin can.
    let teacher = "00000000-0000-0000-0000-000000000002";
    let promote =
        "select app.set_staff_role('00000000-0000-0000-0000-000000000002', 'school_admin')";
    let denied = as_caller(&db, "teacher", teacher, promote).await;
    assert!(denied.unwrap_err().contains("only an admin of the school"));
    as_caller(&db, "service_role", "", promote).await.unwrap();
    let role: String = c
        .query_one(
            "select role from auth.users where id = $1::text::uuid",
            &[&teacher],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, "school_admin");
    // A student cannot call it at all for herself.
    let denied = as_caller(
        &db,
        "student",
        "00000000-0000-0000-0000-000000000001",
        "select app.set_staff_role('00000000-0000-0000-0000-000000000001', 'school_admin')",
    )
    .await;
    assert!(denied.is_err());
}

/// Runs `sql` as a request of `role` with `sub`, committing on success.
async fn as_caller(db: &common::TestDb, role: &str, sub: &str, sql: &str) -> Result<(), String> {
    let claims = if sub.is_empty() {
        serde_json::json!({ "role": role })
    } else {
        serde_json::json!({ "role": role, "sub": sub })
    };
    let tx = doska::db::caller::RequestTx::begin(
        db.pool(),
        &doska::jwt::Caller {
            role: role.into(),
            claims: claims.into(),
            token: None,
        },
        &doska::db::caller::RequestInfo {
            method: "POST",
            path: "/rpc",
            headers: serde_json::json!({}),
            search_path: None,
        },
        false,
        0,
    )
    .await
    .map_err(|e| e.to_string())?;
    match tx.client().batch_execute(sql).await {
        Ok(()) => tx.commit().await.map_err(|e| e.to_string()),
        Err(e) => Err(doska::db::migrate::describe(&e)),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_up_over_auth_then_rest_under_the_rules() {
    use serde_json::{Value, json};
    let db = teacheruchit().await;
    let sources = policies::read_dir(&repo("policies")).unwrap();
    let mut admin = db.state.admin.get().await.unwrap();
    policies::apply(&mut admin, &sources, Mode::Apply, &["public".to_string()])
        .await
        .unwrap();
    db.admin()
        .batch_execute(
            "insert into public.schools (id, name, city)
               values ('a0000000-0000-0000-0000-00000000000a', 'Школа', 'Казань');
             insert into public.school_codes (code, school_id)
               values ('ALPHA-2024', 'a0000000-0000-0000-0000-00000000000a');",
        )
        .await
        .unwrap();
    let mut cfg = doska::auth::AuthConfig {
        argon2: doska::auth::password::Argon2Cost {
            m_kib: 1024,
            t: 1,
            p: 1,
        },
        hash_pool_size: 2,
        ..Default::default()
    };
    cfg.rate_limits.enabled = false;
    let base = db.serve(&db.doors_with_auth(cfg).await).await;
    let anon = db.sign(json!({"role": "anon"}));
    let call = |method: &'static str, path: String, token: Option<String>, body: Value| {
        let base = base.clone();
        let anon = anon.clone();
        async move {
            let bearer = format!("Bearer {}", token.unwrap_or_else(|| anon.clone()));
            common::request(
                method,
                &format!("{base}{path}"),
                &[
                    ("apikey", anon.as_str()),
                    ("authorization", bearer.as_str()),
                    ("content-type", "application/json"),
                    ("prefer", "return=representation"),
                ],
                body.to_string(),
            )
            .await
        }
    };
    let sign_up = |email: &'static str, data: Value| {
        call(
            "POST",
            "/auth/v1/signup".into(),
            None,
            json!({"email": email, "password": "correct-horse-battery", "data": data}),
        )
    };

    let teacher = sign_up(
        "teacher@a.test",
        json!({"role": "teacher", "name": "Учитель", "school_code": "ALPHA-2024"}),
    )
    .await;
    assert_eq!(teacher.status, 200, "{}", teacher.text());
    let teacher_token = teacher.json()["access_token"].as_str().unwrap().to_string();
    let claims = db.state.verifier.verify(&teacher_token).unwrap();
    assert_eq!(claims["role"], "teacher");

    let impostor = sign_up(
        "impostor@a.test",
        json!({"role": "teacher", "school_code": "WRONG-CODE"}),
    )
    .await;
    assert_ne!(impostor.status, 200, "{}", impostor.text());

    let student = sign_up(
        "anna@a.test",
        json!({"name": "Анна", "school_id": "a0000000-0000-0000-0000-00000000000a", "class": 7, "letter": "Б"}),
    )
    .await;
    assert_eq!(student.status, 200, "{}", student.text());
    let student_token = student.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        db.state.verifier.verify(&student_token).unwrap()["role"],
        "student"
    );

    // The teacher publishes one material and keeps a draft.
    for (title, status) in [("Дроби", "published"), ("Черновик", "draft")] {
        let r = call(
            "POST",
            "/rest/v1/materials".into(),
            Some(teacher_token.clone()),
            json!({"title": title, "subject": "математика", "status": status}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let read = |token: String| {
        call(
            "GET",
            "/rest/v1/materials?select=title&order=title".into(),
            Some(token),
            Value::Null,
        )
    };
    assert_eq!(
        read(student_token.clone()).await.json(),
        json!([{"title": "Дроби"}])
    );
    assert_eq!(
        read(teacher_token.clone()).await.json(),
        json!([{"title": "Дроби"}, {"title": "Черновик"}])
    );
    let anonymous = call("GET", "/rest/v1/materials".into(), None, Value::Null).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    let denied = call(
        "POST",
        "/rest/v1/materials".into(),
        Some(student_token.clone()),
        json!({"title": "Шпаргалка", "subject": "математика"}),
    )
    .await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_eq!(denied.json()["code"], "42501");
}
