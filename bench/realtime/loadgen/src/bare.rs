//! `bare`: the ceiling for broadcast fan-out — a plain tokio-tungstenite server that answers
//! joins and heartbeats with an ok reply and turns each binary broadcast push (kind 3) into the
//! user broadcast frame (kind 4) doska sends, encoded once and queued to every other socket.
//! Each socket has one task reading and a writer draining its queue in batches (feed, then one
//! flush). No channels, no auth, no limits: only the work any fan-out must do.
//!
//! Rejects nothing; frames it does not know are ignored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::Args;

type Peers = Arc<Mutex<HashMap<u64, mpsc::Sender<Message>>>>;

pub async fn run(args: &Args) -> Result<(), String> {
    let listen = args.opt("listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("{listen}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    println!("{}", json!({ "port": port }));
    let peers: Peers = Arc::default();
    let ids = AtomicU64::new(0);
    loop {
        let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(stream, id, peers.clone()));
    }
}

/// realtime-js's user broadcast push → the server's user broadcast frame (kind 4: lengths of
/// topic, event and meta, encoding, then those and the payload), as doska encodes it.
fn to_broadcast(push: &[u8]) -> Option<Bytes> {
    let (&3, rest) = push.split_first()? else {
        return None;
    };
    let lens: Vec<usize> = rest.get(..5)?.iter().map(|&b| usize::from(b)).collect();
    let encoding = *rest.get(5)?;
    let body = rest.get(6..)?;
    let (refs, body) = body.split_at_checked(lens[0] + lens[1])?;
    let _ = refs;
    let (topic, body) = body.split_at_checked(lens[2])?;
    let (event, body) = body.split_at_checked(lens[3])?;
    let (meta, payload) = body.split_at_checked(lens[4])?;
    let mut out = Vec::with_capacity(5 + topic.len() + event.len() + meta.len() + payload.len());
    out.extend_from_slice(&[4, lens[2] as u8, lens[3] as u8, lens[4] as u8, encoding]);
    out.extend_from_slice(topic);
    out.extend_from_slice(event);
    out.extend_from_slice(meta);
    out.extend_from_slice(payload);
    Some(Bytes::from(out))
}

async fn serve(stream: TcpStream, id: u64, peers: Peers) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(1024);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.feed(msg).await.is_err() {
                return;
            }
            while let Ok(msg) = rx.try_recv() {
                if sink.feed(msg).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    peers.lock().unwrap().insert(id, tx.clone());
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(text) => {
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let reply = json!([v[0], v[1], v[2], "phx_reply",
                    {"status": "ok", "response": {"postgres_changes": []}}]);
                let _ = tx.try_send(Message::text(reply.to_string()));
            }
            Message::Binary(push) => {
                let Some(frame) = to_broadcast(&push) else {
                    continue;
                };
                let msg = Message::Binary(frame);
                for (peer, q) in peers.lock().unwrap().iter() {
                    if *peer != id {
                        let _ = q.try_send(msg.clone());
                    }
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    peers.lock().unwrap().remove(&id);
    drop(tx);
    let _ = writer.await;
}
