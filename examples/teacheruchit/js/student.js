// The student's page: their class's assignments, their school's published materials, their own
// grades and notifications, the class chat and who is online — all live.
import { h, fill, explain, when, card, need } from './ui.js';
import { watchTables, classRoom, notifications, debounce } from './live.js';
import { onReload } from './reload.js';
import { openFile } from './files.js';


/** @param {HTMLElement} root @param {any} db @param {any} session */
export async function studentScreen(root, db, session) {
  const uid = session.user.id;
  const me = need(await db.from('student_profiles').select('user_id, name, school_id, class, letter').eq('user_id', uid).maybeSingle());
  if (!me?.school_id || !me.class || !me.letter) {
    fill(root, h('p', { class: 'msg error' }, 'В профиле нет школы или класса. Обратитесь к классному руководителю.'));
    return () => {};
  }
  const [school, teachers] = await Promise.all([
    db.from('schools').select('id, name, city').eq('id', me.school_id).single().then(need),
    db.from('teacher_profiles').select('user_id, name, primary_subject').then(need),
  ]);
  const names = new Map(teachers.map((t) => [t.user_id, t.name]));
  const teacherName = (id) => names.get(id) ?? '';

  const asg = card('Задания', 'assignments');
  const mats = card('Материалы', 'materials');
  const grd = card('Мои оценки', 'grades');
  const notes = card('Уведомления', 'notifications-card');
  const chat = card('Чат класса', 'chat');
  const online = card('В сети', 'online');
  fill(root,
    h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, me.name || 'Ученик'),
      h('p', { class: 'muted' }, `Ученик ${me.class}${me.letter} · ${school.name}, ${school.city}`))),
    h('div', { class: 'grid', id: 'student-dashboard' }, asg.el, mats.el, grd.el, notes.el, chat.el, online.el));

  const asgList = h('ul', { class: 'items', id: 'assignment-list' });
  fill(asg.body, asgList);
  let assignments = new Map();
  async function loadAssignments() {
    const res = await db.from('assignments').select('id, title, description, subject, due_date, teacher_id, created_at')
      .eq('school_id', me.school_id).eq('class', me.class).eq('letter', me.letter).order('created_at', { ascending: false });
    asg.stale(!!res.stale);
    if (res.error) return fill(asgList, h('li', { class: 'msg error' }, explain(res.error, res.status)));
    assignments = new Map(res.data.map((a) => [a.id, a]));
    fill(asgList, res.data.length ? res.data.map((a) => h('li', {},
      h('b', {}, a.title), h('small', { class: 'muted' }, ` ${a.subject}${a.due_date ? ` · сдать до ${when(a.due_date)}` : ''}${teacherName(a.teacher_id) ? ` · ${teacherName(a.teacher_id)}` : ''}`),
      a.description ? h('p', {}, a.description) : null))
      : h('li', { class: 'muted' }, 'Заданий пока нет'));
    loadGrades();
  }

  const matList = h('ul', { class: 'items', id: 'material-list' });
  fill(mats.body, matList);
  async function loadMaterials() {
    const res = await db.from('materials').select('id, title, description, subject, file_path, author_id, created_at')
      .eq('status', 'published').order('created_at', { ascending: false });
    mats.stale(!!res.stale);
    if (res.error) return fill(matList, h('li', { class: 'msg error' }, explain(res.error, res.status)));
    fill(matList, res.data.length ? res.data.map((m) => h('li', {},
      h('b', {}, m.title), h('small', { class: 'muted' }, ` ${m.subject}${teacherName(m.author_id) ? ` · ${teacherName(m.author_id)}` : ''} · ${when(m.created_at)}`),
      m.description ? h('p', {}, m.description) : null,
      m.file_path ? h('div', { class: 'actions' }, h('button', { class: 'link', onclick: (e) => openFile(db, m.file_path, e.currentTarget) }, 'Скачать файл')) : null))
      : h('li', { class: 'muted' }, 'Материалов пока нет'));
  }

  const grdList = h('ul', { class: 'items', id: 'grade-list' });
  fill(grd.body, grdList);
  async function loadGrades() {
    const res = await db.from('grades').select('id, assignment_id, grade, comment, created_at').eq('student_id', uid).order('created_at', { ascending: false });
    grd.stale(!!res.stale);
    if (res.error) return fill(grdList, h('li', { class: 'msg error' }, explain(res.error, res.status)));
    fill(grdList, res.data.length ? res.data.map((g) => h('li', { class: 'grade-row' },
      h('span', { class: 'grade-mark' }, String(g.grade)), ' ',
      h('b', {}, assignments.get(g.assignment_id)?.title ?? 'Задание'),
      g.comment ? h('span', {}, ` — ${g.comment}`) : null, ' ', h('small', { class: 'muted' }, when(g.created_at))))
      : h('li', { class: 'muted' }, 'Оценок пока нет'));
  }

  const note = notifications(db, uid, notes);
  const leaveRoom = classRoom(db, { uid, name: me.name || 'Ученик', role: 'student', school: me.school_id, cls: me.class, letter: me.letter, names }, chat.body, online.body);
  loadAssignments();
  loadMaterials();
  const reloadAll = () => {
    loadAssignments();
    loadMaterials();
    note.reload();
  };
  const offReload = onReload(reloadAll);
  const unwatch = watchTables(db, uid, {
    assignments: debounce(loadAssignments),
    materials: debounce(loadMaterials),
    grades: debounce(loadGrades),
    notifications: note.onChange,
  }, reloadAll);
  return () => {
    offReload();
    unwatch();
    leaveRoom();
  };
}
