// `npm run cluster` is what external test clients use (docs/api.md, "A local cluster for clients and tests"): check its contract
// end to end through the built launcher — the ready line, the nodes it registers, the token, and
// that SIGINT/SIGTERM leave no process, port or Redis key behind.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { afterEach, expect, inject, it } from 'vitest';
import { cluster } from '@vmm/proto';
import { REPO_ROOT } from '@vmm/local-cluster/cluster';
import { clusterApi } from '@vmm/local-cluster/grpc-client';
import { freePort } from '@vmm/local-cluster/ports';
import { countPrefix } from './support/redis-prefix.js';
import { expectGrpcError, status } from './support/grpc.js';
import { waitFor } from './support/wait-for.js';

const MAIN = path.join(REPO_ROOT, 'tools/local-cluster/dist/main.js');
let launcher: ChildProcess | undefined;

afterEach(async () => {
  if (launcher && launcher.exitCode === null && launcher.signalCode === null) {
    const exited = new Promise((r) => launcher!.once('exit', r));
    launcher.kill('SIGTERM');
    await exited;
  }
});

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/** Starts the launcher and resolves with its `cluster ready` line. */
function launch(args: string[], env: Record<string, string>): Promise<string> {
  launcher = spawn(process.execPath, [MAIN, ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  launcher.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    launcher!.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.includes('cluster ready'));
      if (line) resolve(line);
    });
    launcher!.once('exit', (code) => reject(new Error(`launcher exited with ${code} before ready:\n${err}`)));
  });
}

it.each(['SIGINT', 'SIGTERM'] as const)(
  'starts agents with the documented defaults, requires --token, and %s removes everything',
  async (signal) => {
    const port = await freePort();
    const redisUrl = inject('redisUrl');
    const line = await launch(['--agents', '2', '--port', String(port), '--token', 'cli-token'], { REDIS_URL: redisUrl, LOG_LEVEL: 'warn' });
    expect(line).toContain(`127.0.0.1:${port}`);
    const prefix = /prefix (\S+?)[;)]/.exec(line)?.[1];
    expect(prefix, line).toBeTruthy();

    const api = clusterApi(`127.0.0.1:${port}`, 'cli-token');
    const anonymous = clusterApi(`127.0.0.1:${port}`);
    let agentPorts: number[];
    try {
      const nodes = (await api.listNodes({})).nodes;
      expect(nodes.map((n) => [n.nodeId, n.state, n.memoryMib, n.vcpus])).toEqual([
        ['node-1', cluster.NodeState.NODE_STATE_READY, 8192, 8],
        ['node-2', cluster.NodeState.NODE_STATE_READY, 8192, 8],
      ]);
      agentPorts = nodes.map((n) => Number(n.address.split(':').at(-1)));
      expect(new Set(agentPorts).size).toBe(2);
      for (const n of nodes) expect(n.address).toMatch(/^127\.0\.0\.1:\d+$/);
      await expectGrpcError(anonymous.listNodes({}), status.UNAUTHENTICATED);
      expect(await countPrefix(redisUrl, prefix!)).toBeGreaterThan(0);
    } finally {
      api.close();
      anonymous.close();
    }

    const exited = new Promise<number | null>((r) => launcher!.once('exit', (code) => r(code)));
    launcher!.kill(signal);
    expect(await exited).toBe(0);
    for (const p of [port, ...agentPorts]) expect(await portOpen(p), `port ${p} closed`).toBe(false);
    // Keys are removed after the controller stopped, so nothing can write them again.
    await waitFor(async () => (await countPrefix(redisUrl, prefix!)) === 0, 5000, 'prefix removed');
  },
);

it('rejects a bad command line with exit code 2 and the usage', async () => {
  const child = spawn(process.execPath, [MAIN, '--agents', 'zero'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise((r) => child.once('exit', r));
  expect(code).toBe(2);
  expect(err).toMatch(/--agents/);
  expect(err).toMatch(/usage: npm run cluster/);
});
