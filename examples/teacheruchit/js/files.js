// Opens a stored file through a short-lived signed URL: the file's bucket is private, so the link
// works only for the one who asked, for a minute.
import { busy, explain, toast } from './ui.js';

/**
 * @param {any} db
 * @param {string} filePath `bucket/key` as the materials table keeps it
 * @param {HTMLButtonElement} button shows the loading state
 */
export function openFile(db, filePath, button) {
  const [bucket, ...rest] = filePath.split('/');
  const key = rest.join('/');
  return busy(button, async () => {
    const { data, error } = await db.storage.from(bucket).createSignedUrl(key, 60, { download: true });
    if (error) return toast(explain(error, error.statusCode ?? error.status), 'error');
    const a = document.createElement('a');
    a.href = data.signedUrl;
    a.download = key.split('/').pop() ?? 'file';
    document.body.append(a);
    a.click();
    a.remove();
  });
}
