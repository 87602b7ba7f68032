// A typed usage file: `npm run typecheck` (tsc) must accept it. It types `from(t)` rows, inserts,
// updates and `rpc(fn)` by a Database type in the shape `supabase gen types typescript` emits, and
// the `@ts-expect-error` lines prove that mistakes are caught (tsc fails if one of them compiles).
import { createClient, type PostgrestError, type Session } from '../../src/index.js';

type Database = {
  public: {
    Tables: {
      films: {
        Row: { id: number; title: string; year: number | null; tags: string[] };
        Insert: { id?: number; title: string; year?: number | null; tags?: string[] };
        Update: { id?: number; title?: string; year?: number | null; tags?: string[] };
        Relationships: [];
      };
    };
    Views: {
      film_titles: { Row: { id: number | null; title: string | null }; Relationships: [] };
    };
    Functions: {
      add: { Args: { a: number; b?: number }; Returns: number };
      films_by_year: { Args: { y: number }; Returns: { id: number; title: string }[] };
    };
    Enums: { mood: 'happy' | 'sad' };
    CompositeTypes: {};
  };
  other: {
    Tables: {
      things: { Row: { id: number; label: string | null }; Insert: { id: number; label?: string | null }; Update: { label?: string | null }; Relationships: [] };
    };
    Views: {};
    Functions: {};
  };
};

const db = createClient<Database>('http://localhost:8000', 'anon-key', { offline: true });

export async function usage(): Promise<void> {
  const films = await db.from('films').select('*').gte('year', 1960).order('year', { ascending: false }).limit(10);
  if (films.error) {
    const e: PostgrestError = films.error;
    console.log(e.message, e.code, films.status);
  } else {
    const title: string = films.data[0].title;
    const year: number | null = films.data[0].year;
    console.log(title, year);
  }
  const one = await db.from('films').select().eq('id', 1).single();
  if (!one.error) {
    const t: string = one.data.title;
    console.log(t);
  }
  const maybe = await db.from('films').select().eq('id', 1).maybeSingle();
  if (!maybe.error && maybe.data) console.log(maybe.data.tags.join(','));
  const view = await db.from('film_titles').select();
  if (view.data) console.log(view.data.map((r) => r.title));

  await db.from('films').insert({ title: 'New' });
  await db.from('films').insert([{ title: 'A' }, { title: 'B', year: 2000 }]).select();
  await db.from('films').upsert({ id: 1, title: 'X' }, { onConflict: 'id' });
  await db.from('films').update({ year: 2001 }).eq('id', 1);
  await db.from('films').delete().in('id', [1, 2]);
  const written = await db.from('films').insert({ title: 'Z' }).select('id, title').single();
  if (written.data) console.log(written.data.id);
  const csv = await db.from('films').select().csv();
  if (csv.data) console.log(csv.data.toUpperCase());
  const r = await db.from('films').insert({ title: 'Q' });
  if (r.queued) console.log('saved for later');

  const sum = await db.rpc('add', { a: 1, b: 2 });
  if (!sum.error) {
    const n: number = sum.data;
    console.log(n);
  }
  const set = await db.rpc('films_by_year', { y: 1970 }).order('id');
  if (set.data) console.log(set.data[0].title);
  const things = await db.schema('other').from('things').select();
  if (things.data) console.log(things.data[0].label);

  const { data, error } = await db.auth.signInWithPassword({ email: 'a@b.c', password: 'secret' });
  if (error) console.log(error.status, error.code);
  else if (data.session) {
    const s: Session = data.session;
    console.log(s.user.id, s.expires_at);
  }
  const { data: sub } = db.auth.onAuthStateChange((event, session) => console.log(event, session?.user.email));
  sub.subscription.unsubscribe();

  const up = await db.storage.from('docs').upload('a/b.txt', new Blob(['x']), { upsert: true });
  if (up.error) console.log(up.error.statusCode);
  const dl = await db.storage.from('docs').download('a/b.txt');
  if (dl.data) console.log(await dl.data.text());
  console.log(db.storage.from('pub').getPublicUrl('x.png').data.publicUrl);

  const ch = db.channel('room').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'films' }, (p) => console.log(p)).subscribe((status) => console.log(status));
  await db.removeChannel(ch);
  const prefs = await db.localStore('prefs');
  prefs.setItem('theme', 'dark');
  const theme: string | null = prefs.getItem('theme');
  console.log(theme, db.offline?.pending());

  // Untyped clients accept anything.
  const loose = createClient('http://localhost:8000', 'k');
  const any = await loose.from('whatever').select().eq('x', 1);
  console.log(any.data);

  // @ts-expect-error: no such table
  db.from('nope');
  // @ts-expect-error: a column of the wrong type on insert
  db.from('films').insert({ title: 1 });
  // @ts-expect-error: a required column missing on insert
  db.from('films').insert({ year: 1 });
  // @ts-expect-error: no such function
  db.rpc('nope');
  // @ts-expect-error: wrong argument type
  db.rpc('add', { a: 'x' });
  // @ts-expect-error: no such schema
  db.schema('nowhere');
  if (films.data) {
    // @ts-expect-error: no such column on a row
    console.log(films.data[0].nope);
  }
}
