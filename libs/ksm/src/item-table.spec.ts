import { Xoshiro128 } from '@vmm/emulator';
import { describe, expect, it } from 'vitest';
import { ItemTable } from './item-table.js';

function valuesOf(t: ItemTable, key: number): number[] {
  const out: number[] = [];
  for (let s = t.first(key); s !== -1; s = t.next(key, s)) out.push(t.valueAt(s));
  return out.sort((a, b) => a - b);
}

describe('ItemTable', () => {
  it('keeps several values per key and removes exactly one entry', () => {
    const t = new ItemTable();
    t.insert(7, 1);
    t.insert(7, 2);
    t.insert(-5, 3);
    expect(valuesOf(t, 7)).toEqual([1, 2]);
    expect(t.remove(7, 1)).toBe(true);
    expect(t.remove(7, 1)).toBe(false);
    expect(valuesOf(t, 7)).toEqual([2]);
    expect(valuesOf(t, -5)).toEqual([3]);
    expect(valuesOf(t, 8)).toEqual([]);
    t.clear();
    expect(t.size).toBe(0);
    expect(valuesOf(t, 7)).toEqual([]);
  });

  it('matches a reference multimap through growth and random deletions (colliding keys included)', () => {
    const rng = new Xoshiro128(42);
    const t = new ItemTable();
    const ref = new Map<number, number[]>();
    for (let i = 0; i < 20000; i++) {
      const key = rng.nextBelow(3) === 0 ? rng.nextBelow(16) : rng.next() | 0;
      if (rng.nextBelow(3) === 0 && ref.size > 0) {
        const [k, vals] = ref.entries().next().value as [number, number[]];
        expect(t.remove(k, vals[0])).toBe(true);
        vals.shift();
        ref.delete(k);
        if (vals.length > 0) ref.set(k, vals); // re-insert at the end so removals spread over keys
      } else {
        t.insert(key, i);
        ref.set(key, [...(ref.get(key) ?? []), i]);
      }
    }
    let n = 0;
    for (const [k, vals] of ref) {
      expect(valuesOf(t, k)).toEqual([...vals].sort((a, b) => a - b));
      n += vals.length;
    }
    expect(t.size).toBe(n);
  });
});
