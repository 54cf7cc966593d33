/**
 * One chaos run: a supervised local cluster (Redis, a controller, 3+ agents, every process restarted
 * within 2 s when it dies), a fleet of busy VMs, migrations started one after the other (some with
 * auto-converge, some with limits tight enough to fail), and a fault aimed at a phase of about half of
 * them. After each migration settles, and at the end, every invariant of the failure semantics is
 * checked against what every agent holds and what the API says (invariants.ts), polling until the
 * cluster converges or a deadline passes: a violation is what is still wrong once the cluster had time
 * to reconcile.
 */
import { status, type ServiceError } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { FINAL_PHASES, toProtoPhase } from '@vmm/migration';
import { agent, cluster, promiseClient } from '@vmm/proto';
import { startCluster, type LocalCluster } from '@vmm/local-cluster/cluster';
import { type ClusterApi } from '@vmm/local-cluster/grpc-client';
import { actionOf, planFault, type FaultPlan } from './faults.js';
import { checkInvariants, checkOutcome, type Snapshot, type Violation } from './invariants.js';
import { Rng } from './rng.js';

export interface ChaosOptions {
  migrations: number;
  seed: number;
  agents: number;
  vms: number;
  /** Share of migrations that get a fault. */
  faultRate: number;
  /** Longest SIGSTOP (ms). */
  maxStopMs: number;
  log: (line: string) => void;
}

export interface ChaosSummary {
  seed: number;
  migrations: number;
  durationS: number;
  outcomes: Record<string, number>;
  faults: Record<string, Record<string, number>>;
  faultsMissed: number;
  checks: number;
  violations: (Violation & { afterMigration: number })[];
}

const S = cluster.VmState;
const FINAL = new Set<string>(FINAL_PHASES.map(toProtoPhase));
const REPORT_INTERVAL_MS = 250;
const LEASE_MS = 1_000;
/** How long the cluster gets to converge after a fault before what is still wrong is a violation. */
const SETTLE_MS = 90_000;
const MIGRATION_TIMEOUT_MS = 240_000;
const MAX_ATTEMPTS_PER_MIGRATION = 3;

const short = (s: string) => String(s).replace(/^(MIGRATION_PHASE|VM_STATE|NODE_STATE)_/, '');
const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A call to the API that rides out the controller's (or Redis') restarts: retried while UNAVAILABLE. */
async function retrying<T>(what: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await what();
    } catch (error) {
      const code = (error as ServiceError).code;
      const transient = code === status.UNAVAILABLE || code === status.DEADLINE_EXCEEDED || code === status.INTERNAL || code === status.UNKNOWN;
      if (!transient || Date.now() > deadline) throw error;
      await delay(200);
    }
  }
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosSummary> {
  const rng = new Rng(opts.seed);
  const started = Date.now();
  const summary: ChaosSummary = { seed: opts.seed, migrations: 0, durationS: 0, outcomes: {}, faults: {}, faultsMissed: 0, checks: 0, violations: [] };
  const c = await startCluster({
    agents: opts.agents,
    supervise: true,
    privateRedis: true,
    reportIntervalMs: REPORT_INTERVAL_MS,
    logLevel: process.env.CHAOS_LOG_LEVEL ?? 'error',
    controllerEnv: { NODE_LEASE_MS: String(LEASE_MS), MAX_MIGRATIONS_CLUSTER: '5' },
    onProcessEvent: (e) => opts.log(`process: ${JSON.stringify(e)}`),
  });
  const api: ClusterApi = c.api();
  const redis = new Redis(c.redisUrl, { maxRetriesPerRequest: null });
  // Redis is one of the processes the chaos kills: its client reconnects on its own; no unhandled error events.
  redis.on('error', () => {});
  // The checker asks each agent what it runs, as the controller does (AgentService answers no one else).
  const asController = c.credentials.as('controller');
  const agents = new Map(c.agents.map((a) => [a.nodeId, promiseClient(new agent.AgentServiceClient(a.address, asController), agent.AgentServiceService, agent)]));
  const record = (violations: Violation[], after: number) => {
    for (const v of violations) {
      summary.violations.push({ ...v, afterMigration: after });
      opts.log(`VIOLATION after migration ${after}: ${JSON.stringify(v)}`);
    }
  };
  try {
    // Until N migrations ran and were checked: an attempt that started none (no VM to move, MigrateVm
    // refused) does not count, and attempts are bounded so that a cluster that refuses every one ends.
    for (let attempt = 1; summary.migrations < opts.migrations; attempt++) {
      if (attempt > MAX_ATTEMPTS_PER_MIGRATION * opts.migrations) throw new Error(`only ${summary.migrations} of ${opts.migrations} migrations started in ${attempt - 1} attempts`);
      await replenish(api, rng, opts.vms);
      const vm = await pickVm(api, rng);
      if (!vm) {
        await delay(200);
        continue;
      }
      const fault = rng.chance(opts.faultRate) ? planFault(rng, opts.maxStopMs) : undefined;
      const outcome = await migrateOnce(c, api, agents, rng, vm, fault, opts.log);
      if (!outcome) continue;
      const i = ++summary.migrations;
      const key = `${short(outcome.migration.phase)}${outcome.migration.errorReason ? `:${outcome.migration.errorReason}` : ''}`;
      summary.outcomes[key] = (summary.outcomes[key] ?? 0) + 1;
      if (fault) {
        if (outcome.injected) (summary.faults[fault.kind] ??= {})[fault.phase] = (summary.faults[fault.kind]?.[fault.phase] ?? 0) + 1;
        else summary.faultsMissed++;
      }
      const settled = await settle(c, api, agents, redis);
      summary.checks++;
      record(settled, i);
      const finalVm = await retrying(() => api.getVm({ vmId: vm.vmId })).catch(() => undefined);
      const writesAfter = finalVm ? (await holdersOf(agents, finalVm.nodeId, finalVm.vmId))?.writesTotal : undefined;
      record(checkOutcome({ ...outcome, vm: finalVm, writesAfter: writesAfter === undefined ? undefined : Number(writesAfter) }), i);
      if (i % 10 === 0 || fault) opts.log(`migration ${i}/${opts.migrations}: ${key}${fault ? ` after ${fault.kind}@${fault.phase}${outcome.injected ? '' : ' (phase missed)'}` : ''}; ${summary.violations.length} violations`);
    }
    summary.checks++;
    record(await settle(c, api, agents, redis), opts.migrations);
  } finally {
    summary.durationS = Math.round((Date.now() - started) / 1000);
    redis.disconnect();
    api.close();
    await c.stop();
  }
  return summary;
}

type AgentClients = Map<string, ReturnType<typeof promiseClient<agent.AgentServiceClient>>>;

async function holdersOf(agents: AgentClients, nodeId: string, vmId: string): Promise<agent.VmStatus | undefined> {
  const client = agents.get(nodeId);
  if (!client) return undefined;
  const { vms } = await retrying(() => client.listVms({}), 10_000).catch(() => ({ vms: [] as agent.VmStatus[] }));
  return vms.find((v) => v.vmId === vmId);
}

/** Keeps `count` VMs running: FAILED ones go, new ones (busy, uniform or hot/cold, a third restartable) come. */
async function replenish(api: ClusterApi, rng: Rng, count: number): Promise<void> {
  const { vms } = await retrying(() => api.listVms({ pageSize: 1000, nodeId: '', pageToken: '' }));
  for (const vm of vms) if (vm.state === S.VM_STATE_FAILED) await retrying(() => api.deleteVm({ vmId: vm.vmId })).catch(() => undefined);
  const alive = vms.filter((v) => v.state !== S.VM_STATE_FAILED).length;
  for (let n = alive; n < count; n++) {
    const kind = rng.chance(0.5) ? cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM : cluster.WorkloadKind.WORKLOAD_KIND_HOTCOLD;
    const request = cluster.CreateVmRequest.fromPartial({
      name: `chaos-${Date.now().toString(36)}-${rng.int(0, 1e6)}`,
      vcpus: 1,
      memoryMib: 64,
      image: 'alpine-3.20',
      workload: { kind, dirtyRatePagesPerSec: rng.int(5_000, 50_000), workingSetMib: rng.int(8, 32), seed: rng.int(1, 1e6) },
      restartPolicy: rng.chance(1 / 3) ? cluster.RestartPolicy.RESTART_POLICY_ALWAYS : cluster.RestartPolicy.RESTART_POLICY_NEVER,
    });
    await retrying(() => api.createVm(request)).catch(() => undefined);
  }
}

async function pickVm(api: ClusterApi, rng: Rng): Promise<cluster.Vm | undefined> {
  const { vms } = await retrying(() => api.listVms({ pageSize: 1000, nodeId: '', pageToken: '' }));
  const running = vms.filter((v) => v.state === S.VM_STATE_RUNNING);
  return running.length > 0 ? rng.pick(running) : undefined;
}

function pickPolicy(rng: Rng): cluster.MigrationPolicy | undefined {
  const roll = rng.float();
  if (roll < 0.5) return undefined; // the defaults: unlimited bandwidth
  if (roll < 0.7) return { autoConverge: true, maxBandwidthMibPerSec: 64, maxRounds: 60 };
  if (roll < 0.85) return { maxRounds: 1, downtimeLimitMs: 1 }; // tight enough to fail
  return { maxBandwidthMibPerSec: 32 }; // a long pre-copy
}

interface Driven {
  migration: cluster.Migration;
  writesBefore: number;
  deleted: boolean;
  injected: boolean;
}

/** Starts a migration of `vm`, fires `fault` when its phase shows, and waits for its end. */
async function migrateOnce(
  c: LocalCluster,
  api: ClusterApi,
  agents: AgentClients,
  rng: Rng,
  vm: cluster.Vm,
  fault: FaultPlan | undefined,
  log: (line: string) => void,
): Promise<Driven | undefined> {
  const nodes = (await retrying(() => api.listNodes({}))).nodes.filter((n) => n.nodeId !== vm.nodeId && n.state === cluster.NodeState.NODE_STATE_READY);
  const target = rng.chance(0.7) && nodes.length > 0 ? rng.pick(nodes).nodeId : '';
  const writesBefore = Number((await holdersOf(agents, vm.nodeId, vm.vmId))?.writesTotal ?? 0);
  let m: cluster.Migration;
  try {
    // STOP_AND_COPY lasts milliseconds at full speed: aimed at, it gets a capped link so that the last
    // round under pause takes a good part of a 500 ms limit (auto-converge keeps it converging).
    const policy = fault?.phase === 'STOP_AND_COPY' ? { maxBandwidthMibPerSec: 48, downtimeLimitMs: 500, autoConverge: true } : pickPolicy(rng);
    m = await retrying(() => api.migrateVm(cluster.MigrateVmRequest.fromPartial({ vmId: vm.vmId, targetNodeId: target, policy })));
  } catch (error) {
    const code = (error as ServiceError).code;
    if (code === status.FAILED_PRECONDITION || code === status.RESOURCE_EXHAUSTED || code === status.NOT_FOUND) return undefined;
    throw error;
  }
  let injected = false;
  let deleted = false;
  const timers: Promise<void>[] = [];
  const fire = async (): Promise<void> => {
    if (!fault || injected) return;
    injected = true;
    const action = actionOf(fault, m.sourceNodeId, m.targetNodeId);
    log(`fault ${fault.kind}@${fault.phase} on ${m.migrationId}`);
    switch (action.kind) {
      case 'signal':
        c.signal(action.process, action.signal);
        return;
      case 'stop':
        c.signal(action.process, 'SIGSTOP');
        timers.push(delay(action.ms).then(() => void c.signal(action.process, 'SIGCONT')));
        return;
      case 'kill-twice': {
        const restarts = c.restartsOf(action.process);
        c.signal(action.process, 'SIGKILL');
        timers.push(
          c
            .waitForRestart(action.process, { after: restarts, timeoutMs: 30_000 })
            .then(() => delay(rng.int(0, 1_500)))
            .then(() => void c.signal(action.process, 'SIGKILL'))
            .catch(() => undefined),
        );
        return;
      }
      case 'delete-vm':
        await api.deleteVm({ vmId: m.vmId }).then(
          () => void (deleted = true),
          () => undefined, // refused while it migrates: the race's expected outcome
        );
        return;
      case 'cancel':
        await api.cancelMigration({ migrationId: m.migrationId }).catch(() => undefined);
        return;
    }
  };
  const final = await follow(api, m.migrationId, async (phase) => {
    if (fault && short(phase) === fault.phase) await fire();
  });
  await Promise.all(timers);
  return { migration: final, writesBefore, deleted, injected };
}

/** Watches a migration to its end through controller restarts (the stream is opened again), calling `onPhase` per message. */
async function follow(api: ClusterApi, migrationId: string, onPhase: (phase: string) => Promise<void>): Promise<cluster.Migration> {
  const deadline = Date.now() + MIGRATION_TIMEOUT_MS;
  for (;;) {
    const last = await new Promise<cluster.Migration | undefined>((resolve) => {
      let latest: cluster.Migration | undefined;
      let chain = Promise.resolve();
      const call = api.client.watchMigration({ migrationId }, { deadline: Date.now() + 30_000 });
      call.on('data', (m: cluster.Migration) => {
        latest = m;
        chain = chain.then(() => onPhase(m.phase)).catch(() => undefined);
      });
      const done = () => void chain.then(() => resolve(latest));
      call.on('end', done);
      call.on('error', done);
    });
    if (last && FINAL.has(last.phase)) return last;
    const now = await api.getMigration({ migrationId }).catch(() => undefined);
    if (now && FINAL.has(now.phase)) return now;
    if (Date.now() > deadline) throw new Error(`migration ${migrationId} did not end within ${MIGRATION_TIMEOUT_MS} ms (last ${now ? short(now.phase) : 'unknown'})`);
    await delay(200);
  }
}

/** Waits until the cluster is quiet and its invariants hold; what still fails at the deadline is returned. */
async function settle(c: LocalCluster, api: ClusterApi, agents: AgentClients, redis: Redis): Promise<Violation[]> {
  const deadline = Date.now() + SETTLE_MS;
  let last: Violation[] = [];
  for (;;) {
    try {
      const processes = c.processes();
      const down = processes.filter((p) => p.state !== 'running');
      if (down.length > 0) last = [{ kind: 'process-down', detail: down.map((p) => `${p.name}:${p.state}`).join(', ') }];
      else {
        last = checkInvariants(await snapshot(c, api, agents, redis));
        if (last.length === 0) return [];
      }
    } catch (error) {
      last = [{ kind: 'unreachable', detail: error instanceof Error ? error.message : String(error) }];
    }
    if (Date.now() > deadline) return last;
    await delay(250);
  }
}

async function snapshot(c: LocalCluster, api: ClusterApi, agents: AgentClients, redis: Redis): Promise<Snapshot> {
  const [{ vms }, { nodes }] = await Promise.all([api.listVms({ pageSize: 1000, nodeId: '', pageToken: '' }, { timeoutMs: 5_000 }), api.listNodes({}, { timeoutMs: 5_000 })]);
  const notReady = nodes.filter((n) => n.state !== cluster.NodeState.NODE_STATE_READY);
  if (notReady.length > 0) throw new Error(`nodes not ready: ${notReady.map((n) => `${n.nodeId}=${short(n.state)}`).join(', ')}`);
  const agentVms = new Map<string, agent.VmStatus[]>();
  for (const [nodeId, client] of agents) agentVms.set(nodeId, (await client.listVms({}, { timeoutMs: 5_000 })).vms);
  return {
    vms,
    nodes,
    agentVms,
    openMigrations: await redis.smembers(`${c.prefix}:migs-open`),
    slotsHeld: await redis.scard(`${c.prefix}:mig-active`),
  };
}
