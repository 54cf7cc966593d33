import { describe, expect, it } from 'vitest';
import { ZeroRangeBuilder, forEachZeroRange } from './zero-runs.js';

function ranges(build: (b: ZeroRangeBuilder) => void): [number, number][] {
  const buf = new Uint8Array(1024);
  const b = new ZeroRangeBuilder(buf, 16, 1000);
  build(b);
  b.close();
  const out: [number, number][] = [];
  forEachZeroRange(buf.subarray(16, 16 + b.fill), (first, count) => out.push([first, count]));
  return out;
}

describe('zero ranges', () => {
  it('coalesces consecutive pages into one range', () => {
    expect(ranges((b) => [5, 6, 7, 8, 20, 21, 40].forEach((p) => b.add(p)))).toEqual([[5, 4], [20, 2], [40, 1]]);
  });

  it('joins ranges and single pages that touch', () => {
    expect(ranges((b) => { b.addRange(0, 10); b.add(10); b.addRange(11, 5); b.addRange(100, 0); b.add(200); })).toEqual([[0, 16], [200, 1]]);
  });

  it('reports full before a range could overflow the buffer', () => {
    const b = new ZeroRangeBuilder(new Uint8Array(64), 0, 24);
    b.add(1);
    b.add(3);
    expect(b.full).toBe(false);
    b.add(5);
    expect(b.full).toBe(true);
  });
});
