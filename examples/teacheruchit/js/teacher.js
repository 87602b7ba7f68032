// The teacher's page (school admins get the admin card too): materials, assignments and grades of
// the chosen class, the class chat and who of the class is online.
import { h, fill, field, formValues, say, busy, explain, toast, when, card, loading, need, LETTERS } from './ui.js';
import { watchTables, classRoom, debounce } from './live.js';
import { onReload } from './reload.js';
import { openFile } from './files.js';

// The materials bucket's limits (policies/storage.toml), checked before uploading.
const MAX_FILE = 500 * 1024 * 1024;
const FILE_TYPES = /^(application\/pdf|image\/.+|video\/.+|audio\/.+|text\/plain|application\/vnd\.openxmlformats-officedocument\.(presentationml\.presentation|wordprocessingml\.document))$/;


/** @param {HTMLElement} root @param {any} db @param {any} session */
export async function teacherScreen(root, db, session) {
  const uid = session.user.id;
  const isAdmin = session.user.role === 'school_admin';
  const me = need(await db.from('teacher_profiles').select('user_id, name, primary_subject, secondary_subject, school_id').eq('user_id', uid).maybeSingle());
  if (!me?.school_id) {
    fill(root, h('p', { class: 'msg error' }, 'Вы не привязаны к школе. Обратитесь к администратору школы.'));
    return () => {};
  }
  const [school, firstStudents, staff] = await Promise.all([
    db.from('schools').select('id, name, city, grade_min, grade_max').eq('id', me.school_id).single().then(need),
    db.from('student_profiles').select('user_id, name, class, letter').eq('school_id', me.school_id).order('class').order('letter').order('name').then(need),
    db.from('teacher_profiles').select('user_id, name').eq('school_id', me.school_id).then(need),
  ]);
  let students = firstStudents;
  const names = new Map([...students, ...staff].map((p) => [p.user_id, p.name]));
  const classes = [...new Set(students.map((s) => `${s.class}${s.letter}`))];
  /** Students sign up at any time: the list is read again with each grades reload. */
  async function loadStudents() {
    const res = await db.from('student_profiles').select('user_id, name, class, letter').eq('school_id', me.school_id).order('class').order('letter').order('name');
    if (res.error) return;
    students = res.data;
    for (const s of students) names.set(s.user_id, s.name);
  }

  // --- layout ---
  const clsSel = h('select', { id: 'class-number', 'aria-label': 'Класс' }, Array.from({ length: 11 }, (_, i) => h('option', { value: String(i + 1) }, String(i + 1))));
  const letSel = h('select', { id: 'class-letter', 'aria-label': 'Буква' }, LETTERS.map((l) => h('option', { value: l }, l)));
  const first = students[0];
  if (first) {
    clsSel.value = String(first.class);
    letSel.value = first.letter;
  }
  const mats = card('Материалы', 'materials');
  const asg = card('Задания класса', 'assignments');
  const grd = card('Оценки класса', 'grades');
  const chat = card('Чат класса', 'chat');
  const online = card('В сети', 'online');
  const admin = isAdmin ? card('Администрирование школы', 'admin') : null;
  fill(root,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, me.name || 'Учитель'), h('p', { class: 'muted' },
        `${isAdmin ? 'Администратор школы' : 'Учитель'} · ${school.name}, ${school.city}`)),
      h('div', { class: 'class-pick' }, h('span', {}, 'Класс:'), clsSel, letSel,
        classes.length ? h('small', { class: 'muted' }, ` (ученики есть в: ${classes.join(', ')})`) : null)),
    h('div', { class: 'grid', id: 'teacher-dashboard' }, mats.el, asg.el, grd.el, chat.el, online.el, admin?.el));

  const state = { cls: Number(clsSel.value), letter: letSel.value, assignments: [] };
  const classStudents = () => students.filter((s) => s.class === state.cls && s.letter === state.letter);

  // --- materials ---
  const matList = h('ul', { class: 'items', id: 'material-list' });
  const matMsg = h('p', { class: 'msg', role: 'status' });
  const matBtn = h('button', { type: 'submit' }, 'Добавить материал');
  const matForm = h('form', { class: 'form', id: 'material-form', novalidate: true },
    field('Название', h('input', { name: 'title', required: true, maxlength: 300 })),
    field('Описание', h('textarea', { name: 'description', rows: 2, maxlength: 10000 })),
    h('div', { class: 'row' },
      field('Предмет', h('input', { name: 'subject', required: true, value: me.primary_subject ?? '' })),
      field('Статус', h('select', { name: 'status' }, h('option', { value: 'draft' }, 'Черновик'), h('option', { value: 'published' }, 'Опубликован')))),
    field('Файл (PDF, документ, презентация, картинка, видео)', h('input', { name: 'file', type: 'file' })),
    matBtn, matMsg);
  fill(mats.body, matForm, matList);

  async function loadMaterials() {
    const res = await db.from('materials').select('id, title, description, subject, status, file_path, created_at').eq('school_id', school.id).order('created_at', { ascending: false });
    mats.stale(!!res.stale);
    if (res.error) return fill(matList, h('li', { class: 'msg error' }, explain(res.error, res.status)));
    fill(matList, res.data.length ? res.data.map((m) => h('li', {},
      h('div', {}, h('b', {}, m.title), ' ', h('span', { class: `badge ${m.status}` }, m.status === 'published' ? 'опубликован' : m.status === 'draft' ? 'черновик' : 'в архиве'),
        h('small', { class: 'muted' }, ` ${m.subject} · ${when(m.created_at)}`)),
      m.description ? h('p', {}, m.description) : null,
      h('div', { class: 'actions' },
        m.file_path ? h('button', { class: 'link', onclick: (e) => openFile(db, m.file_path, e.currentTarget) }, 'Открыть файл') : null,
        h('button', { class: 'link', onclick: () => setStatus(m, m.status === 'published' ? 'draft' : 'published') }, m.status === 'published' ? 'Снять с публикации' : 'Опубликовать'),
        h('button', { class: 'link danger', onclick: () => removeMaterial(m) }, 'Удалить'))))
      : h('li', { class: 'muted' }, 'Материалов пока нет'));
  }
  async function setStatus(m, status) {
    const res = await db.from('materials').update({ status }).eq('id', m.id);
    if (res.error) return toast(explain(res.error, res.status), 'error');
    loadMaterials();
  }
  async function removeMaterial(m) {
    if (!confirm(`Удалить «${m.title}»?`)) return;
    const res = await db.from('materials').delete().eq('id', m.id);
    if (res.error) return toast(explain(res.error, res.status), 'error');
    if (m.file_path) {
      const [bucket, ...key] = m.file_path.split('/');
      await db.storage.from(bucket).remove([key.join('/')]);
    }
    loadMaterials();
  }
  matForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = formValues(matForm);
    const file = /** @type {File} */ (v.file);
    const hasFile = file instanceof File && file.size > 0;
    const bad = (!v.title && 'Введите название.') || (!v.subject && 'Укажите предмет.') ||
      (hasFile && file.size > MAX_FILE && 'Файл больше 500 МБ.') ||
      (hasFile && !FILE_TYPES.test(file.type) && 'Такой тип файла не принимается: нужен PDF, документ Word, презентация, картинка, видео, аудио или текст.');
    if (bad) return say(matMsg, bad);
    await busy(matBtn, async () => {
      let filePath = null;
      if (hasFile) {
        say(matMsg, 'Загрузка файла…', 'ok');
        const safe = file.name.replace(/[^\w.-]+/g, '_').slice(-100) || 'file';
        const key = `${school.id}/${crypto.randomUUID()}/${safe}`;
        const up = await db.storage.from('materials').upload(key, file, { contentType: file.type });
        if (up.error) return say(matMsg, explain(up.error, up.error.statusCode ?? up.error.status));
        filePath = `materials/${key}`;
      }
      const res = await db.from('materials').insert({ title: v.title, description: v.description ?? '', subject: v.subject, status: v.status, file_path: filePath, school_id: school.id });
      if (res.error) {
        if (filePath) await db.storage.from('materials').remove([filePath.slice('materials/'.length)]);
        return say(matMsg, explain(res.error, res.status));
      }
      matForm.reset();
      say(matMsg, res.queued ? 'Нет сети: материал ждёт отправки.' : 'Материал добавлен.', res.queued ? 'warn' : 'ok');
      loadMaterials();
    });
  });

  // --- assignments of the class ---
  const asgList = h('ul', { class: 'items', id: 'assignment-list' });
  const asgMsg = h('p', { class: 'msg', role: 'status' });
  const asgBtn = h('button', { type: 'submit' }, 'Выдать задание');
  const asgForm = h('form', { class: 'form', id: 'assignment-form', novalidate: true },
    field('Задание', h('input', { name: 'title', required: true, maxlength: 300 })),
    field('Описание', h('textarea', { name: 'description', rows: 2 })),
    h('div', { class: 'row' },
      field('Предмет', h('input', { name: 'subject', required: true, value: me.primary_subject ?? '' })),
      field('Сдать до', h('input', { name: 'due_date', type: 'datetime-local' }))),
    asgBtn, asgMsg);
  fill(asg.body, asgForm, asgList);

  async function loadAssignments() {
    const res = await db.from('assignments').select('id, title, description, subject, due_date, created_at')
      .eq('school_id', school.id).eq('class', state.cls).eq('letter', state.letter).order('created_at', { ascending: false });
    asg.stale(!!res.stale);
    if (res.error) return fill(asgList, h('li', { class: 'msg error' }, explain(res.error, res.status)));
    state.assignments = res.data;
    fill(asgList, res.data.length ? res.data.map((a) => h('li', {},
      h('b', {}, a.title), h('small', { class: 'muted' }, ` ${a.subject}${a.due_date ? ` · сдать до ${when(a.due_date)}` : ''}`),
      a.description ? h('p', {}, a.description) : null,
      h('div', { class: 'actions' }, h('button', { class: 'link danger', onclick: () => removeAssignment(a) }, 'Удалить'))))
      : h('li', { class: 'muted' }, `Заданий для ${state.cls}${state.letter} пока нет`));
    loadGrades();
  }
  async function removeAssignment(a) {
    if (!confirm(`Удалить задание «${a.title}» вместе с его оценками?`)) return;
    const res = await db.from('assignments').delete().eq('id', a.id);
    if (res.error) return toast(explain(res.error, res.status), 'error');
    loadAssignments();
  }
  asgForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = formValues(asgForm);
    const due = v.due_date ? new Date(v.due_date) : null;
    const bad = (!v.title && 'Введите задание.') || (!v.subject && 'Укажите предмет.') || (due && Number.isNaN(due.getTime()) && 'Неверная дата.');
    if (bad) return say(asgMsg, bad);
    await busy(asgBtn, async () => {
      const res = await db.from('assignments').insert({ title: v.title, description: v.description ?? '', subject: v.subject,
        class: state.cls, letter: state.letter, due_date: due ? due.toISOString() : null, school_id: school.id });
      if (res.error) return say(asgMsg, explain(res.error, res.status));
      asgForm.reset();
      say(asgMsg, res.queued ? 'Нет сети: задание ждёт отправки.' : `Задание выдано ${state.cls}${state.letter}.`, res.queued ? 'warn' : 'ok');
      loadAssignments();
    });
  });

  // --- grades of the class ---
  const grdTable = h('div', { class: 'table-wrap', id: 'grade-table' });
  const grdMsg = h('p', { class: 'msg', role: 'status' });
  const grdBtn = h('button', { type: 'submit' }, 'Поставить оценку');
  const waitList = h('ul', { class: 'waiting-list', id: 'waiting-grades' });
  const asgSel = h('select', { name: 'assignment_id', required: true });
  const stuSel = h('select', { name: 'student_id', required: true });
  const grdForm = h('form', { class: 'form', id: 'grade-form', novalidate: true },
    h('div', { class: 'row' }, field('Ученик', stuSel), field('Задание', asgSel)),
    h('div', { class: 'row' },
      field(`Оценка (${school.grade_min}–${school.grade_max})`, h('input', { name: 'grade', type: 'number', min: school.grade_min, max: school.grade_max, step: 1, required: true })),
      field('Комментарий', h('input', { name: 'comment', maxlength: 2000 }))),
    grdBtn, grdMsg, waitList);
  fill(grd.body, grdForm, grdTable);
  /** Grades entered offline, shown until the queue is sent. */
  let waiting = [];

  async function loadGrades() {
    await loadStudents();
    const picked = stuSel.value;
    fill(stuSel, classStudents().length ? classStudents().map((s) => h('option', { value: s.user_id }, s.name || 'Без имени')) : h('option', { value: '' }, 'В классе нет учеников'));
    if (picked) stuSel.value = picked;
    const pickedA = asgSel.value;
    fill(asgSel, state.assignments.length ? state.assignments.map((a) => h('option', { value: a.id }, a.title)) : h('option', { value: '' }, 'Сначала выдайте задание'));
    if (pickedA) asgSel.value = pickedA;
    const ids = state.assignments.map((a) => a.id);
    let grades = [];
    if (ids.length) {
      const res = await db.from('grades').select('id, student_id, assignment_id, grade, comment').in('assignment_id', ids);
      grd.stale(!!res.stale);
      if (res.error) return fill(grdTable, h('p', { class: 'msg error' }, explain(res.error, res.status)));
      grades = res.data;
    }
    if (db.offline.pending() === 0) waiting = [];
    renderWaiting();
    const by = new Map(grades.map((g) => [`${g.student_id}|${g.assignment_id}`, g]));
    const list = classStudents();
    fill(grdTable, list.length && ids.length
      ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Ученик'), state.assignments.map((a) => h('th', {}, a.title)))),
        h('tbody', {}, list.map((s) => h('tr', {}, h('td', {}, s.name),
          state.assignments.map((a) => {
            const g = by.get(`${s.user_id}|${a.id}`);
            return h('td', { title: g?.comment ?? '', class: 'grade' }, g ? String(g.grade) : '—');
          })))))
      : h('p', { class: 'muted' }, 'Оценок пока нет'));
  }
  function renderWaiting() {
    fill(waitList, waiting.map((w) => h('li', {}, `Ожидает отправки: ${w.grade} — ${w.who}, «${w.what}»`)));
  }
  grdForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = formValues(grdForm);
    const grade = Number(v.grade);
    const bad = (!v.student_id && 'Выберите ученика.') || (!v.assignment_id && 'Выберите задание.') ||
      ((!Number.isInteger(grade) || grade < school.grade_min || grade > school.grade_max) && `Оценка должна быть целым числом от ${school.grade_min} до ${school.grade_max}.`);
    if (bad) return say(grdMsg, bad);
    await busy(grdBtn, async () => {
      const res = await db.from('grades').insert({ student_id: v.student_id, assignment_id: v.assignment_id, grade, comment: v.comment || null });
      if (res.error) return say(grdMsg, explain(res.error, res.status));
      /** @type {HTMLInputElement} */ (grdForm.elements.namedItem('grade')).value = '';
      /** @type {HTMLInputElement} */ (grdForm.elements.namedItem('comment')).value = '';
      if (res.queued) {
        waiting.push({ grade, who: names.get(v.student_id) ?? '', what: state.assignments.find((a) => a.id === v.assignment_id)?.title ?? '' });
        renderWaiting();
        say(grdMsg, 'Нет сети: оценка сохранена и будет отправлена, когда связь вернётся.', 'warn');
      } else {
        say(grdMsg, 'Оценка поставлена.', 'ok');
        loadGrades();
      }
    });
  });

  // --- the class room (chat + online) follows the chosen class ---
  let leaveRoom = () => {};
  function enterRoom() {
    leaveRoom();
    leaveRoom = classRoom(db, { uid, name: me.name || 'Учитель', role: 'teacher', school: school.id, cls: state.cls, letter: state.letter, names }, chat.body, online.body);
  }
  function pickClass() {
    state.cls = Number(clsSel.value);
    state.letter = letSel.value;
    waiting = [];
    fill(asgList, loading());
    loadAssignments();
    enterRoom();
  }
  clsSel.addEventListener('change', pickClass);
  letSel.addEventListener('change', pickClass);

  loadMaterials();
  loadAssignments();
  enterRoom();
  const reloadAll = () => {
    loadMaterials();
    loadAssignments();
  };
  const offReload = onReload(reloadAll);
  const unwatch = watchTables(db, uid, {
    materials: debounce(loadMaterials),
    assignments: debounce(loadAssignments),
    grades: debounce(loadGrades),
  }, reloadAll);
  let leaveAdmin = () => {};
  if (admin) {
    const { adminCard } = await import('./admin.js');
    leaveAdmin = adminCard(db, school, admin);
  }
  return () => {
    offReload();
    unwatch();
    leaveRoom();
    leaveAdmin();
  };
}
