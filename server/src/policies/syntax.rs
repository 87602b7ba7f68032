//! The vocabulary every section of a policy file shares: where a thing was written ([`Loc`],
//! [`Lines`]), what is wrong with it ([`Diagnostic`]), names, SQL expressions and policy commands, and
//! the checks on a name doska will quote. Rejects empty, over-long or NUL-carrying names and
//! `schema.table` names with more than one dot.

use std::{fmt, ops::Range, sync::Arc};

/// Where a declaration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One problem with the files, at a place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub loc: Loc,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc, self.message)
    }
}

/// A name with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    pub loc: Loc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    All,
    Select,
    Insert,
    Update,
    Delete,
}

impl Command {
    pub fn sql(self) -> &'static str {
        match self {
            Command::All => "ALL",
            Command::Select => "SELECT",
            Command::Insert => "INSERT",
            Command::Update => "UPDATE",
            Command::Delete => "DELETE",
        }
    }
    pub fn has_using(self) -> bool {
        self != Command::Insert
    }
    pub fn has_check(self) -> bool {
        matches!(self, Command::All | Command::Insert | Command::Update)
    }
}

/// An SQL expression as the admin wrote it, with the line its text starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    pub sql: String,
    pub loc: Loc,
}

/// Turns byte offsets of one file into lines.
pub(super) struct Lines<'a> {
    pub(super) file: Arc<str>,
    pub(super) text: &'a str,
}

impl Lines<'_> {
    pub(super) fn at(&self, span: Range<usize>) -> Loc {
        let end = span.start.min(self.text.len());
        Loc {
            file: self.file.clone(),
            line: self.text.as_bytes()[..end]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1,
        }
    }
    /// The line where a string value's text starts (past the quotes and a leading newline of `"""`).
    pub(super) fn text_at(&self, span: Range<usize>) -> Loc {
        let raw = &self.text[span.start.min(self.text.len())..span.end.min(self.text.len())];
        let skip = if raw.starts_with("\"\"\"\n") || raw.starts_with("'''\n") {
            4
        } else if raw.starts_with("\"\"\"\r\n") || raw.starts_with("'''\r\n") {
            5
        } else {
            0
        };
        self.at(span.start + skip..span.end)
    }
}

/// A name to be quoted and looked up: not empty, at most 63 bytes, no NUL.
pub(super) fn valid_ident(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        Err(format!(
            "{kind} name {name:?} must be 1 to 63 bytes long and not contain NUL"
        ))
    } else {
        Ok(())
    }
}

/// `schema.table` or `table` (in `public`).
pub fn split_table(name: &str) -> Result<(String, String), String> {
    let (schema, table) = match name.split_once('.') {
        Some((s, t)) => (s, t),
        None => ("public", name),
    };
    if table.contains('.') {
        return Err(format!(
            "table name {name:?}: write `table` or `schema.table`"
        ));
    }
    valid_ident("schema", schema)?;
    valid_ident("table", table)?;
    Ok((schema.to_string(), table.to_string()))
}

impl Loc {
    /// The earlier of two places in the same file.
    pub(super) fn min_line(self, other: Loc) -> Loc {
        if other.line < self.line { other } else { self }
    }
}
