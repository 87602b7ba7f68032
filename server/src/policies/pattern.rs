//! Path and topic patterns of the `storage` and `realtime` sections — `{auth.uid}/**`,
//! `{school:uuid}/**`, `{auth.uid}.*`, `school:{school:uuid}` — and the SQL conditions they stand
//! for over the parts of an object's name (split on `/`) or of a channel's topic (split on `:`).
//! Pure: no database. Rejects empty patterns and parts, `**` anywhere but at the end, `*` inside a
//! part but at its end, unknown placeholders, malformed claim paths, captures that do not take a
//! whole part, captures named twice, unknown capture types — and, in a rule's `when`, a `{name}`
//! that is not a capture of its pattern.

use crate::db::quote_literal;

/// A pattern as parsed; [`Pattern::sql`] turns it into conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    sep: char,
    parts: Vec<Part>,
    /// Ends in `**`: one or more further parts, whatever they are.
    rest: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// `*`: any one non-empty part.
    Any,
    /// `{name}` / `{name:uuid}` / `{name:int}`: any one part, named for `when`.
    Capture { name: String, ty: CaptureType },
    /// Text and placeholders; `prefix`: ends in `*` (the part starts with them).
    Text { pieces: Vec<Piece>, prefix: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureType {
    Text,
    Uuid,
    Int,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    /// `{auth.uid}`: the caller's id.
    Uid,
    /// `{jwt.a.b}`: a claim of the caller's token.
    Claim(Vec<String>),
}

/// A capture's name and the SQL expression of its value (typed; null when the part does not fit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub name: String,
    pub sql: String,
}

const UUID_RE: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
const INT_RE: &str = "^[0-9]{1,9}$";

fn is_capture_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Pattern {
    /// Parses `text`, whose parts are separated by `sep` (`/` for paths, `:` for topics).
    pub fn parse(text: &str, sep: char) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("an empty pattern matches nothing; write `**` for everything".into());
        }
        let raw = split_outside_braces(text, sep);
        let mut parts = Vec::new();
        let mut rest = false;
        let mut names: Vec<String> = Vec::new();
        for (i, seg) in raw.iter().enumerate() {
            if seg.is_empty() {
                return Err(format!(
                    "pattern {text:?} has an empty part (two `{sep}` in a row, or one at an end)"
                ));
            }
            if *seg == "**" {
                if i + 1 != raw.len() {
                    return Err(format!(
                        "pattern {text:?}: `**` (any further parts) may only end the pattern"
                    ));
                }
                rest = true;
                continue;
            }
            if *seg == "*" {
                parts.push(Part::Any);
                continue;
            }
            if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
                && !inner.contains(['{', '}', '.'])
            {
                let (name, ty) = match inner.split_once(':') {
                    Some((n, "uuid")) => (n, CaptureType::Uuid),
                    Some((n, "int")) => (n, CaptureType::Int),
                    Some((n, "text")) => (n, CaptureType::Text),
                    Some((_, t)) => {
                        return Err(format!(
                            "pattern {text:?}: unknown capture type {t:?}; use text, uuid or int"
                        ));
                    }
                    None => (inner, CaptureType::Text),
                };
                if !is_capture_name(name) {
                    return Err(format!(
                        "pattern {text:?}: a capture is named with lower-case letters, digits and _, as `{{school}}` or `{{school:uuid}}`"
                    ));
                }
                if names.iter().any(|n| n == name) {
                    return Err(format!(
                        "pattern {text:?}: the capture {{{name}}} appears twice"
                    ));
                }
                names.push(name.to_string());
                parts.push(Part::Capture {
                    name: name.to_string(),
                    ty,
                });
                continue;
            }
            parts.push(parse_text_part(text, seg)?);
        }
        Ok(Pattern { sep, parts, rest })
    }

    /// The names the pattern captures, in order.
    pub fn captures(&self) -> Vec<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Capture { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The conditions (joined by `and`) under which `subject` — an SQL text expression such as
    /// `name` or `realtime.topic()` — matches, and the SQL of each capture.
    pub fn sql(&self, subject: &str) -> (String, Vec<Capture>) {
        let arr = format!(
            "string_to_array({subject}, {})",
            quote_literal(&self.sep.to_string())
        );
        let n = self.parts.len();
        let mut conds = vec![if self.rest {
            format!("cardinality({arr}) > {n}")
        } else {
            format!("cardinality({arr}) = {n}")
        }];
        let mut captures = Vec::new();
        for (i, part) in self.parts.iter().enumerate() {
            let at = format!("({arr})[{}]", i + 1);
            match part {
                Part::Any => conds.push(format!("{at} <> ''")),
                Part::Capture { name, ty } => {
                    let (cond, sql) = match ty {
                        CaptureType::Text => (format!("{at} <> ''"), at.clone()),
                        CaptureType::Uuid => {
                            let c = format!("{at} ~ {}", quote_literal(UUID_RE));
                            let s = format!("(case when {c} then ({at})::uuid end)");
                            (c, s)
                        }
                        CaptureType::Int => {
                            let c = format!("{at} ~ {}", quote_literal(INT_RE));
                            let s = format!("(case when {c} then ({at})::integer end)");
                            (c, s)
                        }
                    };
                    conds.push(cond);
                    captures.push(Capture {
                        name: name.clone(),
                        sql,
                    });
                }
                Part::Text { pieces, prefix } => {
                    let value = pieces
                        .iter()
                        .map(|p| match p {
                            Piece::Lit(s) => quote_literal(s),
                            // An empty id or claim matches nothing (not "every name").
                            Piece::Uid => "nullif((auth.uid())::text, '')".to_string(),
                            Piece::Claim(path) => {
                                let (last, head) =
                                    path.split_last().expect("claim paths are not empty");
                                let mut e = "auth.jwt()".to_string();
                                for k in head {
                                    e.push_str(&format!(" -> {}", quote_literal(k)));
                                }
                                e.push_str(&format!(" ->> {}", quote_literal(last)));
                                format!("nullif(({e}), '')")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" || ");
                    if *prefix {
                        conds.push(format!("starts_with({at}, {value})"));
                    } else {
                        conds.push(format!("{at} = {value}"));
                    }
                }
            }
        }
        (conds.join(" and "), captures)
    }
}

/// Splits on `sep` except inside `{…}` (a capture's type follows a `:`, a topic's separator).
fn split_outside_braces(text: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if c == sep && depth == 0 => {
                out.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

fn parse_text_part(text: &str, seg: &str) -> Result<Part, String> {
    let (body, prefix) = match seg.strip_suffix('*') {
        Some(b) => (b, true),
        None => (seg, false),
    };
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while let Some(c) = body[i..].chars().next() {
        match c {
            '*' => {
                return Err(format!(
                    "pattern {text:?}: `*` stands for a whole part or ends one (`{{auth.uid}}.*`), not inside {seg:?}"
                ));
            }
            '}' => return Err(format!("pattern {text:?}: `}}` without `{{` in {seg:?}")),
            '{' => {
                let close = body[i..]
                    .find('}')
                    .ok_or_else(|| format!("pattern {text:?}: `{{` without `}}` in {seg:?}"))?;
                let inner = &body[i + 1..i + close];
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(placeholder(text, inner)?);
                i += close + 1;
            }
            c => {
                lit.push(c);
                i += c.len_utf8();
            }
        }
    }
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    if pieces.is_empty() {
        // `*` alone is handled by the caller; here only `{}`-free empties remain, which cannot be.
        return Err(format!("pattern {text:?}: empty part {seg:?}"));
    }
    Ok(Part::Text { pieces, prefix })
}

fn placeholder(text: &str, inner: &str) -> Result<Piece, String> {
    if inner == "auth.uid" {
        return Ok(Piece::Uid);
    }
    if let Some(path) = inner.strip_prefix("jwt.") {
        let keys: Vec<String> = path.split('.').map(str::to_string).collect();
        let ok = keys.iter().all(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        if ok {
            return Ok(Piece::Claim(keys));
        }
        return Err(format!(
            "pattern {text:?}: `{{jwt.{path}}}` names a claim by its keys, as `{{jwt.app_metadata.school}}` (letters, digits, _ and -)"
        ));
    }
    if is_capture_name(inner.split(':').next().unwrap_or("")) {
        return Err(format!(
            "pattern {text:?}: the capture {{{inner}}} must take a whole part (between separators)"
        ));
    }
    Err(format!(
        "pattern {text:?}: unknown placeholder {{{inner}}}; use {{auth.uid}}, {{jwt.claim.path}} or a capture such as {{school}}"
    ))
}

/// Replaces each `{name}` in a rule's `when` by its capture's SQL; any other `{identifier}` is an
/// error (it would otherwise reach PostgreSQL as text and mean something else).
pub fn substitute(when: &str, captures: &[Capture]) -> Result<String, String> {
    let mut out = String::with_capacity(when.len());
    let mut rest = when;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if is_capture_name(&after[..close]) => {
                let name = &after[..close];
                let Some(c) = captures.iter().find(|c| c.name == name) else {
                    let known: Vec<String> =
                        captures.iter().map(|c| format!("{{{}}}", c.name)).collect();
                    return Err(format!(
                        "`{{{name}}}` in `when` is not a capture of the pattern (it captures {})",
                        if known.is_empty() {
                            "nothing".to_string()
                        } else {
                            known.join(", ")
                        }
                    ));
                };
                out.push_str(&c.sql);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(p: &str, sep: char) -> String {
        Pattern::parse(p, sep).unwrap().sql("name").0
    }

    #[test]
    fn conditions() {
        let arr = "string_to_array(name, '/')";
        let cases: &[(&str, String)] = &[
            (
                "{auth.uid}/**",
                format!("cardinality({arr}) > 1 and ({arr})[1] = nullif((auth.uid())::text, '')"),
            ),
            (
                "{jwt.app_metadata.school}/*",
                format!(
                    "cardinality({arr}) = 2 and ({arr})[1] = nullif((auth.jwt() -> 'app_metadata' ->> 'school'), '') and ({arr})[2] <> ''"
                ),
            ),
            (
                "{auth.uid}.*",
                format!(
                    "cardinality({arr}) = 1 and starts_with(({arr})[1], nullif((auth.uid())::text, '') || '.')"
                ),
            ),
            (
                "public/it's/**",
                format!(
                    "cardinality({arr}) > 2 and ({arr})[1] = 'public' and ({arr})[2] = 'it''s'"
                ),
            ),
            ("**", format!("cardinality({arr}) > 0")),
        ];
        for (p, want) in cases {
            assert_eq!(&sql(p, '/'), want, "{p}");
        }
    }

    #[test]
    fn captures_are_typed_and_substituted() {
        let p = Pattern::parse("class:{school:uuid}:{n:int}:{letter}", ':').unwrap();
        assert_eq!(p.captures(), vec!["school", "n", "letter"]);
        let (cond, caps) = p.sql("realtime.topic()");
        assert!(cond.starts_with("cardinality(string_to_array(realtime.topic(), ':')) = 4 and "));
        assert!(cond.contains("(string_to_array(realtime.topic(), ':'))[1] = 'class'"));
        assert!(caps[0].sql.starts_with(
            "(case when (string_to_array(realtime.topic(), ':'))[2] ~ '^[0-9a-fA-F]{8}"
        ));
        assert!(caps[0].sql.ends_with("::uuid end)"));
        assert!(caps[1].sql.ends_with("::integer end)"));
        assert_eq!(caps[2].sql, "(string_to_array(realtime.topic(), ':'))[4]");
        let w = substitute("app.teaches_at({school}) and {letter} <> '{x-y}'", &caps).unwrap();
        assert!(w.starts_with("app.teaches_at((case when"));
        assert!(w.ends_with("[4] <> '{x-y}'"));
        let e = substitute("{nope} = 1", &caps).unwrap_err();
        assert!(e.contains("`{nope}` in `when` is not a capture"), "{e}");
        assert!(e.contains("{school}, {n}, {letter}"), "{e}");
    }

    #[test]
    fn bad_patterns() {
        let cases: &[(&str, &str)] = &[
            ("", "an empty pattern"),
            ("a//b", "has an empty part"),
            ("/a", "has an empty part"),
            ("**/a", "`**` (any further parts) may only end"),
            ("a*b", "`*` stands for a whole part or ends one"),
            ("{auth.email}", "unknown placeholder {auth.email}"),
            ("{jwt.}", "names a claim by its keys"),
            ("{jwt.a b}", "names a claim by its keys"),
            ("x{school}", "must take a whole part"),
            ("{a}/{a}", "appears twice"),
            ("{a:date}", "unknown capture type \"date\""),
            ("{Bad}", "a capture is named with lower-case"),
            ("{a", "`{` without `}`"),
            ("a}", "`}` without `{`"),
        ];
        for (p, want) in cases {
            let e = Pattern::parse(p, '/').unwrap_err();
            assert!(e.contains(want), "{p:?}: want {want:?}, got {e:?}");
        }
    }
}
