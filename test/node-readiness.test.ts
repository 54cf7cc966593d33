// A node whose agent stops reporting becomes NOT_READY within 3 report intervals (plus slack), is
// not placed on, and is READY again once its agent reports.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, type TestCluster } from './support/cluster.js';
import { expectGrpcError, status } from './support/grpc.js';
import { vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';

const REPORT_INTERVAL_MS = 300;
// 3 missed intervals, plus slack for a 2-core machine running the controller, agents and vitest.
const NOT_READY_WITHIN_MS = 3 * REPORT_INTERVAL_MS + 3000;

let c: TestCluster;
let api: ClusterApi;

beforeAll(async () => {
  c = await startTestCluster({ agents: 2, reportIntervalMs: REPORT_INTERVAL_MS });
  api = c.api();
});

afterAll(async () => {
  api?.close();
  await c?.stop();
});

const nodeState = async (nodeId: string) => (await api.getNode({ nodeId })).state;

it('a stopped (SIGSTOP) agent: NOT_READY, not placed on, READY after SIGCONT', async () => {
  await c.killAgent(1, 'SIGSTOP');
  try {
    await waitFor(async () => (await nodeState('node-2')) === cluster.NodeState.NODE_STATE_NOT_READY, NOT_READY_WITHIN_MS, 'node-2 NOT_READY');
    const placed = [];
    for (let i = 0; i < 4; i++) placed.push(await api.createVm(vmRequest({ name: `while-stopped-${i}` })));
    expect(placed.map((v) => v.nodeId)).toEqual(['node-1', 'node-1', 'node-1', 'node-1']);
    await expectGrpcError(api.createVm(vmRequest({ nodeId: 'node-2' })), status.FAILED_PRECONDITION);
    expect(await nodeState('node-1')).toBe(cluster.NodeState.NODE_STATE_READY);
  } finally {
    await c.killAgent(1, 'SIGCONT');
  }
  await waitFor(async () => (await nodeState('node-2')) === cluster.NodeState.NODE_STATE_READY, 10_000, 'node-2 READY again');
  const vm = await api.createVm(vmRequest({ nodeId: 'node-2' }));
  expect(vm.nodeId).toBe('node-2');
});

it('a killed agent: NOT_READY; a new agent process for the node: READY', async () => {
  const before = (await api.getNode({ nodeId: 'node-2' })).lastReportMs;
  await c.killAgent(1, 'SIGKILL');
  await waitFor(async () => (await nodeState('node-2')) === cluster.NodeState.NODE_STATE_NOT_READY, NOT_READY_WITHIN_MS, 'node-2 NOT_READY');
  const placed = await api.createVm(vmRequest({ name: 'while-dead' }));
  expect(placed.nodeId).toBe('node-1');

  await c.startAgent(1);
  await waitFor(async () => {
    const node = await api.getNode({ nodeId: 'node-2' });
    return node.state === cluster.NodeState.NODE_STATE_READY && node.lastReportMs > before;
  }, 10_000, 'node-2 READY after restart');
  expect(c.controller.running).toBe(true);
  expect(c.agents[0]!.process.running).toBe(true);
});
