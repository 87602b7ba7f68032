//! The typed-change stage: keeps the relation and type metadata pgoutput sends and turns row
//! messages into [`Change`]s carrying their table, transaction position and JSON-typed values.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::values::{type_name, typed_value};
use super::{DecodeError, OldTuple, PgOutput, Relation, ReplicaIdentity, Tuple, TupleValue};
use crate::realtime::lsn::Lsn;

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 00:00:00 UTC).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

fn pg_timestamp(micros: i64) -> Result<DateTime<Utc>, DecodeError> {
    micros
        .checked_add(PG_EPOCH_OFFSET_MICROS)
        .and_then(DateTime::from_timestamp_micros)
        .ok_or(DecodeError::TimestampOutOfRange(micros))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
}

impl ChangeKind {
    /// The event name realtime-js uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "INSERT",
            ChangeKind::Update => "UPDATE",
            ChangeKind::Delete => "DELETE",
        }
    }
}

/// A column as realtime-js lists it: name and type name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// `pg_type.typname` (`int4`, `_text`, or a user type's name).
    pub type_name: String,
    pub type_oid: u32,
    /// Part of the table's primary key (as the catalog says; without [`RelationFacts`], the
    /// replica identity key pgoutput flags). What a DELETE reveals under RLS and what finds a row.
    pub key: bool,
}

/// What the catalog says of a relation beyond what pgoutput sends. Under `REPLICA IDENTITY FULL`
/// pgoutput flags every column as key, so the primary key must come from here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelationFacts {
    /// The primary key's columns; empty when the table has none.
    pub primary_key: Vec<String>,
    /// Row-level security is on for the table: old rows then reveal only their key.
    pub row_security: bool,
}

/// One row change of a committed transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub schema: String,
    pub table: String,
    pub kind: ChangeKind,
    /// LSN of the transaction's commit record; with `index_in_tx` it orders and identifies
    /// every change of the stream.
    pub commit_lsn: Lsn,
    pub commit_timestamp: DateTime<Utc>,
    /// Position of this change among its transaction's changes, from 0.
    pub index_in_tx: u32,
    /// The transaction's id (32-bit, as pgoutput's Begin carries it); 0 when unknown (a change
    /// read back from an older log entry). Tells when the commit is visible to other sessions.
    pub xid: u32,
    /// Shared by every change of the relation until it is described again.
    pub columns: Arc<[ColumnInfo]>,
    /// The new row (empty for deletes). Unchanged TOASTed columns are filled from the old
    /// row when the WAL carried one, else left out and named in `unchanged_toast`.
    pub record: Map<String, Value>,
    /// The old row as the replica identity provides it: key columns only (`K`), the whole row
    /// (`O`, identity full), or `None` when the WAL carried no old values.
    pub old_record: Option<Map<String, Value>>,
    /// Columns whose new value was not sent because it is an unchanged TOASTed value.
    pub unchanged_toast: Vec<String>,
    /// Row-level security was on for the table: subscribers get only the key of `old_record`
    /// (true when unknown, the safe side).
    pub row_security: bool,
}

/// Tables emptied by one `TRUNCATE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Truncated {
    /// (schema, table) of each truncated relation.
    pub tables: Vec<(String, String)>,
    pub cascade: bool,
    pub restart_identity: bool,
    pub commit_lsn: Lsn,
    pub commit_timestamp: DateTime<Utc>,
    pub index_in_tx: u32,
}

/// What the typed stage produces.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Begin {
        final_lsn: Lsn,
        commit_timestamp: DateTime<Utc>,
        xid: u32,
    },
    Change(Box<Change>),
    Truncate(Truncated),
    /// End of a transaction. Acknowledge `end_lsn` once all its changes are handled.
    Commit {
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_timestamp: DateTime<Utc>,
    },
}

/// A relation as the typed stage needs it, with type names resolved once.
#[derive(Debug, Clone)]
struct CachedRelation {
    schema: String,
    table: String,
    columns: Arc<[ColumnInfo]>,
    /// Per column, pgoutput's replica identity flag: which values a key-only old tuple carries.
    identity: Vec<bool>,
    row_security: bool,
}

#[derive(Debug, Clone)]
struct OpenTx {
    final_lsn: Lsn,
    xid: u32,
    timestamp: DateTime<Utc>,
    next_index: u32,
}

/// Turns pgoutput messages into [`Event`]s. One per replication connection: pgoutput describes
/// each relation once per connection, so a new connection needs a new decoder.
#[derive(Debug, Default)]
pub struct Decoder {
    relations: HashMap<u32, CachedRelation>,
    /// Catalog facts for relations, given by the caller before their `Relation` message.
    facts: HashMap<u32, RelationFacts>,
    /// Non-built-in types described by `Type` messages: oid → name.
    types: HashMap<u32, String>,
    tx: Option<OpenTx>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records what the catalog says of relation `id`; applies from its next `Relation` message.
    /// Without facts a relation keeps pgoutput's key flags and counts as under row security.
    pub fn set_facts(&mut self, id: u32, facts: RelationFacts) {
        self.facts.insert(id, facts);
    }

    /// Parses and applies one pgoutput message.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Option<Event>, DecodeError> {
        self.apply(PgOutput::parse(bytes)?)
    }

    /// Applies one message: metadata updates the caches and yields nothing; rows, truncates
    /// and transaction bounds yield an event.
    pub fn apply(&mut self, message: PgOutput) -> Result<Option<Event>, DecodeError> {
        match message {
            PgOutput::Begin(b) => {
                if self.tx.is_some() {
                    return Err(DecodeError::NestedBegin);
                }
                let timestamp = pg_timestamp(b.timestamp)?;
                self.tx = Some(OpenTx {
                    final_lsn: b.final_lsn,
                    xid: b.xid,
                    timestamp,
                    next_index: 0,
                });
                Ok(Some(Event::Begin {
                    final_lsn: b.final_lsn,
                    commit_timestamp: timestamp,
                    xid: b.xid,
                }))
            }
            PgOutput::Commit(c) => {
                self.tx
                    .take()
                    .ok_or(DecodeError::OutsideTransaction("commit"))?;
                Ok(Some(Event::Commit {
                    commit_lsn: c.commit_lsn,
                    end_lsn: c.end_lsn,
                    commit_timestamp: pg_timestamp(c.timestamp)?,
                }))
            }
            PgOutput::Relation(r) => {
                let cached = self.cache(&r);
                self.relations.insert(r.id, cached);
                Ok(None)
            }
            PgOutput::Type(t) => {
                self.types.insert(t.id, t.name);
                Ok(None)
            }
            PgOutput::Origin(_) | PgOutput::Message(_) => Ok(None),
            PgOutput::Insert(i) => {
                self.change(i.relation_id, ChangeKind::Insert, None, Some(i.new))
            }
            PgOutput::Update(u) => {
                self.change(u.relation_id, ChangeKind::Update, u.old, Some(u.new))
            }
            PgOutput::Delete(d) => {
                self.change(d.relation_id, ChangeKind::Delete, Some(d.old), None)
            }
            PgOutput::Truncate(t) => {
                let tables = t
                    .relation_ids
                    .iter()
                    .map(|id| {
                        let rel = self
                            .relations
                            .get(id)
                            .ok_or(DecodeError::UnknownRelation(*id))?;
                        Ok((rel.schema.clone(), rel.table.clone()))
                    })
                    .collect::<Result<Vec<_>, DecodeError>>()?;
                let tx = self
                    .tx
                    .as_mut()
                    .ok_or(DecodeError::OutsideTransaction("truncate"))?;
                let index_in_tx = tx.next_index;
                tx.next_index = tx.next_index.saturating_add(1);
                Ok(Some(Event::Truncate(Truncated {
                    tables,
                    cascade: t.cascade,
                    restart_identity: t.restart_identity,
                    commit_lsn: tx.final_lsn,
                    commit_timestamp: tx.timestamp,
                    index_in_tx,
                })))
            }
        }
    }

    /// Resolves type names now: pgoutput sends a relation's `Type` messages before it.
    fn cache(&self, rel: &Relation) -> CachedRelation {
        let facts = self.facts.get(&rel.id);
        let columns = rel
            .columns
            .iter()
            .map(|c| ColumnInfo {
                name: c.name.clone(),
                type_name: self
                    .types
                    .get(&c.type_oid)
                    .cloned()
                    .or_else(|| type_name(c.type_oid))
                    .unwrap_or_else(|| c.type_oid.to_string()),
                type_oid: c.type_oid,
                key: match facts {
                    Some(f) if !f.primary_key.is_empty() => f.primary_key.contains(&c.name),
                    // No primary key: identity FULL flags every column, which is no key at all.
                    Some(_) if rel.replica_identity == ReplicaIdentity::Full => false,
                    _ => c.key,
                },
            })
            .collect();
        CachedRelation {
            schema: schema_name(rel),
            table: rel.name.clone(),
            columns,
            identity: rel.columns.iter().map(|c| c.key).collect(),
            row_security: facts.is_none_or(|f| f.row_security),
        }
    }

    fn change(
        &mut self,
        relation_id: u32,
        kind: ChangeKind,
        old: Option<OldTuple>,
        new: Option<Tuple>,
    ) -> Result<Option<Event>, DecodeError> {
        let rel = self
            .relations
            .get(&relation_id)
            .ok_or(DecodeError::UnknownRelation(relation_id))?;
        let columns = Arc::clone(&rel.columns);
        let row_security = rel.row_security;

        let (old_values, key_only) = match &old {
            Some(OldTuple::Key(t)) => (Some(t), true),
            Some(OldTuple::Full(t)) => (Some(t), false),
            None => (None, false),
        };
        for tuple in old_values.iter().copied().chain(new.as_ref()) {
            if tuple.0.len() != columns.len() {
                return Err(DecodeError::ColumnCountMismatch {
                    relation: relation_id,
                    expected: columns.len(),
                    got: tuple.0.len(),
                });
            }
        }

        let old_record = match old_values {
            Some(tuple) => {
                let mut map = Map::new();
                for ((col, value), identity) in columns.iter().zip(&tuple.0).zip(&rel.identity) {
                    // A key tuple carries nulls for non-key columns: they say nothing.
                    if key_only && !identity {
                        continue;
                    }
                    if let Some(v) = json_value(col, value)? {
                        map.insert(col.name.clone(), v);
                    }
                }
                Some(map)
            }
            None => None,
        };

        let mut record = Map::new();
        let mut unchanged_toast = Vec::new();
        if let Some(tuple) = &new {
            for (i, (col, value)) in columns.iter().zip(&tuple.0).enumerate() {
                match json_value(col, value)? {
                    Some(v) => {
                        record.insert(col.name.clone(), v);
                    }
                    None => {
                        // Unchanged TOAST: the full old row has the value, if the WAL carried it.
                        let from_old = match (&old, old_record.as_ref()) {
                            (Some(OldTuple::Full(t)), Some(map))
                                if t.0[i] != TupleValue::UnchangedToast =>
                            {
                                map.get(&col.name).cloned()
                            }
                            _ => None,
                        };
                        match from_old {
                            Some(v) => {
                                record.insert(col.name.clone(), v);
                            }
                            None => unchanged_toast.push(col.name.clone()),
                        }
                    }
                }
            }
        }

        let schema = rel.schema.clone();
        let table = rel.table.clone();
        let tx = self
            .tx
            .as_mut()
            .ok_or(DecodeError::OutsideTransaction("row change"))?;
        let index_in_tx = tx.next_index;
        tx.next_index = tx.next_index.saturating_add(1);
        Ok(Some(Event::Change(Box::new(Change {
            schema,
            table,
            kind,
            commit_lsn: tx.final_lsn,
            commit_timestamp: tx.timestamp,
            index_in_tx,
            xid: tx.xid,
            columns,
            record,
            old_record,
            unchanged_toast,
            row_security,
        }))))
    }
}

/// pgoutput sends "" for pg_catalog.
fn schema_name(rel: &Relation) -> String {
    if rel.namespace.is_empty() {
        "pg_catalog".to_string()
    } else {
        rel.namespace.clone()
    }
}

/// `None` for an unchanged TOASTed value (not sent).
fn json_value(col: &ColumnInfo, value: &TupleValue) -> Result<Option<Value>, DecodeError> {
    match value {
        TupleValue::Null => Ok(Some(Value::Null)),
        TupleValue::UnchangedToast => Ok(None),
        TupleValue::Text(text) => Ok(Some(typed_value(col.type_oid, text))),
        TupleValue::Binary(_) => Err(DecodeError::BinaryValue {
            column: col.name.clone(),
        }),
    }
}
