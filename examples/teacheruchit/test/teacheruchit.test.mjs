// TeacherUchit's "done when" scenario in headless Chromium against a live doska: a school from its
// registration by the operator to a live lesson — codes, sign-ups, materials, assignments, grades,
// notifications, chat, presence, offline grades, the legacy import and sign-out across tabs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startApp, launchBrowser, registerSchool, rows, openPage, signIn, shot, appDir, lastMail } from './helpers.mjs';

const PASSWORD = 'parol-dlya-testa';
const TEACHER = { email: 'ivanova@school14.ru', name: 'Марина Петровна Иванова' };
const STUDENT = { email: 'petya@mail.ru', name: 'Петя Сидоров' };
const OTHER = { email: 'vasya@mail.ru', name: 'Вася Другой' };

let doska, browser;
const ctx = {};
const VIEW = { locale: 'ru-RU', timezoneId: 'Europe/Moscow', viewport: { width: 1280, height: 900 } };

before(async () => {
  doska = await startApp();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await doska?.stop();
});

/** Waits until the locator's text contains `text`. */
const sees = (page, selector, text) => page.locator(selector, { hasText: text }).first().waitFor();

test('first visit: the sign-in form, nothing logged, no failing request, ≤ 100 KB compressed', async (t) => {
  const context = await browser.newContext(VIEW);
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => problems.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => r.status() >= 400 && problems.push(`${r.status()}: ${r.url()}`));
  // The browser's own network log: bytes on the wire per request (headers + compressed body).
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const wire = new Map();
  cdp.on('Network.responseReceived', (e) => wire.set(e.requestId, { url: e.response.url, encoding: e.response.headers['content-encoding'] ?? e.response.headers['Content-Encoding'] }));
  cdp.on('Network.loadingFinished', (e) => wire.has(e.requestId) && (wire.get(e.requestId).bytes = e.encodedDataLength));
  await page.goto(doska.url + '/');
  await page.locator('#signin input[type=email]').waitFor();
  await page.locator('#signin input[type=password]').waitFor();
  await page.waitForLoadState('networkidle');
  const total = [...wire.values()].reduce((n, r) => n + (r.bytes ?? 0), 0);
  const urls = [...wire.values()].map((r) => `${r.url} ${r.bytes} ${r.encoding ?? 'identity'}`);
  assert.ok(wire.size > 3, `the page, its script and the SDK were loaded:\n${urls.join('\n')}`);
  assert.ok(urls.some((u) => u.includes('/sdk/index.js')), 'the SDK is part of the first load');
  assert.ok(urls.some((u) => u.includes('/sdk/config.json')), 'the page asks doska for its key');
  for (const r of wire.values()) {
    if (/\.(js|css|html)$|\/$/.test(new URL(r.url).pathname)) assert.match(r.encoding ?? '', /br|gzip/, `${r.url} is compressed`);
  }
  t.diagnostic(`first load: ${wire.size} requests, ${total} bytes on the wire`);
  assert.ok(total <= 100 * 1024, `first load transferred ${total} bytes (budget 102400):\n${urls.join('\n')}`);
  assert.deepEqual(problems, []);
  await context.close();
});

test('the operator registers a school and its admin; the admin makes a code', async () => {
  ctx.school = await registerSchool(doska, { name: 'Школа №14', city: 'Казань', adminEmail: 'director@school14.ru', adminPassword: PASSWORD, adminName: 'Ольга Директорова' });
  ctx.otherSchool = await registerSchool(doska, { name: 'Лицей №2', city: 'Казань', adminEmail: 'director@lyceum2.ru', adminPassword: PASSWORD, adminName: 'Иван Лицеев' });
  const context = await browser.newContext(VIEW);
  const { page, problems } = await openPage(context, doska.url + '/');
  await signIn(page, 'director@school14.ru', PASSWORD);
  await page.locator('#admin #code-form').waitFor();
  // `doska school create` made a first code; the admin makes another.
  await sees(page, '#code-list', ctx.school.school_code);
  await page.click('#code-form button[type=submit]');
  const codes = page.locator('#code-list .school-code');
  await page.waitForFunction(() => document.querySelectorAll('#code-list .school-code').length === 2);
  ctx.code = (await codes.allTextContents()).map((c) => c.trim()).find((c) => c !== ctx.school.school_code);
  assert.match(ctx.code, /^[A-Z0-9]{8}$/);
  const [saved] = await rows(doska, `school_codes?code=eq.${ctx.code}`);
  assert.equal(saved.school_id, ctx.school.school_id);
  await sees(page, '#staff-list', 'Ольга Директорова');
  assert.deepEqual(problems, []);
  ctx.admin = { context, page };
});

test('bad input: a wrong school code is refused with a message; a short password before sending', async () => {
  const context = await browser.newContext(VIEW);
  const { page } = await openPage(context, doska.url + '/');
  await page.click('.tabs button:has-text("Я учитель")');
  const form = page.locator('#signup-teacher');
  await form.locator('[name=school_code]').fill('NOSUCH99');
  await form.locator('[name=name]').fill('Кто-то');
  await form.locator('[name=primary_subject]').fill('Физика');
  await form.locator('[name=email]').fill('nobody@school14.ru');
  await form.locator('[name=password]').fill('123');
  await form.locator('button[type=submit]').click();
  await sees(page, '#signup-teacher .msg', 'не короче 6');
  await form.locator('[name=password]').fill(PASSWORD);
  await form.locator('button[type=submit]').click();
  await sees(page, '#signup-teacher .msg', 'Код школы неверный');
  assert.deepEqual(await rows(doska, 'teacher_profiles?name=eq.Кто-то'), []);
  await context.close();
});

test('a teacher signs up with the code and a student picks the school, in two browser contexts', async () => {
  const tContext = await browser.newContext(VIEW);
  const { page: teacher, problems: tProblems } = await openPage(tContext, doska.url + '/');
  await teacher.click('.tabs button:has-text("Я учитель")');
  const tf = teacher.locator('#signup-teacher');
  await tf.locator('[name=school_code]').fill(ctx.code.toLowerCase());
  await tf.locator('[name=name]').fill(TEACHER.name);
  await tf.locator('[name=primary_subject]').fill('Математика');
  await tf.locator('[name=secondary_subject]').fill('Информатика');
  await tf.locator('[name=institution]').fill('КФУ');
  await tf.locator('[name=email]').fill(TEACHER.email);
  await tf.locator('[name=password]').fill(PASSWORD);
  await tf.locator('button[type=submit]').click();
  await teacher.locator('#teacher-dashboard').waitFor();

  const sContext = await browser.newContext(VIEW);
  const { page: student, problems: sProblems } = await openPage(sContext, doska.url + '/');
  await signUpStudent(student, STUDENT, 'Школа №14', '7', 'Б');
  await student.locator('#student-dashboard').waitFor();
  await sees(student, '.page-head', 'Ученик 7Б · Школа №14, Казань');

  const [tp] = await rows(doska, `teacher_profiles?name=eq.${encodeURIComponent(TEACHER.name)}`);
  assert.equal(tp.school_id, ctx.school.school_id);
  const [sp] = await rows(doska, `student_profiles?name=eq.${encodeURIComponent(STUDENT.name)}`);
  assert.deepEqual([sp.school_id, sp.class, sp.letter], [ctx.school.school_id, 7, 'Б']);
  ctx.studentId = sp.user_id;

  // The teacher works with 7Б.
  await teacher.selectOption('#class-number', '7');
  await teacher.selectOption('#class-letter', 'Б');
  assert.deepEqual(tProblems, []);
  assert.deepEqual(sProblems, []);
  Object.assign(ctx, { tContext, teacher, sContext, student, tProblems, sProblems });

  // A student of another school's 7Б, signed in beside them.
  const oContext = await browser.newContext(VIEW);
  const { page: other } = await openPage(oContext, doska.url + '/');
  await signUpStudent(other, OTHER, 'Лицей №2', '7', 'Б');
  await other.locator('#student-dashboard').waitFor();
  Object.assign(ctx, { oContext, other });
});

async function signUpStudent(page, who, school, cls, letter) {
  await page.click('.tabs button:has-text("Я ученик")');
  const f = page.locator('#signup-student');
  await f.locator('[name=name]').fill(who.name);
  await f.locator('[name=city]').fill('Каз');
  await f.locator(`[name=school_id] option:has-text("${school}")`).waitFor({ state: 'attached' });
  await f.locator('[name=school_id]').selectOption({ label: `${school} (Казань)` });
  await f.locator('[name=class]').selectOption(cls);
  await f.locator('[name=letter]').selectOption(letter);
  await f.locator('[name=email]').fill(who.email);
  await f.locator('[name=password]').fill(PASSWORD);
  await f.locator('button[type=submit]').click();
}

test('the teacher uploads a material and posts an assignment: the student sees both live, with notifications', async () => {
  const { teacher, student, sContext } = ctx;
  // The student allowed notifications and switched to another tab: the page is hidden, so the
  // browser's Notification API shows what arrives (each one recorded here).
  await sContext.grantPermissions(['notifications'], { origin: doska.url });
  await student.evaluate(() => {
    window.shown = [];
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    const Real = window.Notification;
    window.Notification = class extends Real {
      constructor(title, options) {
        super(title, options);
        window.shown.push(title);
      }
    };
  });
  const pdf = Buffer.from('%PDF-1.4\n% Дроби, урок 2\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n');
  ctx.pdf = pdf;
  const mf = teacher.locator('#material-form');
  // A file the materials bucket refuses is stopped before the upload, with the reason.
  await mf.locator('[name=title]').fill('Не тот файл');
  await mf.locator('[name=file]').setInputFiles({ name: 'setup.exe', mimeType: 'application/x-msdownload', buffer: Buffer.from('MZ') });
  await mf.locator('button[type=submit]').click();
  await sees(teacher, '#material-form .msg', 'Такой тип файла не принимается');
  await mf.locator('[name=title]').fill('Дроби: урок 2');
  await mf.locator('[name=description]').fill('Презентация к уроку');
  await mf.locator('[name=status]').selectOption('published');
  await mf.locator('[name=file]').setInputFiles({ name: 'drobi-2.pdf', mimeType: 'application/pdf', buffer: pdf });
  await mf.locator('button[type=submit]').click();
  await sees(teacher, '#material-form .msg', 'Материал добавлен');
  await sees(student, '#material-list', 'Дроби: урок 2');

  const af = teacher.locator('#assignment-form');
  await af.locator('[name=title]').fill('Упражнения 110–115');
  await af.locator('[name=due_date]').fill('2030-05-20T18:00');
  await af.locator('button[type=submit]').click();
  await sees(teacher, '#assignment-form .msg', 'Задание выдано 7Б');
  await sees(student, '#assignment-list', 'Упражнения 110–115');
  await sees(student, '#notifications', 'Упражнения 110–115');
  await sees(student, '#notifications', 'Дроби: урок 2');
  const shown = await student.evaluate(() => window.shown);
  assert.deepEqual(shown.sort(), ['Новое задание: Упражнения 110–115', 'Новый материал: Дроби: урок 2']);
  await student.evaluate(() => delete document.hidden);
  await student.waitForLoadState('networkidle');
  await shot(student, 'student-dashboard');
});

test('the student downloads the file through a signed URL', async () => {
  const { student } = ctx;
  const [download] = await Promise.all([
    student.waitForEvent('download'),
    student.locator('#material-list li', { hasText: 'Дроби: урок 2' }).locator('button:has-text("Скачать файл")').click(),
  ]);
  assert.equal(download.suggestedFilename(), 'drobi-2.pdf');
  const bytes = await readFile(await download.path());
  assert.deepEqual(bytes, ctx.pdf);
});

test('the teacher grades and the student sees the grade live', async () => {
  const { teacher, student } = ctx;
  await grade(teacher, STUDENT.name, 'Упражнения 110–115', '5', 'Отлично, без ошибок');
  await sees(teacher, '#grade-form .msg', 'Оценка поставлена');
  await sees(student, '#grade-list', 'Отлично, без ошибок');
  assert.equal(await student.locator('#grade-list .grade-mark').first().textContent(), '5');
  // Outside the school's 1–5 scale: refused before sending.
  await grade(teacher, STUDENT.name, 'Упражнения 110–115', '7', '');
  await sees(teacher, '#grade-form .msg', 'от 1 до 5');
  await teacher.fill('#grade-form [name=grade]', '');
});

async function grade(page, studentName, assignment, value, comment) {
  const f = page.locator('#grade-form');
  await f.locator(`[name=student_id] option:has-text("${studentName}")`).waitFor({ state: 'attached' });
  await f.locator(`[name=assignment_id] option:has-text("${assignment}")`).waitFor({ state: 'attached' });
  await f.locator('[name=student_id]').selectOption({ label: studentName });
  await f.locator('[name=assignment_id]').selectOption({ label: assignment });
  await f.locator('[name=grade]').fill(value);
  await f.locator('[name=comment]').fill(comment);
  await f.locator('button[type=submit]').click();
}

test('both see each other online and exchange chat messages', async () => {
  const { teacher, student } = ctx;
  await sees(teacher, '#online', STUDENT.name);
  await sees(student, '#online', TEACHER.name);
  await teacher.fill('#chat input[name=body]', 'Здравствуйте, 7Б! Завтра контрольная.');
  await teacher.click('#chat button[type=submit]');
  await sees(student, '#chat .chat-list', 'Завтра контрольная');
  await student.fill('#chat input[name=body]', 'Спасибо, готовимся!');
  await sees(teacher, '#chat .typing', `${STUDENT.name} печатает`);
  await student.click('#chat button[type=submit]');
  await sees(teacher, '#chat .chat-list', 'Спасибо, готовимся!');
  await teacher.waitForLoadState('networkidle');
  await shot(teacher, 'teacher-dashboard');
});

test('offline: two grades and a message wait in the queue and reach the student exactly once', async () => {
  const { teacher, student, tContext } = ctx;
  for (const title of ['Задача 1 (дома)', 'Задача 2 (дома)']) {
    const af = teacher.locator('#assignment-form');
    await af.locator('[name=title]').fill(title);
    await af.locator('button[type=submit]').click();
    await sees(teacher, '#assignment-form .msg', 'Задание выдано 7Б');
    await sees(student, '#assignment-list', title);
  }
  await tContext.setOffline(true);
  await sees(teacher, '#net', 'Нет сети');
  await grade(teacher, STUDENT.name, 'Задача 1 (дома)', '4', 'офлайн-оценка 1');
  await sees(teacher, '#grade-form .msg', 'будет отправлена');
  await grade(teacher, STUDENT.name, 'Задача 2 (дома)', '3', 'офлайн-оценка 2');
  await sees(teacher, '#waiting-grades', 'Задача 2 (дома)');
  await teacher.fill('#chat input[name=body]', 'Сообщение без сети');
  await teacher.click('#chat button[type=submit]');
  await sees(teacher, '#chat .waiting', 'Сообщение без сети');
  await sees(teacher, '#net', 'Ожидают отправки: 3');
  await sees(teacher, '#grades .stale', 'не в сети');
  assert.equal((await rows(doska, `grades?student_id=eq.${ctx.studentId}`)).length, 1, 'nothing reached the server while offline');
  await shot(teacher, 'offline');

  await tContext.setOffline(false);
  await sees(student, '#grade-list', 'офлайн-оценка 1');
  await sees(student, '#grade-list', 'офлайн-оценка 2');
  await sees(student, '#chat .chat-list', 'Сообщение без сети');
  await teacher.locator('#net').waitFor({ state: 'hidden' });
  const grades = await rows(doska, `grades?student_id=eq.${ctx.studentId}&order=created_at`);
  assert.deepEqual(grades.map((g) => g.comment), ['Отлично, без ошибок', 'офлайн-оценка 1', 'офлайн-оценка 2']);
  const messages = await rows(doska, `class_messages?body=eq.${encodeURIComponent('Сообщение без сети')}`);
  assert.equal(messages.length, 1);
  assert.equal(await student.locator('#grade-list li').count(), 3);
  assert.equal(await student.locator('#chat .chat-list li', { hasText: 'Сообщение без сети' }).count(), 1);
});

test('a student of another school sees none of it', async () => {
  const { other } = ctx;
  await sees(other, '#material-list', 'Материалов пока нет');
  await sees(other, '#assignment-list', 'Заданий пока нет');
  await sees(other, '#grade-list', 'Оценок пока нет');
  await sees(other, '#notifications', 'Уведомлений пока нет');
  assert.equal(await other.locator('#chat .chat-list li').count(), 0);
  const online = await other.locator('#online').textContent();
  assert.ok(!online.includes(TEACHER.name) && !online.includes(STUDENT.name), online);
  await ctx.oContext.close();
});

test('a legacy localStorage dump imports on first sign-in; a second import changes nothing', async () => {
  const dump = JSON.parse(await readFile(join(appDir, 'legacy/sample-dump.json'), 'utf8'));
  const context = await browser.newContext(VIEW);
  await context.addInitScript((d) => {
    for (const [k, v] of Object.entries(d)) if (localStorage.getItem(k) === null) localStorage.setItem(k, JSON.stringify(v));
  }, dump);
  const { page, problems } = await openPage(context, doska.url + '/');
  await signIn(page, TEACHER.email, PASSWORD);
  await page.locator('#import-dialog').waitFor();
  await page.click('#import-run');
  await page.locator('#import-imported').waitFor();
  const imported = await page.locator('#import-imported').textContent();
  assert.match(imported, /Материалы: 2/);
  assert.match(imported, /Задания: 1/);
  assert.match(imported, /Оценки: 1/);
  const notImported = await page.locator('#import-problems').textContent();
  for (const what of ['Пользователи', 'Правописание', 'Диктант', 'Оля Кузнецова']) assert.ok(notImported.includes(what), `${what} listed in: ${notImported}`);
  await shot(page, 'import-dialog', false);
  const count = async () => ({
    materials: (await rows(doska, 'materials?select=id')).length,
    assignments: (await rows(doska, 'assignments?select=id')).length,
    grades: (await rows(doska, 'grades?select=id')).length,
  });
  const first = await count();
  const [drobi] = await rows(doska, `materials?title=eq.${encodeURIComponent('Дроби: конспект')}`);
  assert.equal(drobi.status, 'published');
  assert.match(drobi.file_path, /^materials\/.+\/drobi\.txt$/);
  await page.click('#import-later');

  await page.click('#import-open');
  await page.click('#import-run');
  await page.locator('#import-imported').waitFor();
  assert.deepEqual(await count(), first, 'a second import adds nothing');
  await page.click('#import-later');
  // The student sees the imported grade of their class.
  await sees(ctx.student, '#grade-list', 'Аккуратнее с сокращением');
  assert.deepEqual(problems, []);
  await context.close();
});

test('two tabs of one teacher stay in sync; signing out in one signs out the other', async () => {
  const { tContext, teacher } = ctx;
  const second = await tContext.newPage();
  await second.goto(doska.url + '/');
  await second.locator('#teacher-dashboard').waitFor();
  // A change made in one tab shows in the other.
  await teacher.fill('#material-form [name=title]', 'План на четверть');
  await teacher.click('#material-form button[type=submit]');
  await sees(second, '#material-list', 'План на четверть');
  await teacher.click('#signout');
  await teacher.locator('#signin').waitFor();
  await second.locator('#signin').waitFor();
  assert.deepEqual(ctx.tProblems.filter((p) => !/ERR_INTERNET_DISCONNECTED|net::/.test(p)), []);
  await tContext.close();
  await ctx.sContext.close();
  await ctx.admin.context.close();
});

test('password reset by mail: the link from the outbox leads to a new password', async () => {
  const context = await browser.newContext(VIEW);
  const { page, problems } = await openPage(context, doska.url + '/');
  await page.click('button:has-text("Забыли пароль?")');
  await page.fill('input[name=email]', OTHER.email);
  await page.click('button:has-text("Прислать ссылку")');
  await sees(page, '.msg', 'письмо со ссылкой');
  const mail = await lastMail(doska, OTHER.email, 'recovery');
  const link = /https?:\/\/[^\s"'<>]+\/auth\/v1\/verify[^\s"'<>]*/.exec(mail.replace(/&amp;/g, '&'))?.[0];
  assert.ok(link, `a verify link in: ${mail}`);
  // The link names doska's listen address (port 0 here): the operator's external URL.
  const url = new URL(link);
  await page.goto(doska.url + url.pathname + url.search);
  await page.locator('#new-password').waitFor();
  assert.ok(!page.url().includes('access_token'), 'the tokens are taken out of the address bar');
  // The session the recovery link opened proves the mailbox: no other code is asked for.
  await page.fill('#new-password input[name=password]', 'novyi-parol-2');
  await page.click('#new-password button[type=submit]');
  await page.locator('#student-dashboard').waitFor();
  await page.click('#signout');
  await signIn(page, OTHER.email, PASSWORD);
  await sees(page, '#signin .msg', 'Неверный e-mail или пароль');
  await signIn(page, OTHER.email, 'novyi-parol-2');
  await page.locator('#student-dashboard').waitFor();
  // The refused sign-in with the old password is the only failing request; Chromium logs it to
  // the console too.
  const expected = (p) => /^400: POST .*\/auth\/v1\/token/.test(p) || /Failed to load resource: .* 400/.test(p);
  assert.equal(problems.filter(expected).length, 2, problems.join('\n'));
  assert.deepEqual(problems.filter((p) => !expected(p)), []);
  await context.close();
});

test('a session ended elsewhere sends the user back to sign in, saying why', async () => {
  const context = await browser.newContext(VIEW);
  const { page, problems } = await openPage(context, doska.url + '/');
  await signIn(page, STUDENT.email, PASSWORD);
  await page.locator('#student-dashboard').waitFor();
  // Signed out everywhere (another device, or the admin), and this tab's token is due for refresh.
  const session = await page.evaluate(() => {
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      if (/^sb-.*-auth-token$/.test(k)) return JSON.parse(localStorage.getItem(k));
    }
    return null;
  });
  assert.ok(session?.access_token, 'the session is kept in localStorage');
  const out = await fetch(`${doska.url}/auth/v1/logout?scope=global`, {
    method: 'POST', headers: { apikey: doska.anonKey, Authorization: `Bearer ${session.access_token}` },
  });
  assert.equal(out.status, 204);
  await page.evaluate(() => {
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      if (/^sb-.*-auth-token$/.test(k)) {
        const s = JSON.parse(localStorage.getItem(k));
        localStorage.setItem(k, JSON.stringify({ ...s, expires_at: Math.floor(Date.now() / 1000) - 60 }));
      }
    }
  });
  await page.reload();
  await page.locator('#signin').waitFor();
  await sees(page, '#toast', /войдите снова/i);
  // What fails is expected: the refused refresh (400), and a read the page started with the old
  // session that went out as anon once the SDK dropped it (401, PostgREST's answer to anon without
  // a grant) — which is what made the page say «Сессия истекла — войдите снова»; Chromium logs each.
  // Reads of the old screen still in flight when the session ends are aborted (ERR_ABORTED) by its
  // teardown; which of these happen depends on timing.
  const expected = (p) => /^400: POST .*\/auth\/v1\/token\?grant_type=refresh_token|^401: GET .*\/rest\/v1\/|Failed to load resource: .* (400|401)|^failed: GET .*\/rest\/v1\/.* net::ERR_ABORTED$/.test(p);
  assert.deepEqual(problems.filter((p) => !expected(p)), []);
  await context.close();
});
