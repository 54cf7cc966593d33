/**
 * `bench:scheduler` (docs/benchmarks.md): placement throughput of the pure scheduler, of the atomic Redis
 * reservation, and of CreateVm over gRPC against an in-process controller with fake agents.
 * One JSON line per case on stdout; progress on stderr.
 *
 *   node apps/controller/dist/bench/scheduler.bench.js [--reps 3]
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import type { NodeRecord } from '../common/model.js';
import { PlacementRepository } from '../redis/placement.repository.js';
import { redisKeys } from '../redis/redis-keys.js';
import { NodeRepository } from '../redis/node.repository.js';
import { rankNodes } from '../scheduler/scheduler.js';
import { deletePrefix, startTestRedis } from '../testing/redis-server.fixture.js';
import { IDLE_WORKLOAD, testNode, testVm } from '../testing/records.js';
import { startSpecCluster } from '../testing/spec-cluster.js';

const reps = Number(process.argv[process.argv.indexOf('--reps') + 1] || 3) || 3;
const log = (msg: string) => process.stderr.write(`${msg}\n`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function emit(fields: Record<string, unknown>, samples: number[], headline: string): void {
  const line = { bench: 'scheduler', ...fields, [headline]: median(samples), reps: samples.length, min: Math.min(...samples), max: Math.max(...samples) };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** Calls `fn(0)` … `fn(count - 1)` in order of start, at most `concurrency` at a time. */
async function forEachConcurrently(count: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await fn(next++);
    }),
  );
}

/** When the fake nodes last reported: readiness is judged at this instant, not at the wall clock. */
const REPORTED_AT_MS = Date.now();

function fakeNodes(n: number): NodeRecord[] {
  const now = REPORTED_AT_MS;
  return Array.from({ length: n }, (_, i) =>
    testNode({
      nodeId: `node-${String(i).padStart(5, '0')}`,
      address: '127.0.0.1:1',
      vcpus: 64,
      memoryMib: 262_144,
      cpuAllocationRatio: 4,
      ramAllocationRatio: 1.5,
      vcpusAllocated: (i * 7) % 200,
      memoryMibAllocated: (i * 9973) % 300_000,
      cordoned: i % 50 === 0,
      lastReportMs: now,
      registeredAtMs: now,
    }),
  );
}

/** Ranks the nodes for each VM and takes the best, updating the chosen node as the reservation would. */
function placeAll(list: NodeRecord[], vms: number): number {
  const images = ['debian-12', 'ubuntu-24.04', 'alpine-3.20', 'empty'];
  let placed = 0;
  for (let i = 0; i < vms; i++) {
    const request = { vcpus: 1 + (i % 2), memoryMib: 512 * (1 + (i % 4)), antiAffinityGroup: '', image: images[i % images.length]! };
    // A long run must not age the nodes into NOT_READY: what is measured is filtering and weighing.
    const { candidates } = rankNodes(list, request, { nowMs: REPORTED_AT_MS, staleAfterMs: 3000, antiAffinityNodeIds: new Set() });
    const chosen = candidates[0];
    if (!chosen) continue;
    chosen.vcpusAllocated += request.vcpus;
    chosen.memoryMibAllocated += request.memoryMib;
    chosen.vmCount++;
    chosen.imageCounts[request.image] = (chosen.imageCounts[request.image] ?? 0) + 1;
    placed++;
  }
  return placed;
}

/** Placements per second while placing `vms` VMs onto `nodes` nodes (fresh nodes each repetition). */
function benchPure(nodes: number, vms: number): void {
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    const list = fakeNodes(nodes);
    const t0 = performance.now();
    const placed = placeAll(list, vms);
    samples.push(Math.round(vms / ((performance.now() - t0) / 1000)));
    if (placed !== vms) throw new Error(`placed ${placed} of ${vms} VMs on ${nodes} nodes`);
  }
  emit({ case: `filter-weigh-${nodes}-nodes-${vms}-vms`, nodes, vms }, samples, 'placements_per_sec');
}

async function benchReserve(vms: number, concurrency: number): Promise<void> {
  const server = await startTestRedis();
  const redis = new Redis(server.url);
  const samples: number[] = [];
  try {
    for (let r = 0; r < reps; r++) {
      const prefix = `bench-${randomUUID()}`;
      const keys = redisKeys(prefix);
      const nodes = new NodeRepository(redis, keys);
      const placement = new PlacementRepository(redis, keys);
      await nodes.upsertRegistration({ nodeId: 'n1', address: '127.0.0.1:1', vcpus: 100_000, memoryMib: 10_000_000, cpuAllocationRatio: 1, ramAllocationRatio: 1, agentVersion: '', hypervisor: 'emulator' }, Date.now());
      const t0 = performance.now();
      await forEachConcurrently(vms, concurrency, async (i) => {
        const vm = testVm({ vmId: `vm-${String(i).padStart(8, '0')}`, name: `b-${i}`, nodeId: 'n1', memoryMib: 64 });
        if ((await placement.reserve(vm, Date.now(), 3000)) !== 'OK') throw new Error('reservation refused');
      });
      samples.push(Math.round(vms / ((performance.now() - t0) / 1000)));
      await deletePrefix(redis, prefix);
    }
  } finally {
    await redis.quit();
    await server.stop();
  }
  emit({ case: `redis-reserve-c${concurrency}`, nodes: 1, vms, concurrency }, samples, 'placements_per_sec');
}

async function benchGrpc(nodeCount: number, vms: number, concurrency: number): Promise<void> {
  const c = await startSpecCluster({
    agents: Array.from({ length: nodeCount }, (_, i) => ({ nodeId: `node-${i + 1}`, vcpus: 64, memoryMib: 65_536 })),
  });
  const rates: number[] = [];
  const p50s: number[] = [];
  const p99s: number[] = [];
  try {
    for (let r = 0; r < reps; r++) {
      const latencies: number[] = [];
      const created: string[] = [];
      const t0 = performance.now();
      await forEachConcurrently(vms, concurrency, async (i) => {
        const s = performance.now();
        const vm = await c.api.createVm({ name: `g${r}-${i}`, vcpus: 1, memoryMib: 64, workload: IDLE_WORKLOAD });
        latencies.push(performance.now() - s);
        created.push(vm.vmId);
      });
      rates.push(Math.round(vms / ((performance.now() - t0) / 1000)));
      latencies.sort((a, b) => a - b);
      p50s.push(Number(latencies[Math.floor(latencies.length * 0.5)]!.toFixed(2)));
      p99s.push(Number(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))]!.toFixed(2)));
      for (const id of created) await c.api.deleteVm(id);
      log(`grpc rep ${r + 1}/${reps}: ${rates.at(-1)} calls/s`);
    }
  } finally {
    await c.stop();
  }
  const line = {
    bench: 'scheduler',
    case: `grpc-create-vm-c${concurrency}`,
    nodes: nodeCount,
    vms,
    concurrency,
    placements_per_sec: median(rates),
    calls_per_sec: median(rates),
    p50_ms: median(p50s),
    p99_ms: median(p99s),
    reps,
    min: Math.min(...rates),
    max: Math.max(...rates),
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function main(): Promise<void> {
  log('pure scheduler…');
  benchPure(100, 5_000);
  benchPure(1000, 10_000);
  log('redis reservation…');
  await benchReserve(5000, 1);
  await benchReserve(5000, 16);
  log('CreateVm over gRPC…');
  await benchGrpc(10, 500, 16);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    log(`bench failed: ${error instanceof Error ? error.stack : String(error)}`);
    process.exit(1);
  },
);
