// One place where the SDK's doors (REST, auth, storage) meet fetch: it sends with the client's
// headers and turns every answer — JSON, an HTML page from a wrong URL, a thrown fetch — into values,
// never a rejection. Each door shapes the error value in its own dialect from what `send` returns.

/**
 * The error value of a request that never got an answer (fetch threw: offline, DNS, refused).
 * @param {any} e what fetch threw
 */
export const networkError = (e) => ({
  name: e?.name === 'AbortError' ? 'AbortError' : 'NetworkError',
  message: `${e?.name ?? 'Error'}: ${e?.message ?? e}`,
  details: e?.cause ? String(e.cause.message ?? e.cause) : '',
  hint: '',
  code: '',
  status: 0,
});

/**
 * Sends one request; resolves `{res, text, json}` for any HTTP answer or `{thrown}` when fetch threw.
 * `json` is the parsed body, `undefined` when the body is empty, and `bad` marks a body that is not
 * JSON (an HTML page: the URL does not point at doska).
 * @param {import('./client.js').DoskaClient} client
 * @param {string} url
 * @param {RequestInit & {headers?: Record<string,string>}} init
 * @param {{raw?: boolean}} [how] raw: hand back the Response unread (downloads)
 */
export async function send(client, url, init, how = {}) {
  let res, text;
  try {
    res = await client.fetch(url, init);
    if (how.raw && res.ok) return { res };
    text = await res.text();
  } catch (thrown) {
    // No answer, or the connection broke while the body was on its way: the same to the caller.
    return { thrown };
  }
  let json, bad;
  if (text !== '') {
    try {
      json = JSON.parse(text);
    } catch {
      bad = true;
    }
  }
  return { res, text, json, bad };
}

/**
 * The message for an answer that is not JSON where JSON was due (wrong URL, a proxy's error page).
 * @param {Response} res
 * @param {string} url
 * @param {string} text
 */
export const notJson = (res, url, text) => ({
  message: `${url} answered ${res.status} ${res.statusText} with ${res.headers.get('content-type') || 'a body'} that is not JSON: is the URL given to createClient doska's base URL?`,
  details: text.slice(0, 200),
  hint: 'createClient(url, key) takes the base URL, e.g. http://localhost:8000',
  code: 'NOT_JSON',
});

/** Parts of a path, each percent-encoded, slashes kept. @param {string} path */
export const encodePath = (path) => path.split('/').map(encodeURIComponent).join('/');

/** A query string from the defined entries of an object, with its `?`, or ''. @param {Record<string, any>} q */
export const query = (q) => {
  const s = new URLSearchParams(Object.entries(q).filter((e) => e[1] != null)).toString();
  return s && '?' + s;
};

/**
 * A random version-4 UUID. `crypto.randomUUID` exists only in secure contexts (https, localhost);
 * a school's intranet page on plain http still has `crypto.getRandomValues`.
 * @returns {string}
 */
export const uuid = () =>
  crypto.randomUUID?.() ??
  '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) => (+c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (+c / 4)))).toString(16));
