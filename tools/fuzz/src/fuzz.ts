/**
 * The fuzzer (issue #9, point 5): random and boundary input, for a given time, to every ClusterService
 * and AgentService method (typed messages and raw bytes) and to a migration's data port (random
 * frames with and without a valid HELLO), plus 1,000 idle connections, against a running local
 * cluster. It passes when no process exits, nothing is answered UNKNOWN or INTERNAL, a batch of
 * refused changing calls changes nothing, every watch closes, and each process's RSS is back within
 * 10% of where it started (both read the same way: see `MEASURED_EXEC_ARGV` and `settledRssMib`).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { Client, Metadata, status, type ChannelCredentials, type ServiceDefinition, type ServiceError } from '@grpc/grpc-js';
import fc from 'fast-check';
import { processAllocator, type Allocator } from '@vmm/local-cluster/allocator';
import { startCluster, type LocalCluster } from '@vmm/local-cluster/cluster';
import { certFiles } from '@vmm/local-cluster/cluster-env';
import { fromProtoPhase, isFinal } from '@vmm/migration/phase';
import { encodeHello } from '@vmm/migration/wire/codec';
import { agent, cluster } from '@vmm/proto';
import { rawBytes, requestLike } from './values.js';

export interface FuzzOptions {
  seconds: number;
  seed: number;
  log: (line: string) => void;
}

export interface FuzzSummary {
  seed: number;
  seconds: number;
  calls: number;
  byStatus: Record<string, number>;
  dataConnections: number;
  idleConnections: number;
  watches: number;
  crashes: string[];
  violations: string[];
  rssMib: Record<string, { before: number; after: number }>;
  /** Each process's malloc, as its memory map shows it. */
  allocators: Record<string, 'jemalloc' | 'glibc'>;
}

const STATUS_NAME = Object.fromEntries(Object.entries(status).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v as number, k]));
/** Calls that change something: a batch of them, all refused, must leave the cluster as it was. */
const CHANGING = /^(create|delete|migrate|cancel|cordon|uncordon|drain|set|pause|resume|stop|start)/i;
const DEADLINE_MS = 5000;

type Method = { name: string; path: string; responseStream: boolean; requestStream: boolean; serialize(v: unknown): Buffer; template: Record<string, unknown> };

function methodsOf(service: ServiceDefinition): Method[] {
  return Object.entries(service)
    .filter(([, d]) => !d.requestStream)
    .map(([name, d]) => ({
      name,
      path: d.path,
      responseStream: d.responseStream,
      requestStream: d.requestStream,
      serialize: d.requestSerialize as (v: unknown) => Buffer,
      template: d.requestDeserialize(Buffer.alloc(0)) as Record<string, unknown>,
    }));
}

function rssMib(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * How the fuzz cluster's controller and agents run, so that RSS measures what a process holds rather
 * than what its allocators have not handed back yet. A 10-minute run showed both, and no retained
 * object: the controller's old generation held 31.8 MB live at minute 3 and 31.5 MB at the end.
 * - V8's young generation grows under load from 1–4 MB to two 16 MB semi-spaces, and shrinks again only
 *   on a memory-reducing GC (the memory reducer's), which comes at random, after seconds or minutes: a
 *   baseline taken with a small one and an end with a large one differ by ~30 MiB, the controller's
 *   +20–32% of earlier runs. Pinned at 16 MB it still differed: its pages are committed at once but
 *   become resident only as allocation first touches them, so the controller's RSS rose by 15–30 MiB
 *   over a 60 s run with its heap's committed size unchanged (its small anonymous mappings grew, its
 *   malloc heap did not). A full GC leaves the young generation empty, so its size is only slack: it
 *   is pinned small (2 MB semi-spaces), all of it resident from the start.
 * - `--expose-gc` and gc-on-signal.js: SIGUSR2 runs a full GC before each reading, at the start as at
 *   the end (between two full GCs the old generation also holds up to ~10 MB of garbage).
 * - malloc: the controller runs with jemalloc as it always does where it is installed; the agents are
 *   asked for it too where it is (`agentAllocator`; the summary's `allocators` says what ran), since
 *   glibc's main heap keeps what a burst made it grow by whenever one long-lived allocation lands above
 *   it (an agent's brk heap from 10 to 38 MiB, then 30 for the rest of a 10-minute run, with nothing
 *   retained: JS heap, external memory and handles unchanged), and that is the allocator's, not the
 *   product's (local-cluster's allocator.ts has the measurements).
 */
export const FUZZ_AGENT_ALLOCATOR: Allocator = 'auto';
export const MEASURED_EXEC_ARGV: readonly string[] = [
  '--expose-gc',
  '--min-semi-space-size=2',
  '--max-semi-space-size=2',
  `--import=${new URL('./gc-on-signal.js', import.meta.url).href}`,
];

/** Each process's RSS after a full GC in it (SIGUSR2, see gc-on-signal.ts): the lowest of `samples` readings 2 s apart. */
async function settledRssMib(pids: Record<string, number | undefined>, samples: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < samples; i++) {
    for (const pid of Object.values(pids)) if (pid !== undefined) try { process.kill(pid, 'SIGUSR2'); } catch { /* exited: rssMib says NaN */ }
    await sleep(2000);
    for (const [name, pid] of Object.entries(pids)) out[name] = Math.min(out[name] ?? Infinity, rssMib(pid));
  }
  return out;
}

/** Cancels what runs, deletes every VM but `keep`, uncordons every node; waits until the cluster says so. */
async function restoreState(api: ReturnType<LocalCluster['api']>, keep: Set<string>): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const [vms, migrations, nodes] = await Promise.all([api.listVms({ pageSize: 1000 }), api.listMigrations({ pageSize: 1000 }), api.listNodes({})]);
    const running = migrations.migrations.filter((m) => {
      const phase = fromProtoPhase(cluster.migrationPhaseToJSON(m.phase));
      return phase !== undefined && !isFinal(phase);
    });
    const extra = vms.vms.filter((v) => !keep.has(v.vmId));
    const cordoned = nodes.nodes.filter((n) => n.state === cluster.NodeState.NODE_STATE_CORDONED || n.state === cluster.NodeState.NODE_STATE_DRAINING);
    if (running.length === 0 && extra.length === 0 && cordoned.length === 0) return;
    for (const m of running) await api.cancelMigration({ migrationId: m.migrationId }).catch(() => undefined);
    for (const v of extra) await api.deleteVm({ vmId: v.vmId }).catch(() => undefined);
    for (const n of cordoned) await api.uncordonNode({ nodeId: n.nodeId }).catch(() => undefined);
    await sleep(500);
  }
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzSummary> {
  const summary: FuzzSummary = { seed: opts.seed, seconds: opts.seconds, calls: 0, byStatus: {}, dataConnections: 0, idleConnections: 0, watches: 0, crashes: [], violations: [], rssMib: {}, allocators: {} };
  const c: LocalCluster = await startCluster({ agents: 2, reportIntervalMs: 500, logLevel: 'error', agentAllocator: FUZZ_AGENT_ALLOCATOR, execArgv: MEASURED_EXEC_ARGV, onLine: (name, line) => /"level":(50|60)/.test(line) && opts.log(`[${name}] ${line.slice(0, 300)}`) });
  const asController = c.credentials.as('controller');
  const apiClient = new Client(c.controllerAddress, c.credentials.api());
  const agentClients = c.agents.map((a) => new Client(a.address, asController));
  const api = c.api();
  const rng = fc.sample(fc.integer(), { seed: opts.seed, numRuns: 1 })[0]!;
  let counter = Math.abs(rng);
  const pick = <T>(list: readonly T[]): T => list[counter++ % list.length]!;
  const sampleOf = <T>(arb: fc.Arbitrary<T>): T => fc.sample(arb, { seed: opts.seed + counter++, numRuns: 1 })[0]!;

  const record = (method: string, code: number, input: string) => {
    const name = STATUS_NAME[code] ?? String(code);
    summary.byStatus[name] = (summary.byStatus[name] ?? 0) + 1;
    summary.calls++;
    if (code === status.UNKNOWN || code === status.INTERNAL) {
      const v = `${method} answered ${name} to ${input.slice(0, 200)}`;
      if (summary.violations.length < 50) summary.violations.push(v);
      opts.log(`VIOLATION ${v}`);
    }
  };

  const unary = (client: Client, m: Method, body: Buffer): Promise<number> =>
    new Promise((resolve) => {
      client.makeUnaryRequest(m.path, (b: Buffer) => b, (b: Buffer) => b, body, new Metadata(), { deadline: Date.now() + DEADLINE_MS }, (err: ServiceError | null) =>
        resolve(err ? err.code : status.OK),
      );
    });
  const serverStream = (client: Client, m: Method, body: Buffer): Promise<number> =>
    new Promise((resolve) => {
      const call = client.makeServerStreamRequest(m.path, (b: Buffer) => b, (b: Buffer) => b, body, new Metadata(), { deadline: Date.now() + DEADLINE_MS });
      summary.watches++;
      let done = false;
      const finish = (code: number) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(code);
      };
      // A watch that is still open after a second is cancelled: it must then close (CANCELLED).
      const timer = setTimeout(() => call.cancel(), 1000);
      call.on('data', () => undefined);
      call.on('error', (e: ServiceError) => finish(e.code));
      call.on('end', () => finish(status.OK));
      call.on('status', (s: { code: number }) => finish(s.code));
    });

  const call = async (client: Client, m: Method, body: Buffer, input: string) => {
    const code = m.responseStream ? await serverStream(client, m, body) : await unary(client, m, body);
    // A cancelled watch is the fuzzer's doing, not the server's.
    record(m.name, code, input);
    return code;
  };

  const encode = (m: Method, value: unknown): Buffer | undefined => {
    try {
      return m.serialize(value);
    } catch {
      return undefined; // a value the client library itself refuses to encode (e.g. a string where bytes go)
    }
  };

  const clusterMethods = methodsOf(cluster.ClusterServiceService as unknown as ServiceDefinition);
  const agentMethods = methodsOf(agent.AgentServiceService as unknown as ServiceDefinition);

  const alive = () => {
    for (const p of c.processes()) {
      if (p.state !== 'running' && !summary.crashes.includes(p.name)) {
        summary.crashes.push(p.name);
        opts.log(`CRASH ${p.name} is ${p.state}`);
      }
    }
  };

  const snapshot = async () => {
    const [vms, nodes] = await Promise.all([api.listVms({ pageSize: 1000 }), api.listNodes({})]);
    return JSON.stringify([vms.vms.map((v) => `${v.vmId}/${v.nodeId}/${v.state}`).sort(), nodes.nodes.map((n) => `${n.nodeId}/${n.state}/${n.vcpusAllocated}/${n.memoryMibAllocated}`)]);
  };

  /** Typed and raw requests to every method of a service; changing batches are checked for no effect. */
  const fuzzService = async (client: Client, methods: Method[], service: string) => {
    const before = await snapshot().catch(() => undefined);
    let allRefused = true;
    for (let i = 0; i < 20; i++) {
      const m = pick(methods);
      const typed = counter % 3 !== 0;
      let body: Buffer | undefined;
      let input: string;
      if (typed) {
        const value = sampleOf(requestLike(m.template));
        body = encode(m, value);
        input = JSON.stringify(value, (_k, v) => (typeof v === 'string' && v.length > 64 ? `${v.slice(0, 64)}…(${v.length})` : Array.isArray(v) && v.length > 8 ? `[${v.length} entries]` : v));
      } else {
        body = sampleOf(rawBytes(encode(m, m.template) ?? Buffer.alloc(0)));
        input = `raw ${body.length} bytes ${body.subarray(0, 24).toString('hex')}`;
      }
      if (!body) continue;
      const code = await call(client, m, body, `${service}/${m.name} ${input}`);
      if (CHANGING.test(m.name) && code === status.OK) allRefused = false;
      if (!CHANGING.test(m.name) && m.responseStream) continue;
    }
    const after = await snapshot().catch(() => undefined);
    if (allRefused && before !== undefined && after !== undefined && before !== after && service === 'ClusterService') {
      summary.violations.push(`a batch of refused ${service} calls changed the cluster: ${before} → ${after}`);
    }
  };

  /** One migration's data port: random frames over TLS as the expected source, with and without HELLO, and plaintext junk. */
  const fuzzDataPort = async () => {
    const migrationId = `fuzz-${randomUUID()}`;
    const token = randomUUID();
    const target = agentClients[1]!;
    const prepare = agentMethods.find((m) => m.name === 'prepareIncoming')!;
    const spec = { vmId: `fuzz-vm-${randomUUID().slice(0, 8)}`, name: 'fuzz', vcpus: 1, memoryMib: 16, image: 'empty', workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_IDLE, dirtyRatePagesPerSec: 0, workingSetMib: 0, seed: 1 } };
    const response = await new Promise<Buffer | undefined>((resolve) =>
      target.makeUnaryRequest(prepare.path, (b: Buffer) => b, (b: Buffer) => b, prepare.serialize(agent.PrepareIncomingRequest.fromPartial({ migrationId, spec, token, sourceNodeId: c.agents[0]!.nodeId })), new Metadata(), { deadline: Date.now() + DEADLINE_MS }, (err, res) =>
        resolve(err ? undefined : (res as Buffer)),
      ),
    );
    if (!response) return;
    const { dataAddress } = agent.PrepareIncomingResponse.decode(response);
    const [host, port] = [dataAddress.slice(0, dataAddress.lastIndexOf(':')), Number(dataAddress.slice(dataAddress.lastIndexOf(':') + 1))];
    const files = certFiles(c.certsDir, c.agents[0]!.nodeId);
    const hello = encodeHello({ version: 1, maxVersion: 2, migrationId, token, pageCount: 16 * 256, memoryMib: 16, image: 'empty', vcpus: 1 });
    for (let i = 0; i < 4; i++) {
      const junk = Buffer.from(sampleOf(fc.uint8Array({ minLength: 1, maxLength: 64 * 1024 })));
      const withHello = i % 2 === 1;
      const socket = c.insecure
        ? net.connect({ host, port })
        : tls.connect({ host, port, ca: readFileSync(files.ca), cert: readFileSync(files.cert), key: readFileSync(files.key) });
      summary.dataConnections++;
      await new Promise<void>((resolve) => {
        socket.on('error', () => resolve());
        socket.on('close', () => resolve());
        socket.once(c.insecure ? 'connect' : 'secureConnect', () => {
          socket.write(withHello ? Buffer.concat([hello, junk]) : junk);
          setTimeout(() => socket.destroy(), 300);
        });
        setTimeout(() => socket.destroy(), 3000);
      });
    }
    const plain = net.connect({ host, port });
    summary.dataConnections++;
    await new Promise<void>((resolve) => {
      plain.on('error', () => resolve());
      plain.on('close', () => resolve());
      plain.on('connect', () => plain.end(Buffer.from(sampleOf(fc.uint8Array({ maxLength: 4096 })))));
      setTimeout(() => plain.destroy(), 3000);
    });
    const abort = agentMethods.find((m) => m.name === 'abortMigration')!;
    await unary(target, abort, abort.serialize(agent.AbortMigrationRequest.fromPartial({ migrationId, reason: 'fuzz', fencingEpoch: 0 })));
  };

  /** 1,000 TCP connections that say nothing, to the API, the agent plane and an agent; then closed. */
  const idleConnections = async () => {
    const addresses = [c.controllerAddress, c.agentPlaneAddress, c.agents[0]!.address];
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 1000; i++) {
      const address = addresses[i % addresses.length]!;
      const s = net.connect({ host: '127.0.0.1', port: Number(address.slice(address.lastIndexOf(':') + 1)) });
      s.on('error', () => undefined);
      sockets.push(s);
    }
    summary.idleConnections += sockets.length;
    await sleep(3000);
    for (const s of sockets) s.destroy();
  };

  const initialVms = new Set<string>();
  const pids = () => Object.fromEntries(c.processes().filter((p) => p.kind !== 'redis').map((p) => [p.name, p.pid]));
  try {
    // Something to act on: a VM on each node.
    for (const a of c.agents) initialVms.add((await api.createVm(cluster.CreateVmRequest.fromPartial({ name: `fuzz-${a.nodeId}`, vcpus: 1, memoryMib: 64, image: 'empty', nodeId: a.nodeId, workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_IDLE, seed: 1 } }))).vmId);
    // Warm up every kind of traffic once (JIT, pools, TLS sessions, heap size) and come back to the
    // starting state before the baseline: what is measured later is what the fuzzing kept.
    for (let i = 0; i < 3; i++) await fuzzService(apiClient, clusterMethods, 'ClusterService');
    for (const client of agentClients) await fuzzService(client, agentMethods, 'AgentService');
    await fuzzDataPort();
    await idleConnections();
    await restoreState(api, initialVms);
    await sleep(3000);
    // Read exactly as at the end: after a full GC, the lowest of 3 readings.
    const before = await settledRssMib(pids(), 3);
    for (const [name, pid] of Object.entries(pids())) if (pid !== undefined) summary.allocators[name] = processAllocator(pid);
    const deadline = Date.now() + opts.seconds * 1000;
    let round = 0;
    await idleConnections();
    while (Date.now() < deadline) {
      round++;
      await fuzzService(apiClient, clusterMethods, 'ClusterService');
      await fuzzService(pick(agentClients), agentMethods, 'AgentService');
      if (round % 3 === 0) await fuzzDataPort();
      alive();
      if (round % 10 === 0) opts.log(`round ${round}: ${summary.calls} calls ${JSON.stringify(summary.byStatus)}`);
    }
    await idleConnections();
    alive();
    // Back to the starting state (the fuzzer's accepted calls created VMs and migrations, cordoned
    // nodes): what is measured against the baseline is what the processes kept, not what they hold.
    await restoreState(api, initialVms);
    // Settle: what the calls allocated is garbage by now. Each process's lowest RSS after a full GC,
    // read as the baseline was (at least 3 readings, up to 15 over 30 s, ended early once all are back).
    const after: Record<string, number> = {};
    for (let attempt = 0; attempt < 15; attempt++) {
      for (const [name, mib] of Object.entries(await settledRssMib(pids(), 1))) after[name] = Math.min(after[name] ?? Infinity, mib);
      if (attempt >= 2 && Object.keys(before).every((name) => after[name]! <= before[name]! * 1.1)) break;
    }
    for (const name of Object.keys(before)) {
      summary.rssMib[name] = { before: Math.round(before[name]! * 10) / 10, after: Math.round(after[name]! * 10) / 10 };
      if (!(after[name]! <= before[name]! * 1.1)) summary.violations.push(`${name}: RSS ${before[name]!.toFixed(1)} → ${after[name]!.toFixed(1)} MiB (more than 10% above where it started)`);
    }
  } finally {
    apiClient.close();
    for (const a of agentClients) a.close();
    api.close();
    await c.stop();
  }
  return summary;
}
