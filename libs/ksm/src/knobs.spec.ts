import { describe, expect, it } from 'vitest';
import { InvalidKnobError } from './errors.js';
import { DEFAULT_KNOBS, knobsFromEnv, mergeKnobs } from './knobs.js';

describe('knobs', () => {
  it.each([
    [{ run: 3 }],
    [{ run: -1 }],
    [{ pages_to_scan: 0 }],
    [{ pages_to_scan: 1.5 }],
    [{ pages_to_scan: 100_001 }],
    [{ pages_to_scan: 2 ** 32 }],
    [{ sleep_millisecs: 3_600_001 }],
    [{ sleep_millisecs: 2 ** 31 }],
    [{ max_page_sharing: 1_000_001 }],
    [{ sleep_millisecs: -1 }],
    [{ max_page_sharing: 1 }],
    [{ use_zero_pages: 2 }],
    [{ bogus: 1 }],
  ])('rejects %j (EINVAL in Linux, or beyond what the emulation can honour), naming the knob', (patch) => {
    expect(() => mergeKnobs(DEFAULT_KNOBS, patch as never)).toThrow(InvalidKnobError);
    expect(() => mergeKnobs(DEFAULT_KNOBS, patch as never)).toThrow(Object.keys(patch)[0]!);
  });

  it('accepts each bound itself', () => {
    expect(mergeKnobs(DEFAULT_KNOBS, { pages_to_scan: 100_000, sleep_millisecs: 3_600_000, max_page_sharing: 1_000_000 })).toMatchObject({
      pages_to_scan: 100_000,
      sleep_millisecs: 3_600_000,
      max_page_sharing: 1_000_000,
    });
  });

  it('merges a valid patch and takes use_zero_pages as a boolean too', () => {
    expect(mergeKnobs(DEFAULT_KNOBS, { run: 1, pages_to_scan: 1000, use_zero_pages: true })).toEqual({
      run: 1,
      pages_to_scan: 1000,
      sleep_millisecs: 20,
      max_page_sharing: 256,
      use_zero_pages: 1,
    });
    expect(mergeKnobs({ ...DEFAULT_KNOBS, use_zero_pages: 1 }, { use_zero_pages: false }).use_zero_pages).toBe(0);
  });

  it('reads the agent environment, leaving unset variables out', () => {
    expect(knobsFromEnv({ KSM_RUN: '1', KSM_PAGES_TO_SCAN: ' 500 ', KSM_SLEEP_MILLISECS: '' })).toEqual({ run: 1, pages_to_scan: 500 });
    expect(knobsFromEnv({})).toEqual({});
    expect(() => knobsFromEnv({ KSM_RUN: 'yes' })).toThrow(InvalidKnobError);
    expect(() => knobsFromEnv({ KSM_PAGES_TO_SCAN: '0' })).toThrow(/pages_to_scan/);
  });
});
