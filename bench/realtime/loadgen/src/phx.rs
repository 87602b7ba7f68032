//! The client side of Phoenix channels, vsn 2.0.0, as much as the load generator needs: connect,
//! `phx_join` with realtime-js's join payload and wait for the reply, heartbeats, and the binary
//! user broadcast push (kind 3) realtime-js ≥ 2.91 sends.
//!
//! Rejects (as an error string) join replies with status other than "ok" and sockets that close
//! before the reply.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// realtime-js's heartbeat period.
pub const HEARTBEAT: Duration = Duration::from_secs(25);

/// Opens `{url}/realtime/v1/websocket?apikey=…&vsn=2.0.0` (or `url` itself when it already has a
/// path, for the bare server).
pub async fn connect(url: &str, apikey: &str) -> Result<Ws, String> {
    let full = if url.contains("/realtime/") || url.ends_with("/ws") {
        url.to_string()
    } else {
        format!(
            "{}/realtime/v1/websocket?apikey={apikey}&vsn=2.0.0",
            url.trim_end_matches('/')
        )
    };
    let mut last = String::new();
    // A burst of connects can overflow the listen backlog for a moment: retry a few times.
    for attempt in 0..5 {
        match tokio_tungstenite::connect_async(full.as_str()).await {
            Ok((ws, _)) => return Ok(ws),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    Err(format!("connect {full}: {last}"))
}

/// A `phx_join` frame (ref "1", join_ref "1") in realtime-js's shape, presence off.
pub fn join_frame(topic: &str, postgres_changes: Value, access_token: Option<&str>) -> Message {
    join_frame_with(topic, postgres_changes, None, access_token)
}

/// A `phx_join` frame with presence enabled under `presence_key` when one is given.
pub fn join_frame_with(
    topic: &str,
    postgres_changes: Value,
    presence_key: Option<&str>,
    access_token: Option<&str>,
) -> Message {
    let mut payload = json!({
        "config": {
            "broadcast": {"ack": false, "self": false},
            "presence": {"key": presence_key.unwrap_or(""), "enabled": presence_key.is_some()},
            "postgres_changes": postgres_changes,
            "private": false,
        },
    });
    if let Some(t) = access_token {
        payload["access_token"] = json!(t);
    }
    Message::text(json!(["1", "1", topic, "phx_join", payload]).to_string())
}

/// realtime-js's presence track push: `["1", ref, topic, "presence", {type, event, payload}]`.
pub fn track_frame(topic: &str, reference: u64, meta: Value) -> Message {
    let payload = json!({"type": "presence", "event": "track", "payload": meta});
    Message::text(json!(["1", reference.to_string(), topic, "presence", payload]).to_string())
}

pub fn heartbeat_frame(reference: u64) -> Message {
    Message::text(json!([null, reference.to_string(), "phoenix", "heartbeat", {}]).to_string())
}

/// Sends the join and waits for its reply; anything else arriving first is ignored.
pub async fn join(ws: &mut Ws, frame: Message) -> Result<(), String> {
    ws.send(frame).await.map_err(|e| e.to_string())?;
    let wait = async {
        while let Some(msg) = ws.next().await {
            let Message::Text(text) = msg.map_err(|e| e.to_string())? else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            if v[3] == "phx_reply" && v[1] == "1" {
                return if v[4]["status"] == "ok" {
                    Ok(())
                } else {
                    Err(format!("join refused: {}", v[4]))
                };
            }
        }
        Err("socket closed before the join reply".to_string())
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .map_err(|_| "no join reply within 30 s".to_string())?
}

/// realtime-js's binary broadcast push: kind 3, lengths of join_ref, ref, topic, event and
/// meta, the payload encoding (1 = JSON), then those strings and the payload.
pub fn broadcast_push(join_ref: &str, topic: &str, event: &str, payload: &str) -> Message {
    let mut out = vec![
        3,
        join_ref.len() as u8,
        0,
        topic.len() as u8,
        event.len() as u8,
        0,
        1,
    ];
    out.extend_from_slice(join_ref.as_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(payload.as_bytes());
    Message::binary(out)
}

/// Percentile (0–100) of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds since the Unix epoch (the machine clock PostgreSQL's commit timestamps use too).
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
