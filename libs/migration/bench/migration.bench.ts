/**
 * bench:migration — pre-copy of a running VM between two processes over loopback TCP.
 * A 1 GiB VM, 256 MiB working set filled with random data, a uniform workload at 0…150k pages/s;
 * policies default, auto-converge and xbzrle, each unlimited and at 128 MiB/s (QEMU's default).
 * The target commits (resumes) as soon as it has verified the digest, standing in for an instant
 * controller commit, so downtime_ms = target resumed − source paused (same host clock).
 * An untimed 64 MiB migration runs first (JIT warm-up); the workers collect garbage before each case.
 * Flags: --quick (256 MiB VM, 64 MiB working set, fewer cases), --filter <substring of the case id>,
 * --timeout-ms <per-case completion timeout, default 30000>, --hypervisor qemu (the same cases on real
 * QEMU guests, the same fields plus `hypervisor`: see qemu-cases.ts).
 */
import { fileURLToPath } from 'node:url';
import { FramePool } from '@vmm/emulator';
import {
  MigrationReceiver,
  MigrationSender,
  connectOutgoing,
  listenForIncoming,
  maxXbzrleCacheMib,
  type IncomingResult,
  type MigrationProgress,
  type PartialMigrationPolicy,
} from '@vmm/migration';
import { makeIncomingVm, makeSourceVm } from '@vmm/migration/testing/vm-fixture';
import { Worker, arg, collectGarbage, emit, log, round3, serve } from './bench-util.js';
import { runQemuCases } from './qemu-cases.js';

const SELF = fileURLToPath(import.meta.url);

function describe(err: unknown): string {
  const code = (err as { code?: string }).code;
  return `${code ?? 'ERROR'}: ${err instanceof Error ? err.message : String(err)}`;
}
const POLICIES = ['default', 'auto-converge', 'xbzrle'] as const;
type PolicyName = (typeof POLICIES)[number];
/** The XBZRLE cache QEMU was measured with in docs/benchmarks.md (its default is 64 MiB). */
const XBZRLE_CACHE_MIB = 256;
const WARMUP_MS = 300;

interface CaseSpec {
  id: string;
  vmMib: number;
  workingSetMib: number;
  rate: number;
  policy: PolicyName;
  bandwidthMib: number;
  timeoutMs: number;
}

function policyFor(c: CaseSpec): PartialMigrationPolicy {
  return {
    maxBandwidthMibPerSec: c.bandwidthMib,
    completionTimeoutMs: c.timeoutMs,
    autoConverge: c.policy === 'auto-converge',
    xbzrle: c.policy === 'xbzrle',
    // At most the engine's limit for the VM (a quarter of it): the --quick VM is 256 MiB.
    xbzrleCacheMib: c.policy === 'xbzrle' ? Math.min(XBZRLE_CACHE_MIB, maxXbzrleCacheMib(c.vmMib * 1024 * 1024)) : 0,
  };
}

async function targetRole(): Promise<void> {
  const pool = new FramePool();
  let pending: Promise<unknown> | null = null;
  serve(async (msg) => {
    if (msg.cmd === 'listen') {
      collectGarbage();
      const id = String(msg.id);
      const vm = makeIncomingVm(pool, 'bench-vm', msg.vmMib as number);
      const listener = await listenForIncoming({ token: 'tok', migrationId: id, acceptTimeoutMs: 30_000 });
      pending = (async () => {
        let result: IncomingResult;
        try {
          const { connection, hello } = await listener.accept;
          result = await new MigrationReceiver({ vm, migrationId: id, token: 'tok', timeoutMs: (msg.timeoutMs as number) + 10_000 }).run(connection, hello);
        } catch (err) {
          return { ok: false, failure: describe(err) };
        }
        const { resumedAtMs } = result.commit();
        const digestOk = result.targetDigest === result.sourceDigest && vm.memory.digest() === result.sourceDigest;
        vm.stop();
        return { ok: true, resumedAtMs, digestOk };
      })();
      return { port: listener.port };
    }
    if (msg.cmd === 'result') return pending;
    throw new Error(`unknown command ${String(msg.cmd)}`);
  });
}

async function sourceRole(): Promise<void> {
  serve(async (msg) => {
    if (msg.cmd !== 'migrate') throw new Error(`unknown command ${String(msg.cmd)}`);
    const c = msg.spec as CaseSpec;
    collectGarbage();
    const vm = makeSourceVm(new FramePool(), 'bench-vm', {
      memoryMib: c.vmMib, workingSetMib: c.workingSetMib, kind: c.rate > 0 ? 'uniform' : 'idle', dirtyRatePagesPerSec: c.rate, seed: 42,
    });
    try {
      vm.start();
      await new Promise((r) => setTimeout(r, WARMUP_MS));
      const connection = await connectOutgoing(`127.0.0.1:${msg.port as number}`);
      let last: MigrationProgress | null = null;
      let throttleMax = 0;
      const sender = new MigrationSender({
        vm, migrationId: c.id, token: 'tok', policy: policyFor(c),
        onProgress: (p) => {
          last = p;
          throttleMax = Math.max(throttleMax, p.throttlePercent);
        },
      });
      try {
        const out = await sender.run(connection);
        out.commit();
        return {
          ok: true, pausedAtMs: out.pausedAtMs, totalTimeMs: out.totalTimeMs, bytesSent: out.stats.bytesSent, rounds: out.stats.rounds,
          throttleMax: out.stats.throttlePercentMax, digestOk: out.sourceDigest === out.targetDigest, stopCopyMs: out.stats.stopAndCopyMs,
          xbzrlePages: out.stats.pagesXbzrle,
        };
      } catch (err) {
        const p = last as MigrationProgress | null;
        return { ok: false, failure: describe(err), bytesSent: p?.bytesSent ?? 0, rounds: (p?.round ?? 0) + 1, throttleMax };
      }
    } finally {
      if (vm.state !== 'stopped') vm.stop();
    }
  });
}

interface SourceAnswer {
  ok: boolean; failure?: string; pausedAtMs?: number; totalTimeMs?: number; bytesSent: number; rounds: number; throttleMax: number;
  digestOk?: boolean; stopCopyMs?: number; xbzrlePages?: number;
}

async function main(): Promise<void> {
  const quick = arg('quick') !== undefined;
  const filter = arg('filter');
  const timeoutMs = Number(arg('timeout-ms') ?? 30_000);
  const vmMib = quick ? 256 : 1024;
  const workingSetMib = quick ? 64 : 256;
  const rates = quick ? [0, 20_000, 150_000] : [0, 5_000, 20_000, 50_000, 150_000];
  const cases: CaseSpec[] = [];
  for (const bandwidthMib of [0, 128])
    for (const policy of POLICIES)
      for (const rate of rates) {
        const id = `r${rate}-${policy}-bw${bandwidthMib}`;
        if (!filter || id.includes(filter)) cases.push({ id, vmMib, workingSetMib, rate, policy, bandwidthMib, timeoutMs });
      }
  const hypervisor = arg('hypervisor') ?? 'emulator';
  log(`migration bench (${hypervisor}): ${cases.length} cases, ${vmMib} MiB VM, ${workingSetMib} MiB working set, timeout ${timeoutMs} ms per case`);
  if (hypervisor === 'qemu') {
    await runQemuCases(cases.map((c) => ({ ...c, migrationPolicy: policyFor(c) })));
    return;
  }
  if (hypervisor !== 'emulator') throw new Error(`--hypervisor: emulator or qemu, got ${hypervisor}`);
  const target = new Worker(SELF, 'target');
  const source = new Worker(SELF, 'source');
  const run = async (c: CaseSpec) => {
    const { port } = await target.request<{ port: number }>({ cmd: 'listen', vmMib: c.vmMib, id: c.id, timeoutMs: c.timeoutMs });
    return Promise.all([
      target.request<{ ok: boolean; resumedAtMs?: number; digestOk?: boolean; failure?: string }>({ cmd: 'result' }),
      source.request<SourceAnswer>({ cmd: 'migrate', spec: c, port }),
    ]);
  };
  let failures = 0;
  try {
    // A long-running agent has its migration path compiled by the JIT after its first migration (QEMU's
    // is compiled ahead of time): one small untimed migration first, so that the first case does not
    // carry the compilation.
    const [wt, ws] = await run({ id: 'warm-up', vmMib: 64, workingSetMib: 16, rate: 20_000, policy: 'default', bandwidthMib: 0, timeoutMs });
    log(`warm-up migration (not reported): ${ws.ok && wt.ok ? `${Math.round(ws.totalTimeMs!)} ms` : (ws.failure ?? wt.failure)}`);
    for (const c of cases) {
      const [t, s] = await run(c);
      const converged = s.ok && t.ok;
      const downtimeMs = converged ? t.resumedAtMs! - s.pausedAtMs! : null;
      const digestOk = converged ? Boolean(s.digestOk && t.digestOk) : null;
      const line = {
        bench: 'migration',
        case: c.id,
        vm_mib: c.vmMib,
        working_set_mib: c.workingSetMib,
        dirty_rate_pages_per_sec: c.rate,
        policy: c.policy,
        max_bandwidth_mib_per_sec: c.bandwidthMib,
        converged,
        total_time_ms: converged ? Math.round(s.totalTimeMs! + downtimeMs! - s.stopCopyMs!) : null,
        downtime_ms: downtimeMs === null ? null : round3(downtimeMs),
        bytes_sent: s.bytesSent,
        sent_over_vm_size: round3(s.bytesSent / (c.vmMib * 1024 * 1024)),
        rounds: s.rounds,
        digest_ok: digestOk,
        throttle_percent_max: s.throttleMax,
        ...(converged ? { stop_and_copy_ms: round3(s.stopCopyMs!), xbzrle_pages: s.xbzrlePages } : { error: s.failure ?? t.failure, target_error: t.failure }),
      };
      emit(line);
      if (converged && (!digestOk || downtimeMs! > 300)) {
        failures++;
        log(`case ${c.id}: converged but digest_ok=${digestOk} downtime ${downtimeMs} ms`);
      }
    }
  } finally {
    target.stop();
    source.stop();
  }
  if (failures > 0) process.exitCode = 1;
}

const role = arg('role');
if (role === 'target') void targetRole();
else if (role === 'source') void sourceRole();
else
  main().catch((err) => {
    log(err instanceof Error ? err.stack : String(err));
    process.exitCode = 1;
  });
