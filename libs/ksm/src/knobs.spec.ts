import { describe, expect, it } from 'vitest';
import { InvalidKnobError } from './errors.js';
import { DEFAULT_KNOBS, knobsFromEnv, mergeKnobs } from './knobs.js';

describe('knobs', () => {
  it.each([
    [{ run: 3 }],
    [{ run: -1 }],
    [{ pages_to_scan: 0 }],
    [{ pages_to_scan: 1.5 }],
    [{ sleep_millisecs: -1 }],
    [{ max_page_sharing: 1 }],
    [{ use_zero_pages: 2 }],
    [{ bogus: 1 }],
  ])('rejects %j like Linux (EINVAL)', (patch) => {
    expect(() => mergeKnobs(DEFAULT_KNOBS, patch as never)).toThrow(InvalidKnobError);
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
