/** A few DOM helpers: no UI framework, the console is small. */
// The phase model has one owner (libs/migration phase.ts, pure): bundled into the page by esbuild.
import { FINAL_PHASES } from '@vmm/migration/phase';

type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | ((e: Event) => void) | undefined> = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(typeof c === 'object' ? c : String(c));
  return el;
}

export const short = (enumName: string): string => enumName.replace(/^(MIGRATION_PHASE|VM_STATE|NODE_STATE)_/, '');

export function mib(n: number): string {
  return n >= 1024 ? `${(n / 1024).toFixed(1)} GiB` : `${Math.round(n)} MiB`;
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export const PAGE_BYTES = 4096;
/** Final phases, by their short names (`COMPLETED`…). */
export const FINAL: ReadonlySet<string> = new Set<string>(FINAL_PHASES);
