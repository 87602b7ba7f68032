//! Decoder tests: hand-built messages per the protocol docs, messages recorded from a real
//! PostgreSQL 15 (see `fixtures`), and a property test that no input panics.

use super::*;
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Builds a pgoutput message byte by byte.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn tag(t: u8) -> Self {
        Msg(vec![t])
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn i16(mut self, v: i16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn str(mut self, s: &str) -> Self {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    fn text(self, s: &str) -> Self {
        let mut m = self.u8(b't').i32(s.len() as i32);
        m.0.extend_from_slice(s.as_bytes());
        m
    }
    fn column(self, key: bool, name: &str, oid: i32) -> Self {
        self.u8(u8::from(key)).str(name).i32(oid).i32(-1)
    }
}

const TS_2024: i64 = 757_382_400_000_000; // 2024-01-01T00:00:00Z in PostgreSQL epoch micros

fn begin() -> Vec<u8> {
    Msg::tag(b'B').i64(0x100).i64(TS_2024).i32(740).0
}

fn relation(identity: u8) -> Vec<u8> {
    Msg::tag(b'R')
        .i32(16_390)
        .str("public")
        .str("todos")
        .u8(identity)
        .i16(4)
        .column(true, "id", 20)
        .column(false, "title", 25)
        .column(false, "done", 16)
        .column(false, "tags", 1009)
        .0
}

fn commit() -> Vec<u8> {
    Msg::tag(b'C').u8(0).i64(0x100).i64(0x130).i64(TS_2024).0
}

#[test]
fn parses_each_message_kind() {
    assert_eq!(
        PgOutput::parse(&begin()).unwrap(),
        PgOutput::Begin(Begin {
            final_lsn: Lsn(0x100),
            timestamp: TS_2024,
            xid: 740
        })
    );
    assert_eq!(
        PgOutput::parse(&commit()).unwrap(),
        PgOutput::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(0x100),
            end_lsn: Lsn(0x130),
            timestamp: TS_2024
        })
    );
    let PgOutput::Relation(rel) = PgOutput::parse(&relation(b'd')).unwrap() else {
        panic!("not a relation")
    };
    assert_eq!(
        (rel.id, rel.namespace.as_str(), rel.name.as_str()),
        (16_390, "public", "todos")
    );
    assert_eq!(rel.replica_identity, ReplicaIdentity::Default);
    assert_eq!(
        rel.columns[0],
        RelationColumn {
            key: true,
            name: "id".into(),
            type_oid: 20,
            type_modifier: -1
        }
    );
    assert_eq!(
        PgOutput::parse(&Msg::tag(b'Y').i32(16_400).str("public").str("mood").0).unwrap(),
        PgOutput::Type(Type {
            id: 16_400,
            namespace: "public".into(),
            name: "mood".into()
        })
    );
    assert_eq!(
        PgOutput::parse(&Msg::tag(b'O').i64(7).str("upstream").0).unwrap(),
        PgOutput::Origin(Origin {
            commit_lsn: Lsn(7),
            name: "upstream".into()
        })
    );
    let insert = Msg::tag(b'I')
        .i32(1)
        .u8(b'N')
        .i16(3)
        .text("1")
        .u8(b'n')
        .u8(b'u')
        .0;
    assert_eq!(
        PgOutput::parse(&insert).unwrap(),
        PgOutput::Insert(Insert {
            relation_id: 1,
            new: Tuple(vec![
                TupleValue::Text("1".into()),
                TupleValue::Null,
                TupleValue::UnchangedToast
            ]),
        })
    );
    let update = Msg::tag(b'U')
        .i32(1)
        .u8(b'K')
        .i16(1)
        .text("1")
        .u8(b'N')
        .i16(1)
        .text("2")
        .0;
    assert_eq!(
        PgOutput::parse(&update).unwrap(),
        PgOutput::Update(Update {
            relation_id: 1,
            old: Some(OldTuple::Key(Tuple(vec![TupleValue::Text("1".into())]))),
            new: Tuple(vec![TupleValue::Text("2".into())]),
        })
    );
    let update_no_old = Msg::tag(b'U').i32(1).u8(b'N').i16(1).text("2").0;
    assert!(matches!(
        PgOutput::parse(&update_no_old).unwrap(),
        PgOutput::Update(Update { old: None, .. })
    ));
    let delete = Msg::tag(b'D').i32(1).u8(b'O').i16(1).text("1").0;
    assert_eq!(
        PgOutput::parse(&delete).unwrap(),
        PgOutput::Delete(Delete {
            relation_id: 1,
            old: OldTuple::Full(Tuple(vec![TupleValue::Text("1".into())]))
        })
    );
    let truncate = Msg::tag(b'T').i32(2).u8(3).i32(10).i32(11).0;
    assert_eq!(
        PgOutput::parse(&truncate).unwrap(),
        PgOutput::Truncate(Truncate {
            cascade: true,
            restart_identity: true,
            relation_ids: vec![10, 11]
        })
    );
    let mut message = Msg::tag(b'M').u8(1).i64(9).str("doska").i32(2).0;
    message.extend_from_slice(b"hi");
    assert_eq!(
        PgOutput::parse(&message).unwrap(),
        PgOutput::Message(Message {
            transactional: true,
            lsn: Lsn(9),
            prefix: "doska".into(),
            content: b"hi".to_vec()
        })
    );
}

#[test]
fn rejects_malformed_messages() {
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (vec![], DecodeError::Empty),
        (vec![b'S'], DecodeError::UnknownMessage(b'S')), // stream start: protocol 2 only
        (
            vec![b'B', 0, 0],
            DecodeError::Wire(WireError::Truncated {
                offset: 1,
                wanted: 8,
            }),
        ),
        ([begin(), vec![0]].concat(), DecodeError::TrailingBytes(1)),
        (
            Msg::tag(b'R').i32(1).str("s").str("t").u8(b'x').i16(0).0,
            DecodeError::UnknownReplicaIdentity(b'x'),
        ),
        (
            Msg::tag(b'I').i32(1).u8(b'K').i16(0).0,
            DecodeError::UnexpectedTupleMarker(b'K'),
        ),
        (
            Msg::tag(b'I').i32(1).u8(b'N').i16(1).u8(b'z').0,
            DecodeError::UnknownColumnKind(b'z'),
        ),
        (
            Msg::tag(b'I').i32(1).u8(b'N').i16(-1).0,
            DecodeError::NegativeLength(-1),
        ),
        (
            Msg::tag(b'I').i32(1).u8(b'N').i16(1).u8(b't').i32(-5).0,
            DecodeError::NegativeLength(-5),
        ),
        (
            Msg::tag(b'D').i32(1).u8(b'N').i16(0).0,
            DecodeError::UnexpectedTupleMarker(b'N'),
        ),
        (
            Msg::tag(b'U').i32(1).u8(b'O').i16(0).u8(b'X').i16(0).0,
            DecodeError::UnexpectedTupleMarker(b'X'),
        ),
        (
            Msg::tag(b'T').i32(1_000_000).u8(0).i32(1).0,
            DecodeError::Wire(WireError::Truncated {
                offset: 10,
                wanted: 4,
            }),
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(PgOutput::parse(&bytes), Err(want), "bytes {bytes:?}");
    }
}

fn decode_all(decoder: &mut Decoder, messages: &[Vec<u8>]) -> Vec<Event> {
    messages
        .iter()
        .filter_map(|m| decoder.decode(m).unwrap())
        .collect()
}

#[test]
fn typed_changes_of_a_transaction() {
    let mut d = Decoder::new();
    let insert = Msg::tag(b'I')
        .i32(16_390)
        .u8(b'N')
        .i16(4)
        .text("1")
        .text("milk")
        .text("f")
        .text("{a,\"b c\"}")
        .0;
    let update = Msg::tag(b'U')
        .i32(16_390)
        .u8(b'N')
        .i16(4)
        .text("1")
        .text("milk")
        .text("t")
        .u8(b'u')
        .0;
    let delete = Msg::tag(b'D')
        .i32(16_390)
        .u8(b'K')
        .i16(4)
        .text("1")
        .u8(b'n')
        .u8(b'n')
        .u8(b'n')
        .0;
    let events = decode_all(
        &mut d,
        &[begin(), relation(b'd'), insert, update, delete, commit()],
    );
    let ts = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(
        events[0],
        Event::Begin {
            final_lsn: Lsn(0x100),
            commit_timestamp: ts,
            xid: 740
        }
    );
    assert_eq!(
        events[4],
        Event::Commit {
            commit_lsn: Lsn(0x100),
            end_lsn: Lsn(0x130),
            commit_timestamp: ts
        }
    );

    let Event::Change(ins) = &events[1] else {
        panic!("not a change")
    };
    assert_eq!(
        (ins.schema.as_str(), ins.table.as_str(), ins.kind),
        ("public", "todos", ChangeKind::Insert)
    );
    assert_eq!(
        (ins.commit_lsn, ins.commit_timestamp, ins.index_in_tx),
        (Lsn(0x100), ts, 0)
    );
    let types: Vec<_> = ins
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_name.as_str(), c.key))
        .collect();
    assert_eq!(
        types,
        [
            ("id", "int8", true),
            ("title", "text", false),
            ("done", "bool", false),
            ("tags", "_text", false)
        ]
    );
    assert_eq!(
        Value::Object(ins.record.clone()),
        json!({"id": 1, "title": "milk", "done": false, "tags": ["a", "b c"]})
    );
    assert_eq!(ins.old_record, None);

    let Event::Change(upd) = &events[2] else {
        panic!("not a change")
    };
    assert_eq!((upd.kind, upd.index_in_tx), (ChangeKind::Update, 1));
    assert_eq!(
        Value::Object(upd.record.clone()),
        json!({"id": 1, "title": "milk", "done": true})
    );
    assert_eq!(upd.unchanged_toast, ["tags"]);

    let Event::Change(del) = &events[3] else {
        panic!("not a change")
    };
    assert_eq!((del.kind, del.index_in_tx), (ChangeKind::Delete, 2));
    assert!(del.record.is_empty());
    assert_eq!(
        del.old_record.clone().map(Value::Object),
        Some(json!({"id": 1}))
    );
}

#[test]
fn unchanged_toast_is_filled_from_a_full_old_row() {
    let mut d = Decoder::new();
    let old = Msg::tag(b'U')
        .i32(16_390)
        .u8(b'O')
        .i16(4)
        .text("1")
        .text("milk")
        .text("f")
        .text("{x}");
    let update = old
        .u8(b'N')
        .i16(4)
        .text("1")
        .text("milk")
        .text("t")
        .u8(b'u')
        .0;
    let events = decode_all(&mut d, &[begin(), relation(b'f'), update, commit()]);
    let Event::Change(upd) = &events[1] else {
        panic!("not a change")
    };
    assert_eq!(
        Value::Object(upd.record.clone()),
        json!({"id": 1, "title": "milk", "done": true, "tags": ["x"]})
    );
    assert!(upd.unchanged_toast.is_empty());
    assert_eq!(
        upd.old_record.clone().map(Value::Object),
        Some(json!({"id": 1, "title": "milk", "done": false, "tags": ["x"]}))
    );
}

#[test]
fn user_types_take_their_name_from_type_messages() {
    let mut d = Decoder::new();
    let ty = Msg::tag(b'Y').i32(16_400).str("public").str("mood").0;
    let rel = Msg::tag(b'R')
        .i32(5)
        .str("app")
        .str("people")
        .u8(b'd')
        .i16(1)
        .column(true, "m", 16_400)
        .0;
    let ins = Msg::tag(b'I').i32(5).u8(b'N').i16(1).text("happy").0;
    let events = decode_all(&mut d, &[ty, rel, begin(), ins, commit()]);
    let Event::Change(c) = &events[1] else {
        panic!("not a change")
    };
    assert_eq!(
        (c.schema.as_str(), c.columns[0].type_name.as_str()),
        ("app", "mood")
    );
    assert_eq!(c.record.get("m"), Some(&json!("happy")));
}

#[test]
fn truncate_names_its_tables() {
    let mut d = Decoder::new();
    let t = Msg::tag(b'T').i32(1).u8(0).i32(16_390).0;
    let events = decode_all(&mut d, &[relation(b'd'), begin(), t, commit()]);
    let Event::Truncate(t) = &events[1] else {
        panic!("not a truncate")
    };
    assert_eq!(t.tables, [("public".to_string(), "todos".to_string())]);
    assert!(!t.cascade && !t.restart_identity);
}

#[test]
fn rejects_inconsistent_streams() {
    let ins = Msg::tag(b'I').i32(16_390).u8(b'N').i16(1).text("1").0;
    let mut d = Decoder::new();
    assert_eq!(d.decode(&ins), Err(DecodeError::UnknownRelation(16_390)));
    d.decode(&relation(b'd')).unwrap();
    assert_eq!(
        d.decode(&ins),
        Err(DecodeError::ColumnCountMismatch {
            relation: 16_390,
            expected: 4,
            got: 1
        })
    );
    let full = Msg::tag(b'I')
        .i32(16_390)
        .u8(b'N')
        .i16(4)
        .text("1")
        .u8(b'n')
        .u8(b'n')
        .u8(b'n')
        .0;
    assert_eq!(
        d.decode(&full),
        Err(DecodeError::OutsideTransaction("row change"))
    );
    assert_eq!(
        d.decode(&commit()),
        Err(DecodeError::OutsideTransaction("commit"))
    );
    d.decode(&begin()).unwrap();
    assert_eq!(d.decode(&begin()), Err(DecodeError::NestedBegin));
    let binary = Msg::tag(b'I')
        .i32(16_390)
        .u8(b'N')
        .i16(4)
        .u8(b'b')
        .i32(1)
        .u8(1)
        .u8(b'n')
        .u8(b'n')
        .u8(b'n')
        .0;
    assert_eq!(
        d.decode(&binary),
        Err(DecodeError::BinaryValue {
            column: "id".into()
        })
    );
    let far_future = Msg::tag(b'C').u8(0).i64(1).i64(2).i64(i64::MAX).0;
    assert_eq!(
        d.decode(&far_future),
        Err(DecodeError::TimestampOutOfRange(i64::MAX))
    );
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = PgOutput::parse(&bytes);
    }

    #[test]
    fn decoder_never_panics_on_tagged_garbage(
        tag in prop::sample::select(b"BCORYIUDTM".to_vec()),
        body in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut d = Decoder::new();
        d.decode(&relation(b'd')).unwrap();
        d.decode(&begin()).unwrap();
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&body);
        let _ = d.decode(&bytes);
    }

    /// Well-framed changes on a generated relation: any column count and types, tuples of any
    /// declared width with cells of every kind (null, unchanged TOAST, text, binary, unknown).
    #[test]
    fn decoder_never_panics_on_well_framed_changes(
        oids in prop::collection::vec(
            prop::sample::select(vec![16i32, 20, 21, 23, 25, 114, 700, 701, 1009, 1184, 1700, 2950, 3802, 99_999]),
            0..6,
        ),
        identity in prop::sample::select(b"dfinx".to_vec()),
        tag in prop::sample::select(b"IUD".to_vec()),
        old_kind in prop::sample::select(b"NKOx".to_vec()),
        cells in prop::collection::vec((prop::sample::select(b"nutbx".to_vec()), "\\PC{0,12}"), 0..8),
        declared in prop::option::of(-1i16..10),
    ) {
        let mut rel = Msg::tag(b'R')
            .i32(16_390)
            .str("public")
            .str("t")
            .u8(identity)
            .i16(oids.len() as i16);
        for (i, oid) in oids.iter().enumerate() {
            rel = rel.column(i == 0, &format!("c{i}"), *oid);
        }
        let mut d = Decoder::new();
        prop_assume!(d.decode(&rel.0).is_ok());
        d.decode(&begin()).unwrap();
        let tuple = |mut m: Msg| {
            m = m.i16(declared.unwrap_or(cells.len() as i16));
            for (kind, text) in &cells {
                m = match kind {
                    b't' => m.text(text),
                    b'b' => {
                        let mut m = m.u8(b'b').i32(text.len() as i32);
                        m.0.extend_from_slice(text.as_bytes());
                        m
                    }
                    k => m.u8(*k),
                };
            }
            m
        };
        let mut m = Msg::tag(tag).i32(16_390);
        match tag {
            b'I' => m = tuple(m.u8(b'N')),
            b'D' => m = tuple(m.u8(old_kind)),
            _ => {
                m = tuple(m.u8(old_kind));
                if old_kind != b'N' {
                    m = tuple(m.u8(b'N'));
                }
            }
        }
        let _ = d.decode(&m.0);
        let _ = d.decode(&commit());
    }

    #[test]
    fn typed_value_never_panics(oid in prop::sample::select(vec![16u32, 20, 21, 23, 114, 700, 701, 1000, 1007, 1009, 1231, 1700, 3802, 3807]), text in ".*") {
        let _ = typed_value(oid, &text);
    }
}

/// One transaction recorded from PostgreSQL 15 by `tests/realtime_replication.rs`
/// (`DOSKA_DUMP_PGOUTPUT=1`): an INSERT, UPDATE and DELETE of `public.todos
/// (id bigserial primary key, title text, done bool, tags text[], meta jsonb, price numeric(10,2),
/// due timestamptz)`.
const RECORDED_TX: &[&str] = &[
    "42000000000152c7e00003041ff6bfdfeb000002d5",
    "52000040017075626c696300746f646f73006400070169640000000014ffffffff007469746c650000000019ffffffff00646f6e650000000010ffffffff007461677300000003f1ffffffff006d6574610000000edaffffffff00707269636500000006a4000a00060064756500000004a0ffffffff",
    "49000040014e000774000000013174000000046d696c6b74000000016674000000097b612c22622063227d74000000087b226e223a20317d7400000004322e35307400000016323032342d30352d30312031303a30303a30302b3030",
    "55000040014e000774000000013174000000046d696c6b74000000017474000000097b612c22622063227d74000000087b226e223a20317d7400000004322e35307400000016323032342d30352d30312031303a30303a30302b3030",
    "44000040014b00077400000001316e6e6e6e6e6e",
    "4300000000000152c7e0000000000152c8100003041ff6bfdfeb",
];

#[test]
fn decodes_a_recorded_transaction() {
    let messages: Vec<Vec<u8>> = RECORDED_TX
        .iter()
        .map(|h| hex::decode(h).unwrap())
        .collect();
    let PgOutput::Relation(rel) = PgOutput::parse(&messages[1]).unwrap() else {
        panic!("not a relation")
    };
    assert_eq!(
        (rel.id, rel.replica_identity),
        (16_385, ReplicaIdentity::Default)
    );
    assert_eq!(
        rel.columns[5],
        RelationColumn {
            key: false,
            name: "price".into(),
            type_oid: 1700,
            type_modifier: 0x000a_0006
        }
    );

    let mut d = Decoder::new();
    let events = decode_all(&mut d, &messages);
    let Event::Begin {
        final_lsn,
        commit_timestamp,
        xid,
    } = events[0]
    else {
        panic!("not a begin")
    };
    assert_eq!((final_lsn.to_string(), xid), ("0/152C7E0".to_string(), 725));
    assert_eq!(
        commit_timestamp.to_rfc3339(),
        "2026-11-25T22:17:40.399083+00:00"
    );
    let Event::Commit { end_lsn, .. } = events[4] else {
        panic!("not a commit")
    };
    assert_eq!(end_lsn.to_string(), "0/152C810");

    let row = json!({"id": 1, "title": "milk", "done": false, "tags": ["a", "b c"], "meta": {"n": 1},
                     "price": 2.5, "due": "2024-05-01 10:00:00+00"});
    let Event::Change(ins) = &events[1] else {
        panic!("not a change")
    };
    assert_eq!(
        (ins.kind, Value::Object(ins.record.clone())),
        (ChangeKind::Insert, row.clone())
    );
    let Event::Change(upd) = &events[2] else {
        panic!("not a change")
    };
    assert_eq!(upd.record.get("done"), Some(&json!(true)));
    let Event::Change(del) = &events[3] else {
        panic!("not a change")
    };
    assert_eq!(
        del.old_record.clone().map(Value::Object),
        Some(json!({"id": 1}))
    );
    assert_eq!(
        [ins.index_in_tx, upd.index_in_tx, del.index_in_tx],
        [0, 1, 2]
    );
}

/// Identity FULL flags every column as key: with the catalog's facts the key is the primary key,
/// and row security is carried to the change; without a primary key nothing is a key.
#[test]
fn catalog_facts_decide_the_key_and_row_security() {
    let all_flagged = Msg::tag(b'R')
        .i32(16_390)
        .str("public")
        .str("todos")
        .u8(b'f')
        .i16(4)
        .column(true, "id", 20)
        .column(true, "title", 25)
        .column(true, "done", 16)
        .column(true, "tags", 1009)
        .0;
    let delete = Msg::tag(b'D')
        .i32(16_390)
        .u8(b'O')
        .i16(4)
        .text("1")
        .text("milk")
        .text("f")
        .text("{x}")
        .0;
    let cases: [(Option<RelationFacts>, &[&str], bool); 4] = [
        (None, &["id", "title", "done", "tags"], true),
        (
            Some(RelationFacts {
                primary_key: vec!["id".into()],
                row_security: true,
            }),
            &["id"],
            true,
        ),
        (
            Some(RelationFacts {
                primary_key: vec!["id".into()],
                row_security: false,
            }),
            &["id"],
            false,
        ),
        (
            Some(RelationFacts {
                primary_key: vec![],
                row_security: true,
            }),
            &[],
            true,
        ),
    ];
    for (facts, keys, rls) in cases {
        let mut d = Decoder::new();
        if let Some(f) = facts.clone() {
            d.set_facts(16_390, f);
        }
        let events = decode_all(
            &mut d,
            &[begin(), all_flagged.clone(), delete.clone(), commit()],
        );
        let Event::Change(del) = &events[1] else {
            panic!("not a change")
        };
        let got: Vec<&str> = del
            .columns
            .iter()
            .filter(|c| c.key)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!((got.as_slice(), del.row_security), (keys, rls), "{facts:?}");
        // The decoder keeps the whole old row; what a subscriber gets is decided when sending.
        assert_eq!(del.old_record.as_ref().map(|o| o.len()), Some(4));
    }
}
