// Builds dist/: index.js (ESM, what `import '@doska/client'` loads), doska.min.js (the whole SDK,
// minified, one ESM file) and index.d.ts (the public API's types, src/index.d.ts checked by tsc in
// `npm run typecheck`).
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
await rm(dist, { recursive: true, force: true });
await mkdir(dist);
const common = { entryPoints: [join(root, 'src/index.js')], bundle: true, format: 'esm', target: 'es2022', logLevel: 'warning' };
await build({ ...common, outfile: join(dist, 'index.js') });
await build({ ...common, outfile: join(dist, 'doska.min.js'), minify: true, legalComments: 'none' });
await copyFile(join(root, 'src/index.d.ts'), join(dist, 'index.d.ts'));
