// Runs vmctl's command tree against an in-process fake ClusterService on a real loopback socket.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
} from '@grpc/grpc-js';
import { API_ERROR_DOMAIN, cluster, toServerError } from '@vmm/proto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { migration } from './format/migration.fixture.js';
import type { Io } from './io.js';
import { execute, readTokenFile } from './program.js';

const TOKEN = 's3cret';

function node(nodeId: string, overrides: Partial<cluster.Node> = {}): cluster.Node {
  return {
    nodeId,
    address: `127.0.0.1:6000${nodeId.slice(-1)}`,
    state: cluster.NodeState.NODE_STATE_READY,
    vcpus: 8,
    memoryMib: 8192,
    cpuAllocationRatio: 4,
    ramAllocationRatio: 1.5,
    vcpusAllocated: 6,
    memoryMibAllocated: 3072,
    memoryMibUsed: 1536,
    ksm: { pagesShared: 1000, pagesSharing: 12800, pagesUnshared: 5, pagesVolatile: 2, fullScans: 3, generalProfitBytes: 50 << 20 },
    vmCount: 3,
    ksmKnobs: { run: 1, pagesToScan: 100, sleepMillisecs: 20 },
    lastReportMs: Date.now(),
    cordoned: false,
    reportedVms: [],
    hypervisor: 'emulator',
    metricsUrl: '',
    labels: {},
    ...overrides,
  };
}

function vm(i: number): cluster.Vm {
  return cluster.Vm.fromPartial({
    vmId: `vm-0mwpvq1x${i}-${i}a2b3c4d5e`,
    name: `web-${i}`,
    nodeId: 'node-1',
    state: cluster.VmState.VM_STATE_RUNNING,
    vcpus: 2,
    memoryMib: 1024,
    image: 'debian-12',
    workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: 2000, workingSetMib: 0, seed: i },
    dirtyRatePagesPerSec: 1987.6,
    workingSetPages: 25600,
    residentPages: 51200,
    labels: {},
    antiAffinityGroup: '',
    createdAtMs: Date.now(),
    fencingEpoch: 0,
  });
}

/** What the fake saw, so tests can assert which calls the CLI made. */
const fakeOptions = { watchUnimplemented: false, failMigration: false };
const seen = {
  watchEvents: [] as cluster.WatchEventsRequest[],
  getMigration: 0,
  listVmsPages: 0,
  createVm: [] as cluster.CreateVmRequest[],
  migrateVm: [] as cluster.MigrateVmRequest[],
  labelNode: [] as cluster.LabelNodeRequest[],
  updateMigration: [] as cluster.UpdateMigrationRequest[],
};
const vms = [1, 2, 3, 4, 5].map(vm);
const nodes = [
  node('node-1', {
    reportedVms: [
      { vmId: 'vm-a', state: cluster.VmState.VM_STATE_RUNNING, fencingEpoch: 2, migrationRole: cluster.MigrationRole.MIGRATION_ROLE_NONE, migrationId: '' },
      { vmId: 'vm-b', state: cluster.VmState.VM_STATE_MIGRATING, fencingEpoch: 0, migrationRole: cluster.MigrationRole.MIGRATION_ROLE_TARGET, migrationId: 'mig-1' },
    ],
  }),
  node('node-2', { state: cluster.NodeState.NODE_STATE_CORDONED, cordoned: true, vmCount: 2, ksm: undefined, labels: { zone: 'b', disk: 'hdd' } })];

function authorized(call: ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>): boolean {
  return call.metadata.get('authorization')[0] === `Bearer ${TOKEN}`;
}

function unary<Req, Res>(handler: (req: Req) => Res) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    if (!authorized(call)) return callback({ code: status.UNAUTHENTICATED, details: 'missing or wrong bearer token' });
    try {
      callback(null, handler(call.request));
    } catch (err) {
      callback(err as { code: number; details: string });
    }
  };
}

const notFound = (details: string) => Object.assign(new Error(details), { code: status.NOT_FOUND, details });
/** An error with the rich details the controller sends (ErrorInfo in the grpc-status-details-bin trailer). */
const richError = (code: status, message: string, reason: string, metadata: Record<string, string> = {}) =>
  Object.assign(new Error(message), toServerError({ code, message, reason, domain: API_ERROR_DOMAIN, metadata }));

const fake: Partial<cluster.ClusterServiceServer> = {
  getVersion: unary(() => ({ version: '9.8.7', apiVersion: 'cluster.v1', features: ['reflection', 'request_id'], defaults: undefined })),
  listNodes: unary(() => ({ nodes, nextPageToken: '', revision: 4 })),
  getNode: unary((req: cluster.GetNodeRequest) => {
    const found = nodes.find((n) => n.nodeId === req.nodeId);
    if (!found) throw richError(status.NOT_FOUND, `node "${req.nodeId}" not found`, 'NODE_NOT_FOUND', { nodeId: req.nodeId });
    return found;
  }),
  listImages: unary(() => ({
    images: [
      { name: 'alpine-3.20', sizeMib: 16, preset: true, vmCount: 2 },
      { name: 'empty', sizeMib: 0, preset: true, vmCount: 0 },
      { name: 'registry.local/app:1', sizeMib: 77, preset: false, vmCount: 1 },
    ],
  })),
  labelNode: unary((req: cluster.LabelNodeRequest) => {
    seen.labelNode.push(req);
    const labels: Record<string, string> = { zone: 'a', ...req.labels };
    for (const key of req.remove) delete labels[key];
    return { ...nodes[0]!, labels };
  }),
  // The controller passing an agent's refusal on.
  setNodeKsm: unary((req: cluster.SetNodeKsmRequest) => {
    throw richError(status.FAILED_PRECONDITION, `node "${req.nodeId}" agent refused: SetKsm: cannot change max_page_sharing`, 'AGENT_REJECTED', {
      nodeId: req.nodeId,
      agentReason: 'KNOB_BUSY',
    });
  }),
  // Pages of at most 2, whatever the client asks: the CLI must follow next_page_token.
  listVms: unary((req: cluster.ListVmsRequest) => {
    seen.listVmsPages += 1;
    const start = Number(req.pageToken || '0');
    const end = start + Math.min(2, req.pageSize || 2);
    return { vms: vms.slice(start, end), nextPageToken: end < vms.length ? String(end) : '', revision: 4 };
  }),
  getVm: unary((req: cluster.GetVmRequest) => {
    const found = vms.find((v) => v.vmId === req.vmId);
    if (!found) throw notFound(`vm "${req.vmId}" not found`);
    return found;
  }),
  // Pause a running VM, resume a paused one; anything else as the controller refuses it.
  pauseVm: unary((req: cluster.PauseVmRequest) => ({ ...vms.find((v) => v.vmId === req.vmId)!, state: cluster.VmState.VM_STATE_PAUSED })),
  resumeVm: unary((req: cluster.ResumeVmRequest) => ({ ...vms.find((v) => v.vmId === req.vmId)!, state: cluster.VmState.VM_STATE_RUNNING })),
  stopVm: unary((req: cluster.StopVmRequest) => ({ ...vms.find((v) => v.vmId === req.vmId)!, state: cluster.VmState.VM_STATE_STOPPED })),
  startVm: unary(() => {
    throw Object.assign(new Error('vm is running'), { code: status.FAILED_PRECONDITION, details: 'VM web-1 is RUNNING: only a STOPPED VM can be started' });
  }),
  createVm: unary((req: cluster.CreateVmRequest) => {
    seen.createVm.push(req);
    return { ...vm(9), name: req.name, vcpus: req.vcpus, memoryMib: req.memoryMib, image: req.image, nodeId: 'node-2', workload: req.workload };
  }),
  migrateVm: unary((req: cluster.MigrateVmRequest) => {
    seen.migrateVm.push(req);
    return migration({ vmId: req.vmId, phase: cluster.MigrationPhase.MIGRATION_PHASE_PENDING, round: 0, pagesSent: 0, bytesSent: 0, sourceDigest: '', targetDigest: '' });
  }),
  // Two polls in PRECOPY, then COMPLETED: what a client sees when it has to poll.
  getMigration: unary((req: cluster.GetMigrationRequest) => {
    if (!req.migrationId.startsWith('7c1f0e2a')) throw notFound(`migration "${req.migrationId}" not found`);
    seen.getMigration += 1;
    if (fakeOptions.failMigration) {
      return migration({ phase: cluster.MigrationPhase.MIGRATION_PHASE_FAILED, error: 'did not converge after 30 rounds', sourceDigest: '', targetDigest: '' });
    }
    return seen.getMigration < 3 ? migration({ phase: cluster.MigrationPhase.MIGRATION_PHASE_PRECOPY, targetDigest: '' }) : migration();
  }),
  updateMigration: unary((req: cluster.UpdateMigrationRequest) => {
    seen.updateMigration.push(req);
    const policy = { downtimeLimitMs: req.downtimeLimitMs ?? 300, maxBandwidthMibPerSec: req.maxBandwidthMibPerSec ?? 0 };
    return migration({ migrationId: req.migrationId, phase: cluster.MigrationPhase.MIGRATION_PHASE_PRECOPY, policy });
  }),
  // Two events, then the end of the stream (a controller that stops); OUT_OF_RANGE for an old revision.
  watchEvents: (call: ServerWritableStream<cluster.WatchEventsRequest, cluster.Event>) => {
    if (!authorized(call)) return void call.emit('error', { code: status.UNAUTHENTICATED, details: 'no token' });
    seen.watchEvents.push(call.request);
    if (call.request.sinceRevision === 1) {
      return void call.emit('error', richError(status.OUT_OF_RANGE, 'revision 1 is compacted', 'REVISION_COMPACTED'));
    }
    const T = cluster.EventType;
    call.write({ revision: 7, type: T.EVENT_TYPE_ADDED, vm: vms[0] });
    call.write({ revision: 8, type: T.EVENT_TYPE_DELETED, vm: vms[0] });
    call.write({ revision: 9, type: T.EVENT_TYPE_MODIFIED, node: nodes[1] });
    call.end();
  },
  watchMigration: (call: ServerWritableStream<cluster.WatchMigrationRequest, cluster.Migration>) => {
    if (!authorized(call)) return void call.emit('error', { code: status.UNAUTHENTICATED, details: 'no token' });
    if (fakeOptions.watchUnimplemented) {
      return void call.emit('error', { code: status.UNIMPLEMENTED, details: 'WatchMigration is not implemented' });
    }
    const P = cluster.MigrationPhase;
    call.write(migration({ phase: P.MIGRATION_PHASE_PRECOPY, round: 0, pagesSent: 100000, bytesSent: 409600000, sourceDigest: '', targetDigest: '' }));
    call.write(migration({ phase: P.MIGRATION_PHASE_PRECOPY, round: 1, pagesSent: 262144, dirtyPagesRemaining: 4000, sourceDigest: '', targetDigest: '' }));
    call.write(migration({ phase: P.MIGRATION_PHASE_COMPLETED }));
    call.end();
  },
};

let server: Server;
let address = '';

beforeAll(async () => {
  server = new Server();
  server.addService(cluster.ClusterServiceService, fake as cluster.ClusterServiceServer);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  address = `127.0.0.1:${port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
});

beforeEach(() => {
  seen.listVmsPages = 0;
  seen.watchEvents.length = 0;
  seen.getMigration = 0;
  fakeOptions.watchUnimplemented = false;
  fakeOptions.failMigration = false;
  seen.createVm.length = 0;
  seen.migrateVm.length = 0;
  seen.labelNode.length = 0;
  seen.updateMigration.length = 0;
});

async function vmctl(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Io = {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    progressStream: undefined,
    colour: false,
    env: { VMCTL_SERVER: address, VMCTL_TOKEN: TOKEN },
    onInterrupt: () => () => {},
  };
  const code = await execute(args, io);
  return { code, out, err };
}

describe('vmctl against a fake ClusterService', () => {
  it('-o yaml and -o name on read commands; -o json as --json; a bad -o a usage error', async () => {
    const yaml = await vmctl('-o', 'yaml', 'nodes');
    expect(yaml.code).toBe(0);
    expect(yaml.out).toMatch(/^nodes:\n/);
    expect(yaml.out).toMatch(/\n {4}nodeId: node-1\n/);
    expect(yaml.out).toMatch(/memoryMib: "\d+"/); // int64 as strings, as in JSON
    const names = await vmctl('-o', 'name', 'vms');
    expect(names.out.trimEnd().split('\n')).toEqual(vms.map((v) => `vm/${v.vmId}`));
    expect(JSON.parse((await vmctl('-o', 'json', 'nodes')).out)).toEqual(JSON.parse((await vmctl('--json', 'nodes')).out));
    expect((await vmctl('-o', 'xml', 'nodes')).code).toBe(2);
  });

  it('-w draws the list, then follows WatchEvents of its kind until the stream ends', async () => {
    seen.watchEvents.length = 0;
    const watched = await vmctl('nodes', '-w');
    expect(watched.code).toBe(0);
    expect(watched.out).toMatch(/node-1/);
    expect(seen.watchEvents).toEqual([{ sinceRevision: 0, kinds: [cluster.EventKind.EVENT_KIND_NODE] }]);
  });

  it('completion bash completes commands and each command\'s options', async () => {
    const { code, out } = await vmctl('completion', 'bash');
    expect(code).toBe(0);
    expect(out).toMatch(/complete -F _vmctl vmctl/);
    expect(out).toMatch(/migrate\) opts="--to --follow/);
    expect((await vmctl('completion', 'fish')).code).toBe(2);
  });

  it('pause, resume, stop and start a VM by name; a refusal is the controller\'s message', async () => {
    const name = vms[0]!.name;
    const pause = await vmctl('pause', name);
    expect(pause.code).toBe(0);
    expect(pause.out).toMatch(new RegExp(`^vm ${name} \\(\\w+\\) paused .*PAUSED`));
    expect((await vmctl('resume', name)).out).toMatch(/resumed where it was: RUNNING/);
    expect((await vmctl('stop', name)).out).toMatch(/stopped .*: STOPPED/);
    const start = await vmctl('start', name);
    expect(start.code).toBe(1);
    expect(start.err).toMatch(/only a STOPPED VM can be started/);
    expect(JSON.parse((await vmctl('--json', 'pause', name)).out)).toMatchObject({ vmId: vms[0]!.vmId, state: 'VM_STATE_PAUSED' });
  });

  it('events: one line per event, with the revision and kinds asked for', async () => {
    const { code, out, err } = await vmctl('events', '--since', '6', '--kind', 'vm,node');
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(seen.watchEvents).toEqual([{ sinceRevision: 6, kinds: [cluster.EventKind.EVENT_KIND_VM, cluster.EventKind.EVENT_KIND_NODE] }]);
    const lines = out.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^\s+7  ADDED     vm         vm-0mwpvq1x1-1a2b3c4d5e  web-1 RUNNING on node-1$/);
    expect(lines[1]).toMatch(/^\s+8  DELETED   vm /);
    expect(lines[2]).toMatch(/^\s+9  MODIFIED  node       node-2  CORDONED 2 vms cordoned$/);
  });

  it('events: --json is one object per line; a compacted revision is an error; a bad --since a usage error', async () => {
    const json = await vmctl('events', '--json');
    expect(json.code).toBe(0);
    // The proto3 JSON mapping, as grpcurl prints it: int64 as strings.
    expect(json.out.trimEnd().split('\n').map((l) => (JSON.parse(l) as { revision: string }).revision)).toEqual(['7', '8', '9']);
    expect(seen.watchEvents[0]).toEqual({ sinceRevision: 0, kinds: [] });
    const old = await vmctl('events', '--since', '1');
    expect(old.code).toBe(1);
    expect(old.err).toMatch(/compacted/);
    expect((await vmctl('events', '--since', 'x')).code).toBe(2);
    expect((await vmctl('events', '--kind', 'disk')).code).toBe(2);
  });

  it('renders the nodes table', async () => {
    const { code, out, err } = await vmctl('nodes');
    expect(err).toBe('');
    expect(code).toBe(0);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NODE\s+STATE\s+ADDRESS\s+VCPUS\s+MEMORY\s+USED\s+KSM SHARING\s+VMS$/);
    expect(lines[1]).toMatch(/^node-1\s+READY\s+127\.0\.0\.1:60001\s+6\/8×4\s+3 GiB\/8 GiB×1\.5\s+1\.5 GiB \(19%\)\s+50 MiB \(12\.8k pg\)\s+3$/);
    expect(lines[2]).toMatch(/^node-2\s+CORDONED\s+\S+\s+6\/8×4\s+.*\s+0\s+2$/);
    expect(lines).toHaveLength(3);
  });

  it('shows what a node\'s agent reported holding, migration copies included', async () => {
    const { code, out } = await vmctl('node', 'node-1');
    expect(code).toBe(0);
    expect(out).toMatch(/Reported by the agent \(2 copies\)/);
    expect(out).toMatch(/vm-a\s.*RUNNING.*\s2\s.*none\s.*-/);
    expect(out).toMatch(/vm-b\s.*MIGRATING.*\s0\s.*target\s.*mig-1/);
  });

  it('follows pagination and renders every VM with its measured dirty rate', async () => {
    const { code, out } = await vmctl('vms');
    expect(code).toBe(0);
    expect(seen.listVmsPages).toBe(3);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+ID\s+NODE\s+STATE\s+VCPUS\s+MEMORY\s+IMAGE\s+WORKLOAD\s+DIRTY RATE\s+WSS\s+RESIDENT$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(['web-1', 'web-2', 'web-3', 'web-4', 'web-5']);
    expect(lines[1]).toMatch(/^web-1\s+1a2b3c4d5e\s+node-1\s+RUNNING\s+2\s+1 GiB\s+debian-12\s+uniform@2k\/s\s+2k pages\/s\s+100 MiB\s+200 MiB$/);
  });

  it('prints every VM as JSON with --json', async () => {
    const { code, out } = await vmctl('--json', 'vms');
    expect(code).toBe(0);
    const parsed = JSON.parse(out) as { vms: cluster.Vm[] };
    expect(parsed.vms.map((v) => v.name)).toEqual(['web-1', 'web-2', 'web-3', 'web-4', 'web-5']);
    expect(parsed.vms[0]!.state).toBe('VM_STATE_RUNNING');
  });

  it('finds a VM by name when it is not an id', async () => {
    const { code, out } = await vmctl('vm', 'web-3');
    expect(code).toBe(0);
    expect(out).toMatch(/^Name\s+web-3$/m);
    expect(out).toMatch(/^Dirty rate\s+2k pages\/s \(measured\)$/m);
  });

  it('prints gRPC errors as "error: STATUS: details" and exits 1, without a stack trace', async () => {
    const missingVm = await vmctl('vm', 'nope');
    expect(missingVm.code).toBe(1);
    expect(missingVm.out).toBe('');
    expect(missingVm.err).toBe('error: NOT_FOUND: no VM with id or name "nope"\n');

    const missingNode = await vmctl('node', 'node-9');
    expect(missingNode.code).toBe(1);
    expect(missingNode.err).toBe('error: NOT_FOUND [NODE_NOT_FOUND]: node "node-9" not found\n');

    const noToken = await vmctl('--token', 'wrong', 'nodes');
    expect(noToken.code).toBe(1);
    expect(noToken.err).toBe('error: UNAUTHENTICATED: missing or wrong bearer token\n');

    const unimplemented = await vmctl('cordon', 'node-1');
    expect(unimplemented.code).toBe(3);
    expect(unimplemented.err).toMatch(/^error: UNIMPLEMENTED: .+\n$/);
    expect(unimplemented.err).not.toMatch(/\n\s+at /);
  });

  it("prints the error's reason beside the message, and the refusing agent's reason after AGENT_REJECTED", async () => {
    const refused = await vmctl('ksm', 'node-1', '--max-page-sharing', '10');
    expect(refused.code).toBe(1);
    expect(refused.err).toBe('error: FAILED_PRECONDITION [AGENT_REJECTED: KNOB_BUSY]: node "node-1" agent refused: SetKsm: cannot change max_page_sharing\n');
  });

  it("prints its own version and the controller's, with the features it serves", async () => {
    const { code, out } = await vmctl('version');
    expect(code).toBe(0);
    expect(out).toMatch(/^vmctl\s+\d+\.\d+\.\d+$/m);
    expect(out).toMatch(/^controller\s+9\.8\.7 \(API cluster\.v1\)$/m);
    expect(out).toMatch(/^features\s+reflection, request_id$/m);
    const json = JSON.parse((await vmctl('--json', 'version')).out) as { server: { version: string } };
    expect(json.server.version).toBe('9.8.7');
  });

  it('rejects bad arguments with exit 2 before calling the API', async () => {
    const bad = await vmctl('create', 'db-9', '--workload', 'warp:9000');
    expect(bad.code).toBe(2);
    expect(bad.err).toBe('error: unknown workload kind "warp" (one of idle, uniform, hotcold, sequential)\n');
    expect(seen.createVm).toHaveLength(0);
    expect((await vmctl('nodes', '--unknown')).code).toBe(2);
    expect((await vmctl('--server', 'nope', 'nodes')).err).toMatch(/--server must be host:port/);
  });

  it('creates a VM from the options', async () => {
    const { code, out } = await vmctl('create', 'db-9', '--vcpus', '2', '--memory', '2G', '--image', 'ubuntu-24.04', '--workload', 'hotcold:8k:256', '--label', 'tier=db');
    expect(code).toBe(0);
    expect(seen.createVm).toEqual([
      {
        name: 'db-9',
        vcpus: 2,
        memoryMib: 2048,
        image: 'ubuntu-24.04',
        workload: { kind: 'WORKLOAD_KIND_HOTCOLD', dirtyRatePagesPerSec: 8000, workingSetMib: 256, seed: 0 },
        nodeId: '',
        antiAffinityGroup: '',
        labels: { tier: 'db' },
        restartPolicy: 'RESTART_POLICY_NEVER',
        // A fresh id per command, so that the CLI's own retries are carried out once.
        requestId: expect.stringMatching(/^[0-9a-f-]{36}$/),
        hypervisor: '',
        nodeSelector: {},
      },
    ]);
    expect(out).toMatch(/^vm db-9 \(9a2b3c4d5e\) created on node-2: RUNNING, 2 vCPU, 2 GiB, ubuntu-24\.04, hotcold@8k\/s$/m);
  });

  it('passes --node-selector through to CreateVm', async () => {
    const { code } = await vmctl('create', 's-1', '--node-selector', 'disk=ssd', '--node-selector', 'zone=a');
    expect(code).toBe(0);
    expect(seen.createVm.at(-1)).toMatchObject({ name: 's-1', nodeSelector: { disk: 'ssd', zone: 'a' } });
    expect((await vmctl('create', 's-2', '--node-selector', 'nokey')).err).toMatch(/--node-selector must be key=value/);
  });

  it('labels a node: k=v to set, --remove k and k- to remove', async () => {
    const { code, out } = await vmctl('label', 'node-1', 'disk=ssd', 'rack-', '--remove', 'zone');
    expect(code).toBe(0);
    expect(seen.labelNode).toEqual([{ nodeId: 'node-1', labels: { disk: 'ssd' }, remove: ['zone', 'rack'] }]);
    expect(out).toBe('node node-1 labels: disk=ssd\n');
    const nothing = await vmctl('label', 'node-1');
    expect(nothing.code).toBe(2);
    expect(seen.labelNode).toHaveLength(1);
  });

  it("shows a node's labels and lists images", async () => {
    const labelled = await vmctl('label', 'node-1', 'disk=ssd');
    expect(labelled.out).toBe('node node-1 labels: disk=ssd, zone=a\n');
    expect((await vmctl('node', 'node-2')).out).toMatch(/^Labels\s+disk=hdd, zone=b$/m);
    expect((await vmctl('node', 'node-1')).out).toMatch(/^Labels\s+—$/m);
    const { code, out } = await vmctl('images');
    expect(code).toBe(0);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^IMAGE\s+SIZE\s+PRESET\s+VMS$/);
    expect(lines[1]).toMatch(/^alpine-3\.20\s+16 MiB\s+yes\s+2$/);
    expect(lines[2]).toMatch(/^empty\s+0 MiB\s+yes\s+0$/);
    expect(lines[3]).toMatch(/^registry\.local\/app:1\s+77 MiB\s+no\s+1$/);
  });

  it('passes --hypervisor through to CreateVm', async () => {
    const { code } = await vmctl('create', 'q-1', '--vcpus', '1', '--memory', '256M', '--image', 'debian-12', '--hypervisor', 'qemu');
    expect(code).toBe(0);
    expect(seen.createVm.at(-1)).toMatchObject({ name: 'q-1', hypervisor: 'qemu' });
  });

  it('migrates with --follow: progress from the stream, then the outcome summary', async () => {
    const { code, out, err } = await vmctl('migrate', 'web-1', '--to', 'node-2', '--follow', '--downtime-ms', '300');
    expect(code).toBe(0);
    expect(seen.migrateVm).toHaveLength(1);
    expect(seen.migrateVm[0]).toMatchObject({ vmId: vms[0]!.vmId, targetNodeId: 'node-2', policy: { downtimeLimitMs: 300 } });
    expect(err).toMatch(/^web-1 {2}PRECOPY\s+round 0 {2}in sync {2}38%/m);
    expect(err).toMatch(/^web-1 {2}COMPLETED/m);
    expect(out).toContain('Migration 7c1f0e2a of web-1');
    expect(out).toMatch(/Outcome {5}COMPLETED ✓/);
    expect(out).toContain('source 9f3c5a7e11d2b4c0 == target 9f3c5a7e11d2b4c0 ✓');
  });

  it('migration-update sends only the options given, and refuses an update with none', async () => {
    const { code, out } = await vmctl('migration-update', '7c1f0e2a', '--downtime-ms', '500', '--force-complete');
    expect(code).toBe(0);
    expect(seen.updateMigration).toHaveLength(1);
    expect(seen.updateMigration[0]).toMatchObject({ migrationId: migration().migrationId, downtimeLimitMs: 500, forceComplete: true });
    expect(seen.updateMigration[0]!.maxBandwidthMibPerSec).toBeUndefined();
    expect(out).toMatch(/PRECOPY, downtime limit 500 ms, bandwidth unlimited; switching over at the next round/);
    const bare = await vmctl('migration-update', '7c1f0e2a');
    expect(bare.code).toBe(2);
    expect(bare.err).toMatch(/--downtime-ms, --bandwidth-mib or --force-complete/);
    expect(seen.updateMigration).toHaveLength(1);
  });

  it('follows by polling GetMigration when the server has no WatchMigration stream', async () => {
    fakeOptions.watchUnimplemented = true;
    const { code, out, err } = await vmctl('migration', '7c1f0e2a-1111-2222-3333-444455556666', '--follow');
    expect(code).toBe(0);
    expect(seen.getMigration).toBe(3); // the lookup, then polls until COMPLETED
    expect(err).toMatch(/PRECOPY/);
    expect(out).toMatch(/^Phase\s+COMPLETED$/m);
    expect(out).toContain('== target 9f3c5a7e11d2b4c0 ✓');
  });

  it('exits 1 with the summary when a followed migration fails', async () => {
    fakeOptions.watchUnimplemented = true;
    fakeOptions.failMigration = true;
    const { code, out, err } = await vmctl('migration', '7c1f0e2a', '--follow');
    expect(code).toBe(1);
    expect(out).toContain('FAILED ✗  did not converge after 30 rounds');
    expect(err).toMatch(/error: migration 7c1f0e2a-1111-2222-3333-444455556666 ended FAILED\n$/);
  });
});

describe('--token-file', () => {
  it('reads the operator line of an API_TOKENS_FILE, else the reader line, else a bare token', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vmctl-token-'));
    try {
      const file = path.join(dir, 't');
      writeFileSync(file, '# tokens\nreader r-1\noperator o-1\n');
      expect(readTokenFile(file)).toBe('o-1');
      writeFileSync(file, 'reader r-1\n');
      expect(readTokenFile(file)).toBe('r-1');
      writeFileSync(file, '  bare-token  \n');
      expect(readTokenFile(file)).toBe('bare-token');
      writeFileSync(file, '# nothing\n');
      expect(() => readTokenFile(file)).toThrow(/holds no token/);
      expect(() => readTokenFile(path.join(dir, 'none'))).toThrow(/ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
