//! Phoenix channel wire messages as realtime-js speaks them, pure (no I/O): decoding client
//! frames of both serializers — `vsn=1.0.0` (a JSON object `{join_ref, ref, topic, event,
//! payload}`) and `vsn=2.0.0` (a JSON array `[join_ref, ref, topic, event, payload]`, plus the
//! binary "user broadcast push" frame, kind 3) — into one [`ClientMessage`] per event, and
//! encoding what the server sends (JSON in the client's serializer; broadcasts to a 2.0.0
//! client as the binary "user broadcast" frame, kind 4).
//!
//! Rejects, with a [`PhoenixError`] the socket answers as a Phoenix error reply (or a `system`
//! error when the frame has no usable envelope): frames that are not valid JSON of the right
//! shape, truncated binary frames, unknown binary kinds, non-string topics or events, payloads
//! over the size cap, unknown events, and payloads missing the fields their event needs.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::lsn::Position;

/// Which serializer a socket speaks, from its `vsn` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vsn {
    V1,
    V2,
}

impl Vsn {
    /// `None` (parameter absent) is Phoenix's default, 1.0.0.
    pub fn parse(vsn: Option<&str>) -> Result<Vsn, PhoenixError> {
        match vsn {
            None | Some("1.0.0") => Ok(Vsn::V1),
            Some("2.0.0") => Ok(Vsn::V2),
            Some(other) => Err(PhoenixError::UnsupportedVsn(other.to_string())),
        }
    }
}

/// Why a client frame was refused. The text is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoenixError {
    #[error("unsupported vsn {0:?} (expected 1.0.0 or 2.0.0)")]
    UnsupportedVsn(String),
    /// Not JSON, or JSON of the wrong shape for the serializer.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A binary frame whose lengths do not add up, or of an unknown kind.
    #[error("malformed binary message: {0}")]
    BadBinary(String),
    #[error("message of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    /// The event is known but its payload lacks or mistypes a field.
    #[error("invalid payload: {0}")]
    BadPayload(String),
}

/// The body of a broadcast: JSON, or raw bytes (only 2.0.0 binary frames carry those).
#[derive(Debug, Clone, PartialEq)]
pub enum BroadcastBody {
    Json(Value),
    Binary(Bytes),
}

/// A frame's payload before its event is interpreted.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Json(Value),
    /// From a binary user broadcast push: the user event, its metadata and body.
    Broadcast {
        event: String,
        meta: Option<Value>,
        body: BroadcastBody,
    },
}

/// One client frame: the Phoenix envelope and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub join_ref: Option<String>,
    pub reference: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Payload,
}

/// Kind byte of a client's binary broadcast push (realtime-js `KINDS.userBroadcastPush`).
const KIND_USER_BROADCAST_PUSH: u8 = 3;
/// Kind byte of the server's binary broadcast (realtime-js `KINDS.userBroadcast`).
const KIND_USER_BROADCAST: u8 = 4;
const ENCODING_BINARY: u8 = 0;
const ENCODING_JSON: u8 = 1;

impl Frame {
    /// Decodes a text frame in the socket's serializer.
    pub fn decode_text(vsn: Vsn, text: &str) -> Result<Frame, PhoenixError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| PhoenixError::Malformed(e.to_string()))?;
        let (join_ref, reference, topic, event, payload) = match (vsn, value) {
            (Vsn::V2, Value::Array(mut items)) if items.len() == 5 => {
                let payload = items.pop().unwrap_or(Value::Null);
                let event = items.pop().unwrap_or(Value::Null);
                let topic = items.pop().unwrap_or(Value::Null);
                let reference = items.pop().unwrap_or(Value::Null);
                let join_ref = items.pop().unwrap_or(Value::Null);
                (join_ref, reference, topic, event, payload)
            }
            (Vsn::V2, _) => {
                return Err(PhoenixError::Malformed(
                    "expected [join_ref, ref, topic, event, payload]".into(),
                ));
            }
            (Vsn::V1, Value::Object(mut o)) => (
                o.remove("join_ref").unwrap_or(Value::Null),
                o.remove("ref").unwrap_or(Value::Null),
                o.remove("topic").unwrap_or(Value::Null),
                o.remove("event").unwrap_or(Value::Null),
                o.remove("payload").unwrap_or(Value::Null),
            ),
            (Vsn::V1, _) => {
                return Err(PhoenixError::Malformed(
                    "expected {join_ref, ref, topic, event, payload}".into(),
                ));
            }
        };
        Ok(Frame {
            join_ref: opt_ref("join_ref", join_ref)?,
            reference: opt_ref("ref", reference)?,
            topic: string_field("topic", topic)?,
            event: string_field("event", event)?,
            payload: Payload::Json(payload),
        })
    }

    /// Decodes a binary frame: only the 2.0.0 user broadcast push is a client binary frame.
    pub fn decode_binary(vsn: Vsn, bytes: &[u8]) -> Result<Frame, PhoenixError> {
        if vsn != Vsn::V2 {
            return Err(PhoenixError::BadBinary(
                "binary frames need vsn=2.0.0".into(),
            ));
        }
        let (&kind, rest) = bytes
            .split_first()
            .ok_or_else(|| PhoenixError::BadBinary("empty frame".into()))?;
        if kind != KIND_USER_BROADCAST_PUSH {
            return Err(PhoenixError::BadBinary(format!("unknown kind {kind}")));
        }
        if rest.len() < 6 {
            return Err(PhoenixError::BadBinary("header is truncated".into()));
        }
        let lens = [rest[0], rest[1], rest[2], rest[3], rest[4]].map(usize::from);
        let encoding = rest[5];
        let mut body = &rest[6..];
        let mut take = |n: usize, what: &str| -> Result<String, PhoenixError> {
            if body.len() < n {
                return Err(PhoenixError::BadBinary(format!("{what} is truncated")));
            }
            let (head, tail) = body.split_at(n);
            body = tail;
            String::from_utf8(head.to_vec())
                .map_err(|_| PhoenixError::BadBinary(format!("{what} is not UTF-8")))
        };
        let join_ref = take(lens[0], "join_ref")?;
        let reference = take(lens[1], "ref")?;
        let topic = take(lens[2], "topic")?;
        let event = take(lens[3], "event")?;
        let meta = take(lens[4], "metadata")?;
        let meta = if meta.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str::<Value>(&meta)
                    .map_err(|_| PhoenixError::BadBinary("metadata is not JSON".into()))?,
            )
        };
        let body = match encoding {
            ENCODING_JSON => BroadcastBody::Json(
                serde_json::from_slice(body)
                    .map_err(|_| PhoenixError::BadBinary("payload is not JSON".into()))?,
            ),
            ENCODING_BINARY => BroadcastBody::Binary(Bytes::copy_from_slice(body)),
            other => return Err(PhoenixError::BadBinary(format!("unknown encoding {other}"))),
        };
        Ok(Frame {
            join_ref: (!join_ref.is_empty()).then_some(join_ref),
            reference: (!reference.is_empty()).then_some(reference),
            topic,
            event: "broadcast".into(),
            payload: Payload::Broadcast { event, meta, body },
        })
    }
}

/// Phoenix refs are strings; some clients send numbers.
fn opt_ref(what: &str, v: Value) -> Result<Option<String>, PhoenixError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(PhoenixError::Malformed(format!(
            "{what} must be a string or null"
        ))),
    }
}

fn string_field(what: &str, v: Value) -> Result<String, PhoenixError> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s),
        _ => Err(PhoenixError::Malformed(format!(
            "{what} must be a non-empty string"
        ))),
    }
}

/// One `postgres_changes` binding as the client sent it (echoed back in the join reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangesBinding {
    pub event: String,
    pub schema: String,
    pub table: Option<String>,
    pub filter: Option<String>,
}

/// The `config` of a `phx_join`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JoinConfig {
    pub broadcast_self: bool,
    pub broadcast_ack: bool,
    /// Empty: the server picks a key per join.
    pub presence_key: String,
    pub presence_enabled: bool,
    pub postgres_changes: Vec<ChangesBinding>,
    pub private: bool,
    /// `config.since`: the position of the last change the client saw (resume after it).
    pub since: Option<Position>,
    /// `config.broadcast.replay`: broadcasts logged after `since` (ms since the epoch).
    pub replay: Option<ReplayOption>,
}

/// `broadcast.replay {since, limit}` as realtime-js sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayOption {
    pub since_ms: i64,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub config: JoinConfig,
    pub access_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    pub event: String,
    pub meta: Option<Value>,
    pub body: BroadcastBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PresenceOp {
    Track(Map<String, Value>),
    Untrack,
}

/// What a client frame asks for: one variant, and one parse, per event.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Heartbeat,
    Join(Join),
    Leave,
    AccessToken(String),
    Broadcast(Broadcast),
    Presence(PresenceOp),
}

impl ClientMessage {
    /// Interprets a frame; `size` is its length on the wire, checked against `limit`.
    pub fn parse(frame: &Frame, size: usize, limit: usize) -> Result<ClientMessage, PhoenixError> {
        if size > limit {
            return Err(PhoenixError::TooLarge { size, limit });
        }
        let json = match &frame.payload {
            Payload::Json(v) => v,
            Payload::Broadcast { event, meta, body } => {
                return Ok(ClientMessage::Broadcast(Broadcast {
                    event: event.clone(),
                    meta: meta.clone(),
                    body: body.clone(),
                }));
            }
        };
        match (frame.topic.as_str(), frame.event.as_str()) {
            ("phoenix", "heartbeat") => Ok(ClientMessage::Heartbeat),
            (_, "phx_join") => Ok(ClientMessage::Join(parse_join(json)?)),
            (_, "phx_leave") => Ok(ClientMessage::Leave),
            (_, "access_token") => match json.get("access_token") {
                Some(Value::String(t)) if !t.is_empty() => {
                    Ok(ClientMessage::AccessToken(t.clone()))
                }
                _ => Err(PhoenixError::BadPayload(
                    "access_token must be a non-empty string".into(),
                )),
            },
            (_, "broadcast") => Ok(ClientMessage::Broadcast(parse_broadcast(json)?)),
            (_, "presence") => Ok(ClientMessage::Presence(parse_presence(json)?)),
            (_, other) => Err(PhoenixError::UnknownEvent(other.to_string())),
        }
    }
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, PhoenixError> {
    match v {
        Value::Object(o) => Ok(o),
        _ => Err(PhoenixError::BadPayload(format!(
            "{what} must be an object"
        ))),
    }
}

fn flag(o: Option<&Value>, key: &str) -> Result<bool, PhoenixError> {
    match o.and_then(|o| o.get(key)) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(PhoenixError::BadPayload(format!("{key} must be a boolean"))),
    }
}

fn opt_string(o: &Map<String, Value>, key: &str) -> Result<Option<String>, PhoenixError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(PhoenixError::BadPayload(format!("{key} must be a string"))),
    }
}

fn parse_join(payload: &Value) -> Result<Join, PhoenixError> {
    let payload = object(payload, "phx_join payload")?;
    let empty = Value::Object(Map::new());
    let config = object(payload.get("config").unwrap_or(&empty), "config")?;
    let broadcast = config.get("broadcast").filter(|v| !v.is_null());
    let presence = config.get("presence").filter(|v| !v.is_null());
    if let Some(b) = broadcast {
        object(b, "config.broadcast")?;
    }
    if let Some(p) = presence {
        object(p, "config.presence")?;
    }
    let presence_key = match presence.and_then(|p| p.get("key")) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(PhoenixError::BadPayload(
                "presence.key must be a string".into(),
            ));
        }
    };
    let mut postgres_changes = Vec::new();
    match config.get("postgres_changes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                let b = object(item, "postgres_changes binding")?;
                let event = opt_string(b, "event")?
                    .ok_or_else(|| PhoenixError::BadPayload("binding needs an event".into()))?;
                let schema = opt_string(b, "schema")?
                    .ok_or_else(|| PhoenixError::BadPayload("binding needs a schema".into()))?;
                postgres_changes.push(ChangesBinding {
                    event,
                    schema,
                    table: opt_string(b, "table")?,
                    filter: opt_string(b, "filter")?,
                });
            }
        }
        Some(_) => {
            return Err(PhoenixError::BadPayload(
                "postgres_changes must be a list".into(),
            ));
        }
    }
    let access_token = match payload.get("access_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => {
            return Err(PhoenixError::BadPayload(
                "access_token must be a string".into(),
            ));
        }
    };
    let since = match config.get("since") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            s.parse::<Position>()
                .map_err(|e| PhoenixError::BadPayload(e.to_string()))?,
        ),
        Some(_) => {
            return Err(PhoenixError::BadPayload(
                "since must be a position string (X/X:N)".into(),
            ));
        }
    };
    let replay = match broadcast.and_then(|b| b.get("replay")) {
        None | Some(Value::Null) => None,
        Some(Value::Object(r)) => {
            let since_ms = r.get("since").and_then(Value::as_i64).ok_or_else(|| {
                PhoenixError::BadPayload(
                    "broadcast.replay.since must be a number (ms since the epoch)".into(),
                )
            })?;
            let limit = match r.get("limit") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().filter(|l| *l > 0).ok_or_else(|| {
                    PhoenixError::BadPayload(
                        "broadcast.replay.limit must be a positive integer".into(),
                    )
                })?),
            };
            Some(ReplayOption { since_ms, limit })
        }
        Some(_) => {
            return Err(PhoenixError::BadPayload(
                "broadcast.replay must be an object".into(),
            ));
        }
    };
    Ok(Join {
        config: JoinConfig {
            since,
            replay,
            broadcast_self: flag(broadcast, "self")?,
            broadcast_ack: flag(broadcast, "ack")?,
            presence_key,
            presence_enabled: flag(presence, "enabled")?,
            postgres_changes,
            private: flag(Some(&Value::Object(config.clone())), "private")?,
        },
        access_token,
    })
}

fn parse_broadcast(payload: &Value) -> Result<Broadcast, PhoenixError> {
    let o = object(payload, "broadcast payload")?;
    let event = opt_string(o, "event")?
        .ok_or_else(|| PhoenixError::BadPayload("broadcast needs an event".into()))?;
    Ok(Broadcast {
        event,
        meta: None,
        body: BroadcastBody::Json(o.get("payload").cloned().unwrap_or(Value::Null)),
    })
}

fn parse_presence(payload: &Value) -> Result<PresenceOp, PhoenixError> {
    let o = object(payload, "presence payload")?;
    match opt_string(o, "event")?.as_deref() {
        Some("track") => match o.get("payload") {
            Some(Value::Object(meta)) => Ok(PresenceOp::Track(meta.clone())),
            None | Some(Value::Null) => Ok(PresenceOp::Track(Map::new())),
            Some(_) => Err(PhoenixError::BadPayload(
                "presence payload must be an object".into(),
            )),
        },
        Some("untrack") => Ok(PresenceOp::Untrack),
        Some(other) => Err(PhoenixError::UnknownEvent(format!("presence {other}"))),
        None => Err(PhoenixError::BadPayload("presence needs an event".into())),
    }
}

/// A message from the server, encoded per socket in its serializer.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// Any JSON message (replies, system, presence, postgres_changes, phx_close…).
    Json {
        join_ref: Option<Arc<str>>,
        reference: Option<String>,
        topic: Arc<str>,
        event: &'static str,
        payload: Value,
    },
    /// A user broadcast: binary frame for 2.0.0, JSON for 1.0.0.
    Broadcast {
        topic: Arc<str>,
        event: String,
        meta: Option<Value>,
        body: BroadcastBody,
    },
    /// A `postgres_changes` event: `data` is serialized once per change and shared by every
    /// channel it goes to; only the matching binding `ids` differ.
    Change {
        topic: Arc<str>,
        ids: Vec<u32>,
        data: Arc<str>,
    },
    /// One message queued to many sockets (a broadcast, a presence diff): encoded once per
    /// serializer, by the first socket that needs it, and shared by the rest.
    Shared(Arc<Shared>),
}

/// A message with its encodings, made on first use.
#[derive(Debug)]
pub struct Shared {
    message: ServerMessage,
    v1: std::sync::OnceLock<Option<Encoded>>,
    v2: std::sync::OnceLock<Option<Encoded>>,
}

impl Shared {
    /// `message`, to be encoded once for all the sockets it is queued to.
    pub fn wrap(message: ServerMessage) -> ServerMessage {
        ServerMessage::Shared(Arc::new(Shared {
            message,
            v1: std::sync::OnceLock::new(),
            v2: std::sync::OnceLock::new(),
        }))
    }
}

impl PartialEq for Shared {
    fn eq(&self, other: &Shared) -> bool {
        self.message == other.message
    }
}

/// A WebSocket frame's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Encoded {
    Text(String),
    Binary(Bytes),
}

impl ServerMessage {
    /// `phx_reply` with `status` and `response`.
    pub fn reply(
        join_ref: Option<Arc<str>>,
        reference: Option<String>,
        topic: Arc<str>,
        ok: bool,
        response: Value,
    ) -> ServerMessage {
        ServerMessage::Json {
            join_ref,
            reference,
            topic,
            event: "phx_reply",
            payload: json!({"status": if ok { "ok" } else { "error" }, "response": response}),
        }
    }

    /// Encodes for a socket; `None` when this serializer cannot carry it (a binary broadcast
    /// body to a 1.0.0 client, or a name over the binary frame's 255-byte fields).
    pub fn encode(&self, vsn: Vsn) -> Option<Encoded> {
        match (self, vsn) {
            (ServerMessage::Shared(shared), Vsn::V1) => {
                shared.v1.get_or_init(|| shared.message.encode(vsn)).clone()
            }
            (ServerMessage::Shared(shared), Vsn::V2) => {
                shared.v2.get_or_init(|| shared.message.encode(vsn)).clone()
            }
            (
                ServerMessage::Json {
                    join_ref,
                    reference,
                    topic,
                    event,
                    payload,
                },
                _,
            ) => Some(Encoded::Text(envelope(
                vsn,
                join_ref.as_deref(),
                reference.as_deref(),
                topic,
                event,
                &payload.to_string(),
            ))),
            (ServerMessage::Change { topic, ids, data }, _) => {
                let ids = Value::from(ids.clone());
                let payload = format!("{{\"data\":{data},\"ids\":{ids}}}");
                Some(Encoded::Text(envelope(
                    vsn,
                    None,
                    None,
                    topic,
                    "postgres_changes",
                    &payload,
                )))
            }
            (
                ServerMessage::Broadcast {
                    topic,
                    event,
                    meta,
                    body,
                },
                Vsn::V2,
            ) => {
                let meta = meta.as_ref().map(Value::to_string).unwrap_or_default();
                let (encoding, body) = match body {
                    BroadcastBody::Json(v) => (ENCODING_JSON, Bytes::from(v.to_string())),
                    BroadcastBody::Binary(b) => (ENCODING_BINARY, b.clone()),
                };
                let lens = [topic.len(), event.len(), meta.len()];
                if lens.iter().any(|&l| l > 255) {
                    return None;
                }
                let mut out = Vec::with_capacity(5 + lens.iter().sum::<usize>() + body.len());
                out.push(KIND_USER_BROADCAST);
                // Each length was checked to fit a byte just above.
                out.extend(lens.iter().map(|&l| l as u8));
                out.push(encoding);
                out.extend_from_slice(topic.as_bytes());
                out.extend_from_slice(event.as_bytes());
                out.extend_from_slice(meta.as_bytes());
                out.extend_from_slice(&body);
                Some(Encoded::Binary(Bytes::from(out)))
            }
            (
                ServerMessage::Broadcast {
                    topic,
                    event,
                    meta,
                    body: BroadcastBody::Json(v),
                },
                Vsn::V1,
            ) => {
                let mut payload = json!({"type": "broadcast", "event": event, "payload": v});
                if let Some(m) = meta {
                    payload["meta"] = m.clone();
                }
                Some(Encoded::Text(envelope(
                    vsn,
                    None,
                    None,
                    topic,
                    "broadcast",
                    &payload.to_string(),
                )))
            }
            (
                ServerMessage::Broadcast {
                    body: BroadcastBody::Binary(_),
                    ..
                },
                Vsn::V1,
            ) => None,
        }
    }
}

/// The envelope around an already serialized payload (so a payload is never copied into a
/// new JSON tree just to be serialized).
fn envelope(
    vsn: Vsn,
    join_ref: Option<&str>,
    reference: Option<&str>,
    topic: &str,
    event: &str,
    payload: &str,
) -> String {
    let text = |v: Option<&str>| Value::from(v).to_string();
    let (join_ref, reference, topic, event) = (
        text(join_ref),
        text(reference),
        text(Some(topic)),
        text(Some(event)),
    );
    match vsn {
        Vsn::V1 => format!(
            "{{\"event\":{event},\"join_ref\":{join_ref},\"payload\":{payload},\"ref\":{reference},\"topic\":{topic}}}"
        ),
        Vsn::V2 => format!("[{join_ref},{reference},{topic},{event},{payload}]"),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "phoenix/props.rs"]
mod props;
