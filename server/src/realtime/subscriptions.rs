//! Which `postgres_changes` subscriptions want a change, pure (no I/O): parses the binding
//! realtime-js sends in `phx_join` (`event`, `schema`, `table`, `filter` such as `id=eq.5` or
//! `status=in.(open,"on hold")`) and matches [`Change`]s against it, comparing values by the
//! column's type the way PostgreSQL would (numbers exactly as decimals, timestamps as instants,
//! uuids case-insensitively, text bytewise as under the C collation).
//!
//! Matching follows Supabase's rules: a null column value matches no filter (SQL's unknown,
//! also for `neq`), a filter on a column the change does not carry matches nothing, and a
//! DELETE matches a filter only on a replica identity key column — deletes reveal nothing but
//! the key, so a filter must not reveal other old values either.
//!
//! Rejects: filters without `=`, operators other than eq, neq, lt, lte, gt, gte, in (each may
//! be prefixed with `not.`), `in` lists not wrapped in parentheses or badly quoted, empty
//! column, schema or table names, and unknown events.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use serde_json::Value;

use super::decode::{Change, ChangeKind, typed_value};

/// Why a `postgres_changes` binding was refused. The text is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The filter has no `=` between column and condition.
    #[error("Error parsing `filter` params: expected column=op.value, got {0:?}")]
    MissingEquals(String),
    #[error("Error parsing `filter` params: no column in {0:?}")]
    EmptyColumn(String),
    /// The condition is not `op.value` with a known op.
    #[error(
        "Error parsing `filter` params: unknown operator in {0:?} (expected eq, neq, lt, lte, gt, gte or in)"
    )]
    UnknownOperator(String),
    /// An `in` value not of the form `(a,b,...)` or with broken quoting.
    #[error(
        "Error parsing `filter` params: `in` filter value must be a parenthesized list, got {0:?}"
    )]
    BadList(String),
    #[error("unknown event {0:?} (expected *, INSERT, UPDATE or DELETE)")]
    UnknownEvent(String),
    #[error("schema must not be empty")]
    EmptySchema,
    #[error("table must not be empty")]
    EmptyTable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
}

impl FilterOp {
    fn parse(s: &str) -> Option<FilterOp> {
        Some(match s {
            "eq" => FilterOp::Eq,
            "neq" => FilterOp::Neq,
            "lt" => FilterOp::Lt,
            "lte" => FilterOp::Lte,
            "gt" => FilterOp::Gt,
            "gte" => FilterOp::Gte,
            "in" => FilterOp::In,
            _ => return None,
        })
    }
}

/// One `column=[not.]op.value` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeFilter {
    pub column: String,
    pub negate: bool,
    pub op: FilterOp,
    /// One value, or for `in` the list (`None` for an unquoted NULL element, which matches nothing).
    pub values: Vec<Option<String>>,
}

impl ChangeFilter {
    /// Parses realtime-js's filter string.
    ///
    /// ```
    /// use doska::realtime::subscriptions::{ChangeFilter, FilterOp};
    /// let f = ChangeFilter::parse("status=in.(open,\"on hold\")").unwrap();
    /// assert_eq!((f.column.as_str(), f.op), ("status", FilterOp::In));
    /// assert_eq!(f.values, [Some("open".to_string()), Some("on hold".to_string())]);
    /// assert!(ChangeFilter::parse("id=like.5").is_err());
    /// ```
    pub fn parse(filter: &str) -> Result<ChangeFilter, SubscriptionError> {
        let (column, condition) = filter
            .split_once('=')
            .ok_or_else(|| SubscriptionError::MissingEquals(filter.to_string()))?;
        if column.is_empty() {
            return Err(SubscriptionError::EmptyColumn(filter.to_string()));
        }
        let unknown = || SubscriptionError::UnknownOperator(filter.to_string());
        let (negate, condition) = match condition.strip_prefix("not.") {
            Some(rest) => (true, rest),
            None => (false, condition),
        };
        let (op, value) = condition.split_once('.').ok_or_else(unknown)?;
        let op = FilterOp::parse(op).ok_or_else(unknown)?;
        let values = match op {
            FilterOp::In => {
                parse_list(value).ok_or_else(|| SubscriptionError::BadList(value.to_string()))?
            }
            _ => vec![Some(value.to_string())],
        };
        Ok(ChangeFilter {
            column: column.to_string(),
            negate,
            op,
            values,
        })
    }

    /// Whether `change` passes. See the module docs for nulls, missing columns and deletes.
    pub fn matches(&self, change: &Change) -> bool {
        let Some(column) = change.columns.iter().find(|c| c.name == self.column) else {
            return false;
        };
        let row = match change.kind {
            ChangeKind::Insert | ChangeKind::Update => Some(&change.record),
            ChangeKind::Delete if column.key => change.old_record.as_ref(),
            ChangeKind::Delete => None,
        };
        let Some(value) = row.and_then(|r| r.get(&self.column)) else {
            return false;
        };
        let outcome = match self.op {
            FilterOp::In => {
                // SQL: true if any element is equal, unknown if none is and some was unknown.
                let mut unknown = false;
                let mut found = false;
                for v in self.values.iter().flatten() {
                    match compare(column.type_oid, value, v).equal() {
                        Some(true) => found = true,
                        Some(false) => {}
                        None => unknown = true,
                    }
                }
                if found {
                    Some(true)
                } else if unknown || self.values.iter().all(Option::is_none) {
                    None
                } else {
                    Some(false)
                }
            }
            op => {
                let cmp = compare(
                    column.type_oid,
                    value,
                    self.values.first().and_then(|v| v.as_deref()).unwrap_or(""),
                );
                match op {
                    FilterOp::Eq => cmp.equal(),
                    FilterOp::Neq => cmp.equal().map(|eq| !eq),
                    FilterOp::Lt => cmp.ordering().map(|o| o == Ordering::Less),
                    FilterOp::Lte => cmp.ordering().map(|o| o != Ordering::Greater),
                    FilterOp::Gt => cmp.ordering().map(|o| o == Ordering::Greater),
                    FilterOp::Gte => cmp.ordering().map(|o| o != Ordering::Less),
                    FilterOp::In => unreachable!("handled above"),
                }
            }
        };
        // Unknown (null, or a value that is not of the column's type) never matches, negated or not.
        outcome.is_some_and(|hit| hit != self.negate)
    }
}

/// `(a,"b c",NULL)` → `[a, b c, None]`, with PostgreSQL array-literal quoting, since Supabase
/// turns the list into an array literal.
fn parse_list(value: &str) -> Option<Vec<Option<String>>> {
    let inner = value.strip_prefix('(')?.strip_suffix(')')?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => s.push(chars.next()?),
                    c => s.push(c),
                }
            }
            out.push(Some(s));
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '"' || c == '\\' {
                    return None;
                }
                s.push(c);
                chars.next();
            }
            let s = s.trim();
            if s.is_empty() {
                return None;
            }
            out.push(if s.eq_ignore_ascii_case("null") {
                None
            } else {
                Some(s.to_string())
            });
        }
        match chars.next() {
            None => return Some(out),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// How a record value relates to a filter value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    /// SQL's unknown: a null value, or filter text that is not a value of the column's type.
    Unknown,
    Ordered(Ordering),
    /// Types with equality but no useful order here (json, jsonb, arrays).
    Unordered {
        equal: bool,
    },
}

impl Comparison {
    fn equal(self) -> Option<bool> {
        match self {
            Comparison::Unknown => None,
            Comparison::Ordered(o) => Some(o == Ordering::Equal),
            Comparison::Unordered { equal } => Some(equal),
        }
    }

    fn ordering(self) -> Option<Ordering> {
        match self {
            Comparison::Ordered(o) => Some(o),
            _ => None,
        }
    }
}

impl From<Option<Ordering>> for Comparison {
    fn from(o: Option<Ordering>) -> Self {
        o.map_or(Comparison::Unknown, Comparison::Ordered)
    }
}

/// Compares a record value with a filter's text by the column type.
fn compare(type_oid: u32, value: &Value, filter: &str) -> Comparison {
    let text = match value {
        Value::Null => return Comparison::Unknown,
        Value::String(s) if !matches!(type_oid, 114 | 3802) => s.as_str(),
        Value::Number(_) | Value::Bool(_) if !matches!(type_oid, 114 | 3802) => {
            return compare(type_oid, &Value::String(value.to_string()), filter);
        }
        // json, jsonb and arrays: equality of the typed documents, as PostgreSQL's `=` on them.
        _ => {
            return Comparison::Unordered {
                equal: typed_value(type_oid, filter) == *value,
            };
        }
    };
    match type_oid {
        20 | 21 | 23 | 26 | 700 | 701 | 1700 => decimal_cmp(text, filter).into(),
        16 => parse_bool(text)
            .zip(parse_bool(filter))
            .map(|(a, b)| a.cmp(&b))
            .into(),
        // Case-insensitive, compared in place: every binding of a table meets every change,
        // so this runs subscribers × changes times and must not allocate.
        2950 => Comparison::Ordered(
            text.bytes()
                .map(|b| b.to_ascii_lowercase())
                .cmp(filter.trim().bytes().map(|b| b.to_ascii_lowercase())),
        ),
        1184 => parse_timestamptz(text)
            .zip(parse_timestamptz(filter))
            .map(|(a, b)| a.cmp(&b))
            .into(),
        1114 => parse_timestamp(text)
            .zip(parse_timestamp(filter))
            .map(|(a, b)| a.cmp(&b))
            .into(),
        1082 => parse_date(text)
            .zip(parse_date(filter))
            .map(|(a, b)| a.cmp(&b))
            .into(),
        _ => Comparison::Ordered(text.cmp(filter)),
    }
}

/// PostgreSQL's boolean input spellings.
fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn iso_to_pg(s: &str) -> String {
    let s = s.trim().replacen('T', " ", 1);
    match s.strip_suffix('Z') {
        Some(rest) => format!("{rest}+00:00"),
        None => s,
    }
}

fn parse_timestamptz(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_str(&iso_to_pg(s), "%Y-%m-%d %H:%M:%S%.f%#z").ok()
}

fn parse_timestamp(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(&iso_to_pg(s), "%Y-%m-%d %H:%M:%S%.f").ok()
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

/// A decimal number normalized for exact comparison: value = ±0.d1d2d3… × 10^exp with d1 ≠ 0.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exp: i64,
}

impl Decimal {
    fn parse(s: &str) -> Option<Decimal> {
        let s = s.trim();
        let (negative, s) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exponent) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
            None => (s, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
        let mut exp = int.len() as i64 + i64::from(exponent);
        let leading = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..leading);
        exp -= leading as i64;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            return Some(Decimal {
                negative: false,
                digits,
                exp: 0,
            });
        }
        Some(Decimal {
            negative,
            digits,
            exp,
        })
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => self
                .exp
                .cmp(&other.exp)
                .then_with(|| self.digits.cmp(&other.digits)),
        }
    }
}

fn decimal_cmp(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (Decimal::parse(a)?, Decimal::parse(b)?);
    Some(match (a.negative, b.negative) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => a.cmp_magnitude(&b),
        (true, true) => b.cmp_magnitude(&a),
    })
}

/// Which events a binding wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Only(ChangeKind),
}

impl EventFilter {
    pub fn parse(event: &str) -> Result<EventFilter, SubscriptionError> {
        match event.to_ascii_uppercase().as_str() {
            "*" => Ok(EventFilter::All),
            "INSERT" => Ok(EventFilter::Only(ChangeKind::Insert)),
            "UPDATE" => Ok(EventFilter::Only(ChangeKind::Update)),
            "DELETE" => Ok(EventFilter::Only(ChangeKind::Delete)),
            _ => Err(SubscriptionError::UnknownEvent(event.to_string())),
        }
    }
}

/// One `postgres_changes` binding of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresChanges {
    pub event: EventFilter,
    /// `*` means every schema.
    pub schema: String,
    /// `None` (absent or `*`) means every table of the schema.
    pub table: Option<String>,
    pub filter: Option<ChangeFilter>,
}

impl PostgresChanges {
    /// From the fields of a realtime-js binding (`{event, schema, table?, filter?}`).
    pub fn parse(
        event: &str,
        schema: &str,
        table: Option<&str>,
        filter: Option<&str>,
    ) -> Result<PostgresChanges, SubscriptionError> {
        if schema.is_empty() {
            return Err(SubscriptionError::EmptySchema);
        }
        let table = match table {
            None | Some("*") => None,
            Some("") => return Err(SubscriptionError::EmptyTable),
            Some(t) => Some(t.to_string()),
        };
        Ok(PostgresChanges {
            event: EventFilter::parse(event)?,
            schema: schema.to_string(),
            table,
            filter: filter
                .filter(|f| !f.is_empty())
                .map(ChangeFilter::parse)
                .transpose()?,
        })
    }

    pub fn matches(&self, change: &Change) -> bool {
        (self.schema == "*" || self.schema == change.schema)
            && self.table.as_ref().is_none_or(|t| *t == change.table)
            && match self.event {
                EventFilter::All => true,
                EventFilter::Only(kind) => kind == change.kind,
            }
            && self.filter.as_ref().is_none_or(|f| f.matches(change))
    }
}

/// (schema, table) of a bucket of bindings.
type TableKey = (String, Option<String>);

/// Column types whose `eq` filter [`compare`]s the text exactly or, for uuid, ASCII
/// case-insensitively: a value equal to a filter's has the same [`fold`], so such bindings can
/// be found by it.
fn foldable(type_oid: u32) -> bool {
    matches!(type_oid, 19 | 25 | 1043 | 2950)
}

/// The index key of a value or filter of a [`foldable`] column.
fn fold(text: &str) -> String {
    text.trim().to_ascii_lowercase()
}

/// One binding of a bucket, numbered in insertion order.
#[derive(Debug, Clone)]
struct Entry<K> {
    seq: u64,
    key: K,
    binding: PostgresChanges,
}

/// The bindings of one (schema, table). `column=eq.value` bindings (the usual "my rows"
/// subscription) are indexed by column and folded value, so a change meets only those under
/// its own value — not every subscriber's — and each candidate is still tested in full.
#[derive(Debug, Clone)]
struct Bucket<K> {
    /// Tested against every change.
    scan: Vec<Entry<K>>,
    /// column → [`fold`]ed filter value → bindings.
    eq: HashMap<String, HashMap<String, Vec<Entry<K>>>>,
}

impl<K> Default for Bucket<K> {
    fn default() -> Self {
        Bucket {
            scan: Vec::new(),
            eq: HashMap::new(),
        }
    }
}

/// What a change offers an indexed column.
enum Probe {
    /// No value to compare (no such column, a delete's non-key column): nothing matches.
    Nothing,
    /// Only bindings under this folded value can match.
    Key(String),
    /// A type or value the index cannot fold: every binding on the column is tested.
    Every,
}

fn probe(change: &Change, column: &str) -> Probe {
    let Some(info) = change.columns.iter().find(|c| c.name == column) else {
        return Probe::Nothing;
    };
    let row = match change.kind {
        ChangeKind::Insert | ChangeKind::Update => Some(&change.record),
        ChangeKind::Delete if info.key => change.old_record.as_ref(),
        ChangeKind::Delete => None,
    };
    match row.and_then(|r| r.get(column)) {
        None => Probe::Nothing,
        Some(Value::String(text)) if foldable(info.type_oid) => Probe::Key(fold(text)),
        Some(_) => Probe::Every,
    }
}

impl<K: Eq> Bucket<K> {
    fn insert(&mut self, entry: Entry<K>) {
        let indexed = entry
            .binding
            .filter
            .as_ref()
            .and_then(|f| match &f.values[..] {
                [Some(value)] if f.op == FilterOp::Eq && !f.negate => {
                    Some((f.column.clone(), fold(value)))
                }
                _ => None,
            });
        match indexed {
            Some((column, value)) => self
                .eq
                .entry(column)
                .or_default()
                .entry(value)
                .or_default()
                .push(entry),
            None => self.scan.push(entry),
        }
    }

    fn remove(&mut self, key: &K) -> usize {
        let before = self.len();
        self.scan.retain(|e| e.key != *key);
        self.eq.retain(|_, by_value| {
            by_value.retain(|_, entries| {
                entries.retain(|e| e.key != *key);
                !entries.is_empty()
            });
            !by_value.is_empty()
        });
        before - self.len()
    }

    fn len(&self) -> usize {
        let indexed: usize = self
            .eq
            .values()
            .flat_map(HashMap::values)
            .map(Vec::len)
            .sum();
        self.scan.len() + indexed
    }

    /// Adds the (number, key) of every binding that wants `change` to `out`.
    fn matching<'a>(&'a self, change: &Change, out: &mut Vec<(u64, &'a K)>) {
        let mut test = |e: &'a Entry<K>| {
            if e.binding.matches(change) {
                out.push((e.seq, &e.key));
            }
        };
        self.scan.iter().for_each(&mut test);
        for (column, by_value) in &self.eq {
            match probe(change, column) {
                Probe::Nothing => {}
                Probe::Key(value) => by_value
                    .get(&value)
                    .into_iter()
                    .flatten()
                    .for_each(&mut test),
                Probe::Every => by_value.values().flatten().for_each(&mut test),
            }
        }
    }
}

/// All live bindings, keyed by whatever identifies a binding to its socket (e.g. connection,
/// channel and binding id), bucketed by table so a change only meets its table's bindings.
#[derive(Debug, Clone)]
pub struct SubscriptionSet<K> {
    /// (schema, table) → bindings; table `None` = whole-schema bindings, schema `*` = all.
    by_table: HashMap<TableKey, Bucket<K>>,
    /// The next binding's insertion number.
    next: u64,
}

impl<K> Default for SubscriptionSet<K> {
    fn default() -> Self {
        SubscriptionSet {
            by_table: HashMap::new(),
            next: 0,
        }
    }
}

impl<K: Clone + Eq + Hash> SubscriptionSet<K> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, key: K, binding: PostgresChanges) {
        let seq = self.next;
        self.next += 1;
        self.by_table
            .entry((binding.schema.clone(), binding.table.clone()))
            .or_default()
            .insert(Entry { seq, key, binding });
    }

    /// Removes every binding with this key; returns how many there were.
    pub fn remove(&mut self, key: &K) -> usize {
        let mut removed = 0;
        self.by_table.retain(|_, bucket| {
            removed += bucket.remove(key);
            bucket.len() > 0
        });
        removed
    }

    pub fn len(&self) -> usize {
        self.by_table.values().map(Bucket::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_table.is_empty()
    }

    /// Keys of the bindings that want `change`, each once, in insertion order per bucket.
    pub fn matching(&self, change: &Change) -> Vec<K> {
        let buckets = [
            (change.schema.clone(), Some(change.table.clone())),
            (change.schema.clone(), None),
            ("*".to_string(), Some(change.table.clone())),
            ("*".to_string(), None),
        ];
        let mut seen: HashSet<&K> = HashSet::new();
        let mut out = Vec::new();
        let mut hits = Vec::new();
        for bucket in &buckets {
            let Some(bucket) = self.by_table.get(bucket) else {
                continue;
            };
            hits.clear();
            bucket.matching(change, &mut hits);
            hits.sort_unstable_by_key(|&(seq, _)| seq);
            for &(_, key) in &hits {
                if seen.insert(key) {
                    out.push(key.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
