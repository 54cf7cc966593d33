/**
 * bench:migration --hypervisor qemu — the emulator bench's cases on real QEMU guests (libs/qemu, TCG
 * where KVM does not boot): per case a fresh guest of the case's size, working set, workload and rate
 * boots on driver A and migrates over loopback to driver B through the path the node agent takes
 * (policy through migrate-set-parameters/-capabilities, pause-before-switchover gate, migrate-continue,
 * both ends' RAM digest with the source stopped and the target paused); equal digests commit (target
 * `cont`), unequal ones roll back (target discarded, source resumed) and read digest_ok false.
 * downtime_ms = target resumed − source stopped at the gate (same host clock), the digests included:
 * that is what the agent's downtime is. QEMU's own figure (from the source's stop to its `completed`,
 * without the digests) is qemu_downtime_ms.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { MigrationProgress, PartialMigrationPolicy } from '@vmm/migration';
import { QemuDriver, qemuUnavailableReason } from '@vmm/qemu';
import { emit, log, round3 } from './bench-util.js';

export interface QemuCase {
  id: string;
  vmMib: number;
  workingSetMib: number;
  rate: number;
  policy: 'default' | 'auto-converge' | 'xbzrle';
  bandwidthMib: number;
  timeoutMs: number;
  migrationPolicy: PartialMigrationPolicy;
}

/** After `vmm: ready`, the workload runs this long before the migration (the emulator bench's warm-up). */
const WARMUP_MS = 300;

export async function runQemuCases(cases: QemuCase[]): Promise<number> {
  const unavailable = qemuUnavailableReason();
  if (unavailable) throw new Error(`--hypervisor qemu: ${unavailable}`);
  const root = await mkdtemp(path.join(os.tmpdir(), 'vmm-qemu-bench-'));
  const a = await QemuDriver.open({ stateDir: path.join(root, 'a') });
  const b = await QemuDriver.open({ stateDir: path.join(root, 'b'), accel: a.accel });
  log(`qemu: accelerator ${a.accel}`);
  let mismatches = 0;
  try {
    for (const c of cases) {
      const vmId = `bench-${c.id}`;
      const spec = {
        vmId,
        memoryMib: c.vmMib,
        vcpus: 1,
        image: 'empty',
        workload: { kind: c.rate > 0 ? ('uniform' as const) : ('idle' as const), dirtyRatePagesPerSec: c.rate, workingSetPages: c.workingSetMib * 256, seed: 42 },
      };
      try {
        const line = await runCase(a, b, c, spec);
        if (line.digest_ok === false) mismatches++;
        emit(line);
      } catch (err) {
        emit({ bench: 'migration', case: c.id, hypervisor: 'qemu', converged: false, error: err instanceof Error ? err.message : String(err) });
      } finally {
        await Promise.all([a.destroyAll(), b.destroyAll()]);
      }
    }
  } finally {
    await Promise.all([a.destroyAll(), b.destroyAll()]);
    await rm(root, { recursive: true, force: true });
  }
  log(`qemu: DIGEST_MISMATCH in ${mismatches} of ${cases.length} cases`);
  return mismatches;
}

async function runCase(a: QemuDriver, b: QemuDriver, c: QemuCase, spec: Parameters<QemuDriver['create']>[0]): Promise<Record<string, unknown>> {
  await a.create(spec);
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  const base = {
    bench: 'migration',
    case: c.id,
    hypervisor: 'qemu',
    vm_mib: c.vmMib,
    working_set_mib: c.workingSetMib,
    dirty_rate_pages_per_sec: c.rate,
    policy: c.policy,
    max_bandwidth_mib_per_sec: c.bandwidthMib,
  };
  const startMs = Date.now();
  const incoming = await b.prepareIncoming(spec, { policy: c.migrationPolicy });
  const out = await a.startOutgoing(spec.vmId, { migrationId: c.id, host: incoming.host, port: incoming.port, policy: c.migrationPolicy });
  let last: MigrationProgress | undefined;
  let throttleMax = 0;
  out.on('progress', (p: MigrationProgress) => {
    last = p;
    throttleMax = Math.max(throttleMax, p.throttlePercent);
  });
  let gate: MigrationProgress;
  try {
    gate = await out.switchoverReady();
  } catch (err) {
    const p = last ?? out.progress;
    return {
      ...base, converged: false, total_time_ms: null, downtime_ms: null, bytes_sent: p.bytesSent,
      sent_over_vm_size: round3(p.bytesSent / (c.vmMib * 1024 * 1024)), rounds: p.round, digest_ok: null,
      throttle_percent_max: throttleMax, error: `${(err as { code?: string }).code ?? 'ERROR'}: ${(err as Error).message}`,
    };
  }
  const pausedAtMs = gate.pausedAtMs ?? Date.now();
  const done = await out.continueSwitchover();
  await incoming.received(60_000);
  const [s, t] = await Promise.all([a.digest(spec.vmId), b.digest(spec.vmId)]);
  const digestOk = s.digest === t.digest;
  let resumedAtMs = Date.now();
  if (digestOk) {
    await b.commitIncoming(spec.vmId);
    resumedAtMs = Date.now();
  } else {
    await b.abortIncoming(spec.vmId);
    await a.resume(spec.vmId);
  }
  const bytesSent = done.progress.bytesSent;
  return {
    ...base,
    converged: true,
    total_time_ms: resumedAtMs - startMs,
    downtime_ms: resumedAtMs - pausedAtMs,
    bytes_sent: bytesSent,
    sent_over_vm_size: round3(bytesSent / (c.vmMib * 1024 * 1024)),
    rounds: done.progress.round,
    digest_ok: digestOk,
    throttle_percent_max: throttleMax,
    qemu_total_time_ms: done.totalTimeMs,
    qemu_downtime_ms: done.downtimeMs,
    digest_ms: Math.round(Math.max(s.dumpMs + s.hashMs, t.dumpMs + t.hashMs)),
  };
}
