//! `doska policies test`: runs the cases of `policies/tests/*.toml` — "as this user, this SQL returns
//! exactly these rows / is denied" — against the policy files as written (applied inside the test's
//! transaction, never committed), on fixture rows, in one transaction per test file that is rolled
//! back. Each case runs in its own savepoint as the case's role with its JWT claims, exactly as a
//! request transaction sets them.
//!
//! Coverage is part of the test: every declared policy needs a case that exercises it where its
//! expression is true on a row of its table (it allows) and one where it is false (it denies). A
//! case exercises a policy when the case's role is one the policy applies to and the statement
//! touches the policy's table with a command the policy covers (the tables and the command come from
//! PostgreSQL's own plan of the statement). A policy whose expressions are all `true` needs no deny
//! case. Rejects malformed test files as `file:line: message`.
//!
//! It drives the doors (REST's planner, realtime's checks, the storage core) as a client of them, so
//! it lives beside `commands`, above the doors, and the policy compiler below imports none of them.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::{Client, Transaction};
use toml::Spanned;

mod actions;

use crate::{
    db::{
        caller::{Caller, act_as, with_claims},
        migrate::describe,
    },
    policies::{
        apply::{ApplyError, apply_in},
        compile::{PolicyPlan, qualified},
        parse::{Command, Sources},
    },
    rest::{execute::query_text, schema::SchemaCache},
};

#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("cannot read the tests folder {}: {reason}", .dir.display())]
    ReadDir { dir: PathBuf, reason: String },
    /// The policy files themselves are invalid.
    #[error("{0}")]
    Policies(ApplyError),
    /// The REST schema cache could not be loaded.
    #[error("policy tests: loading the REST schema: {0}")]
    Rest(String),
    #[error("policy tests: {}", describe(.0))]
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for TestError {
    fn from(e: tokio_postgres::Error) -> Self {
        TestError::Db(e)
    }
}

/// What a run printed and counted.
#[derive(Debug, Default)]
pub struct Report {
    /// One line per case, then one per coverage gap, then `N passed, M failed`.
    pub lines: Vec<String>,
    pub passed: usize,
    pub failed: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// SQL run as the database admin before the cases.
    fixtures: Option<String>,
    #[serde(default)]
    users: BTreeMap<String, UserDoc>,
    #[serde(default)]
    cases: Vec<Spanned<CaseDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDoc {
    id: String,
    role: String,
    /// More claims for the JWT (email, app_metadata...).
    #[serde(default)]
    claims: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseDoc {
    name: String,
    /// A user of `[users]`, or a role (`anon`, `authenticated`, `service_role`, an app role).
    #[serde(rename = "as")]
    who: String,
    /// SQL run as the caller.
    sql: Option<String>,
    /// A REST request as `/rest/v1` takes it, e.g. `GET /grades?select=grade`, run through the REST
    /// door's own parser, planner and SQL builder.
    rest: Option<String>,
    /// The JSON body of a REST write.
    body: Option<Value>,
    /// Exactly these rows, in order (a select, or a write with RETURNING).
    rows: Option<Vec<Value>>,
    /// Exactly this many rows.
    count: Option<i64>,
    /// The statement fails with SQLSTATE 42501: no privilege, or a row-level security violation.
    #[serde(default)]
    denied: bool,
    /// The statement fails with a message containing this.
    error: Option<String>,
    /// What a front door does instead of SQL: `download`, `upload`, `overwrite`, `delete` (with
    /// `bucket` and `path`: the storage core's own row statements), `join`, `send`, `track` (with
    /// `topic`: realtime's own private-channel probe), `receive` (with `table` and `row`: realtime's
    /// own visibility check of a change of that row).
    action: Option<String>,
    bucket: Option<String>,
    path: Option<String>,
    topic: Option<String>,
    /// `receive`: the published table and the primary key of its row.
    table: Option<String>,
    row: Option<serde_json::Map<String, Value>>,
    /// The action is allowed (`denied = true`: it is refused).
    #[serde(default)]
    allowed: bool,
}

/// Per policy: seen allowing / seen denying.
type Coverage = Vec<(bool, bool)>;

/// Runs every `*.toml` in `tests_dir` against `sources`. Malformed test files and failing cases are
/// failures in the report; invalid policy files or a broken connection are errors.
pub async fn run(
    client: &mut Client,
    sources: &Sources,
    tests_dir: &Path,
    schemas: &[String],
) -> Result<Report, TestError> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(tests_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(TestError::ReadDir {
                dir: tests_dir.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    files.sort();
    // The REST door's view of the tables, for `rest = "…"` cases (tables come from migrations).
    let cache = crate::rest::schema::load(client, schemas)
        .await
        .map_err(|e| TestError::Rest(e.to_string()))?;
    let mut report = Report::default();
    let mut coverage: Coverage = Vec::new();
    let mut policies: Vec<PolicyPlan> = Vec::new();
    for path in &files {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                report.fail(format!("FAIL  {name}: cannot read: {e}"));
                continue;
            }
        };
        let doc: TestFile = match toml::from_str(&text) {
            Ok(d) => d,
            Err(e) => {
                let line = line_of(&text, e.span().map(|s| s.start).unwrap_or(0));
                report.fail(format!("FAIL  {name}:{line}: {}", e.message().trim()));
                continue;
            }
        };
        let tx = client.transaction().await?;
        let (_, plan) = apply_in(&tx, sources, schemas)
            .await
            .map_err(TestError::Policies)?;
        if policies.is_empty() {
            coverage = vec![(false, false); plan.policies.len()];
            policies = plan.policies;
        }
        if let Some(sql) = &doc.fixtures
            && let Err(e) = tx.batch_execute(sql).await
        {
            let line = line_of(&text, text.find("fixtures").unwrap_or(0));
            report.fail(format!(
                "FAIL  {name}:{line}: the fixtures failed: {}",
                describe(&e)
            ));
            continue;
        }
        for case in &doc.cases {
            let line = line_of(&text, case.span().start);
            let case = case.get_ref();
            let label = format!("{name}:{line} {}", case.name);
            match run_case(&tx, &doc, case, &cache, &policies, &mut coverage).await? {
                Ok(()) => {
                    report.passed += 1;
                    report.lines.push(format!("ok    {label}"));
                }
                Err(why) => report.fail(format!("FAIL  {label}: {why}")),
            }
        }
        tx.rollback().await?;
    }
    for (p, (allowed, denied)) in policies.iter().zip(&coverage) {
        let what = format!(
            "policy {:?} on {}.{} ({})",
            p.name, p.schema, p.table, p.loc
        );
        if !allowed {
            report.fail(format!(
                "FAIL  coverage: {what} has no case where it allows a row"
            ));
        }
        // A policy whose expressions are all `true` denies nothing; there is no deny case to ask for.
        let always = [&p.using, &p.with_check]
            .into_iter()
            .flatten()
            .all(|e| e.trim().eq_ignore_ascii_case("true"));
        if !denied && !always {
            report.fail(format!(
                "FAIL  coverage: {what} has no case where it denies a row"
            ));
        }
    }
    report.lines.push(format!(
        "{} passed, {} failed",
        report.passed, report.failed
    ));
    Ok(report)
}

impl Report {
    fn fail(&mut self, line: String) {
        self.failed += 1;
        self.lines.push(line);
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The case's caller: its role and JWT claims.
fn caller(doc: &TestFile, case: &CaseDoc) -> Caller {
    match doc.users.get(&case.who) {
        Some(u) => {
            let mut claims = u.claims.clone();
            claims.insert("sub".into(), json!(u.id));
            claims.insert("role".into(), json!(u.role));
            claims.entry("aud").or_insert(json!("authenticated"));
            Caller::new(&u.role, Value::Object(claims))
        }
        None => Caller::new(&case.who, json!({ "role": case.who })),
    }
}

/// Runs one case in a savepoint; `Ok(Err(why))` is a failed case.
async fn run_case(
    tx: &Transaction<'_>,
    doc: &TestFile,
    case: &CaseDoc,
    cache: &SchemaCache,
    policies: &[PolicyPlan],
    coverage: &mut Coverage,
) -> Result<Result<(), String>, TestError> {
    if let Some(action) = &case.action {
        return actions::run(tx, doc, case, action, policies, coverage).await;
    }
    let expectations = [
        case.rows.is_some(),
        case.count.is_some(),
        case.denied,
        case.error.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if expectations != 1 || case.allowed {
        return Ok(Err(
            "a case expects exactly one of `rows`, `count`, `denied` or `error` (`allowed` goes with `action`)".into(),
        ));
    }
    if case.bucket.is_some()
        || case.path.is_some()
        || case.topic.is_some()
        || case.table.is_some()
        || case.row.is_some()
    {
        return Ok(Err(
            "`bucket`, `path`, `topic`, `table` and `row` go with `action`".into(),
        ));
    }
    let caller = caller(doc, case);
    let stmt = match statement(case, cache) {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    tx.batch_execute("SAVEPOINT doska_case").await?;
    // What the statement touches, from PostgreSQL's plan (as the admin: the plan of the statement
    // itself, without the policies' own subqueries).
    let touched = match touched(tx, &stmt).await {
        Ok(t) => t,
        Err(e) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT doska_case").await?;
            return Ok(Err(format!("cannot plan the statement: {}", describe(&e))));
        }
    };
    let member_of = match memberships(tx, &caller.role, &case.who).await? {
        Ok(m) => m,
        Err(message) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT doska_case").await?;
            return Ok(Err(message));
        }
    };
    // Reads, updates, deletes: evaluate the policies on the rows as they are before the statement
    // (as the admin, so every row is seen, with the case's claims).
    with_claims(tx, &caller.claims, None).await?;
    Exercised {
        policies,
        member_of: &member_of,
        touched: &touched,
    }
    .evaluate(tx, coverage, Phase::Before)
    .await?;
    act_as(tx, &caller).await?;
    let wants_rows = case.rows.is_some() || case.count.is_some();
    let result: Result<Vec<Value>, tokio_postgres::Error> = match &stmt {
        Stmt::Sql(sql) if wants_rows => {
            let wrapped = format!(
                "with doska_case as ({sql}\n) select coalesce(json_agg(doska_case), '[]'::json) from doska_case"
            );
            tx.query_one(&wrapped, &[]).await.map(|r| {
                let v: Value = r.get(0);
                v.as_array().cloned().unwrap_or_default()
            })
        }
        Stmt::Sql(sql) => tx.batch_execute(sql).await.map(|_| Vec::new()),
        Stmt::Rest { sql, params } => query_text(tx, sql, params).await.map(|rows| {
            let body: Option<String> = rows.first().and_then(|r| r.try_get("body").ok().flatten());
            match body.and_then(|b| serde_json::from_str::<Value>(&b).ok()) {
                Some(Value::Array(a)) => a,
                Some(Value::Null) | None => Vec::new(),
                Some(other) => vec![other],
            }
        }),
    };
    let verdict = match (&result, case) {
        (
            Ok(rows),
            CaseDoc {
                rows: Some(want), ..
            },
        ) if rows == want => Ok(()),
        (
            Ok(rows),
            CaseDoc {
                rows: Some(want), ..
            },
        ) => Err(format!(
            "expected rows {}, got {}",
            Value::Array(want.clone()),
            Value::Array(rows.clone())
        )),
        (Ok(rows), CaseDoc { count: Some(n), .. }) if rows.len() as i64 == *n => Ok(()),
        (Ok(rows), CaseDoc { count: Some(n), .. }) => {
            Err(format!("expected {n} rows, got {}", rows.len()))
        }
        (Ok(_), CaseDoc { denied: true, .. }) => Err("expected it to be denied; it was not".into()),
        (Ok(_), _) => Err("expected an error; there was none".into()),
        (Err(e), CaseDoc { denied: true, .. }) if e.code().is_some_and(|c| c.code() == "42501") => {
            Ok(())
        }
        (
            Err(e),
            CaseDoc {
                error: Some(want), ..
            },
        ) if describe(e).contains(want.as_str()) => Ok(()),
        (Err(e), _) => Err(format!("failed: {}", describe(e))),
    };
    let failed = result.is_err();
    let rls_denied = result
        .as_ref()
        .err()
        .and_then(|e| e.as_db_error())
        .is_some_and(|d| d.code().code() == "42501" && d.message().contains("row-level security"));
    if failed {
        tx.batch_execute("ROLLBACK TO SAVEPOINT doska_case").await?;
        with_claims(tx, &caller.claims, None).await?;
    }
    // Inserts: the new row passed some WITH CHECK (allowed), or an RLS violation said none did.
    tx.batch_execute("RESET ROLE").await?;
    let exercised = Exercised {
        policies,
        member_of: &member_of,
        touched: &touched,
    };
    exercised
        .evaluate(
            tx,
            coverage,
            Phase::AfterInsert {
                ok: !failed,
                rls_denied,
            },
        )
        .await?;
    tx.batch_execute("ROLLBACK TO SAVEPOINT doska_case").await?;
    Ok(verdict)
}

enum Phase {
    Before,
    AfterInsert { ok: bool, rls_denied: bool },
}

/// The policies a case exercises: those applying to its role, on tables it touches, for the
/// command it touches them with.
struct Exercised<'a> {
    policies: &'a [PolicyPlan],
    member_of: &'a HashSet<String>,
    touched: &'a [(String, String, Command)],
}

impl Exercised<'_> {
    async fn evaluate(
        &self,
        tx: &Transaction<'_>,
        coverage: &mut Coverage,
        phase: Phase,
    ) -> Result<(), TestError> {
        for (i, p) in self.policies.iter().enumerate() {
            let applies = p
                .roles
                .iter()
                .any(|r| r.name == "public" || self.member_of.contains(&r.name));
            if !applies {
                continue;
            }
            for (schema, table, kind) in self.touched {
                if *schema != p.schema || *table != p.table {
                    continue;
                }
                if p.command != Command::All && p.command != *kind {
                    continue;
                }
                let expr = match (&phase, kind) {
                    (Phase::Before, Command::Insert) => continue,
                    (Phase::Before, _) => p.using.as_ref(),
                    (Phase::AfterInsert { rls_denied, .. }, Command::Insert) => {
                        if *rls_denied {
                            coverage[i].1 = true;
                        }
                        p.with_check.as_ref()
                    }
                    (Phase::AfterInsert { .. }, _) => continue,
                };
                let Some(expr) = expr else { continue };
                if let Phase::AfterInsert { ok: false, .. } = phase {
                    continue;
                }
                let sql = format!(
                    "select coalesce(bool_or(coalesce(({expr}\n), false)), false),
                            coalesce(bool_or(not coalesce(({expr}\n), false)), false)
                       from {}",
                    qualified(schema, table)
                );
                let row = tx.query_one(&sql, &[]).await?;
                let (allows, denies): (bool, bool) = (row.get(0), row.get(1));
                coverage[i].0 |= allows;
                if matches!(phase, Phase::Before) {
                    coverage[i].1 |= denies;
                }
            }
        }
        Ok(())
    }
}

/// (schema, table, command) for each table the statement reads or writes, from its plan.
async fn touched(
    tx: &Transaction<'_>,
    stmt: &Stmt,
) -> Result<Vec<(String, String, Command)>, tokio_postgres::Error> {
    let row = match stmt {
        Stmt::Sql(sql) => {
            tx.query_one(&format!("explain (verbose, format json) {sql}"), &[])
                .await?
        }
        Stmt::Rest { sql, params } => {
            query_text(tx, &format!("explain (verbose, format json) {sql}"), params)
                .await?
                .into_iter()
                .next()
                .expect("EXPLAIN returns one row")
        }
    };
    let plan: Value = row.get(0);
    let mut found = Vec::new();
    let mut target: Option<(String, String)> = None;
    fn walk(
        node: &Value,
        found: &mut Vec<(String, String, Command)>,
        target: &mut Option<(String, String)>,
    ) {
        if let (Some(schema), Some(rel)) = (
            node.get("Schema").and_then(Value::as_str),
            node.get("Relation Name").and_then(Value::as_str),
        ) {
            let kind = if node.get("Node Type").and_then(Value::as_str) == Some("ModifyTable") {
                match node.get("Operation").and_then(Value::as_str) {
                    Some("Insert") => Some(Command::Insert),
                    Some("Update") => Some(Command::Update),
                    Some("Delete") => Some(Command::Delete),
                    _ => None,
                }
            } else {
                None
            };
            match kind {
                Some(k) => {
                    *target = Some((schema.to_string(), rel.to_string()));
                    found.push((schema.to_string(), rel.to_string(), k));
                }
                None => found.push((schema.to_string(), rel.to_string(), Command::Select)),
            }
        }
        if let Some(children) = node.get("Plans").and_then(Value::as_array) {
            for c in children {
                walk(c, found, target);
            }
        }
    }
    for top in plan.as_array().into_iter().flatten() {
        if let Some(p) = top.get("Plan") {
            walk(p, &mut found, &mut target);
        }
    }
    // Scanning the written table is part of the write, not a read of its own.
    if let Some((s, t)) = target {
        found.retain(|(fs, ft, k)| !(fs == &s && ft == &t && *k == Command::Select));
    }
    found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    found.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1 && a.2 == b.2);
    Ok(found)
}

/// A case's statement: SQL as written, or what the REST door builds for a request.
enum Stmt {
    Sql(String),
    Rest { sql: String, params: Vec<String> },
}

/// Builds the case's statement; `Err` is a failed case (malformed, or a request REST refuses).
fn statement(case: &CaseDoc, cache: &SchemaCache) -> Result<Stmt, String> {
    use crate::rest::{plan, request, sql};
    match (&case.sql, &case.rest) {
        (Some(sql), None) => {
            if case.body.is_some() {
                return Err("`body` goes with `rest`".into());
            }
            Ok(Stmt::Sql(sql.clone()))
        }
        (None, Some(line)) => {
            let (method, target) = line
                .trim()
                .split_once(' ')
                .ok_or("`rest` is written `METHOD /path?query`, e.g. `GET /grades?select=grade`")?;
            let method = http::Method::from_bytes(method.as_bytes())
                .map_err(|_| format!("unknown method {method:?}"))?;
            let (path, query) = match target.trim().split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (target.trim(), None),
            };
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "prefer",
                http::HeaderValue::from_static("return=representation"),
            );
            headers.insert(
                "content-type",
                http::HeaderValue::from_static("application/json"),
            );
            let rest_error = |e: crate::rest::error::RestError| {
                let b = e.body();
                format!(
                    "the REST door refuses it ({}): {}",
                    b["code"].as_str().unwrap_or(""),
                    b["message"].as_str().unwrap_or("")
                )
            };
            let api =
                request::parse(&method, path, query, &headers).map_err(|e| rest_error(e.into()))?;
            let payload = match &case.body {
                Some(v) => plan::Payload::Json(v.clone()),
                None => plan::Payload::None,
            };
            let schema = cache
                .schemas
                .first()
                .cloned()
                .unwrap_or_else(|| "public".into());
            let p = plan::plan(
                &api,
                &payload,
                cache,
                &schema,
                &plan::PlanConfig { max_rows: None },
            )
            .map_err(|e| rest_error(e.into()))?;
            let stmt = sql::build(
                &p,
                sql::BodyOptions {
                    strip_nulls: false,
                    csv: false,
                    geojson: false,
                },
            )
            .map_err(|e| format!("the REST door cannot build it: {}", e.0))?;
            Ok(Stmt::Rest {
                sql: stmt.sql,
                params: stmt.params,
            })
        }
        _ => Err("a case has exactly one of `sql` or `rest`".into()),
    }
}

/// The roles `role` is a member of (itself included), or why the case's `as` names no role.
pub(crate) async fn memberships(
    tx: &tokio_postgres::Transaction<'_>,
    role: &str,
    who: &str,
) -> Result<Result<HashSet<String>, String>, tokio_postgres::Error> {
    let exists: bool = tx
        .query_one(
            "select exists (select from pg_roles where rolname = $1)",
            &[&role],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(Err(format!(
            "`as = {who:?}` is neither a user of [users] nor a role"
        )));
    }
    Ok(Ok(tx
        .query(
            "select rolname::text from pg_roles where pg_has_role($1, oid, 'MEMBER')",
            &[&role],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect()))
}
