//! Runs the supabase-js auth suite (tests/js/auth.test.mjs) against an in-process doska with the
//! suite's fixture migration applied, so auth-js is exercised by `cargo test` too. Needs the JS
//! suites' packages (`scripts/setup` installs them with `npm ci` in server/tests/js).

mod common;

use std::path::Path;
use std::process::Command;

use common::TestDb;
use doska::auth::{self, AuthConfig};
use serde_json::json;

#[tokio::test]
async fn supabase_js_auth_suite() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/@supabase/supabase-js").exists(),
        "supabase-js is not installed: run scripts/setup (npm ci in server/tests/js)"
    );
    let db = TestDb::new().await;
    db.admin()
        .batch_execute(include_str!("js/fixtures/auth_teacher_role.sql"))
        .await
        .expect("fixture migration");
    // The defaults, rate limits included: the suite stays under them as a real app would.
    auth::install(&db.state, AuthConfig::default()).unwrap();
    let url = db.server().await;
    let anon = db.sign(json!({"role": "anon"}));
    let service = db.sign(json!({"role": "service_role"}));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "--test-concurrency=1", "auth.test.mjs"])
            .current_dir(&js)
            .env("DOSKA_URL", &url)
            .env("DOSKA_ANON_KEY", &anon)
            .env("DOSKA_SERVICE_KEY", &service)
            .output()
            .expect("running node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "supabase-js auth suite failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("# fail 0"), "{stdout}");
}
