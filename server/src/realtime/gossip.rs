//! What doska instances on one database tell each other about realtime (the bus carries it:
//! PostgreSQL's NOTIFY, or Redis pub/sub): broadcasts to fan out, presence tracked and untracked,
//! each instance's whole presence state when asked, heartbeats and goodbyes. Pure: the wire shape
//! (one JSON object per message, tagged by `t`, with the sender's instance id in `i`), and how a
//! batch is packed into NOTIFY payloads under PostgreSQL's 8,000-byte limit.
//!
//! Rejects (drops, with a debug line at the bus) a payload that is not this shape.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One presence an instance holds: its channel's topic and key, the channel's id on that
/// instance, and the meta as the clients see it (`phx_ref` included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    pub topic: String,
    pub key: String,
    pub chan: u64,
    pub meta: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Note {
    /// A broadcast sent on the instance: its other instances deliver it to their channels.
    /// `binary` (base64) instead of `payload` for a binary body.
    Broadcast {
        topic: String,
        private: bool,
        event: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meta: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        binary: Option<String>,
    },
    /// A channel on the sender tracked (or re-tracked) its presence.
    Track {
        topic: String,
        key: String,
        chan: u64,
        meta: Value,
    },
    /// A channel on the sender untracked (or left, or its socket closed).
    Untrack { topic: String, chan: u64 },
    /// The sender (re)joined the bus with these presences; everyone answers with [`Note::State`].
    Hello { presences: Vec<Presence> },
    /// Every presence the sender holds (replaces what the receiver knew of it).
    State { presences: Vec<Presence> },
    /// The sender is alive (every few seconds); one silent for too long is taken for dead.
    Heartbeat,
    /// The sender is shutting down: its presences leave now.
    Bye,
}

/// A note with its sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending instance's id.
    pub i: String,
    /// The sender's sequence number: a note sent both ways (Redis missed a subscriber) is
    /// applied once.
    pub s: u64,
    #[serde(flatten)]
    pub note: Note,
}

/// What one NOTIFY payload carries: messages inline, or the id of a `doska.bus_messages` row
/// holding one too big to go inline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Item {
    Stored { stored: i64 },
    Inline(Envelope),
}

/// NOTIFY refuses payloads of 8,000 bytes or more; stay safely under.
pub const NOTIFY_MAX: usize = 7_900;

/// Packs encoded envelopes into NOTIFY payloads (JSON arrays of at most [`NOTIFY_MAX`] bytes), in
/// order; an envelope too big for any payload comes out alone, in its place, to be stored.
pub fn pack(encoded: Vec<String>) -> Vec<Chunk> {
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut open = String::new();
    for e in encoded {
        if e.len() + 2 > NOTIFY_MAX {
            if !open.is_empty() {
                open.push(']');
                chunks.push(Chunk::Payload(std::mem::take(&mut open)));
            }
            chunks.push(Chunk::TooBig(e));
            continue;
        }
        if !open.is_empty() && open.len() + 1 + e.len() + 1 > NOTIFY_MAX {
            open.push(']');
            chunks.push(Chunk::Payload(std::mem::take(&mut open)));
        }
        open.push(if open.is_empty() { '[' } else { ',' });
        open.push_str(&e);
    }
    if !open.is_empty() {
        open.push(']');
        chunks.push(Chunk::Payload(open));
    }
    chunks
}

/// One NOTIFY to send, in order: a ready payload, or an envelope to store first.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    Payload(String),
    TooBig(String),
}

/// Reads a payload: a JSON array of [`Item`]s (NOTIFY) or of envelopes (Redis).
pub fn parse(payload: &str) -> Result<Vec<Item>, serde_json::Error> {
    serde_json::from_str(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(n: usize) -> String {
        serde_json::to_string(&Envelope {
            i: "a".into(),
            s: 1,
            note: Note::Broadcast {
                topic: "realtime:room".into(),
                private: false,
                event: "e".into(),
                meta: None,
                payload: Some(json!("x".repeat(n))),
                binary: None,
            },
        })
        .unwrap()
    }

    #[test]
    fn the_wire_shape_round_trips() {
        let e = Envelope {
            i: "inst".into(),
            s: 3,
            note: Note::Track {
                topic: "realtime:room".into(),
                key: "u1".into(),
                chan: 7,
                meta: json!({"phx_ref": "a-1", "online_at": 1}),
            },
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"i": "inst", "s": 3, "t": "track", "topic": "realtime:room", "key": "u1", "chan": 7,
                   "meta": {"phx_ref": "a-1", "online_at": 1}})
        );
        let items = parse(&format!("[{text},{{\"stored\":12}}]")).unwrap();
        assert_eq!(items, vec![Item::Inline(e), Item::Stored { stored: 12 }]);
        let hb = parse(r#"[{"i":"b","s":1,"t":"heartbeat"},{"i":"b","s":2,"t":"bye"}]"#).unwrap();
        assert_eq!(hb.len(), 2);
    }

    #[test]
    fn bad_payloads_are_errors() {
        for bad in [
            "",
            "{}",
            "[{\"t\":\"track\"}]",
            "[{\"i\":\"a\",\"t\":\"heartbeat\"}]",
            "[{\"i\":\"a\",\"t\":\"nope\"}]",
            "[1]",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn packing_keeps_order_and_the_notify_limit() {
        let small: Vec<String> = (0..100).map(|_| env(200)).collect();
        let chunks = pack(small.clone());
        assert!(chunks.len() > 1);
        let mut seen = Vec::new();
        for c in &chunks {
            let Chunk::Payload(p) = c else {
                panic!("nothing here is too big")
            };
            assert!(p.len() <= NOTIFY_MAX, "{}", p.len());
            for item in parse(p).unwrap() {
                seen.push(serde_json::to_string(&item).unwrap());
            }
        }
        assert_eq!(seen, small);
        // A big one goes alone, in its place.
        let chunks = pack(vec![env(10), env(9_000), env(10)]);
        assert!(
            matches!(&chunks[..], [Chunk::Payload(_), Chunk::TooBig(b), Chunk::Payload(_)] if b.len() > 9_000)
        );
        assert!(pack(Vec::new()).is_empty());
    }
}

/// The sequence numbers seen lately from each sender, to apply a note that came both ways once.
#[derive(Debug, Default)]
pub struct Seen {
    by_sender: std::collections::HashMap<String, Window>,
}

#[derive(Debug, Default)]
struct Window {
    set: std::collections::HashSet<u64>,
    order: std::collections::VecDeque<u64>,
}

/// How many sequence numbers are remembered per sender.
const SEEN: usize = 4_096;

impl Seen {
    /// True the first time `(sender, seq)` comes; false for a repeat.
    pub fn first(&mut self, sender: &str, seq: u64) -> bool {
        let w = self.by_sender.entry(sender.to_string()).or_default();
        if !w.set.insert(seq) {
            return false;
        }
        w.order.push_back(seq);
        if w.order.len() > SEEN
            && let Some(old) = w.order.pop_front()
        {
            w.set.remove(&old);
        }
        true
    }

    /// Forgets a sender (gone, or restarted under a new id).
    pub fn forget(&mut self, sender: &str) {
        self.by_sender.remove(sender);
    }
}

#[cfg(test)]
mod seen_tests {
    use super::Seen;

    #[test]
    fn a_repeat_is_seen_once_in_any_order() {
        let mut seen = Seen::default();
        assert!(seen.first("a", 2));
        assert!(seen.first("a", 1));
        assert!(!seen.first("a", 2));
        assert!(seen.first("b", 2));
        for n in 3..5_000 {
            assert!(seen.first("a", n));
        }
        // Old numbers fall out of the window; recent ones are still known.
        assert!(seen.first("a", 1));
        assert!(!seen.first("a", 4_999));
        seen.forget("a");
        assert!(seen.first("a", 4_999));
    }
}
