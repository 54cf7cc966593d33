// Bundles the web console (web/src/main.ts, its CSS and uPlot's from npm) into dist/web/ with esbuild:
// console.js, console.css and index.html, served by the controller's HTTP port. No CDN: the machines
// that run the controller may have no internet.
import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = `${root}dist/web`;
await mkdir(out, { recursive: true });
await build({
  entryPoints: { console: `${root}web/src/main.ts` },
  bundle: true,
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  minify: true,
  sourcemap: true,
  outdir: out,
  logLevel: 'warning',
});
await copyFile(`${root}web/index.html`, `${out}/index.html`);
