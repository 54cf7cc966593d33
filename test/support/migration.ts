// Helpers of the migration integration tests (test/migration-*.test.ts): agent clients, waiting on
// migration phases, collecting a WatchMigration stream, and a report tap that sees the agents'
// NodeReports (writes_total is reported by agents but not exposed by the public API).
import { FINAL_PHASES as MODEL_FINAL_PHASES, pathTo, toProtoPhase, type MigrationPhase as MigrationPhaseName } from '@vmm/migration/phase';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { agent, cluster, promiseClient } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { freePort } from '@vmm/local-cluster/ports';
import type { ClusterOptions } from '@vmm/local-cluster/cluster';
import { expect } from 'vitest';
import { startTestCluster, type TestCluster } from './cluster.js';
import { controllerCredentialsFor } from './peer-credentials.js';
import { RegistryRelay, type RelayTls } from './registry-relay.js';
import { preparedCerts, type PreparedCerts } from './cluster.js';
import { waitFor } from './wait-for.js';

const { MigrationPhase, VmState, WorkloadKind } = cluster;
export { MigrationPhase, VmState, WorkloadKind };

/** The phase model's final phases (@vmm/migration/phase), as proto names. */
export const FINAL_PHASES: ReadonlySet<cluster.MigrationPhase> = new Set(MODEL_FINAL_PHASES.map((p) => toProtoPhase(p) as cluster.MigrationPhase));

/** The happy path's phases in their forward order, to check that a watch never goes backwards. */
export const PHASE_ORDER: readonly cluster.MigrationPhase[] = pathTo('PENDING', 'COMPLETED')
  .reduce<MigrationPhaseName[]>((acc, p) => [...acc, p], ['PENDING'])
  .map((p) => toProtoPhase(p) as cluster.MigrationPhase);

export const short = (phase: string): string => String(phase).replace(/^(MIGRATION_PHASE|VM_STATE|NODE_STATE)_/, '');

export function workload(kind: cluster.WorkloadKind, dirtyRatePagesPerSec: number, workingSetMib = 0, seed = 7): cluster.Workload {
  return { kind, dirtyRatePagesPerSec, workingSetMib, seed };
}

/**
 * A policy with every field set but xbzrle_cache_mib (its default depends on the VM's size, and an
 * explicit 0 is refused with xbzrle on), `overrides` applied.
 */
export function policy(overrides: Partial<cluster.MigrationPolicy> = {}): cluster.MigrationPolicy {
  return {
    downtimeLimitMs: 300,
    maxBandwidthMibPerSec: 0,
    maxRounds: 30,
    autoConverge: false,
    xbzrle: false,
    completionTimeoutMs: 120_000,
    ...overrides,
  };
}

// ---------------------------------------------------------------------------------------------
// Agents, over their own gRPC service (what the controller uses).

export function agentApi(address: string) {
  const client = new agent.AgentServiceClient(address, controllerCredentialsFor(address));
  return Object.assign(promiseClient(client, agent.AgentServiceService, agent), { client, close: () => client.close() });
}
export type AgentApi = ReturnType<typeof agentApi>;

/** What agent `address` runs right now (its ListVms). */
export async function agentVms(address: string): Promise<agent.VmStatus[]> {
  const a = agentApi(address);
  try {
    return (await a.listVms({}, { timeoutMs: 5000 })).vms;
  } finally {
    a.close();
  }
}

export async function agentHasVm(address: string, vmId: string): Promise<boolean> {
  return (await agentVms(address)).some((v) => v.vmId === vmId);
}

// ---------------------------------------------------------------------------------------------
// Migrations.

/** Polls GetMigration until its phase is one of `phases`; returns it. */
export function waitForPhase(
  api: ClusterApi,
  migrationId: string,
  phases: readonly cluster.MigrationPhase[],
  timeoutMs: number,
  intervalMs = 50,
): Promise<cluster.Migration> {
  let last = '';
  return waitFor(
    async () => {
      const m = await api.getMigration({ migrationId });
      last = `${short(m.phase)} round=${m.round} error=${m.error}`;
      return phases.includes(m.phase) ? m : undefined;
    },
    timeoutMs,
    `migration ${migrationId} in ${phases.map(short).join('/')} (last ${last})`,
    intervalMs,
  );
}

/** Waits until the migration ended (COMPLETED, FAILED or CANCELLED). */
export function waitForFinal(api: ClusterApi, migrationId: string, timeoutMs: number): Promise<cluster.Migration> {
  return waitForPhase(api, migrationId, [...FINAL_PHASES], timeoutMs, 100);
}

export interface WatchResult {
  messages: cluster.Migration[];
  /** True when the server ended the stream by itself (not our deadline). */
  ended: boolean;
}

/** Opens WatchMigration and collects every message until the server ends the stream or `timeoutMs`. */
export function watchMigration(api: ClusterApi, migrationId: string, timeoutMs: number): Promise<WatchResult> {
  return openWatch(api, migrationId, timeoutMs).done;
}

/**
 * A WatchMigration call, with its first message apart: a test that must know the server has answered
 * (e.g. with the current state) before it changes that state awaits `first`.
 */
export function openWatch(
  api: ClusterApi,
  migrationId: string,
  timeoutMs: number,
): { first: Promise<cluster.Migration>; done: Promise<WatchResult> } {
  let firstSeen: (m: cluster.Migration) => void = () => {};
  const first = new Promise<cluster.Migration>((resolve) => (firstSeen = resolve));
  const done = new Promise<WatchResult>((resolve, reject) => {
    const messages: cluster.Migration[] = [];
    const call = api.client.watchMigration({ migrationId }, { deadline: Date.now() + timeoutMs });
    call.on('data', (m: cluster.Migration) => {
      if (messages.push(m) === 1) firstSeen(m);
    });
    call.on('end', () => resolve({ messages, ended: true }));
    call.on('error', (err: ServiceError) => {
      if (err.code === 4 /* DEADLINE_EXCEEDED */) resolve({ messages, ended: false });
      else reject(err);
    });
  });
  return { first: Promise.race([first, done.then(() => Promise.reject(new Error('the watch ended before its first message')))]), done };
}

/** The common assertions on a finished COMPLETED migration. */
export function expectCompleted(m: cluster.Migration, context = ''): void {
  expect(short(m.phase), `phase of ${m.migrationId} ${context} (error: ${m.error})`).toBe('COMPLETED');
  expect(m.sourceDigest, 'source digest').toMatch(/^[0-9a-f]+$/);
  expect(m.targetDigest, 'target digest').toBe(m.sourceDigest);
  expect(m.downtimeMs, 'downtime_ms').toBeGreaterThan(0);
  expect(m.totalTimeMs, 'total_time_ms').toBeGreaterThan(0);
  expect(m.error, 'error of a completed migration').toBe('');
}

/** Every node's allocations, by node id. */
export async function allocations(api: ClusterApi): Promise<Record<string, { vcpus: number; memoryMib: number; vms: number }>> {
  const { nodes } = await api.listNodes({});
  return Object.fromEntries(
    nodes.map((n) => [n.nodeId, { vcpus: n.vcpusAllocated, memoryMib: n.memoryMibAllocated, vms: n.vmCount }]),
  );
}

/** Every migration (all pages of ListMigrations). */
export async function listAllMigrations(api: ClusterApi, vmId = ''): Promise<cluster.Migration[]> {
  const out: cluster.Migration[] = [];
  let pageToken = '';
  for (let i = 0; i < 1000; i++) {
    const res = await api.listMigrations({ vmId, pageSize: 100, pageToken });
    out.push(...res.migrations);
    if (!res.nextPageToken) return out;
    pageToken = res.nextPageToken;
  }
  throw new Error('ListMigrations pagination did not end');
}

// ---------------------------------------------------------------------------------------------
// The report tap: a RegistryService between the agents and the controller that forwards every call
// unchanged and keeps what each VmReport said.

export interface TappedVmReport {
  nodeId: string;
  vmId: string;
  state: cluster.VmState;
  writesTotal: number;
  dirtyRatePagesPerSec: number;
  fencingEpoch: number;
  atMs: number;
}

export class ReportTap {
  readonly reports: TappedVmReport[] = [];
  private relay!: RegistryRelay;

  private constructor() {}

  /** Listens on a free port and forwards to the controller at `controllerAddress` (connected lazily). */
  static async start(controllerAddress: string, tls?: RelayTls): Promise<ReportTap> {
    const tap = new ReportTap();
    tap.relay = await RegistryRelay.start(controllerAddress, (report) => tap.record(report), tls);
    return tap;
  }

  /** Where the agents should report (their CONTROLLER_ADDRESS). */
  get address(): string {
    return this.relay.address;
  }

  private record(report: agent.NodeReport): void {
    const atMs = Date.now();
    for (const vm of report.vms) {
      this.reports.push({
        nodeId: report.nodeId,
        vmId: vm.vmId,
        state: vm.state,
        writesTotal: Number(vm.writesTotal),
        dirtyRatePagesPerSec: Number(vm.dirtyRatePagesPerSec),
        fencingEpoch: Number(vm.fencingEpoch),
        atMs,
      });
    }
  }

  /** The reports of `vmId` (from `nodeId` if given), oldest first. */
  of(vmId: string, nodeId?: string): TappedVmReport[] {
    return this.reports.filter((r) => r.vmId === vmId && (nodeId === undefined || r.nodeId === nodeId));
  }

  /** Waits for a report of `vmId` that satisfies `check`, received after `afterMs`. */
  waitForReport(vmId: string, check: (r: TappedVmReport) => boolean, timeoutMs: number, afterMs = 0): Promise<TappedVmReport> {
    return waitFor(() => this.of(vmId).find((r) => r.atMs >= afterMs && check(r)), timeoutMs, `a report of ${vmId}`);
  }

  stop(): Promise<void> {
    return this.relay.stop();
  }
}

export interface MigrationTestCluster {
  c: TestCluster;
  api: ClusterApi;
  /** Present when started with `tap: true`. */
  tap: ReportTap | undefined;
  /** Closes the client, stops every process, removes the keys, stops the tap. */
  stop(): Promise<void>;
}

/**
 * A real cluster (startTestCluster) and a ClusterService client. With `tap`, the agents report
 * through a ReportTap (their CONTROLLER_ADDRESS points at it).
 */
export async function startMigrationCluster(
  options: Omit<ClusterOptions, 'redisUrl' | 'prefix'> & { tap?: boolean } = {},
): Promise<MigrationTestCluster> {
  const { tap: withTap, ...rest } = options;
  let tap: ReportTap | undefined;
  let port = rest.port;
  let agentPlanePort = rest.agentPlanePort;
  // The tap serves the agents before the cluster exists: over TLS it needs the cluster's certificates
  // and the controller's agent-plane port now.
  let certs: PreparedCerts | undefined;
  if (withTap) {
    port = port || (await freePort());
    if (!rest.insecure) {
      certs = await preparedCerts(rest.agents ?? 1);
      agentPlanePort = agentPlanePort || (await freePort());
    }
    tap = await ReportTap.start(`127.0.0.1:${rest.insecure ? port : agentPlanePort}`, certs);
  }
  let c: TestCluster;
  try {
    c = await startTestCluster({
      ...rest,
      port,
      agentPlanePort,
      ...(certs ? { certsDir: certs.certsDir } : {}),
      agentEnv: (i) => ({ ...rest.agentEnv?.(i), ...(tap ? { CONTROLLER_ADDRESS: tap.address } : {}) }),
    });
  } catch (err) {
    await tap?.stop();
    await certs?.remove();
    throw err;
  }
  const api = c.api();
  return {
    c,
    api,
    tap,
    stop: async () => {
      api.close();
      try {
        await c.stop();
      } finally {
        await tap?.stop();
        await certs?.remove();
      }
    },
  };
}

/** Address of the agent serving `nodeId`. */
export function agentAddress(c: TestCluster, nodeId: string): string {
  const a = c.agents.find((x) => x.nodeId === nodeId);
  if (!a) throw new Error(`no agent ${nodeId}`);
  return a.address;
}
