//! The hub: who has joined which topic, their presences, and their `postgres_changes`
//! bindings; fan-out of broadcasts, presence diffs and changes to the joined channels' send
//! queues. With other instances on the database (the `bus` attached), what happens here —
//! broadcasts, track, untrack — is also told to them as a [`Note`], and what they tell is
//! applied here by the `*_remote` methods: their presences are kept beside the local ones (so
//! `presence_state` shows everyone's), their broadcasts reach the local channels.
//!
//! Rejects nothing itself (the socket validates first); a full send queue marks its
//! connection as a slow consumer, which the socket then closes — the hub never waits on a
//! client and never buffers without bound.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde_json::{Map, Value, json};

use super::decode::Change;
use super::gossip::{Note, Presence};
use super::lsn::Position;
pub use super::outbox::{Gate, Outbox};
use super::phoenix::{BroadcastBody, ServerMessage, Shared};
use super::subscriptions::{PostgresChanges, SubscriptionSet};
use crate::jwt::Caller;

/// One joined channel (a topic on one socket, one join).
pub type ChanId = u64;

/// What a join brings to the hub.
#[derive(Debug, Clone)]
pub struct Membership {
    pub topic: Arc<str>,
    pub join_ref: Option<Arc<str>>,
    pub outbox: Outbox,
    pub broadcast_self: bool,
    /// Private channels only meet private broadcasts, public ones only public.
    pub private: bool,
    /// Whether broadcasts reach this channel (a private channel's policies may allow presence only).
    pub reads_broadcast: bool,
    pub presence_key: String,
    pub caller: Caller,
    /// `(id, binding)` in the client's order.
    pub bindings: Vec<(u32, PostgresChanges)>,
    /// Set while (and after) the channel replays the log: live changes go through it.
    pub gate: Option<Arc<Gate>>,
}

/// A channel a change goes to, with the binding ids that matched and who is asking.
#[derive(Debug, Clone)]
pub struct ChangeTarget {
    pub chan: ChanId,
    pub topic: Arc<str>,
    pub ids: Vec<u32>,
    pub caller: Caller,
    pub outbox: Outbox,
    pub gate: Option<Arc<Gate>>,
}

impl ChangeTarget {
    /// Queues a change for this channel (through its replay gate, if it has one), waiting until
    /// `deadline` for room in a full queue ([`Outbox::send_until`]).
    pub async fn send(
        &self,
        position: Position,
        msg: ServerMessage,
        deadline: tokio::time::Instant,
    ) -> bool {
        match &self.gate {
            Some(gate) => gate.offer(position, msg),
            None => self.outbox.send_until(msg, deadline).await,
        }
    }
}

/// A presence diff's two halves, each key → `{metas}`.
type JoinsLeaves = (Map<String, Value>, Map<String, Value>);

/// Who tracked a presence: the instance (`None`: this one) and its channel there.
type Owner = (Option<Arc<str>>, ChanId);

/// Presence key → the metas tracked under it, each with the channel that tracked it.
type TopicPresence = HashMap<String, Vec<(Owner, Value)>>;

#[derive(Debug, Default)]
struct Inner {
    members: HashMap<ChanId, Membership>,
    by_topic: HashMap<Arc<str>, HashSet<ChanId>>,
    /// topic → presence key → the metas tracked under it (with the channel that tracked each).
    presence: HashMap<Arc<str>, TopicPresence>,
    changes: SubscriptionSet<(ChanId, u32)>,
}

#[derive(Debug, Default)]
pub struct Hub {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    /// Open sockets, for /metrics.
    sockets: Arc<AtomicUsize>,
    /// WAL bytes the slot has not confirmed, as last measured (for /metrics).
    slot_lag: AtomicI64,
    /// Where notes for the other instances go (the bus's queue), once attached.
    bus: OnceLock<Outlet>,
}

/// The bus's end in the hub.
#[derive(Debug)]
struct Outlet {
    tx: tokio::sync::mpsc::Sender<Note>,
    /// Put before presence refs so two instances never hand out the same `phx_ref`.
    ref_prefix: String,
}

/// Counts one open socket until dropped.
#[derive(Debug)]
pub struct SocketOpen(Arc<AtomicUsize>);

impl Drop for SocketOpen {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere never leaves Inner half-updated in a way later calls cannot use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh id for channels, binding ids and presence refs.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// From now on, tells other instances what happens here through `tx` (see `bus`);
    /// `instance` is this one's id. Only the first call counts.
    pub fn attach(&self, tx: tokio::sync::mpsc::Sender<Note>, instance: &str) {
        let ref_prefix = format!("{}-", &instance[..instance.len().min(8)]);
        let _ = self.bus.set(Outlet { tx, ref_prefix });
    }

    /// Queues a note for the other instances; a full queue drops it (the bus is far behind:
    /// presence is put right by the next state exchange, a broadcast is best effort anyway).
    fn tell(&self, note: Note) {
        if let Some(out) = self.bus.get()
            && out.tx.try_send(note).is_err()
        {
            tracing::debug!("realtime: the bus queue is full; a note to other instances dropped");
        }
    }

    /// Adds a joined channel; returns its id.
    pub fn join(&self, m: Membership) -> ChanId {
        let chan = self.next_id();
        let mut inner = self.lock();
        for (id, binding) in &m.bindings {
            inner.changes.insert((chan, *id), binding.clone());
        }
        inner
            .by_topic
            .entry(m.topic.clone())
            .or_default()
            .insert(chan);
        inner.members.insert(chan, m);
        chan
    }

    /// Removes a channel: its bindings, and its presences (a leave diff to the others).
    pub fn leave(&self, chan: ChanId) {
        let mut inner = self.lock();
        let Some(m) = inner.members.remove(&chan) else {
            return;
        };
        if let Some(set) = inner.by_topic.get_mut(&m.topic) {
            set.remove(&chan);
            if set.is_empty() {
                inner.by_topic.remove(&m.topic);
            }
        }
        for (id, _) in &m.bindings {
            inner.changes.remove(&(chan, *id));
        }
        if let Some(gate) = &m.gate {
            gate.cancel();
        }
        if untrack_locked(&mut inner, &m.topic, &(None, chan)) {
            drop(inner);
            self.tell(Note::Untrack {
                topic: m.topic.to_string(),
                chan,
            });
        }
    }

    /// The presence state of a topic, as `presence_state` carries it.
    pub fn presence_state(&self, topic: &str) -> Value {
        let inner = self.lock();
        let mut state = Map::new();
        for (key, metas) in inner.presence.get(topic).into_iter().flatten() {
            let metas: Vec<Value> = metas.iter().map(|(_, m)| m.clone()).collect();
            state.insert(key.clone(), json!({ "metas": metas }));
        }
        Value::Object(state)
    }

    /// Tracks (or re-tracks) the channel's presence under its key.
    pub fn track(&self, chan: ChanId, mut meta: Map<String, Value>) {
        let phx_ref = match self.bus.get() {
            Some(out) => format!("{}{}", out.ref_prefix, self.next_id()),
            None => self.next_id().to_string(),
        };
        let mut inner = self.lock();
        let Some(m) = inner.members.get(&chan) else {
            return;
        };
        let topic = m.topic.clone();
        let key = m.presence_key.clone();
        meta.insert("phx_ref".into(), Value::String(phx_ref));
        let meta = Value::Object(meta);
        track_locked(&mut inner, &topic, &key, (None, chan), meta.clone());
        drop(inner);
        self.tell(Note::Track {
            topic: topic.to_string(),
            key,
            chan,
            meta,
        });
    }

    pub fn untrack(&self, chan: ChanId) {
        let mut inner = self.lock();
        let Some(topic) = inner.members.get(&chan).map(|m| m.topic.clone()) else {
            return;
        };
        if untrack_locked(&mut inner, &topic, &(None, chan)) {
            drop(inner);
            self.tell(Note::Untrack {
                topic: topic.to_string(),
                chan,
            });
        }
    }

    /// Every presence tracked on this instance, for a state exchange with the others.
    pub fn local_presences(&self) -> Vec<Presence> {
        let inner = self.lock();
        let mut all = Vec::new();
        for (topic, keys) in &inner.presence {
            for (key, metas) in keys {
                for ((instance, chan), meta) in metas {
                    if instance.is_none() {
                        all.push(Presence {
                            topic: topic.to_string(),
                            key: key.clone(),
                            chan: *chan,
                            meta: meta.clone(),
                        });
                    }
                }
            }
        }
        all
    }

    /// Another instance's channel tracked its presence.
    pub fn track_remote(&self, instance: &Arc<str>, p: Presence) {
        let mut inner = self.lock();
        let topic: Arc<str> = Arc::from(p.topic);
        track_locked(
            &mut inner,
            &topic,
            &p.key,
            (Some(instance.clone()), p.chan),
            p.meta,
        );
    }

    /// Another instance's channel untracked (or left).
    pub fn untrack_remote(&self, instance: &Arc<str>, topic: &str, chan: ChanId) {
        let mut inner = self.lock();
        let topic: Arc<str> = Arc::from(topic);
        untrack_locked(&mut inner, &topic, &(Some(instance.clone()), chan));
    }

    /// Replaces all that is known of `instance`'s presences with `presences` (its state, or
    /// nothing when it is gone); members see one diff per topic, with what did not change left
    /// out.
    pub fn replace_remote(&self, instance: &Arc<str>, presences: Vec<Presence>) {
        let mut inner = self.lock();
        // topic → (joins, leaves), each key → metas.
        let mut diffs: HashMap<Arc<str>, JoinsLeaves> = HashMap::new();
        let is_theirs = |o: &Owner| o.0.as_deref() == Some(&**instance);
        let mut old: Vec<(Arc<str>, String, Owner, Value)> = Vec::new();
        for (topic, keys) in inner.presence.iter_mut() {
            for (key, metas) in keys.iter_mut() {
                let (gone, kept): (Vec<_>, Vec<_>) =
                    metas.drain(..).partition(|(o, _)| is_theirs(o));
                *metas = kept;
                old.extend(
                    gone.into_iter()
                        .map(|(o, m)| (topic.clone(), key.clone(), o, m)),
                );
            }
            keys.retain(|_, metas| !metas.is_empty());
        }
        inner.presence.retain(|_, keys| !keys.is_empty());
        let mut new: Vec<(Arc<str>, String, Owner, Value)> = presences
            .into_iter()
            .map(|p| {
                let owner = (Some(instance.clone()), p.chan);
                (Arc::from(p.topic), p.key, owner, p.meta)
            })
            .collect();
        for (topic, key, owner, meta) in &new {
            inner
                .presence
                .entry(topic.clone())
                .or_default()
                .entry(key.clone())
                .or_default()
                .push((owner.clone(), meta.clone()));
        }
        // Unchanged presences are in both lists: no diff for them.
        type Entry = (Arc<str>, String, Owner, Value);
        let id = |(topic, key, (_, chan), meta): &Entry| {
            (topic.clone(), key.clone(), *chan, meta.to_string())
        };
        let old_ids: HashSet<_> = old.iter().map(id).collect();
        let new_ids: HashSet<_> = new.iter().map(id).collect();
        old.retain(|o| !new_ids.contains(&id(o)));
        new.retain(|n| !old_ids.contains(&id(n)));
        for (topic, key, _, meta) in old {
            push_meta(&mut diffs.entry(topic).or_default().1, key, meta);
        }
        for (topic, key, _, meta) in new {
            push_meta(&mut diffs.entry(topic).or_default().0, key, meta);
        }
        for (topic, (joins, leaves)) in diffs {
            fan_out_diff(&inner, &topic, Value::Object(joins), Value::Object(leaves));
        }
    }

    /// Sends a broadcast to every channel of `topic`; the sender (if any) only when it asked
    /// for its own messages. Returns how many channels it was queued for.
    pub fn broadcast(
        &self,
        from: Option<ChanId>,
        topic: &str,
        private: bool,
        event: String,
        meta: Option<Value>,
        body: BroadcastBody,
    ) -> usize {
        if self.bus.get().is_some() {
            let (payload, binary) = match &body {
                BroadcastBody::Json(v) => (Some(v.clone()), None),
                BroadcastBody::Binary(b) => (
                    None,
                    Some(base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        b,
                    )),
                ),
            };
            self.tell(Note::Broadcast {
                topic: topic.to_string(),
                private,
                event: event.clone(),
                meta: meta.clone(),
                payload,
                binary,
            });
        }
        self.broadcast_local(from, topic, private, event, meta, body)
    }

    /// [`Hub::broadcast`] to this instance's channels only (one another instance sent).
    pub fn broadcast_local(
        &self,
        from: Option<ChanId>,
        topic: &str,
        private: bool,
        event: String,
        meta: Option<Value>,
        body: BroadcastBody,
    ) -> usize {
        let inner = self.lock();
        let Some(chans) = inner.by_topic.get(topic) else {
            return 0;
        };
        let topic: Arc<str> = Arc::from(topic);
        let msg = Shared::wrap(ServerMessage::Broadcast {
            topic,
            event,
            meta,
            body,
        });
        let mut sent = 0;
        for chan in chans {
            let Some(m) = inner.members.get(chan) else {
                continue;
            };
            if (Some(*chan) == from && !m.broadcast_self)
                || m.private != private
                || !m.reads_broadcast
            {
                continue;
            }
            if m.outbox.send(msg.clone()) {
                sent += 1;
            }
        }
        sent
    }

    /// A channel's caller changed (in-band `access_token`).
    /// A channel's new caller (a refreshed token) and whether broadcasts still reach it (a
    /// private channel's policies, asked again as that caller).
    pub fn set_caller(&self, chan: ChanId, caller: Caller, reads_broadcast: bool) {
        if let Some(m) = self.lock().members.get_mut(&chan) {
            m.caller = caller;
            m.reads_broadcast = reads_broadcast;
        }
    }

    /// The channels whose bindings want `change`, one entry per channel with every matching
    /// binding id.
    pub fn change_targets(&self, change: &Change) -> Vec<ChangeTarget> {
        let inner = self.lock();
        let mut targets: Vec<ChangeTarget> = Vec::new();
        let mut index: HashMap<ChanId, usize> = HashMap::new();
        for (chan, id) in inner.changes.matching(change) {
            if let Some(&i) = index.get(&chan) {
                targets[i].ids.push(id);
                continue;
            }
            let Some(m) = inner.members.get(&chan) else {
                continue;
            };
            index.insert(chan, targets.len());
            targets.push(ChangeTarget {
                chan,
                topic: m.topic.clone(),
                ids: vec![id],
                caller: m.caller.clone(),
                outbox: m.outbox.clone(),
                gate: m.gate.clone(),
            });
        }
        targets
    }

    /// Sends a `system` error to every channel with `postgres_changes` bindings (changes they
    /// wanted were lost). Returns how many channels it was queued for.
    pub fn tell_changes_lost(&self, message: &str) -> usize {
        let inner = self.lock();
        let mut sent = 0;
        for m in inner.members.values().filter(|m| !m.bindings.is_empty()) {
            let queued = m.outbox.send(ServerMessage::Json {
                join_ref: m.join_ref.clone(),
                reference: None,
                topic: m.topic.clone(),
                event: "system",
                payload: json!({
                    "message": message,
                    "status": "error",
                    "extension": "postgres_changes",
                    "channel": m.topic.strip_prefix("realtime:").unwrap_or(&m.topic),
                }),
            });
            sent += usize::from(queued);
        }
        sent
    }

    /// Counts a socket as open until the returned guard is dropped.
    pub fn socket_opened(&self) -> SocketOpen {
        self.sockets.fetch_add(1, Ordering::Relaxed);
        SocketOpen(self.sockets.clone())
    }

    pub fn sockets(&self) -> usize {
        self.sockets.load(Ordering::Relaxed)
    }

    pub fn set_slot_lag(&self, bytes: i64) {
        self.slot_lag.store(bytes, Ordering::Relaxed);
    }

    pub fn slot_lag(&self) -> i64 {
        self.slot_lag.load(Ordering::Relaxed)
    }

    /// How many channels are joined (for metrics and tests).
    pub fn channels(&self) -> usize {
        self.lock().members.len()
    }
}

fn push_meta(map: &mut Map<String, Value>, key: String, meta: Value) {
    let entry = map.entry(key).or_insert_with(|| json!({ "metas": [] }));
    if let Some(metas) = entry.get_mut("metas").and_then(Value::as_array_mut) {
        metas.push(meta);
    }
}

/// Puts `owner`'s meta under `key` (replacing what it tracked before) and tells the topic's
/// members.
fn track_locked(inner: &mut Inner, topic: &Arc<str>, key: &str, owner: Owner, meta: Value) {
    let leaves = take_metas(inner, topic, &owner);
    inner
        .presence
        .entry(topic.clone())
        .or_default()
        .entry(key.to_string())
        .or_default()
        .push((owner, meta.clone()));
    let joins = json!({ key: { "metas": [meta] } });
    fan_out_diff(inner, topic, joins, leaves);
}

/// Removes the owner's metas from the topic's presence; returns them as a `leaves` map.
fn take_metas(inner: &mut Inner, topic: &Arc<str>, owner: &Owner) -> Value {
    let mut leaves = Map::new();
    if let Some(keys) = inner.presence.get_mut(topic) {
        keys.retain(|key, metas| {
            let (gone, kept): (Vec<_>, Vec<_>) = metas.drain(..).partition(|(o, _)| o == owner);
            if !gone.is_empty() {
                let gone: Vec<Value> = gone.into_iter().map(|(_, m)| m).collect();
                leaves.insert(key.clone(), json!({ "metas": gone }));
            }
            *metas = kept;
            !metas.is_empty()
        });
        if keys.is_empty() {
            inner.presence.remove(topic);
        }
    }
    Value::Object(leaves)
}

/// Removes the owner's presence from the topic; whether it had one.
fn untrack_locked(inner: &mut Inner, topic: &Arc<str>, owner: &Owner) -> bool {
    let leaves = take_metas(inner, topic, owner);
    let had = leaves.as_object().is_some_and(|l| !l.is_empty());
    if had {
        fan_out_diff(inner, topic, json!({}), leaves);
    }
    had
}

fn fan_out_diff(inner: &Inner, topic: &Arc<str>, joins: Value, leaves: Value) {
    let payload = json!({ "joins": joins, "leaves": leaves });
    // Encoded once for every member whose join_ref is the same (realtime-js sends "1"…).
    let mut shared: HashMap<Option<Arc<str>>, ServerMessage> = HashMap::new();
    for chan in inner.by_topic.get(topic).into_iter().flatten() {
        if let Some(m) = inner.members.get(chan) {
            let msg = shared.entry(m.join_ref.clone()).or_insert_with(|| {
                Shared::wrap(ServerMessage::Json {
                    join_ref: m.join_ref.clone(),
                    reference: None,
                    topic: topic.clone(),
                    event: "presence_diff",
                    payload: payload.clone(),
                })
            });
            m.outbox.send(msg.clone());
        }
    }
}
