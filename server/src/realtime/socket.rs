//! One Phoenix socket at `/realtime/v1/websocket`: the HTTP upgrade (apikey checked by the
//! shared verifier, `vsn` picks the serializer), then a loop that reads client frames, answers
//! them per [`ClientMessage`] variant, and writes what the hub queued for this socket.
//!
//! Rejects: upgrades without a valid apikey (401) or with an unknown vsn (400); frames that do
//! not parse, unknown events, oversized payloads (error reply, the socket stays); messages for
//! topics not joined (error reply); floods over the per-socket rate and frames over the hard cap
//! (a `system` error, then close 1008 / 1009); sockets silent past the idle timeout, sockets whose
//! send queue is full or whose writes stall (slow consumers: released at once, without waiting for
//! the peer), and all sockets at shutdown (close frame). Every close but a slow consumer's is
//! graceful: the close frame, then FIN, then the peer's last bytes are read and dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{
    CloseFrame, Role, WebSocketConfig, frame::coding::CloseCode,
};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, handshake::derive_accept_key};

use super::authorize::{self, ChannelPermissions};
use super::hub::{ChanId, Hub, Membership};
use super::log;
use super::outbox::{Gate, Outbox, SEND_QUEUE};
use super::phoenix::{
    Broadcast, ClientMessage, Encoded, Frame, Join, PhoenixError, PresenceOp, ReplayOption,
    ServerMessage, Vsn,
};
use super::replay::{self, ReplayChannel};
use super::subscriptions::PostgresChanges;
use crate::http::body::{Body, empty};
use crate::jwt::Caller;
use crate::state::SharedState;

/// Queued messages written before one flush at most (the rest wait for the next turn, so
/// reading the client is never starved).
const WRITE_BATCH: usize = 64;
/// A socket that sends nothing (not even heartbeats, every 25 s in realtime-js) this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Client messages allowed per second, averaged over a burst of twice that.
const RATE_PER_SEC: f64 = 200.0;
/// How often joined channels' tokens are checked for expiry.
const TOKEN_CHECK: Duration = Duration::from_secs(5);
/// How long the goodbye (queued errors, the close frame, the peer's last bytes) may take.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// What a closing socket reads and drops at most while waiting for the peer to close.
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Explicit buffer sizes: tungstenite's defaults (128 KiB read buffer per socket, unbounded write
/// buffer) would make idle sockets costly and slow ones unbounded.
fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        // tungstenite requires it above the write buffer's 8 KiB, whatever the message cap.
        .max_write_buffer_size((4 * max_message).max(64 * 1024))
        // Frames a bit over the cap still arrive whole, so they get a Phoenix error reply
        // instead of a dropped connection; far larger ones close the socket.
        .max_message_size(Some(4 * max_message))
        .max_frame_size(Some(4 * max_message))
}

fn refuse(status: StatusCode, message: &str) -> Response<Body> {
    super::error(status, message)
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// Answers the upgrade request and spawns the socket's task.
pub async fn upgrade(
    state: SharedState,
    hub: Arc<Hub>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    if req.method() != http::Method::GET || !is_upgrade(req.headers()) {
        return refuse(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade");
    }
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported WebSocket version (expected 13)",
        );
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return refuse(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let query = req.uri().query().map(str::to_string);
    let vsn = match Vsn::parse(crate::http::query::first(query.as_deref(), "vsn").as_deref()) {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let apikey = crate::http::query::first(query.as_deref(), "apikey").or_else(|| {
        req.headers()
            .get("apikey")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let Some(apikey) = apikey.filter(|k| !k.is_empty()) else {
        return refuse(StatusCode::UNAUTHORIZED, "apikey is required");
    };
    let caller = match state.verifier.caller_from_token(&apikey) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, e.message()),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config(state.config.realtime_max_message_bytes)),
                )
                .await;
                run(state, hub, vsn, caller, ws).await;
            }
            Err(e) => tracing::debug!(error = %e, "realtime: upgrade failed"),
        }
    });
    let mut res = Response::new(empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(
        header::CONNECTION,
        http::HeaderValue::from_static("upgrade"),
    );
    h.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
    if let Ok(v) = http::HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}

/// A channel this socket has joined.
struct Joined {
    chan: ChanId,
    join_ref: Option<Arc<str>>,
    topic: Arc<str>,
    broadcast_ack: bool,
    caller: Caller,
    /// For a private channel, what its policies on `realtime.messages` allow.
    perms: Option<ChannelPermissions>,
}

/// Why the loop ended, for the close frame.
enum Exit {
    ClientGone,
    Shutdown,
    SlowConsumer,
    Idle,
    Flood,
    /// A frame over the hard cap (4× the message cap).
    TooLarge,
}

/// Runs one socket until the client leaves, falls behind, floods, idles out, or doska stops.
async fn run<S>(state: SharedState, hub: Arc<Hub>, vsn: Vsn, caller: Caller, ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (outbox, mut queue, overflowed) = Outbox::new(SEND_QUEUE);
    let _open = hub.socket_opened();
    let mut conn = Connection {
        state: state.clone(),
        hub,
        vsn,
        caller,
        channels: HashMap::new(),
        outbox,
    };
    let (mut sink, mut stream) = ws.split();
    let mut shutdown = state.shutdown.clone();
    let mut token_check = tokio::time::interval(TOKEN_CHECK);
    token_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    let mut allowance = 2.0 * RATE_PER_SEC;
    let mut last_refill = Instant::now();
    let exit = 'socket: loop {
        if *shutdown.borrow() {
            break Exit::Shutdown;
        }
        tokio::select! {
            _ = shutdown.changed() => break Exit::Shutdown,
            _ = overflowed.notified() => break Exit::SlowConsumer,
            out = queue.recv() => {
                // The connection holds a sender itself, so the queue never ends here.
                let Some(msg) = out else { break Exit::ClientGone };
                // A peer that stops reading blocks this write: it must not hold the socket (and
                // its channels) hostage, so a full queue, shutdown or a long stall end it here.
                tokio::select! {
                    // Boxed, as is `handle` below: an idle socket's task then holds only the small
                    // futures it waits on, not the state of the work it does now and then.
                    written = Box::pin(write_batch(&mut sink, &mut queue, conn.vsn, msg)) => {
                        if !written {
                            break 'socket Exit::ClientGone;
                        }
                    }
                    _ = overflowed.notified() => break 'socket Exit::SlowConsumer,
                    _ = shutdown.changed() => break 'socket Exit::Shutdown,
                    _ = tokio::time::sleep(IDLE_TIMEOUT) => break 'socket Exit::SlowConsumer,
                }
            }
            _ = token_check.tick() => {
                conn.expire_tokens();
                if last_seen.elapsed() > IDLE_TIMEOUT {
                    break Exit::Idle;
                }
            }
            incoming = stream.next() => {
                let message = match incoming {
                    Some(Ok(message)) => message,
                    Some(Err(WsError::Capacity(_))) => {
                        let max = 4 * conn.state.config.realtime_max_message_bytes;
                        conn.system_error(None, &format!("frame too large: over {max} bytes"));
                        break Exit::TooLarge;
                    }
                    _ => break Exit::ClientGone,
                };
                last_seen = Instant::now();
                let now = Instant::now();
                allowance = (allowance + now.duration_since(last_refill).as_secs_f64() * RATE_PER_SEC)
                    .min(2.0 * RATE_PER_SEC);
                last_refill = now;
                allowance -= 1.0;
                if allowance < 0.0 {
                    conn.system_error(None, "too many messages: slow down");
                    break Exit::Flood;
                }
                match message {
                    Message::Text(text) => {
                        let size = text.len();
                        Box::pin(conn.handle(Frame::decode_text(conn.vsn, text.as_str()), size)).await;
                    }
                    Message::Binary(bytes) => {
                        let size = bytes.len();
                        Box::pin(conn.handle(Frame::decode_binary(conn.vsn, &bytes), size)).await;
                    }
                    Message::Close(_) => break Exit::ClientGone,
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
        }
    };
    // Released first, whatever the peer does next: its channels leave the hub (presence leaves go
    // to the others) before any byte of the goodbye is written.
    for joined in conn.channels.values() {
        conn.hub.leave(joined.chan);
    }
    conn.channels.clear();
    let (code, reason) = match exit {
        Exit::ClientGone => {
            // tungstenite answers a client's close frame on the next write: send that answer.
            let _ = tokio::time::timeout(CLOSE_GRACE, sink.flush()).await;
            return;
        }
        Exit::Shutdown => (CloseCode::Away, "server shutting down"),
        Exit::SlowConsumer => (CloseCode::Policy, "too slow: send queue full"),
        Exit::Idle => (CloseCode::Policy, "idle timeout: no heartbeat"),
        Exit::Flood => (CloseCode::Policy, "rate limit exceeded"),
        Exit::TooLarge => (CloseCode::Size, "frame too large"),
    };
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    if matches!(exit, Exit::SlowConsumer) {
        // It reads nothing: one short try at the close frame, then the connection is dropped.
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(close)).await;
        return;
    }
    // Whatever is queued (a flood's system error) goes first, then the close frame.
    let goodbye = async {
        while let Ok(msg) = queue.try_recv() {
            if let Some(encoded) = msg.encode(conn.vsn) {
                sink.feed(encoded.into()).await?;
            }
        }
        sink.send(close).await
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, Box::pin(goodbye)).await;
    if let Ok(mut ws) = sink.reunite(stream) {
        Box::pin(linger(ws.get_mut())).await;
    }
}

/// Writes `first` and what else is already queued (up to [`WRITE_BATCH`]), then flushes once:
/// one write (mostly) per batch instead of one per message. False once the peer is gone.
async fn write_batch<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    queue: &mut mpsc::Receiver<ServerMessage>,
    vsn: Vsn,
    first: ServerMessage,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut next = Some(first);
    let mut written = 0;
    while let Some(msg) = next.take() {
        if let Some(encoded) = msg.encode(vsn)
            && sink.feed(encoded.into()).await.is_err()
        {
            return false;
        }
        written += 1;
        if written < WRITE_BATCH {
            next = queue.try_recv().ok();
        }
    }
    sink.flush().await.is_ok()
}

/// A graceful end after our close frame: the write half is shut (FIN), and what the peer still
/// sends (the rest of a flood or of an over-size frame, its own close frame) is read and dropped
/// until it closes too. Closing with unread bytes would make the kernel answer with a reset, which
/// can discard the close frame before the client reads it (clients then report 1006). Bounded in
/// time and bytes.
async fn linger<S>(io: &mut S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
    if tokio::time::timeout_at(deadline, io.shutdown())
        .await
        .is_err()
    {
        return;
    }
    let mut buf = [0u8; 8 * 1024];
    let mut budget = LINGER_BYTES;
    while budget > 0 {
        match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => budget = budget.saturating_sub(n),
            _ => return,
        }
    }
}

struct Connection {
    state: SharedState,
    hub: Arc<Hub>,
    vsn: Vsn,
    /// Who the apikey says the socket is; a join's access_token overrides it per channel.
    caller: Caller,
    channels: HashMap<Arc<str>, Joined>,
    outbox: Outbox,
}

/// `realtime:room` → `room`, as Supabase names channels in system messages and the REST API.
fn sub_topic(topic: &str) -> &str {
    topic.strip_prefix("realtime:").unwrap_or(topic)
}

fn unauthorized_write(topic: &str) -> String {
    format!(
        "Unauthorized: You do not have permissions to write to this Channel topic: {}",
        sub_topic(topic)
    )
}

/// Whether the caller's token has expired (`exp` in the past).
fn expired(caller: &Caller) -> bool {
    let now = chrono::Utc::now().timestamp();
    caller
        .claims
        .get("exp")
        .and_then(Value::as_i64)
        .is_some_and(|exp| exp < now)
}

impl Connection {
    fn send(&self, msg: ServerMessage) {
        self.outbox.send(msg);
    }

    fn reply(&self, frame: &Frame, ok: bool, response: Value) {
        self.send(ServerMessage::reply(
            frame.join_ref.as_deref().map(Arc::from),
            frame.reference.clone(),
            Arc::from(frame.topic.as_str()),
            ok,
            response,
        ));
    }

    fn system(
        &self,
        topic: &Arc<str>,
        join_ref: Option<Arc<str>>,
        ok: bool,
        extension: &str,
        message: &str,
    ) {
        self.send(ServerMessage::Json {
            join_ref,
            reference: None,
            topic: topic.clone(),
            event: "system",
            payload: json!({
                "message": message,
                "status": if ok { "ok" } else { "error" },
                "extension": extension,
                "channel": sub_topic(topic),
            }),
        });
    }

    /// An error not tied to a joined channel, on the `phoenix` topic.
    fn system_error(&self, reference: Option<String>, message: &str) {
        self.send(ServerMessage::Json {
            join_ref: None,
            reference,
            topic: Arc::from("phoenix"),
            event: "system",
            payload: json!({"message": message, "status": "error", "extension": "system", "channel": "phoenix"}),
        });
    }

    /// Ends a channel from the server side: `phx_close` to the client, out of the hub.
    fn close_channel(&mut self, topic: &str) {
        if let Some(j) = self.channels.remove(topic) {
            self.hub.leave(j.chan);
            self.send(ServerMessage::Json {
                join_ref: j.join_ref.clone(),
                reference: j.join_ref.as_deref().map(str::to_string),
                topic: j.topic.clone(),
                event: "phx_close",
                payload: json!({}),
            });
        }
    }

    fn expire_tokens(&mut self) {
        let gone: Vec<Arc<str>> = self
            .channels
            .values()
            .filter(|j| expired(&j.caller))
            .map(|j| j.topic.clone())
            .collect();
        for topic in gone {
            let join_ref = self.channels.get(&topic).and_then(|j| j.join_ref.clone());
            self.system(&topic, join_ref, false, "system", "Token has expired");
            self.close_channel(&topic);
        }
    }

    async fn handle(&mut self, frame: Result<Frame, PhoenixError>, size: usize) {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return self.system_error(None, &e.to_string()),
        };
        let limit = self.state.config.realtime_max_message_bytes;
        let message = match ClientMessage::parse(&frame, size, limit) {
            Ok(m) => m,
            Err(e) => return self.reply(&frame, false, json!({"reason": e.to_string()})),
        };
        match message {
            ClientMessage::Heartbeat => self.reply(&frame, true, json!({})),
            ClientMessage::Join(join) => self.join(&frame, join).await,
            ClientMessage::Leave => {
                if self.channels.contains_key(frame.topic.as_str()) {
                    self.reply(&frame, true, json!({}));
                    self.close_channel(&frame.topic);
                } else {
                    self.reply(&frame, false, json!({"reason": "unmatched topic"}));
                }
            }
            ClientMessage::AccessToken(token) => self.access_token(&frame, &token).await,
            ClientMessage::Broadcast(b) => self.broadcast(&frame, b).await,
            ClientMessage::Presence(op) => self.presence(&frame, op),
        }
    }

    fn joined(&self, frame: &Frame) -> Option<&Joined> {
        let joined = self.channels.get(frame.topic.as_str());
        if joined.is_none() {
            self.reply(frame, false, json!({"reason": "unmatched topic"}));
        }
        joined
    }

    async fn join(&mut self, frame: &Frame, join: Join) {
        let caller = match &join.access_token {
            Some(token) if *token != self.caller.token.clone().unwrap_or_default() => {
                match self.state.verifier.caller_from_token(token) {
                    Ok(c) => c,
                    Err(e) => {
                        return self.reply(frame, false, json!({"reason": e.message()}));
                    }
                }
            }
            _ => self.caller.clone(),
        };
        if expired(&caller) {
            return self.reply(frame, false, json!({"reason": "Token has expired"}));
        }
        let perms = if join.config.private {
            let name = sub_topic(&frame.topic);
            match authorize::channel_permissions(&self.state.admin, &caller, name).await {
                Ok(p) if p.can_join() => Some(p),
                Ok(_) => {
                    let reason = format!(
                        "Unauthorized: You do not have permissions to read from this Channel topic: {name}"
                    );
                    return self.reply(frame, false, json!({ "reason": reason }));
                }
                Err(e) => {
                    tracing::error!(error = %e, "realtime: private channel check failed");
                    return self.reply(
                        frame,
                        false,
                        json!({"reason": "Realtime was unable to check this channel's policies"}),
                    );
                }
            }
        } else {
            None
        };
        if join.config.replay.is_some() && perms.is_none() {
            return self.reply(
                frame,
                false,
                json!({"reason": "broadcast.replay is only available on private channels"}),
            );
        }
        let mut bindings = Vec::new();
        let mut echoed = Vec::new();
        for b in &join.config.postgres_changes {
            let parsed = match PostgresChanges::parse(
                &b.event,
                &b.schema,
                b.table.as_deref(),
                b.filter.as_deref(),
            ) {
                Ok(p) => p,
                Err(e) => return self.reply(frame, false, json!({"reason": e.to_string()})),
            };
            // Ids only need to be unique per channel; a hub-wide counter makes them unique.
            let id = u32::try_from(self.hub.next_id() % u64::from(u32::MAX)).unwrap_or(1);
            bindings.push((id, parsed));
            echoed.push(json!({
                "id": id,
                "event": b.event,
                "schema": b.schema,
                "table": b.table,
                "filter": b.filter,
            }));
        }
        // A second join of a topic replaces the first (Phoenix's rule).
        self.close_channel(&frame.topic);
        let topic: Arc<str> = Arc::from(frame.topic.as_str());
        let join_ref: Option<Arc<str>> = frame.join_ref.as_deref().map(Arc::from);
        let presence_key = if join.config.presence_key.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            join.config.presence_key.clone()
        };
        let has_changes = !bindings.is_empty();
        // Resuming: live changes wait behind a gate until the log has been replayed.
        let replay = match join.config.since {
            Some(since) if has_changes => {
                let gate = Arc::new(Gate::new(self.outbox.clone(), since));
                let channel = ReplayChannel {
                    topic: topic.clone(),
                    join_ref: join_ref.clone(),
                    who: caller.clone(),
                    bindings: bindings.clone(),
                };
                Some((gate, channel, since))
            }
            _ => None,
        };
        let chan = self.hub.join(Membership {
            topic: topic.clone(),
            join_ref: join_ref.clone(),
            outbox: self.outbox.clone(),
            broadcast_self: join.config.broadcast_self,
            private: perms.is_some(),
            reads_broadcast: perms.is_none_or(|p| p.read_broadcast),
            presence_key,
            caller: caller.clone(),
            bindings,
            gate: replay.as_ref().map(|(gate, _, _)| gate.clone()),
        });
        self.channels.insert(
            topic.clone(),
            Joined {
                chan,
                join_ref: join_ref.clone(),
                topic: topic.clone(),
                broadcast_ack: join.config.broadcast_ack,
                caller,
                perms,
            },
        );
        self.reply(frame, true, json!({"postgres_changes": echoed}));
        if join.config.presence_enabled {
            self.send(ServerMessage::Json {
                join_ref: join_ref.clone(),
                reference: None,
                topic: topic.clone(),
                event: "presence_state",
                payload: self.hub.presence_state(&topic),
            });
        }
        if has_changes {
            self.system(
                &topic,
                join_ref,
                true,
                "postgres_changes",
                "Subscribed to PostgreSQL",
            );
        }
        if let Some((gate, channel, since)) = replay {
            tokio::spawn(replay::changes(self.state.clone(), gate, channel, since));
        }
        if let Some(option) = join.config.replay
            && perms.is_some_and(|p| p.read_broadcast)
        {
            self.replay_broadcasts(&topic, option).await;
        }
    }

    /// `broadcast.replay`: the newest logged broadcasts of this private channel after `since`.
    async fn replay_broadcasts(&self, topic: &Arc<str>, option: ReplayOption) {
        let limit = option
            .limit
            .unwrap_or(replay::BROADCAST_REPLAY_MAX)
            .min(replay::BROADCAST_REPLAY_MAX);
        match log::broadcasts_since(&self.state.admin, sub_topic(topic), option.since_ms, limit)
            .await
        {
            Ok(logged) => {
                for b in logged {
                    self.send(ServerMessage::Broadcast {
                        topic: topic.clone(),
                        event: b.event,
                        meta: Some(json!({"id": b.id, "replayed": true})),
                        body: b.body,
                    });
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "realtime: broadcast replay failed");
                self.system(
                    topic,
                    None,
                    false,
                    "broadcast",
                    "Could not replay broadcasts",
                );
            }
        }
    }

    /// A new token for a joined channel. A private channel's permissions are asked again as the
    /// new caller (the token may name someone else, or carry other claims): if it may no longer
    /// read the topic, the channel is closed as if the token were bad.
    async fn access_token(&mut self, frame: &Frame, token: &str) {
        let Some(joined) = self.joined(frame) else {
            return;
        };
        let (topic, join_ref, chan, private) = (
            joined.topic.clone(),
            joined.join_ref.clone(),
            joined.chan,
            joined.perms.is_some(),
        );
        let caller = match self.state.verifier.caller_from_token(token) {
            Ok(caller) if !expired(&caller) => caller,
            Ok(_) => {
                self.system(&topic, join_ref, false, "system", "Token has expired");
                return self.close_channel(&topic);
            }
            Err(e) => {
                let message = format!("Invalid token: {}", e.message());
                self.system(&topic, join_ref, false, "system", &message);
                return self.close_channel(&topic);
            }
        };
        let perms = if private {
            let name = sub_topic(&topic);
            match authorize::channel_permissions(&self.state.admin, &caller, name).await {
                Ok(p) if p.can_join() => Some(p),
                Ok(_) => {
                    let message = format!(
                        "Unauthorized: You do not have permissions to read from this Channel topic: {name}"
                    );
                    self.system(&topic, join_ref, false, "system", &message);
                    return self.close_channel(&topic);
                }
                Err(e) => {
                    tracing::error!(error = %e, "realtime: private channel check failed");
                    let message = "Could not check the new token's permissions on this channel";
                    self.system(&topic, join_ref, false, "system", message);
                    return self.close_channel(&topic);
                }
            }
        } else {
            None
        };
        self.hub
            .set_caller(chan, caller.clone(), perms.is_none_or(|p| p.read_broadcast));
        if let Some(j) = self.channels.get_mut(&topic) {
            j.caller = caller;
            if private {
                j.perms = perms;
            }
        }
        self.reply(frame, true, json!({}));
    }

    async fn broadcast(&mut self, frame: &Frame, b: Broadcast) {
        let Some(joined) = self.joined(frame) else {
            return;
        };
        let (chan, ack, topic, perms) = (
            joined.chan,
            joined.broadcast_ack,
            joined.topic.clone(),
            joined.perms,
        );
        if perms.is_some_and(|p| !p.write_broadcast) {
            return self.reply(frame, false, json!({"reason": unauthorized_write(&topic)}));
        }
        if perms.is_some()
            && let Err(e) =
                log::append_broadcast(&self.state.admin, sub_topic(&topic), &b.event, &b.body).await
        {
            tracing::warn!(error = %e, "realtime: logging a private broadcast failed");
        }
        self.hub
            .broadcast(Some(chan), &topic, perms.is_some(), b.event, b.meta, b.body);
        if ack && frame.reference.is_some() {
            self.reply(frame, true, json!({}));
        }
    }

    fn presence(&mut self, frame: &Frame, op: PresenceOp) {
        let Some(joined) = self.joined(frame) else {
            return;
        };
        let chan = joined.chan;
        if matches!(op, PresenceOp::Track(_)) && joined.perms.is_some_and(|p| !p.write_presence) {
            let reason = unauthorized_write(&joined.topic);
            return self.reply(frame, false, json!({ "reason": reason }));
        }
        match op {
            PresenceOp::Track(meta) => self.hub.track(chan, meta),
            PresenceOp::Untrack => self.hub.untrack(chan),
        }
        self.reply(frame, true, json!({}));
    }
}

impl From<Encoded> for Message {
    fn from(encoded: Encoded) -> Message {
        match encoded {
            Encoded::Text(t) => Message::text(t),
            Encoded::Binary(b) => Message::binary(b),
        }
    }
}
