//! `doska gen types`: the output for a fixture schema that holds every kind of thing the generator
//! maps is compared with a golden file (`DOSKA_UPDATE_GOLDEN=1` rewrites it), and the command run on
//! TeacherUchit's migrations prints types that `tsc --noEmit --strict` accepts together with a
//! usage file typed by @doska/client's `createClient<Database>()` (and so does the golden file).

mod common;

use std::path::{Path, PathBuf};

use common::TestDb;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gen_types")
}

/// The fixture's types, as `doska gen types --db-schemas public,api` prints them.
async fn fixture_types() -> String {
    let db = TestDb::new().await;
    let sql = std::fs::read_to_string(here().join("fixture.sql")).unwrap();
    db.admin().batch_execute(&sql).await.expect("fixture");
    doska::typegen::generate(db.admin(), &["public".into(), "api".into()])
        .await
        .expect("gen types")
}

#[tokio::test]
async fn fixture_schema_matches_the_golden_file() {
    let got = fixture_types().await;
    let golden = here().join("fixture.ts");
    if std::env::var_os("DOSKA_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).expect("the golden file");
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "gen types differs from {} at line {}:\n got: {:?}\nwant: {:?}\n(DOSKA_UPDATE_GOLDEN=1 rewrites it)",
            golden.display(),
            first + 1,
            got.lines().nth(first),
            want.lines().nth(first)
        );
    }
}

#[test]
fn teacheruchit_types_compile_with_tsc() {
    let tsc = repo().join("client-js/node_modules/.bin/tsc");
    if !tsc.exists() {
        eprintln!(
            "SKIPPED: {} is missing — run scripts/setup (npm ci in client-js/) to check the generated types with tsc",
            tsc.display()
        );
        return;
    }
    let data = common::temp_dir("gentypes-data");
    let pol = common::temp_dir("gentypes-pol");
    let out = common::doska(&data, &repo().join("migrations"), &pol)
        .args(["gen", "types"])
        .output()
        .expect("running doska gen types");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let types = String::from_utf8(out.stdout).unwrap();
    assert!(types.contains("export type Database = {"), "{types}");
    assert!(types.contains("      assignments: {"), "{types}");

    let dir = common::temp_dir("gentypes-tsc");
    std::fs::write(dir.join("package.json"), r#"{"type": "module"}"#).unwrap();
    std::fs::write(dir.join("database.ts"), &types).unwrap();
    std::fs::copy(here().join("fixture.ts"), dir.join("fixture.ts")).unwrap();
    let client = repo().join("client-js/src/index.js");
    let usage = std::fs::read_to_string(here().join("usage.ts"))
        .unwrap()
        .replace("@doska/client", client.to_str().unwrap());
    std::fs::write(dir.join("usage.ts"), usage).unwrap();
    let tsconfig = serde_json::json!({
        "compilerOptions": {
            "target": "es2022", "module": "nodenext", "moduleResolution": "nodenext",
            "lib": ["es2022", "dom"], "strict": true, "noEmit": true, "types": [],
        },
        "files": ["database.ts", "fixture.ts", "usage.ts"],
    });
    std::fs::write(dir.join("tsconfig.json"), tsconfig.to_string()).unwrap();
    let out = std::process::Command::new(&tsc)
        .current_dir(&dir)
        .args(["--noEmit", "--strict", "-p", "tsconfig.json"])
        .output()
        .expect("running tsc");
    assert!(
        out.status.success(),
        "tsc refused the generated types:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
