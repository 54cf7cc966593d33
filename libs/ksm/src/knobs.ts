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

const UINT32_MAX = 0xffffffff;

/** Checks every field of `patch` (throws InvalidKnobError on the first bad one) and returns the merged knobs. */
export function mergeKnobs(current: Readonly<KsmKnobs>, patch: Partial<KsmKnobs>): KsmKnobs {
  const next: KsmKnobs = { ...current };
  for (const [name, value] of Object.entries(patch)) {
    if (value === undefined) continue;
    switch (name) {
      case 'run':
        if (value !== 0 && value !== 1 && value !== 2) throw new InvalidKnobError(name, value, 'must be 0, 1 or 2');
        next.run = value;
        break;
      case 'use_zero_pages':
        if (value !== 0 && value !== 1) throw new InvalidKnobError(name, value, 'must be 0 or 1');
        next.use_zero_pages = value;
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
