//! The policy files' `storage` and `realtime` sections against a real PostgreSQL: buckets are
//! created and updated to match, rules become RLS policies on `storage.objects` and
//! `realtime.messages` that are in force for requests (and for realtime's own join probe), tables
//! are added to `supabase_realtime`; applying twice changes nothing; removing lines removes exactly
//! what the files made (a migration's published table stays, a bucket with objects stays); broken
//! sections change nothing and say file:line; `doska policies test` runs storage and channel cases
//! through the binary.

mod common;

use doska::{
    db::caller::{RequestInfo, RequestTx},
    jwt::Caller,
    policies::{self, ApplyError, Mode, Outcome, Sources},
    realtime::authorize::channel_permissions,
};
use serde_json::{Value, json};

const ALICE: &str = "11111111-1111-1111-1111-111111111111";
const BOB: &str = "22222222-2222-2222-2222-222222222222";

fn files(list: &[(&str, &str)]) -> Sources {
    Sources::from_files(
        list.iter()
            .map(|(n, c)| (format!("policies/{n}"), c.to_string()))
            .collect(),
    )
}

async fn apply(db: &common::TestDb, sources: &Sources, mode: Mode) -> Result<Outcome, ApplyError> {
    let mut client = db.state.admin.get().await.unwrap();
    policies::apply(&mut client, sources, mode, &["public".to_string()]).await
}

async fn setup(db: &common::TestDb) {
    db.admin()
        .batch_execute(
            "create table posts (id int primary key, body text);
             create table logs (id int primary key);
             alter publication supabase_realtime add table logs;
             create table nokey (x int);",
        )
        .await
        .unwrap();
}

const STORAGE: &str = r#"[storage.buckets.docs]
file_size_limit = "1 MiB"
allowed_mime_types = ["text/plain", "image/*"]

[[storage.buckets.docs.rules]]
name = "school reads"
to = ["authenticated"]
allow = ["read"]
path = "{jwt.app_metadata.school}/**"

[[storage.buckets.docs.rules]]
name = "own folder"
to = ["authenticated"]
allow = ["read", "upload", "overwrite", "delete"]
path = "{auth.uid}/**"
"#;

const REALTIME: &str = r#"[realtime]
tables = ["posts", "logs"]

[[realtime.channels]]
name = "school room"
topic = "room:{jwt.app_metadata.school}"
to = ["authenticated"]
allow = ["read"]
extensions = ["broadcast"]
"#;

fn claims(sub: &str, school: &str) -> Value {
    json!({ "sub": sub, "role": "authenticated", "app_metadata": { "school": school } })
}

/// Runs `sql` as an authenticated user with `claims`, as a request does; rows' first column.
async fn as_user(db: &common::TestDb, claims: Value, sql: &str) -> Result<Vec<String>, String> {
    let caller = Caller {
        role: "authenticated".into(),
        claims: claims.into(),
        token: None,
    };
    let info = RequestInfo {
        method: "GET",
        path: "/",
        headers: json!({}),
        search_path: None,
    };
    let tx = RequestTx::begin(db.pool(), &caller, &info, false, 0)
        .await
        .map_err(|e| e.to_string())?;
    let result = tx.client().query(sql, &[]).await;
    tx.rollback().await.ok();
    result
        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
        .map_err(|e| doska::db::migrate::describe(&e))
}

async fn published(db: &common::TestDb) -> Vec<String> {
    db.admin()
        .query(
            // doska's own localStore table (an internal migration) aside.
            "select tablename::text from pg_publication_tables
              where pubname = 'supabase_realtime' and tablename <> 'doska_local_store' order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn doska_policies(db: &common::TestDb, table: &str) -> Vec<String> {
    db.admin()
        .query(
            "select p.polname::text from pg_policy p where p.polrelid = $1::text::regclass order by 1",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sections_apply_are_in_force_idempotent_and_removable() {
    let db = common::TestDb::new().await;
    setup(&db).await;
    let both = files(&[("realtime.toml", REALTIME), ("storage.toml", STORAGE)]);
    let out = apply(&db, &both, Mode::Apply).await.unwrap();
    assert_eq!((out.buckets, out.published), (1, 2));
    let sql = out.statements.join(";\n");
    assert!(sql.contains(
        "INSERT INTO storage.buckets (id, name, public, file_size_limit, allowed_mime_types) VALUES ('docs', 'docs', false, 1048576, ARRAY['text/plain', 'image/*']::text[])"
    ), "{sql}");
    assert!(
        sql.contains("ALTER PUBLICATION \"supabase_realtime\" ADD TABLE \"public\".\"posts\""),
        "{sql}"
    );
    assert!(
        !sql.contains("\"logs\""),
        "a migration's table is left alone: {sql}"
    );
    assert!(sql.contains(
        "CREATE POLICY \"docs: own folder (upload)\" ON \"storage\".\"objects\" AS PERMISSIVE FOR INSERT TO \"authenticated\" WITH CHECK (bucket_id = 'docs' and "
    ), "{sql}");
    assert_eq!(
        doska_policies(&db, "storage.objects").await,
        vec![
            "docs: own folder (delete)",
            "docs: own folder (overwrite)",
            "docs: own folder (read)",
            "docs: own folder (upload)",
            "docs: school reads (read)",
        ]
    );
    assert_eq!(
        doska_policies(&db, "realtime.messages").await,
        vec!["realtime: school room (read)"]
    );
    assert_eq!(published(&db).await, vec!["logs", "messages", "posts"]);

    // In force: uploads into one's own folder only; reads of one's school.
    let put = |who: &str, name: &str| {
        format!(
            "insert into storage.objects (bucket_id, name, owner_id) values ('docs', '{name}', '{who}') returning name"
        )
    };
    assert_eq!(
        as_user(
            &db,
            claims(ALICE, "s1"),
            &put(ALICE, &format!("{ALICE}/a.txt"))
        )
        .await,
        Ok(vec![format!("{ALICE}/a.txt")])
    );
    let refused = as_user(&db, claims(BOB, "s1"), &put(BOB, &format!("{ALICE}/b.txt"))).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("row-level security")),
        "{refused:?}"
    );
    db.admin()
        .batch_execute(
            "insert into storage.objects (bucket_id, name) values ('docs', 's1/plan.txt'), ('docs', 's2/plan.txt')",
        )
        .await
        .unwrap();
    assert_eq!(
        as_user(
            &db,
            claims(BOB, "s1"),
            "select name from storage.objects order by name"
        )
        .await,
        Ok(vec!["s1/plan.txt".to_string()])
    );
    // Realtime's own join probe: a member of s1 may join room:s1 (broadcast only), not room:s2.
    let who = Caller::new("authenticated", claims(BOB, "s1"));
    let p = channel_permissions(&db.state.admin, &who, "room:s1")
        .await
        .unwrap();
    assert!(p.read_broadcast && !p.read_presence && !p.write_broadcast);
    let p = channel_permissions(&db.state.admin, &who, "room:s2")
        .await
        .unwrap();
    assert!(!p.can_join());

    // Twice: nothing to do.
    let again = apply(&db, &both, Mode::Apply).await.unwrap();
    assert_eq!(again.statements, Vec::<String>::new());
    // A changed limit is one UPDATE; diff shows it.
    let bigger = files(&[
        ("realtime.toml", REALTIME),
        ("storage.toml", &STORAGE.replace("\"1 MiB\"", "2000000")),
    ]);
    let diff = apply(&db, &bigger, Mode::Diff).await.unwrap();
    assert_eq!(
        diff.statements,
        vec![
            "UPDATE storage.buckets SET (id, name, public, file_size_limit, allowed_mime_types) = ('docs', 'docs', false, 2000000, ARRAY['text/plain', 'image/*']::text[]), updated_at = now() WHERE id = 'docs'"
        ]
    );
    apply(&db, &bigger, Mode::Apply).await.unwrap();
    let limit: Option<i64> = db
        .value(
            "select file_size_limit from storage.buckets where id = 'docs'",
            &[],
        )
        .await;
    assert_eq!(limit, Some(2_000_000));

    // Removing the lines: the policies go, `posts` leaves the publication, `logs` (a migration's)
    // stays; the bucket holds objects, so it stays, with a warning.
    let none = files(&[("empty.toml", "")]);
    let out = apply(&db, &none, Mode::Apply).await.unwrap();
    assert!(doska_policies(&db, "storage.objects").await.is_empty());
    assert!(doska_policies(&db, "realtime.messages").await.is_empty());
    assert_eq!(published(&db).await, vec!["logs", "messages"]);
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("bucket docs is no longer declared but was kept")),
        "{:?}",
        out.warnings
    );
    let left: i64 = db
        .value(
            "select count(*) from storage.buckets where id = 'docs'",
            &[],
        )
        .await;
    assert_eq!(left, 1);
    let ledger: i64 = db
        .value("select count(*) from doska.policy_objects", &[])
        .await;
    assert_eq!(ledger, 0);

    // An empty bucket the files made is removed with its declaration.
    let fresh = files(&[("b.toml", "[storage.buckets.scratch]\npublic = true\n")]);
    apply(&db, &fresh, Mode::Apply).await.unwrap();
    let out = apply(&db, &none, Mode::Apply).await.unwrap();
    assert_eq!(
        out.statements,
        vec!["DELETE FROM storage.buckets WHERE id = 'scratch'"]
    );
    // A bucket a migration made is taken over, and never removed by doska.
    db.admin()
        .batch_execute("insert into storage.buckets (id, name) values ('legacy', 'legacy')")
        .await
        .unwrap();
    let adopt = files(&[("b.toml", "[storage.buckets.legacy]\npublic = true\n")]);
    let out = apply(&db, &adopt, Mode::Apply).await.unwrap();
    assert_eq!(out.statements.len(), 1, "{:?}", out.statements);
    assert!(out.statements[0].starts_with("UPDATE storage.buckets"));
    let out = apply(&db, &none, Mode::Apply).await.unwrap();
    assert!(out.statements.is_empty(), "{:?}", out.statements);
    let public: bool = db
        .value(
            "select public from storage.buckets where id = 'legacy'",
            &[],
        )
        .await;
    assert!(public);
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_sections_change_nothing_and_say_where() {
    let db = common::TestDb::new().await;
    setup(&db).await;
    let cases: &[(&str, &str)] = &[
        (
            "[realtime]\ntables = [\"posts\",\n  \"nokey\"]\n",
            "policies/a.toml:3: table public.nokey has no primary key",
        ),
        (
            "[realtime]\ntables = [\"nope\"]\n",
            "policies/a.toml:2: unknown table public.nope",
        ),
        (
            "[storage.buckets.b]\n[[storage.buckets.b.rules]]\nname = \"r\"\nallow = [\"read\"]\nwhen = \"\"\"\ntrue and\n  no_such_column = 1\"\"\"\n",
            "policies/a.toml:7: column \"no_such_column\" does not exist",
        ),
        (
            "[[realtime.channels]]\nname = \"c\"\ntopic = \"t:{x}\"\nallow = [\"write\"]\nto = [\"nobody_here\"]\n",
            "policies/a.toml:5: unknown role \"nobody_here\"",
        ),
    ];
    let before = published(&db).await;
    for (text, want) in cases {
        let err = apply(&db, &files(&[("a.toml", text)]), Mode::Apply)
            .await
            .unwrap_err();
        let lines = err.lines();
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "{text}: want {want:?}, got {lines:?}"
        );
    }
    assert_eq!(published(&db).await, before);
    let n: i64 = db
        .value(
            "select (select count(*) from storage.buckets) + (select count(*) from pg_policy \
             where polrelid <> 'public.doska_local_store'::regclass)",
            &[],
        )
        .await;
    assert_eq!(n, 0);
}

/// `doska policies test` through the binary: storage and channel cases pass, a wrong expectation
/// fails with its file and line, and coverage names a rule without a deny case.
#[test]
fn policies_test_runs_storage_and_channel_cases() {
    let data = common::temp_dir("psec-data");
    let mig = common::temp_dir("psec-mig");
    let pol = common::temp_dir("psec-pol");
    std::fs::write(mig.join("001.sql"), "select 1;\n").unwrap();
    std::fs::write(pol.join("storage.toml"), STORAGE).unwrap();
    std::fs::write(
        pol.join("realtime.toml"),
        "[[realtime.channels]]\nname = \"school room\"\ntopic = \"room:{jwt.app_metadata.school}\"\nto = [\"authenticated\"]\nallow = [\"read\", \"write\"]\n",
    )
    .unwrap();
    std::fs::create_dir_all(pol.join("tests")).unwrap();
    let case = |name: &str, who: &str, what: &str, verdict: &str| {
        format!("[[cases]]\nname = \"{name}\"\nas = \"{who}\"\n{what}\n{verdict} = true\n\n")
    };
    let obj = |action: &str, path: &str| {
        format!("action = \"{action}\"\nbucket = \"docs\"\npath = \"{path}\"")
    };
    let topic = |action: &str, t: &str| format!("action = \"{action}\"\ntopic = \"{t}\"");
    let mut tests = format!(
        "fixtures = \"insert into storage.objects (bucket_id, name) values ('docs', '{ALICE}/a.txt'), ('docs', 's1/plan.txt')\"\n\n\
         [users.alice]\nid = \"{ALICE}\"\nrole = \"authenticated\"\nclaims = {{ app_metadata = {{ school = \"s1\" }} }}\n\n\
         [users.bob]\nid = \"{BOB}\"\nrole = \"authenticated\"\nclaims = {{ app_metadata = {{ school = \"s2\" }} }}\n\n"
    );
    for (name, who, what, verdict) in [
        (
            "alice reads her file",
            "alice",
            obj("download", &format!("{ALICE}/a.txt")),
            "allowed",
        ),
        (
            "bob cannot",
            "bob",
            obj("download", &format!("{ALICE}/a.txt")),
            "denied",
        ),
        (
            "alice reads her school's plan",
            "alice",
            obj("download", "s1/plan.txt"),
            "allowed",
        ),
        (
            "alice uploads",
            "alice",
            obj("upload", &format!("{ALICE}/b.txt")),
            "allowed",
        ),
        (
            "bob cannot upload there",
            "bob",
            obj("upload", &format!("{ALICE}/b.txt")),
            "denied",
        ),
        (
            "alice overwrites",
            "alice",
            obj("overwrite", &format!("{ALICE}/a.txt")),
            "allowed",
        ),
        (
            "bob cannot overwrite",
            "bob",
            obj("overwrite", &format!("{ALICE}/a.txt")),
            "denied",
        ),
        (
            "alice deletes",
            "alice",
            obj("delete", &format!("{ALICE}/a.txt")),
            "allowed",
        ),
        (
            "bob cannot delete",
            "bob",
            obj("delete", &format!("{ALICE}/a.txt")),
            "denied",
        ),
        (
            "alice joins s1",
            "alice",
            topic("join", "room:s1"),
            "allowed",
        ),
        (
            "bob cannot join s1",
            "bob",
            topic("join", "room:s1"),
            "denied",
        ),
        (
            "alice sends on s1",
            "alice",
            topic("send", "room:s1"),
            "allowed",
        ),
        (
            "alice tracks on s1",
            "alice",
            topic("track", "room:s1"),
            "allowed",
        ),
        (
            "bob cannot send on s1",
            "bob",
            topic("send", "room:s1"),
            "denied",
        ),
    ] {
        tests.push_str(&case(name, who, &what, verdict));
    }
    std::fs::write(pol.join("tests").join("t.toml"), &tests).unwrap();
    let out = common::doska(&data, &mig, &pol)
        .args(["policies", "test"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("14 passed, 0 failed"), "{stdout}");

    // A wrong expectation fails, naming the case's line; without its only deny case, a rule's
    // policy fails coverage.
    let wrong = tests.replace(
        "name = \"bob cannot join s1\"\nas = \"bob\"\naction = \"join\"\ntopic = \"room:s1\"\ndenied = true",
        "name = \"bob cannot join s1\"\nas = \"bob\"\naction = \"join\"\ntopic = \"room:s1\"\nallowed = true",
    );
    let bob_deletes = case(
        "bob cannot delete",
        "bob",
        &obj("delete", &format!("{ALICE}/a.txt")),
        "denied",
    );
    let wrong = wrong.replace(&bob_deletes, "");
    assert!(wrong.len() < tests.len());
    std::fs::write(pol.join("tests").join("t.toml"), &wrong).unwrap();
    let out = common::doska(&data, &mig, &pol)
        .args(["policies", "test"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("t.toml:")
            && stdout.contains("bob cannot join s1: expected it to be allowed; it was refused"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("FAIL  coverage: policy \"docs: own folder (delete)\" on storage.objects (")
            && stdout.contains("storage.toml:11) has no case where it denies a row")
            && stdout.contains("12 passed, 2 failed"),
        "{stdout}"
    );
    for d in [data, mig, pol] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Malformed action cases fail with a reason, each on its own; the run goes on.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_action_cases_fail_with_a_reason() {
    let db = common::TestDb::new().await;
    setup(&db).await;
    let dir = common::temp_dir("psec-tests");
    let case = |name: &str, body: &str| {
        format!("[[cases]]\nname = \"{name}\"\nas = \"authenticated\"\n{body}\n\n")
    };
    let mut text = String::from(
        "fixtures = \"insert into storage.objects (bucket_id, name) values ('docs', 'x/a.txt')\"\n\n",
    );
    let bad: &[(&str, &str, &str)] = &[
        (
            "unknown action",
            "action = \"fly\"\nbucket = \"docs\"\npath = \"x\"\nallowed = true",
            "unknown action \"fly\"; use download, upload, overwrite, delete, join, send, track or receive",
        ),
        (
            "no path",
            "action = \"download\"\nbucket = \"docs\"\nallowed = true",
            "`action = \"download\"` names `bucket` and `path` (no `topic`, `table` or `row`)",
        ),
        (
            "a topic for a join",
            "action = \"join\"\nbucket = \"docs\"\npath = \"x\"\nallowed = true",
            "`action = \"join\"` names `topic`",
        ),
        (
            "both verdicts",
            "action = \"download\"\nbucket = \"docs\"\npath = \"x/a.txt\"\nallowed = true\ndenied = true",
            "an `action` case expects exactly one of `allowed = true` or `denied = true`",
        ),
        (
            "sql and action",
            "sql = \"select 1\"\naction = \"download\"\nbucket = \"docs\"\npath = \"x/a.txt\"\nallowed = true",
            "a case has one of `sql`, `rest` or `action`, not several",
        ),
        (
            "allowed without action",
            "sql = \"select 1\"\nallowed = true",
            "(`allowed` goes with `action`)",
        ),
        (
            "upload of an existing object",
            "action = \"upload\"\nbucket = \"docs\"\npath = \"x/a.txt\"\ndenied = true",
            "docs/x/a.txt exists already",
        ),
        (
            "download of a missing object",
            "action = \"download\"\nbucket = \"docs\"\npath = \"x/none.txt\"\ndenied = true",
            "there is no object docs/x/none.txt",
        ),
        (
            "an unpublished table",
            "action = \"receive\"\ntable = \"posts\"\nrow = { id = 1 }\ndenied = true",
            "public.posts is not in the publication supabase_realtime",
        ),
        (
            "a row without its key",
            "action = \"receive\"\ntable = \"logs\"\nrow = { x = 1 }\ndenied = true",
            "`row` gives exactly the primary key of public.logs: id",
        ),
        (
            "a missing row",
            "action = \"receive\"\ntable = \"logs\"\nrow = { id = 99 }\ndenied = true",
            "there is no row {\"id\":99} in public.logs",
        ),
        (
            "unknown bucket",
            "action = \"upload\"\nbucket = \"nope\"\npath = \"x/b.txt\"\ndenied = true",
            "there is no bucket \"nope\"",
        ),
    ];
    for (name, body, _) in bad {
        text.push_str(&case(name, body));
    }
    // One good case, after the bad ones: the run went on.
    text.push_str(&case(
        "a stranger reads nothing",
        "action = \"download\"\nbucket = \"docs\"\npath = \"x/a.txt\"\ndenied = true",
    ));
    std::fs::write(dir.join("t.toml"), &text).unwrap();
    let sources = files(&[("storage.toml", "[storage.buckets.docs]\n")]);
    let mut admin = db.state.admin.get().await.unwrap();
    let report = doska::testing::run(&mut admin, &sources, &dir, &["public".to_string()])
        .await
        .unwrap();
    let out = report.lines.join("\n");
    for (name, _, why) in bad {
        assert!(
            report.lines.iter().any(|l| l.starts_with("FAIL")
                && l.contains(&format!(" {name}: "))
                && l.contains(why)),
            "{name}: want {why:?} in\n{out}"
        );
    }
    assert!(out.contains("a stranger reads nothing"), "{out}");
    assert_eq!((report.passed, report.failed), (1, bad.len()), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}
