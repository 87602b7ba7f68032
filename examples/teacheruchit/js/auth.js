// Signed-out screens: sign-in, student and teacher sign-up, password reset, and the new password
// after a reset link.
import { h, fill, field, formValues, say, busy, explain, toast, LETTERS } from './ui.js';


/** @param {HTMLElement} root @param {any} db */
export function authScreen(root, db) {
  const tabs = h('nav', { class: 'tabs', role: 'tablist' });
  const body = h('div', { class: 'auth-body' });
  const screens = {
    signin: ['Вход', () => signInForm(db, go)],
    student: ['Я ученик', () => studentForm(db)],
    teacher: ['Я учитель', () => teacherForm(db)],
  };
  function go(name) {
    fill(tabs, Object.entries(screens).map(([k, [label]]) =>
      h('button', { role: 'tab', 'aria-selected': String(k === name), class: k === name ? 'on' : '', onclick: () => go(k) }, label)));
    fill(body, name === 'reset' ? resetForm(db, go) : screens[name][1]());
  }
  fill(root, h('div', { class: 'auth' }, h('p', { class: 'lead' }, 'Школьная платформа: материалы, задания, оценки и чат класса.'), tabs, body));
  go('signin');
}

function signInForm(db, go) {
  const msg = h('p', { class: 'msg', role: 'status' });
  const button = h('button', { type: 'submit' }, 'Войти');
  const form = h('form', { id: 'signin', class: 'form', novalidate: true },
    field('E-mail', h('input', { name: 'email', type: 'email', autocomplete: 'username', required: true })),
    field('Пароль', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    button, msg,
    h('p', {}, h('button', { type: 'button', class: 'link', onclick: () => go('reset') }, 'Забыли пароль?')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = formValues(form);
    if (!v.email || !v.password) return say(msg, 'Введите e-mail и пароль.');
    await busy(button, async () => {
      const { error } = await db.auth.signInWithPassword({ email: v.email, password: v.password });
      if (error) say(msg, explain(error, error.status));
      else say(msg, '', 'ok');
    });
  });
  return form;
}

function resetForm(db, go) {
  const msg = h('p', { class: 'msg', role: 'status' });
  const button = h('button', { type: 'submit' }, 'Прислать ссылку');
  const form = h('form', { class: 'form', novalidate: true },
    h('p', {}, 'Мы пришлём на почту ссылку для нового пароля.'),
    field('E-mail', h('input', { name: 'email', type: 'email', required: true })),
    button, msg,
    h('p', {}, h('button', { type: 'button', class: 'link', onclick: () => go('signin') }, 'Вернуться ко входу')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const { email } = formValues(form);
    if (!/^\S+@\S+\.\S+$/.test(email)) return say(msg, 'Введите e-mail.');
    await busy(button, async () => {
      const { error } = await db.auth.resetPasswordForEmail(email, { redirectTo: location.origin + '/' });
      if (error) say(msg, explain(error, error.status));
      else say(msg, 'Если такой адрес зарегистрирован, письмо со ссылкой уже отправлено.', 'ok');
    });
  });
  return form;
}

/** Checks shared by both sign-up forms; returns a message or ''. */
function checkAccount(v) {
  if (!v.name) return 'Введите имя.';
  if (!/^\S+@\S+\.\S+$/.test(v.email)) return 'Введите правильный e-mail.';
  if ((v.password ?? '').length < 6) return 'Пароль должен быть не короче 6 символов.';
  return '';
}

function studentForm(db) {
  const msg = h('p', { class: 'msg', role: 'status' });
  const button = h('button', { type: 'submit' }, 'Зарегистрироваться');
  const school = h('select', { name: 'school_id', required: true }, h('option', { value: '' }, 'Загрузка списка школ…'));
  const city = h('input', { name: 'city', list: 'cities', placeholder: 'Например, Казань' });
  const cities = h('datalist', { id: 'cities' });
  let schools = [];
  const showSchools = () => {
    const c = city.value.trim().toLowerCase();
    const list = schools.filter((s) => !c || s.city.toLowerCase().startsWith(c));
    fill(school, h('option', { value: '' }, list.length ? 'Выберите школу' : 'Школ не найдено'),
      list.map((s) => h('option', { value: s.id }, `${s.name} (${s.city})`)));
  };
  city.addEventListener('input', showSchools);
  (async () => {
    const { data, error } = await db.from('schools').select('id, name, city').order('city').order('name');
    if (error) {
      fill(school, h('option', { value: '' }, 'Список школ недоступен'));
      return say(msg, explain(error, error.status));
    }
    schools = data ?? [];
    fill(cities, [...new Set(schools.map((s) => s.city))].map((c) => h('option', { value: c })));
    showSchools();
  })();
  const form = h('form', { id: 'signup-student', class: 'form', novalidate: true },
    field('Имя и фамилия', h('input', { name: 'name', autocomplete: 'name', required: true })),
    field('Город', city), cities,
    field('Школа', school),
    h('div', { class: 'row' },
      field('Класс', h('select', { name: 'class', required: true },
        h('option', { value: '' }, '—'), Array.from({ length: 11 }, (_, i) => h('option', { value: String(i + 1) }, String(i + 1))))),
      field('Буква', h('select', { name: 'letter', required: true },
        h('option', { value: '' }, '—'), LETTERS.map((l) => h('option', { value: l }, l))))),
    field('E-mail', h('input', { name: 'email', type: 'email', autocomplete: 'username', required: true })),
    field('Пароль', h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true })),
    button, msg);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = formValues(form);
    const bad = checkAccount(v) || (!v.school_id && 'Выберите школу.') || (!v.class && 'Выберите класс.') || (!v.letter && 'Выберите букву класса.');
    if (bad) return say(msg, bad);
    const s = schools.find((x) => x.id === v.school_id);
    await busy(button, async () => {
      const { error } = await db.auth.signUp({
        email: v.email, password: v.password,
        options: { data: { role: 'student', name: v.name, city: v.city || s?.city, school_id: v.school_id, class: v.class, letter: v.letter } },
      });
      if (error) say(msg, explain(error, error.status));
    });
  });
  return form;
}

function teacherForm(db) {
  const msg = h('p', { class: 'msg', role: 'status' });
  const button = h('button', { type: 'submit' }, 'Зарегистрироваться');
  const form = h('form', { id: 'signup-teacher', class: 'form', novalidate: true },
    field('Код школы (выдаёт администратор школы)', h('input', { name: 'school_code', autocomplete: 'off', required: true, placeholder: 'ABC123' })),
    field('Имя и отчество', h('input', { name: 'name', autocomplete: 'name', required: true })),
    h('div', { class: 'row' },
      field('Основной предмет', h('input', { name: 'primary_subject', required: true })),
      field('Второй предмет', h('input', { name: 'secondary_subject' }))),
    field('Учебное заведение (где учились)', h('input', { name: 'institution' })),
    field('E-mail', h('input', { name: 'email', type: 'email', autocomplete: 'username', required: true })),
    field('Пароль', h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true })),
    button, msg);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = formValues(form);
    const code = String(v.school_code ?? '').toUpperCase();
    const bad = (!/^[A-Z0-9-]{6,32}$/.test(code) && 'Код школы — от 6 латинских букв и цифр.') || checkAccount(v) ||
      (!v.primary_subject && 'Укажите основной предмет.');
    if (bad) return say(msg, bad);
    await busy(button, async () => {
      const { error } = await db.auth.signUp({
        email: v.email, password: v.password,
        options: { data: { role: 'teacher', school_code: code, name: v.name, primary_subject: v.primary_subject,
          secondary_subject: v.secondary_subject || null, institution: v.institution || null } },
      });
      if (!error) return;
      // The sign-up trigger refuses an unknown or expired code: doska answers 400 validation_failed
      // with the trigger's message.
      if (error.code === 'validation_failed' && /school code/.test(error.message)) say(msg, 'Код школы неверный или просрочен. Уточните его у администратора школы.');
      else say(msg, explain(error, error.status));
    });
  });
  return form;
}

/**
 * After a reset link: choose the new password. When doska asks for reauthentication (its secure
 * password change, on by default), a code is mailed and asked for here, as GoTrue's flow has it.
 */
export function newPasswordScreen(root, db, done) {
  const msg = h('p', { class: 'msg', role: 'status' });
  const button = h('button', { type: 'submit' }, 'Сохранить пароль');
  const nonce = field('Код подтверждения из письма', h('input', { name: 'nonce', inputmode: 'numeric', autocomplete: 'one-time-code' }));
  nonce.hidden = true;
  const form = h('form', { id: 'new-password', class: 'form', novalidate: true },
    h('h2', {}, 'Новый пароль'),
    field('Новый пароль', h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true })),
    nonce, button, msg);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = formValues(form);
    if ((v.password ?? '').length < 6) return say(msg, 'Пароль должен быть не короче 6 символов.');
    if (!nonce.hidden && !v.nonce) return say(msg, 'Введите код из письма.');
    await busy(button, async () => {
      const { error } = await db.auth.updateUser(nonce.hidden ? { password: v.password } : { password: v.password, nonce: v.nonce });
      if (error?.code === 'reauthentication_needed') {
        // The SDK has no reauthenticate() yet: GoTrue's GET /reauthenticate mails the code.
        const res = await fetch(`${db.url}/auth/v1/reauthenticate`, { headers: await db.headers() }).catch(() => null);
        if (!res?.ok) return say(msg, 'Не удалось отправить код подтверждения. Повторите попытку.');
        nonce.hidden = false;
        return say(msg, 'Мы отправили на почту код подтверждения — введите его и сохраните пароль ещё раз.', 'ok');
      }
      if (error) return say(msg, error.code === 'reauthentication_not_valid' ? 'Код неверный или устарел.' : explain(error, error.status));
      toast('Пароль изменён.');
      done();
    });
  });
  fill(root, h('div', { class: 'auth' }, form));
}
