import { describe, expect, it } from 'vitest';
import { redisKeys } from './redis-keys.js';

describe('redisKeys', () => {
  const k = redisKeys('test-abc');
  it('puts every key under the prefix', () => {
    const all = [k.node('n1'), k.nodes(), k.vm('v1'), k.vms(), k.nodeVms('n1'), k.vmNames(), k.antiAffinity('g')];
    for (const key of all) expect(key.startsWith('test-abc:')).toBe(true);
    expect(new Set(all).size).toBe(all.length);
  });

  it('builds the documented shapes (the Lua scripts rebuild node:, aa: and node-vms: from the prefix)', () => {
    expect(k.prefix).toBe('test-abc:');
    expect(k.node('n1')).toBe('test-abc:node:n1');
    expect(k.vm('v1')).toBe('test-abc:vm:v1');
    expect(k.nodeVms('n1')).toBe('test-abc:node-vms:n1');
    expect(k.antiAffinity('g')).toBe('test-abc:aa:g');
  });
});
