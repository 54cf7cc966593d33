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

/** A numeric knob's accepted values. */
export interface KnobRange {
  readonly min: number;
  readonly max: number;
}

/**
 * The numeric knobs' ranges: Linux's lower bounds, and upper bounds this emulation can honour.
 * pages_to_scan is scanned in one synchronous batch (Linux accepts up to 2^32, which here would hold
 * the event loop for hours): 100,000 pages is about half a second. sleep_millisecs stays below a
 * Node timer's limit (2^31−1 ms fires at once): an hour. max_page_sharing: a million pages per KSM page.
 * The agent's KSM_* variables and the controller's SetNodeKsm check against these same ranges.
 */
export const KNOB_RANGES = {
  run: { min: 0, max: 2 },
  pages_to_scan: { min: 1, max: 100_000 },
  sleep_millisecs: { min: 0, max: 3_600_000 },
  max_page_sharing: { min: 2, max: 1_000_000 },
  use_zero_pages: { min: 0, max: 1 },
} as const satisfies Record<keyof KsmKnobs, KnobRange>;

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
      case 'sleep_millisecs':
      case 'max_page_sharing':
        next[name] = integer(name, value, KNOB_RANGES[name]);
        break;
      default:
        throw new InvalidKnobError(name, value, 'unknown knob');
    }
  }
  return next;
}

function integer(name: string, value: unknown, range: KnobRange): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < range.min || value > range.max) {
    throw new InvalidKnobError(name, value, `must be an integer in ${range.min}..${range.max}`);
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
