//! Runs the Python `supabase` client's auth check (tests/py/auth_test.py) against an in-process
//! doska. The interpreter is $DOSKA_PYTHON, else the virtualenv `scripts/setup` makes in
//! server/tests/py/.venv (from requirements.txt), else python3.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestDb;
use doska::auth::AuthConfig;
use serde_json::json;

#[tokio::test]
async fn python_supabase_sign_up_and_sign_in() {
    let py_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py");
    let venv = py_dir.join(".venv/bin/python");
    let python = std::env::var("DOSKA_PYTHON").unwrap_or_else(|_| {
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    });
    let script = py_dir.join("auth_test.py");
    let probe = Command::new(&python)
        .args(["-c", "import supabase"])
        .output()
        .expect("running python");
    assert!(
        probe.status.success(),
        "the Python supabase client is missing for {python}: run scripts/setup"
    );
    let db = TestDb::new().await;
    let url = db
        .serve(&db.doors_with_auth(AuthConfig::default()).await)
        .await;
    let anon = db.sign(json!({"role": "anon"}));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .env("DOSKA_URL", &url)
            .env("DOSKA_ANON_KEY", &anon)
            .output()
            .expect("running python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("python supabase auth: ok"),
        "python supabase auth check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
