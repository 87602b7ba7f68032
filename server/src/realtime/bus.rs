//! The bus between doska instances on one database, for broadcast and presence: what the hub
//! tells (a [`Note`]) goes to every other instance, and what they tell is applied to this one's
//! hub. Carried by Redis pub/sub when `--redis-url` is set and Redis answers, else by PostgreSQL's
//! `NOTIFY doska_bus` (a message over NOTIFY's 8,000-byte limit goes into `doska.bus_messages`
//! and the notification names its row). Every instance listens on both, so a message sent either
//! way arrives once; the sender skips its own (its channels had it already).
//!
//! Presence converges: an instance that (re)joins the bus says `hello` with its presences and
//! every other answers with its `state`; track and untrack travel as they happen. Each instance
//! sends a heartbeat every 5 s; one silent for 15 s is taken for dead and its presences leave
//! (a clean shutdown says `bye`, and they leave at once). Reconnects by itself, to PostgreSQL and
//! to Redis, and stops on shutdown. Drops (with a debug line) a payload it cannot read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use super::gossip::{self, Chunk, Envelope, Item, Note, Presence};
use super::hub::Hub;
use super::phoenix::BroadcastBody;
use crate::cluster::{Cluster, RedisLink};
use crate::state::SharedState;

/// The NOTIFY channel (channels are per database already).
const CHANNEL: &str = "doska_bus";
/// How often an instance says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Silence after which an instance is taken for dead.
const EXPIRY: Duration = Duration::from_secs(15);
/// Notes waiting to be sent; past this the hub drops new ones (see `Hub::tell`).
const QUEUE: usize = 65_536;
/// Notes sent together (one PUBLISH, or NOTIFYs packed to the limit).
const BATCH: usize = 512;

struct Ctx {
    hub: Arc<Hub>,
    cluster: Cluster,
    admin: deadpool_postgres::Pool,
    tx: mpsc::Sender<Note>,
    /// Other instances heard from, and when last.
    peers: Mutex<HashMap<Arc<str>, Instant>>,
    /// The Redis channel: the deployment's namespace (see `cluster`).
    redis_channel: String,
    /// This instance's next sequence number.
    seq: std::sync::atomic::AtomicU64,
    /// What arrived lately, to apply a note that came both ways once.
    seen: Mutex<gossip::Seen>,
}

/// Starts the bus for `hub`: the publisher, the PostgreSQL listener (on `admin_config`, a role
/// that may LISTEN) and, with Redis configured, the Redis subscriber. Resolves after shutdown,
/// once `bye` is sent.
pub fn start(
    state: &SharedState,
    hub: Arc<Hub>,
    cluster: Cluster,
    admin_config: tokio_postgres::Config,
) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = mpsc::channel(QUEUE);
    hub.attach(tx.clone(), &cluster.instance);
    let ctx = Arc::new(Ctx {
        redis_channel: format!("{}:bus", cluster.namespace),
        hub,
        cluster,
        admin: state.admin.clone(),
        tx,
        peers: Mutex::new(HashMap::new()),
        seq: std::sync::atomic::AtomicU64::new(0),
        seen: Mutex::new(gossip::Seen::default()),
    });
    let c = ctx.clone();
    state.metrics.gauge(
        "doska_realtime_peers",
        "Other doska instances heard from on the realtime bus within the last 15 s.",
        move || vec![(String::new(), c.peers().len() as f64)],
    );
    if let Some(link) = ctx.cluster.redis.clone() {
        let r = link.clone();
        state.metrics.gauge(
            "doska_redis_up",
            "1 while Redis (--redis-url) answers, 0 while doska falls back to PostgreSQL.",
            move || vec![(String::new(), f64::from(u8::from(r.is_up())))],
        );
        tokio::spawn(listen_redis(ctx.clone(), link, state.shutdown.clone()));
    }
    tokio::spawn(listen_pg(ctx.clone(), admin_config, state.shutdown.clone()));
    tokio::spawn(publish(ctx, rx, state.shutdown.clone()))
}

impl Ctx {
    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Instant>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Says hello with this instance's presences (after joining or rejoining the bus).
    fn hello(&self) {
        let presences = self.hub.local_presences();
        let _ = self.tx.try_send(Note::Hello { presences });
    }

    /// Forgets instances silent for longer than [`EXPIRY`]; their presences leave.
    fn sweep(&self) {
        let now = Instant::now();
        let gone: Vec<Arc<str>> = {
            let mut peers = self.peers();
            let gone: Vec<_> = peers
                .iter()
                .filter(|(_, at)| now.duration_since(**at) > EXPIRY)
                .map(|(i, _)| i.clone())
                .collect();
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            for i in &gone {
                peers.remove(i);
                seen.forget(i);
            }
            gone
        };
        for i in gone {
            tracing::warn!(instance = %i, "realtime: an instance went silent; its presences leave");
            self.hub.replace_remote(&i, Vec::new());
        }
    }

    /// Applies what another instance said.
    fn receive(&self, env: Envelope) {
        if *env.i == *self.cluster.instance {
            return;
        }
        if !self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first(&env.i, env.s)
        {
            return;
        }
        let i: Arc<str> = Arc::from(env.i);
        let new = self.peers().insert(i.clone(), Instant::now()).is_none();
        let mut ask = new;
        match env.note {
            Note::Broadcast {
                topic,
                private,
                event,
                meta,
                payload,
                binary,
            } => {
                let body = match binary {
                    Some(b) => {
                        match base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b)
                        {
                            Ok(bytes) => BroadcastBody::Binary(bytes.into()),
                            Err(_) => return,
                        }
                    }
                    None => BroadcastBody::Json(payload.unwrap_or(serde_json::Value::Null)),
                };
                self.hub
                    .broadcast_local(None, &topic, private, event, meta, body);
            }
            Note::Track {
                topic,
                key,
                chan,
                meta,
            } => self.hub.track_remote(
                &i,
                Presence {
                    topic,
                    key,
                    chan,
                    meta,
                },
            ),
            Note::Untrack { topic, chan } => self.hub.untrack_remote(&i, &topic, chan),
            Note::Hello { presences } => {
                self.hub.replace_remote(&i, presences);
                let presences = self.hub.local_presences();
                let _ = self.tx.try_send(Note::State { presences });
                ask = false;
            }
            Note::State { presences } => {
                self.hub.replace_remote(&i, presences);
                ask = false;
            }
            Note::Heartbeat => {}
            Note::Bye => {
                self.peers().remove(&i);
                self.seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .forget(&i);
                self.hub.replace_remote(&i, Vec::new());
                ask = false;
            }
        }
        // An instance we had not heard from (new, or back after silence): we do not know its
        // presences, so ask everyone again.
        if ask {
            self.hello();
        }
    }

    /// Reads one payload (NOTIFY's or Redis's) and applies what it carries.
    async fn payload(&self, text: &str) {
        let items = match gossip::parse(text) {
            Ok(items) => items,
            Err(e) => {
                tracing::debug!(error = %e, "realtime: an unreadable bus message was dropped");
                return;
            }
        };
        for item in items {
            match item {
                Item::Inline(env) => self.receive(env),
                Item::Stored { stored } => match self.stored(stored).await {
                    Ok(env) => self.receive(env),
                    Err(e) => {
                        tracing::warn!(error = %e, id = stored, "realtime: a stored bus message could not be read")
                    }
                },
            }
        }
    }

    async fn stored(&self, id: i64) -> Result<Envelope, String> {
        let client = self.admin.get().await.map_err(|e| e.to_string())?;
        let row = client
            .query_opt("select body from doska.bus_messages where id = $1", &[&id])
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the row is gone")?;
        serde_json::from_str(row.get::<_, &str>(0)).map_err(|e| e.to_string())
    }
}

/// Sends queued notes in batches, heartbeats, sweeps silent instances and old stored messages;
/// says `bye` on shutdown.
async fn publish(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Note>, mut shutdown: watch::Receiver<bool>) {
    let mut beat = tokio::time::interval(HEARTBEAT);
    let mut trim = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            note = rx.recv() => {
                let Some(note) = note else { return };
                let mut batch = vec![note];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(n) => batch.push(n),
                        Err(_) => break,
                    }
                }
                send(&ctx, batch).await;
            }
            _ = beat.tick() => {
                send(&ctx, vec![Note::Heartbeat]).await;
                ctx.sweep();
            }
            _ = trim.tick() => trim_stored(&ctx.admin).await,
            _ = stopping(&mut shutdown) => {
                send(&ctx, vec![Note::Bye]).await;
                return;
            }
        }
    }
}

/// Sends a batch: one PUBLISH to Redis when it answers, else NOTIFYs on PostgreSQL — and those
/// too when fewer instances got the PUBLISH than are known to be alive (one whose subscription
/// is still being made again after Redis came back); receivers apply each note once.
async fn send(ctx: &Ctx, notes: Vec<Note>) {
    let encoded: Vec<String> = notes
        .into_iter()
        .map(|note| {
            let env = Envelope {
                i: ctx.cluster.instance.to_string(),
                s: ctx.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                note,
            };
            // Plain data (strings, numbers, JSON values) always serializes.
            serde_json::to_string(&env).expect("a bus note is JSON")
        })
        .collect();
    if let Some(link) = ctx.cluster.redis_up() {
        let payload = format!("[{}]", encoded.join(","));
        let channel = ctx.redis_channel.clone();
        let sent = link
            .call(|mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await;
        // Every live instance, this one included, subscribes.
        let expected = ctx.peers().len() as i64 + 1;
        match sent {
            Ok(received) if received >= expected => return,
            Ok(received) => tracing::debug!(
                received,
                expected,
                "realtime: not every instance is subscribed on Redis; NOTIFY too"
            ),
            Err(e) => {
                tracing::debug!(error = %e, "realtime: publishing on Redis failed; NOTIFY instead")
            }
        }
    }
    if let Err(e) = notify(&ctx.admin, encoded).await {
        tracing::warn!(error = %e, "realtime: a message to other instances was lost (NOTIFY failed)");
    }
}

async fn notify(admin: &deadpool_postgres::Pool, encoded: Vec<String>) -> Result<(), String> {
    const STORE: &str = "with m as (insert into doska.bus_messages (body) values ($2) returning id) \
         select pg_notify($1, '[{\"stored\":' || id || '}]') from m";
    let client = admin.get().await.map_err(|e| e.to_string())?;
    for chunk in gossip::pack(encoded) {
        let (sql, text) = match &chunk {
            Chunk::Payload(p) => ("select pg_notify($1, $2)", p),
            Chunk::TooBig(e) => (STORE, e),
        };
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| e.to_string())?;
        client
            .execute(&stmt, &[&CHANNEL, text])
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn trim_stored(admin: &deadpool_postgres::Pool) {
    let sql = "delete from doska.bus_messages where created_at < now() - interval '2 minutes'";
    let result = match admin.get().await {
        Ok(c) => c.execute(sql, &[]).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "realtime: trimming doska.bus_messages failed");
    }
}

/// Resolves once doska is shutting down (the watch's guard is not held across awaits).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Sleeps `backoff` (doubling it up to 5 s); false when shutdown comes first.
async fn pause(backoff: &mut Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = stopping(shutdown) => false,
    }
}

/// LISTENs on [`CHANNEL`] over a connection of its own, reconnecting with backoff.
async fn listen_pg(
    ctx: Arc<Ctx>,
    config: tokio_postgres::Config,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let (client, mut conn) = match config.connect(crate::db::tls::connector()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "realtime: the bus listener cannot connect; retrying");
                if !pause(&mut backoff, &mut shutdown).await {
                    return;
                }
                continue;
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let driver = tokio::spawn(async move {
            let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(msg)) = stream.next().await {
                if let AsyncMessage::Notification(n) = msg
                    && tx.send(n.payload().to_string()).is_err()
                {
                    return;
                }
            }
        });
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            tracing::warn!(error = %e, "realtime: LISTEN {CHANNEL} failed; retrying");
            driver.abort();
            if !pause(&mut backoff, &mut shutdown).await {
                return;
            }
            continue;
        }
        backoff = Duration::from_millis(200);
        // What others said while we were not listening is lost: exchange presence states again.
        ctx.hello();
        loop {
            tokio::select! {
                payload = rx.recv() => match payload {
                    Some(p) => ctx.payload(&p).await,
                    None => break,
                },
                _ = stopping(&mut shutdown) => {
                    driver.abort();
                    return;
                }
            }
        }
        driver.abort();
        tracing::warn!("realtime: the bus listener lost its connection; reconnecting");
    }
}

/// Subscribes to the deployment's Redis channel, resubscribing whenever Redis comes back.
async fn listen_redis(ctx: Arc<Ctx>, link: Arc<RedisLink>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let subscribed = async {
            let mut pubsub = link.client().get_async_pubsub().await?;
            pubsub.subscribe(&ctx.redis_channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let mut pubsub = match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                link.mark_down(&e.to_string());
                if !pause(&mut backoff, &mut shutdown).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                link.mark_down("subscribing timed out");
                if !pause(&mut backoff, &mut shutdown).await {
                    return;
                }
                continue;
            }
        };
        link.mark_up();
        backoff = Duration::from_millis(200);
        ctx.hello();
        let mut messages = pubsub.on_message();
        loop {
            tokio::select! {
                msg = messages.next() => match msg {
                    Some(m) => {
                        let payload: String = m.get_payload().unwrap_or_default();
                        ctx.payload(&payload).await;
                    }
                    None => break,
                },
                _ = stopping(&mut shutdown) => return,
            }
        }
        link.mark_down("the subscription connection closed");
    }
}
