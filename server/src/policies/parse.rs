//! Reads the policy files (`*.toml` directly in the policies folder, in name order) into declarations
//! that remember the file and line of everything they hold. Rejects TOML syntax errors, unknown keys,
//! malformed names, unknown privileges or commands, a role or table declared twice, and short forms
//! combined with what they replace — every rejection as `file:line: message`, all of them at once.
//! The `storage` and `realtime` sections are read by `sections`, into the same declarations.
//! Nothing here looks at the database: whether a table, column or role exists is `apply`'s question.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::sections::{self, RealtimeDoc, Sections, StorageDoc};
pub use super::sections::{AccessRule, Action, BucketDecl, ChannelDecl, PublishDecl};
pub use super::syntax::{Command, Diagnostic, Expr, Loc, Named};
use super::syntax::{Lines, split_table, valid_ident};

/// Diagnostics one per line, as the CLI and start-up print them.
pub(crate) fn lines(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(Diagnostic::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("cannot read policies folder {}: {reason}", .dir.display())]
    ReadDir { dir: PathBuf, reason: String },
    #[error("cannot read policy file {}: {reason}", .file.display())]
    ReadFile { file: PathBuf, reason: String },
    #[error("{}", lines(.0))]
    Invalid(Vec<Diagnostic>),
}

/// The policy files as read: (display name, content), in name order, and the hash of them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub files: Vec<(String, String)>,
    pub hash: String,
}

/// Lists and reads `*.toml` directly in `dir` (a missing folder has none; `tests/` is not read).
pub fn read_dir(dir: &Path) -> Result<Sources, ParseError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Sources::from_files(Vec::new()));
        }
        Err(e) => {
            return Err(ParseError::ReadDir {
                dir: dir.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let content = std::fs::read_to_string(&path).map_err(|e| ParseError::ReadFile {
            file: path.clone(),
            reason: e.to_string(),
        })?;
        files.push((path.display().to_string(), content));
    }
    Ok(Sources::from_files(files))
}

impl Sources {
    pub fn from_files(files: Vec<(String, String)>) -> Sources {
        let mut h = Sha256::new();
        for (name, content) in &files {
            // The base name only: the same files read through another path are the same set.
            let base = Path::new(name)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            h.update((base.len() as u64).to_le_bytes());
            h.update(base.as_bytes());
            h.update((content.len() as u64).to_le_bytes());
            h.update(content.as_bytes());
        }
        Sources {
            files,
            hash: hex::encode(h.finalize()),
        }
    }
}

/// Everything the files declare.
#[derive(Debug, Clone, Default)]
pub struct Declarations {
    pub roles: Vec<RoleDecl>,
    pub tables: Vec<TableDecl>,
    /// `[storage.buckets.ID]`, each with its rules.
    pub buckets: Vec<BucketDecl>,
    /// `[realtime] tables = [...]`: published to `supabase_realtime`.
    pub publish: Vec<PublishDecl>,
    /// `[[realtime.channels]]`: private-channel rules.
    pub channels: Vec<ChannelDecl>,
}

#[derive(Debug, Clone)]
pub struct RoleDecl {
    pub name: String,
    pub loc: Loc,
    pub comment: Option<String>,
    /// Roles it is a member of besides `authenticated`.
    pub member_of: Vec<Named>,
}

#[derive(Debug, Clone)]
pub struct TableDecl {
    pub schema: String,
    pub name: String,
    pub loc: Loc,
    pub force_rls: bool,
    /// Revoke every privilege the API roles hold on the table directly that no grant here lists.
    pub revoke_unlisted: bool,
    pub grants: Vec<GrantDecl>,
    pub policies: Vec<PolicyDecl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
    Truncate,
    References,
    Trigger,
}

impl Privilege {
    pub const TABLE: [Privilege; 7] = [
        Privilege::Select,
        Privilege::Insert,
        Privilege::Update,
        Privilege::Delete,
        Privilege::Truncate,
        Privilege::References,
        Privilege::Trigger,
    ];

    pub fn sql(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Truncate => "TRUNCATE",
            Privilege::References => "REFERENCES",
            Privilege::Trigger => "TRIGGER",
        }
    }

    pub fn from_sql(s: &str) -> Option<Privilege> {
        Privilege::TABLE
            .into_iter()
            .find(|p| p.sql().eq_ignore_ascii_case(s))
    }

    /// Whether PostgreSQL grants it per column.
    pub fn per_column(self) -> bool {
        matches!(
            self,
            Privilege::Select | Privilege::Insert | Privilege::Update | Privilege::References
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantDecl {
    pub role: String,
    pub privilege: Privilege,
    /// Empty: the whole table.
    pub columns: Vec<String>,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub struct PolicyDecl {
    pub name: String,
    pub loc: Loc,
    pub command: Command,
    pub roles: Vec<Named>,
    pub permissive: bool,
    pub using: Option<Expr>,
    pub with_check: Option<Expr>,
    /// The `owner` short form: this column must equal `auth.uid()`.
    pub owner: Option<Named>,
}

// ---- the files' shape, as serde sees it ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    roles: BTreeMap<Spanned<String>, Spanned<RoleDoc>>,
    #[serde(default)]
    tables: BTreeMap<Spanned<String>, Spanned<TableDoc>>,
    storage: Option<StorageDoc>,
    realtime: Option<RealtimeDoc>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RoleDoc {
    comment: Option<String>,
    #[serde(default)]
    member_of: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableDoc {
    #[serde(default)]
    force_rls: bool,
    #[serde(default)]
    revoke_unlisted: bool,
    #[serde(default)]
    grants: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
    owner: Option<Spanned<String>>,
    owner_roles: Option<Vec<Spanned<String>>>,
    readable_by: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    policies: Vec<Spanned<PolicyDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    name: Spanned<String>,
    #[serde(rename = "for")]
    command: Option<Spanned<String>>,
    to: Option<Vec<Spanned<String>>>,
    using: Option<Spanned<String>>,
    with_check: Option<Spanned<String>>,
    owner: Option<Spanned<String>>,
    #[serde(default)]
    restrictive: bool,
}

/// Names a role may carry when a file declares it (the built-in API roles are PostgreSQL's or doska's).
pub const RESERVED_ROLES: &[&str] = &[
    "anon",
    "authenticated",
    "service_role",
    "authenticator",
    "public",
    "postgres",
];

/// A role name doska will create: lower-case letters, digits and `_`, at most 63 bytes, not `pg_…`.
pub fn valid_role_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !ok_chars || !first_ok || name.len() > 63 {
        return Err(format!(
            "role name {name:?} must be lower-case letters, digits and _ (starting with a letter), at most 63 characters"
        ));
    }
    if name.starts_with("pg_") {
        return Err(format!(
            "role name {name:?}: names starting with pg_ belong to PostgreSQL"
        ));
    }
    if RESERVED_ROLES.contains(&name) {
        return Err(format!(
            "role {name:?} is built in; declare only your app's roles (it can be used in grants and `to` as it is)"
        ));
    }
    Ok(())
}

/// `select`, `all`, `update(title, status)`: one or more grants of `role`.
fn parse_privilege(s: &str) -> Result<(Vec<Privilege>, Vec<String>), String> {
    let s = s.trim();
    let (word, columns) = match s.split_once('(') {
        Some((w, rest)) => {
            let inner = rest.strip_suffix(')').ok_or_else(|| {
                format!("privilege {s:?}: a column list is written `update(col_a, col_b)`")
            })?;
            let cols: Vec<String> = inner.split(',').map(|c| c.trim().to_string()).collect();
            for c in &cols {
                valid_ident("column", c)?;
            }
            (w.trim(), cols)
        }
        None => (s, Vec::new()),
    };
    if word.eq_ignore_ascii_case("all") {
        if !columns.is_empty() {
            return Err(format!(
                "privilege {s:?}: `all` takes no column list; name the privileges"
            ));
        }
        return Ok((Privilege::TABLE.to_vec(), columns));
    }
    let p = Privilege::from_sql(word).ok_or_else(|| {
        format!(
            "unknown privilege {word:?}; use select, insert, update, delete, truncate, references, trigger or all"
        )
    })?;
    if !columns.is_empty() && !p.per_column() {
        return Err(format!(
            "privilege {s:?}: PostgreSQL grants only select, insert, update and references per column"
        ));
    }
    Ok((vec![p], columns))
}

fn parse_command(s: &str) -> Result<Command, String> {
    match s.to_ascii_lowercase().as_str() {
        "all" => Ok(Command::All),
        "select" => Ok(Command::Select),
        "insert" => Ok(Command::Insert),
        "update" => Ok(Command::Update),
        "delete" => Ok(Command::Delete),
        _ => Err(format!(
            "`for = {s:?}`: use select, insert, update, delete or all"
        )),
    }
}

/// Parses every file; collects every problem before failing.
pub fn parse(sources: &Sources) -> Result<Declarations, ParseError> {
    let mut out = Declarations::default();
    let mut diags = Vec::new();
    for (file, text) in &sources.files {
        parse_file(file, text, &mut out, &mut diags);
    }
    // A role or table declared twice (in one file TOML itself refuses; across files, here).
    for (i, r) in out.roles.iter().enumerate() {
        if let Some(first) = out.roles[..i].iter().find(|o| o.name == r.name) {
            diags.push(Diagnostic {
                loc: r.loc.clone(),
                message: format!("role {:?} is already declared at {}", r.name, first.loc),
            });
        }
    }
    for (i, t) in out.tables.iter().enumerate() {
        if let Some(first) = out.tables[..i]
            .iter()
            .find(|o| o.schema == t.schema && o.name == t.name)
        {
            diags.push(Diagnostic {
                loc: t.loc.clone(),
                message: format!(
                    "table {}.{} is already declared at {}; keep one table in one place",
                    t.schema, t.name, first.loc
                ),
            });
        }
        for (j, p) in t.policies.iter().enumerate() {
            if let Some(first) = t.policies[..j].iter().find(|o| o.name == p.name) {
                diags.push(Diagnostic {
                    loc: p.loc.clone(),
                    message: format!(
                        "policy {:?} on {}.{} is already declared at {}",
                        p.name, t.schema, t.name, first.loc
                    ),
                });
            }
        }
    }
    duplicates_in_sections(&out, &mut diags);
    if diags.is_empty() {
        Ok(out)
    } else {
        diags.sort_by(|a, b| (&a.loc.file, a.loc.line).cmp(&(&b.loc.file, b.loc.line)));
        Err(ParseError::Invalid(diags))
    }
}

/// A bucket, a published table, a rule of a bucket or a channel rule declared twice.
fn duplicates_in_sections(out: &Declarations, diags: &mut Vec<Diagnostic>) {
    let mut dup = |loc: &Loc, what: String, first: &Loc| {
        diags.push(Diagnostic {
            loc: loc.clone(),
            message: format!("{what} is already declared at {first}"),
        })
    };
    for (i, b) in out.buckets.iter().enumerate() {
        if let Some(first) = out.buckets[..i].iter().find(|o| o.id == b.id) {
            dup(&b.loc, format!("bucket {:?}", b.id), &first.loc);
        }
        for (j, r) in b.rules.iter().enumerate() {
            if let Some(first) = b.rules[..j].iter().find(|o| o.name == r.name) {
                dup(
                    &r.loc,
                    format!("rule {:?} of bucket {:?}", r.name, b.id),
                    &first.loc,
                );
            }
        }
    }
    for (i, t) in out.publish.iter().enumerate() {
        if let Some(first) = out.publish[..i]
            .iter()
            .find(|o| o.schema == t.schema && o.name == t.name)
        {
            dup(
                &t.loc,
                format!("realtime table {}.{}", t.schema, t.name),
                &first.loc,
            );
        }
    }
    for (i, c) in out.channels.iter().enumerate() {
        if let Some(first) = out.channels[..i]
            .iter()
            .find(|o| o.rule.name == c.rule.name)
        {
            dup(
                &c.rule.loc,
                format!("channel rule {:?}", c.rule.name),
                &first.rule.loc,
            );
        }
    }
}

fn parse_file(file: &str, text: &str, out: &mut Declarations, diags: &mut Vec<Diagnostic>) {
    let lines = Lines {
        file: Arc::from(file),
        text,
    };
    let doc: FileDoc = match toml::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let loc = lines.at(e.span().unwrap_or(0..0));
            diags.push(Diagnostic {
                loc,
                message: e.message().trim().to_string(),
            });
            return;
        }
    };
    let named = |s: &Spanned<String>| Named {
        name: s.get_ref().clone(),
        loc: lines.at(s.span()),
    };

    let mut found = Sections::default();
    if let Some(s) = doc.storage {
        sections::storage(s, &lines, &mut found, diags);
    }
    if let Some(r) = doc.realtime {
        sections::realtime(r, &lines, &mut found, diags);
    }
    out.buckets.extend(found.buckets);
    out.publish.extend(found.publish);
    out.channels.extend(found.channels);
    let mut bad = |loc: Loc, message: String| diags.push(Diagnostic { loc, message });

    for (name, role) in doc.roles {
        let loc = lines.at(name.span());
        if let Err(m) = valid_role_name(name.get_ref()) {
            bad(loc.clone(), m);
            continue;
        }
        let role = role.into_inner();
        out.roles.push(RoleDecl {
            name: name.into_inner(),
            loc,
            comment: role.comment,
            member_of: role.member_of.iter().map(named).collect(),
        });
    }

    for (name, table) in doc.tables {
        let loc = lines.at(name.span());
        let (schema, tname) = match split_table(name.get_ref()) {
            Ok(x) => x,
            Err(m) => {
                bad(loc, m);
                continue;
            }
        };
        let table = table.into_inner();
        let mut decl = TableDecl {
            schema,
            name: tname,
            loc: loc.clone(),
            force_rls: table.force_rls,
            revoke_unlisted: table.revoke_unlisted,
            grants: Vec::new(),
            policies: Vec::new(),
        };
        for (role, items) in &table.grants {
            for item in items {
                let iloc = lines.at(item.span());
                match parse_privilege(item.get_ref()) {
                    Ok((privs, columns)) => {
                        for privilege in privs {
                            decl.grants.push(GrantDecl {
                                role: role.get_ref().clone(),
                                privilege,
                                columns: columns.clone(),
                                loc: iloc.clone(),
                            });
                        }
                    }
                    Err(m) => bad(iloc, m),
                }
            }
        }
        // Short form: `owner = "col"` — one policy, rows whose column is the caller's id.
        if let Some(col) = &table.owner {
            let roles = match &table.owner_roles {
                Some(r) => r.iter().map(named).collect(),
                None => vec![Named {
                    name: "authenticated".into(),
                    loc: lines.at(col.span()),
                }],
            };
            decl.policies.push(PolicyDecl {
                name: "owner only".into(),
                loc: lines.at(col.span()),
                command: Command::All,
                roles,
                permissive: true,
                using: None,
                with_check: None,
                owner: Some(named(col)),
            });
        } else if let Some(r) = &table.owner_roles {
            bad(
                lines.at(r.first().map(|s| s.span()).unwrap_or(0..0)),
                "`owner_roles` goes with `owner = \"column\"`".into(),
            );
        }
        // Short form: `readable_by = [roles]` — those roles read every row (a policy and the grant).
        if let Some(readers) = &table.readable_by {
            let rloc = lines.at(readers.first().map(|s| s.span()).unwrap_or(0..0));
            let roles: Vec<Named> = readers.iter().map(named).collect();
            for r in &roles {
                decl.grants.push(GrantDecl {
                    role: r.name.clone(),
                    privilege: Privilege::Select,
                    columns: Vec::new(),
                    loc: r.loc.clone(),
                });
            }
            decl.policies.push(PolicyDecl {
                name: "readable by all rows".into(),
                loc: rloc.clone(),
                command: Command::Select,
                roles,
                permissive: true,
                using: Some(Expr {
                    sql: "true".into(),
                    loc: rloc,
                }),
                with_check: None,
                owner: None,
            });
        }
        for p in &table.policies {
            let ploc = lines.at(p.span());
            let p = p.get_ref();
            let nloc = lines.at(p.name.span());
            if let Err(m) = valid_ident("policy", p.name.get_ref()) {
                bad(nloc.clone(), m);
                continue;
            }
            let command = match &p.command {
                Some(c) => match parse_command(c.get_ref()) {
                    Ok(c) => c,
                    Err(m) => {
                        bad(lines.at(c.span()), m);
                        continue;
                    }
                },
                None => Command::All,
            };
            let expr = |s: &Spanned<String>| Expr {
                sql: s.get_ref().trim().to_string(),
                loc: lines.text_at(s.span()),
            };
            let using = p.using.as_ref().map(expr);
            let with_check = p.with_check.as_ref().map(expr);
            if p.owner.is_some() && (using.is_some() || with_check.is_some()) {
                bad(
                    nloc,
                    "`owner` is short for `using` and `with_check`; write either it or them".into(),
                );
                continue;
            }
            if let Some(u) = &using
                && !command.has_using()
            {
                bad(
                    u.loc.clone(),
                    "an insert policy has no `using` (there is no existing row); use `with_check`"
                        .into(),
                );
                continue;
            }
            if let Some(c) = &with_check
                && !command.has_check()
            {
                bad(
                    c.loc.clone(),
                    format!(
                        "a {} policy has no `with_check` (it writes no new row); use `using`",
                        command.sql().to_lowercase()
                    ),
                );
                continue;
            }
            if p.owner.is_none() && using.is_none() && with_check.is_none() {
                bad(
                    nloc,
                    "a policy needs `using`, `with_check` or `owner`: which rows does it allow?"
                        .into(),
                );
                continue;
            }
            let roles = match &p.to {
                Some(r) if r.is_empty() => {
                    bad(
                        nloc,
                        "`to = []` names no role; leave `to` out to mean `public` (every role)"
                            .into(),
                    );
                    continue;
                }
                Some(r) => r.iter().map(named).collect(),
                None => vec![Named {
                    name: "public".into(),
                    loc: nloc.clone(),
                }],
            };
            decl.policies.push(PolicyDecl {
                name: p.name.get_ref().clone(),
                loc: ploc.min_line(nloc),
                command,
                roles,
                permissive: !p.restrictive,
                using,
                with_check,
                owner: p.owner.as_ref().map(named),
            });
        }
        out.tables.push(decl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(text: &str) -> Result<Declarations, ParseError> {
        parse(&Sources::from_files(vec![("p/a.toml".into(), text.into())]))
    }

    fn errors(text: &str) -> Vec<String> {
        match parse_one(text) {
            Err(ParseError::Invalid(d)) => d.iter().map(|d| d.to_string()).collect(),
            other => panic!("expected errors, got {other:?}"),
        }
    }

    #[test]
    fn full_example_keeps_lines() {
        let d = parse_one(
            r#"# roles
[roles.teacher]
comment = "teaches"

[tables.grades]
grants.teacher = ["select", "update(grade, comment)"]
grants.anon = ["select"]

[[tables.grades.policies]]
name = "teachers grade"
for = "update"
to = ["teacher"]
using = """
teacher_id = auth.uid()"""
with_check = "grade between 1 and 5"
"#,
        )
        .unwrap();
        assert_eq!(d.roles[0].name, "teacher");
        assert_eq!(d.roles[0].loc.line, 2);
        let t = &d.tables[0];
        assert_eq!(
            (t.schema.as_str(), t.name.as_str(), t.loc.line),
            ("public", "grades", 5)
        );
        assert_eq!(t.grants.len(), 3);
        let upd = t
            .grants
            .iter()
            .find(|g| g.privilege == Privilege::Update)
            .unwrap();
        assert_eq!(upd.columns, vec!["grade", "comment"]);
        assert_eq!(upd.loc.line, 6);
        let p = &t.policies[0];
        assert_eq!(p.command, Command::Update);
        assert_eq!(p.loc.line, 9);
        assert_eq!(p.roles[0].name, "teacher");
        assert_eq!(p.roles[0].loc.line, 12);
        let u = p.using.as_ref().unwrap();
        assert_eq!(
            (u.sql.as_str(), u.loc.line),
            ("teacher_id = auth.uid()", 14)
        );
        assert_eq!(p.with_check.as_ref().unwrap().loc.line, 15);
    }

    #[test]
    fn short_forms() {
        let d =
            parse_one("[tables.\"app.notes\"]\nowner = \"author_id\"\nreadable_by = [\"anon\"]\n")
                .unwrap();
        let t = &d.tables[0];
        assert_eq!(t.schema, "app");
        assert_eq!(t.policies.len(), 2);
        assert_eq!(t.policies[0].owner.as_ref().unwrap().name, "author_id");
        assert_eq!(t.policies[0].roles[0].name, "authenticated");
        assert_eq!(t.policies[1].command, Command::Select);
        assert_eq!(t.grants[0].privilege, Privilege::Select);
    }

    #[test]
    fn bad_input_names_file_and_line() {
        let cases: &[(&str, &str)] = &[
            ("[tables.a]\nx = 1\n", "p/a.toml:2: unknown field `x`"),
            ("[tables.a\n", "p/a.toml:1: "),
            ("[roles.Teacher]\n", "p/a.toml:1: role name \"Teacher\""),
            ("[roles.anon]\n", "p/a.toml:1: role \"anon\" is built in"),
            (
                "[roles.pg_x]\n",
                "p/a.toml:1: role name \"pg_x\": names starting with pg_",
            ),
            ("[tables.\"a.b.c\"]\n", "p/a.toml:1: table name \"a.b.c\""),
            (
                "[tables.a]\ngrants.x = [\"selekt\"]\n",
                "p/a.toml:2: unknown privilege",
            ),
            (
                "[tables.a]\ngrants.x = [\"delete(a)\"]\n",
                "p/a.toml:2: privilege \"delete(a)\"",
            ),
            (
                "[tables.a]\ngrants.x = \"select\"\n",
                "p/a.toml:2: invalid type: string",
            ),
            (
                "[tables.a]\ngrants.x = [\"update(a\"]\n",
                "p/a.toml:2: privilege \"update(a\"",
            ),
            (
                "[tables.a]\n[[tables.a.policies]]\nname = \"p\"\nfor = \"read\"\nusing = \"true\"\n",
                "p/a.toml:4: `for = \"read\"`",
            ),
            (
                "[tables.a]\n[[tables.a.policies]]\nname = \"p\"\nfor = \"insert\"\nusing = \"true\"\n",
                "p/a.toml:5: an insert policy has no `using`",
            ),
            (
                "[tables.a]\n[[tables.a.policies]]\nname = \"p\"\nfor = \"select\"\nwith_check = \"true\"\n",
                "p/a.toml:5: a select policy has no `with_check`",
            ),
            (
                "[tables.a]\n[[tables.a.policies]]\nname = \"p\"\n",
                "p/a.toml:3: a policy needs",
            ),
            (
                "[tables.a]\n[[tables.a.policies]]\nname = \"p\"\nowner = \"x\"\nusing = \"true\"\n",
                "p/a.toml:3: `owner` is short",
            ),
            (
                "[tables.a]\n[[tables.a.policies]]\nname = \"p\"\nusing = \"true\"\n[[tables.a.policies]]\nname = \"p\"\nusing = \"true\"\n",
                "p/a.toml:5: policy \"p\" on public.a is already declared at p/a.toml:2",
            ),
            (
                "[tables.a]\nowner_roles = [\"x\"]\n",
                "p/a.toml:2: `owner_roles` goes with",
            ),
        ];
        for (text, want) in cases {
            let got = errors(text);
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "{text:?}: want {want:?}, got {got:?}"
            );
        }
    }

    #[test]
    fn duplicates_across_files() {
        let s = Sources::from_files(vec![
            ("p/a.toml".into(), "[roles.r]\n[tables.t]\n".into()),
            (
                "p/b.toml".into(),
                "\n[roles.r]\n[tables.\"public.t\"]\n".into(),
            ),
        ]);
        let Err(ParseError::Invalid(d)) = parse(&s) else {
            panic!("expected errors")
        };
        let d: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            d,
            vec![
                "p/b.toml:2: role \"r\" is already declared at p/a.toml:1",
                "p/b.toml:3: table public.t is already declared at p/a.toml:2; keep one table in one place"
            ]
        );
    }

    #[test]
    fn roles_in_one_table_and_quoted_policy_text() {
        let text = "[roles]\nstudent = {}\nteacher = { member_of = [\"student\"] }\n[tables.t]\n\
                    [[tables.t.policies]]\nname = \"p\"\nfor = \"DELETE\"\nusing = '''\n  a = 'x'\n'''\n\
                    restrictive = true\n";
        let d = parse_one(text).unwrap();
        assert_eq!(d.roles.len(), 2);
        assert_eq!(d.roles[1].member_of[0].name, "student");
        assert_eq!(d.roles[1].member_of[0].loc.line, 3);
        let p = &d.tables[0].policies[0];
        assert_eq!(p.command, Command::Delete);
        assert!(!p.permissive);
        assert_eq!(p.roles[0].name, "public");
        let u = p.using.as_ref().unwrap();
        assert_eq!((u.sql.as_str(), u.loc.line), ("a = 'x'", 9));
    }

    /// Every policy example in docs/policies.md parses (test-case examples are checked by the
    /// test runner's own tests).
    #[test]
    fn docs_examples_parse() {
        let doc = include_str!("../../../docs/policies.md");
        let mut checked = 0;
        for (i, block) in doc.split("```toml\n").skip(1).enumerate() {
            let text = block.split("```").next().unwrap();
            if text.contains("[[cases]]") {
                continue;
            }
            let name = format!("docs/policies.md block {i}");
            if let Err(e) = parse(&Sources::from_files(vec![(name.clone(), text.into())])) {
                panic!("{name}: {e}\n{text}");
            }
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} examples found");
    }

    #[test]
    fn hash_depends_on_content_not_folder() {
        let a = Sources::from_files(vec![("x/a.toml".into(), "1".into())]);
        let b = Sources::from_files(vec![("y/a.toml".into(), "1".into())]);
        let c = Sources::from_files(vec![("x/a.toml".into(), "2".into())]);
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
    }
}
