//! Decoding of the replication stream, pure (no I/O): pgoutput protocol version 1 bytes →
//! [`PgOutput`] messages (one parse per variant), then [`Decoder`] turns them into typed
//! [`Event`]s — [`Change`]s with JSON values typed by column type — using the relation and type
//! metadata pgoutput sends ahead of the rows.
//!
//! Rejects: unknown message tags (including the streaming messages of protocol 2+, which are
//! never requested), truncated or over-long messages, rows for relations never described, rows
//! whose column count disagrees with their relation, changes outside a transaction, and binary
//! column values (only the text format is requested). No input makes it panic.
//!
//! Hand-written on purpose: pgoutput v1 is a small fixed format, the crates that decode it come
//! tied to their own replication connection (doska has its own, see `replication`), and decoding it
//! here keeps the relation and type metadata the rows depend on in one owner.

mod changes;
mod values;

pub use changes::{Change, ChangeKind, ColumnInfo, Decoder, Event, RelationFacts, Truncated};
pub use values::{type_name, typed_value};

use super::lsn::Lsn;
use super::wire::{Reader, WireError};

/// Why bytes or messages could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message body is shorter than its fields or has a malformed string.
    #[error("pgoutput: {0}")]
    Wire(WireError),
    /// An empty message.
    #[error("pgoutput: empty message")]
    Empty,
    /// A message tag pgoutput v1 does not send.
    #[error("pgoutput: unknown message tag {:?}", char::from(*.0))]
    UnknownMessage(u8),
    /// A tuple column kind other than `n`, `u`, `t`, `b`.
    #[error("pgoutput: unknown column kind {:?}", char::from(*.0))]
    UnknownColumnKind(u8),
    /// An old-tuple marker other than `K` / `O` where one is required, or a missing `N`.
    #[error("pgoutput: unexpected tuple marker {:?}", char::from(*.0))]
    UnexpectedTupleMarker(u8),
    /// A negative length or count.
    #[error("pgoutput: negative length {0}")]
    NegativeLength(i64),
    /// Bytes left after a complete message.
    #[error("pgoutput: {0} bytes after the end of the message")]
    TrailingBytes(usize),
    /// A replica identity byte other than `d`, `n`, `f`, `i`.
    #[error("pgoutput: unknown replica identity {:?}", char::from(*.0))]
    UnknownReplicaIdentity(u8),
    /// A row for a relation no `Relation` message described.
    #[error("pgoutput: row for undescribed relation {0}")]
    UnknownRelation(u32),
    /// A row with a different number of columns than its relation.
    #[error("pgoutput: relation {relation} has {expected} columns, row has {got}")]
    ColumnCountMismatch {
        relation: u32,
        expected: usize,
        got: usize,
    },
    /// A row, truncate or commit arrived outside `Begin` … `Commit`.
    #[error("pgoutput: {0} outside a transaction")]
    OutsideTransaction(&'static str),
    /// A `Begin` arrived inside a transaction.
    #[error("pgoutput: begin inside a transaction")]
    NestedBegin,
    /// A binary column value; only text values are requested.
    #[error("pgoutput: binary value in column {column:?}")]
    BinaryValue { column: String },
    /// A timestamp outside the range chrono represents.
    #[error("pgoutput: timestamp {0} out of range")]
    TimestampOutOfRange(i64),
}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        DecodeError::Wire(e)
    }
}

/// One pgoutput (protocol version 1) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgOutput {
    Begin(Begin),
    Commit(Commit),
    Origin(Origin),
    Relation(Relation),
    Type(Type),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Truncate(Truncate),
    Message(Message),
}

impl PgOutput {
    /// Parses one whole message; trailing bytes are an error.
    pub fn parse(bytes: &[u8]) -> Result<PgOutput, DecodeError> {
        let mut r = Reader::new(bytes);
        let tag = r.u8().map_err(|_| DecodeError::Empty)?;
        let msg = match tag {
            b'B' => PgOutput::Begin(Begin::parse(&mut r)?),
            b'C' => PgOutput::Commit(Commit::parse(&mut r)?),
            b'O' => PgOutput::Origin(Origin::parse(&mut r)?),
            b'R' => PgOutput::Relation(Relation::parse(&mut r)?),
            b'Y' => PgOutput::Type(Type::parse(&mut r)?),
            b'I' => PgOutput::Insert(Insert::parse(&mut r)?),
            b'U' => PgOutput::Update(Update::parse(&mut r)?),
            b'D' => PgOutput::Delete(Delete::parse(&mut r)?),
            b'T' => PgOutput::Truncate(Truncate::parse(&mut r)?),
            b'M' => PgOutput::Message(Message::parse(&mut r)?),
            other => return Err(DecodeError::UnknownMessage(other)),
        };
        match r.remaining() {
            0 => Ok(msg),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Start of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01 UTC.
    pub timestamp: i64,
    pub xid: u32,
}

impl Begin {
    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Begin {
            final_lsn: Lsn(r.u64()?),
            timestamp: r.i64()?,
            xid: r.u32()?,
        })
    }
}

/// End of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub flags: u8,
    pub commit_lsn: Lsn,
    /// End of the commit record: the position to acknowledge once the transaction is handled.
    pub end_lsn: Lsn,
    pub timestamp: i64,
}

impl Commit {
    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Commit {
            flags: r.u8()?,
            commit_lsn: Lsn(r.u64()?),
            end_lsn: Lsn(r.u64()?),
            timestamp: r.i64()?,
        })
    }
}

/// The transaction was replicated into this server from `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub commit_lsn: Lsn,
    pub name: String,
}

impl Origin {
    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Origin {
            commit_lsn: Lsn(r.u64()?),
            name: r.cstr()?.to_string(),
        })
    }
}

/// `relreplident` of a table: which old values its updates and deletes carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// The primary key.
    Default,
    Nothing,
    /// The whole old row.
    Full,
    /// The columns of a chosen unique index.
    Index,
}

/// Describes a table before its first row in a stream (and again after it changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    /// Schema name; pgoutput sends "" for pg_catalog.
    pub namespace: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<RelationColumn>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity key.
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

impl Relation {
    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = r.u32()?;
        let namespace = r.cstr()?.to_string();
        let name = r.cstr()?.to_string();
        let replica_identity = match r.u8()? {
            b'd' => ReplicaIdentity::Default,
            b'n' => ReplicaIdentity::Nothing,
            b'f' => ReplicaIdentity::Full,
            b'i' => ReplicaIdentity::Index,
            other => return Err(DecodeError::UnknownReplicaIdentity(other)),
        };
        let n = count(r.i16()?.into())?;
        let mut columns = Vec::with_capacity(n);
        for _ in 0..n {
            columns.push(RelationColumn {
                key: r.u8()? & 1 == 1,
                name: r.cstr()?.to_string(),
                type_oid: r.u32()?,
                type_modifier: r.i32()?,
            });
        }
        Ok(Relation {
            id,
            namespace,
            name,
            replica_identity,
            columns,
        })
    }
}

/// Names a non-built-in data type used by a following relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    pub id: u32,
    pub namespace: String,
    pub name: String,
}

impl Type {
    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Type {
            id: r.u32()?,
            namespace: r.cstr()?.to_string(),
            name: r.cstr()?.to_string(),
        })
    }
}

/// One column value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    Null,
    /// A TOASTed value the update did not change, so it was not sent.
    UnchangedToast,
    /// The value in the type's text output form.
    Text(String),
    /// The value in the type's binary form (only with the `binary` option, which doska never sets).
    Binary(Vec<u8>),
}

/// A row: one value per relation column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple(pub Vec<TupleValue>);

impl Tuple {
    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = count(r.i16()?.into())?;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            values.push(match r.u8()? {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::UnchangedToast,
                kind @ (b't' | b'b') => {
                    let len = count(r.i32()?.into())?;
                    let raw = r.bytes(len)?;
                    if kind == b't' {
                        let offset = r.offset() - len;
                        let text = std::str::from_utf8(raw)
                            .map_err(|_| WireError::InvalidUtf8 { offset })?;
                        TupleValue::Text(text.to_string())
                    } else {
                        TupleValue::Binary(raw.to_vec())
                    }
                }
                other => return Err(DecodeError::UnknownColumnKind(other)),
            });
        }
        Ok(Tuple(values))
    }
}

/// The old values an update or delete carries, per the table's replica identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: only the identity key columns carry values; the rest are null.
    Key(Tuple),
    /// `O`: the whole old row (replica identity full).
    Full(Tuple),
}

impl OldTuple {
    fn parse_after(marker: u8, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match marker {
            b'K' => Ok(OldTuple::Key(Tuple::parse(r)?)),
            b'O' => Ok(OldTuple::Full(Tuple::parse(r)?)),
            other => Err(DecodeError::UnexpectedTupleMarker(other)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    pub relation_id: u32,
    pub new: Tuple,
}

impl Insert {
    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let relation_id = r.u32()?;
        expect_marker(r, b'N')?;
        Ok(Insert {
            relation_id,
            new: Tuple::parse(r)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub relation_id: u32,
    /// Present when the key changed (`K`) or the identity is full (`O`).
    pub old: Option<OldTuple>,
    pub new: Tuple,
}

impl Update {
    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let relation_id = r.u32()?;
        let (old, new_marker) = match r.u8()? {
            b'N' => (None, b'N'),
            marker => (Some(OldTuple::parse_after(marker, r)?), r.u8()?),
        };
        if new_marker != b'N' {
            return Err(DecodeError::UnexpectedTupleMarker(new_marker));
        }
        Ok(Update {
            relation_id,
            old,
            new: Tuple::parse(r)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub relation_id: u32,
    pub old: OldTuple,
}

impl Delete {
    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let relation_id = r.u32()?;
        let marker = r.u8()?;
        Ok(Delete {
            relation_id,
            old: OldTuple::parse_after(marker, r)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    pub cascade: bool,
    pub restart_identity: bool,
    pub relation_ids: Vec<u32>,
}

impl Truncate {
    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = count(r.i32()?.into())?;
        let options = r.u8()?;
        // Each id is 4 bytes: never reserve more than the message can hold.
        let mut relation_ids = Vec::with_capacity(n.min(r.remaining() / 4));
        for _ in 0..n {
            relation_ids.push(r.u32()?);
        }
        Ok(Truncate {
            cascade: options & 1 != 0,
            restart_identity: options & 2 != 0,
            relation_ids,
        })
    }
}

/// A `pg_logical_emit_message` payload (sent only with the `messages` option).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub transactional: bool,
    pub lsn: Lsn,
    pub prefix: String,
    pub content: Vec<u8>,
}

impl Message {
    fn parse(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let transactional = r.u8()? & 1 == 1;
        let lsn = Lsn(r.u64()?);
        let prefix = r.cstr()?.to_string();
        let len = count(r.i32()?.into())?;
        Ok(Message {
            transactional,
            lsn,
            prefix,
            content: r.bytes(len)?.to_vec(),
        })
    }
}

fn count(n: i64) -> Result<usize, DecodeError> {
    usize::try_from(n).map_err(|_| DecodeError::NegativeLength(n))
}

fn expect_marker(r: &mut Reader<'_>, want: u8) -> Result<(), DecodeError> {
    match r.u8()? {
        m if m == want => Ok(()),
        other => Err(DecodeError::UnexpectedTupleMarker(other)),
    }
}

#[cfg(test)]
mod tests;
