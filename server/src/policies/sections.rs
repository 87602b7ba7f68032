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
    parse::{Command, Diagnostic, Expr, Lines, Loc, Named, valid_ident},
    pattern::{self, Pattern},
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
        match super::parse::split_table(t.get_ref()) {
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
