//! Realtime sockets that end badly end cleanly, on doska's real socket with a raw WebSocket client:
//! a socket that stops reading while broadcasts flood it is released at once (its channels leave
//! the hub, its presence leaves, the socket count drops) instead of waiting for the client to read
//! again; a heartbeat flood, a 1,000-join burst and an over-size frame get a Phoenix `system`
//! error and a close frame with their code (1008, 1009) before a graceful TCP close — never a
//! reset, which clients report as 1006.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::phx::Phx;
use doska::realtime::hub::Hub;
use doska::realtime::phoenix::BroadcastBody;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Generous bound on anything that should happen "at once"; before the fixes these never came.
const PROMPTLY: Duration = Duration::from_secs(30);

async fn serve() -> (common::TestDb, String, Arc<Hub>) {
    let db = common::TestDb::new().await;
    let doors = db.doors().await;
    let url = db.serve(&doors).await;
    (db, url, doors.hub.clone())
}

fn ws_url(base: &str, key: &str) -> String {
    format!(
        "{}/realtime/v1/websocket?apikey={key}&vsn=2.0.0",
        base.replacen("http://", "ws://", 1)
    )
}

fn anon(db: &common::TestDb) -> String {
    db.sign(json!({"role": "anon"}))
}

async fn connect(db: &common::TestDb, base: &str) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let (ws, _) = tokio_tungstenite::connect_async(ws_url(base, &anon(db)))
        .await
        .expect("connecting");
    ws
}

/// Sends `frames` in one go (send errors are ignored: the server may already have closed).
async fn blast<S>(ws: &mut WebSocketStream<S>, frames: impl IntoIterator<Item = Message>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for f in frames {
        if ws.feed(f).await.is_err() {
            return;
        }
    }
    let _ = ws.flush().await;
}

/// Reads up to the server's close frame; returns the `system` payloads seen and the close code.
/// Then the connection must end cleanly (the server's FIN), not with a reset.
async fn until_close<S>(ws: &mut WebSocketStream<S>) -> (Vec<Value>, CloseCode)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut systems = Vec::new();
    let code = loop {
        match tokio::time::timeout(PROMPTLY, ws.next()).await {
            Err(_) => panic!("no close frame; system messages so far: {systems:?}"),
            Ok(None) => panic!("the stream ended without a close frame: {systems:?}"),
            Ok(Some(Err(e))) => {
                panic!(
                    "the connection failed instead of closing ({e}); system messages: {systems:?}"
                )
            }
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("a JSON frame");
                if v[3] == "system" {
                    systems.push(v[4].clone());
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                break frame.expect("a close frame with a code").code;
            }
            Ok(Some(Ok(_))) => {}
        }
    };
    match tokio::time::timeout(PROMPTLY, ws.next()).await {
        Ok(None) => {}
        Ok(Some(Err(e))) => {
            panic!("after the close frame the connection was not closed cleanly: {e}")
        }
        Ok(Some(Ok(m))) => panic!("a message after the close frame: {m:?}"),
        Err(_) => panic!("the server did not close the connection after its close frame"),
    }
    (systems, code)
}

fn system_error(systems: &[Value], needle: &str) {
    assert!(
        systems
            .iter()
            .any(|s| s["status"] == "error"
                && s["message"].as_str().is_some_and(|m| m.contains(needle))),
        "expected a system error containing {needle:?}, got {systems:?}"
    );
}

/// A fresh socket sends `frames` at once: it must get a `system` error containing `needle`, then
/// a close frame with `code`, then a clean TCP close. Returns the server (alive while held).
async fn expect_error_close(
    frames: impl IntoIterator<Item = Message>,
    needle: &str,
    code: CloseCode,
) -> (common::TestDb, Arc<Hub>) {
    let (db, url, hub) = serve().await;
    let mut ws = connect(&db, &url).await;
    blast(&mut ws, frames).await;
    let (systems, got) = until_close(&mut ws).await;
    system_error(&systems, needle);
    assert_eq!(got, code);
    (db, hub)
}

#[tokio::test]
async fn a_heartbeat_flood_gets_an_error_and_close_1008() {
    let frames = (0..1000).map(|i| {
        Message::text(json!([null, i.to_string(), "phoenix", "heartbeat", {}]).to_string())
    });
    expect_error_close(frames, "too many messages", CloseCode::Policy).await;
}

#[tokio::test]
async fn a_join_burst_gets_an_error_and_close_1008() {
    let frames = (0..1000).map(|i| {
        let r = i.to_string();
        Message::text(
            json!([r, r, format!("realtime:burst-{i}"), "phx_join", {"config": {}}]).to_string(),
        )
    });
    let (_db, hub) = expect_error_close(frames, "too many messages", CloseCode::Policy).await;
    assert_eq!(hub.channels(), 0, "the burst's channels left the hub");
}

#[tokio::test]
async fn an_oversize_frame_gets_an_error_and_close_1009() {
    // Frames over 4× --realtime-max-message-bytes (256 KiB by default) close the socket.
    let huge = "x".repeat(2 * 1024 * 1024);
    let frame = json!([null, "1", "phoenix", "heartbeat", {"pad": huge}]).to_string();
    expect_error_close([Message::text(frame)], "too large", CloseCode::Size).await;
}

#[tokio::test]
async fn a_socket_that_never_reads_is_released_at_once() {
    let (db, url, hub) = serve().await;
    // A small receive buffer, so the kernel holds little of what the slow client never reads.
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(addr).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(ws_url(&url, &anon(&db)), stream)
        .await
        .expect("connecting the slow client");
    let presence = json!({"config": {"presence": {"key": "slow", "enabled": true}}});
    let mut frames = Vec::new();
    for (i, name) in ["room", "side-1", "side-2"].iter().enumerate() {
        let (j, t) = (format!("j{i}"), format!("t{i}"));
        let topic = format!("realtime:{name}");
        frames.push(json!([j, j, topic, "phx_join", presence]).to_string());
        frames.push(
            json!([j, t, topic, "presence", {"type": "presence", "event": "track", "payload": {"who": "slow"}}])
                .to_string(),
        );
    }
    blast(&mut slow, frames.into_iter().map(Message::text)).await;
    // The six replies (three joins, three tracks) say the slow client is in.
    let mut replies = 0;
    while replies < 6 {
        let m = tokio::time::timeout(PROMPTLY, slow.next())
            .await
            .expect("replies to the joins")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v[3] == "phx_reply" {
                assert_eq!(v[4]["status"], "ok", "{v}");
                replies += 1;
            }
        }
    }
    assert_eq!(hub.sockets(), 1);
    assert_eq!(hub.channels(), 3);
    assert!(hub.presence_state("realtime:room").get("slow").is_some());

    // From here on the slow client never reads. Broadcasts flood it until its queue is full.
    let blob = "x".repeat(8 * 1024);
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    while hub.sockets() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow socket is still counted ({} sockets, {} channels)",
            hub.sockets(),
            hub.channels()
        );
        for _ in 0..50 {
            hub.broadcast(
                None,
                "realtime:room",
                false,
                "flood".into(),
                None,
                BroadcastBody::Json(json!({ "blob": blob })),
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hub.channels(), 0, "its channels left the hub");
    assert_eq!(hub.presence_state("realtime:room"), json!({}));

    // Another client's view: joining the room, the slow client's presence is gone.
    let mut watcher = Phx::connect(&url, &anon(&db)).await.unwrap();
    let reply = watcher
        .join(
            "room",
            json!({"presence": {"key": "watcher", "enabled": true}}),
            None,
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let state = loop {
        let m = watcher
            .next(PROMPTLY)
            .await
            .expect("presence_state after the join");
        if m.event == "presence_state" {
            break m.payload;
        }
    };
    assert!(state.get("slow").is_none(), "{state}");
    drop(slow);
}
