// @doska/client: supabase-js's surface for a web app (REST, auth, storage, realtime) plus what it
// lacks (localStore, an offline queue, importLocalStorage, cross-tab sync), in one small ESM package.
export { createClient, DoskaClient, memoryStorage } from './client.js';
export { PostgrestQuery } from './rest.js';
export { Auth } from './auth.js';
export { StorageClient } from './storage.js';
export { Realtime, Channel } from './realtime.js';
export { OfflineQueue } from './offline.js';
export { LocalStore } from './localstore.js';
export { importLocalStorage } from './import.js';
export { Tabs } from './tabs.js';
