//! Turns declarations into the objects they stand for — roles, one grant per (role, privilege,
//! column), policies with their `CREATE POLICY` text (a storage or channel rule gives one policy per
//! action on `storage.objects` / `realtime.messages`), buckets as `storage.buckets` should hold
//! them, tables to publish — with short forms expanded. Pure: no database.
//! Names are quoted here and only here; `using`/`with_check` expressions go in as the admin wrote
//! them, each inside its own parentheses (that is what they are for). Rejects nothing on its own:
//! whether names exist is checked against the catalog by `apply`.

use std::ops::Range;

use sha2::{Digest, Sha256};

use super::parse::{AccessRule, Command, Declarations, Expr, Loc, Named, Privilege, PublishDecl};
use crate::db::{quote_ident, quote_literal};

#[derive(Debug, Clone)]
pub struct RolePlan {
    pub name: String,
    pub loc: Loc,
    pub comment: Option<String>,
    pub member_of: Vec<Named>,
}

#[derive(Debug, Clone)]
pub struct TablePlan {
    pub schema: String,
    pub name: String,
    pub loc: Loc,
    pub force_rls: bool,
    pub revoke_unlisted: bool,
    /// Columns the declarations name (grants, `owner`), each with where, to check they exist.
    pub columns: Vec<Named>,
}

impl TablePlan {
    pub fn qualified(&self) -> String {
        qualified(&self.schema, &self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantKey {
    pub schema: String,
    pub table: String,
    pub role: String,
    pub privilege: Privilege,
    /// Empty: the whole table.
    pub column: String,
}

impl GrantKey {
    fn target(&self) -> String {
        if self.column.is_empty() {
            format!(
                "{} ON TABLE {}",
                self.privilege.sql(),
                qualified(&self.schema, &self.table)
            )
        } else {
            format!(
                "{} ({}) ON TABLE {}",
                self.privilege.sql(),
                quote_ident(&self.column),
                qualified(&self.schema, &self.table)
            )
        }
    }
    pub fn grant_sql(&self) -> String {
        format!("GRANT {} TO {}", self.target(), role_sql(&self.role))
    }
    pub fn revoke_sql(&self) -> String {
        format!("REVOKE {} FROM {}", self.target(), role_sql(&self.role))
    }
}

#[derive(Debug, Clone)]
pub struct GrantPlan {
    pub key: GrantKey,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub struct PolicyPlan {
    pub schema: String,
    pub table: String,
    pub name: String,
    pub loc: Loc,
    pub roles: Vec<Named>,
    /// The whole `CREATE POLICY` statement.
    pub create_sql: String,
    /// Byte ranges of the admin's expressions inside `create_sql`, with where each was written, so an
    /// error PostgreSQL places inside one points at its line.
    pub exprs: Vec<(Range<usize>, Loc)>,
    /// Identifies the definition: the same fingerprint means nothing to redo.
    pub fingerprint: String,
    pub command: Command,
    pub permissive: bool,
    /// The expressions as they go into the statement (short forms expanded).
    pub using: Option<String>,
    pub with_check: Option<String>,
}

impl PolicyPlan {
    pub fn drop_sql(schema: &str, table: &str, name: &str) -> String {
        format!(
            "DROP POLICY {} ON {}",
            quote_ident(name),
            qualified(schema, table)
        )
    }
    pub fn comment_sql(&self) -> String {
        format!(
            "COMMENT ON POLICY {} ON {} IS {}",
            quote_ident(&self.name),
            qualified(&self.schema, &self.table),
            quote_literal(&format!("doska policy file {}", self.loc))
        )
    }
}

/// A bucket as `storage.buckets` should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketPlan {
    pub id: String,
    pub loc: Loc,
    pub name: String,
    pub public: bool,
    pub file_size_limit: Option<i64>,
    pub allowed_mime_types: Option<Vec<String>>,
}

impl BucketPlan {
    fn values(&self) -> String {
        let mimes = match &self.allowed_mime_types {
            Some(m) => format!(
                "ARRAY[{}]::text[]",
                m.iter()
                    .map(|x| quote_literal(x))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "NULL".into(),
        };
        let limit = self
            .file_size_limit
            .map(|n| n.to_string())
            .unwrap_or_else(|| "NULL".into());
        format!(
            "{}, {}, {}, {limit}, {mimes}",
            quote_literal(&self.id),
            quote_literal(&self.name),
            self.public
        )
    }
    pub fn insert_sql(&self) -> String {
        format!(
            "INSERT INTO storage.buckets (id, name, public, file_size_limit, allowed_mime_types) VALUES ({})",
            self.values()
        )
    }
    pub fn update_sql(&self) -> String {
        format!(
            "UPDATE storage.buckets SET (id, name, public, file_size_limit, allowed_mime_types) = ({}), updated_at = now() WHERE id = {}",
            self.values(),
            quote_literal(&self.id)
        )
    }
    pub fn delete_sql(id: &str) -> String {
        format!(
            "DELETE FROM storage.buckets WHERE id = {}",
            quote_literal(id)
        )
    }
}

/// The publication realtime reads; policy files add tables to it.
pub const PUBLICATION: &str = "supabase_realtime";

pub fn publish_sql(schema: &str, table: &str) -> String {
    format!(
        "ALTER PUBLICATION {} ADD TABLE {}",
        quote_ident(PUBLICATION),
        qualified(schema, table)
    )
}

pub fn unpublish_sql(schema: &str, table: &str) -> String {
    format!(
        "ALTER PUBLICATION {} DROP TABLE {}",
        quote_ident(PUBLICATION),
        qualified(schema, table)
    )
}

/// What the files stand for, in the order they are written.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub roles: Vec<RolePlan>,
    pub tables: Vec<TablePlan>,
    pub grants: Vec<GrantPlan>,
    pub policies: Vec<PolicyPlan>,
    pub buckets: Vec<BucketPlan>,
    pub publish: Vec<PublishDecl>,
}

/// A policy expression and where the admin's parts of it were written (byte ranges within it).
struct Cond {
    sql: String,
    spans: Vec<(Range<usize>, Loc)>,
}

impl Cond {
    fn admin(e: &Expr) -> Cond {
        Cond {
            sql: e.sql.clone(),
            spans: vec![(0..e.sql.len(), e.loc.clone())],
        }
    }
    /// A rule's generated conditions, then its `when` in parentheses.
    fn rule(r: &AccessRule) -> Cond {
        let mut sql = r.matches.clone();
        let mut spans = Vec::new();
        if let Some(w) = &r.when {
            sql.push_str(" and (");
            let start = sql.len();
            sql.push_str(&w.sql);
            spans.push((start..sql.len(), w.loc.clone()));
            sql.push_str("\n)");
        }
        Cond { sql, spans }
    }
}

#[allow(clippy::too_many_arguments)]
fn policy_plan(
    schema: &str,
    table: &str,
    name: &str,
    loc: &Loc,
    roles: &[Named],
    command: Command,
    permissive: bool,
    using: Option<Cond>,
    with_check: Option<Cond>,
) -> PolicyPlan {
    let mut sql = format!(
        "CREATE POLICY {} ON {} AS {} FOR {} TO {}",
        quote_ident(name),
        qualified(schema, table),
        if permissive {
            "PERMISSIVE"
        } else {
            "RESTRICTIVE"
        },
        command.sql(),
        roles
            .iter()
            .map(|r| role_sql(&r.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut exprs = Vec::new();
    for (word, e) in [("USING", &using), ("WITH CHECK", &with_check)] {
        if let Some(e) = e {
            sql.push_str(&format!(" {word} ("));
            let start = sql.len();
            sql.push_str(&e.sql);
            for (r, l) in &e.spans {
                exprs.push((start + r.start..start + r.end, l.clone()));
            }
            // A newline first, so a trailing `--` comment in the expression cannot eat the `)`.
            sql.push_str("\n)");
        }
    }
    PolicyPlan {
        schema: schema.to_string(),
        table: table.to_string(),
        name: name.to_string(),
        loc: loc.clone(),
        roles: roles.to_vec(),
        fingerprint: hex::encode(Sha256::digest(sql.as_bytes())),
        create_sql: sql,
        exprs,
        command,
        permissive,
        using: using.map(|e| e.sql),
        with_check: with_check.map(|e| e.sql),
    }
}

/// One policy per action of a rule, on `schema.table`.
fn rule_policies(plan: &mut Plan, schema: &str, table: &str, scope: &str, r: &AccessRule) {
    for a in &r.actions {
        let command = a.command();
        plan.policies.push(policy_plan(
            schema,
            table,
            &AccessRule::policy_name(scope, &r.name, *a),
            &r.loc,
            &r.roles,
            command,
            true,
            command.has_using().then(|| Cond::rule(r)),
            command.has_check().then(|| Cond::rule(r)),
        ));
    }
}

/// The table rules' policies live on: named in the files' plan (RLS on, policies checked against it).
fn ensure_table(plan: &mut Plan, schema: &str, table: &str, loc: &Loc) {
    if !plan
        .tables
        .iter()
        .any(|t| t.schema == schema && t.name == table)
    {
        plan.tables.push(TablePlan {
            schema: schema.to_string(),
            name: table.to_string(),
            loc: loc.clone(),
            force_rls: false,
            revoke_unlisted: false,
            columns: Vec::new(),
        });
    }
}

pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// A role in `TO`: `public` is PostgreSQL's keyword for every role, the rest are quoted names.
fn role_sql(name: &str) -> String {
    if name == "public" {
        "public".into()
    } else {
        quote_ident(name)
    }
}

pub fn compile(decls: &Declarations) -> Plan {
    let mut plan = Plan {
        roles: decls
            .roles
            .iter()
            .map(|r| RolePlan {
                name: r.name.clone(),
                loc: r.loc.clone(),
                comment: r.comment.clone(),
                member_of: r.member_of.clone(),
            })
            .collect(),
        ..Plan::default()
    };
    for t in &decls.tables {
        let mut columns = Vec::new();
        for g in &t.grants {
            let cols: Vec<&str> = if g.columns.is_empty() {
                vec![""]
            } else {
                g.columns.iter().map(String::as_str).collect()
            };
            for c in cols {
                if !c.is_empty() {
                    columns.push(Named {
                        name: c.to_string(),
                        loc: g.loc.clone(),
                    });
                }
                let key = GrantKey {
                    schema: t.schema.clone(),
                    table: t.name.clone(),
                    role: g.role.clone(),
                    privilege: g.privilege,
                    column: c.to_string(),
                };
                // The same grant written twice (say `all` and `select`) is one grant.
                if !plan.grants.iter().any(|p| p.key == key) {
                    plan.grants.push(GrantPlan {
                        key,
                        loc: g.loc.clone(),
                    });
                }
            }
        }
        for p in &t.policies {
            let (using, with_check) = match &p.owner {
                Some(col) => {
                    columns.push(col.clone());
                    let e = Expr {
                        sql: format!("{} = auth.uid()", quote_ident(&col.name)),
                        loc: col.loc.clone(),
                    };
                    (
                        p.command.has_using().then(|| e.clone()),
                        p.command.has_check().then_some(e),
                    )
                }
                None => (p.using.clone(), p.with_check.clone()),
            };
            plan.policies.push(policy_plan(
                &t.schema,
                &t.name,
                &p.name,
                &p.loc,
                &p.roles,
                p.command,
                p.permissive,
                using.as_ref().map(Cond::admin),
                with_check.as_ref().map(Cond::admin),
            ));
        }
        plan.tables.push(TablePlan {
            schema: t.schema.clone(),
            name: t.name.clone(),
            loc: t.loc.clone(),
            force_rls: t.force_rls,
            revoke_unlisted: t.revoke_unlisted,
            columns,
        });
    }
    for b in &decls.buckets {
        plan.buckets.push(BucketPlan {
            id: b.id.clone(),
            loc: b.loc.clone(),
            name: b.name.clone(),
            public: b.public,
            file_size_limit: b.file_size_limit,
            allowed_mime_types: b.allowed_mime_types.clone(),
        });
        for r in &b.rules {
            ensure_table(&mut plan, "storage", "objects", &r.loc);
            rule_policies(&mut plan, "storage", "objects", &b.id, r);
        }
    }
    for c in &decls.channels {
        ensure_table(&mut plan, "realtime", "messages", &c.rule.loc);
        rule_policies(&mut plan, "realtime", "messages", "realtime", &c.rule);
    }
    plan.publish = decls.publish.clone();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::parse::{Sources, parse};

    fn plan(text: &str) -> Plan {
        compile(&parse(&Sources::from_files(vec![("a.toml".into(), text.into())])).unwrap())
    }

    #[test]
    fn policy_sql_quotes_names_and_keeps_expressions() {
        let p = plan(
            r#"[tables."s.t"]
[[tables."s.t".policies]]
name = "it's \"mine\""
for = "update"
to = ["teacher", "public"]
using = "a = 1"
with_check = "b = 2 -- trailing comment"
"#,
        );
        let pol = &p.policies[0];
        assert_eq!(
            pol.create_sql,
            "CREATE POLICY \"it's \"\"mine\"\"\" ON \"s\".\"t\" AS PERMISSIVE FOR UPDATE TO \"teacher\", public \
             USING (a = 1\n) WITH CHECK (b = 2 -- trailing comment\n)"
        );
        assert_eq!(&pol.create_sql[pol.exprs[0].0.clone()], "a = 1");
        assert_eq!(pol.exprs[1].1.line, 7);
        assert_eq!(
            pol.comment_sql(),
            "COMMENT ON POLICY \"it's \"\"mine\"\"\" ON \"s\".\"t\" IS 'doska policy file a.toml:2'"
        );
    }

    #[test]
    fn owner_short_form_per_command() {
        let p = plan(
            r#"[tables.t]
[[tables.t.policies]]
name = "read own"
for = "select"
owner = "user_id"
[[tables.t.policies]]
name = "add own"
for = "insert"
owner = "user_id"
"#,
        );
        assert!(
            p.policies[0]
                .create_sql
                .ends_with("FOR SELECT TO public USING (\"user_id\" = auth.uid()\n)")
        );
        assert!(
            p.policies[1]
                .create_sql
                .ends_with("FOR INSERT TO public WITH CHECK (\"user_id\" = auth.uid()\n)")
        );
        assert_eq!(p.tables[0].columns.len(), 2);
    }

    #[test]
    fn grants_expand_per_column_and_dedupe() {
        let p = plan("[tables.t]\ngrants.r = [\"all\", \"select\", \"update(a, b)\"]\n");
        let sql: Vec<String> = p.grants.iter().map(|g| g.key.grant_sql()).collect();
        assert_eq!(sql.len(), 9);
        assert!(
            sql.contains(&"GRANT UPDATE (\"a\") ON TABLE \"public\".\"t\" TO \"r\"".to_string())
        );
        assert_eq!(
            p.grants[0].key.revoke_sql(),
            "REVOKE SELECT ON TABLE \"public\".\"t\" FROM \"r\""
        );
    }
}
