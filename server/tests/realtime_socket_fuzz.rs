//! The Phoenix socket under generated frames, end to end (a real doska and PostgreSQL, a raw
//! tokio-tungstenite client): joins with configs of every shape (private channels ask
//! PostgreSQL), broadcasts, presence, access tokens, unknown events and binary frames, with
//! wrong types mixed in. After each frame the socket still answers a heartbeat, and what the
//! frame got is a `phx_reply` (ok or error), a `system` message or channel traffic — never a
//! dropped connection. The bounded number of cases keeps it under the per-socket rate limit.

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Frames per socket: with the heartbeat after each, under the socket's burst of 400 messages.
const CASES: usize = 150;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "\\PC{0,8}".prop_map(Value::String),
        Just(json!("0/16B3748:0")),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "config",
                    "broadcast",
                    "presence",
                    "postgres_changes",
                    "event",
                    "schema",
                    "table",
                    "filter",
                    "private",
                    "since",
                    "replay",
                    "self",
                    "ack",
                    "key",
                    "enabled",
                    "access_token",
                    "payload",
                    "type",
                    "x",
                ])
                .prop_map(str::to_string),
                inner,
                0..4,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A join config with the right keys and values that are sometimes of the wrong type.
fn join_payload() -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![
            "id=eq.1",
            "id=in.(1,2)",
            "id=like.x",
            "=",
            "",
        ])),
        prop::option::of(prop::sample::select(vec!["*", "INSERT", "nope"])),
        json_value(),
    )
        .prop_map(|(private, presence, filter, event, wild)| {
            json!({
                "config": {
                    "private": private,
                    "presence": {"enabled": presence, "key": wild.clone()},
                    "broadcast": {"self": true, "ack": true},
                    "postgres_changes": [{"event": event, "schema": "public", "table": "t", "filter": filter}],
                },
                "access_token": if wild.is_string() { wild } else { Value::Null },
            })
        })
}

fn text_frame() -> impl Strategy<Value = Message> {
    let event = prop::sample::select(vec![
        "phx_join",
        "phx_leave",
        "broadcast",
        "presence",
        "access_token",
        "heartbeat",
        "bogus",
    ]);
    let topic = prop::sample::select(vec!["realtime:room", "realtime:other", "phoenix", ""]);
    (
        prop::option::of("[0-9]{1,3}"),
        topic,
        event,
        prop_oneof![json_value(), join_payload()],
        0u8..4,
    )
        .prop_map(|(join_ref, topic, event, payload, shape)| {
            let text = match shape {
                // Not JSON, or JSON of the wrong shape for the 2.0.0 serializer.
                0 => format!("[{join_ref:?}, \"r\", \"{topic}\""),
                1 => json!({"topic": topic, "event": event, "payload": payload}).to_string(),
                _ => json!([join_ref, "r", topic, event, payload]).to_string(),
            };
            Message::text(text)
        })
}

fn binary_frame() -> impl Strategy<Value = Message> {
    (0u8..6, prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(kind, rest)| {
        let mut b = vec![kind];
        b.extend(rest);
        Message::binary(b)
    })
}

#[tokio::test]
async fn generated_frames_never_drop_the_socket() {
    let db = common::TestDb::new().await;
    let url = db.server().await;
    let key = db.sign(json!({"role": "anon"}));
    let ws_url = format!(
        "{}/realtime/v1/websocket?apikey={key}&vsn=2.0.0",
        url.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let mut runner = TestRunner::new(Config {
        rng_seed: RngSeed::Fixed(0x7265_616c),
        ..Config::default()
    });
    let frames = prop_oneof![4 => text_frame(), 1 => binary_frame()];
    for case in 0..CASES {
        let frame = frames.new_tree(&mut runner).unwrap().current();
        let shown = format!("{frame:?}");
        ws.send(frame).await.unwrap();
        let beat = format!("hb{case}");
        ws.send(Message::text(
            json!([null, beat, "phoenix", "heartbeat", {}]).to_string(),
        ))
        .await
        .unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .unwrap_or_else(|_| panic!("no heartbeat reply after {shown}"))
                .unwrap_or_else(|| panic!("the socket ended after {shown}"))
                .unwrap_or_else(|e| panic!("the socket failed after {shown}: {e}"));
            let v: Value = match msg {
                Message::Text(t) => serde_json::from_str(t.as_str()).expect("JSON from doska"),
                Message::Binary(_) => continue,
                Message::Close(c) => panic!("closed after {shown}: {c:?}"),
                _ => continue,
            };
            let event = v[3].as_str().unwrap_or_default();
            assert!(
                matches!(
                    event,
                    "phx_reply"
                        | "system"
                        | "presence_state"
                        | "presence_diff"
                        | "phx_close"
                        | "broadcast"
                ),
                "{v} after {shown}"
            );
            if event == "phx_reply" {
                let status = &v[4]["status"];
                assert!(status == "ok" || status == "error", "{v} after {shown}");
            }
            if v[1] == beat.as_str() {
                assert_eq!(v[4]["status"], "ok", "{v}");
                break;
            }
        }
    }
}
