import 'reflect-metadata';
import { credentials, loadPackageDefinition, Metadata, status, type Client, type ServiceError } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { decodeBitmapRle, popcount } from '@vmm/emulator';
import { agent, cluster, reflectionV1 } from '@vmm/proto';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from './agent.js';
import { loadAgentConfig } from './config.js';
import { FakeRegistry } from './testing/fake-registry.js';
import { freePort, silentLogger, vmSpec } from './testing/fixtures.js';
import { waitFor } from '../../../test/support/wait-for.js';

// Boots the real agent (Nest gRPC server, VM manager, controller link) against a fake controller.
let registry: FakeRegistry;
let running: RunningAgent;
let client: agent.AgentServiceClient;
let httpPort: number;

/** The agent's grpc.health.v1 status of `service`. */
async function healthOf(service = ''): Promise<string> {
  const healthPkg = loadPackageDefinition(protoLoader.loadSync(healthProtoPath, { enums: String })) as any;
  const health = new healthPkg.grpc.health.v1.Health(running.address, credentials.createInsecure()) as Client & {
    check(req: object, cb: (e: ServiceError | null, r: { status: string }) => void): void;
  };
  try {
    return (await new Promise<{ status: string }>((resolve, reject) => health.check({ service }, (e, r) => (e ? reject(e) : resolve(r))))).status;
  } finally {
    health.close();
  }
}

function unary<Req, Res>(method: (req: Req, md: Metadata, cb: (e: ServiceError | null, r: Res) => void) => unknown, req: Req) {
  return new Promise<Res>((resolve, reject) => method.call(client, req, new Metadata(), (e, r) => (e ? reject(e) : resolve(r))));
}

async function statusOf(promise: Promise<unknown>): Promise<status> {
  try {
    await promise;
    return status.OK;
  } catch (err) {
    return (err as ServiceError).code;
  }
}

beforeAll(async () => {
  registry = new FakeRegistry(await freePort());
  await registry.start();
  httpPort = await freePort();
  const config = loadAgentConfig({ AGENT_PLANE_INSECURE: '1',
    NODE_ID: 'node-under-test',
    AGENT_PORT: String(await freePort()),
    CONTROLLER_ADDRESS: registry.address,
    NODE_VCPUS: '6',
    NODE_MEMORY_MIB: '2048',
    CPU_ALLOCATION_RATIO: '3',
    RAM_ALLOCATION_RATIO: '1.25',
    LOG_LEVEL: 'silent',
    AGENT_HTTP_PORT: String(httpPort),
  });
  running = await startAgent(config, silentLogger);
  client = new agent.AgentServiceClient(running.address, credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await running?.stop();
  registry?.kill();
});

describe('node agent', () => {
  it('registers with its capacity and ratios', async () => {
    await waitFor(() => registry.registrations.length > 0, 5_000, 'a registration');
    expect(registry.registrations[0]).toMatchObject({
      nodeId: 'node-under-test',
      address: running.address,
      vcpus: 6,
      memoryMib: 2048,
      cpuAllocationRatio: 3,
      ramAllocationRatio: 1.25,
      reportIntervalMs: 1000,
      vms: [],
      hypervisor: 'emulator',
    });
    await waitFor(() => running.link.state === 'reporting', 5_000, 'the report stream');
    expect(running.link.intervalMs).toBe(50);
  });

  it('refuses to start as a QEMU node where QEMU guests cannot run (it would advertise a driver it lacks)', async () => {
    const config = loadAgentConfig({ AGENT_PLANE_INSECURE: '1', NODE_ID: 'qemu-node', AGENT_PORT: String(await freePort()), HYPERVISOR: 'qemu', LOG_LEVEL: 'silent' });
    const saved = process.env.VMM_GUEST_IMAGE_DIR;
    process.env.VMM_GUEST_IMAGE_DIR = '/nonexistent/guest-image';
    try {
      await expect(startAgent(config, silentLogger)).rejects.toMatchObject({ code: 'QEMU_UNAVAILABLE' });
    } finally {
      if (saved === undefined) delete process.env.VMM_GUEST_IMAGE_DIR;
      else process.env.VMM_GUEST_IMAGE_DIR = saved;
    }
  });

  it('creates a VM over gRPC and streams its dirty pages in reports', async () => {
    const spec = vmSpec({
      vmId: 'vm-e2e',
      image: 'empty',
      workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: 2_000, workingSetMib: 2, seed: 5 },
    });
    const created = await unary<agent.CreateVmRequest, agent.VmStatus>(client.createVm, { spec });
    expect(created).toMatchObject({ vmId: 'vm-e2e', state: cluster.VmState.VM_STATE_RUNNING, pagesTotal: 32 * 256 });
    expect(created.spec?.workload?.kind).toBe(cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM);

    const again = await unary<agent.CreateVmRequest, agent.VmStatus>(client.createVm, { spec });
    expect(again.vmId).toBe('vm-e2e');

    const reportWithDirt = () => registry.reports.flatMap((r) => r.vms).find((v) => v.vmId === 'vm-e2e' && v.dirtyPages > 0);
    await waitFor(() => reportWithDirt() !== undefined, 5_000, 'a report with the VM dirtying pages');
    const vmReport = reportWithDirt()!;
    expect(vmReport.dirtyBitmapEncoding).toBe(agent.BitmapEncoding.BITMAP_ENCODING_RLE);
    expect(popcount(decodeBitmapRle(vmReport.dirtyBitmap, vmReport.pagesTotal))).toBe(vmReport.dirtyPages);
    expect(vmReport.dirtyPages).toBeLessThanOrEqual(2 * 256);
    expect(vmReport.dirtyRatePagesPerSec).toBeGreaterThan(0);
    expect(vmReport.writesTotal).toBeGreaterThan(0);
    const nodeReport = registry.reports.at(-1)!;
    expect(nodeReport.nodeId).toBe('node-under-test');
    expect(nodeReport.memoryUsedBytes).toBeGreaterThan(0);
    expect(nodeReport.bootId).toMatch(/^[0-9a-f-]{36}$/);
    expect(nodeReport.seq).toBeGreaterThan(0);

    // A spec without a workload (an idle guest) survives ListVms and the next Register unchanged.
    const idle = await unary<agent.CreateVmRequest, agent.VmStatus>(client.createVm, {
      spec: vmSpec({ vmId: 'vm-idle', image: 'empty', workload: undefined, labels: { team: 'a' } }),
    });
    expect(idle.spec?.workload?.kind).toBe(cluster.WorkloadKind.WORKLOAD_KIND_IDLE);

    const listed = await unary<agent.ListVmsRequest, agent.ListVmsResponse>(client.listVms, {});
    expect(listed.vms.map((v) => v.vmId).sort()).toEqual(['vm-e2e', 'vm-idle']);
    expect(listed.vms.find((v) => v.vmId === 'vm-idle')?.spec?.labels).toEqual({ team: 'a' });
  });

  it('answers bad requests with the right status and keeps serving', async () => {
    const create = (spec: agent.VmSpec | undefined) => unary<agent.CreateVmRequest, agent.VmStatus>(client.createVm, { spec });
    expect(await statusOf(create(vmSpec({ vmId: 'bad', image: 'nope' })))).toBe(status.INVALID_ARGUMENT);
    expect(await statusOf(create(undefined))).toBe(status.INVALID_ARGUMENT);
    expect(await statusOf(create(vmSpec({ vmId: 'bad', workload: undefined, memoryMib: -1 })))).toBe(status.INVALID_ARGUMENT);
    expect(await statusOf(unary(client.setKsm, { knobs: { pagesToScan: 0 } }))).toBe(status.INVALID_ARGUMENT);
    expect(await statusOf(unary(client.setKsm, { knobs: { run: 7 } }))).toBe(status.INVALID_ARGUMENT);
    expect(await statusOf(unary(client.prepareIncoming, { migrationId: 'm', spec: undefined, token: 't', sourceNodeId: '', policy: undefined }))).toBe(status.INVALID_ARGUMENT);
    expect(await statusOf(unary(client.commitIncoming, { migrationId: 'unknown', fencingEpoch: 1, vmId: '' }))).toBe(status.NOT_FOUND);
    expect(await statusOf(unary(client.abortMigration, { migrationId: 'unknown', reason: '', fencingEpoch: 0 }))).toBe(status.OK);
    expect(await statusOf(unary(client.deleteVm, { vmId: 'never-existed' }))).toBe(status.OK);
    expect(running.vms.get('bad')).toBeUndefined();
    // ContinueSwitchover: no such migration, no id.
    expect(await statusOf(unary(client.continueSwitchover, { migrationId: 'unknown', vmId: '' }))).toBe(status.NOT_FOUND);
    expect(await statusOf(unary(client.continueSwitchover, { migrationId: '', vmId: '' }))).toBe(status.INVALID_ARGUMENT);
    // A policy out of range at PrepareIncoming: refused before anything is made (no VM, no ledger entry).
    const spec = vmSpec({ vmId: 'vm-in', image: 'empty', workload: undefined });
    for (const policy of [{ multifdChannels: 0 }, { multifdChannels: 2, xbzrle: true }, { downtimeLimitMs: -1 }]) {
      expect(await statusOf(unary(client.prepareIncoming, { migrationId: 'm-bad-policy', spec, token: 'token-0123456789', sourceNodeId: '', policy }))).toBe(status.INVALID_ARGUMENT);
    }
    expect(running.vms.get('vm-in')).toBeUndefined();
    expect(running.migrations.ledger.get('m-bad-policy')).toBeUndefined();
  });

  it('sets KSM knobs and reports them with the counters', async () => {
    const answer = await unary<agent.SetKsmRequest, agent.SetKsmResponse>(client.setKsm, {
      knobs: { pagesToScan: 1000, sleepMillisecs: 5 },
    });
    expect(answer.knobs).toMatchObject({ run: 1, pagesToScan: 1000, sleepMillisecs: 5, maxPageSharing: 256, useZeroPages: false });
    expect(answer.stats).toBeDefined();
    const seen = registry.reports.length;
    await waitFor(() =>
      registry.reports.slice(seen).some((r) => r.ksmKnobs?.pagesToScan === 1000 && r.ksm !== undefined), 5_000, 'a report with the new knobs',
    );
    await waitFor(() => (registry.reports.at(-1)?.ksm?.fullScans ?? 0) > 0, 5_000, 'ksmd to complete a full scan');
  });

  it('serves health and reflection', async () => {
    const healthPkg = loadPackageDefinition(protoLoader.loadSync(healthProtoPath, { enums: String })) as any;
    const health = new healthPkg.grpc.health.v1.Health(running.address, credentials.createInsecure()) as Client & {
      check(req: object, cb: (e: ServiceError | null, r: { status: string }) => void): void;
    };
    const answer = await new Promise<{ status: string }>((resolve, reject) =>
      health.check({ service: 'agent.v1.AgentService' }, (e, r) => (e ? reject(e) : resolve(r))),
    );
    // SERVING once registered and reporting (NOT_SERVING before: no link to the controller yet).
    await waitFor(() => running.link.state === 'reporting', 5_000, 'the link to report');
    expect(answer.status === 'SERVING' || (await healthOf('agent.v1.AgentService')) === 'SERVING').toBe(true);
    expect(await healthOf()).toBe('SERVING');
    health.close();

    const reflection = new reflectionV1.ServerReflectionClient(running.address, credentials.createInsecure());
    const services = await new Promise<string[]>((resolve, reject) => {
      const call = reflection.serverReflectionInfo();
      call.on('data', (msg: reflectionV1.ServerReflectionResponse) => {
        resolve(msg.listServicesResponse?.service.map((s) => s.name) ?? []);
        call.end();
      });
      call.on('error', reject);
      call.write(reflectionV1.ServerReflectionRequest.fromPartial({ listServices: '' }));
    });
    reflection.close();
    expect(services.sort()).toEqual(['agent.v1.AgentService', 'grpc.health.v1.Health']);
  });

  it('re-registers with its VMs and resumes reporting after the controller restarts', async () => {
    const before = running.link.registrations;
    registry.kill();
    await waitFor(() => running.link.state === 'backoff' || running.link.state === 'registering', 5_000, 'the link to notice');
    // No link to the controller: not a node to give work to.
    expect(await healthOf()).toBe('NOT_SERVING');
    expect(await healthOf('agent.v1.AgentService')).toBe('NOT_SERVING');
    const restarted = new FakeRegistry(registry.port);
    await restarted.start();
    registry = restarted;
    await waitFor(() => running.link.registrations > before, 10_000, 'a re-registration');
    expect(restarted.registrations.length).toBeGreaterThan(0);
    expect(restarted.registrations[0].vms.map((v) => v.vmId).sort()).toEqual(['vm-e2e', 'vm-idle']);
    expect(restarted.registrations[0].vms.find((v) => v.vmId === 'vm-idle')?.spec?.workload?.kind).toBe(
      cluster.WorkloadKind.WORKLOAD_KIND_IDLE,
    );
    await waitFor(() => restarted.reports.some((r) => r.vms.some((v) => v.vmId === 'vm-e2e')), 5_000, 'reports on the new stream');
    await waitFor(async () => (await healthOf()) === 'SERVING', 5_000, 'health SERVING again');
  });

  it('serves /metrics at its HTTP port, advertised at registration', async () => {
    expect(registry.registrations.at(-1)?.metricsUrl).toBe(`http://127.0.0.1:${httpPort}/metrics`);
    const image = running.vms.get('vm-e2e')!.spec.image;
    const body = await waitFor(async () => {
      const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
      return text.includes(`vmm_vm_resident_pages{vm="vm-e2e",node="node-under-test",image="${image}"}`) ? text : undefined;
    }, 5_000, 'the VM in /metrics');
    expect(body).toMatch(new RegExp(`vmm_vm_dirty_memory_rate_bytes\\{vm="vm-e2e",node="node-under-test",image="${image}"\\} \\d`));
    expect(body).toContain(`vmm_vm_working_set_bytes{vm="vm-e2e",node="node-under-test",image="${image}"}`);
    expect(body).toContain('vmm_agent_controller_link_up{node="node-under-test"} 1');
    expect(body).toContain('process_resident_memory_bytes');
    expect((await fetch(`http://127.0.0.1:${httpPort}/livez`)).status).toBe(200);
  });

  it('deletes the VM and frees its memory', async () => {
    await unary(client.deleteVm, { vmId: 'vm-e2e' });
    await unary(client.deleteVm, { vmId: 'vm-idle' });
    expect(running.vms.size).toBe(0);
    expect(running.vms.pool.bytesInUse).toBe(0);
    const seen = registry.reports.length;
    await waitFor(() => registry.reports.slice(seen).some((r) => r.vms.length === 0), 5_000, 'a report without the VM');
  });
});
