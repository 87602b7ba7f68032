// Stage 1.4: brings the data the localStorage-only TeacherUchit kept in this browser into doska
// (format: ../legacy/README.md). Offered once per user after sign-in when legacy keys are present,
// and from the "Импорт" button later. Safe to run twice: every row gets an id derived from its
// legacy id, and rows already there are left alone.
import { h, fill, busy, explain } from './ui.js';

export const KEYS = {
  users: 'teacheruchit_users',
  profiles: 'teacheruchit_profiles',
  materials: 'teacheruchit_materials',
  assignments: 'teacheruchit_assignments',
  grades: 'teacheruchit_grades',
};
const doneKey = (uid) => `teacheruchit.import.${uid}`;

function legacy(key) {
  try {
    const raw = localStorage.getItem(key);
    return raw == null ? null : JSON.parse(raw);
  } catch {
    return undefined; // present but not JSON: reported by importLocalStorage
  }
}

export const hasLegacy = () => Object.values(KEYS).some((k) => localStorage.getItem(k) != null);

/** A UUID that is the same every run for the same user and legacy record. */
async function stableId(uid, kind, legacyId) {
  const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(`teacheruchit:${uid}:${kind}:${legacyId}`)));
  hash[6] = (hash[6] & 0x0f) | 0x50;
  hash[8] = (hash[8] & 0x3f) | 0x80;
  const x = Array.from(hash.slice(0, 16), (b) => b.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

const letterOf = (l) => String(l ?? '').trim().toUpperCase();

/** Shows the offer after sign-in, once per user, if this browser holds legacy data. */
export function offerImport(db, session) {
  const role = session.user.role;
  const btn = document.getElementById('import-open');
  if (btn) btn.hidden = !(hasLegacy() && (role === 'teacher' || role === 'school_admin'));
  if (btn) btn.onclick = () => importDialog(db, session);
  if (!hasLegacy() || !(role === 'teacher' || role === 'school_admin')) return;
  if (localStorage.getItem(doneKey(session.user.id))) return;
  importDialog(db, session);
}

/** The import dialog: what is found, progress, what was imported and what was not. */
export function importDialog(db, session) {
  const uid = session.user.id;
  const email = String(session.user.email ?? '').toLowerCase();
  const found = h('ul', {}, Object.entries(KEYS).map(([name, key]) => {
    const v = legacy(key);
    const n = Array.isArray(v) ? v.length : v && typeof v === 'object' ? Object.keys(v).length : 0;
    return v === null ? null : h('li', {}, `${RU[name]}: ${n}`);
  }));
  const progress = h('progress', { max: 1, value: 0, hidden: true });
  const status = h('p', { class: 'msg', role: 'status' });
  const report = h('div', { class: 'import-report' });
  const go = h('button', { id: 'import-run' }, 'Импортировать');
  const later = h('button', { class: 'secondary', id: 'import-later' }, 'Не сейчас');
  const dialog = h('dialog', { id: 'import-dialog', class: 'dialog' },
    h('h2', {}, 'Перенос данных из старой версии'),
    h('p', {}, 'В этом браузере сохранены данные прежней версии TeacherUchit. Перенести их на сервер?'),
    found, progress, status, report, h('div', { class: 'actions' }, go, later));
  document.body.append(dialog);
  /** @type {HTMLDialogElement} */ (dialog).showModal();
  later.addEventListener('click', () => {
    if (!localStorage.getItem(doneKey(uid))) localStorage.setItem(doneKey(uid), 'later');
    dialog.remove();
  });
  go.addEventListener('click', () => busy(go, async () => {
    progress.hidden = false;
    say(status, 'Подготовка…');
    const { plan, notImported } = await buildPlan(db, uid, email, (text) => say(status, text));
    const result = await db.importLocalStorage(plan, {
      onProgress: ({ key, done, total }) => {
        progress.value = done / total;
        say(status, `Перенесено: ${RU_KEY[key] ?? key} (${done} из ${total})…`);
      },
    });
    progress.value = 1;
    localStorage.setItem(doneKey(uid), 'done');
    const imported = Object.entries(result.imported);
    const problems = [...notImported, ...result.errors.map((e) => `${RU_KEY[e.key] ?? e.key}: ${e.message}`)];
    say(status, problems.length ? 'Перенос завершён, но не всё удалось перенести.' : 'Перенос завершён.');
    fill(report,
      h('h3', {}, 'Перенесено'),
      h('ul', { id: 'import-imported' }, imported.length ? imported.map(([k, n]) => h('li', {}, `${RU_KEY[k] ?? k}: ${n}`)) : h('li', {}, 'ничего нового')),
      problems.length ? [h('h3', {}, 'Не перенесено'), h('ul', { id: 'import-problems' }, problems.map((p) => h('li', {}, p)))] : null);
    later.textContent = 'Закрыть';
    go.hidden = true;
  }));
}

function say(el, text) {
  el.className = 'msg';
  el.textContent = text;
}

const RU = { users: 'Пользователи', profiles: 'Профили', materials: 'Материалы', assignments: 'Задания', grades: 'Оценки' };
const RU_KEY = Object.fromEntries(Object.entries(KEYS).map(([n, k]) => [k, RU[n]]));

/**
 * The importLocalStorage plan for this teacher, with what cannot come over (and why). Rows are
 * computed up front (ids hash the legacy ids; files go to storage first), so the plan's `rows`
 * functions only hand them out.
 */
async function buildPlan(db, uid, email, progress) {
  const notImported = [];
  const users = legacy(KEYS.users);
  if (Array.isArray(users) && users.length) {
    notImported.push(`Пользователи (${users.length}): учётные записи не переносятся — каждый регистрируется сам, пароли старой версии не используются.`);
  }
  const profiles = legacy(KEYS.profiles);
  if (profiles && typeof profiles === 'object' && Object.keys(profiles).length) {
    notImported.push(`Профили (${Object.keys(profiles).length}): профиль создаётся при регистрации в школе.`);
  }
  const me = (await db.from('teacher_profiles').select('school_id').eq('user_id', uid).maybeSingle()).data;
  const school = me?.school_id;
  const students = school ? ((await db.from('student_profiles').select('user_id, name, class, letter').eq('school_id', school)).data ?? []) : [];
  const mine = (x, field) => String(x?.[field] ?? '').toLowerCase() === email;
  const plan = {};

  const materials = legacy(KEYS.materials);
  if (Array.isArray(materials)) {
    const rows = [];
    for (const m of materials) {
      if (!mine(m, 'authorEmail')) {
        notImported.push(`Материал «${m?.title ?? m?.id}»: автор — другой пользователь (${m?.authorEmail ?? 'не указан'}).`);
        continue;
      }
      let filePath = null;
      if (m.fileData && m.fileName) {
        progress(`Загрузка файла ${m.fileName}…`);
        const blob = await (await fetch(m.fileData)).blob();
        const key = `${school}/legacy-${m.id}/${String(m.fileName).replace(/[^\w.-]+/g, '_')}`;
        const up = await db.storage.from('materials').upload(key, blob, { upsert: true, contentType: blob.type });
        if (up.error) notImported.push(`Файл «${m.fileName}» материала «${m.title}»: ${explain(up.error, up.error.statusCode ?? up.error.status)}`);
        else filePath = `materials/${key}`;
      }
      rows.push({ id: await stableId(uid, 'material', m.id), title: m.title, description: m.description ?? '', subject: m.subject,
        status: m.status === 'published' ? 'published' : 'draft', file_path: filePath, school_id: school,
        created_at: m.createdAt ?? undefined });
    }
    plan[KEYS.materials] = { table: 'materials', rows: () => rows, onConflict: 'id', ignoreDuplicates: true };
  }

  const assignments = legacy(KEYS.assignments);
  const asgIds = new Map();
  const asgClass = new Map();
  if (Array.isArray(assignments)) {
    const rows = [];
    for (const a of assignments) {
      if (!mine(a, 'teacherEmail')) {
        notImported.push(`Задание «${a?.title ?? a?.id}»: выдано другим учителем (${a?.teacherEmail ?? 'не указан'}).`);
        continue;
      }
      const id = await stableId(uid, 'assignment', a.id);
      asgIds.set(a.id, id);
      asgClass.set(a.id, `${a.class}${letterOf(a.letter)}`);
      rows.push({ id, title: a.title, description: a.description ?? '', subject: a.subject, class: Number(a.class), letter: letterOf(a.letter),
        due_date: a.dueDate ?? null, school_id: school, created_at: a.createdAt ?? undefined });
    }
    plan[KEYS.assignments] = { table: 'assignments', rows: () => rows, onConflict: 'id', ignoreDuplicates: true };
  }

  const grades = legacy(KEYS.grades);
  if (Array.isArray(grades)) {
    const rows = [];
    for (const g of grades) {
      const asg = asgIds.get(g.assignmentId);
      if (!asg) {
        notImported.push(`Оценка ${g?.grade} (${g?.studentName ?? ''}): её задание не переносится.`);
        continue;
      }
      const cls = `${g.class}${letterOf(g.letter)}`;
      const st = students.filter((s) => s.name.trim().toLowerCase() === String(g.studentName ?? '').trim().toLowerCase() && `${s.class}${s.letter}` === cls);
      if (st.length !== 1) {
        notImported.push(`Оценка ${g.grade} — ${g.studentName} (${cls}): ${st.length ? 'несколько учеников с таким именем' : 'ученик ещё не зарегистрирован в школе'}.`);
        continue;
      }
      if (asgClass.get(g.assignmentId) !== cls) {
        notImported.push(`Оценка ${g.grade} — ${g.studentName}: задание выдано другому классу.`);
        continue;
      }
      rows.push({ id: await stableId(uid, 'grade', g.id), student_id: st[0].user_id, assignment_id: asg, grade: Number(g.grade),
        comment: g.comment ?? null, created_at: g.createdAt ?? undefined });
    }
    plan[KEYS.grades] = { table: 'grades', rows: () => rows, onConflict: 'assignment_id,student_id', ignoreDuplicates: true };
  }
  return { plan, notImported };
}
