//! `soak`: for a bounded time, N WebSockets joined to channels (rooms of `--room` sockets, 25 by
//! default: a class) and M HTTP/1.1 keep-alive connections against one doska on the loopback,
//! counting every error.
//!
//! Each socket joins `realtime:soak-<room>` with presence on, broadcast `self: false` and one
//! `postgres_changes` INSERT binding on `soak_feed` filtered to its room; it tracks its presence
//! at once and again (new meta) once during the load, heartbeats every `--heartbeat-secs` (10;
//! the round trip is the WebSocket latency; as realtime-js, none while one is pending), and sends
//! a binary broadcast to its room every `--broadcast-secs` (20). A trickle task POSTs up to
//! `--inserts-per-sec` (10) rows into `soak_feed`, room after room, on its own connection. Each
//! HTTP connection loops GETs on `soak_items` (by key, and a filtered, ordered page), every
//! `--post-every`th (10th) request a POST into `soak_posts`, pausing `--http-pause-ms` (500)
//! after each answer.
//!
//! Phases: ramp (connect and join everything, 64 at a time, each HTTP connection answering one
//! GET before the next opens; heartbeats already run), load (`--seconds`), drain (`--drain-secs`, 10: nothing new is sent, what is in flight arrives),
//! stop (sockets close with a close frame). Errors are: a failed connect or join; a non-2xx, a
//! reset, a close or a timeout (10 s) of an HTTP request; a socket closed or failed before the
//! stop; a heartbeat unanswered for 25 s (realtime-js's timeout) or at the stop; a presence push
//! without an ok reply; a `system` error, `phx_error` or `phx_close` from the server; and every
//! broadcast or change delivery missing (or extra) against what the rooms' members should have
//! received. Prints `{"ready":…}` when the ramp ends and one JSON line of results at the end.
//!
//! Rejects a non-loopback `--url` (the soak only ever targets this machine).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::Args;
use crate::phx::{self, Ws};

/// Longest wait for one HTTP request, a connect or a WebSocket handshake before it counts as a
/// timeout (wrk's `--timeout` in the other benches).
const TIMEOUT: Duration = Duration::from_secs(10);
/// The ramp (every connection opened and joined) must end within this.
const RAMP_LIMIT: Duration = Duration::from_secs(300);
/// Connections being opened at once, so the listen backlog never overflows.
const CONNECTING: usize = 64;
/// Error messages kept verbatim for the report.
const SAMPLES: usize = 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Ramp,
    Load,
    Drain,
    Stop,
}

struct Config {
    addr: SocketAddr,
    apikey: String,
    sockets: usize,
    http: usize,
    rooms: usize,
    seconds: u64,
    heartbeat: Duration,
    broadcast: Duration,
    post_every: u64,
    /// Each HTTP connection's pause after an answer (a client that reads what it got), so the
    /// REST load is what the connections offer rather than a queue as long as the server lets it.
    http_pause: Duration,
}

/// Errors by kind (a small fixed set of names), and the first few messages verbatim.
#[derive(Default)]
struct Errors {
    kinds: Mutex<BTreeMap<String, u64>>,
    samples: Mutex<Vec<String>>,
}

impl Errors {
    fn add(&self, kind: &str, detail: impl std::fmt::Display) {
        self.add_n(kind, 1);
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() < SAMPLES {
            samples.push(format!("{kind}: {detail}"));
        }
    }

    fn add_n(&self, kind: &str, n: u64) {
        if n > 0 {
            *self
                .kinds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(kind.to_string())
                .or_default() += n;
        }
    }
}

/// What every task adds to.
struct Shared {
    errors: Errors,
    /// Sockets and HTTP connections whose ramp step ended, well or not.
    ramped: AtomicU64,
    joined: AtomicU64,
    http_ready: AtomicU64,
    /// Joined sockets per room: who should receive the room's broadcasts and changes.
    members: Vec<AtomicU64>,
    broadcasts_sent: Vec<AtomicU64>,
    changes_inserted: Vec<AtomicU64>,
    broadcasts_received: AtomicU64,
    changes_received: AtomicU64,
    presence_diffs: AtomicU64,
}

fn counters(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// What one socket or connection measured (µs).
#[derive(Default)]
struct Measured {
    rtt: Vec<u32>,
    change_latency: Vec<u32>,
    rest: Vec<u32>,
    gets: u64,
    posts: u64,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

pub async fn run(args: &Args) -> Result<(), String> {
    let url = args.str("url")?;
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|_| format!("--url must be http://127.0.0.1:PORT, not {url:?}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("--url {url}: the soak only targets the loopback"));
    }
    let sockets = args.num("sockets", 10_000)? as usize;
    let room = args.num("room", 25)?.max(1) as usize;
    let http = args.num("http", 1000)? as usize;
    let inserts_per_sec = args.num("inserts-per-sec", 10)?.min(1000);
    let config = Arc::new(Config {
        addr,
        apikey: args.str("apikey")?,
        sockets,
        http,
        rooms: sockets.div_ceil(room).max(1),
        seconds: args.num("seconds", 60)?,
        heartbeat: Duration::from_secs(args.num("heartbeat-secs", 10)?.max(1)),
        broadcast: Duration::from_secs(args.num("broadcast-secs", 20)?.max(1)),
        post_every: args.num("post-every", 10)?.max(1),
        http_pause: Duration::from_millis(args.num("http-pause-ms", 500)?),
    });
    let drain = Duration::from_secs(args.num("drain-secs", 10)?);
    let shared = Arc::new(Shared {
        errors: Errors::default(),
        ramped: AtomicU64::new(0),
        joined: AtomicU64::new(0),
        http_ready: AtomicU64::new(0),
        members: counters(config.rooms),
        broadcasts_sent: counters(config.rooms),
        changes_inserted: counters(config.rooms),
        broadcasts_received: AtomicU64::new(0),
        changes_received: AtomicU64::new(0),
        presence_diffs: AtomicU64::new(0),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Ramp);
    let connecting = Arc::new(Semaphore::new(CONNECTING));

    // The REST side runs on threads of its own: on one runtime, ten thousand sockets' frames
    // would delay the HTTP tasks' polls, and the client's queue would pass for the server's
    // latency. The OS shares the cores between the two.
    let http_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("a tokio runtime for the HTTP side: {e}"))?;
    let mut tasks = Vec::with_capacity(sockets + http);
    for i in 0..sockets {
        let (config, shared, phase, connecting) = (
            config.clone(),
            shared.clone(),
            phase_rx.clone(),
            connecting.clone(),
        );
        tasks.push(tokio::spawn(async move {
            socket(i, &config, &shared, phase, &connecting).await
        }));
    }
    for c in 0..http {
        let (config, shared, phase, connecting) = (
            config.clone(),
            shared.clone(),
            phase_rx.clone(),
            connecting.clone(),
        );
        tasks.push(
            http_runtime.spawn(async move {
                http_connection(c, &config, &shared, phase, &connecting).await
            }),
        );
    }

    let started = Instant::now();
    let mut report = Instant::now();
    while shared.ramped.load(Ordering::Relaxed) < (sockets + http) as u64 {
        if started.elapsed() > RAMP_LIMIT {
            shared.errors.add(
                "ramp: not every connection ready in time",
                format!("{} s", RAMP_LIMIT.as_secs()),
            );
            break;
        }
        if report.elapsed() > Duration::from_secs(5) {
            report = Instant::now();
            eprintln!(
                "soak: ramp {:.0} s: {} sockets joined, {} HTTP connections open",
                started.elapsed().as_secs_f64(),
                shared.joined.load(Ordering::Relaxed),
                shared.http_ready.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ramp_secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "ready": true,
            "sockets_joined": shared.joined.load(Ordering::Relaxed),
            "http_connected": shared.http_ready.load(Ordering::Relaxed),
            "ramp_secs": ramp_secs,
        })
    );

    let _ = phase_tx.send(Phase::Load);
    let load_started = Instant::now();
    let trickle = {
        let (config, shared, phase) = (config.clone(), shared.clone(), phase_rx.clone());
        http_runtime.spawn(async move { trickle(inserts_per_sec, &config, &shared, phase).await })
    };
    tokio::time::sleep(Duration::from_secs(config.seconds)).await;
    let load_secs = load_started.elapsed().as_secs_f64();
    let _ = phase_tx.send(Phase::Drain);
    tokio::time::sleep(drain).await;
    let _ = phase_tx.send(Phase::Stop);

    let mut all = Measured::default();
    let gather = async {
        let _ = trickle.await;
        for t in tasks {
            if let Ok(m) = t.await {
                all.rtt.extend(m.rtt);
                all.change_latency.extend(m.change_latency);
                all.rest.extend(m.rest);
                all.gets += m.gets;
                all.posts += m.posts;
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), gather)
        .await
        .is_err()
    {
        shared
            .errors
            .add("stop: tasks still running 60 s after the stop", "");
    }
    // Dropping a runtime inside another one's task would panic.
    http_runtime.shutdown_background();

    let sum = |v: &[AtomicU64], f: &dyn Fn(usize, u64) -> u64| -> u64 {
        v.iter()
            .enumerate()
            .map(|(r, n)| f(r, n.load(Ordering::Relaxed)))
            .sum()
    };
    let members = |r: usize| shared.members[r].load(Ordering::Relaxed);
    let broadcasts_expected = sum(&shared.broadcasts_sent, &|r, n| {
        n * members(r).saturating_sub(1)
    });
    let changes_expected = sum(&shared.changes_inserted, &|r, n| n * members(r));
    let broadcasts_received = shared.broadcasts_received.load(Ordering::Relaxed);
    let changes_received = shared.changes_received.load(Ordering::Relaxed);
    let errors = &shared.errors;
    errors.add_n(
        "ws: broadcast deliveries missing",
        broadcasts_expected.saturating_sub(broadcasts_received),
    );
    errors.add_n(
        "ws: broadcast deliveries extra",
        broadcasts_received.saturating_sub(broadcasts_expected),
    );
    errors.add_n(
        "ws: change deliveries missing",
        changes_expected.saturating_sub(changes_received),
    );
    errors.add_n(
        "ws: change deliveries extra",
        changes_received.saturating_sub(changes_expected),
    );

    let stats = |v: &mut Vec<u32>| {
        v.sort_unstable();
        let sorted: Vec<u64> = v.iter().map(|&x| u64::from(x)).collect();
        let ms = |us: u64| us as f64 / 1000.0;
        json!({
            "count": sorted.len(),
            "p50_ms": ms(phx::percentile(&sorted, 50.0)),
            "p99_ms": ms(phx::percentile(&sorted, 99.0)),
            "max_ms": ms(sorted.last().copied().unwrap_or(0)),
        })
    };
    let kinds = errors
        .kinds
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let samples = errors
        .samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    println!(
        "{}",
        json!({
            "sockets": sockets,
            "sockets_joined": shared.joined.load(Ordering::Relaxed),
            "rooms": config.rooms,
            "http": http,
            "http_connected": shared.http_ready.load(Ordering::Relaxed),
            "ramp_secs": ramp_secs,
            "load_secs": load_secs,
            "rest": {
                "requests": all.rest.len(),
                "gets": all.gets,
                "posts": all.posts,
                "rate": all.rest.len() as f64 / load_secs,
                "latency": stats(&mut all.rest),
            },
            "ws": {
                "heartbeat_rtt": stats(&mut all.rtt),
                "broadcasts_sent": sum(&shared.broadcasts_sent, &|_, n| n),
                "broadcasts_expected": broadcasts_expected,
                "broadcasts_received": broadcasts_received,
                "changes_inserted": sum(&shared.changes_inserted, &|_, n| n),
                "changes_expected": changes_expected,
                "changes_received": changes_received,
                "change_latency": stats(&mut all.change_latency),
                "presence_diffs": shared.presence_diffs.load(Ordering::Relaxed),
            },
            "errors": kinds.values().sum::<u64>(),
            "error_kinds": kinds,
            "error_samples": samples,
        })
    );
    Ok(())
}

/// Waits until the phase is at least `Load`; false when it is already `Stop`.
async fn wait_for_load(phase: &mut watch::Receiver<Phase>) -> bool {
    loop {
        match *phase.borrow_and_update() {
            Phase::Ramp => {}
            Phase::Stop => return false,
            _ => return true,
        }
        if phase.changed().await.is_err() {
            return false;
        }
    }
}

/// One HTTP/1.1 keep-alive connection to doska's REST door, reopened after it fails.
struct Rest {
    addr: SocketAddr,
    host: String,
    apikey: String,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Answers on the current connection: a first request that fails tells a connection the
    /// server never picked up from one that went bad.
    answered: u64,
}

impl Rest {
    fn new(config: &Config) -> Rest {
        Rest {
            addr: config.addr,
            host: config.addr.to_string(),
            apikey: config.apikey.clone(),
            sender: None,
            answered: 0,
        }
    }

    async fn connect(&mut self) -> Result<(), (String, String)> {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(self.addr))
            .await
            .map_err(|_| ("http: connect timeout".to_string(), String::new()))?
            .map_err(|e| ("http: connect".to_string(), e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ("http: handshake".to_string(), e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        self.answered = 0;
        Ok(())
    }

    /// One request; its latency when the answer is a 2xx, else (error kind, detail).
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Duration, (String, String)> {
        if self.sender.is_none() {
            self.connect().await?;
        }
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host)
            .header("apikey", &self.apikey)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.apikey));
        if body.is_some() {
            builder = builder
                .header(header::CONTENT_TYPE, "application/json")
                .header("prefer", "return=minimal");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ("http: bad request".to_string(), e.to_string()))?;
        let Some(sender) = self.sender.as_mut() else {
            return Err(("http: not connected".into(), String::new()));
        };
        let started = Instant::now();
        let answer = tokio::time::timeout(TIMEOUT, async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        })
        .await;
        let first = if self.answered == 0 {
            " (first request on the connection)"
        } else {
            ""
        };
        if matches!(answer, Ok(Ok(_))) {
            self.answered += 1;
        }
        match answer {
            Ok(Ok((status, _))) if status.is_success() => Ok(started.elapsed()),
            Ok(Ok((status, body))) => Err((
                format!("http: status {}", status.as_u16()),
                format!(
                    "{path}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                ),
            )),
            Ok(Err(e)) => {
                self.sender = None;
                Err((format!("{}{first}", hyper_kind(&e)), format!("{path}: {e}")))
            }
            Err(_) => {
                self.sender = None;
                Err((format!("http: timeout{first}"), path.to_string()))
            }
        }
    }
}

fn hyper_kind(e: &hyper::Error) -> &'static str {
    let io = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .map(|io| io.kind());
    if io == Some(std::io::ErrorKind::ConnectionReset) {
        "http: connection reset"
    } else if e.is_closed() || e.is_incomplete_message() {
        "http: connection closed"
    } else if e.is_canceled() {
        "http: request canceled"
    } else {
        "http: other"
    }
}

/// One HTTP connection: opened during the ramp, then GETs (and every `post_every`th a POST) in
/// a loop for as long as the load lasts.
async fn http_connection(
    c: usize,
    config: &Config,
    shared: &Shared,
    mut phase: watch::Receiver<Phase>,
    connecting: &Semaphore,
) -> Measured {
    let mut rest = Rest::new(config);
    {
        // Open, and hold the permit until a first answer: a connection the kernel completed
        // is not yet one the server accepted, and ramping faster than the server accepts would
        // overflow its listen backlog (a burst the ramp is not meant to measure).
        let _permit = connecting.acquire().await;
        let first = "/rest/v1/soak_items?id=eq.1";
        match rest.send(Method::GET, first, None).await {
            Ok(_) => {
                shared.http_ready.fetch_add(1, Ordering::Relaxed);
            }
            Err((kind, detail)) => shared.errors.add(&format!("ramp: {kind}"), detail),
        }
        shared.ramped.fetch_add(1, Ordering::Relaxed);
    }
    let mut out = Measured::default();
    if !wait_for_load(&mut phase).await {
        return out;
    }
    // Spread over one pause, so the connections do not all ask at once.
    tokio::time::sleep(offset(c, config.http, config.http_pause)).await;
    let mut n = c as u64;
    while *phase.borrow() == Phase::Load {
        n += 1;
        let key = n.wrapping_mul(7919) % 1000 + 1;
        let (method, path, body) = if n.is_multiple_of(config.post_every) {
            let body = json!({"conn": c, "body": format!("soak {n}")}).to_string();
            (Method::POST, "/rest/v1/soak_posts".to_string(), Some(body))
        } else if n.is_multiple_of(2) {
            (
                Method::GET,
                format!("/rest/v1/soak_items?id=eq.{key}"),
                None,
            )
        } else {
            let path = format!(
                "/rest/v1/soak_items?select=id,name,room&room=eq.{}&order=id.desc&limit=10",
                key % 50
            );
            (Method::GET, path, None)
        };
        let post = body.is_some();
        match rest.send(method, &path, body).await {
            Ok(latency) => {
                out.rest.push(micros(latency));
                if post {
                    out.posts += 1;
                } else {
                    out.gets += 1;
                }
                tokio::time::sleep(config.http_pause).await;
            }
            Err((kind, detail)) => {
                shared.errors.add(&kind, detail);
                // Not a busy loop when the server is away.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    out
}

/// Inserts `per_sec` rows a second into `soak_feed`, room after room, while the load lasts.
async fn trickle(
    per_sec: u64,
    config: &Config,
    shared: &Shared,
    mut phase: watch::Receiver<Phase>,
) {
    if per_sec == 0 || !wait_for_load(&mut phase).await {
        return;
    }
    let mut rest = Rest::new(config);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_sec as u32);
    let mut n = 0usize;
    while *phase.borrow() == Phase::Load {
        tick.tick().await;
        let room = n % config.rooms;
        n += 1;
        let body = json!({"room": room}).to_string();
        match rest
            .send(Method::POST, "/rest/v1/soak_feed", Some(body))
            .await
        {
            Ok(_) => {
                shared.changes_inserted[room].fetch_add(1, Ordering::Relaxed);
            }
            Err((kind, detail)) => shared.errors.add(&format!("trickle: {kind}"), detail),
        }
    }
}

/// What a socket waits for a reply to.
#[derive(Clone, Copy, PartialEq)]
enum Push {
    Heartbeat { measured: bool },
    Track,
}

/// `i`'s share of `period`, so that the sockets' timers are spread evenly.
fn offset(i: usize, n: usize, period: Duration) -> Duration {
    period.mul_f64(i as f64 / n.max(1) as f64)
}

/// One socket: connect and join during the ramp, then heartbeats, broadcasts and presence
/// until the stop, reading everything that arrives.
async fn socket(
    i: usize,
    config: &Config,
    shared: &Shared,
    mut phase: watch::Receiver<Phase>,
    connecting: &Semaphore,
) -> Measured {
    let room = i % config.rooms;
    let topic = format!("realtime:soak-{room}");
    let mut out = Measured::default();
    let ws = {
        let _permit = connecting.acquire().await;
        let joined = join(i, room, &topic, config).await;
        shared.ramped.fetch_add(1, Ordering::Relaxed);
        match joined {
            Ok(ws) => ws,
            Err((kind, detail)) => {
                shared.errors.add(kind, detail);
                return out;
            }
        }
    };
    shared.members[room].fetch_add(1, Ordering::Relaxed);
    shared.joined.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = ws.split();
    let mut pending: HashMap<u64, (Push, Instant)> = HashMap::new();
    let mut reference = 1u64;
    let mut next_ref = || {
        reference += 1;
        reference
    };
    let track = next_ref();
    let first = phx::track_frame(&topic, track, json!({"socket": i, "phase": "ramp"}));
    if let Err(e) = sink.send(first).await {
        shared.errors.add("ws: send failed", e);
        return out;
    }
    pending.insert(track, (Push::Track, Instant::now()));

    let now = Instant::now();
    let spread = |period| offset(i, config.sockets, period);
    let mut heartbeat = tokio::time::interval_at(now + spread(config.heartbeat), config.heartbeat);
    let mut broadcast = tokio::time::interval_at(now + spread(config.broadcast), config.broadcast);
    // A stalled task sends one late heartbeat or broadcast, not a burst of them.
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    broadcast.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let far = now + Duration::from_secs(86_400);
    let mut retrack = far;
    let mut sent = 0u64;
    loop {
        let current = *phase.borrow_and_update();
        if current == Phase::Stop {
            break;
        }
        let sending = tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                if *phase.borrow() == Phase::Load {
                    // The second track lands somewhere during the load.
                    retrack = Instant::now() + spread(Duration::from_secs(config.seconds));
                }
                None
            }
            _ = heartbeat.tick(), if current != Phase::Drain => {
                // As realtime-js: no new heartbeat while one is pending, and one unanswered for
                // its 25 s period counts as a dead socket (realtime-js would reconnect).
                let before = pending.len();
                pending.retain(|_, (push, sent)| {
                    !matches!(push, Push::Heartbeat { .. }) || sent.elapsed() < phx::HEARTBEAT
                });
                if pending.len() < before {
                    shared.errors.add("ws: heartbeat unanswered", format!("socket {i}"));
                }
                if pending.values().any(|(push, _)| matches!(push, Push::Heartbeat { .. })) {
                    None
                } else {
                    let r = next_ref();
                    let measured = current == Phase::Load;
                    pending.insert(r, (Push::Heartbeat { measured }, Instant::now()));
                    Some(phx::heartbeat_frame(r))
                }
            }
            _ = broadcast.tick(), if current == Phase::Load => {
                sent += 1;
                shared.broadcasts_sent[room].fetch_add(1, Ordering::Relaxed);
                let payload = json!({"from": i, "n": sent}).to_string();
                Some(phx::broadcast_push("1", &topic, "soak", &payload))
            }
            _ = tokio::time::sleep_until(retrack), if current == Phase::Load && retrack < far => {
                retrack = far;
                let r = next_ref();
                pending.insert(r, (Push::Track, Instant::now()));
                Some(phx::track_frame(&topic, r, json!({"socket": i, "phase": "load"})))
            }
            msg = stream.next() => {
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        received(&text, shared, &mut pending, &mut out);
                    }
                    Some(Ok(Message::Binary(b))) => {
                        if b.first() == Some(&4) {
                            shared.broadcasts_received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((1005, String::new()));
                        shared
                            .errors
                            .add(&format!("ws: closed by the server ({code})"), format!("socket {i}: {reason}"));
                        return out;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        shared.errors.add("ws: read failed", format!("socket {i}: {e}"));
                        return out;
                    }
                    None => {
                        shared.errors.add("ws: ended without a close", format!("socket {i}"));
                        return out;
                    }
                }
                None
            }
        };
        if let Some(frame) = sending
            && let Err(e) = sink.send(frame).await
        {
            shared
                .errors
                .add("ws: send failed", format!("socket {i}: {e}"));
            return out;
        }
    }
    // Nothing was sent during the drain, so whatever is still unanswered never will be.
    for (push, _) in pending.values() {
        let kind = match push {
            Push::Heartbeat { .. } => "ws: heartbeat unanswered",
            Push::Track => "ws: presence track unanswered",
        };
        shared.errors.add(kind, format!("socket {i} at the stop"));
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
    out
}

async fn join(
    i: usize,
    room: usize,
    topic: &str,
    config: &Config,
) -> Result<Ws, (&'static str, String)> {
    let url = format!(
        "ws://{}/realtime/v1/websocket?apikey={}&vsn=2.0.0",
        config.addr, config.apikey
    );
    // tungstenite's default 128 KiB read buffer per socket would make the client, not the
    // server, the memory hog: 8 KiB as doska's own sockets.
    let buffers = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024);
    let connect = tokio_tungstenite::connect_async_with_config(url, Some(buffers), true);
    let (mut ws, _) = tokio::time::timeout(TIMEOUT, connect)
        .await
        .map_err(|_| ("ws: connect timeout", format!("socket {i}")))?
        .map_err(|e| ("ws: connect", format!("socket {i}: {e}")))?;
    let binding = json!([{
        "event": "INSERT",
        "schema": "public",
        "table": "soak_feed",
        "filter": format!("room=eq.{room}"),
    }]);
    let key = format!("s{i}");
    let frame = phx::join_frame_with(topic, binding, Some(&key), None);
    phx::join(&mut ws, frame)
        .await
        .map_err(|e| ("ws: join", format!("socket {i}: {e}")))?;
    Ok(ws)
}

/// Handles one text frame from the server.
fn received(
    text: &str,
    shared: &Shared,
    pending: &mut HashMap<u64, (Push, Instant)>,
    out: &mut Measured,
) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        shared.errors.add("ws: unreadable frame", text);
        return;
    };
    match v[3].as_str().unwrap_or("") {
        "phx_reply" => {
            let reference = v[1].as_str().and_then(|r| r.parse::<u64>().ok());
            let Some((push, sent)) = reference.and_then(|r| pending.remove(&r)) else {
                return;
            };
            let ok = v[4]["status"] == "ok";
            match push {
                Push::Heartbeat { measured } if ok => {
                    if measured {
                        out.rtt.push(micros(sent.elapsed()));
                    }
                }
                Push::Heartbeat { .. } => shared.errors.add("ws: heartbeat refused", &v[4]),
                Push::Track if ok => {}
                Push::Track => shared.errors.add("ws: presence track refused", &v[4]),
            }
        }
        "postgres_changes" => {
            shared.changes_received.fetch_add(1, Ordering::Relaxed);
            let committed = v[4]["data"]["commit_timestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_micros());
            if let Some(c) = committed {
                let us = u64::try_from(phx::now_micros() - c).unwrap_or(0);
                out.change_latency
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
        }
        "presence_diff" => {
            shared.presence_diffs.fetch_add(1, Ordering::Relaxed);
        }
        "system" if v[4]["status"] == "error" => shared.errors.add("ws: system error", &v[4]),
        "phx_error" => shared.errors.add("ws: phx_error", &v[2]),
        "phx_close" => shared.errors.add("ws: phx_close", &v[2]),
        _ => {}
    }
}
