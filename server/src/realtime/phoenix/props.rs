//! Property tests of what realtime reads from a client: Phoenix frames in both serializers and
//! the 2.0.0 binary broadcast push render and decode back to themselves; any JSON in any event's
//! payload (and structured-but-wrong `phx_join` configs) is interpreted or refused with an error
//! — the Phoenix error reply — and never panics; `config.since` positions print and parse back;
//! `postgres_changes` filters render and parse back, and garbage filters are refused.

use super::*;
use crate::realtime::lsn::Lsn;
use crate::realtime::subscriptions::{ChangeFilter, FilterOp, PostgresChanges};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Keys a join payload means something by, mixed with random ones.
const KEYS: &[&str] = &[
    "config",
    "broadcast",
    "presence",
    "postgres_changes",
    "event",
    "schema",
    "table",
    "filter",
    "since",
    "replay",
    "limit",
    "self",
    "ack",
    "key",
    "enabled",
    "private",
    "access_token",
    "payload",
    "type",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => "\\PC{0,6}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,8}".prop_map(Value::String),
        "[0-9A-F]{1,3}/[0-9A-F]{1,3}:[0-9]{1,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A `phx_join` payload with the right keys and values that are sometimes of the wrong type.
fn join_payload() -> impl Strategy<Value = Value> {
    let maybe = |good: BoxedStrategy<Value>| prop_oneof![3 => good, 1 => json_value()];
    let binding = (
        maybe(prop::sample::select(vec!["*", "INSERT", "update", "DELETE", "", "TRUNCATE"])
            .prop_map(|s| json!(s))
            .boxed()),
        maybe("[a-z*]{0,6}".prop_map(|s| json!(s)).boxed()),
        maybe("[a-z*]{0,6}".prop_map(|s| json!(s)).boxed()),
        maybe(filter_text().prop_map(|s| json!(s)).boxed()),
    )
        .prop_map(|(event, schema, table, filter)| {
            json!({"event": event, "schema": schema, "table": table, "filter": filter})
        });
    (
        maybe(any::<bool>().prop_map(|b| json!(b)).boxed()),
        maybe(any::<bool>().prop_map(|b| json!(b)).boxed()),
        maybe(
            (any::<i64>(), prop::option::of(-3i64..1000))
                .prop_map(|(since, limit)| json!({"since": since, "limit": limit}))
                .boxed(),
        ),
        maybe("\\PC{0,8}".prop_map(|s| json!(s)).boxed()),
        maybe(
            prop::collection::vec(binding, 0..3)
                .prop_map(Value::Array)
                .boxed(),
        ),
        maybe(position_text().prop_map(|s| json!(s)).boxed()),
        maybe("\\PC{0,12}".prop_map(|s| json!(s)).boxed()),
    )
        .prop_map(
            |(ack, private, replay, presence_key, changes, since, token)| {
                json!({
                    "config": {
                        "broadcast": {"self": true, "ack": ack, "replay": replay},
                        "presence": {"key": presence_key, "enabled": true},
                        "postgres_changes": changes,
                        "private": private,
                        "since": since,
                    },
                    "access_token": token,
                })
            },
        )
}

fn position_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<u64>(), any::<u32>()).prop_map(|(lsn, index)| Position {
            lsn: Lsn(lsn),
            index
        }
        .to_string()),
        "[0-9A-Fa-f/:+ -]{0,20}",
    ]
}

fn filter_text() -> impl Strategy<Value = String> {
    prop_oneof![
        change_filter().prop_map(|f| render_filter(&f)),
        prop::collection::vec(
            prop::sample::select(vec![
                "id", "=", "not.", "eq.", "in.", "(", ")", ",", "\"", "\\", "null", " ", "5", ".",
                "lte", "é",
            ]),
            0..12,
        )
        .prop_map(|t| t.concat()),
    ]
}

fn change_filter() -> impl Strategy<Value = ChangeFilter> {
    let op = prop::sample::select(vec![
        FilterOp::Eq,
        FilterOp::Neq,
        FilterOp::Lt,
        FilterOp::Lte,
        FilterOp::Gt,
        FilterOp::Gte,
        FilterOp::In,
    ]);
    let item = prop::option::of(prop_oneof!["[a-z0-9_]{1,6}", "\\PC{0,6}"]);
    (
        "[^=\\p{Cc}]{1,10}",
        any::<bool>(),
        op,
        "\\PC{0,10}",
        prop::collection::vec(item, 0..4),
    )
        .prop_map(|(column, negate, op, value, items)| ChangeFilter {
            column,
            negate,
            op,
            values: if op == FilterOp::In {
                items
            } else {
                vec![Some(value)]
            },
        })
}

fn render_filter(f: &ChangeFilter) -> String {
    let op = match f.op {
        FilterOp::Eq => "eq",
        FilterOp::Neq => "neq",
        FilterOp::Lt => "lt",
        FilterOp::Lte => "lte",
        FilterOp::Gt => "gt",
        FilterOp::Gte => "gte",
        FilterOp::In => "in",
    };
    let not = if f.negate { "not." } else { "" };
    let value = if f.op == FilterOp::In {
        let items: Vec<String> = f
            .values
            .iter()
            .map(|v| match v {
                None => "null".to_string(),
                Some(s)
                    if !s.is_empty()
                        && !s.eq_ignore_ascii_case("null")
                        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    s.clone()
                }
                Some(s) => {
                    let escaped: String = s
                        .chars()
                        .flat_map(|c| match c {
                            '"' | '\\' => vec!['\\', c],
                            c => vec![c],
                        })
                        .collect();
                    format!("\"{escaped}\"")
                }
            })
            .collect();
        format!("({})", items.join(","))
    } else {
        f.values[0].clone().unwrap_or_default()
    };
    format!("{}={not}{op}.{value}", f.column)
}

fn opt_string() -> impl Strategy<Value = Option<String>> {
    prop::option::of("\\PC{1,10}")
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        opt_string(),
        opt_string(),
        "\\PC{1,12}",
        "\\PC{1,12}",
        json_value(),
    )
        .prop_map(|(join_ref, reference, topic, event, payload)| Frame {
            join_ref,
            reference,
            topic,
            event,
            payload: Payload::Json(payload),
        })
}

/// realtime-js's `userBroadcastPush` encoding, written independently of the decoder.
fn encode_push(
    join_ref: &str,
    reference: &str,
    topic: &str,
    event: &str,
    meta: &str,
    body: &BroadcastBody,
) -> Vec<u8> {
    let (encoding, payload) = match body {
        BroadcastBody::Json(v) => (1u8, serde_json::to_vec(v).unwrap()),
        BroadcastBody::Binary(b) => (0u8, b.to_vec()),
    };
    let mut out = vec![3u8];
    for s in [join_ref, reference, topic, event, meta] {
        out.push(u8::try_from(s.len()).expect("each string fits its length byte"));
    }
    out.push(encoding);
    for s in [join_ref, reference, topic, event, meta] {
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&payload);
    out
}

fn short() -> impl Strategy<Value = String> {
    "\\PC{0,20}".prop_filter("fits a length byte", |s| s.len() <= 255)
}

proptest! {
    #![proptest_config(crate::props::budget(512))]

    #[test]
    fn text_frames_render_and_decode_back(frame in frame()) {
        let Payload::Json(payload) = &frame.payload else { unreachable!() };
        let v1 = json!({
            "join_ref": frame.join_ref, "ref": frame.reference, "topic": frame.topic,
            "event": frame.event, "payload": payload,
        });
        prop_assert_eq!(Frame::decode_text(Vsn::V1, &v1.to_string()), Ok(frame.clone()));
        let v2 = json!([frame.join_ref, frame.reference, frame.topic, frame.event, payload]);
        prop_assert_eq!(Frame::decode_text(Vsn::V2, &v2.to_string()), Ok(frame));
    }

    #[test]
    fn binary_pushes_render_and_decode_back(
        join_ref in short(),
        reference in short(),
        topic in short(),
        event in short(),
        meta in prop::option::of(prop::collection::btree_map("[a-z]{1,4}", "[a-z0-9]{0,6}", 0..4)),
        body in prop_oneof![
            json_value().prop_map(BroadcastBody::Json),
            prop::collection::vec(any::<u8>(), 0..64)
                .prop_map(|b| BroadcastBody::Binary(Bytes::from(b))),
        ],
    ) {
        let meta = meta.map(|m| json!(m));
        let meta_text = meta.as_ref().map_or(String::new(), Value::to_string);
        let bytes = encode_push(&join_ref, &reference, &topic, &event, &meta_text, &body);
        let expected = Frame {
            join_ref: (!join_ref.is_empty()).then_some(join_ref),
            reference: (!reference.is_empty()).then_some(reference),
            topic,
            event: "broadcast".into(),
            payload: Payload::Broadcast { event, meta, body },
        };
        prop_assert_eq!(Frame::decode_binary(Vsn::V2, &bytes), Ok(expected));
    }

    #[test]
    fn binary_garbage_never_panics(
        head in prop::collection::vec(0u8..8, 0..8),
        tail in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = head;
        bytes.extend(tail);
        for vsn in [Vsn::V1, Vsn::V2] {
            if let Err(e) = Frame::decode_binary(vsn, &bytes) {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    /// Any payload for any event: a message, or an error the client is told about.
    #[test]
    fn any_payload_is_interpreted_or_refused(
        topic in prop::sample::select(vec!["phoenix", "realtime:room", "x"]),
        event in prop_oneof![
            prop::sample::select(vec![
                "heartbeat", "phx_join", "phx_leave", "access_token", "broadcast", "presence",
            ])
            .prop_map(str::to_string),
            "\\PC{1,8}",
        ],
        payload in prop_oneof![json_value(), join_payload()],
        size in 0usize..600,
    ) {
        let frame = Frame {
            join_ref: Some("1".into()),
            reference: Some("2".into()),
            topic: topic.into(),
            event,
            payload: Payload::Json(payload),
        };
        match ClientMessage::parse(&frame, size, 512) {
            Ok(ClientMessage::Join(join)) => {
                // What the socket does next with a join's bindings.
                for b in &join.config.postgres_changes {
                    let _ = PostgresChanges::parse(
                        &b.event, &b.schema, b.table.as_deref(), b.filter.as_deref(),
                    );
                }
            }
            Ok(_) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn positions_print_and_parse_back(lsn in any::<u64>(), index in any::<u32>()) {
        let p = Position { lsn: Lsn(lsn), index };
        prop_assert_eq!(p.to_string().parse::<Position>(), Ok(p));
        prop_assert_eq!(Lsn(lsn).to_string().parse::<Lsn>(), Ok(Lsn(lsn)));
    }

    #[test]
    fn position_garbage_never_panics(s in position_text()) {
        let _ = s.parse::<Position>();
        let _ = s.parse::<Lsn>();
    }

    #[test]
    fn change_filters_render_and_parse_back(f in change_filter()) {
        let text = render_filter(&f);
        prop_assert_eq!(ChangeFilter::parse(&text), Ok(f), "{}", text);
    }

    #[test]
    fn change_filter_garbage_is_refused_not_panicked(s in filter_text()) {
        if let Err(e) = ChangeFilter::parse(&s) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
