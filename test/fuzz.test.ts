// 60 s of `npm run fuzz` (issue #9, point 5), as CI runs it: random and boundary input to every
// ClusterService and AgentService method and to a data port, 1,000 idle connections; no process
// exits, nothing is answered UNKNOWN or INTERNAL, refused calls change nothing, RSS comes back.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { REPO_ROOT } from '@vmm/local-cluster/cluster';

const run = promisify(execFile);
const FUZZ = path.join(REPO_ROOT, 'tools/fuzz/dist/main.js');
const SECONDS = Number(process.env.FUZZ_SECONDS ?? '60');

it(`survives ${SECONDS} s of fuzzing with no crash and no violation`, { timeout: (SECONDS + 180) * 1000 }, async () => {
  const seed = Number(process.env.FUZZ_SEED ?? String(Date.now() % 100_000));
  const result = await run(process.execPath, [FUZZ, '--seconds', String(SECONDS), '--seed', String(seed)], {
    cwd: REPO_ROOT,
    env: { ...process.env, REDIS_URL: '' },
    timeout: (SECONDS + 170) * 1000,
    maxBuffer: 16 * 1024 * 1024,
  }).catch((err: { stdout?: string; stderr?: string; code?: number }) => err);
  const line = (result.stdout ?? '').trim().split('\n').at(-1) ?? '';
  const summary = JSON.parse(line || '{}') as { calls?: number; crashes?: string[]; violations?: string[]; byStatus?: Record<string, number>; dataConnections?: number; idleConnections?: number };
  process.stdout.write(`fuzz seed ${seed}: ${line}\n`);
  expect(summary.crashes, result.stderr).toEqual([]);
  expect(summary.violations, result.stderr).toEqual([]);
  expect(summary.calls).toBeGreaterThan(100);
  expect(summary.byStatus?.UNKNOWN ?? 0).toBe(0);
  expect(summary.byStatus?.INTERNAL ?? 0).toBe(0);
  expect(summary.dataConnections).toBeGreaterThan(0);
  expect(summary.idleConnections).toBeGreaterThanOrEqual(2000);
});
