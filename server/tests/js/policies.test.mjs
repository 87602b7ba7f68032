// TeacherUchit's schema and policy files as the app will meet them, through @supabase/supabase-js
// against a live doska: sign-up decides the role (teacher only with a school code), the policies
// decide what each role reads and writes (tables, files, private channels), and an edit of a policy
// file is in force without a restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, readFile, writeFile, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { startDoska, repoRoot } from './harness.mjs';

const SCHOOL = 'a0000000-0000-0000-0000-00000000000a';
let doska;
let policies;

function client(key) {
  return createClient(doska.url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: WebSocket },
  });
}

function claims(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
}

before(async () => {
  // A copy of the policies, so the hot-reload test can edit it.
  policies = await mkdtemp(join(tmpdir(), 'doska-js-policies-'));
  await cp(join(repoRoot, 'policies'), policies, { recursive: true });
  doska = await startDoska({ migrations: join(repoRoot, 'migrations'), policies });
  const service = client(doska.serviceKey);
  let r = await service.from('schools').insert({ id: SCHOOL, name: 'Школа №1', city: 'Казань' });
  assert.equal(r.error, null);
  r = await service.from('school_codes').insert({ code: 'ALPHA-2024', school_id: SCHOOL });
  assert.equal(r.error, null);
});

after(async () => {
  await doska?.stop();
});

test('sign-up decides the role; the policies decide what each role sees and writes', async () => {
  const impostor = client(doska.anonKey);
  const bad = await impostor.auth.signUp({
    email: 'impostor@a.test',
    password: 'correct-horse-battery',
    options: { data: { role: 'teacher', school_code: 'NOPE-0000' } },
  });
  assert.notEqual(bad.error, null);

  const teacher = client(doska.anonKey);
  const t = await teacher.auth.signUp({
    email: 'teacher@a.test',
    password: 'correct-horse-battery',
    options: { data: { role: 'teacher', name: 'Учитель', school_code: 'alpha-2024' } },
  });
  assert.equal(t.error, null);
  assert.equal(claims(t.data.session.access_token).role, 'teacher');

  const student = client(doska.anonKey);
  const s = await student.auth.signUp({
    email: 'anna@a.test',
    password: 'correct-horse-battery',
    options: { data: { name: 'Анна', school_id: SCHOOL, class: 7, letter: 'Б' } },
  });
  assert.equal(s.error, null);
  assert.equal(claims(s.data.session.access_token).role, 'student');

  const added = await teacher
    .from('materials')
    .insert([
      { title: 'Дроби', subject: 'математика', status: 'published' },
      { title: 'Черновик', subject: 'математика', status: 'draft' },
    ])
    .select('title, status');
  assert.equal(added.error, null);
  assert.equal(added.data.length, 2);

  const seen = await student.from('materials').select('title').order('title');
  assert.deepEqual(seen, { ...seen, error: null, data: [{ title: 'Дроби' }] });

  const denied = await student.from('materials').insert({ title: 'Шпаргалка', subject: 'математика' });
  assert.equal(denied.error?.code, '42501');

  const profile = await student.from('student_profiles').select('name, class, letter').single();
  assert.deepEqual(profile.data, { name: 'Анна', class: 7, letter: 'Б' });
  const move = await student.from('student_profiles').update({ class: 11 }).eq('name', 'Анна');
  assert.equal(move.error?.code, '42501');

  const anonymous = await client(doska.anonKey).from('materials').select('title');
  assert.equal(anonymous.error?.code, '42501');
});

async function signedIn(email) {
  const c = client(doska.anonKey);
  const r = await c.auth.signInWithPassword({ email, password: 'correct-horse-battery' });
  assert.equal(r.error, null);
  return { c, id: r.data.user.id };
}

// Subscribes to a private channel; resolves with the status it ends in (SUBSCRIBED or an error).
function joinPrivate(c, topic) {
  return new Promise((resolve) => {
    const ch = c.channel(topic, { config: { private: true } });
    const timer = setTimeout(() => resolve('TIMED_OUT'), 10_000);
    ch.subscribe((status) => {
      if (status === 'SUBSCRIBED' || status === 'CHANNEL_ERROR') {
        clearTimeout(timer);
        c.removeChannel(ch).finally(() => resolve(status));
      }
    });
  });
}

test("TeacherUchit's storage and channel rules (policies/storage.toml, realtime.toml) over supabase-js", async () => {
  const boris = client(doska.anonKey);
  const b = await boris.auth.signUp({
    email: 'boris@a.test',
    password: 'correct-horse-battery',
    options: { data: { name: 'Борис', school_id: SCHOOL, class: 8, letter: 'А' } },
  });
  assert.equal(b.error, null);
  const borisId = b.data.user.id;
  const teacher = (await signedIn('teacher@a.test')).c;
  const { c: anna, id: annaId } = await signedIn('anna@a.test');

  // Materials: the school's teachers upload; its students read; students cannot upload.
  const lesson = `${SCHOOL}/урок 1/дроби.pdf`;
  let r = await teacher.storage.from('materials').upload(lesson, Buffer.from('%PDF-1.4 дроби'), { contentType: 'application/pdf' });
  assert.equal(r.error, null);
  r = await anna.storage.from('materials').download(lesson);
  assert.equal(r.error, null);
  assert.equal(await r.data.text(), '%PDF-1.4 дроби');
  r = await anna.storage.from('materials').upload(`${SCHOOL}/шпаргалка.pdf`, Buffer.from('x'), { contentType: 'application/pdf' });
  assert.equal(r.error?.statusCode, '403');
  // The bucket's MIME types (from the file) hold too.
  r = await teacher.storage.from('materials').upload(`${SCHOOL}/run.exe`, Buffer.from('MZ'), { contentType: 'application/x-msdownload' });
  assert.equal(r.error?.statusCode, '415');

  // Submissions: private to the student and her school's teachers.
  const essay = `${annaId}/essay.txt`;
  r = await anna.storage.from('submissions').upload(essay, Buffer.from('моё эссе'), { contentType: 'text/plain' });
  assert.equal(r.error, null);
  r = await boris.storage.from('submissions').download(essay);
  assert.equal(r.error?.statusCode, '404');
  r = await boris.storage.from('submissions').upload(essay, Buffer.from('подмена'), { upsert: true, contentType: 'text/plain' });
  assert.equal(r.error?.statusCode, '403');
  r = await boris.storage.from('submissions').upload(`${annaId}/fake.txt`, Buffer.from('x'), { contentType: 'text/plain' });
  assert.equal(r.error?.statusCode, '403');
  r = await teacher.storage.from('submissions').download(essay);
  assert.equal(await r.data.text(), 'моё эссе');
  r = await anna.storage.from('submissions').update(essay, Buffer.from('моё эссе v2'), { contentType: 'text/plain' });
  assert.equal(r.error, null);

  // Avatars: public; each user writes only their own.
  r = await boris.storage.from('avatars').upload(`${borisId}.png`, Buffer.from('PNG'), { contentType: 'image/png' });
  assert.equal(r.error, null);
  r = await anna.storage.from('avatars').upload(`${borisId}.png`, Buffer.from('X'), { upsert: true, contentType: 'image/png' });
  assert.equal(r.error?.statusCode, '403');
  const res = await fetch(client(doska.anonKey).storage.from('avatars').getPublicUrl(`${borisId}.png`).data.publicUrl);
  assert.equal(await res.text(), 'PNG');

  // Private channels: a school's members join its channel; a user's inbox is theirs alone.
  assert.equal(await joinPrivate(anna, `school:${SCHOOL}`), 'SUBSCRIBED');
  assert.equal(await joinPrivate(anna, `user:${annaId}`), 'SUBSCRIBED');
  assert.equal(await joinPrivate(boris, `user:${annaId}`), 'CHANNEL_ERROR');
  assert.equal(await joinPrivate(boris, `school:b0000000-0000-0000-0000-00000000000b`), 'CHANNEL_ERROR');
});

test('an edited policy file is in force without a restart', async () => {
  const student = client(doska.anonKey);
  const s = await student.auth.signInWithPassword({ email: 'anna@a.test', password: 'correct-horse-battery' });
  assert.equal(s.error, null);
  const file = join(policies, 'materials.toml');
  const before = await readFile(file, 'utf8');
  // Students may now read drafts too.
  await writeFile(file, before.replace("using = \"status = 'published' and school_id", 'using = "school_id'));
  const started = Date.now();
  let titles = [];
  while (Date.now() - started < 20_000) {
    const r = await student.from('materials').select('title').order('title');
    titles = (r.data ?? []).map((m) => m.title);
    if (titles.length === 2) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(titles, ['Дроби', 'Черновик']);

  // A broken edit is refused; the last good set stays in force.
  await writeFile(file, before.replace('for = "select"', 'for = "read"'));
  await new Promise((r) => setTimeout(r, 1500));
  const still = await student.from('materials').select('title').order('title');
  assert.deepEqual(still.data.map((m) => m.title), ['Дроби', 'Черновик']);
  assert.match(doska.log(), /materials\.toml:\d+: `for = \\"read\\"`/);
});
