//! Turns declarations into the objects they stand for — roles, one grant per (role, privilege,
//! column), policies with their `CREATE POLICY` text — with short forms expanded. Pure: no database.
//! Names are quoted here and only here; `using`/`with_check` expressions go in as the admin wrote
//! them, each inside its own parentheses (that is what they are for). Rejects nothing on its own:
//! whether names exist is checked against the catalog by `apply`.

use std::ops::Range;

use sha2::{Digest, Sha256};

use super::parse::{Command, Declarations, Expr, Loc, Named, Privilege};
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

/// What the files stand for, in the order they are written.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub roles: Vec<RolePlan>,
    pub tables: Vec<TablePlan>,
    pub grants: Vec<GrantPlan>,
    pub policies: Vec<PolicyPlan>,
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
            let mut sql = format!(
                "CREATE POLICY {} ON {} AS {} FOR {} TO {}",
                quote_ident(&p.name),
                qualified(&t.schema, &t.name),
                if p.permissive {
                    "PERMISSIVE"
                } else {
                    "RESTRICTIVE"
                },
                p.command.sql(),
                p.roles
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
                    exprs.push((start..sql.len(), e.loc.clone()));
                    // A newline first, so a trailing `--` comment in the expression cannot eat the `)`.
                    sql.push_str("\n)");
                }
            }
            plan.policies.push(PolicyPlan {
                schema: t.schema.clone(),
                table: t.name.clone(),
                name: p.name.clone(),
                loc: p.loc.clone(),
                roles: p.roles.clone(),
                fingerprint: hex::encode(Sha256::digest(sql.as_bytes())),
                create_sql: sql,
                exprs,
                command: p.command,
                permissive: p.permissive,
                using: using.map(|e| e.sql),
                with_check: with_check.map(|e| e.sql),
            });
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
