// Types of @doska/client's public API (copied to dist/index.d.ts by the build). Hand-written so that
// `createClient<Database>()` types `from(table)` rows, inserts, updates and `rpc(fn)` arguments with
// a Database type in the shape `supabase gen types typescript` (and `doska gen types`) emit.
// Checked by `npm run typecheck` against test/types/usage.ts.

// ---------------------------------------------------------------- Database shapes
export type Json = string | number | boolean | null | { [key: string]: Json | undefined } | Json[];

export interface GenericTable {
  Row: Record<string, unknown>;
  Insert: Record<string, unknown>;
  Update: Record<string, unknown>;
  Relationships?: unknown[];
}
export interface GenericView {
  Row: Record<string, unknown>;
  Relationships?: unknown[];
}
export interface GenericFunction {
  Args: Record<string, unknown> | never;
  Returns: unknown;
}
export interface GenericSchema {
  Tables: Record<string, GenericTable>;
  Views: Record<string, GenericView>;
  Functions: Record<string, GenericFunction>;
  Enums?: Record<string, string>;
  CompositeTypes?: Record<string, unknown>;
}

type AnySchema = { Tables: any; Views: any; Functions: any };
/** The schema `S` of `DB`, or an untyped schema when no Database type is given. */
type SchemaOf<DB, S> = 0 extends 1 & DB ? AnySchema : S extends keyof DB ? DB[S] : AnySchema;
type Relations<Sch> = Sch extends { Tables: infer T; Views: infer V } ? T & V : any;
type RowOf<R> = R extends { Row: infer Row } ? Row : any;
type InsertOf<R> = R extends { Insert: infer I } ? I : never;
type UpdateOf<R> = R extends { Update: infer U } ? U : never;
type Names<Sch> = string extends keyof Relations<Sch> ? string : keyof Relations<Sch> & string;
type FnNames<Sch> = Sch extends { Functions: infer F } ? (string extends keyof F ? string : keyof F & string) : string;
type FnOf<Sch, F> = Sch extends { Functions: infer Fs } ? (F extends keyof Fs ? Fs[F] : any) : any;
type Item<T> = T extends (infer I)[] ? I : T;

// ---------------------------------------------------------------- errors and results
/** PostgREST's error shape; also `NetworkError` (status 0), `AbortError` and `NOT_JSON` answers. */
export interface PostgrestError {
  message: string;
  details: string | null;
  hint: string | null;
  code: string;
  name?: string;
}
export interface AuthError {
  name: 'AuthApiError' | 'AuthSessionMissingError' | 'AuthUnknownError' | 'NetworkError' | 'AbortError';
  message: string;
  /** HTTP status; 0 when no answer came. */
  status: number;
  code: string;
}
export interface StorageError {
  name: 'StorageApiError' | 'StorageUnknownError' | 'NetworkError' | 'AbortError';
  message: string;
  status: number;
  statusCode?: string;
  code?: string;
}

interface ResultBase {
  count: number | null;
  status: number;
  statusText: string;
  /** `offline: true` only: the write failed for lack of network and waits in the offline queue. */
  queued?: true;
  /** `offline: true` only: the network failed and this is the last answer to the same request. */
  stale?: true;
}
export type PostgrestResponse<T> =
  | (ResultBase & { data: T; error: null })
  | (ResultBase & { data: null; error: PostgrestError });

export type Count = 'exact' | 'planned' | 'estimated';

// ---------------------------------------------------------------- REST
/** The REST builder: a thenable that sends nothing until awaited. */
export interface PostgrestBuilder<Row, Result> extends PromiseLike<PostgrestResponse<Result>> {
  eq(column: (keyof Row & string) | (string & {}), value: unknown): this;
  neq(column: (keyof Row & string) | (string & {}), value: unknown): this;
  gt(column: (keyof Row & string) | (string & {}), value: unknown): this;
  gte(column: (keyof Row & string) | (string & {}), value: unknown): this;
  lt(column: (keyof Row & string) | (string & {}), value: unknown): this;
  lte(column: (keyof Row & string) | (string & {}), value: unknown): this;
  like(column: (keyof Row & string) | (string & {}), pattern: string): this;
  ilike(column: (keyof Row & string) | (string & {}), pattern: string): this;
  is(column: (keyof Row & string) | (string & {}), value: boolean | null): this;
  in(column: (keyof Row & string) | (string & {}), values: readonly unknown[]): this;
  contains(column: (keyof Row & string) | (string & {}), value: string | readonly unknown[] | Record<string, unknown>): this;
  containedBy(column: (keyof Row & string) | (string & {}), value: string | readonly unknown[] | Record<string, unknown>): this;
  overlaps(column: (keyof Row & string) | (string & {}), value: string | readonly unknown[]): this;
  textSearch(column: (keyof Row & string) | (string & {}), query: string, options?: { config?: string; type?: 'plain' | 'phrase' | 'websearch' }): this;
  match(query: Partial<Row> | Record<string, unknown>): this;
  not(column: (keyof Row & string) | (string & {}), operator: string, value: unknown): this;
  or(filters: string, options?: { referencedTable?: string; foreignTable?: string }): this;
  filter(column: (keyof Row & string) | (string & {}), operator: string, value: unknown): this;
  order(column: (keyof Row & string) | (string & {}), options?: { ascending?: boolean; nullsFirst?: boolean; referencedTable?: string; foreignTable?: string }): this;
  limit(count: number, options?: { referencedTable?: string; foreignTable?: string }): this;
  range(from: number, to: number, options?: { referencedTable?: string; foreignTable?: string }): this;
  abortSignal(signal: AbortSignal): this;
  setHeader(name: string, value: string): this;
  /** After a write: return the written rows (`return=representation`). */
  select<R = Row>(columns?: string): PostgrestBuilder<Row, R[]>;
  /** Exactly one row as an object; none or several is an error (PGRST116, 406). */
  single(): PostgrestBuilder<Row, Item<Result>>;
  /** At most one row as an object, or null. */
  maybeSingle(): PostgrestBuilder<Row, Item<Result> | null>;
  csv(): PostgrestBuilder<Row, string>;
}

export interface PostgrestQueryBuilder<R> {
  select<T = RowOf<R>>(columns?: string, options?: { head?: boolean; count?: Count }): PostgrestBuilder<RowOf<R>, T[]>;
  insert(values: InsertOf<R> | InsertOf<R>[], options?: { count?: Count; defaultToNull?: boolean }): PostgrestBuilder<RowOf<R>, null>;
  upsert(
    values: InsertOf<R> | InsertOf<R>[],
    options?: { onConflict?: string; ignoreDuplicates?: boolean; count?: Count; defaultToNull?: boolean },
  ): PostgrestBuilder<RowOf<R>, null>;
  update(values: UpdateOf<R>, options?: { count?: Count }): PostgrestBuilder<RowOf<R>, null>;
  delete(options?: { count?: Count }): PostgrestBuilder<RowOf<R>, null>;
}

type RpcRow<Ret> = Ret extends (infer I)[] ? (I extends Record<string, unknown> ? I : any) : any;

interface RestDoor<Sch> {
  from<T extends Names<Sch>>(table: T): PostgrestQueryBuilder<Relations<Sch>[T]>;
  rpc<F extends FnNames<Sch>>(
    fn: F,
    args?: FnOf<Sch, F>['Args'],
    options?: { head?: boolean; get?: boolean; count?: Count },
  ): PostgrestBuilder<RpcRow<FnOf<Sch, F>['Returns']>, FnOf<Sch, F>['Returns']>;
}

// ---------------------------------------------------------------- auth
export interface User {
  id: string;
  aud: string;
  role?: string;
  email?: string;
  phone?: string;
  is_anonymous?: boolean;
  app_metadata: Record<string, any>;
  user_metadata: Record<string, any>;
  created_at: string;
  [key: string]: any;
}
export interface Session {
  access_token: string;
  refresh_token: string;
  token_type: string;
  expires_in: number;
  /** Seconds since the epoch. */
  expires_at: number;
  user: User;
}
export type AuthChangeEvent = 'INITIAL_SESSION' | 'SIGNED_IN' | 'SIGNED_OUT' | 'TOKEN_REFRESHED' | 'USER_UPDATED' | 'PASSWORD_RECOVERY';
export type AuthResponse =
  | { data: { user: User | null; session: Session | null }; error: null }
  | { data: { user: null; session: null }; error: AuthError };
export type UserResponse = { data: { user: User }; error: null } | { data: { user: null }; error: AuthError };
interface Captcha { captchaToken?: string }

export declare class Auth {
  /** The session as it is now (no refresh), or null. */
  readonly currentSession: Session | null;
  signUp(credentials: { email?: string; phone?: string; password: string; options?: Captcha & { data?: object; emailRedirectTo?: string } }): Promise<AuthResponse>;
  signInWithPassword(credentials: { email?: string; phone?: string; password: string; options?: Captcha }): Promise<AuthResponse>;
  signInAnonymously(credentials?: { options?: Captcha & { data?: object } }): Promise<AuthResponse>;
  signInWithOtp(credentials: { email?: string; phone?: string; options?: Captcha & { data?: object; emailRedirectTo?: string; shouldCreateUser?: boolean } }): Promise<{ data: { user: null; session: null; messageId?: string | null }; error: AuthError | null }>;
  verifyOtp(params: { email?: string; phone?: string; token?: string; token_hash?: string; type: 'email' | 'signup' | 'magiclink' | 'recovery' | 'invite' | 'email_change' | 'sms' | 'phone_change'; options?: Captcha & { redirectTo?: string } }): Promise<AuthResponse>;
  signOut(options?: { scope?: 'global' | 'local' | 'others' }): Promise<{ error: AuthError | null }>;
  getSession(): Promise<{ data: { session: Session | null }; error: AuthError | null }>;
  setSession(tokens: { access_token: string; refresh_token: string }): Promise<AuthResponse>;
  getUser(jwt?: string): Promise<UserResponse>;
  refreshSession(current?: { refresh_token: string }): Promise<AuthResponse>;
  updateUser(attributes: { email?: string; phone?: string; password?: string; current_password?: string; nonce?: string; data?: object }, options?: { emailRedirectTo?: string }): Promise<UserResponse>;
  resetPasswordForEmail(email: string, options?: Captcha & { redirectTo?: string }): Promise<{ data: {} | null; error: AuthError | null }>;
  onAuthStateChange(callback: (event: AuthChangeEvent, session: Session | null) => void): {
    data: { subscription: { callback: (event: AuthChangeEvent, session: Session | null) => void; unsubscribe(): void } };
  };
}

// ---------------------------------------------------------------- storage
export type StorageResult<T> = { data: T; error: null } | { data: null; error: StorageError };
export interface Bucket {
  id: string;
  name: string;
  owner?: string;
  public: boolean;
  file_size_limit?: number | null;
  allowed_mime_types?: string[] | null;
  created_at: string;
  updated_at: string;
}
export interface FileObject {
  name: string;
  id: string | null;
  bucket_id?: string;
  updated_at: string | null;
  created_at: string | null;
  last_accessed_at: string | null;
  metadata: Record<string, any> | null;
}
export interface FileOptions {
  upsert?: boolean;
  contentType?: string;
  cacheControl?: string | number;
  metadata?: Record<string, any>;
  /** Force (true) or forbid (false) a TUS upload; default: TUS above the threshold. */
  resumable?: boolean;
}
export type FileBody = Blob | ArrayBuffer | ArrayBufferView | string | FormData | ReadableStream<Uint8Array>;
export interface BucketOptions {
  public?: boolean;
  fileSizeLimit?: number | string | null;
  allowedMimeTypes?: string[] | null;
}

export interface StorageFileApi {
  upload(path: string, body: FileBody, options?: FileOptions): Promise<StorageResult<{ path: string; id?: string; fullPath?: string }>>;
  update(path: string, body: FileBody, options?: FileOptions): Promise<StorageResult<{ path: string; id?: string; fullPath?: string }>>;
  download(path: string, options?: { download?: string | boolean }): Promise<StorageResult<Blob>>;
  list(prefix?: string, options?: { limit?: number; offset?: number; sortBy?: { column: string; order: 'asc' | 'desc' }; search?: string }): Promise<StorageResult<FileObject[]>>;
  remove(paths: string[]): Promise<StorageResult<FileObject[]>>;
  move(from: string, to: string, options?: { destinationBucket?: string }): Promise<StorageResult<{ message: string }>>;
  copy(from: string, to: string, options?: { destinationBucket?: string }): Promise<StorageResult<{ path: string }>>;
  createSignedUrl(path: string, expiresIn: number, options?: { download?: string | boolean }): Promise<StorageResult<{ signedUrl: string }>>;
  createSignedUploadUrl(path: string, options?: { upsert?: boolean }): Promise<StorageResult<{ signedUrl: string; path: string; token: string }>>;
  uploadToSignedUrl(path: string, token: string, body: FileBody, options?: FileOptions): Promise<StorageResult<{ path: string; fullPath?: string }>>;
  getPublicUrl(path: string, options?: { download?: string | boolean }): { data: { publicUrl: string } };
}

export declare class StorageClient {
  from(bucket: string): StorageFileApi;
  listBuckets(): Promise<StorageResult<Bucket[]>>;
  getBucket(id: string): Promise<StorageResult<Bucket>>;
  createBucket(id: string, options?: BucketOptions): Promise<StorageResult<{ name: string }>>;
  updateBucket(id: string, options: BucketOptions): Promise<StorageResult<{ message: string }>>;
  emptyBucket(id: string): Promise<StorageResult<{ message: string }>>;
  deleteBucket(id: string): Promise<StorageResult<{ message: string }>>;
}

// ---------------------------------------------------------------- realtime (src/realtime.js)
export type ChannelStatus = 'SUBSCRIBED' | 'CHANNEL_ERROR' | 'TIMED_OUT' | 'CLOSED';
export interface RealtimeChannel {
  on(type: 'postgres_changes', filter: { event: '*' | 'INSERT' | 'UPDATE' | 'DELETE'; schema: string; table?: string; filter?: string }, callback: (payload: any) => void): this;
  on(type: 'broadcast', filter: { event: string }, callback: (payload: any) => void): this;
  on(type: 'presence', filter: { event: 'sync' | 'join' | 'leave' }, callback: (payload: any) => void): this;
  on(type: 'system', filter: {}, callback: (payload: any) => void): this;
  subscribe(callback?: (status: ChannelStatus, err?: Error) => void, timeout?: number): this;
  send(message: { type: 'broadcast'; event: string; payload?: any }): Promise<'ok' | 'error' | 'timed out'>;
  track(state: Record<string, any>): Promise<'ok' | 'error' | 'timed out'>;
  untrack(): Promise<'ok' | 'error' | 'timed out'>;
  presenceState(): Record<string, any[]>;
  unsubscribe(): Promise<'ok' | 'timed out'>;
}

// ---------------------------------------------------------------- what supabase-js lacks
export interface QueueState {
  status: 'online' | 'offline' | 'syncing';
  pending: number;
  failed: number;
  error: Error | null;
}
export declare class OfflineQueue {
  readonly status: 'online' | 'offline' | 'syncing';
  readonly error: Error | null;
  pending(): number;
  failed(): Array<{ id: string; method: string; url: string; body?: string; status: number; error: unknown }>;
  flush(): Promise<{ sent: number; failed: number; pending: number }>;
  subscribe(callback: (state: QueueState) => void): () => void;
}

export interface StoreEvent {
  key: string | null;
  oldValue: string | null;
  newValue: string | null;
  origin: 'local' | 'tab' | 'remote';
}
/** The Web Storage interface, kept in doska per signed-in user. */
export declare class LocalStore {
  readonly length: number;
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
  clear(): void;
  key(index: number): string | null;
  subscribe(callback: (event: StoreEvent) => void): () => void;
  /** Resolves when every local write has reached the server, or with the server's refusal (the writes stay pending). */
  flush(): Promise<{ error: Error | null }>;
  close(): void;
}

export type ImportPlanEntry = { table: string; rows?: (parsed: any) => any[] | any; onConflict?: string; batch?: number } | { store: string };
export interface ImportResult {
  imported: Record<string, number>;
  skipped: string[];
  errors: { key: string; message: string }[];
}

// ---------------------------------------------------------------- the client
export interface WebStorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}
export interface ClientOptions<S extends string = string> {
  /** Default globalThis.fetch. */
  fetch?: typeof fetch;
  /** Default globalThis.WebSocket (Node 20 has none: pass `ws`). */
  WebSocket?: any;
  /** Where session, queue and cache persist; default localStorage in browsers, memory elsewhere. */
  storage?: WebStorageLike;
  /** Queue writes that fail for lack of network; answer reads from the last answer. Default false. */
  offline?: boolean;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  db?: { schema?: S };
  /** detectSessionInUrl (default true): take a session a mailed link's redirect put in the URL fragment. */
  auth?: { autoRefreshToken?: boolean; persistSession?: boolean; storageKey?: string; detectSessionInUrl?: boolean };
  /** TUS uploads: above `threshold` bytes (default 6 MB), in chunks of `chunkSize` (default 6 MB). */
  tus?: { threshold?: number; chunkSize?: number };
  realtime?: Record<string, any>;
}

export declare class DoskaClient<DB = any, S extends string = 'public'> implements RestDoor<SchemaOf<DB, S>> {
  /** The base URL, without a trailing slash. */
  readonly url: string;
  readonly key: string;
  readonly options: ClientOptions<S>;
  readonly storageArea: WebStorageLike;
  /** A random id kept in `storageArea`: clients sharing a storage are tabs of one device. */
  readonly deviceId: string;
  readonly auth: Auth;
  readonly storage: StorageClient;
  /** The offline queue with `offline: true`, else null. */
  readonly offline: OfflineQueue | null;
  constructor(url: string, key: string, options?: ClientOptions<S>);
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** apikey and Authorization (the session's access token, refreshed first, or the key) plus `headers`. */
  headers(): Promise<Record<string, string>>;
  from<T extends Names<SchemaOf<DB, S>>>(table: T): PostgrestQueryBuilder<Relations<SchemaOf<DB, S>>[T]>;
  rpc<F extends FnNames<SchemaOf<DB, S>>>(
    fn: F,
    args?: FnOf<SchemaOf<DB, S>, F>['Args'],
    options?: { head?: boolean; get?: boolean; count?: Count },
  ): PostgrestBuilder<RpcRow<FnOf<SchemaOf<DB, S>, F>['Returns']>, FnOf<SchemaOf<DB, S>, F>['Returns']>;
  schema<N extends string & keyof DB>(name: N): RestDoor<SchemaOf<DB, N>>;
  channel(name: string, options?: { config?: { broadcast?: { self?: boolean; ack?: boolean }; presence?: { key?: string }; private?: boolean } }): RealtimeChannel;
  removeChannel(channel: RealtimeChannel): Promise<'ok' | 'error' | 'timed out'>;
  removeAllChannels(): Promise<Array<'ok' | 'error' | 'timed out'>>;
  getChannels(): RealtimeChannel[];
  /** A Web-Storage-like store kept in doska for the signed-in user, live across tabs and devices. */
  localStore(name: string): Promise<LocalStore>;
  importLocalStorage(
    plan: Record<string, ImportPlanEntry>,
    options?: { source?: { getItem(key: string): string | null }; onProgress?: (p: { key: string; done: number; total: number }) => void },
  ): Promise<ImportResult>;
}

export declare function createClient<
  DB = any,
  S extends string = 'public' extends keyof DB ? 'public' : string & keyof DB,
>(url: string, key: string, options?: ClientOptions<S>): DoskaClient<DB, S>;

/** A Web-Storage-like area in memory (what Node gets by default). */
export declare function memoryStorage(): WebStorageLike;
export declare function importLocalStorage(client: DoskaClient<any, any>, plan: Record<string, ImportPlanEntry>, options?: { source?: { getItem(key: string): string | null }; onProgress?: (p: { key: string; done: number; total: number }) => void }): Promise<ImportResult>;
/** The REST builder's class (what `from(t).select()` and friends return). */
export declare const PostgrestQuery: new (client: DoskaClient<any, any>, path: string, schema?: string) => PostgrestBuilder<any, any>;
export declare const Channel: new (...args: any[]) => RealtimeChannel;
export declare const Realtime: new (client: DoskaClient<any, any>) => {
  channel(name: string, options?: object): RealtimeChannel;
  removeChannel(channel: RealtimeChannel): Promise<'ok' | 'error' | 'timed out'>;
  removeAllChannels(): Promise<Array<'ok' | 'error' | 'timed out'>>;
  getChannels(): RealtimeChannel[];
  setAuth(token: string | null): void;
};
export declare class Tabs {
  post(topic: string, message: any): void;
  on(topic: string, callback: (message: any) => void): () => void;
  withLock<T>(name: string, fn: () => Promise<T> | T): Promise<T>;
}
