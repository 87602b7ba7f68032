//! A small Phoenix channels client (serializer vsn 2.0.0: JSON arrays, plus the binary broadcast
//! frame doska sends) over tokio-tungstenite, for tests that need what realtime-js does not
//! expose (positions, `since`).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// One message from the server: topic, event, payload (binary broadcasts as
/// `{"type": "broadcast", "event", "payload", "meta"}`).
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub event: String,
    pub reference: Option<String>,
    pub payload: Value,
}

pub struct Phx {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_ref: u64,
    /// Messages read while waiting for something else (a join reply).
    pending: std::collections::VecDeque<Incoming>,
    /// Why the socket ended (a close frame, an error, the end of the stream), once it has.
    ended: Option<String>,
}

impl Phx {
    /// Connects to `<base>/realtime/v1/websocket` (base is `http://host:port`).
    pub async fn connect(base: &str, apikey: &str) -> Result<Phx, String> {
        let url = format!(
            "{}/realtime/v1/websocket?apikey={apikey}&vsn=2.0.0",
            base.replacen("http://", "ws://", 1)
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Phx {
            ws,
            next_ref: 0,
            pending: Default::default(),
            ended: None,
        })
    }

    pub async fn push(
        &mut self,
        join_ref: Option<&str>,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> String {
        self.next_ref += 1;
        let reference = self.next_ref.to_string();
        let frame = json!([join_ref, reference, topic, event, payload]).to_string();
        self.ws
            .send(Message::text(frame))
            .await
            .expect("sending a frame");
        reference
    }

    /// Joins `realtime:<name>` with `config`; returns the reply's payload (`{status, response}`).
    pub async fn join(&mut self, name: &str, config: Value, access_token: Option<&str>) -> Value {
        let topic = format!("realtime:{name}");
        let mut payload = json!({ "config": config });
        if let Some(t) = access_token {
            payload["access_token"] = json!(t);
        }
        self.next_ref += 1;
        let reference = self.next_ref.to_string();
        let frame = json!([reference, reference, topic, "phx_join", payload]).to_string();
        self.ws
            .send(Message::text(frame))
            .await
            .expect("sending a join");
        loop {
            let m = self
                .read(Duration::from_secs(10))
                .await
                .expect("no join reply");
            if m.event == "phx_reply" && m.reference.as_deref() == Some(reference.as_str()) {
                return m.payload;
            }
            self.pending.push_back(m);
        }
    }

    /// Why the socket ended, once it has (`next` then answers `None` at once).
    pub fn ended(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    /// The next message within `wait`; `None` on timeout or when the socket ended.
    pub async fn next(&mut self, wait: Duration) -> Option<Incoming> {
        if let Some(m) = self.pending.pop_front() {
            return Some(m);
        }
        self.read(wait).await
    }

    async fn read(&mut self, wait: Duration) -> Option<Incoming> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => {
                    self.ended.get_or_insert_with(|| "end of stream".into());
                    return None;
                }
                Ok(Some(Err(e))) => {
                    self.ended.get_or_insert_with(|| e.to_string());
                    return None;
                }
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("a JSON frame");
                    return Some(Incoming {
                        reference: v[1].as_str().map(str::to_string),
                        topic: v[2].as_str().unwrap_or_default().to_string(),
                        event: v[3].as_str().unwrap_or_default().to_string(),
                        payload: v[4].clone(),
                    });
                }
                Message::Binary(b) => return Some(decode_broadcast(&b)),
                Message::Close(frame) => {
                    self.ended = Some(format!("closed by the server: {frame:?}"));
                    return None;
                }
                _ => {}
            }
        }
    }
}

/// Kind 4 (`userBroadcast`): `[4, len(topic), len(event), len(meta), encoding]`, then topic, event,
/// meta and payload.
fn decode_broadcast(b: &[u8]) -> Incoming {
    assert_eq!(b[0], 4, "binary frame kind");
    let (tl, el, ml) = (b[1] as usize, b[2] as usize, b[3] as usize);
    let mut at = 5;
    let mut take = |n: usize| {
        let s = &b[at..at + n];
        at += n;
        String::from_utf8_lossy(s).into_owned()
    };
    let topic = take(tl);
    let event = take(el);
    let meta = take(ml);
    let rest = &b[5 + tl + el + ml..];
    let payload = if b[4] == 1 {
        serde_json::from_slice(rest).unwrap_or(Value::Null)
    } else {
        json!({ "bytes": rest.len() })
    };
    let meta: Value = serde_json::from_str(&meta).unwrap_or(Value::Null);
    Incoming {
        topic,
        event: "broadcast".into(),
        reference: None,
        payload: json!({"type": "broadcast", "event": event, "payload": payload, "meta": meta}),
    }
}
