//! PostgREST's query-string grammar: `select=`, filter values, `or=(…)`/`and=(…)` trees and `order=`.
//! Pure string → AST functions. Rejects (with a message for PGRST100) anything outside the grammar;
//! never panics on any input.

/// A column reference with an optional JSON path, e.g. `data->owner->>name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub json_path: Vec<JsonOp>,
}

impl Field {
    pub fn col(name: &str) -> Field {
        Field {
            name: name.to_string(),
            json_path: Vec::new(),
        }
    }
    /// The key PostgREST gives this field in the output object: the last JSON key, else the column.
    pub fn output_name(&self) -> String {
        match self.json_path.last() {
            Some(JsonOp::Arrow(k) | JsonOp::Arrow2(k)) => match k {
                JsonKey::Key(s) => s.clone(),
                JsonKey::Index(_) => self.name.clone(),
            },
            None => self.name.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonOp {
    /// `->`: keeps JSON.
    Arrow(JsonKey),
    /// `->>`: yields text.
    Arrow2(JsonKey),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonKey {
    Key(String),
    Index(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl Aggregate {
    fn parse(s: &str) -> Option<Aggregate> {
        Some(match s {
            "count" => Aggregate::Count,
            "sum" => Aggregate::Sum,
            "avg" => Aggregate::Avg,
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::Sum => "sum",
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinType {
    Inner,
    Left,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectItem {
    /// `*`
    Star,
    /// `alias:col->x::cast`, `col.sum()`, `count()` (then `field` is None).
    Field {
        alias: Option<String>,
        field: Option<Field>,
        cast: Option<String>,
        aggregate: Option<Aggregate>,
        aggregate_cast: Option<String>,
    },
    /// `alias:rel!hint!inner(select)` or `...rel(select)`.
    Embed {
        alias: Option<String>,
        name: String,
        hint: Option<String>,
        join: Option<JoinType>,
        spread: bool,
        select: Vec<SelectItem>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    Any,
    All,
}

/// Operators that compare a column to one value (optionally quantified over a list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimpleOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    Ilike,
    Match,
    Imatch,
    IsDistinct,
    Cs,
    Cd,
    Ov,
    Sl,
    Sr,
    Nxl,
    Nxr,
    Adj,
}

impl SimpleOp {
    fn parse(s: &str) -> Option<SimpleOp> {
        use SimpleOp::*;
        Some(match s {
            "eq" => Eq,
            "neq" => Neq,
            "gt" => Gt,
            "gte" => Gte,
            "lt" => Lt,
            "lte" => Lte,
            "like" => Like,
            "ilike" => Ilike,
            "match" => Match,
            "imatch" => Imatch,
            "isdistinct" => IsDistinct,
            "cs" => Cs,
            "cd" => Cd,
            "ov" => Ov,
            "sl" => Sl,
            "sr" => Sr,
            "nxl" => Nxl,
            "nxr" => Nxr,
            "adj" => Adj,
            _ => return None,
        })
    }
    /// Whether `(any)`/`(all)` may follow the operator (PostgREST's quantifiable operators).
    fn quantifiable(self) -> bool {
        use SimpleOp::*;
        matches!(
            self,
            Eq | Neq | Gt | Gte | Lt | Lte | Like | Ilike | Match | Imatch
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsValue {
    Null,
    NotNull,
    True,
    False,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtsKind {
    Fts,
    Plfts,
    Phfts,
    Wfts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Simple {
        op: SimpleOp,
        quantifier: Option<Quantifier>,
        value: String,
    },
    In(Vec<String>),
    Is(IsValue),
    Fts {
        kind: FtsKind,
        config: Option<String>,
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: Field,
    pub negated: bool,
    pub op: Operation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogicOp {
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogicTree {
    Expr {
        negated: bool,
        op: LogicOp,
        children: Vec<LogicTree>,
    },
    Filter(Filter),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    First,
    Last,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerm {
    /// `Some(rel)` for `rel(col)`: ordering by a to-one embedded resource's column.
    pub relation: Option<String>,
    pub field: Field,
    pub direction: Option<Direction>,
    pub nulls: Option<Nulls>,
}

/// A parse failure: the message PostgREST shows as `details` of PGRST100.
pub type GrammarError = String;

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

/// Characters that may appear in an unquoted name: everything but the grammar's delimiters and
/// control characters. `-` ends a name only when `>` follows (a JSON arrow).
fn is_ident_char(c: char) -> bool {
    !c.is_control() && !matches!(c, ',' | '.' | ':' | '(' | ')' | '!' | '"')
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn eof(&self) -> bool {
        self.pos >= self.s.len()
    }
    fn eat(&mut self, t: &str) -> bool {
        if self.rest().starts_with(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, t: &str) -> Result<(), GrammarError> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("\"{t}\"")))
        }
    }
    fn unexpected(&self, expecting: &str) -> GrammarError {
        match self.peek() {
            Some(c) => format!("unexpected \"{c}\" expecting {expecting}"),
            None => format!("unexpected end of input expecting {expecting}"),
        }
    }
    /// An identifier: a double-quoted name (with `\"` and `\\` escapes) or a run of name characters.
    fn ident(&mut self) -> Result<String, GrammarError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == '-' {
                if self.rest()[1..].starts_with('>') {
                    break;
                }
                self.pos += 1;
                continue;
            }
            if !is_ident_char(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        let name = self.s[start..self.pos].trim();
        if name.is_empty() {
            return Err(self.unexpected("field name (* or [a..z0..9_$])"));
        }
        Ok(name.to_string())
    }
    fn quoted(&mut self) -> Result<String, GrammarError> {
        self.expect("\"")?;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err("unexpected end of input expecting closing double quote".into());
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    if let Some(n) = self.peek() {
                        self.pos += n.len_utf8();
                        out.push(n);
                    }
                }
                _ => out.push(c),
            }
        }
    }
    /// A cast type name: letters, digits, `_`, optionally followed by `[]`.
    fn cast(&mut self) -> Result<String, GrammarError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start {
            return Err(self.unexpected("cast type name"));
        }
        while self.eat("[]") {}
        Ok(self.s[start..self.pos].to_string())
    }
    fn json_path(&mut self) -> Result<Vec<JsonOp>, GrammarError> {
        let mut path = Vec::new();
        loop {
            let double = if self.eat("->>") {
                true
            } else if self.eat("->") {
                false
            } else {
                break;
            };
            let raw = self.ident()?;
            let key = match raw.parse::<i64>() {
                Ok(i) => JsonKey::Index(i),
                Err(_) => JsonKey::Key(raw),
            };
            path.push(if double {
                JsonOp::Arrow2(key)
            } else {
                JsonOp::Arrow(key)
            });
        }
        Ok(path)
    }
    fn field(&mut self) -> Result<Field, GrammarError> {
        let name = self.ident()?;
        let json_path = self.json_path()?;
        Ok(Field { name, json_path })
    }
}

/// Parses the value of `select=`.
pub fn parse_select(s: &str) -> Result<Vec<SelectItem>, GrammarError> {
    let mut c = Cursor::new(s);
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let items = select_list(&mut c, 0)?;
    if !c.eof() {
        return Err(c.unexpected("\",\" or end of input"));
    }
    Ok(items)
}

const MAX_DEPTH: usize = 32;

fn select_list(c: &mut Cursor, depth: usize) -> Result<Vec<SelectItem>, GrammarError> {
    if depth > MAX_DEPTH {
        return Err("select is nested too deeply".into());
    }
    let mut items = vec![select_item(c, depth)?];
    while c.eat(",") {
        items.push(select_item(c, depth)?);
    }
    Ok(items)
}

fn select_item(c: &mut Cursor, depth: usize) -> Result<SelectItem, GrammarError> {
    if c.eat("*") {
        return Ok(SelectItem::Star);
    }
    if c.eat("...") {
        let name = c.ident()?;
        return embed_rest(c, None, name, true, depth);
    }
    let first = c.ident()?;
    let (alias, name) = if c.rest().starts_with(':') && !c.rest().starts_with("::") {
        c.pos += 1;
        (Some(first), c.ident()?)
    } else {
        (None, first)
    };
    if matches!(c.peek(), Some('!') | Some('(')) {
        // `count()` is the count aggregate, not an embed called "count".
        if name == "count" && c.eat("()") {
            let aggregate_cast = if c.eat("::") { Some(c.cast()?) } else { None };
            return Ok(SelectItem::Field {
                alias,
                field: None,
                cast: None,
                aggregate: Some(Aggregate::Count),
                aggregate_cast,
            });
        }
        return embed_rest(c, alias, name, false, depth);
    }
    let json_path = c.json_path()?;
    let field = Field { name, json_path };
    let cast = if c.eat("::") { Some(c.cast()?) } else { None };
    let mut aggregate = None;
    let mut aggregate_cast = None;
    if c.rest().starts_with('.') {
        c.pos += 1;
        let start = c.pos;
        while c.peek().is_some_and(|ch| ch.is_ascii_alphabetic()) {
            c.pos += 1;
        }
        let word = &c.s[start..c.pos];
        let agg = Aggregate::parse(word)
            .ok_or_else(|| format!("unknown aggregate function \"{word}\""))?;
        c.expect("()")?;
        aggregate = Some(agg);
        if c.eat("::") {
            aggregate_cast = Some(c.cast()?);
        }
    }
    Ok(SelectItem::Field {
        alias,
        field: Some(field),
        cast,
        aggregate,
        aggregate_cast,
    })
}

fn embed_rest(
    c: &mut Cursor,
    alias: Option<String>,
    name: String,
    spread: bool,
    depth: usize,
) -> Result<SelectItem, GrammarError> {
    let mut hint = None;
    let mut join = None;
    while c.eat("!") {
        let word = c.ident()?;
        match word.as_str() {
            "inner" => join = Some(JoinType::Inner),
            "left" => join = Some(JoinType::Left),
            _ if hint.is_none() => hint = Some(word),
            _ => return Err(format!("more than one hint for \"{name}\"")),
        }
    }
    c.expect("(")?;
    let select = if c.rest().starts_with(')') {
        Vec::new()
    } else {
        select_list(c, depth + 1)?
    };
    c.expect(")")?;
    Ok(SelectItem::Embed {
        alias,
        name,
        hint,
        join,
        spread,
        select,
    })
}

/// Parses a filter key's field part (`col`, `col->a->>b`).
pub fn parse_field(s: &str) -> Result<Field, GrammarError> {
    let mut c = Cursor::new(s);
    let f = c.field()?;
    if !c.eof() {
        return Err(c.unexpected("\"->\", \"->>\" or end of input"));
    }
    Ok(f)
}

/// Parses the value side of a top-level filter, e.g. `not.in.(1,2)`. The value after the
/// operator is taken verbatim (no unquoting), as PostgREST does outside logic trees.
pub fn parse_filter(field: Field, v: &str) -> Result<Filter, GrammarError> {
    let mut c = Cursor::new(v);
    let (negated, op) = operation(&mut c, false)?;
    Ok(Filter { field, negated, op })
}

fn operation(c: &mut Cursor, in_tree: bool) -> Result<(bool, Operation), GrammarError> {
    let negated = c.eat("not.");
    let start = c.pos;
    while c
        .peek()
        .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
    {
        c.pos += 1;
    }
    let word = c.s[start..c.pos].to_string();
    let op = match word.as_str() {
        "in" => {
            c.expect(".")?;
            c.expect("(")?;
            let items = list_items(c, ')')?;
            Operation::In(items)
        }
        "is" => {
            c.expect(".")?;
            let v = if in_tree {
                tree_value(c)?
            } else {
                c.rest().to_string()
            };
            if !in_tree {
                c.pos = c.s.len();
            }
            let is = match v.to_ascii_lowercase().as_str() {
                "null" => IsValue::Null,
                "not_null" => IsValue::NotNull,
                "true" => IsValue::True,
                "false" => IsValue::False,
                "unknown" => IsValue::Unknown,
                _ => {
                    return Err(format!(
                        "unexpected \"{v}\" expecting null, not_null, true, false or unknown"
                    ));
                }
            };
            Operation::Is(is)
        }
        "fts" | "plfts" | "phfts" | "wfts" => {
            let kind = match word.as_str() {
                "fts" => FtsKind::Fts,
                "plfts" => FtsKind::Plfts,
                "phfts" => FtsKind::Phfts,
                _ => FtsKind::Wfts,
            };
            let config = if c.eat("(") {
                let start = c.pos;
                while c.peek().is_some_and(|ch| ch.is_alphanumeric() || ch == '_') {
                    c.pos += 1;
                }
                let cfg = c.s[start..c.pos].to_string();
                c.expect(")")?;
                if cfg.is_empty() {
                    return Err("empty text search configuration".into());
                }
                Some(cfg)
            } else {
                None
            };
            c.expect(".")?;
            let value = value_rest(c, in_tree)?;
            Operation::Fts {
                kind,
                config,
                value,
            }
        }
        _ => {
            let Some(op) = SimpleOp::parse(&word) else {
                return Err(if word.is_empty() {
                    c.unexpected("operator (eq, gt, ...)")
                } else {
                    format!("unknown operator \"{word}\"")
                });
            };
            let quantifier = if c.eat("(any)") {
                Some(Quantifier::Any)
            } else if c.eat("(all)") {
                Some(Quantifier::All)
            } else {
                None
            };
            if quantifier.is_some() && !op.quantifiable() {
                return Err(format!(
                    "operator \"{word}\" does not accept (any) or (all)"
                ));
            }
            c.expect(".")?;
            let value = value_rest(c, in_tree)?;
            Operation::Simple {
                op,
                quantifier,
                value,
            }
        }
    };
    Ok((negated, op))
}

fn value_rest(c: &mut Cursor, in_tree: bool) -> Result<String, GrammarError> {
    if in_tree {
        tree_value(c)
    } else {
        let v = c.rest().to_string();
        c.pos = c.s.len();
        Ok(v)
    }
}

/// A value inside `or=(…)`: a double-quoted string, a `{…}` or `(…)` group taken verbatim, or
/// characters up to the next `,` or `)`.
fn tree_value(c: &mut Cursor) -> Result<String, GrammarError> {
    if c.peek() == Some('"') {
        return c.quoted();
    }
    let start = c.pos;
    let mut depth = 0i32;
    while let Some(ch) = c.peek() {
        match ch {
            '{' | '(' => depth += 1,
            '}' | ')' if depth > 0 => depth -= 1,
            ',' | ')' if depth == 0 => break,
            _ => {}
        }
        c.pos += ch.len_utf8();
    }
    Ok(c.s[start..c.pos].to_string())
}

/// Items of an `in.(…)` list or a `{…}` array: comma separated, optionally double-quoted.
fn list_items(c: &mut Cursor, close: char) -> Result<Vec<String>, GrammarError> {
    let mut items = Vec::new();
    if c.eat(&close.to_string()) {
        return Ok(items);
    }
    loop {
        if c.peek() == Some('"') {
            items.push(c.quoted()?);
        } else {
            let start = c.pos;
            while c.peek().is_some_and(|ch| ch != ',' && ch != close) {
                c.pos += c.peek().map_or(1, char::len_utf8);
            }
            items.push(c.s[start..c.pos].to_string());
        }
        if c.eat(",") {
            continue;
        }
        c.expect(&close.to_string())?;
        return Ok(items);
    }
}

/// Parses a `{a,b,"c,d"}` list as `(any)`/`(all)` operands take it.
pub fn parse_brace_list(v: &str) -> Result<Vec<String>, GrammarError> {
    let mut c = Cursor::new(v);
    c.expect("{")?;
    let items = list_items(&mut c, '}')?;
    if !c.eof() {
        return Err(c.unexpected("end of input"));
    }
    Ok(items)
}

/// Parses the value of `or=`/`and=` (the parenthesised list) into a tree rooted at `op`.
pub fn parse_logic(op: LogicOp, negated: bool, v: &str) -> Result<LogicTree, GrammarError> {
    let mut c = Cursor::new(v);
    let children = logic_children(&mut c, 0)?;
    if !c.eof() {
        return Err(c.unexpected("end of input"));
    }
    Ok(LogicTree::Expr {
        negated,
        op,
        children,
    })
}

fn logic_children(c: &mut Cursor, depth: usize) -> Result<Vec<LogicTree>, GrammarError> {
    if depth > MAX_DEPTH {
        return Err("logic tree is nested too deeply".into());
    }
    c.expect("(")?;
    let mut children = Vec::new();
    loop {
        children.push(logic_item(c, depth)?);
        if c.eat(",") {
            continue;
        }
        c.expect(")")?;
        return Ok(children);
    }
}

fn logic_item(c: &mut Cursor, depth: usize) -> Result<LogicTree, GrammarError> {
    let save = c.pos;
    let negated = c.eat("not.");
    for (word, op) in [("and(", LogicOp::And), ("or(", LogicOp::Or)] {
        if c.rest().starts_with(word) {
            c.pos += word.len() - 1;
            let children = logic_children(c, depth + 1)?;
            return Ok(LogicTree::Expr {
                negated,
                op,
                children,
            });
        }
    }
    c.pos = save;
    let field = c.field()?;
    c.expect(".")?;
    let (negated, op) = operation(c, true)?;
    Ok(LogicTree::Filter(Filter { field, negated, op }))
}

/// Parses the value of `order=`.
pub fn parse_order(s: &str) -> Result<Vec<OrderTerm>, GrammarError> {
    let mut c = Cursor::new(s);
    let mut terms = Vec::new();
    loop {
        let first = c.ident()?;
        let (relation, field) = if c.eat("(") {
            let f = c.field()?;
            c.expect(")")?;
            (Some(first), f)
        } else {
            (
                None,
                Field {
                    name: first,
                    json_path: c.json_path()?,
                },
            )
        };
        let mut term = OrderTerm {
            relation,
            field,
            direction: None,
            nulls: None,
        };
        while c.eat(".") {
            let start = c.pos;
            while c.peek().is_some_and(|ch| ch.is_ascii_alphabetic()) {
                c.pos += 1;
            }
            match &c.s[start..c.pos] {
                "asc" if term.direction.is_none() => term.direction = Some(Direction::Asc),
                "desc" if term.direction.is_none() => term.direction = Some(Direction::Desc),
                "nullsfirst" if term.nulls.is_none() => term.nulls = Some(Nulls::First),
                "nullslast" if term.nulls.is_none() => term.nulls = Some(Nulls::Last),
                w => {
                    return Err(format!(
                        "unexpected \"{w}\" expecting asc, desc, nullsfirst or nullslast"
                    ));
                }
            }
        }
        terms.push(term);
        if c.eof() {
            return Ok(terms);
        }
        c.expect(",")?;
    }
}

/// Splits a query key like `rel.sub.col` into its embed path and last segment, ignoring dots
/// inside double quotes (where `\"` is a quote, not the end of the name).
pub fn split_key(k: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for ch in k.chars() {
        if escaped {
            escaped = false;
            cur.push(ch);
            continue;
        }
        match ch {
            '\\' if quoted => {
                escaped = true;
                cur.push(ch);
            }
            '"' => {
                quoted = !quoted;
                cur.push(ch);
            }
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    parts.push(cur);
    parts
}

#[cfg(test)]
#[path = "grammar_props.rs"]
mod props;
