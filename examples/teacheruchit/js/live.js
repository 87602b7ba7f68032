// Live parts shared by the teacher's and the student's pages: row changes pushed over realtime
// (each user receives only rows their policies let them read), the class room (chat rows, "is
// typing" broadcasts, presence) and notifications.
import { h, fill, explain, say, busy, when, toast } from './ui.js';
import { onReload } from './reload.js';

/**
 * Subscribes to changes of the given tables; `handlers[table](payload)` runs for each change, and
 * `onJoin` each time the subscription is (re)joined — what changed before it was live is fetched
 * then, so nothing committed between the first load and the join is missed.
 * @param {any} db @param {string} uid @param {Record<string, (p: any) => void>} handlers
 * @param {() => void} onJoin
 * @returns {() => void} unsubscribe
 */
export function watchTables(db, uid, handlers, onJoin) {
  const ch = db.channel(`changes:${uid}`);
  for (const [table, fn] of Object.entries(handlers)) {
    ch.on('postgres_changes', { event: '*', schema: 'public', table }, fn);
  }
  ch.subscribe((/** @type {string} */ status) => {
    if (status === 'SUBSCRIBED') onJoin();
  });
  return () => db.removeChannel(ch);
}

/** Coalesces bursts of calls into one, a moment later. */
export function debounce(fn, ms = 150) {
  let t = 0;
  return () => {
    clearTimeout(t);
    t = setTimeout(fn, ms);
  };
}

/**
 * The class room: chat messages, who is typing, who is online.
 * @param {any} db
 * @param {{uid: string, name: string, role: string, school: string, cls: number, letter: string,
 *          names: Map<string, string>}} who
 * @param {HTMLElement} chatEl where the chat goes
 * @param {HTMLElement} onlineEl where the online list goes
 * @returns {() => void} leave the room
 */
export function classRoom(db, who, chatEl, onlineEl) {
  const room = { school_id: who.school, class: who.cls, letter: who.letter };
  const list = h('ol', { class: 'chat-list', 'aria-live': 'polite' });
  const typing = h('p', { class: 'typing' });
  const input = h('input', { name: 'body', autocomplete: 'off', placeholder: 'Сообщение классу', maxlength: 4000 });
  const button = h('button', { type: 'submit' }, 'Отправить');
  const msg = h('p', { class: 'msg', role: 'status' });
  const form = h('form', { class: 'chat-form' }, input, button);
  const mark = h('span', { class: 'stale', hidden: true }, 'не в сети');
  fill(chatEl, h('p', { class: 'room' }, `Чат ${who.cls}${who.letter} `, mark), list, typing, form, msg);
  fill(onlineEl, h('p', { class: 'loading' }, 'Подключение…'));

  /** @type {Map<number, any>} */
  const rows = new Map();
  /** Messages written offline, shown until the queue is sent. */
  let waiting = [];
  const name = (id) => (id === who.uid ? `${who.name} (вы)` : who.names.get(id) ?? 'Участник');
  function render() {
    const sorted = [...rows.values()].sort((a, b) => a.id - b.id);
    fill(list,
      sorted.map((m) => h('li', { class: m.author_id === who.uid ? 'mine' : '' },
        h('b', {}, name(m.author_id)), ' ', h('time', {}, when(m.created_at)), h('div', {}, m.body))),
      waiting.map((body) => h('li', { class: 'mine waiting' }, h('b', {}, name(who.uid)), ' ',
        h('time', {}, 'ожидает отправки'), h('div', {}, body))));
    list.scrollTop = list.scrollHeight;
  }

  async function load() {
    const { data, error, stale } = await db.from('class_messages').select('id, author_id, body, created_at')
      .eq('school_id', who.school).eq('class', who.cls).eq('letter', who.letter)
      .order('id', { ascending: false }).limit(50);
    mark.hidden = !stale;
    if (error) return say(msg, explain(error, error.status));
    // A cached answer may be older than what arrived live since: keep both.
    if (!stale) rows.clear();
    for (const m of data ?? []) rows.set(m.id, m);
    if (db.offline.pending() === 0) waiting = [];
    render();
  }
  load();
  const offReload = onReload(load);

  const changes = db.channel(`chat:${who.school}:${who.cls}:${who.letter}:${who.uid}`)
    .on('postgres_changes', { event: '*', schema: 'public', table: 'class_messages', filter: `school_id=eq.${who.school}` }, (p) => {
      const m = p.new?.id ? p.new : null;
      if (p.eventType === 'DELETE' && p.old?.id) rows.delete(p.old.id);
      else if (m && m.class === who.cls && m.letter === who.letter) {
        rows.set(m.id, m);
        if (m.author_id !== who.uid) typing.textContent = '';
      }
      render();
    })
    .subscribe((status) => {
      // Back after a drop: fetch what may have been missed.
      if (status === 'SUBSCRIBED') load();
    });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = input.value.trim();
    if (!body) return say(msg, 'Напишите сообщение.');
    if (body.length > 4000) return say(msg, 'Сообщение длиннее 4000 символов.');
    await busy(button, async () => {
      const res = await db.from('class_messages').insert({ ...room, body });
      if (res.error) return say(msg, explain(res.error, res.status));
      input.value = '';
      say(msg, '', 'ok');
      if (res.queued) {
        waiting.push(body);
        say(msg, 'Нет сети: сообщение ждёт отправки и уйдёт само, когда связь вернётся.', 'warn');
        render();
      }
    });
  });

  // The room channel: presence (who is here) and "is typing" broadcasts.
  const topic = `class:${who.school}:${who.cls}:${who.letter}`;
  const roomCh = db.channel(topic, { config: { private: true, presence: { key: who.uid }, broadcast: { self: false } } });
  let typingTimer = 0;
  let lastTyped = 0;
  function showOnline() {
    const state = roomCh.presenceState();
    const people = new Map();
    for (const [key, metas] of Object.entries(state)) {
      const m = metas[0] ?? {};
      if (m.name) who.names.set(key, m.name);
      people.set(key, m);
    }
    const items = [...people.entries()].sort((a, b) => String(a[1].name).localeCompare(String(b[1].name), 'ru'));
    fill(onlineEl, items.length
      ? h('ul', { class: 'online-list' }, items.map(([key, m]) =>
        h('li', { 'data-user': key }, h('span', { class: 'dot' }), `${m.name ?? 'Участник'}${key === who.uid ? ' (вы)' : ''}`,
          h('small', {}, m.role === 'student' ? ' ученик' : ' учитель'))))
      : h('p', { class: 'muted' }, 'Никого нет в сети'));
    render();
  }
  roomCh
    .on('presence', { event: 'sync' }, showOnline)
    .on('broadcast', { event: 'typing' }, ({ payload }) => {
      if (!payload?.name || payload.uid === who.uid) return;
      typing.textContent = `${payload.name} печатает…`;
      clearTimeout(typingTimer);
      typingTimer = setTimeout(() => (typing.textContent = ''), 3000);
    })
    .subscribe(async (status) => {
      if (status === 'SUBSCRIBED') {
        await roomCh.track({ name: who.name, role: who.role, at: new Date().toISOString() });
      } else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') {
        fill(onlineEl, h('p', { class: 'muted' }, navigator.onLine ? 'Не удалось подключиться к классу.' : 'Нет сети.'));
      }
    });
  input.addEventListener('input', () => {
    const now = Date.now();
    if (now - lastTyped < 2000) return;
    lastTyped = now;
    roomCh.send({ type: 'broadcast', event: 'typing', payload: { uid: who.uid, name: who.name } });
  });

  return () => {
    offReload();
    clearTimeout(typingTimer);
    db.removeChannel(changes);
    db.removeChannel(roomCh);
  };
}

/**
 * The notifications card of a user: the latest, live; the browser's Notification API when the tab
 * is hidden and the user allowed it.
 * @param {any} db @param {string} uid @param {{body: HTMLElement, stale: (on: boolean) => void}} card
 * @returns {{reload: () => Promise<void>, onChange: (p: any) => void}}
 */
export function notifications(db, uid, card) {
  const list = h('ul', { class: 'notes', id: 'notifications' });
  const canAsk = 'Notification' in globalThis && Notification.permission === 'default';
  const ask = canAsk
    ? h('button', { class: 'link', onclick: async () => {
      await Notification.requestPermission();
      ask.remove();
    } }, 'Показывать уведомления, когда вкладка свёрнута')
    : null;
  const readAll = h('button', { class: 'link', onclick: async () => {
    const { error, status } = await db.from('notifications').update({ read_at: new Date().toISOString() })
      .eq('user_id', uid).is('read_at', null);
    if (error) toast(explain(error, status), 'error');
    else reload();
  } }, 'Отметить все прочитанными');
  fill(card.body, list, h('p', { class: 'actions' }, readAll, ' ', ask));
  const seen = new Set();
  async function reload() {
    const { data, error, status, stale } = await db.from('notifications').select('id, kind, title, body, read_at, created_at')
      .eq('user_id', uid).order('created_at', { ascending: false }).limit(30);
    card.stale(!!stale);
    if (error) return fill(list, h('li', { class: 'msg error' }, explain(error, status)));
    for (const n of data ?? []) seen.add(n.id);
    fill(list, data?.length
      ? data.map((n) => h('li', { class: n.read_at ? '' : 'unread' }, h('b', {}, n.title), n.body ? ` — ${n.body}` : '', ' ', h('time', {}, when(n.created_at))))
      : h('li', { class: 'muted' }, 'Уведомлений пока нет'));
  }
  function onChange(p) {
    const n = p.new;
    if (p.eventType === 'INSERT' && n && !seen.has(n.id)) {
      toast(n.title);
      if (document.hidden && 'Notification' in globalThis && Notification.permission === 'granted') {
        new Notification(n.title, { body: n.body || undefined, tag: `tu-${n.id}` });
      }
    }
    reload();
  }
  reload();
  return { reload, onChange };
}
