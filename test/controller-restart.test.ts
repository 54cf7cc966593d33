// All state lives in Redis: a controller restarted on the same port and prefix serves the same VMs
// and nodes, and the agents reconnect to it on their own.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, type TestCluster } from './support/cluster.js';
import { listAllVms, vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';

const REPORT_INTERVAL_MS = 300;
let c: TestCluster;

beforeAll(async () => {
  c = await startTestCluster({ agents: 2, reportIntervalMs: REPORT_INTERVAL_MS, nodeMemoryMib: 2048, nodeVcpus: 4 });
});

afterAll(async () => {
  await c?.stop();
});

/** A VM without the fields measured by agents (they move between reports). */
function stableVm(vm: cluster.Vm) {
  const { dirtyRatePagesPerSec: _d, workingSetPages: _w, residentPages: _r, ...rest } = vm;
  return rest;
}

/** A node without measured or time fields. */
function stableNode(node: cluster.Node) {
  const { lastReportMs: _l, memoryMibUsed: _m, ksm: _k, ...rest } = node;
  return rest;
}

async function snapshot(api: ClusterApi) {
  const vms = (await listAllVms(api)).map(stableVm).sort((a, b) => a.vmId.localeCompare(b.vmId));
  const nodes = (await api.listNodes({})).nodes.map(stableNode);
  return { vms, nodes };
}

/** Every node counts, and its agent has reported, exactly the VMs placed on it. */
async function reportsAgree(api: ClusterApi): Promise<boolean> {
  const vms = await listAllVms(api);
  const nodes = (await api.listNodes({})).nodes;
  return nodes.every((n) => {
    const placed = vms.filter((v) => v.nodeId === n.nodeId).map((v) => v.vmId).sort();
    const reported = n.reportedVms.map((r) => r.vmId).sort();
    return n.vmCount === placed.length && JSON.stringify(reported) === JSON.stringify(placed);
  });
}

it('a restarted controller serves the same VMs and nodes, and agents reconnect', async () => {
  let api = c.api();
  await api.createVm(vmRequest({ name: 'keep-a', nodeId: 'node-1', labels: { team: 'a' } }));
  await api.createVm(vmRequest({ name: 'keep-b', nodeId: 'node-2', vcpus: 2, memoryMib: 128 }));
  await api.createVm(vmRequest({ name: 'keep-c', antiAffinityGroup: 'grp', image: 'alpine-3.20' }));
  await api.cordonNode({ nodeId: 'node-2' });
  // vm_count and reported_vms follow the agents' reports: wait until both agree with the VMs placed.
  await waitFor(() => reportsAgree(api), 10_000, 'vm_count and reported_vms consistent');
  const before = await snapshot(api);
  expect(before.vms).toHaveLength(3);
  api.close();

  const oldPid = c.controller.pid;
  await c.restartController('SIGTERM');
  expect(c.controller.pid).not.toBe(oldPid);
  for (const a of c.agents) expect(a.process.running, `${a.nodeId} survived the restart`).toBe(true);

  api = c.api();
  try {
    // Once both agents report to the new controller: node-1 READY, node-2 still CORDONED.
    await waitFor(async () => {
      const nodes = (await api.listNodes({})).nodes;
      return (
        nodes.find((n) => n.nodeId === 'node-1')?.state === cluster.NodeState.NODE_STATE_READY &&
        nodes.find((n) => n.nodeId === 'node-2')?.state === cluster.NodeState.NODE_STATE_CORDONED
      );
    }, 15_000, 'agents reconnected');
    await waitFor(() => reportsAgree(api), 10_000, 'reports reach the new controller');
    // Readiness is computed from the last report's age: on a loaded machine one late report can show a
    // node NOT_READY for a moment, so the cluster is compared once it settled (or the wait fails, showing both).
    let after: Awaited<ReturnType<typeof snapshot>> | undefined;
    await waitFor(async () => JSON.stringify((after = await snapshot(api))) === JSON.stringify(before), 10_000, 'the same VMs and nodes').catch(() => undefined);
    expect(after).toEqual(before);

    // Reports flow to the new controller: last_report_ms advances on every node.
    const seen = new Map((await api.listNodes({})).nodes.map((n) => [n.nodeId, n.lastReportMs]));
    await waitFor(async () => {
      const nodes = (await api.listNodes({})).nodes;
      return nodes.every((n) => n.lastReportMs > (seen.get(n.nodeId) ?? 0));
    }, 10 * REPORT_INTERVAL_MS + 5000, 'last_report_ms advancing');

    await api.uncordonNode({ nodeId: 'node-2' });
    await c.waitForNodes([cluster.NodeState.NODE_STATE_READY], 10_000);
    // The restarted controller still schedules: a new VM lands and the old ones are intact.
    const fresh = await api.createVm(vmRequest({ name: 'after-restart' }));
    expect(fresh.state).toBe(cluster.VmState.VM_STATE_RUNNING);
    expect(await listAllVms(api)).toHaveLength(4);
  } finally {
    api.close();
  }
});
