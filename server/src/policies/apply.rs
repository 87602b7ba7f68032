//! Makes the database match the policy files, in ONE transaction on the admin connection: creates and
//! alters the declared roles, turns row-level security on for every named table, grants, creates
//! policies, creates or updates buckets, adds tables to the publication `supabase_realtime`;
//! revokes, drops and forgets what the files made before and no longer declare (the ledger
//! `doska.policy_objects` lists exactly that, so roles, grants, policies, buckets and published
//! tables from migrations are never touched; a bucket that still holds objects is kept); records
//! the applied set and its hash in `doska.policy_sets`; tells the REST schema cache to reload.
//! `check` and `diff` run the same work and roll it back.
//!
//! Rejects, changing nothing: an unknown table, column or role; a table to publish without a
//! primary key or replica identity; a declared role that could log in or holds superuser-like
//! powers; a policy name a migration already uses on that table; and any SQL PostgreSQL refuses —
//! each as `file:line: message`, with PostgreSQL's own message.

use std::{collections::HashSet, ops::Range};

use tokio_postgres::{Client, Transaction, error::SqlState};

use super::{
    compile::{
        BucketPlan, GrantKey, PUBLICATION, Plan, PolicyPlan, compile, publish_sql, qualified,
        unpublish_sql,
    },
    parse::{Diagnostic, Loc, ParseError, Privilege, Sources, parse},
};
use crate::db::{migrate::describe, quote_ident, quote_literal};

mod catalog;
mod sections;

use catalog::*;
use sections::*;

/// Serializes every policy apply on one database (several doska processes, the watcher, commands).
pub const POLICY_LOCK: i64 = 0x646f_736b_615f_706f; // "doska_po"

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Change the database.
    Apply,
    /// Do the work, report problems, roll back.
    Check,
    /// Do the work, report the statements, roll back.
    Diff,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub hash: String,
    /// The statements that changed (or would change) something, in order.
    pub statements: Vec<String>,
    pub warnings: Vec<String>,
    pub roles: usize,
    pub tables: usize,
    pub policies: usize,
    pub buckets: usize,
    /// Tables the files publish to `supabase_realtime`.
    pub published: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Parse(ParseError),
    #[error("{}", super::parse::lines(.0))]
    Invalid(Vec<Diagnostic>),
    /// Undoing something the files no longer declare failed (say, a migration dropped the table).
    #[error("removing what the policy files no longer declare failed: {statement}: {message}")]
    Undo { statement: String, message: String },
    /// The internal schema (ledger) is missing: `doska migrate` or `doska serve` makes it.
    #[error("this database has no doska schema yet: run `doska migrate` (or `doska serve`) first")]
    NotPrepared,
    #[error("policies: {}", describe(.0))]
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for ApplyError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApplyError::Db(e)
    }
}

impl ApplyError {
    /// Each problem on its own line (`file:line: message`), for logs and the command line.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ApplyError::Parse(ParseError::Invalid(d)) | ApplyError::Invalid(d) => {
                d.iter().map(|d| d.to_string()).collect()
            }
            other => vec![other.to_string()],
        }
    }
}

/// One row of `doska.policy_objects`.
#[derive(Debug, Clone)]
struct Owned {
    kind: String,
    schema: String,
    table: String,
    name: String,
    privilege: String,
    column: String,
    fingerprint: String,
}

/// What the catalog says about one named table.
struct TableInfo {
    rls: bool,
    force: bool,
    columns: HashSet<String>,
    policies: HashSet<String>,
    /// Privileges held directly: (role or `public`, privilege, column or "").
    held: HashSet<(String, Privilege, String)>,
}

/// Statements that change things: run, remembered for `diff`, errors placed at a file line.
struct Run<'a, 'b> {
    tx: &'a Transaction<'b>,
    statements: Vec<String>,
}

impl Run<'_, '_> {
    async fn exec(
        &mut self,
        sql: &str,
        loc: &Loc,
        exprs: &[(Range<usize>, Loc)],
    ) -> Result<(), ApplyError> {
        match self.tx.execute(sql, &[]).await {
            Ok(_) => {
                self.statements.push(sql.to_string());
                Ok(())
            }
            Err(e) => Err(placed(e, sql, loc, exprs)),
        }
    }

    /// `CREATE POLICY`. PostgreSQL reports where in the statement a syntax error is, but not where
    /// an unknown column or a type error is (it analyses policy expressions without their text); for
    /// those, each expression is tried on its own in a query that does report it.
    async fn exec_policy(&mut self, p: &PolicyPlan) -> Result<(), ApplyError> {
        self.tx.batch_execute("SAVEPOINT doska_policy").await?;
        let e = match self.tx.execute(&p.create_sql, &[]).await {
            Ok(_) => {
                self.tx
                    .batch_execute("RELEASE SAVEPOINT doska_policy")
                    .await?;
                self.statements.push(p.create_sql.clone());
                return Ok(());
            }
            Err(e) => e,
        };
        let positioned = e.as_db_error().is_some_and(|d| d.position().is_some());
        let mut err = placed(e, &p.create_sql, &p.loc, &p.exprs);
        if positioned || p.exprs.is_empty() {
            return Err(err);
        }
        self.tx
            .batch_execute("ROLLBACK TO SAVEPOINT doska_policy")
            .await?;
        let table = qualified(&p.schema, &p.table);
        for (range, loc) in &p.exprs {
            let head = format!("SELECT FROM {table} WHERE (");
            let probe = format!("{head}{}\n)", &p.create_sql[range.clone()]);
            self.tx.batch_execute("SAVEPOINT doska_probe").await?;
            let result = self.tx.execute(&probe, &[]).await;
            self.tx
                .batch_execute("ROLLBACK TO SAVEPOINT doska_probe")
                .await?;
            if let Err(pe) = result {
                let at = match placed(
                    pe,
                    &probe,
                    loc,
                    &[(head.len()..probe.len() - 2, loc.clone())],
                ) {
                    ApplyError::Invalid(d) => d[0].loc.clone(),
                    _ => loc.clone(),
                };
                if let ApplyError::Invalid(d) = &mut err {
                    d[0].loc = at;
                }
                return Err(err);
            }
        }
        // Each expression alone is fine (a type error: not boolean): the last one written.
        if let (ApplyError::Invalid(d), Some((_, loc))) = (&mut err, p.exprs.last())
            && p.exprs.len() == 1
        {
            d[0].loc = loc.clone();
        }
        Err(err)
    }

    /// Undoing what the files no longer declare: no file line to point at.
    async fn exec_undeclared(&mut self, sql: &str) -> Result<(), ApplyError> {
        match self.tx.execute(sql, &[]).await {
            Ok(_) => {
                self.statements.push(sql.to_string());
                Ok(())
            }
            Err(e) if e.as_db_error().is_some() => Err(ApplyError::Undo {
                statement: sql.to_string(),
                message: describe(&e),
            }),
            Err(e) => Err(ApplyError::Db(e)),
        }
    }

    /// For role statements: another database's doska may create the same (cluster-wide) role at the
    /// same moment; its twin's success is as good as ours.
    async fn exec_shared(&mut self, sql: &str, loc: &Loc) -> Result<bool, ApplyError> {
        self.tx.batch_execute("SAVEPOINT doska_role").await?;
        match self.tx.execute(sql, &[]).await {
            Ok(_) => {
                self.tx
                    .batch_execute("RELEASE SAVEPOINT doska_role")
                    .await?;
                self.statements.push(sql.to_string());
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.code(),
                    Some(&SqlState::DUPLICATE_OBJECT)
                        | Some(&SqlState::UNIQUE_VIOLATION)
                        | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                ) || e.code().is_some_and(|c| c.code() == "XX000") =>
            {
                self.tx
                    .batch_execute("ROLLBACK TO SAVEPOINT doska_role")
                    .await?;
                Ok(false)
            }
            Err(e) => Err(placed(e, sql, loc, &[])),
        }
    }
}

/// A PostgreSQL error as a diagnostic at the line of the expression it points into, else at `loc`.
fn placed(
    e: tokio_postgres::Error,
    sql: &str,
    loc: &Loc,
    exprs: &[(Range<usize>, Loc)],
) -> ApplyError {
    let Some(db) = e.as_db_error() else {
        return ApplyError::Db(e);
    };
    let mut at = loc.clone();
    if let Some(tokio_postgres::error::ErrorPosition::Original(p)) = db.position() {
        // PostgreSQL counts characters from 1; the ranges are bytes.
        let byte = sql
            .char_indices()
            .nth((*p as usize).saturating_sub(1))
            .map(|(i, _)| i)
            .unwrap_or(sql.len());
        if let Some((range, l)) = exprs.iter().find(|(r, _)| r.start <= byte && byte <= r.end) {
            let line_in_expr = sql[range.start..byte].matches('\n').count();
            at = Loc {
                file: l.file.clone(),
                line: l.line + line_in_expr,
            };
        }
    } else if let Some((_, l)) = exprs.first() {
        // No position (a type error of the whole expression, say): the first expression's line.
        at = l.clone();
    }
    ApplyError::Invalid(vec![Diagnostic {
        loc: at,
        message: describe(&e),
    }])
}

/// Reads, checks and applies `sources`; see the module doc. `schemas` are the exposed schemas, for the
/// warning about tables without row-level security.
pub async fn apply(
    client: &mut Client,
    sources: &Sources,
    mode: Mode,
    schemas: &[String],
) -> Result<Outcome, ApplyError> {
    let tx = client.transaction().await?;
    let (outcome, _) = apply_in(&tx, sources, schemas).await?;
    match mode {
        Mode::Apply => tx.commit().await?,
        Mode::Check | Mode::Diff => tx.rollback().await?,
    }
    Ok(outcome)
}

/// The work of [`apply`] inside a transaction the caller commits or rolls back (`policies test`
/// applies the files and runs its cases in one rolled-back transaction). Returns the plan applied.
pub async fn apply_in(
    tx: &Transaction<'_>,
    sources: &Sources,
    schemas: &[String],
) -> Result<(Outcome, Plan), ApplyError> {
    let decls = parse(sources).map_err(ApplyError::Parse)?;
    let plan = compile(&decls);
    let prepared: bool = tx
        .query_one(
            "select to_regclass('doska.policy_objects') is not null",
            &[],
        )
        .await?
        .get(0);
    if !prepared {
        return Err(ApplyError::NotPrepared);
    }
    tx.execute("select pg_advisory_xact_lock($1)", &[&POLICY_LOCK])
        .await?;
    let owned = read_ledger(tx).await?;
    let roles = read_roles(tx).await?;
    let mut tables = Vec::new();
    for t in &plan.tables {
        tables.push(read_table(tx, &t.schema, &t.name).await?);
    }
    let mut diags = check(&plan, &tables, &roles, &owned);
    diags.extend(check_publish(tx, &plan).await?);
    if !diags.is_empty() {
        return Err(ApplyError::Invalid(diags));
    }
    let mut run = Run {
        tx,
        statements: Vec::new(),
    };
    let mut warnings = Vec::new();

    // 1. Roles: create, make them API roles (members of authenticated, reachable by authenticator).
    let members = read_memberships(tx).await?;
    for r in &plan.roles {
        let q = quote_ident(&r.name);
        if !roles.iter().any(|x| x.name == r.name) {
            let created = run
                .exec_shared(&format!("CREATE ROLE {q} NOLOGIN INHERIT"), &r.loc)
                .await?;
            if created {
                own(tx, "role", "", "", &r.name, "", "", "", &r.loc).await?;
            }
        }
    }
    // Memberships once every role exists (a role may be a member of one declared after it).
    for r in &plan.roles {
        let q = quote_ident(&r.name);
        let mut parents: Vec<&str> = vec!["authenticated"];
        parents.extend(r.member_of.iter().map(|m| m.name.as_str()));
        for parent in parents {
            if !members.contains(&(parent.to_string(), r.name.clone())) {
                run.exec_shared(&format!("GRANT {} TO {q}", quote_ident(parent)), &r.loc)
                    .await?;
            }
        }
        if !members.contains(&(r.name.clone(), "authenticator".to_string())) {
            run.exec_shared(&format!("GRANT {q} TO \"authenticator\""), &r.loc)
                .await?;
        }
        if let Some(c) = &r.comment {
            let current: Option<String> = tx
                .query_opt(
                    "select shobj_description(oid, 'pg_authid') from pg_roles where rolname = $1",
                    &[&r.name],
                )
                .await?
                .and_then(|row| row.get(0));
            if current.as_deref() != Some(c.as_str()) {
                run.exec_shared(
                    &format!("COMMENT ON ROLE {q} IS {}", quote_literal(c)),
                    &r.loc,
                )
                .await?;
            }
        }
    }

    // 2. Row-level security on every named table.
    for (t, info) in plan.tables.iter().zip(&tables) {
        let info = info.as_ref().expect("checked: the table exists");
        if !info.rls {
            run.exec(
                &format!("ALTER TABLE {} ENABLE ROW LEVEL SECURITY", t.qualified()),
                &t.loc,
                &[],
            )
            .await?;
        }
        if t.force_rls && !info.force {
            run.exec(
                &format!("ALTER TABLE {} FORCE ROW LEVEL SECURITY", t.qualified()),
                &t.loc,
                &[],
            )
            .await?;
        }
    }

    // 3. Policies the files made and no longer declare as they are: drop.
    let mut kept: HashSet<(String, String, String)> = HashSet::new();
    for o in owned.iter().filter(|o| o.kind == "policy") {
        let same = plan.policies.iter().any(|p| {
            p.schema == o.schema
                && p.table == o.table
                && p.name == o.name
                && p.fingerprint == o.fingerprint
        });
        let exists = policy_exists(tx, &o.schema, &o.table, &o.name).await?;
        if same && exists {
            kept.insert((o.schema.clone(), o.table.clone(), o.name.clone()));
            continue;
        }
        if exists {
            run.exec_undeclared(&PolicyPlan::drop_sql(&o.schema, &o.table, &o.name))
                .await?;
        }
        disown(tx, o).await?;
    }

    // 4. Grants the files made and no longer declare: revoke.
    let declared: HashSet<&GrantKey> = plan.grants.iter().map(|g| &g.key).collect();
    for o in owned.iter().filter(|o| o.kind == "grant") {
        let Some(privilege) = Privilege::from_sql(&o.privilege) else {
            disown(tx, o).await?;
            continue;
        };
        let key = GrantKey {
            schema: o.schema.clone(),
            table: o.table.clone(),
            role: o.name.clone(),
            privilege,
            column: o.column.clone(),
        };
        if declared.contains(&key) {
            continue;
        }
        let table_there = read_table(tx, &o.schema, &o.table).await?.is_some();
        if table_there && roles.iter().any(|r| r.name == o.name) {
            run.exec_undeclared(&key.revoke_sql()).await?;
        }
        disown(tx, o).await?;
    }

    // 5. `revoke_unlisted`: what API roles hold directly on the table beyond the grants listed.
    for (t, info) in plan.tables.iter().zip(&tables) {
        if !t.revoke_unlisted {
            continue;
        }
        let info = info.as_ref().expect("checked: the table exists");
        let mut api: HashSet<&str> = ["anon", "authenticated"].into_iter().collect();
        api.extend(plan.roles.iter().map(|r| r.name.as_str()));
        api.extend(
            plan.grants
                .iter()
                .filter(|g| g.key.schema == t.schema && g.key.table == t.name)
                .map(|g| g.key.role.as_str()),
        );
        api.remove("service_role");
        let mut held: Vec<&(String, Privilege, String)> = info.held.iter().collect();
        held.sort();
        for (role, privilege, column) in held {
            if !api.contains(role.as_str()) {
                continue;
            }
            let key = GrantKey {
                schema: t.schema.clone(),
                table: t.name.clone(),
                role: role.clone(),
                privilege: *privilege,
                column: column.clone(),
            };
            let whole_table = GrantKey {
                column: String::new(),
                ..key.clone()
            };
            if declared.contains(&key) || (!column.is_empty() && declared.contains(&whole_table)) {
                continue;
            }
            run.exec(&key.revoke_sql(), &t.loc, &[]).await?;
        }
    }

    // 6. Grants: give what is not held; remember only what doska gave. Read again: revoking a table
    // privilege above also took the same privilege off every column.
    let mut tables = Vec::new();
    for t in &plan.tables {
        tables.push(read_table(tx, &t.schema, &t.name).await?);
    }
    for g in &plan.grants {
        let idx = plan
            .tables
            .iter()
            .position(|t| t.schema == g.key.schema && t.name == g.key.table)
            .expect("grants belong to a planned table");
        let info = tables[idx].as_ref().expect("checked: the table exists");
        let ours = owned.iter().any(|o| {
            o.kind == "grant"
                && o.schema == g.key.schema
                && o.table == g.key.table
                && o.name == g.key.role
                && o.privilege == g.key.privilege.sql()
                && o.column == g.key.column
        });
        let held = info
            .held
            .contains(&(g.key.role.clone(), g.key.privilege, g.key.column.clone()));
        if held {
            continue;
        }
        run.exec(&g.key.grant_sql(), &g.loc, &[]).await?;
        if !ours {
            own(
                tx,
                "grant",
                &g.key.schema,
                &g.key.table,
                &g.key.role,
                g.key.privilege.sql(),
                &g.key.column,
                "",
                &g.loc,
            )
            .await?;
        }
    }

    // 7. Policies: create what is new or changed.
    for p in &plan.policies {
        if kept.contains(&(p.schema.clone(), p.table.clone(), p.name.clone())) {
            continue;
        }
        run.exec_policy(p).await?;
        run.exec(&p.comment_sql(), &p.loc, &[]).await?;
        own(
            tx,
            "policy",
            &p.schema,
            &p.table,
            &p.name,
            "",
            "",
            &p.fingerprint,
            &p.loc,
        )
        .await?;
    }

    // 8. Buckets: create or update what the files declare; remove those doska created and the files
    // no longer declare, while they are empty (a bucket with objects is kept, with a warning).
    buckets(tx, &mut run, &plan, &owned, &mut warnings).await?;

    // 9. The publication: add declared tables; drop those doska added and the files no longer name.
    publication(tx, &mut run, &plan, &owned).await?;

    // 10. Roles the files made and no longer declare: drop, unless something still depends on them.
    for o in owned.iter().filter(|o| o.kind == "role") {
        if plan.roles.iter().any(|r| r.name == o.name) {
            continue;
        }
        if !roles.iter().any(|r| r.name == o.name) {
            disown(tx, o).await?;
            continue;
        }
        let sql = format!("DROP ROLE {}", quote_ident(&o.name));
        tx.batch_execute("SAVEPOINT doska_drop_role").await?;
        match tx.execute(&sql, &[]).await {
            Ok(_) => {
                tx.batch_execute("RELEASE SAVEPOINT doska_drop_role")
                    .await?;
                run.statements.push(sql);
                disown(tx, o).await?;
            }
            Err(e) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT doska_drop_role")
                    .await?;
                warnings.push(format!(
                    "role {} is no longer declared but was kept: {}",
                    o.name,
                    describe(&e)
                ));
            }
        }
    }

    // 11. Reload the REST schema cache, record the set.
    if !run.statements.is_empty() {
        tx.batch_execute("NOTIFY pgrst, 'reload schema'").await?;
    }
    let statements = run.statements;
    let last: Option<String> = tx
        .query_opt(
            "select hash from doska.policy_sets order by id desc limit 1",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    if !statements.is_empty() || last.as_deref() != Some(sources.hash.as_str()) {
        let files: Vec<serde_json::Value> = sources
            .files
            .iter()
            .map(|(name, content)| {
                serde_json::json!({
                    "file": name,
                    "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(content.as_bytes())),
                })
            })
            .collect();
        tx.execute(
            "insert into doska.policy_sets (hash, files, statements) values ($1, $2, $3)",
            &[
                &sources.hash,
                &serde_json::Value::Array(files),
                &(statements.len() as i32),
            ],
        )
        .await?;
    }
    let exposed = crate::db::grants::tables_without_rls(tx, schemas).await?;
    for t in exposed {
        warnings.push(format!(
            "table {t} is exposed to API roles without row-level security (name it in a policy file, or revoke the grants)"
        ));
    }
    let outcome = Outcome {
        hash: sources.hash.clone(),
        statements,
        warnings,
        roles: plan.roles.len(),
        tables: plan.tables.len(),
        policies: plan.policies.len(),
        buckets: plan.buckets.len(),
        published: plan.publish.len(),
    };
    Ok((outcome, plan))
}

/// Checks every name against the catalog; collects every problem.
fn check(
    plan: &Plan,
    tables: &[Option<TableInfo>],
    roles: &[RoleInfo],
    owned: &[Owned],
) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut bad = |loc: &Loc, message: String| {
        diags.push(Diagnostic {
            loc: loc.clone(),
            message,
        })
    };
    let declared: HashSet<&str> = plan.roles.iter().map(|r| r.name.as_str()).collect();
    let known = |name: &str| declared.contains(name) || roles.iter().any(|r| r.name == name);
    for r in &plan.roles {
        if let Some(info) = roles.iter().find(|x| x.name == r.name)
            && info.powerful
        {
            bad(
                &r.loc,
                format!(
                    "role {:?} already exists and can log in or holds superuser-like powers; policy files declare only API roles (NOLOGIN), pick another name",
                    r.name
                ),
            );
        }
        for m in &r.member_of {
            if !known(&m.name) {
                bad(&m.loc, format!("unknown role {:?} in member_of", m.name));
            } else if m.name.starts_with("pg_")
                || roles.iter().any(|x| x.name == m.name && x.powerful)
                || m.name == "service_role"
                || m.name == "authenticator"
            {
                bad(
                    &m.loc,
                    format!(
                        "an API role cannot be a member of {:?}: it would give every request of that role its powers",
                        m.name
                    ),
                );
            }
        }
    }
    for (t, info) in plan.tables.iter().zip(tables) {
        let Some(info) = info else {
            bad(
                &t.loc,
                format!(
                    "unknown table {}.{} (policy files name tables that migrations create)",
                    t.schema, t.name
                ),
            );
            continue;
        };
        for c in &t.columns {
            if !info.columns.contains(&c.name) {
                bad(
                    &c.loc,
                    format!("table {}.{} has no column {:?}", t.schema, t.name, c.name),
                );
            }
        }
    }
    for g in &plan.grants {
        if g.key.role != "public" && !known(&g.key.role) {
            bad(&g.loc, format!("unknown role {:?}", g.key.role));
        }
    }
    for p in &plan.policies {
        for r in &p.roles {
            if r.name != "public" && !known(&r.name) {
                bad(&r.loc, format!("unknown role {:?}", r.name));
            }
        }
        let idx = plan
            .tables
            .iter()
            .position(|t| t.schema == p.schema && t.name == p.table)
            .expect("policies belong to a planned table");
        if let Some(info) = &tables[idx] {
            let ours = owned.iter().any(|o| {
                o.kind == "policy" && o.schema == p.schema && o.table == p.table && o.name == p.name
            });
            if info.policies.contains(&p.name) && !ours {
                bad(
                    &p.loc,
                    format!(
                        "table {}.{} already has a policy {:?} that policy files did not create (a migration's?); give this one another name",
                        p.schema, p.table, p.name
                    ),
                );
            }
        }
    }
    diags
}

#[cfg(test)]
mod lock_tests {
    /// Copying storage.objects' policies to object versions (internal migration 0017) takes this
    /// module's lock by its number: the two must stay equal.
    #[test]
    fn object_version_policy_copies_take_the_policy_lock() {
        let sql = crate::db::internal::MIGRATIONS
            .iter()
            .find(|(name, _)| *name == "0017_object_versions")
            .expect("migration 0017")
            .1;
        assert!(sql.contains(&format!("pg_advisory_xact_lock({})", super::POLICY_LOCK)));
    }
}
