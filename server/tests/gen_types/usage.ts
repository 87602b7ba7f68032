// Typed usage of `doska gen types` output (tests/gen_types.rs): `database.ts` is what the command
// printed for TeacherUchit's migrations, `fixture.ts` the golden file. tsc --strict must accept this
// file; each `@ts-expect-error` proves a mistake is caught (tsc fails if the line compiles).
import { createClient } from '@doska/client';
import { Constants, type Database, type Tables, type TablesInsert, type TablesUpdate } from './database.js';
import type { Database as Fixture, Enums, CompositeTypes } from './fixture.js';

const db = createClient<Database>('http://localhost:8000', 'anon-key');

export async function teacheruchit(): Promise<void> {
  const list = await db.from('assignments').select('*').eq('class', 5).order('due_date');
  if (!list.error) {
    const title: string = list.data[0].title;
    const due: string | null = list.data[0].due_date;
    console.log(title, due);
  }
  const row: Tables<'grades'> | null = null;
  console.log(row);
  const add: TablesInsert<'assignments'> = { class: 5, letter: 'A', school_id: 's', subject: 'math', title: 'T' };
  await db.from('assignments').insert(add);
  const change: TablesUpdate<'grades'> = { grade: 5, comment: null };
  await db.from('grades').update(change).eq('id', 'g');
  const notes = await db.from('notifications').select().is('read_at', null);
  if (notes.data) console.log(notes.data.map((n) => n.data));
  await db.from('doska_local_store').upsert({ store: 'prefs', key: 'k', value: null });
  console.log(Constants.public.Enums);

  // @ts-expect-error: a required column (title) missing
  const missing: TablesInsert<'assignments'> = { class: 5, letter: 'A', school_id: 's', subject: 'math' };
  console.log(missing);
  // @ts-expect-error: class is a number
  await db.from('assignments').insert({ class: '5', letter: 'A', school_id: 's', subject: 'm', title: 'T' });
  // @ts-expect-error: no such table
  db.from('assignmentz');
  if (list.data) {
    // @ts-expect-error: no such column
    console.log(list.data[0].nope);
  }
}

const fx = createClient<Fixture>('http://localhost:8000', 'anon-key');

export async function fixture(): Promise<void> {
  const films = await fx.from('films').select();
  if (films.data) {
    const f = films.data[0];
    const id: number = f.id;
    const tags: string[] = f.tags;
    const mood: 'happy' | 'sad' | 'so-so' = f.mood;
    const level: 'low' | 'high' | null = f.level;
    const computed: string | null = f.full_title;
    const odd: string | null = f['Odd Name'];
    console.log(id, tags, mood, level, computed, odd);
  }
  await fx.from('films').insert({ title: 'New' });
  // @ts-expect-error: an identity GENERATED ALWAYS is never written
  await fx.from('films').insert({ id: 1, title: 'New' });
  const sq = await fx.rpc('squares', { upto: 3 });
  if (sq.data) console.log(sq.data[0].sq);
  const sum = await fx.rpc('add', { a: 1 });
  if (!sum.error) console.log(sum.data + 1);
  const things = await fx.schema('api').from('things').select();
  if (things.data) console.log(things.data[0].label);
  const m: Enums<'mood'> = 'sad';
  const p: CompositeTypes<'point2'> = { x: 1, y: null };
  console.log(m, p);
}
