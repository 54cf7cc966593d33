import { InvalidKnobError } from './errors.js';

/** ksmd's tunables, named and ranged as in /sys/kernel/mm/ksm (Documentation/admin-guide/mm/ksm.rst). */
export interface KsmKnobs {
  /** 0: stop ksmd, keep merged pages; 1: run; 2: stop and unmerge every merged page. */
  run: 0 | 1 | 2;
  /** Pages ksmd scans per batch (Linux default 100). */
  pages_to_scan: number;
  /** Sleep between batches in ms (Linux default 20). */
  sleep_millisecs: number;
  /** Most pages one KSM page may back before another KSM page of the same content is made (default 256, min 2). */
  max_page_sharing: number;
  /** 1: a page found all-zero is unbacked (mapped to the zero page) instead of merged into a KSM page. */
  use_zero_pages: 0 | 1;
}

export const DEFAULT_KNOBS: Readonly<KsmKnobs> = Object.freeze({
  run: 0,
  pages_to_scan: 100,
  sleep_millisecs: 20,
  max_page_sharing: 256,
  use_zero_pages: 0,
});

/** A change of knobs; use_zero_pages may also be a boolean (cluster.v1.KsmKnobs carries a bool). */
export type KsmKnobsPatch = Partial<Omit<KsmKnobs, 'use_zero_pages'>> & { use_zero_pages?: 0 | 1 | boolean };

const UINT32_MAX = 0xffffffff;

/** Checks every field of `patch` (throws InvalidKnobError on the first bad one) and returns the merged knobs. */
export function mergeKnobs(current: Readonly<KsmKnobs>, patch: KsmKnobsPatch): KsmKnobs {
  const next: KsmKnobs = { ...current };
  for (const [name, value] of Object.entries(patch)) {
    if (value === undefined) continue;
    switch (name) {
      case 'run':
        if (value !== 0 && value !== 1 && value !== 2) throw new InvalidKnobError(name, value, 'must be 0, 1 or 2');
        next.run = value;
        break;
      case 'use_zero_pages':
        if (value !== 0 && value !== 1 && typeof value !== 'boolean') throw new InvalidKnobError(name, value, 'must be 0, 1 or a boolean');
        next.use_zero_pages = value === true || value === 1 ? 1 : 0;
        break;
      case 'pages_to_scan':
        next.pages_to_scan = integer(name, value, 1, UINT32_MAX);
        break;
      case 'sleep_millisecs':
        next.sleep_millisecs = integer(name, value, 0, UINT32_MAX);
        break;
      case 'max_page_sharing':
        next.max_page_sharing = integer(name, value, 2, 0x7fffffff);
        break;
      default:
        throw new InvalidKnobError(name, value, 'unknown knob');
    }
  }
  return next;
}

function integer(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidKnobError(name, value, `must be an integer in ${min}..${max}`);
  }
  return value;
}

/** Environment variables of the node agent (docs/internals.md) and the knob each sets. */
export const KSM_ENV: Readonly<Record<string, keyof KsmKnobs>> = Object.freeze({
  KSM_RUN: 'run',
  KSM_PAGES_TO_SCAN: 'pages_to_scan',
  KSM_SLEEP_MILLISECS: 'sleep_millisecs',
  KSM_MAX_PAGE_SHARING: 'max_page_sharing',
  KSM_USE_ZERO_PAGES: 'use_zero_pages',
});

/**
 * The knobs set in `env` (unset or empty variables are left out), checked like configure() would:
 * a malformed value throws InvalidKnobError naming the variable's knob.
 */
export function knobsFromEnv(env: Readonly<Record<string, string | undefined>>): Partial<KsmKnobs> {
  const patch: Record<string, number> = {};
  for (const [variable, knob] of Object.entries(KSM_ENV)) {
    const text = env[variable]?.trim();
    if (text === undefined || text === '') continue;
    if (!/^-?\d+$/.test(text)) throw new InvalidKnobError(knob, text, `${variable} must be an integer`);
    patch[knob] = Number(text);
  }
  mergeKnobs(DEFAULT_KNOBS, patch as Partial<KsmKnobs>);
  return patch as Partial<KsmKnobs>;
}
