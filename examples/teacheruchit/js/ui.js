// DOM helpers and the one place that turns an SDK error into a sentence a teacher understands.

/**
 * Makes an element: h('button', {class: 'x', onclick}, 'text', child…). Attributes starting with
 * "on" become listeners; `null`/`false` children and attributes are skipped.
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...any} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    // An input's value attribute is also what form.reset() goes back to.
    else if (k === 'value' && tag !== 'input') /** @type {any} */ (el).value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  add(el, children);
  return el;
}

/** A labelled form field. */
export function field(label, input) {
  return h('label', { class: 'field' }, h('span', {}, label), input);
}

/** Values of a form's named fields, trimmed. */
export function formValues(form) {
  const out = {};
  for (const [k, v] of new FormData(form)) out[k] = typeof v === 'string' ? v.trim() : v;
  return out;
}

const toastBox = () => document.getElementById('toast');

/** A short message in the corner; `kind` is 'ok' or 'error'. */
export function toast(text, kind = 'ok') {
  const box = toastBox();
  if (!box) return;
  const el = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  box.append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000);
}

/** Writes a message into a form's status line (errors stay until the next try). */
export function say(el, text, kind = 'error') {
  el.className = `msg ${kind}`;
  el.textContent = text;
}

/** Runs `work` with a button disabled and a "…" label: every request shows it is loading. */
export async function busy(button, work) {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = 'Подождите…';
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.textContent = label;
    button.removeAttribute('aria-busy');
  }
}

const RU_DATE = new Intl.DateTimeFormat('ru-RU', { day: 'numeric', month: 'long', hour: '2-digit', minute: '2-digit' });
export const when = (iso) => (iso ? RU_DATE.format(new Date(iso)) : '');

/** Called when the server says the session is no longer valid (set by main.js). */
let onExpired = () => {};
export function setExpiredHandler(fn) {
  onExpired = fn;
}

/**
 * The sentence for an SDK error value (`{message, code, status, name}` of REST, auth or storage).
 * Session expiry also signs the page out, so the next screen is the sign-in form.
 * @param {any} error
 * @param {number} [status]
 */
export function explain(error, status) {
  if (!error) return '';
  const code = String(error.code ?? error.error_code ?? '');
  const st = Number(status ?? error.status ?? error.statusCode ?? 0);
  const msg = String(error.message ?? error.msg ?? '');
  if (error.name === 'NetworkError' || (st === 0 && /network|fetch/i.test(msg))) {
    return 'Нет связи с сервером. Проверьте подключение к сети и повторите.';
  }
  if (st === 401 || code === 'PGRST301' || code === 'PGRST303' || /jwt expired|session_not_found|refresh_token/i.test(code + msg)) {
    onExpired();
    return 'Сессия истекла — войдите снова.';
  }
  if (code === 'invalid_credentials') return 'Неверный e-mail или пароль.';
  if (code === 'user_already_exists' || code === 'email_exists') return 'Пользователь с таким e-mail уже зарегистрирован.';
  if (code === 'weak_password' || /password.*(short|least)/i.test(msg)) return 'Пароль слишком короткий (не меньше 6 символов).';
  if (code === 'validation_failed' || code === 'email_address_invalid') return 'Проверьте e-mail и пароль.';
  if (code === 'over_request_rate_limit' || code === 'over_email_send_rate_limit' || st === 429) {
    return 'Слишком много попыток. Подождите несколько минут.';
  }
  if (code === '42501' || st === 403) return 'Недостаточно прав для этого действия.';
  if (code === '23505' || st === 409) return 'Такая запись уже есть.';
  if (code === '23514' || code === '22023' || code === '23502' || code === '22P02' || st === 400 || st === 422) {
    const scale = /outside the school's scale (\d+)\.\.(\d+)/.exec(msg);
    if (scale) return `Оценка должна быть от ${scale[1]} до ${scale[2]}.`;
    if (/not in the class/.test(msg)) return 'Этот ученик не учится в классе, для которого задание.';
    if (/mime|content type|type .* not allowed/i.test(msg)) return 'Файлы такого типа загружать нельзя.';
    if (/too large|size|exceed/i.test(msg) || st === 413) return 'Файл слишком большой.';
    return `Данные не приняты: ${msg || 'проверьте поля формы'}.`;
  }
  if (st === 413 || /too large|exceeds/i.test(msg)) return 'Файл слишком большой.';
  if (st === 404) return 'Не найдено: запись удалена или недоступна.';
  if (st >= 500) return 'Ошибка на сервере. Повторите попытку позже.';
  return msg ? `Ошибка: ${msg}` : 'Что-то пошло не так. Повторите попытку.';
}

/** Class letters the sign-up and class pickers offer (the schema allows any capital letter). */
export const LETTERS = 'АБВГДЕЖЗИКЛМН'.split('');

/** The data of an SDK result, or throws its error (with the HTTP status) for the screen to show. */
export function need(res) {
  if (res.error) throw Object.assign(res.error, { status: res.status });
  return res.data;
}

/** "Загрузка…" placeholder for a section's body. */
export const loading = () => h('p', { class: 'loading', 'aria-busy': 'true' }, 'Загрузка…');

/** A section card with a title, an optional "не в сети" mark and a body. */
export function card(title, id) {
  const body = h('div', { class: 'body' }, loading());
  const mark = h('span', { class: 'stale', hidden: true }, 'не в сети');
  const el = h('section', { class: 'card', id }, h('h2', {}, title, ' ', mark), body);
  return {
    el,
    body,
    /** Marks the card as showing cached data (true) or fresh (false). */
    stale(on) {
      mark.hidden = !on;
    },
  };
}
