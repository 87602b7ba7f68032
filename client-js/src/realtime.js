// Realtime: one Phoenix socket (vsn 2.0.0, as realtime-js speaks it) and its channels —
// postgres_changes, broadcast, presence, system messages. Heartbeats find a dead socket; a lost
// one reconnects with backoff and every channel rejoins with `since` = the position of the last
// change it delivered, so the server replays what was missed exactly once (or says, through
// `system`, that the app must refetch). The access token follows sign-in and refresh in-band.

const KEY = /** @type {const} */ ({ S: 'SUBSCRIBED', E: 'CHANNEL_ERROR', T: 'TIMED_OUT', C: 'CLOSED' });

/** `"X/Y:i"` → comparable triple; positions are unique and increase along the stream. */
const pos = (/** @type {string} */ p) => p.split(/[/:]/).map((x, i) => parseInt(x, i < 2 ? 16 : 10));
/** @param {string} a @param {string} b @returns {boolean} a is after b */
const after = (a, b) => {
  const x = pos(a), y = pos(b);
  // A position that does not parse (NaN) counts as after: never drop a change for it.
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return !(x[i] < y[i]);
  return false;
};

/** Phoenix presence metas → realtime-js's shape (`presence_ref` instead of `phx_ref`). */
const metas = (/** @type {any} */ e) => e.metas.map((/** @type {any} */ { phx_ref, phx_ref_prev, ...m }) => ({ presence_ref: phx_ref, ...m }));

export class Realtime {
  /** @param {any} client a DoskaClient */
  constructor(client) {
    this.c = client;
    /** @type {Channel[]} */
    this.chs = [];
    this.ref = 0;
    /** @type {Map<string, (reply: any) => void>} */
    this.replies = new Map();
    this.tries = 0;
    /** @type {string|null|undefined} the token set by auth; undefined = not told yet */
    this.token = undefined;
    const o = client.options?.realtime || {};
    this.hb = o.heartbeatIntervalMs || 25000;
    this.timeout = o.timeout || 10000;
    /** @type {(tries: number) => number} */
    this.backoff = o.reconnectAfterMs || ((n) => [1000, 2000, 5000][n - 1] || 10000);
    /** @type {any} */
    this.ws = null;
  }

  /** @param {string} name @param {{config?: any}} [opts] */
  channel(name, opts = {}) {
    const ch = new Channel(this, name, opts.config || {});
    this.chs.push(ch);
    return ch;
  }

  getChannels() { return this.chs.slice(); }

  /** @param {Channel} ch */
  async removeChannel(ch) {
    const r = await ch.unsubscribe();
    this.chs = this.chs.filter((c) => c !== ch);
    if (!this.chs.length) this.disconnect();
    return r;
  }

  removeAllChannels() { return Promise.all(this.chs.map((c) => this.removeChannel(c))); }

  /** The current access token: what auth last said, else the session's, else the key. */
  tok() {
    return (this.token !== undefined ? this.token : this.c.auth?.currentSession?.access_token) || this.c.key;
  }

  /** Called by auth on every sign-in, refresh and sign-out. @param {string|null} token */
  setAuth(token) {
    this.token = token;
    for (const ch of this.chs) if (ch.state === 'joined') ch.push('access_token', { access_token: this.tok() });
  }

  mkref() { return String(++this.ref); }

  /**
   * Send one frame. @returns {string|null} its ref, or null when the socket is not open
   * @param {string} topic @param {string} event @param {any} payload @param {string|null} [joinRef]
   */
  send(topic, event, payload, joinRef = null) {
    if (this.ws?.readyState !== 1) return null;
    const ref = this.mkref();
    this.ws.send(JSON.stringify([joinRef, ref, topic, event, payload]));
    return ref;
  }

  async connect() {
    if (this.ws || this.opening) return;
    this.opening = true;
    this.closing = false;
    // A token near expiry is refreshed first (auth then calls setAuth): the join carries it.
    try { await this.c.headers?.(); } catch { /* offline: the socket will say so */ }
    this.opening = false;
    if (this.closing || this.ws) return;
    const WS = this.c.options?.WebSocket || globalThis.WebSocket;
    const url = this.c.url.replace(/^http/, 'ws').replace(/\/$/, '') +
      '/realtime/v1/websocket?apikey=' + encodeURIComponent(this.c.key) + '&vsn=2.0.0';
    /** @type {any} */
    let ws;
    if (!WS) return this.lost(new Error('no WebSocket here: pass createClient(url, key, { WebSocket }) (on Node 20, the ws package)'));
    try { ws = this.ws = new WS(url); } catch (e) { return this.lost(/** @type {Error} */ (e)); }
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      this.pending = null;
      clearInterval(this.beat);
      this.beat = setInterval(() => {
        // The last heartbeat got no reply: the socket is dead even if it looks open.
        if (this.pending) return ws.close();
        this.pending = this.send('phoenix', 'heartbeat', {});
      }, this.hb);
      /** @type {any} */ (this.beat).unref?.();
      for (const ch of this.chs) if (ch.state !== 'closed' && ch.state !== 'leaving') ch.join();
    };
    ws.onmessage = (/** @type {{data: any}} */ e) => this.recv(e.data);
    ws.onclose = ws.onerror = (/** @type {any} */ e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.beat);
      try { ws.close(); } catch { /* already */ }
      this.lost(e?.error || new Error('realtime socket closed' + (e?.code ? ' (' + e.code + (e.reason ? ': ' + e.reason : '') + ')' : '')));
    };
  }

  /** The socket is gone: channels learn it, and unless we closed it, a new one follows. */
  lost(/** @type {Error} */ err) {
    this.ws = null;
    for (const [, cb] of this.replies) cb({ status: 'error', response: { reason: err.message } });
    this.replies.clear();
    for (const ch of this.chs) ch.down(err);
    if (this.closing || !this.chs.some((c) => c.state !== 'closed')) return;
    clearTimeout(this.retry);
    // Not unref'd: a Node process that listens keeps running while it reconnects.
    this.retry = setTimeout(() => this.connect(), this.backoff(++this.tries));
  }

  disconnect() {
    this.closing = true;
    clearTimeout(this.retry);
    clearInterval(this.beat);
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
    for (const ch of this.chs) ch.down(null);
  }

  /** @param {string|ArrayBuffer} data */
  recv(data) {
    /** @type {any} */
    let m;
    try {
      if (typeof data === 'string') {
        const [join_ref, ref, topic, event, payload] = JSON.parse(data);
        m = { join_ref, ref, topic, event, payload };
      } else {
        // kind 4 (userBroadcast): [4, topic, event, meta lengths, encoding] topic event meta payload
        const b = new Uint8Array(data), d = new TextDecoder();
        let o = 5;
        const s = (/** @type {number} */ n) => d.decode(b.subarray(o, (o += n)));
        const topic = s(b[1]), event = s(b[2]), meta = s(b[3]);
        const raw = b.subarray(o);
        const payload = { type: 'broadcast', event, payload: b[4] ? JSON.parse(d.decode(raw)) : raw.slice().buffer, ...(meta && { meta: JSON.parse(meta) }) };
        m = { join_ref: null, ref: null, topic, event: 'broadcast', payload };
      }
    } catch {
      return;
    }
    if (m.event === 'phx_reply') {
      if (m.ref === this.pending) this.pending = null;
      const cb = this.replies.get(m.ref);
      this.replies.delete(m.ref);
      return cb?.(m.payload);
    }
    for (const ch of this.chs) if (ch.topic === m.topic) ch.recv(m);
  }
}

export class Channel {
  /** @param {Realtime} rt @param {string} name @param {any} config */
  constructor(rt, name, config) {
    this.rt = rt;
    this.name = name;
    this.topic = 'realtime:' + name;
    this.config = config;
    this.state = 'closed';
    /** @type {{type: string, filter: any, cb: (p: any) => void, id?: number}[]} */
    this.b = [];
    /** @type {Record<string, any[]>} realtime-js's presence shape */
    this.presence = {};
    /** @type {string|null} the position of the last change delivered */
    this.since = null;
    /** @type {((ok: boolean) => void)[]} pushes waiting for the join (false: the channel left) */
    this.buf = [];
    /** @type {any} */
    this.tracked = null;
    this.joinRef = null;
  }

  /** @param {string} type @param {any} filter @param {(payload: any) => void} cb */
  on(type, filter, cb) {
    this.b.push({ type, filter: filter || {}, cb });
    return this;
  }

  /** @param {string} status @param {Error} [err] */
  status(status, err) {
    try { this.cb?.(status, err); } catch { /* the app's callback */ }
  }

  /** @param {(status: string, err?: Error) => void} [cb] @param {number} [timeout] */
  subscribe(cb, timeout) {
    this.cb = cb;
    if (timeout) this.timeout = timeout;
    if (this.state === 'closed') {
      this.state = 'joining';
      if (this.rt.ws?.readyState === 1) this.join();
      else this.rt.connect();
    }
    return this;
  }

  join() {
    const c = this.config, rt = this.rt;
    const pg = this.b.filter((b) => b.type === 'postgres_changes');
    this.state = 'joining';
    this.joinRef = rt.mkref();
    const config = {
      broadcast: { ack: false, self: false, ...c.broadcast },
      presence: { key: '', ...c.presence, enabled: this.b.some((b) => b.type === 'presence') || !!c.presence?.enabled },
      postgres_changes: pg.map(({ filter: { event = '*', schema, table, filter } }) => ({ event, schema, table, filter })),
      private: !!c.private,
      ...(this.since && { since: this.since }),
    };
    this.request('phx_join', { config, access_token: rt.tok() }, this.timeout || rt.timeout, true).then((r) => {
      if (this.state !== 'joining') return;
      if (r.status === 'ok') {
        this.state = 'joined';
        rt.tries = 0;
        const ids = r.response?.postgres_changes || [];
        pg.forEach((b, i) => (b.id = ids[i]?.id));
        this.status(KEY.S);
        // A rejoin with nothing to resume from cannot replay what the socket missed: say so, as
        // the server does past its window.
        if (this.joined && !this.since && pg.length) {
          this.recv({ join_ref: null, event: 'system', payload: { status: 'error', extension: 'postgres_changes', channel: this.name, message: 'No change position to resume from: refetch, then continue with live changes' } });
        }
        this.joined = true;
        const buf = this.buf;
        this.buf = [];
        buf.forEach((f) => f(true));
        if (this.tracked) this.track(this.tracked);
      } else {
        this.state = 'errored';
        const timedOut = r.status === 'timeout';
        this.status(timedOut ? KEY.T : KEY.E, new Error(r.response?.reason || (timedOut ? 'join timed out' : 'join refused')));
        if (timedOut) rt.ws?.close();
      }
    });
  }

  /**
   * One push that expects a reply → `{status: 'ok'|'error'|'timeout', response}`; never rejects.
   * @param {string} event @param {any} payload @param {number} [ms] @param {boolean} [isJoin]
   */
  request(event, payload, ms = this.rt.timeout, isJoin = false) {
    return new Promise((resolve) => {
      const go = (ok = true) => {
        const ref = ok && this.rt.send(this.topic, event, payload, this.joinRef);
        if (!ref) return resolve({ status: 'error', response: { reason: 'realtime socket not open' } });
        const t = setTimeout(() => {
          this.rt.replies.delete(ref);
          resolve({ status: 'timeout', response: {} });
        }, ms);
        this.rt.replies.set(ref, (r) => { clearTimeout(t); resolve(r); });
      };
      if (isJoin || this.state === 'joined') go();
      else this.buf.push(go);
    });
  }

  /** Fire and forget (access tokens). */
  push(/** @type {string} */ event, /** @type {any} */ payload) {
    this.rt.send(this.topic, event, payload, this.joinRef);
  }

  /** The socket went away (err) or was closed by us (null). */
  down(/** @type {Error|null} */ err) {
    if (this.state === 'closed' || (err && this.state === 'errored')) return;
    if (!err) {
      this.state = 'closed';
      this.status(KEY.C);
      return;
    }
    this.state = 'errored';
    this.status(KEY.E, err);
  }

  /** @param {{join_ref: string|null, event: string, payload: any}} m */
  recv({ join_ref, event, payload }) {
    if (join_ref && join_ref !== this.joinRef) return; // a message for an earlier join
    const emit = (/** @type {string} */ type, /** @type {(b: any) => boolean} */ match, /** @type {any} */ arg) => {
      for (const b of this.b) {
        if (b.type !== type || !match(b)) continue;
        try { b.cb(arg); } catch { /* the app's callback */ }
      }
    };
    if (event === 'postgres_changes') {
      const d = payload.data, p = d.position;
      if (p && this.since && !after(p, this.since)) return;
      if (p) this.since = p;
      emit('postgres_changes', (b) => payload.ids?.includes(b.id), {
        schema: d.schema, table: d.table, commit_timestamp: d.commit_timestamp, eventType: d.type,
        new: d.record || {}, old: d.old_record || {}, errors: d.errors, position: p,
      });
    } else if (event === 'broadcast') {
      emit('broadcast', (b) => !b.filter.event || b.filter.event === '*' || b.filter.event === payload.event, payload);
    } else if (event === 'system') {
      emit('system', () => true, payload);
    } else if (event === 'presence_state' || event === 'presence_diff') {
      const ev = (/** @type {string} */ e, /** @type {any} */ arg) => emit('presence', (b) => b.filter.event === e || b.filter.event === '*', arg);
      const cur = this.presence;
      let joins = payload, leaves = {};
      if (event === 'presence_state') {
        leaves = Object.fromEntries(Object.keys(cur).filter((k) => !payload[k]).map((k) => [k, { metas: [] }]));
        this.presence = {};
      } else ({ joins, leaves } = payload);
      for (const [key, e] of Object.entries(joins)) {
        const now = metas(e), refs = now.map((/** @type {any} */ m) => m.presence_ref);
        const was = this.presence[key] || cur[key] || [];
        this.presence[key] = [...was.filter((m) => !refs.includes(m.presence_ref)), ...now];
        ev('join', { key, currentPresences: was, newPresences: now });
      }
      for (const [key, e] of Object.entries(leaves)) {
        const gone = e.metas.length ? metas(e) : cur[key] || [], refs = gone.map((/** @type {any} */ m) => m.presence_ref);
        const left = (this.presence[key] || []).filter((m) => !refs.includes(m.presence_ref));
        if (left.length) this.presence[key] = left;
        else delete this.presence[key];
        ev('leave', { key, currentPresences: left, leftPresences: gone });
      }
      ev('sync', undefined);
    } else if (event === 'phx_error') {
      this.state = 'errored';
      this.status(KEY.E, new Error(payload?.reason || 'channel error'));
    } else if (event === 'phx_close' && this.state !== 'leaving') {
      this.state = 'closed';
      this.status(KEY.C);
    }
  }

  presenceState() { return this.presence; }

  /**
   * A broadcast over the socket when joined, else over HTTP (`/realtime/v1/api/broadcast`).
   * @param {{type: 'broadcast', event: string, payload?: any}} msg @returns {Promise<'ok'|'error'|'timed out'>}
   */
  async send(msg) {
    if (this.state !== 'joined') {
      try {
        const c = this.rt.c;
        const res = await c.fetch(c.url.replace(/\/$/, '') + '/realtime/v1/api/broadcast', {
          method: 'POST',
          headers: { ...(await c.headers()), 'Content-Type': 'application/json' },
          body: JSON.stringify({ messages: [{ topic: this.name, event: msg.event, payload: msg.payload, private: !!this.config.private }] }),
        });
        return res.ok ? 'ok' : 'error';
      } catch {
        return 'error';
      }
    }
    if (!this.config.broadcast?.ack) {
      this.push('broadcast', msg);
      return 'ok';
    }
    return this.ask(this.request('broadcast', msg));
  }

  /** @param {Promise<{status: string}>} req */
  async ask(req) {
    const { status } = await req;
    return status === 'ok' ? 'ok' : status === 'timeout' ? 'timed out' : 'error';
  }

  /** Track this client's presence; re-tracked after every rejoin. @param {any} state */
  track(state) {
    this.tracked = state;
    return this.ask(this.request('presence', { type: 'presence', event: 'track', payload: state }));
  }

  untrack() {
    this.tracked = null;
    return this.ask(this.request('presence', { type: 'presence', event: 'untrack' }));
  }

  /** Leave: `'ok'` once the server confirmed (or the socket was not open). */
  async unsubscribe() {
    const was = this.state;
    this.buf.splice(0).forEach((f) => f(false));
    if (was === 'closed') return 'ok';
    this.state = 'leaving';
    const r = was === 'joined' ? await this.request('phx_leave', {}, undefined, true) : { status: 'ok' };
    this.state = 'closed';
    this.presence = {};
    this.joined = false;
    this.status(KEY.C);
    return r.status === 'timeout' ? 'timed out' : 'ok';
  }
}
