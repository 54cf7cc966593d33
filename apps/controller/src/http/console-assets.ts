/**
 * The web console's static files: index.html, console.js and console.css, bundled at build time by
 * scripts/build-console.mjs (esbuild; the chart library comes from npm, no CDN) into dist/web/. Every
 * other path that is not the API's or the ops routes' gets index.html (the console routes by `#`).
 */
import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';

/** dist/web beside dist/http (where this module is built to). */
export const CONSOLE_DIR = fileURLToPath(new URL('../web/', import.meta.url));

const TYPES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
};

/** Serves one of the console's files (index.html for any unknown path); 404 saying why when it was not built. */
export async function serveConsoleAsset(path: string, res: ServerResponse, dir = CONSOLE_DIR): Promise<void> {
  const name = path.replace(/^\/+/, '');
  const file = name in TYPES ? name : 'index.html';
  try {
    const body = await readFile(`${dir}${file}`);
    res.writeHead(200, { 'content-type': TYPES[file]!, 'cache-control': 'no-cache' });
    res.end(body);
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(`the web console is not built (${dir}${file} is missing): run npm run build\n`);
  }
}
