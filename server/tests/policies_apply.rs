//! Policy files against a real PostgreSQL: what `apply` creates is in force for requests; a removed
//! policy, grant or role goes; a broken file (syntax, unknown table/column/role, an expression
//! PostgreSQL rejects) changes nothing and names file:line; objects from migrations are never
//! touched; `check` and `diff` change nothing; the watcher applies an edit while serving and keeps the
//! old set on a broken one.

mod common;

use std::time::{Duration, Instant};

use doska::{
    db::caller::{RequestInfo, RequestTx},
    jwt::Caller,
    policies::{self, ApplyError, Mode, Outcome, Sources},
};
use serde_json::json;

const ALICE: &str = "11111111-1111-1111-1111-111111111111";
const BOB: &str = "22222222-2222-2222-2222-222222222222";

/// Notes of two users, as a migration would create them, with a policy and a grant of its own.
async fn setup(db: &common::TestDb) {
    db.admin()
        .batch_execute(&format!(
            "create table notes (id int primary key, author_id uuid not null, body text, secret text);
             insert into notes values (1, '{ALICE}', 'a1', 's1'), (2, '{BOB}', 'b1', 's2');
             create table audit (id int);
             alter table audit enable row level security;
             create policy from_migration on audit for select using (true);
             revoke all on notes from anon, authenticated;
             grant select (id) on notes to anon;"
        ))
        .await
        .unwrap();
}

/// A fresh database with the notes of [`setup`], and the name of the role the notes policy makes.
async fn notes_db() -> (common::TestDb, String) {
    let db = common::TestDb::new().await;
    setup(&db).await;
    let role = format!("{}_writer", db.name);
    (db, role)
}

/// The policy files: `notes.toml` with [`notes_policy`] for `role`.
fn notes_files(role: &str) -> Sources {
    files(&[("notes.toml", &notes_policy(role))])
}

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

/// Runs `sql` as `role` with `sub`, as a request would; the rows' first column as text, or the error.
async fn as_user(
    db: &common::TestDb,
    role: &str,
    sub: &str,
    sql: &str,
) -> Result<Vec<String>, String> {
    let caller = Caller {
        role: role.into(),
        claims: if sub.is_empty() {
            json!({ "role": role })
        } else {
            json!({ "sub": sub, "role": role })
        }
        .into(),
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
    match result {
        Ok(rows) => Ok(rows
            .iter()
            .map(|r| {
                r.try_get::<_, String>(0)
                    .or_else(|_| r.try_get::<_, i32>(0).map(|v| v.to_string()))
                    .unwrap()
            })
            .collect()),
        Err(e) => Err(doska::db::migrate::describe(&e)),
    }
}

/// Everything the catalog says about policies, grants and RLS of the test's tables, for "nothing
/// changed" comparisons.
async fn snapshot(db: &common::TestDb) -> String {
    let row = db
        .admin()
        .query_one(
            "select concat_ws(' | ',
               (select string_agg(format('%s.%s %s %s %s %s', c.relname, p.polname, p.polcmd,
                                  p.polroles::regrole[]::text, pg_get_expr(p.polqual, p.polrelid),
                                  pg_get_expr(p.polwithcheck, p.polrelid)), '; '
                                  order by c.relname, p.polname)
                  from pg_policy p join pg_class c on c.oid = p.polrelid),
               (select string_agg(format('%s %s %s', relname, relrowsecurity, relacl), '; ' order by relname)
                  from pg_class where relname in ('notes', 'audit')),
               (select string_agg(format('%s %s', attname, attacl), '; ' order by attname)
                  from pg_attribute where attrelid = 'notes'::regclass and attacl is not null),
               (select count(*)::text from doska.policy_objects),
               (select count(*)::text from doska.policy_sets))",
            &[],
        )
        .await
        .unwrap();
    row.get(0)
}

fn notes_policy(role: &str) -> String {
    format!(
        r#"[roles.{role}]
comment = "reads notes"

[tables.notes]
grants.{role} = ["select", "update(body)"]

[[tables.notes.policies]]
name = "authors read their notes"
for = "select"
to = ["{role}"]
owner = "author_id"

[[tables.notes.policies]]
name = "authors edit their notes"
for = "update"
to = ["{role}"]
using = "author_id = auth.uid()"
with_check = "body <> ''"
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_puts_roles_grants_and_policies_in_force() {
    let (db, role) = notes_db().await;
    let out = apply(&db, &notes_files(&role), Mode::Apply).await.unwrap();
    assert!(
        out.statements.iter().any(|s| s.starts_with("CREATE ROLE")),
        "{out:?}"
    );
    assert_eq!((out.roles, out.tables, out.policies), (1, 1, 2));

    // Alice sees her row only; updates need the column grant and the check.
    assert_eq!(
        as_user(&db, &role, ALICE, "select body from notes order by id").await,
        Ok(vec!["a1".to_string()])
    );
    assert_eq!(
        as_user(
            &db,
            &role,
            ALICE,
            "update notes set body = 'x' returning body"
        )
        .await,
        Ok(vec!["x".to_string()])
    );
    let denied = as_user(
        &db,
        &role,
        ALICE,
        "update notes set body = '' returning body",
    )
    .await;
    assert!(denied.unwrap_err().contains("row-level security"));
    let denied = as_user(
        &db,
        &role,
        ALICE,
        "update notes set secret = 'x' returning body",
    )
    .await;
    assert!(denied.unwrap_err().contains("permission denied"));
    // The role is an API role: a member of authenticated, reachable by authenticator.
    let member: bool = db.value("select pg_has_role('authenticator', $1, 'member') and pg_has_role($1, 'authenticated', 'member')", &[&role]).await;
    assert!(member);
    // The policy says where it came from.
    let comment: String = db.value("select obj_description(oid, 'pg_policy') from pg_policy where polname = 'authors read their notes'", &[]).await;
    assert_eq!(comment, "doska policy file policies/notes.toml:7");

    // The same files again: nothing to do, the hash recorded once.
    let again = apply(&db, &notes_files(&role), Mode::Apply).await.unwrap();
    assert!(again.statements.is_empty(), "{again:?}");
    let sets: i64 = db
        .value(
            "select count(*) from doska.policy_sets where hash = $1",
            &[&out.hash],
        )
        .await;
    assert_eq!(sets, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_declarations_drops_exactly_what_files_made() {
    let (db, role) = notes_db().await;
    apply(&db, &notes_files(&role), Mode::Apply).await.unwrap();

    // Drop the update policy and the column grant.
    let fewer = notes_policy(&role)
        .replace(", \"update(body)\"", "")
        .split("[[tables.notes.policies]]\nname = \"authors edit")
        .next()
        .unwrap()
        .to_string();
    let out = apply(&db, &files(&[("notes.toml", &fewer)]), Mode::Apply)
        .await
        .unwrap();
    assert_eq!(
        out.statements,
        vec![
            "DROP POLICY \"authors edit their notes\" ON \"public\".\"notes\"".to_string(),
            format!("REVOKE UPDATE (\"body\") ON TABLE \"public\".\"notes\" FROM \"{role}\""),
        ]
    );
    let denied = as_user(
        &db,
        &role,
        ALICE,
        "update notes set body = 'x' returning body",
    )
    .await;
    assert!(denied.unwrap_err().contains("permission denied"));

    // Everything gone: the role is dropped too; the migration's policy, grant and RLS stay.
    let out = apply(&db, &files(&[]), Mode::Apply).await.unwrap();
    assert!(
        out.statements.contains(&format!("DROP ROLE \"{role}\"")),
        "{out:?}"
    );
    let left: i64 = db
        .value("select count(*) from doska.policy_objects", &[])
        .await;
    assert_eq!(left, 0);
    let policies: Vec<String> = db
        .admin()
        // doska's own (the localStore table's, an internal migration) aside.
        .query(
            "select polname::text from pg_policy \
             where polrelid <> 'public.doska_local_store'::regclass order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(policies, vec!["from_migration"]);
    assert_eq!(
        as_user(&db, "anon", "", "select id from notes order by id").await,
        Ok(vec![]),
        "RLS stays on (closed), the migration's column grant stays"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn migration_objects_are_untouched() {
    let db = common::TestDb::new().await;
    setup(&db).await;
    // A role a migration made, declared in a file too, stays when the file lets go of it.
    let role = format!("{}_from_migration", db.name);
    db.admin()
        .batch_execute(&format!("create role \"{role}\" nologin"))
        .await
        .unwrap();
    let before = snapshot(&db).await;
    // Declaring what a migration already granted does not make it doska's; a policy name a migration
    // uses is refused.
    let declared = format!(
        r#"[roles.{role}]
[tables.notes]
grants.anon = ["select(id)"]
[tables.audit]
"#
    );
    let out = apply(&db, &files(&[("a.toml", &declared)]), Mode::Apply)
        .await
        .unwrap();
    assert!(!out.statements.iter().any(|s| s.starts_with("CREATE ROLE")));
    assert!(!out.statements.iter().any(|s| s.starts_with("GRANT SELECT")));
    apply(&db, &files(&[]), Mode::Apply).await.unwrap();
    let kept: bool = db
        .value(
            "select exists (select from pg_roles where rolname = $1)",
            &[&role],
        )
        .await;
    assert!(kept, "a role doska did not create was dropped");
    let after = snapshot(&db).await;
    // Only RLS on notes (left on, closed) and the history of sets differ.
    let strip = |s: &str| {
        s.replace("notes t {", "notes f {")
            .rsplit_once(" | ")
            .unwrap()
            .0
            .to_string()
    };
    assert_eq!(strip(&after), strip(&before));

    let clash = r#"[tables.audit]
[[tables.audit.policies]]
name = "from_migration"
using = "false"
"#;
    let err = apply(&db, &files(&[("a.toml", clash)]), Mode::Apply)
        .await
        .unwrap_err();
    assert_eq!(
        err.lines(),
        vec![
            "policies/a.toml:2: table public.audit already has a policy \"from_migration\" that policy files did not create (a migration's?); give this one another name"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_files_change_nothing_and_say_where() {
    let (db, role) = notes_db().await;
    apply(&db, &notes_files(&role), Mode::Apply).await.unwrap();
    let before = snapshot(&db).await;
    let good = notes_policy(&role);
    let cases: Vec<(String, &str)> = vec![
        (
            good.replace("[[tables.notes.policies]]", "[[tables.notes.policies]"),
            "policies/notes.toml:7: ",
        ),
        (
            good.replace("tables.notes]", "tables.notes_typo]"),
            "policies/notes.toml:4: unknown table public.notes_typo",
        ),
        (
            good.replace("update(body)", "update(bodyy)"),
            "policies/notes.toml:5: table public.notes has no column \"bodyy\"",
        ),
        (
            good.replace("owner = \"author_id\"", "owner = \"writer\""),
            "policies/notes.toml:11: table public.notes has no column \"writer\"",
        ),
        (
            good.replace(
                &format!("to = [\"{role}\"]\nowner"),
                "to = [\"nobody_here\"]\nowner",
            ),
            "policies/notes.toml:10: unknown role \"nobody_here\"",
        ),
        (
            good.replace(
                "with_check = \"body <> ''\"",
                "with_check = \"\"\"\nbody <> ''\n  and no_such_col = 1\"\"\"",
            ),
            "policies/notes.toml:20: column \"no_such_col\" does not exist (SQLSTATE 42703)",
        ),
        (
            good.replace("body <> ''", "body"),
            "policies/notes.toml:18: argument of POLICY must be type boolean, not type text (SQLSTATE 42804)",
        ),
        (
            good.replace("author_id = auth.uid()", "author_id = = auth.uid()"),
            "policies/notes.toml:17: syntax error at or near \"=\"",
        ),
    ];
    for (text, want) in cases {
        for mode in [Mode::Apply, Mode::Check, Mode::Diff] {
            let err = apply(&db, &files(&[("notes.toml", &text)]), mode)
                .await
                .unwrap_err();
            let lines = err.lines();
            assert!(
                lines.iter().any(|l| l.starts_with(want)),
                "want {want:?}, got {lines:?}"
            );
            assert_eq!(snapshot(&db).await, before, "{want}");
        }
    }
    // Still in force.
    assert_eq!(
        as_user(&db, &role, BOB, "select body from notes").await,
        Ok(vec!["b1".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_and_diff_change_nothing() {
    let (db, role) = notes_db().await;
    let before = snapshot(&db).await;
    let sources = notes_files(&role);
    let diff = apply(&db, &sources, Mode::Diff).await.unwrap();
    let check = apply(&db, &sources, Mode::Check).await.unwrap();
    assert_eq!(snapshot(&db).await, before);
    let exists: bool = db
        .value(
            "select exists (select from pg_roles where rolname = $1)",
            &[&role],
        )
        .await;
    assert!(!exists);
    assert_eq!(diff.statements, check.statements);
    assert_eq!(
        diff.statements[..2],
        [
            format!("CREATE ROLE \"{role}\" NOLOGIN INHERIT"),
            format!("GRANT \"authenticated\" TO \"{role}\""),
        ]
    );
    assert!(
        diff.statements
            .contains(&"ALTER TABLE \"public\".\"notes\" ENABLE ROW LEVEL SECURITY".to_string())
    );
    // What diff printed is what apply then runs.
    let applied = apply(&db, &sources, Mode::Apply).await.unwrap();
    assert_eq!(applied.statements, diff.statements);
    // The exposed-table warning: `audit` has RLS; a new open table is named.
    db.admin()
        .batch_execute("create table open_one (id int); grant select on open_one to anon;")
        .await
        .unwrap();
    let check = apply(&db, &sources, Mode::Check).await.unwrap();
    assert!(
        check.warnings.iter().any(|w| w.contains("public.open_one")),
        "{check:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watcher_applies_edits_and_keeps_the_old_set_on_a_broken_one() {
    let (db, role) = notes_db().await;
    let dir = common::temp_dir("policies-watch");
    let path = dir.join("notes.toml");
    std::fs::write(&path, notes_policy(&role)).unwrap();
    let sources = policies::read_dir(&dir).unwrap();
    let out = apply(&db, &sources, Mode::Apply).await.unwrap();
    // The watcher tells whoever cares (REST's schema cache, in `doska serve`) after each apply.
    let told = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = told.clone();
    let _watcher = policies::watch::spawn(
        db.state.clone(),
        dir.clone(),
        out.hash,
        Box::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async {})
        }),
    );

    // Edit: Alice may now read every note.
    let edited = notes_policy(&role).replace("owner = \"author_id\"", "using = \"true\"");
    let started = Instant::now();
    std::fs::write(&path, &edited).unwrap();
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(30) {
        seen = as_user(&db, &role, ALICE, "select body from notes order by id")
            .await
            .unwrap();
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen,
        vec!["a1", "b1"],
        "the edit was not applied within 30 s"
    );
    eprintln!(
        "policy reload latency: {} ms",
        started.elapsed().as_millis()
    );
    assert!(told.load(std::sync::atomic::Ordering::SeqCst) >= 1);

    // A broken edit: logged, nothing changes.
    std::fs::write(
        &path,
        edited.replace("using = \"true\"", "using = \"nope(\""),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        as_user(&db, &role, ALICE, "select body from notes order by id").await,
        Ok(vec!["a1".to_string(), "b1".to_string()])
    );
    // Removing the file drops what it made.
    std::fs::remove_file(&path).unwrap();
    let started = Instant::now();
    let mut gone = false;
    while started.elapsed() < Duration::from_secs(30) && !gone {
        gone = db
            .value(
                "select not exists (select from pg_policy where polrelid = 'notes'::regclass)",
                &[],
            )
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "removing the file did not drop its policies");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_applies_serialize_and_agree() {
    let (db, role) = notes_db().await;
    let sources = notes_files(&role);
    let (a, b) = tokio::join!(
        apply(&db, &sources, Mode::Apply),
        apply(&db, &sources, Mode::Apply)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // One did the work, the other found nothing left to do.
    assert!(
        a.statements.is_empty() != b.statements.is_empty(),
        "{a:?} {b:?}"
    );
    let policies: i64 = db
        .value(
            "select count(*) from pg_policy where polrelid = 'notes'::regclass",
            &[],
        )
        .await;
    assert_eq!(policies, 2);
}
