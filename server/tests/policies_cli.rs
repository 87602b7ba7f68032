//! `doska policies check|diff|apply` and `doska serve` with policy files, as an operator runs them:
//! invalid files are reported as file:line and refused (serve does not start), check and diff change
//! nothing, diff prints what apply then runs.

mod common;

use std::{
    path::Path,
    process::{Output, Stdio},
    time::{Duration, Instant},
};

fn doska(data: &Path, migrations: &Path, policies: &Path, args: &[&str]) -> Output {
    common::doska(data, migrations, policies)
        .args(args)
        .output()
        .expect("running doska")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn commands_and_serve_with_policy_files() {
    let data = common::temp_dir("pcli-data");
    let mig = common::temp_dir("pcli-mig");
    let pol = common::temp_dir("pcli-pol");
    std::fs::write(
        mig.join("001_notes.sql"),
        "create table notes (id int primary key, author_id uuid);\n",
    )
    .unwrap();
    let file = pol.join("notes.toml");
    std::fs::write(&file, "# notes\n[tables.notes]\nowner = \"writer\"\n").unwrap();
    let where_ = format!(
        "{}:3: table public.notes has no column \"writer\"",
        file.display()
    );

    let out = doska(&data, &mig, &pol, &["migrate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = doska(&data, &mig, &pol, &["policies", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&where_), "{}", text(&out.stderr));

    // serve refuses to start with invalid policies.
    let mut child = common::doska(&data, &mig, &pol)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("doska serve started with invalid policies");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    assert!(!status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("will not serve") && err.contains(&where_),
        "{err}"
    );

    // Fixed: diff shows, check passes, neither changes anything; apply runs what diff showed.
    std::fs::write(&file, "# notes\n[tables.notes]\nowner = \"author_id\"\n").unwrap();
    let diff = doska(&data, &mig, &pol, &["policies", "diff"]);
    assert!(diff.status.success(), "{}", text(&diff.stderr));
    let diff = text(&diff.stdout);
    assert!(
        diff.starts_with("ALTER TABLE \"public\".\"notes\" ENABLE ROW LEVEL SECURITY;\nCREATE POLICY \"owner only\""),
        "{diff}"
    );
    let check = doska(&data, &mig, &pol, &["policies", "check"]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        text(&check.stdout)
            .starts_with("ok: 0 roles, 1 tables, 1 policies; 3 statement(s) would run")
    );
    let again = doska(&data, &mig, &pol, &["policies", "diff"]);
    assert_eq!(text(&again.stdout), diff, "check or diff changed something");

    let apply = doska(&data, &mig, &pol, &["policies", "apply"]);
    assert!(apply.status.success(), "{}", text(&apply.stderr));
    let applied = text(&apply.stdout);
    assert!(applied.starts_with(&diff), "{applied}");
    let diff = doska(&data, &mig, &pol, &["policies", "diff"]);
    assert_eq!(text(&diff.stdout), "-- no changes\n");

    // policies test: cases, coverage, the last line, the exit status.
    std::fs::create_dir_all(pol.join("tests")).unwrap();
    let cases = pol.join("tests").join("notes.toml");
    let base = r#"fixtures = "insert into notes values (1, '11111111-1111-1111-1111-111111111111'), (2, null)"

[users.alice]
id = "11111111-1111-1111-1111-111111111111"
role = "authenticated"

[[cases]]
name = "alice reads her note only"
as = "alice"
sql = "select id from notes"
rows = [{ id = 1 }]
"#;
    std::fs::write(&cases, base).unwrap();
    let out = doska(&data, &mig, &pol, &["policies", "test"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with(&format!(
            "ok    {}:7 alice reads her note only\n",
            cases.display()
        )),
        "{stdout}"
    );
    assert!(stdout.ends_with("1 passed, 0 failed\n"), "{stdout}");

    std::fs::write(
        &cases,
        base.replace("rows = [{ id = 1 }]", "rows = [{ id = 2 }]"),
    )
    .unwrap();
    let out = doska(&data, &mig, &pol, &["policies", "test"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("expected rows [{\"id\":2}], got [{\"id\":1}]"),
        "{stdout}"
    );
    assert!(stdout.ends_with("0 passed, 1 failed\n"), "{stdout}");
}
