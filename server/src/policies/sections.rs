//! The `storage` and `realtime` sections of the policy files, read into declarations: buckets
//! (public or not, size limit, MIME types) with rules saying which roles read, upload, overwrite
//! or delete under which path pattern; tables to publish to `supabase_realtime`; private-channel
//! rules saying which roles read (join, receive) or write (send, track) on which topic pattern.
//! Rejects malformed bucket ids, sizes and MIME types, unknown actions and extensions, bad
//! patterns, `when` naming what its pattern does not capture, rules without roles or actions,
//! and policy names PostgreSQL would cut — each as `file:line: message`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{
    pattern::{self, Pattern},
    syntax::{Command, Diagnostic, Expr, Lines, Loc, Named, split_table, valid_ident},
};
use crate::db::quote_literal;

#[derive(Debug, Clone)]
pub struct BucketDecl {
    pub id: String,
    pub loc: Loc,
    pub name: String,
    pub public: bool,
    pub file_size_limit: Option<i64>,
    pub allowed_mime_types: Option<Vec<String>>,
    pub rules: Vec<AccessRule>,
}

/// One rule of a bucket or of realtime's channels: who may do what where. Each action becomes one
/// policy (see [`AccessRule::policies`]).
#[derive(Debug, Clone)]
pub struct AccessRule {
    /// The rule's name as written.
    pub name: String,
    pub loc: Loc,
    pub roles: Vec<Named>,
    pub actions: Vec<Action>,
    /// The pattern's conditions and the bucket or extension test, as SQL (ours, never the admin's).
    pub matches: String,
    /// The admin's extra condition, with captures replaced by their SQL.
    pub when: Option<Expr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// storage: download, list, info; realtime: join and receive broadcast / presence.
    Read,
    /// storage: create an object that does not exist yet.
    Upload,
    /// storage: replace an existing object.
    Overwrite,
    /// storage: remove objects.
    Delete,
    /// realtime: send broadcasts, track presence.
    Write,
}

impl Action {
    pub fn word(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Upload => "upload",
            Action::Overwrite => "overwrite",
            Action::Delete => "delete",
            Action::Write => "write",
        }
    }
    pub fn command(self) -> Command {
        match self {
            Action::Read => Command::Select,
            Action::Upload | Action::Write => Command::Insert,
            Action::Overwrite => Command::Update,
            Action::Delete => Command::Delete,
        }
    }
}

impl AccessRule {
    /// The policy name for one action: `<scope>: <rule> (<action>)`.
    pub fn policy_name(scope: &str, rule: &str, action: Action) -> String {
        format!("{scope}: {rule} ({})", action.word())
    }
}

#[derive(Debug, Clone)]
pub struct ChannelDecl {
    pub rule: AccessRule,
}

/// A table to publish to `supabase_realtime`.
#[derive(Debug, Clone)]
pub struct PublishDecl {
    pub schema: String,
    pub name: String,
    pub loc: Loc,
}

// ---- the files' shape ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StorageDoc {
    #[serde(default)]
    buckets: BTreeMap<Spanned<String>, Spanned<BucketDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketDoc {
    name: Option<String>,
    #[serde(default)]
    public: bool,
    file_size_limit: Option<Spanned<toml::Value>>,
    allowed_mime_types: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    rules: Vec<Spanned<RuleDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    name: Spanned<String>,
    to: Option<Vec<Spanned<String>>>,
    allow: Option<Vec<Spanned<String>>>,
    path: Option<Spanned<String>>,
    when: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RealtimeDoc {
    #[serde(default)]
    tables: Vec<Spanned<String>>,
    #[serde(default)]
    channels: Vec<Spanned<ChannelDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelDoc {
    name: Spanned<String>,
    to: Option<Vec<Spanned<String>>>,
    allow: Option<Vec<Spanned<String>>>,
    topic: Option<Spanned<String>>,
    extensions: Option<Vec<Spanned<String>>>,
    when: Option<Spanned<String>>,
}

/// What one file's sections declare.
#[derive(Debug, Default)]
pub(super) struct Sections {
    pub buckets: Vec<BucketDecl>,
    pub publish: Vec<PublishDecl>,
    pub channels: Vec<ChannelDecl>,
}

/// PostgreSQL cuts names at 63 bytes; a cut name would no longer be the one doska looks for.
const MAX_NAME: usize = 63;

/// A bucket id as the storage API accepts it.
fn valid_bucket_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > MAX_NAME
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "bucket id {id:?} must be 1 to 63 letters, digits, `-`, `_` or `.`"
        ));
    }
    Ok(())
}

/// `10485760`, `"10 MB"` (10·1000²), `"10 MiB"` (10·1024²); B, KB, MB, GB, KiB, MiB, GiB.
pub fn parse_size(v: &toml::Value) -> Result<i64, String> {
    let bad = || {
        format!(
            "file_size_limit {v}: write bytes (10485760) or a size with a unit (\"10 MB\", \"10 MiB\")"
        )
    };
    match v {
        toml::Value::Integer(n) if *n > 0 => Ok(*n),
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let (num, unit) = s.split_at(split);
            let n: i64 = num.parse().map_err(|_| bad())?;
            let mult: i64 = match unit.trim() {
                "B" => 1,
                "KB" => 1000,
                "MB" => 1000 * 1000,
                "GB" => 1000 * 1000 * 1000,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                _ => return Err(bad()),
            };
            n.checked_mul(mult).filter(|b| *b > 0).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// `type/subtype` or `type/*`, as Supabase's buckets take them.
fn valid_mime(m: &str) -> Result<(), String> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match m.split_once('/') {
        Some((t, s)) if token(t) && (s == "*" || token(s)) => Ok(()),
        _ => Err(format!(
            "MIME type {m:?}: write `type/subtype` or `type/*` (e.g. \"application/pdf\", \"image/*\")"
        )),
    }
}

/// Reads a file's `storage` section.
pub(super) fn storage(
    doc: StorageDoc,
    lines: &Lines,
    out: &mut Sections,
    diags: &mut Vec<Diagnostic>,
) {
    let mut bad = |loc: Loc, message: String| diags.push(Diagnostic { loc, message });
    for (id, bucket) in doc.buckets {
        let loc = lines.at(id.span());
        if let Err(m) = valid_bucket_id(id.get_ref()) {
            bad(loc, m);
            continue;
        }
        let id = id.into_inner();
        let b = bucket.into_inner();
        let file_size_limit = match &b.file_size_limit {
            Some(v) => match parse_size(v.get_ref()) {
                Ok(n) => Some(n),
                Err(m) => {
                    bad(lines.at(v.span()), m);
                    continue;
                }
            },
            None => None,
        };
        let mut mimes = Vec::new();
        for m in b.allowed_mime_types.iter().flatten() {
            match valid_mime(m.get_ref()) {
                Ok(()) => mimes.push(m.get_ref().clone()),
                Err(e) => bad(lines.at(m.span()), e),
            }
        }
        let mut decl = BucketDecl {
            name: b.name.clone().unwrap_or_else(|| id.clone()),
            id: id.clone(),
            loc,
            public: b.public,
            file_size_limit,
            allowed_mime_types: b.allowed_mime_types.as_ref().map(|_| mimes),
            rules: Vec::new(),
        };
        for r in &b.rules {
            let rloc = lines.at(r.span());
            let r = r.get_ref();
            let parsed = rule(
                lines,
                &rloc,
                Common {
                    name: &r.name,
                    to: &r.to,
                    allow: &r.allow,
                    when: &r.when,
                },
                &[
                    ("read", Action::Read),
                    ("upload", Action::Upload),
                    ("overwrite", Action::Overwrite),
                    ("delete", Action::Delete),
                ],
                &id,
                || {
                    let (text, ploc) = match &r.path {
                        Some(p) => (p.get_ref().as_str(), lines.at(p.span())),
                        None => ("**", rloc.clone()),
                    };
                    let pattern = Pattern::parse(text, '/').map_err(|m| (ploc, m))?;
                    // Qualified: a capture may be used inside a subquery of `when`, where a bare
                    // `name` would be the subquery's own column.
                    let (conds, caps) = pattern.sql("storage.objects.name");
                    Ok((
                        format!("bucket_id = {} and {conds}", quote_literal(&id)),
                        caps,
                    ))
                },
            );
            match parsed {
                Ok(rule) => decl.rules.push(rule),
                Err((loc, m)) => bad(loc, m),
            }
        }
        out.buckets.push(decl);
    }
}

/// Reads a file's `realtime` section.
pub(super) fn realtime(
    doc: RealtimeDoc,
    lines: &Lines,
    out: &mut Sections,
    diags: &mut Vec<Diagnostic>,
) {
    let mut bad = |loc: Loc, message: String| diags.push(Diagnostic { loc, message });
    for t in &doc.tables {
        let loc = lines.at(t.span());
        match split_table(t.get_ref()) {
            Ok((schema, name)) => out.publish.push(PublishDecl { schema, name, loc }),
            Err(m) => bad(loc, m),
        }
    }
    for c in &doc.channels {
        let cloc = lines.at(c.span());
        let c = c.get_ref();
        let parsed = rule(
            lines,
            &cloc,
            Common {
                name: &c.name,
                to: &c.to,
                allow: &c.allow,
                when: &c.when,
            },
            &[("read", Action::Read), ("write", Action::Write)],
            "realtime",
            || {
                let Some(topic) = &c.topic else {
                    return Err((
                        cloc.clone(),
                        "a channel rule needs `topic`, as `topic = \"school:{school:uuid}\"`"
                            .into(),
                    ));
                };
                let pattern = Pattern::parse(topic.get_ref(), ':')
                    .map_err(|m| (lines.at(topic.span()), m))?;
                let mut exts = Vec::new();
                for e in c.extensions.iter().flatten() {
                    match e.get_ref().as_str() {
                        x @ ("broadcast" | "presence") => {
                            if !exts.contains(&x) {
                                exts.push(x)
                            }
                        }
                        other => {
                            return Err((
                                lines.at(e.span()),
                                format!("unknown extension {other:?}; use broadcast or presence"),
                            ));
                        }
                    }
                }
                if exts.is_empty() {
                    if c.extensions.is_some() {
                        return Err((
                            cloc.clone(),
                            "`extensions = []` allows nothing; leave it out for both".into(),
                        ));
                    }
                    exts = vec!["broadcast", "presence"];
                }
                let (conds, caps) = pattern.sql("realtime.topic()");
                let list: Vec<String> = exts.iter().map(|e| quote_literal(e)).collect();
                Ok((
                    format!("extension in ({}) and {conds}", list.join(", ")),
                    caps,
                ))
            },
        );
        match parsed {
            Ok(rule) => out.channels.push(ChannelDecl { rule }),
            Err((loc, m)) => bad(loc, m),
        }
    }
}

struct Common<'a> {
    name: &'a Spanned<String>,
    to: &'a Option<Vec<Spanned<String>>>,
    allow: &'a Option<Vec<Spanned<String>>>,
    when: &'a Option<Spanned<String>>,
}

/// What the bucket and channel rules share: name, roles, actions, `when` with captures.
fn rule(
    lines: &Lines,
    loc: &Loc,
    c: Common,
    words: &[(&str, Action)],
    scope: &str,
    matches: impl FnOnce() -> Result<(String, Vec<pattern::Capture>), (Loc, String)>,
) -> Result<AccessRule, (Loc, String)> {
    let nloc = lines.at(c.name.span());
    let name = c.name.get_ref().clone();
    valid_ident("rule", &name).map_err(|m| (nloc.clone(), m))?;
    let list = |ws: &[(&str, Action)]| ws.iter().map(|(w, _)| *w).collect::<Vec<_>>().join(", ");
    let Some(allow) = c.allow.as_ref().filter(|a| !a.is_empty()) else {
        return Err((
            nloc,
            format!("a rule needs `allow`, some of: {}", list(words)),
        ));
    };
    let mut actions = Vec::new();
    for a in allow {
        let Some((_, act)) = words.iter().find(|(w, _)| *w == a.get_ref().as_str()) else {
            return Err((
                lines.at(a.span()),
                format!("unknown action {:?}; use {}", a.get_ref(), list(words)),
            ));
        };
        if !actions.contains(act) {
            actions.push(*act);
        }
    }
    for a in &actions {
        let policy = AccessRule::policy_name(scope, &name, *a);
        if policy.len() > MAX_NAME {
            return Err((
                nloc,
                format!(
                    "rule name too long: its policy {policy:?} would be {} bytes, PostgreSQL keeps 63; shorten the rule's name",
                    policy.len()
                ),
            ));
        }
    }
    let roles: Vec<Named> = match c.to {
        Some(r) if r.is_empty() => {
            return Err((
                nloc,
                "`to = []` names no role; leave `to` out to mean `public` (every role)".into(),
            ));
        }
        Some(r) => r
            .iter()
            .map(|s| Named {
                name: s.get_ref().clone(),
                loc: lines.at(s.span()),
            })
            .collect(),
        None => vec![Named {
            name: "public".into(),
            loc: nloc.clone(),
        }],
    };
    let (matches, captures) = matches()?;
    let when = match c.when {
        Some(w) => {
            let wloc = lines.text_at(w.span());
            let sql = pattern::substitute(w.get_ref().trim(), &captures)
                .map_err(|m| (wloc.clone(), m))?;
            Some(Expr { sql, loc: wloc })
        }
        None => None,
    };
    Ok(AccessRule {
        name,
        loc: loc.clone().min_line(nloc),
        roles,
        actions,
        matches,
        when,
    })
}

#[cfg(test)]
mod tests {
    use crate::policies::{
        compile::compile,
        parse::{Command, ParseError, Sources, parse},
    };

    fn errors(text: &str) -> Vec<String> {
        match parse(&Sources::from_files(vec![("p/a.toml".into(), text.into())])) {
            Err(ParseError::Invalid(d)) => d.iter().map(|d| d.to_string()).collect(),
            other => panic!("expected errors for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn storage_compiles_to_buckets_and_one_policy_per_action() {
        let text = r#"
[storage.buckets.materials]
public = false
file_size_limit = "50 MiB"
allowed_mime_types = ["application/pdf", "image/*"]

[[storage.buckets.materials.rules]]
name = "teachers manage"
to = ["teacher"]
allow = ["upload", "overwrite", "delete", "upload"]
path = "{school:uuid}/**"
when = "app.teaches_at({school})"

[storage.buckets.avatars]
public = true
name = "Avatars"
"#;
        let d = parse(&Sources::from_files(vec![("a.toml".into(), text.into())])).unwrap();
        assert_eq!(d.buckets.len(), 2);
        let p = compile(&d);
        let m = p.buckets.iter().find(|b| b.id == "materials").unwrap();
        assert_eq!(m.file_size_limit, Some(50 << 20));
        assert_eq!(m.loc.line, 2);
        let a = p.buckets.iter().find(|b| b.id == "avatars").unwrap();
        assert_eq!(
            (a.name.as_str(), a.public, a.file_size_limit),
            ("Avatars", true, None)
        );
        assert_eq!(p.policies.len(), 3);
        let names: Vec<(&str, Command)> = p
            .policies
            .iter()
            .map(|x| (x.name.as_str(), x.command))
            .collect();
        assert_eq!(
            names,
            vec![
                ("materials: teachers manage (upload)", Command::Insert),
                ("materials: teachers manage (overwrite)", Command::Update),
                ("materials: teachers manage (delete)", Command::Delete),
            ]
        );
        let up = &p.policies[0];
        assert!(up.create_sql.starts_with(
            "CREATE POLICY \"materials: teachers manage (upload)\" ON \"storage\".\"objects\" AS PERMISSIVE FOR INSERT TO \"teacher\" WITH CHECK (bucket_id = 'materials' and cardinality(string_to_array(storage.objects.name, '/')) > 1 and "
        ), "{}", up.create_sql);
        assert!(up.create_sql.ends_with(
            " and (app.teaches_at((case when (string_to_array(storage.objects.name, '/'))[1] ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' then ((string_to_array(storage.objects.name, '/'))[1])::uuid end))\n)\n)"
        ), "{}", up.create_sql);
        // The admin's `when` is where errors inside it point.
        assert_eq!(up.exprs.len(), 1);
        assert!(up.create_sql[up.exprs[0].0.clone()].starts_with("app.teaches_at("));
        assert_eq!(up.exprs[0].1.line, 12);
        let ov = &p.policies[1];
        assert!(ov.using.is_some() && ov.with_check.is_some());
        assert!(p.policies[2].with_check.is_none());
        // The table the rules live on is part of the plan.
        assert!(
            p.tables
                .iter()
                .any(|t| t.schema == "storage" && t.name == "objects")
        );
    }

    #[test]
    fn realtime_compiles_to_publication_and_channel_policies() {
        let text = r#"[realtime]
tables = ["grades", "app.rooms"]

[[realtime.channels]]
name = "school"
topic = "school:{jwt.app_metadata.school}"
allow = ["read", "write"]
extensions = ["presence"]
"#;
        let p =
            compile(&parse(&Sources::from_files(vec![("a.toml".into(), text.into())])).unwrap());
        let t: Vec<(&str, &str, usize)> = p
            .publish
            .iter()
            .map(|t| (t.schema.as_str(), t.name.as_str(), t.loc.line))
            .collect();
        assert_eq!(t, vec![("public", "grades", 2), ("app", "rooms", 2)]);
        assert_eq!(p.policies.len(), 2);
        assert_eq!(
            p.policies[0].create_sql,
            "CREATE POLICY \"realtime: school (read)\" ON \"realtime\".\"messages\" AS PERMISSIVE FOR SELECT TO public \
             USING (extension in ('presence') and cardinality(string_to_array(realtime.topic(), ':')) = 2 \
             and (string_to_array(realtime.topic(), ':'))[1] = 'school' \
             and (string_to_array(realtime.topic(), ':'))[2] = nullif((auth.jwt() -> 'app_metadata' ->> 'school'), '')\n)"
        );
        assert_eq!(p.policies[1].command, Command::Insert);
        assert_eq!(p.policies[1].name, "realtime: school (write)");
    }

    #[test]
    fn bad_sections_name_file_and_line() {
        let rule = |body: &str| format!("[storage.buckets.b]\n[[storage.buckets.b.rules]]\n{body}");
        let chan = |body: &str| format!("[[realtime.channels]]\n{body}");
        let cases: Vec<(String, &str)> = vec![
            (
                "[storage.buckets.\"a/b\"]\n".into(),
                "p/a.toml:1: bucket id \"a/b\"",
            ),
            (
                "[storage.buckets.b]\nfile_size_limit = \"5 parsecs\"\n".into(),
                "p/a.toml:2: file_size_limit \"5 parsecs\"",
            ),
            (
                "[storage.buckets.b]\nfile_size_limit = -1\n".into(),
                "p/a.toml:2: file_size_limit -1",
            ),
            (
                "[storage.buckets.b]\nallowed_mime_types = [\"pdf\"]\n".into(),
                "p/a.toml:2: MIME type \"pdf\"",
            ),
            (
                "[storage.buckets.b]\npublik = true\n".into(),
                "p/a.toml:2: unknown field `publik`",
            ),
            (
                rule("name = \"r\"\n"),
                "p/a.toml:3: a rule needs `allow`, some of: read, upload, overwrite, delete",
            ),
            (
                rule("name = \"r\"\nallow = [\"write\"]\n"),
                "p/a.toml:4: unknown action \"write\"; use read, upload, overwrite, delete",
            ),
            (
                rule("name = \"r\"\nallow = [\"read\"]\npath = \"a//b\"\n"),
                "p/a.toml:5: pattern \"a//b\" has an empty part",
            ),
            (
                rule(
                    "name = \"r\"\nallow = [\"read\"]\npath = \"{s}/**\"\nwhen = \"{school} = 'x'\"\n",
                ),
                "p/a.toml:6: `{school}` in `when` is not a capture of the pattern (it captures {s})",
            ),
            (
                rule("name = \"r\"\nallow = [\"read\"]\nto = []\n"),
                "p/a.toml:3: `to = []` names no role",
            ),
            (
                rule(&format!(
                    "name = \"{}\"\nallow = [\"overwrite\"]\n",
                    "x".repeat(50)
                )),
                "p/a.toml:3: rule name too long: its policy \"b: xxxx",
            ),
            (
                rule(
                    "name = \"r\"\nallow = [\"read\"]\n[[storage.buckets.b.rules]]\nname = \"r\"\nallow = [\"delete\"]\n",
                ),
                "p/a.toml:5: rule \"r\" of bucket \"b\" is already declared at p/a.toml:2",
            ),
            (
                chan("name = \"c\"\nallow = [\"read\"]\n"),
                "p/a.toml:1: a channel rule needs `topic`",
            ),
            (
                chan("name = \"c\"\ntopic = \"t\"\nallow = [\"upload\"]\n"),
                "p/a.toml:4: unknown action \"upload\"; use read, write",
            ),
            (
                chan(
                    "name = \"c\"\ntopic = \"t\"\nallow = [\"read\"]\nextensions = [\"postgres_changes\"]\n",
                ),
                "p/a.toml:5: unknown extension \"postgres_changes\"",
            ),
            (
                chan("name = \"c\"\ntopic = \"t:{x\"\nallow = [\"read\"]\n"),
                "p/a.toml:3: pattern \"t:{x\"",
            ),
            (
                "[realtime]\ntables = [\"a.b.c\"]\n".into(),
                "p/a.toml:2: table name \"a.b.c\"",
            ),
            (
                "[realtime]\ntables = [\"t\", \"public.t\"]\n".into(),
                "p/a.toml:2: realtime table public.t is already declared at p/a.toml:2",
            ),
            (
                "[realtime]\nchannel = []\n".into(),
                "p/a.toml:2: unknown field `channel`",
            ),
        ];
        for (text, want) in &cases {
            let got = errors(text);
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "{text:?}: want {want:?}, got {got:?}"
            );
        }
    }

    #[test]
    fn sizes() {
        use super::parse_size;
        let v = |s: &str| parse_size(&toml::Value::String(s.into()));
        assert_eq!(v("10 MB"), Ok(10_000_000));
        assert_eq!(v("10MiB"), Ok(10 << 20));
        assert_eq!(v("1 GiB"), Ok(1 << 30));
        assert_eq!(v("512 B"), Ok(512));
        assert_eq!(parse_size(&toml::Value::Integer(7)), Ok(7));
        assert!(v("MB").is_err());
        assert!(v("0 MB").is_err());
        assert!(v("99999999999999 GiB").is_err());
        assert!(parse_size(&toml::Value::Boolean(true)).is_err());
    }
}
