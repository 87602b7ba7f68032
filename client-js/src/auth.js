// The auth door: auth-js's names, GoTrue's request shapes. It keeps the session in the client's
// storage (one session for every tab that shares it), refreshes the access token before it expires
// (a timer, and on demand before a request) with one tab refreshing at a time, and reports changes
// to `onAuthStateChange` subscribers, the realtime connection and the other tabs. Errors are values
// `{name, message, status, code}`; no call throws for the server's or the network's answer.
import { networkError, notJson, query, send } from './http.js';

/** @typedef {{access_token: string, refresh_token: string, expires_in: number, expires_at: number, token_type: string, user: any}} Session */

const missing = () => ({ name: 'AuthSessionMissingError', message: 'Auth session missing!', status: 400, code: '' });
const meta = (/** @type {any} */ o) => ({ gotrue_meta_security: { captcha_token: o?.captchaToken } });
/** The `exp` claim of a JWT, or 0 when it cannot be read. @param {string} jwt */
const expOf = (jwt) => {
  try {
    return JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).exp ?? 0;
  } catch {
    return 0;
  }
};
const now = () => Date.now() / 1000;

export class Auth {
  /** @param {import('./client.js').DoskaClient} client */
  constructor(client) {
    this.c = client;
    const o = client.options.auth ?? {};
    this.auto = o.autoRefreshToken !== false;
    this.persist = o.persistSession !== false;
    this.storageKey = o.storageKey ?? `sb-${new URL(client.url).hostname.split('.')[0]}-auth-token`;
    /** @type {Set<(event: string, session: Session | null) => void>} */
    this.subs = new Set();
    /** @type {Promise<any> | null} */
    this._refreshing = null;
    /** @type {any} */
    this._timer = undefined;
    /** @type {Session | null} */
    this.currentSession = this.persist ? this._load() : null;
    this._schedule();
    /** Settles once a session in the page's URL (a mailed link's redirect) is taken. */
    this._init = o.detectSessionInUrl === false ? Promise.resolve() : this._fromUrl().catch(() => {});
    // Another tab signed in, out or refreshed: take its session (already in the shared storage).
    client.tabs.on('auth', (/** @type {any} */ m) => this._adopt(m.session, m.event));
    globalThis.addEventListener?.('storage', (/** @type {any} */ e) => {
      if (e.storageArea === client.storageArea && (e.key === this.storageKey || e.key === null)) this._adopt(this._load());
    });
  }

  /**
   * A mailed link (confirmation, magic link, recovery, invite) redirects to the app with the
   * session in the URL fragment, as GoTrue does: take it, and drop the tokens from the address bar.
   * An `#error=…` fragment is left for the app to show.
   */
  async _fromUrl() {
    const loc = globalThis.location;
    const p = new URLSearchParams(loc?.hash?.slice(1));
    const access_token = p.get('access_token'), refresh_token = p.get('refresh_token');
    if (!access_token || !refresh_token) return;
    globalThis.history?.replaceState(history.state, '', loc.pathname + loc.search);
    const r = await this._call('GET', '/user', undefined, access_token);
    if (r.error) return;
    const expires_at = +(p.get('expires_at') ?? 0) || expOf(access_token);
    const session = { access_token, refresh_token, token_type: 'bearer', expires_in: +(p.get('expires_in') ?? 3600), expires_at, user: r.data };
    this._set(session, p.get('type') == 'recovery' ? 'PASSWORD_RECOVERY' : 'SIGNED_IN');
  }

  /** The persisted session, or null (also for a corrupt entry, which is dropped). */
  _load() {
    const area = this.c.storageArea;
    try {
      const s = JSON.parse(area.getItem(this.storageKey) ?? 'null');
      if (s?.access_token && s.refresh_token) return s;
    } catch {
      area.removeItem(this.storageKey);
    }
    return null;
  }

  /**
   * Takes a session another tab made, without writing or broadcasting it again.
   * @param {Session | null} s
   * @param {string} [event]
   */
  _adopt(s, event) {
    const cur = this.currentSession;
    // Two refreshes in one second can mint the same access token: the refresh token tells them apart.
    if ((s?.refresh_token ?? null) === (cur?.refresh_token ?? null)) return;
    this.currentSession = s;
    this._schedule();
    this._emit(event ?? (!s ? 'SIGNED_OUT' : cur?.user?.id === s.user?.id ? 'TOKEN_REFRESHED' : 'SIGNED_IN'), s);
  }

  /**
   * Makes `s` the session, persists it and tells subscribers, realtime and the other tabs.
   * @param {Session | null} s
   * @param {string} event
   */
  _set(s, event) {
    this.currentSession = s;
    if (this.persist) {
      try {
        if (s) this.c.storageArea.setItem(this.storageKey, JSON.stringify(s));
        else this.c.storageArea.removeItem(this.storageKey);
      } catch {
        /* storage full: the session still lives in memory for this tab */
      }
    }
    this._schedule();
    this._emit(event, s);
    this.c.tabs.post('auth', { event, session: s });
  }

  /** @param {string} event @param {Session | null} s */
  _emit(event, s) {
    if (event != 'USER_UPDATED') this.c._rt?.setAuth(s?.access_token ?? this.c.key);
    for (const cb of this.subs) {
      try {
        cb(event, s);
      } catch {
        /* one failing subscriber does not stop the others */
      }
    }
  }

  /** How long before expiry a token counts as expiring: 30 s, less for short-lived tokens. @param {Session} s */
  _expiring(s) {
    return s.expires_at - now() < Math.min(30, (s.expires_in || 3600) / 4);
  }

  _schedule() {
    clearTimeout(this._timer);
    const s = this.currentSession;
    if (!this.auto || !s) return;
    const ms = (s.expires_at - now() - Math.min(30, (s.expires_in || 3600) / 4)) * 1000;
    this._later(Math.max(0, ms), s.refresh_token);
  }

  /** @param {number} ms @param {string} rt */
  _later(ms, rt) {
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._refresh(rt), Math.min(ms, 2 ** 31 - 1));
    // A pending refresh must not keep a Node process alive.
    this._timer.unref?.();
  }

  /**
   * The access token to send, refreshed first when it is about to expire; null without a session.
   * @returns {Promise<string | null>}
   */
  async _token() {
    await this._init;
    const s = this.currentSession;
    if (s && this._expiring(s)) await this._refresh(s.refresh_token);
    return this.currentSession?.access_token ?? null;
  }

  /**
   * One refresh at a time in this client and, through the tabs lock, across tabs; a tab that got
   * the lock after another refreshed takes the stored session instead of spending its token.
   * @param {string} rt
   * @returns {Promise<{data: {user: any, session: Session | null}, error: any}>}
   */
  _refresh(rt) {
    return (this._refreshing ??= this.c.tabs
      .withLock('doska.refresh', async () => {
        const stored = this.persist ? this._load() : null;
        if (stored && stored.refresh_token != rt && !this._expiring(stored)) {
          this._adopt(stored, 'TOKEN_REFRESHED');
          return { data: { user: stored.user, session: stored }, error: null };
        }
        const r = await this._call('POST', '/token?grant_type=refresh_token', { refresh_token: rt });
        const st = r.error?.status;
        // The server refused the token (used, revoked, session gone): the session is over. Other
        // failures (network, 5xx, rate limit) keep it and try again shortly.
        if (st >= 400 && st < 404) {
          if (this.currentSession?.refresh_token == rt) this._set(null, 'SIGNED_OUT');
        } else if (r.error) this._later(10_000, rt);
        return this._signedIn(r, 'TOKEN_REFRESHED');
      })
      .finally(() => (this._refreshing = null)));
  }

  /**
   * @param {string} method
   * @param {string} path under /auth/v1
   * @param {any} [body]
   * @param {string | null} [jwt] the token to send instead of the key
   * @returns {Promise<{data?: any, error?: any}>}
   */
  async _call(method, path, body, jwt) {
    const c = this.c;
    const url = `${c.url}/auth/v1${path}`;
    const headers = {
      ...c.options.headers,
      apikey: c.key,
      Authorization: `Bearer ${jwt ?? c.key}`,
      'Content-Type': 'application/json;charset=UTF-8',
      'X-Supabase-Api-Version': '2024-01-01',
    };
    const { res, text = '', json, bad, thrown } = await send(c, url, { method, headers, body: body && JSON.stringify(body) });
    if (!res) return { error: networkError(thrown) };
    const status = res.status;
    if (bad) return { error: { name: 'AuthUnknownError', ...notJson(res, url, text), status } };
    if (!res.ok) {
      const j = json ?? {};
      const message = j.message ?? j.msg ?? j.error_description ?? j.error ?? `${status} ${res.statusText}`;
      return { error: { name: 'AuthApiError', message, status, code: j.error_code ?? (typeof j.code == 'string' ? j.code : '') } };
    }
    return { data: json ?? {} };
  }

  /**
   * The `{data: {user, session}, error}` of an answer that may carry a session; keeps the session.
   * @param {{data?: any, error?: any}} r
   * @param {string} [event]
   */
  _signedIn(r, event = 'SIGNED_IN') {
    if (r.error) return { data: { user: null, session: null }, error: r.error };
    const d = r.data;
    /** @type {Session | null} */
    const session = d.access_token ? { ...d, expires_at: d.expires_at ?? Math.round(now()) + d.expires_in } : null;
    if (session) this._set(session, event);
    return { data: { user: session ? session.user : d.user ?? d, session }, error: null };
  }

  /** @param {{email?: string, phone?: string, password: string, options?: {data?: object, emailRedirectTo?: string, captchaToken?: string}}} p */
  async signUp({ options: o = {}, ...p }) {
    const r = await this._call('POST', '/signup' + query({ redirect_to: o.emailRedirectTo }), { ...p, data: o.data ?? {}, ...meta(o) });
    return this._signedIn(r);
  }

  /** @param {{email?: string, phone?: string, password: string, options?: {captchaToken?: string}}} p */
  async signInWithPassword({ options, ...p }) {
    return this._signedIn(await this._call('POST', '/token?grant_type=password', { ...p, ...meta(options) }));
  }

  /** @param {{options?: {data?: object, captchaToken?: string}}} [p] */
  async signInAnonymously({ options: o = {} } = {}) {
    return this._signedIn(await this._call('POST', '/signup', { data: o.data ?? {}, ...meta(o) }));
  }

  /** @param {{email?: string, phone?: string, options?: {data?: object, emailRedirectTo?: string, shouldCreateUser?: boolean, captchaToken?: string}}} p */
  async signInWithOtp({ options: o = {}, ...p }) {
    const body = { ...p, data: o.data ?? {}, create_user: o.shouldCreateUser ?? true, ...meta(o) };
    const r = await this._call('POST', '/otp' + query({ redirect_to: o.emailRedirectTo }), body);
    return { data: { user: null, session: null, messageId: r.data?.message_id ?? null }, error: r.error ?? null };
  }

  /** @param {{email?: string, phone?: string, token?: string, token_hash?: string, type: string, options?: {redirectTo?: string, captchaToken?: string}}} p */
  async verifyOtp({ options: o = {}, ...p }) {
    const r = await this._call('POST', '/verify' + query({ redirect_to: o.redirectTo }), { ...p, ...meta(o) });
    return this._signedIn(r, p.type == 'recovery' ? 'PASSWORD_RECOVERY' : 'SIGNED_IN');
  }

  /**
   * Ends the session on the server (`scope`: global, local, others) and, unless `others`, here and
   * in every tab — also when the server cannot be reached (the error says so).
   * @param {{scope?: 'global' | 'local' | 'others'}} [p]
   */
  async signOut({ scope = 'global' } = {}) {
    const s = this.currentSession;
    let error = null;
    if (s) {
      error = (await this._call('POST', `/logout?scope=${scope}`, undefined, s.access_token)).error ?? null;
      // Already gone on the server: signed out all the same.
      if ([401, 403, 404].includes(error?.status)) error = null;
    }
    if (scope != 'others') this._set(null, 'SIGNED_OUT');
    return { error };
  }

  /** The session, refreshed first when it is about to expire. */
  async getSession() {
    await this._init;
    const s = this.currentSession;
    const r = s && this._expiring(s) ? await this._refresh(s.refresh_token) : null;
    return { data: { session: this.currentSession }, error: r?.error ?? null };
  }

  /** @param {{access_token: string, refresh_token: string}} p */
  async setSession({ access_token, refresh_token }) {
    if (!access_token || !refresh_token) return { data: { user: null, session: null }, error: missing() };
    const exp = expOf(access_token);
    if (exp - now() < 30) return this._signedIn(await this._call('POST', '/token?grant_type=refresh_token', { refresh_token }), 'TOKEN_REFRESHED');
    const r = await this._call('GET', '/user', undefined, access_token);
    if (r.error) return { data: { user: null, session: null }, error: r.error };
    return this._signedIn({ data: { access_token, refresh_token, token_type: 'bearer', expires_in: Math.round(exp - now()), expires_at: exp, user: r.data } });
  }

  /**
   * The user as the server knows it now (GET /user). Without a session (and no `jwt`), no request
   * is sent and the error is AuthSessionMissingError.
   * @param {string} [jwt]
   */
  async getUser(jwt) {
    const token = jwt ?? (await this._token());
    if (!token) return { data: { user: null }, error: missing() };
    const r = await this._call('GET', '/user', undefined, token);
    if (!r.error) return { data: { user: r.data }, error: null };
    // The server ended this session (signed out elsewhere, user deleted): end it here too.
    if (!jwt && ['session_not_found', 'user_not_found'].includes(r.error.code)) this._set(null, 'SIGNED_OUT');
    return { data: { user: null }, error: r.error };
  }

  /** @param {{refresh_token: string}} [current] */
  async refreshSession(current) {
    const rt = current?.refresh_token ?? this.currentSession?.refresh_token;
    return rt ? this._refresh(rt) : { data: { user: null, session: null }, error: missing() };
  }

  /**
   * @param {{email?: string, phone?: string, password?: string, nonce?: string, current_password?: string, data?: object}} attributes
   * @param {{emailRedirectTo?: string}} [opts]
   */
  async updateUser(attributes, opts = {}) {
    const token = await this._token();
    if (!token) return { data: { user: null }, error: missing() };
    const r = await this._call('PUT', '/user' + query({ redirect_to: opts.emailRedirectTo }), attributes, token);
    if (r.error) return { data: { user: null }, error: r.error };
    if (this.currentSession) this._set({ ...this.currentSession, user: r.data }, 'USER_UPDATED');
    return { data: { user: r.data }, error: null };
  }

  /** @param {string} email @param {{redirectTo?: string, captchaToken?: string}} [opts] */
  async resetPasswordForEmail(email, opts = {}) {
    const r = await this._call('POST', '/recover' + query({ redirect_to: opts.redirectTo }), { email, ...meta(opts) });
    return { data: r.error ? null : {}, error: r.error ?? null };
  }

  /**
   * Calls `cb(event, session)` on every change, first with INITIAL_SESSION.
   * @param {(event: string, session: Session | null) => void} cb
   */
  onAuthStateChange(cb) {
    this.subs.add(cb);
    Promise.all([this._init, this._refreshing]).then(() => {
      if (this.subs.has(cb)) cb('INITIAL_SESSION', this.currentSession);
    }, () => {});
    const subscription = { callback: cb, unsubscribe: () => void this.subs.delete(cb) };
    return { data: { subscription } };
  }
}
