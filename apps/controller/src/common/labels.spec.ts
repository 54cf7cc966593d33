import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors.js';
import { applyLabelChange, describeSelector, matchesSelector, validateLabels } from './labels.js';

const fieldOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidArgumentError);
    return (error as InvalidArgumentError).field;
  }
  return undefined;
};

describe('validateLabels', () => {
  it('accepts a map and names the field of a bad entry', () => {
    expect(validateLabels('node_selector', { disk: 'ssd', empty: '' })).toEqual({ disk: 'ssd', empty: '' });
    expect(fieldOf(() => validateLabels('node_selector', { '': 'x' }))).toBe('node_selector');
    expect(fieldOf(() => validateLabels('labels', { k: 'v'.repeat(254) }))).toBe('labels');
    expect(fieldOf(() => validateLabels('labels', Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']))))).toBe('labels');
  });
});

describe('matchesSelector', () => {
  it.each([
    [{ disk: 'ssd', zone: 'a' }, {}, true],
    [{ disk: 'ssd', zone: 'a' }, undefined, true],
    [{ disk: 'ssd', zone: 'a' }, { disk: 'ssd' }, true],
    [{ disk: 'ssd', zone: 'a' }, { disk: 'ssd', zone: 'b' }, false],
    [{}, { disk: 'ssd' }, false],
    [{}, { toString: '' }, false],
    [{ gpu: '' }, { gpu: '' }, true],
  ] as const)('%j matches %j: %s', (labels, selector, expected) => {
    expect(matchesSelector(labels, selector)).toBe(expected);
  });

  it('describes a selector in key order', () => {
    expect(describeSelector({ zone: 'a', disk: 'ssd' })).toBe('disk=ssd,zone=a');
  });
});

describe('applyLabelChange', () => {
  it('removes, then sets', () => {
    expect(applyLabelChange({ zone: 'a', rack: '1' }, { disk: 'ssd', zone: 'b' }, ['rack', 'absent'])).toEqual({ zone: 'b', disk: 'ssd' });
    expect(applyLabelChange({ zone: 'a' }, {}, [])).toEqual({ zone: 'a' });
  });

  it('refuses bad keys, a key both set and removed, and too many labels in all', () => {
    expect(fieldOf(() => applyLabelChange({}, { '': 'v' }, []))).toBe('labels');
    expect(fieldOf(() => applyLabelChange({}, {}, ['']))).toBe('remove');
    expect(fieldOf(() => applyLabelChange({}, { zone: 'a' }, ['zone']))).toBe('remove');
    const full = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`k${i}`, 'v']));
    expect(fieldOf(() => applyLabelChange(full, { one: 'more' }, []))).toBe('labels');
    expect(Object.keys(applyLabelChange(full, { one: 'more' }, ['k0']))).toHaveLength(64);
  });
});
