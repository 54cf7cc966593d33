import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentStateStore, STATE_FILE } from './agent-state.store.js';

const dirs: string[] = [];
const fresh = () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vmm-state-'));
  dirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('AgentStateStore', () => {
  it('keeps fences and migration ends across a reopen (a restarted agent)', () => {
    const dir = fresh();
    const store = AgentStateStore.open(dir);
    store.update((s) => {
      s.fences['vm-1'] = 3;
      s.migrations['m-1'] = { migrationId: 'm-1', vmId: 'vm-1', role: 'source', state: 'READY', fencingEpoch: 2, updatedAtMs: 5 };
    });
    const again = AgentStateStore.open(dir);
    expect(again.fences()).toEqual({ 'vm-1': 3 });
    expect(again.migrations()).toEqual([{ migrationId: 'm-1', vmId: 'vm-1', role: 'source', state: 'READY', fencingEpoch: 2, updatedAtMs: 5 }]);
  });

  it('changes nothing in memory when the write fails', () => {
    const dir = fresh();
    const store = AgentStateStore.open(dir);
    rmSync(dir, { recursive: true, force: true });
    expect(() => store.update((s) => void (s.fences['vm-1'] = 1))).toThrow();
    expect(store.fences()).toEqual({});
  });

  it('refuses a state file it cannot read rather than starting without its fences', () => {
    const dir = fresh();
    writeFileSync(path.join(dir, STATE_FILE), '{"version": 1, "fences": {"vm-1": 2}');
    expect(() => AgentStateStore.open(dir)).toThrow(/not JSON/);
    writeFileSync(path.join(dir, STATE_FILE), JSON.stringify({ version: 9, fences: {}, migrations: {} }));
    expect(() => AgentStateStore.open(dir)).toThrow(/version-1/);
  });

  it('drops entries it cannot trust (an epoch that is not a safe integer)', () => {
    const dir = fresh();
    writeFileSync(path.join(dir, STATE_FILE), JSON.stringify({ version: 1, fences: { a: 2, b: -1, c: 2 ** 60 }, migrations: {} }));
    expect(AgentStateStore.open(dir).fences()).toEqual({ a: 2 });
  });

  it('without a directory keeps the state in memory only', () => {
    const store = AgentStateStore.open(undefined);
    store.update((s) => void (s.fences.x = 1));
    expect(store.fences()).toEqual({ x: 1 });
    expect(store.directory).toBeUndefined();
  });

  it('writes the whole file each time (no temporary file left behind)', () => {
    const dir = fresh();
    const store = AgentStateStore.open(dir);
    store.update((s) => void (s.fences.x = 1));
    store.update((s) => void (s.fences.y = 2));
    expect(JSON.parse(readFileSync(path.join(dir, STATE_FILE), 'utf8')).fences).toEqual({ x: 1, y: 2 });
    expect(() => readFileSync(path.join(dir, `${STATE_FILE}.tmp`))).toThrow();
  });
});
