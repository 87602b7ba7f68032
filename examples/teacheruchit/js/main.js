// Starts the app: the SDK client, the network/queue bar, and the screen for who is signed in.
import { createClient } from '/sdk/index.js';
import { h, fill, toast, explain, setExpiredHandler } from './ui.js';
import { reloadAll, clearReloaders } from './reload.js';

const app = /** @type {HTMLElement} */ (document.getElementById('app'));

/** The doska this page was served by, and its public (anon) key. */
async function config() {
  const res = await fetch('/sdk/config.json', { cache: 'no-cache' });
  if (!res.ok) throw new Error(`config ${res.status}`);
  const c = await res.json();
  return { url: c.url || location.origin, key: c.anon_key };
}

let cfg;
try {
  cfg = await config();
} catch {
  fill(app, h('p', { class: 'msg error', role: 'alert' }, 'Сервер недоступен. Проверьте подключение к сети и обновите страницу.'));
  throw new Error('TeacherUchit: no config');
}

// A password-reset link lands here with the session in the URL fragment (`type=recovery`); the
// SDK takes the session out of the address bar (and says PASSWORD_RECOVERY), the page asks for
// the new password before anything else. An expired link comes back as `#error=…`.
const frag = new URLSearchParams(location.hash.slice(1));
let recovering = frag.get('type') === 'recovery' && !!frag.get('access_token');

const db = createClient(cfg.url, cfg.key, { offline: true });
if (frag.get('error_description')) {
  history.replaceState(null, '', location.pathname);
  toast('Ссылка недействительна или устарела. Запросите новую.', 'error');
}

// --- the bar under the header: network state and the queue of writes made offline ---
const net = /** @type {HTMLElement} */ (document.getElementById('net'));
let lastPending = 0;
function showNet() {
  const status = navigator.onLine ? db.offline.status : 'offline';
  const pending = db.offline.pending();
  const parts = [];
  if (status === 'offline') parts.push('Нет сети — показаны последние сохранённые данные');
  if (status === 'syncing') parts.push('Отправка…');
  if (pending > 0) parts.push(`Ожидают отправки: ${pending}`);
  net.textContent = parts.join(' · ');
  net.className = status === 'offline' ? 'net offline' : pending ? 'net pending' : 'net';
  net.hidden = parts.length === 0;
  document.body.classList.toggle('is-offline', status === 'offline');
}
db.offline.subscribe(() => {
  showNet();
  refreshAll();
});
addEventListener('online', () => {
  showNet();
  // Nothing queued: the reads shown are the cached ones; fetch them fresh.
  if (db.offline.pending() === 0) reloadAll();
});
addEventListener('offline', () => {
  showNet();
  // Show what is cached, marked «не в сети».
  reloadAll();
});
showNet();

// When the queue of offline writes has drained, every screen reloads what it shows.
function refreshAll() {
  const pending = db.offline.pending();
  if (pending === 0 && lastPending > 0) reloadAll();
  lastPending = pending;
}

// --- screens by who is signed in ---
let current = { uid: null, teardown: () => {} };

/** Set while this tab signs out itself, to tell it from a sign-out that came from elsewhere. */
let signingOut = false;

setExpiredHandler(async () => {
  // Drop the dead session in this tab (and, through the SDK, in the others), and say why where
  // it stays visible: the screen that asked is replaced by the sign-in form.
  if (!current.uid) return;
  toast('Сессия истекла — войдите снова.', 'error');
  signingOut = true;
  await db.auth.signOut({ scope: 'local' });
  signingOut = false;
});

async function show(session) {
  if (recovering && session) {
    if (current.uid === 'recovery') return;
    current.teardown();
    clearReloaders();
    current = { uid: 'recovery', teardown: () => {} };
    const { newPasswordScreen } = await import('./auth.js');
    newPasswordScreen(app, db, () => {
      recovering = false;
      show(session);
    });
    return;
  }
  if (!session) recovering = false;
  const uid = session?.user?.id ?? null;
  if (uid === current.uid && uid !== null) return;
  current.teardown();
  clearReloaders();
  current = { uid, teardown: () => {} };
  const who = /** @type {HTMLElement} */ (document.getElementById('who'));
  fill(who);
  if (!session) {
    const { authScreen } = await import('./auth.js');
    current.teardown = authScreen(app, db) ?? (() => {});
    return;
  }
  const role = session.user.role ?? session.user.app_metadata?.role;
  fill(who, h('span', {}, session.user.email ?? ''), ' ',
    h('button', { class: 'link', id: 'signout', onclick: signOut }, 'Выйти'));
  fill(app, h('p', { class: 'loading', 'aria-busy': 'true' }, 'Загрузка…'));
  try {
    let teardown = () => {};
    if (role === 'teacher' || role === 'school_admin') {
      const { teacherScreen } = await import('./teacher.js');
      teardown = await teacherScreen(app, db, session);
    } else if (role === 'student') {
      const { studentScreen } = await import('./student.js');
      teardown = await studentScreen(app, db, session);
    }
    if (current.uid !== uid) {
      // Signed out (or in as someone else) while this screen was loading: it is not wanted.
      teardown();
      current.uid = undefined; // the newer screen was drawn over: draw it again
      const { data } = await db.auth.getSession();
      return show(data.session);
    }
    current.teardown = teardown;
    if (role !== 'teacher' && role !== 'school_admin' && role !== 'student') {
      fill(app, h('p', { class: 'msg error' }, 'У этой учётной записи нет роли в школе. Обратитесь к администратору школы.'));
    }
    const { offerImport } = await import('./importer.js');
    offerImport(db, session);
  } catch (e) {
    // Signed out while this screen was loading (a refused refresh ends the session while the
    // screen's first reads fail with 401): the sign-in form already drawn stays.
    if (current.uid !== uid) return;
    fill(app, h('p', { class: 'msg error', role: 'alert' }, explain(e)));
  }
}

async function signOut() {
  signingOut = true;
  const { error } = await db.auth.signOut();
  signingOut = false;
  // Offline the session still ends here; the server's copy expires on its own.
  if (error && error.name !== 'NetworkError') toast(explain(error), 'error');
}

db.auth.onAuthStateChange((event, session) => {
  if (event === 'TOKEN_REFRESHED' || event === 'USER_UPDATED') return;
  if (event === 'PASSWORD_RECOVERY') recovering = true;
  if (event === 'SIGNED_OUT' && !signingOut && current.uid) {
    toast('Сеанс завершён (выход в другой вкладке или истёк срок). Войдите снова.');
  }
  show(session);
});
