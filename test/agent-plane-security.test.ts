// The closed cluster (issue #9, points 1–3): an intruder test for each finding. The agent plane is
// mutual TLS with certificates from the cluster CA; AgentService answers the controller only; a node
// registers and reports only as itself; the operator certificate reaches health and reflection; the
// API's reader token reads and changes nothing. Every refusal leaves the cluster as it was.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import { credentials, Metadata, type ChannelCredentials } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agent, cluster, promiseClient } from '@vmm/proto';
import { REPO_ROOT } from '@vmm/local-cluster/cluster';
import { certFiles } from '@vmm/local-cluster/cluster-env';
import { clusterApi, type ClusterApi } from '@vmm/local-cluster/grpc-client';
import { checkHealth } from '@vmm/local-cluster/health';
import { makeClusterCerts, mutualTlsChannelCredentials, readTlsMaterial } from '@vmm/tls';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';
import { expectGrpcError, listServicesByReflection, status } from './support/grpc.js';
import { stateSnapshot, vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';

const run = promisify(execFile);
const CLI = path.join(REPO_ROOT, 'apps/cli/dist/main.js');

let c: TestCluster;
let api: ClusterApi;
let foreignDir: string;
let vmId: string;
const vmIds: string[] = [];

function agentClient(address: string, creds: ChannelCredentials) {
  const client = new agent.AgentServiceClient(address, creds);
  return Object.assign(promiseClient(client, agent.AgentServiceService, agent), { close: () => client.close() });
}

function registryClient(address: string, creds: ChannelCredentials) {
  const client = new agent.RegistryServiceClient(address, creds);
  return Object.assign(promiseClient(client, agent.RegistryServiceService, agent), { client, close: () => client.close() });
}

/** A certificate for node-1 made by another CA: right name, wrong cluster. */
function foreign(owner: string): ChannelCredentials {
  const own = readTlsMaterial(certFiles(foreignDir, owner));
  // It trusts our CA (it knows whom it attacks); only its own certificate is foreign.
  return mutualTlsChannelCredentials({ ...own, ca: readTlsMaterial(certFiles(c.certsDir, 'operator')).ca });
}

const DEADLINE = { timeoutMs: 5000 };

beforeAll(async () => {
  foreignDir = await mkdtemp(path.join(os.tmpdir(), 'vmm-foreign-ca-'));
  await makeClusterCerts({ out: foreignDir, nodes: ['node-1'] });
  c = await startTestCluster({ agents: 2, reportIntervalMs: 300 });
  api = c.api();
  const vm = await api.createVm(vmRequest({ name: 'guarded', memoryMib: 64, nodeId: 'node-1' }));
  vmId = vm.vmId;
  vmIds.push(vmId);
});

afterAll(async () => {
  await stopTestCluster(c, api, vmIds);
  await rm(foreignDir, { recursive: true, force: true });
});

/** The VM still runs on node-1, both nodes READY at their addresses: what every refusal must leave. */
async function expectUntouched(): Promise<void> {
  const vm = await api.getVm({ vmId });
  expect(vm).toMatchObject({ nodeId: 'node-1', state: cluster.VmState.VM_STATE_RUNNING });
  const nodes = (await api.listNodes({})).nodes;
  for (const a of c.agents) expect(nodes.find((n) => n.nodeId === a.nodeId)).toMatchObject({ address: a.address, state: cluster.NodeState.NODE_STATE_READY });
  expect(c.controller.running).toBe(true);
  for (const a of c.agents) expect(a.process.running, `${a.nodeId} alive`).toBe(true);
}

describe('an agent', () => {
  it('cannot be reached without a certificate of the cluster: DeleteVm, ReleaseOutgoing at epoch 2^53, StartOutgoing to an intruder', async () => {
    for (const creds of [credentials.createInsecure(), credentials.createSsl(readTlsMaterial(certFiles(c.certsDir, 'operator')).ca), foreign('node-1')]) {
      const intruder = agentClient(c.agents[0]!.address, creds);
      try {
        await expectGrpcError(intruder.deleteVm({ vmId }, DEADLINE), status.UNAVAILABLE);
        await expectGrpcError(intruder.releaseOutgoing({ migrationId: 'x', vmId, fencingEpoch: 2 ** 53 }, DEADLINE), status.UNAVAILABLE);
      } finally {
        intruder.close();
      }
    }
    await expectUntouched();
  });

  it("answers AgentService to the controller's certificate only: the operator and another node get PERMISSION_DENIED", async () => {
    for (const owner of ['operator', 'node-2']) {
      const caller = agentClient(c.agents[0]!.address, c.credentials.as(owner));
      try {
        await expectGrpcError(caller.listVms({}, DEADLINE), status.PERMISSION_DENIED, /only the controller/);
        await expectGrpcError(caller.deleteVm({ vmId }, DEADLINE), status.PERMISSION_DENIED);
        await expectGrpcError(caller.prepareIncoming({ migrationId: 'm-x', token: 't', spec: { vmId: 'copy', name: 'copy', vcpus: 1, memoryMib: 64, image: 'empty' } }, DEADLINE), status.PERMISSION_DENIED);
      } finally {
        caller.close();
      }
    }
    const controller = agentClient(c.agents[0]!.address, c.credentials.as('controller'));
    try {
      expect((await controller.listVms({}, DEADLINE)).vms.map((v) => v.vmId)).toContain(vmId);
    } finally {
      controller.close();
    }
    await expectUntouched();
  });

  it('serves health and reflection to the operator certificate', async () => {
    const operator = c.credentials.as('operator');
    expect(await checkHealth(c.agents[0]!.address, '', 5000, operator)).toBe('SERVING');
    expect(await listServicesByReflection(c.agents[0]!.address)).toContain('agent.v1.AgentService');
  });
});

describe('the controller', () => {
  it('takes no registration on the plaintext API port and none without a node certificate', async () => {
    const plain = registryClient(c.controllerAddress, credentials.createInsecure());
    const operator = registryClient(c.agentPlaneAddress, c.credentials.as('operator'));
    const anonymous = registryClient(c.agentPlaneAddress, credentials.createSsl(readTlsMaterial(certFiles(c.certsDir, 'operator')).ca));
    const register = { nodeId: 'node-1', address: '127.0.0.1:1', vcpus: 1, memoryMib: 1024, cpuAllocationRatio: 1, ramAllocationRatio: 1, reportIntervalMs: 1000, vms: [] };
    try {
      await expectGrpcError(plain.register(register, DEADLINE), status.UNAUTHENTICATED, /mutual TLS/);
      await expectGrpcError(operator.register(register, DEADLINE), status.PERMISSION_DENIED, /only a node/);
      await expectGrpcError(anonymous.register(register, DEADLINE), status.UNAVAILABLE);
    } finally {
      plain.close();
      operator.close();
      anonymous.close();
    }
    await expectUntouched();
  });

  it('lets a node register and report only as itself: node-2 posing as node-1 is PERMISSION_DENIED, node-1 keeps its VM', async () => {
    const rogue = registryClient(c.agentPlaneAddress, c.credentials.as('node-2'));
    try {
      await expectGrpcError(
        rogue.register({ nodeId: 'node-1', address: '127.0.0.1:1', vcpus: 64, memoryMib: 1 << 20, cpuAllocationRatio: 1, ramAllocationRatio: 1, reportIntervalMs: 1000, vms: [] }, DEADLINE),
        status.PERMISSION_DENIED,
        /node node-2 may act only as itself/,
      );
      // A report stream as node-1 that would mark its VM FAILED: refused at the first report.
      const stream = rogue.client.streamReports(new Metadata());
      const ended = new Promise<{ code?: number; details?: string }>((resolve) => {
        stream.on('error', (e: { code?: number; details?: string }) => resolve(e));
        stream.on('end', () => resolve({}));
      });
      stream.on('data', () => undefined);
      stream.write(agent.StreamReportsRequest.fromPartial({ report: { nodeId: 'node-1', vms: [{ vmId, state: cluster.VmState.VM_STATE_FAILED }] } }));
      expect(await ended).toMatchObject({ code: status.PERMISSION_DENIED });
      stream.cancel();
    } finally {
      rogue.close();
    }
    await expectUntouched();
    const foreigner = registryClient(c.agentPlaneAddress, foreign('node-1'));
    try {
      await expectGrpcError(foreigner.register({ nodeId: 'node-1', address: '127.0.0.1:1', vcpus: 1, memoryMib: 1, reportIntervalMs: 1000 }, DEADLINE), status.UNAVAILABLE);
    } finally {
      foreigner.close();
    }
    await expectUntouched();
  });

  it("keeps the API for the API: a node certificate on the agent-plane port gets PERMISSION_DENIED from ClusterService", async () => {
    const nodeAsClient = clusterApi(c.agentPlaneAddress, undefined, c.credentials.as('node-2'));
    try {
      await expectGrpcError(nodeAsClient.deleteVm({ vmId }, DEADLINE), status.PERMISSION_DENIED);
    } finally {
      nodeAsClient.close();
    }
    await expectUntouched();
  });

  it('migrates over the mutual-TLS data connection as before', async () => {
    const m = await api.migrateVm({ vmId, targetNodeId: 'node-2' });
    const done = await waitFor(async () => {
      const got = await api.getMigration({ migrationId: m.migrationId });
      return got.phase === cluster.MigrationPhase.MIGRATION_PHASE_COMPLETED || got.phase === cluster.MigrationPhase.MIGRATION_PHASE_FAILED ? got : undefined;
    }, 60_000, 'the migration to end');
    expect(done).toMatchObject({ phase: cluster.MigrationPhase.MIGRATION_PHASE_COMPLETED });
    expect(done.sourceDigest).toBe(done.targetDigest);
    const back = await api.migrateVm({ vmId, targetNodeId: 'node-1' });
    await waitFor(async () => (await api.getMigration({ migrationId: back.migrationId })).phase === cluster.MigrationPhase.MIGRATION_PHASE_COMPLETED, 60_000, 'the way back');
    await expectUntouched();
  });
});

describe('the API with tokens and TLS', () => {
  let s: TestCluster | undefined;
  afterAll(() => s?.stop());

  it('a reader token reads and changes nothing; an operator token acts; without --api-tls plaintext, with it TLS verified by ca.pem', async () => {
    s = await startTestCluster({ agents: 1, token: 'op-token', readToken: 'read-token', apiTls: true });
    const reader = s.api('read-token');
    const operator = s.api('op-token');
    const plaintext = clusterApi(s.controllerAddress, 'op-token');
    try {
      const before = await stateSnapshot(operator);
      expect((await reader.listNodes({})).nodes).toHaveLength(1);
      await expectGrpcError(reader.createVm(vmRequest({ name: 'by-reader' })), status.PERMISSION_DENIED, /reader token may call Get\*, List\* and Watch\* only, not CreateVm/);
      await expectGrpcError(reader.drainNode({ nodeId: 'node-1' }), status.PERMISSION_DENIED);
      expect(await stateSnapshot(operator)).toEqual(before);
      await expectGrpcError(s.api('wrong').listVms({}), status.UNAUTHENTICATED);
      await expectGrpcError(plaintext.listVms({}, DEADLINE), status.UNAVAILABLE);
      const vm = await operator.createVm(vmRequest({ name: 'by-operator', memoryMib: 64 }));
      await operator.deleteVm({ vmId: vm.vmId });
      // vmctl the same way: --ca verifies the controller, the token comes from the environment.
      const vmctl = (args: string[], token: string) =>
        run(process.execPath, [CLI, '--server', s!.controllerAddress, '--ca', certFiles(s!.certsDir, 'controller').ca, ...args], {
          cwd: REPO_ROOT,
          env: { ...process.env, NO_COLOR: '1', VMCTL_TOKEN: token },
          timeout: 30_000,
        });
      const { stdout } = await vmctl(['--json', 'nodes'], 'read-token');
      expect((JSON.parse(stdout) as { nodes: { nodeId: string }[] }).nodes.map((n) => n.nodeId)).toEqual(['node-1']);
      await expect(vmctl(['create', 'by-cli-reader', '--memory', '64'], 'read-token')).rejects.toMatchObject({ stderr: expect.stringMatching(/PERMISSION_DENIED|reader token/) });
    } finally {
      reader.close();
      operator.close();
      plaintext.close();
    }
  });
});
