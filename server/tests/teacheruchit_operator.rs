//! TeacherUchit as an operator and its users meet it, against `doska serve` with the repository's
//! migrations and policies: `doska school create` (attached to the running serve) registers a
//! school, its admin and a code, and its bad inputs change nothing; the admin signs in, the code
//! signs a teacher up; the notification triggers of migrations/0004 tell the right students, live
//! over postgres_changes together with the class chat, and no one else; and a forgotten password
//! is reset through the mail waiting in `auth.mail_outbox` (no SMTP configured).

mod common;

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use common::phx::Phx;
use serde_json::{Value, json};

const SECRET: &str = "teacheruchit-operator-secret-0123456789-abcdef";
const PASSWORD: &str = "correct-horse-battery";

fn repo(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir)
}

fn key(role: &str) -> String {
    doska::jwt::sign(SECRET.as_bytes(), &json!({"role": role}))
}

fn doska(data: &Path) -> std::process::Command {
    let mut c = common::doska(data, &repo("migrations"), &repo("policies"));
    c.args(["--jwt-secret", SECRET, "--static", ""]);
    c
}

fn school_create(data: &Path, args: &[&str]) -> Output {
    doska(data)
        .args(["school", "create"])
        .args(args)
        .env_remove("DOSKA_ADMIN_PASSWORD")
        .output()
        .expect("running doska school create")
}

struct Api {
    url: String,
    anon: String,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> common::Response {
        let bearer = format!("Bearer {}", token.unwrap_or(&self.anon));
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        common::request(
            method,
            &format!("{}{path}", self.url),
            &[
                ("apikey", self.anon.as_str()),
                ("authorization", bearer.as_str()),
                ("content-type", "application/json"),
                ("prefer", "return=representation"),
            ],
            body,
        )
        .await
    }

    async fn sign_in(&self, email: &str, password: &str) -> common::Response {
        self.call(
            "POST",
            "/auth/v1/token?grant_type=password",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Signs up and returns (user id, access token).
    async fn sign_up(&self, email: &str, data: Value) -> (String, String) {
        let r = self
            .call(
                "POST",
                "/auth/v1/signup",
                None,
                json!({"email": email, "password": PASSWORD, "data": data}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let s = r.json();
        (
            s["user"]["id"].as_str().unwrap().to_string(),
            s["access_token"].as_str().unwrap().to_string(),
        )
    }
}

/// A student's socket subscribed to their notifications and their class's chat.
async fn subscribe(url: &str, anon: &str, token: &str, uid: &str) -> Phx {
    let mut phx = Phx::connect(url, anon).await.expect("connecting");
    let config = json!({"postgres_changes": [
        {"event": "INSERT", "schema": "public", "table": "notifications", "filter": format!("user_id=eq.{uid}")},
        {"event": "INSERT", "schema": "public", "table": "class_messages"},
    ]});
    let reply = phx.join("student", config, Some(token)).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    phx
}

/// The next `n` row changes a socket receives: (table, record).
async fn changes(phx: &mut Phx, n: usize) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = phx
            .next(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("only {} of {n} changes arrived: {out:?}", out.len()));
        if m.event == "postgres_changes" {
            let d = &m.payload["data"];
            out.push((
                d["table"].as_str().unwrap().to_string(),
                d["record"].clone(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_registers_a_school_and_its_people_are_told_live() {
    let data = common::temp_dir("tu-op");
    let mut serve = doska(&data);
    serve.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"]);
    let serving = tokio::task::spawn_blocking(move || common::spawn_serving(serve))
        .await
        .unwrap();
    let mut child = serving.child;
    let api = Api {
        url: serving.url.clone(),
        anon: key("anon"),
    };
    let service = key("service_role");

    // --- the operator's command, attached to the running serve ---
    let out = school_create(
        &data,
        &[
            "--name",
            "Школа №14",
            "--city",
            "Казань",
            "--admin-email",
            "Director@School14.ru",
            "--admin-name",
            "Ольга Директорова",
            "--admin-password",
            PASSWORD,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    let school_id = made["school_id"].as_str().unwrap().to_string();
    let code = made["school_code"].as_str().unwrap().to_string();
    assert_eq!(made["admin_email"], "director@school14.ru");
    assert!(
        made.get("admin_password").is_none(),
        "given, so not printed"
    );

    // Bad input: one line on stderr, non-zero exit, nothing written.
    let long = "я".repeat(201);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--name",
                "Другая",
                "--city",
                "Казань",
                "--admin-email",
                "director@school14.ru",
                "--admin-password",
                PASSWORD,
            ],
            "already exists",
        ),
        (
            vec![
                "--name",
                "Другая",
                "--city",
                "Казань",
                "--admin-email",
                "DIRECTOR@school14.ru",
                "--admin-password",
                PASSWORD,
            ],
            "already exists",
        ),
        (
            vec![
                "--name",
                " ",
                "--city",
                "Казань",
                "--admin-email",
                "a@b.ru",
                "--admin-password",
                PASSWORD,
            ],
            "--name must not be empty",
        ),
        (
            vec![
                "--name",
                "Другая",
                "--city",
                "",
                "--admin-email",
                "a@b.ru",
                "--admin-password",
                PASSWORD,
            ],
            "--city must not be empty",
        ),
        (
            vec![
                "--name",
                &long,
                "--city",
                "Казань",
                "--admin-email",
                "a@b.ru",
                "--admin-password",
                PASSWORD,
            ],
            "schools_name_check",
        ),
        (
            vec![
                "--name",
                "Другая",
                "--city",
                "Казань",
                "--admin-email",
                "not-an-email",
                "--admin-password",
                PASSWORD,
            ],
            "--admin-email",
        ),
        (
            vec![
                "--name",
                "Другая",
                "--city",
                "Казань",
                "--admin-email",
                "a@b.ru",
                "--admin-password",
                "123",
            ],
            "at least 6 characters",
        ),
        (
            vec![
                "--name",
                "Другая",
                "--city",
                "Казань",
                "--admin-email",
                "a@b.ru",
                "--admin-password",
                PASSWORD,
                "--grade-min",
                "5",
                "--grade-max",
                "2",
            ],
            "schools_check",
        ),
        (
            vec![
                "--name",
                "Другая",
                "--city",
                "Казань",
                "--admin-email",
                "a@b.ru",
                "--grade-max",
                "many",
            ],
            "invalid value",
        ),
        (
            vec!["--name", "Другая", "--city", "Казань"],
            "--admin-email",
        ),
    ];
    for (args, want) in &cases {
        let out = school_create(&data, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let schools = api
        .call(
            "GET",
            "/rest/v1/schools?select=id,name,admin_id",
            Some(&service),
            Value::Null,
        )
        .await
        .json();
    assert_eq!(schools.as_array().unwrap().len(), 1, "{schools}");
    assert_eq!(schools[0]["admin_id"], made["admin_id"]);
    let users = api
        .call("GET", "/auth/v1/admin/users", Some(&service), Value::Null)
        .await
        .json();
    assert_eq!(users["users"].as_array().unwrap().len(), 1, "{users}");

    // Without a password doska chooses one and prints it once; it signs in.
    let out = school_create(
        &data,
        &[
            "--name",
            "Гимназия №2",
            "--city",
            "Самара",
            "--admin-email",
            "head@gym2.ru",
            "--grade-max",
            "10",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second: Value = serde_json::from_slice(&out.stdout).unwrap();
    let chosen = second["admin_password"].as_str().unwrap();
    assert!(chosen.len() >= 16);
    assert_ne!(second["school_code"], made["school_code"]);
    let r = api.sign_in("head@gym2.ru", chosen).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // --- the admin signs in as school_admin and sees the code; a teacher signs up with it ---
    let r = api.sign_in("director@school14.ru", PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let admin = r.json()["access_token"].as_str().unwrap().to_string();
    let v = doska::jwt::Verifier::hs256(SECRET.as_bytes());
    assert_eq!(v.verify(&admin).unwrap()["role"], "school_admin");
    let codes = api
        .call(
            "GET",
            "/rest/v1/school_codes?select=code,school_id",
            Some(&admin),
            Value::Null,
        )
        .await
        .json();
    assert_eq!(codes, json!([{"code": code, "school_id": school_id}]));
    let staff = api
        .call("POST", "/rest/v1/rpc/school_staff", Some(&admin), json!({}))
        .await;
    assert_eq!(staff.status, 200, "{}", staff.text());
    assert_eq!(staff.json()[0]["name"], "Ольга Директорова");
    assert_eq!(staff.json()[0]["role"], "school_admin");

    let (_, teacher) = api
        .sign_up(
            "teacher@school14.ru",
            json!({"role": "teacher", "name": "Иван Петрович", "school_code": code.to_lowercase()}),
        )
        .await;
    assert_eq!(v.verify(&teacher).unwrap()["role"], "teacher");
    let (anna_id, anna) = api
        .sign_up(
            "anna@school14.ru",
            json!({"name": "Анна", "school_id": school_id, "class": 7, "letter": "Б"}),
        )
        .await;
    let (boris_id, boris) = api
        .sign_up(
            "boris@school14.ru",
            json!({"name": "Борис", "school_id": school_id, "class": 8, "letter": "А"}),
        )
        .await;

    // --- live: wait until realtime streams, then subscribe both students ---
    for _ in 0..600 {
        if serving
            .log
            .lock()
            .unwrap()
            .contains("streaming changes from the replication slot")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut anna_rt = subscribe(&api.url, &api.anon, &anna, &anna_id).await;
    let mut boris_rt = subscribe(&api.url, &api.anon, &boris, &boris_id).await;

    let post = |table: &'static str, body: Value| {
        let api = &api;
        let teacher = teacher.clone();
        async move {
            let r = api
                .call("POST", &format!("/rest/v1/{table}"), Some(&teacher), body)
                .await;
            assert_eq!(r.status, 201, "{table}: {}", r.text());
            r.json()[0].clone()
        }
    };
    post(
        "materials",
        json!({"title": "Дроби: урок 2", "subject": "математика", "status": "published"}),
    )
    .await;
    let assignment = post(
        "assignments",
        json!({"title": "Упражнения 110–115", "subject": "математика", "class": 7, "letter": "Б", "due_date": "2030-05-20T15:00:00Z"}),
    )
    .await;
    post(
        "class_messages",
        json!({"school_id": school_id, "class": 7, "letter": "Б", "body": "Завтра контрольная"}),
    )
    .await;
    post("grades", json!({"student_id": anna_id, "assignment_id": assignment["id"], "grade": 5, "comment": "Отлично"})).await;

    let got = changes(&mut anna_rt, 4).await;
    let summary: Vec<(String, String)> = got
        .iter()
        .map(|(t, r)| {
            let text = if t == "notifications" {
                &r["title"]
            } else {
                &r["body"]
            };
            (t.clone(), text.as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "notifications".into(),
                "Новый материал: Дроби: урок 2".into()
            ),
            (
                "notifications".into(),
                "Новое задание: Упражнения 110–115".into()
            ),
            ("class_messages".into(), "Завтра контрольная".into()),
            (
                "notifications".into(),
                "Оценка 5 — Упражнения 110–115".into()
            ),
        ]
    );
    let grade_note = &got[3].1;
    assert_eq!(grade_note["kind"], "grade");
    assert_eq!(grade_note["body"], "Отлично");
    assert_eq!(grade_note["data"]["assignment_id"], assignment["id"]);
    assert_eq!(grade_note["user_id"], anna_id.as_str());

    // Boris (8А) hears of the school's material, then of his own class's chat — and of nothing in
    // between: not 7Б's assignment, chat or Anna's grade.
    post(
        "class_messages",
        json!({"school_id": school_id, "class": 8, "letter": "А", "body": "8А, привет"}),
    )
    .await;
    let got = changes(&mut boris_rt, 2).await;
    assert_eq!(got[0].0, "notifications");
    assert_eq!(got[0].1["title"], "Новый материал: Дроби: урок 2");
    assert_eq!(got[1].0, "class_messages");
    assert_eq!(got[1].1["body"], "8А, привет");

    // And in the table, under RLS: each reads only their own.
    let mine = api
        .call(
            "GET",
            "/rest/v1/notifications?select=kind&order=id",
            Some(&boris),
            Value::Null,
        )
        .await
        .json();
    assert_eq!(mine, json!([{"kind": "material"}]));
    let mine = api
        .call(
            "GET",
            "/rest/v1/notifications?select=kind&order=id",
            Some(&anna),
            Value::Null,
        )
        .await
        .json();
    assert_eq!(
        mine,
        json!([{"kind": "material"}, {"kind": "assignment"}, {"kind": "grade"}])
    );

    // --- a forgotten password: the mail waits in auth.mail_outbox (no SMTP set) ---
    let r = api
        .call(
            "POST",
            "/auth/v1/recover",
            None,
            json!({"email": "director@school14.ru"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let d = data.clone();
    let cluster = tokio::task::spawn_blocking(move || {
        doska::pg::Cluster::start(&doska::pg::EmbeddedOptions {
            data_dir: d,
            mode: doska::pg::Mode::Attach,
        })
    })
    .await
    .unwrap()
    .expect("attaching to serve's PostgreSQL");
    let pg = common::connect(&cluster.config("postgres")).await;
    // What policies/realtime.toml publishes.
    let published: Vec<String> = pg
        .query(
            "select tablename::text from pg_publication_tables \
             where pubname = 'supabase_realtime' and schemaname = 'public' order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for table in [
        "assignments",
        "class_messages",
        "grades",
        "materials",
        "notifications",
    ] {
        assert!(
            published.iter().any(|t| t == table),
            "{table} not in {published:?}"
        );
    }
    let body: String = pg
        .query_one(
            "select body from auth.mail_outbox where recipient = $1 and kind = 'recovery' \
             order by id desc limit 1",
            &[&"director@school14.ru"],
        )
        .await
        .unwrap()
        .get(0);
    let code: String = body
        .split("code")
        .last()
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(code.len(), 6, "{body}");
    let r = api
        .call(
            "POST",
            "/auth/v1/verify",
            None,
            json!({"type": "recovery", "email": "director@school14.ru", "token": code}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let recovered = r.json()["access_token"].as_str().unwrap().to_string();
    let r = api
        .call(
            "PUT",
            "/auth/v1/user",
            Some(&recovered),
            json!({"password": "a-new-password-42"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        api.sign_in("director@school14.ru", PASSWORD).await.status,
        400
    );
    let r = api
        .sign_in("director@school14.ru", "a-new-password-42")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        v.verify(r.json()["access_token"].as_str().unwrap())
            .unwrap()["role"],
        "school_admin"
    );
    drop(pg);
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();

    // SAFETY: sending SIGTERM to the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{}", serving.log.lock().unwrap());
}
