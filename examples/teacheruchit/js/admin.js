// The school admin's card: join codes for teachers (make, revoke) and the staff (appoint an admin,
// demote, remove). The policies and app.set_staff_role decide; this only asks.
import { h, fill, field, formValues, say, busy, explain, toast, when } from './ui.js';

/** A code of 8 letters and digits without look-alikes (0/O, 1/I). */
function newCode() {
  const abc = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => abc[b % abc.length]).join('');
}

/** @param {any} db @param {{id: string}} school @param {{body: HTMLElement, stale: (on: boolean) => void}} card */
export function adminCard(db, school, card) {
  const codes = h('ul', { class: 'items', id: 'code-list' });
  const staff = h('ul', { class: 'items', id: 'staff-list' });
  const msg = h('p', { class: 'msg', role: 'status' });
  const button = h('button', { type: 'submit' }, 'Создать код для учителя');
  const form = h('form', { class: 'form', id: 'code-form', novalidate: true },
    field('Срок действия', h('select', { name: 'days' },
      h('option', { value: '7' }, '7 дней'), h('option', { value: '30' }, '30 дней'), h('option', { value: '' }, 'без срока'))),
    button, msg);
  fill(card.body, h('h3', {}, 'Коды для регистрации учителей'), form, codes, h('h3', {}, 'Сотрудники'), staff);

  async function loadCodes() {
    const res = await db.from('school_codes').select('code, created_at, expires_at').eq('school_id', school.id).order('created_at', { ascending: false });
    card.stale(!!res.stale);
    if (res.error) return fill(codes, h('li', { class: 'msg error' }, explain(res.error, res.status)));
    const now = Date.now();
    fill(codes, res.data.length ? res.data.map((c) => {
      const expired = c.expires_at && new Date(c.expires_at).getTime() < now;
      return h('li', { class: expired ? 'muted' : '' }, h('code', { class: 'school-code' }, c.code), ' ',
        h('small', {}, c.expires_at ? `${expired ? 'истёк' : 'действует до'} ${when(c.expires_at)}` : 'без срока'), ' ',
        h('button', { class: 'link danger', onclick: () => revoke(c.code) }, 'Отозвать'));
    }) : h('li', { class: 'muted' }, 'Кодов нет'));
  }
  async function revoke(code) {
    const res = await db.from('school_codes').delete().eq('code', code);
    if (res.error) return toast(explain(res.error, res.status), 'error');
    toast(`Код ${code} отозван.`);
    loadCodes();
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const { days } = formValues(form);
    await busy(button, async () => {
      const expires = days ? new Date(Date.now() + Number(days) * 86400e3).toISOString() : null;
      const res = await db.from('school_codes').insert({ code: newCode(), school_id: school.id, expires_at: expires });
      if (res.error) return say(msg, explain(res.error, res.status));
      say(msg, 'Код создан: передайте его учителю.', 'ok');
      loadCodes();
    });
  });

  async function loadStaff() {
    const res = await db.rpc('school_staff');
    if (res.error) return fill(staff, h('li', { class: 'msg error' }, explain(res.error, res.status)));
    fill(staff, res.data.map((t) => h('li', {}, h('b', {}, t.name || 'Без имени'),
      h('small', { class: 'muted' }, ` ${[t.primary_subject, t.secondary_subject].filter(Boolean).join(', ')} · ${t.role === 'school_admin' ? 'администратор' : 'учитель'}`), ' ',
      h('button', { class: 'link', onclick: (ev) => setRole(t, t.role === 'school_admin' ? 'teacher' : 'school_admin', ev.currentTarget) },
        t.role === 'school_admin' ? 'Снять права администратора' : 'Назначить администратором'), ' ',
      h('button', { class: 'link danger', onclick: () => removeStaff(t) }, 'Убрать из школы'))));
  }
  async function setRole(t, role, btn) {
    await busy(btn, async () => {
      const res = await db.rpc('set_staff_role', { target: t.user_id, new_role: role });
      if (res.error) return toast(explain(res.error, res.status), 'error');
      toast(role === 'school_admin' ? `${t.name} — теперь администратор (со следующего входа).` : `${t.name} — теперь учитель.`);
      loadStaff();
    });
  }
  async function removeStaff(t) {
    if (!confirm(`Убрать ${t.name} из школы?`)) return;
    const res = await db.from('teacher_profiles').delete().eq('user_id', t.user_id);
    if (res.error) return toast(explain(res.error, res.status), 'error');
    loadStaff();
  }
  loadCodes();
  loadStaff();
  return () => {};
}
