// `npm run cluster` is what external test clients use (docs/api.md, "A local cluster" and "version 2"):
// check its contract end to end through the built launcher: the ready line, the nodes it registers,
// the token, that a process that dies is one process down (not the end of the cluster), and that
// SIGINT/SIGTERM leave no process, port, file or Redis key behind.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, expect, inject, it } from 'vitest';
import { cluster } from '@vmm/proto';
import { REPO_ROOT } from '@vmm/local-cluster/cluster';
import { clusterCredentials } from '@vmm/local-cluster/cluster-credentials';
import { clusterApi } from '@vmm/local-cluster/grpc-client';
import { checkHealth } from '@vmm/local-cluster/health';
import { freePort } from '@vmm/local-cluster/ports';
import { countPrefix } from './support/redis-prefix.js';
import { expectGrpcError, status } from './support/grpc.js';
import { childPids, cleanUpLaunchers, isAlive, launchCluster, LAUNCHER_MAIN } from './support/launcher.js';
import { waitFor } from './support/wait-for.js';

const REPORT_INTERVAL_MS = 300;
// 3 missed intervals, plus slack for a 2-core machine running the cluster and vitest.
const NOT_READY_WITHIN_MS = 3 * REPORT_INTERVAL_MS + 5000;

afterEach(cleanUpLaunchers);

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

it.each(['SIGINT', 'SIGTERM'] as const)(
  'starts agents with the documented defaults, requires --token, and %s removes everything',
  async (signal) => {
    const port = await freePort();
    const redisUrl = inject('redisUrl');
    const l = await launchCluster(['--agents', '2', '--port', String(port), '--token', 'cli-token'], { REDIS_URL: redisUrl, LOG_LEVEL: 'warn' });
    const line = l.readyLine;
    expect(line).toContain(`127.0.0.1:${port}`);
    const prefix = /prefix (\S+?)[;)]/.exec(line)?.[1];
    expect(prefix, line).toBeTruthy();
    // With REDIS_URL the launcher starts no Redis of its own.
    expect([...l.processes.keys()]).toEqual(['controller', 'node-1', 'node-2']);

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

    l.child.kill(signal);
    expect(await l.exited).toBe(0);
    for (const p of [port, ...agentPorts]) expect(await portOpen(p), `port ${p} closed`).toBe(false);
    for (const p of l.processes.values()) expect(isAlive(p.pid), `${p.name} (pid ${p.pid}) gone`).toBe(false);
    expect(existsSync(l.tempDir), l.tempDir).toBe(false);
    // Keys are removed after the controller stopped, so nothing can write them again.
    await waitFor(async () => (await countPrefix(redisUrl, prefix!)) === 0, 5000, 'prefix removed');
  },
);

it('without --supervise, a killed agent is one node down, a killed controller or Redis leaves the agents running; SIGTERM then stops every process', async () => {
  const port = await freePort();
  // No REDIS_URL: the launcher's own redis-server is one of its processes too.
  const l = await launchCluster(['--agents', '3', '--port', String(port), '--report-interval-ms', String(REPORT_INTERVAL_MS)], {
    REDIS_URL: undefined,
    LOG_LEVEL: 'warn',
  });
  const pid = (name: string) => l.processes.get(name)!.pid;
  expect([...l.processes.keys()]).toEqual(['redis', 'controller', 'node-1', 'node-2', 'node-3']);
  // Agents serve mutual TLS only: health with the operator's certificate, from the cluster's own directory.
  const operator = clusterCredentials({ certsDir: path.join(l.tempDir, 'certs'), insecure: false, apiTls: false }).as('operator');
  // The printed pids are exactly the launcher's children.
  expect(childPids(l.child.pid!)).toEqual([...l.processes.values()].map((p) => p.pid).sort((a, b) => a - b));
  expect(existsSync(l.tempDir)).toBe(true);

  process.kill(pid('node-2'), 'SIGKILL');
  await waitFor(() => l.stderr().includes(`node-2 (pid ${pid('node-2')}) died (code null, signal SIGKILL)`), 10_000, 'the death line');
  const api = clusterApi(`127.0.0.1:${port}`);
  try {
    // The controller notices (reports stopped) and still answers; the other nodes stay READY.
    const nodes = await waitFor(
      async () => {
        const listed = (await api.listNodes({})).nodes;
        return listed.find((n) => n.nodeId === 'node-2')?.state === cluster.NodeState.NODE_STATE_NOT_READY ? listed : undefined;
      },
      NOT_READY_WITHIN_MS,
      'node-2 NOT_READY',
    );
    expect(nodes.map((n) => [n.nodeId, n.state])).toEqual([
      ['node-1', cluster.NodeState.NODE_STATE_READY],
      ['node-2', cluster.NodeState.NODE_STATE_NOT_READY],
      ['node-3', cluster.NodeState.NODE_STATE_READY],
    ]);
  } finally {
    api.close();
  }
  for (const name of ['redis', 'controller', 'node-1', 'node-3']) expect(isAlive(pid(name)), `${name} alive`).toBe(true);
  expect(l.child.exitCode).toBeNull();

  process.kill(pid('controller'), 'SIGKILL');
  await waitFor(() => l.stderr().includes(`controller (pid ${pid('controller')}) died`), 10_000, 'the controller\'s death line');
  // The agents live on, answering health NOT_SERVING: they have no link to the controller (#12.3).
  for (const name of ['node-1', 'node-3']) {
    await waitFor(async () => (await checkHealth(l.processes.get(name)!.address, '', 5000, operator)) === 'NOT_SERVING', 10_000, `${name} to answer NOT_SERVING`);
  }
  expect(l.child.exitCode).toBeNull();
  // Not restarted: still one child process fewer each.
  expect(childPids(l.child.pid!)).toEqual([pid('redis'), pid('node-1'), pid('node-3')].sort((a, b) => a - b));

  // Redis too: the agents go on without it.
  process.kill(pid('redis'), 'SIGKILL');
  await waitFor(() => l.stderr().includes(`redis (pid ${pid('redis')}) died`), 10_000, 'Redis\'s death line');
  for (const name of ['node-1', 'node-3']) expect(await checkHealth(l.processes.get(name)!.address, '', 5000, operator), `${name} answers`).toBe('NOT_SERVING');
  expect(childPids(l.child.pid!)).toEqual([pid('node-1'), pid('node-3')].sort((a, b) => a - b));
  expect(l.child.exitCode).toBeNull();

  l.child.kill('SIGTERM');
  expect(await l.exited).toBe(0);
  for (const p of l.processes.values()) expect(isAlive(p.pid), `${p.name} (pid ${p.pid}) gone`).toBe(false);
  expect(existsSync(l.tempDir), `${l.tempDir} removed`).toBe(false);
});

it('with --supervise, a killed agent is restarted on the same port as the same node, and SIGTERM stops the new process too', async () => {
  const port = await freePort();
  const l = await launchCluster(
    ['--agents', '2', '--port', String(port), '--report-interval-ms', String(REPORT_INTERVAL_MS), '--supervise'],
    { REDIS_URL: inject('redisUrl'), LOG_LEVEL: 'warn' },
  );
  expect(l.readyLine).toContain('supervised');
  const old = l.processes.get('node-1')!;
  process.kill(old.pid, 'SIGKILL');
  const restarted = await waitFor(
    () => new RegExp(`restarted node-1: pid ${old.pid} exited \\(code null, signal SIGKILL\\), new pid (\\d+) \\(restart 1\\)`).exec(l.stderr()),
    10_000,
    'the restart line',
  );
  const newPid = Number(restarted[1]);
  l.processes.set('node-1', { ...old, pid: newPid }); // so that the cleanup knows it
  expect(childPids(l.child.pid!)).toContain(newPid);
  const api = clusterApi(`127.0.0.1:${port}`);
  try {
    await waitFor(
      async () => {
        const node = await api.getNode({ nodeId: 'node-1' });
        return node.state === cluster.NodeState.NODE_STATE_READY && node.address === old.address;
      },
      20_000,
      'node-1 READY at its old address',
    );
  } finally {
    api.close();
  }
  l.child.kill('SIGTERM');
  expect(await l.exited).toBe(0);
  for (const p of l.processes.values()) expect(isAlive(p.pid), `${p.name} (pid ${p.pid}) gone`).toBe(false);
  expect(isAlive(old.pid)).toBe(false);
  expect(existsSync(l.tempDir)).toBe(false);
});

it('rejects a bad command line with exit code 2 and the usage', async () => {
  for (const args of [['--agents', 'zero'], ['--hypervisor', 'xen'], ['--token', 't', '--read-token', 't']]) {
    const child = spawn(process.execPath, [LAUNCHER_MAIN, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise((r) => child.once('exit', r));
    expect(code, args.join(' ')).toBe(2);
    expect(err).toMatch(new RegExp(args[args.length - 2]!));
    expect(err).toMatch(/usage: npm run cluster/);
  }
});
