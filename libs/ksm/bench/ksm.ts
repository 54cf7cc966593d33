/**
 * npm run bench:ksm — same-page merging over emulator memory (docs/benchmarks.md, bench `ksm`).
 *
 * Every repetition runs in a fresh child process (`node --expose-gc ksm.js --rep <case>`), so that RSS
 * figures start from a clean heap; the parent prints one JSON line per case with the medians of its
 * repetitions and reps/min/max of the headline figure (pages_per_cpu_second). Progress goes to stderr.
 *
 * Cases:
 * - linux-2x1g-ws256: the Linux KSM case of docs/benchmarks.md, two 1 GiB guests with identical 256 MiB working sets,
 *   scanned back to back (no sleep) to measure ksmd's CPU cost; the checksum cache is on (see below).
 * - linux-2x1g-ws256-nocache: the same with every checksum computed from the bytes, as Linux does.
 * - linux-2x1g-ws256-ksmd: the same guests with Linux's knobs on the timer (pages_to_scan 1000,
 *   sleep_millisecs 20): converged_ms and full scans to converge, beside Linux's ~15 s and 3 scans.
 * - debian-12-x8: eight 256 MiB VMs booted from debian-12; RSS and pool bytes before and after merging.
 * - debian-12-x8-busy: the same while each guest makes 20 hot/cold stores per 1000 pages scanned:
 *   pages written between two visits stay volatile; found_over_truth is against the duplicates left.
 *
 * full_scans is the scan by whose end pages_sharing reached its final value; one more scan confirms it
 * (`converged`), and `seconds` and the CPU figures include that scan. A busy guest never converges: it
 * stops after 10 scans. The checksum cache: a frame not written since it was last hashed reuses its
 * hash. Wall-clock rates suffer when other work shares the two cores; pages_per_cpu_second does not.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FramePool, GuestMemory, PAGE_SIZE, VcpuWorkload, initHashing, loadImage, pageHash } from '@vmm/emulator';
import { KsmScanner, Ksmd, xxhChecksum, type FrameChecksum, type KsmFramePool } from '@vmm/ksm';

interface CaseSpec {
  vms: number;
  vmMib: number;
  build: (mem: GuestMemory, index: number) => void;
  /** Guest stores made by each VM after every batch of 1000 scanned pages (a busy guest). */
  storesPerBatch?: number;
  cached: boolean;
  timer: boolean;
  reps: number;
}

const MIB_PAGES = (1024 * 1024) / PAGE_SIZE;
const CASES: Record<string, CaseSpec> = {
  'linux-2x1g-ws256': { vms: 2, vmMib: 1024, build: workingSet(256), cached: true, timer: false, reps: 3 },
  'linux-2x1g-ws256-nocache': { vms: 2, vmMib: 1024, build: workingSet(256), cached: false, timer: false, reps: 3 },
  'linux-2x1g-ws256-ksmd': { vms: 2, vmMib: 1024, build: workingSet(256), cached: true, timer: true, reps: 1 },
  'debian-12-x8': { vms: 8, vmMib: 256, build: (m) => loadImage(m, 'debian-12'), cached: true, timer: false, reps: 3 },
  'debian-12-x8-busy': { vms: 8, vmMib: 256, build: (m) => loadImage(m, 'debian-12'), storesPerBatch: 20, cached: true, timer: false, reps: 1 },
};
const BUSY_WORKING_SET_PAGES = 4096; // hot/cold over the first 16 MiB of the image
const MAX_FULL_SCANS = 10;
/** docs/benchmarks.md: Linux ksmd scans about 200k pages per CPU-second. */
const LINUX_PAGES_PER_CPU_SECOND = 200_000;

function workingSet(mib: number): (mem: GuestMemory) => void {
  return (mem) => mem.fillRandom(0, mib * MIB_PAGES, 0x5eed); // same seed: identical working sets
}

/** Hashes every page from its bytes, ignoring the emulator's per-frame hash cache (Linux's calc_checksum). */
const uncachedChecksum: FrameChecksum = (pool: KsmFramePool, frame: number) => {
  const off = pool.frameByteOffset(frame);
  return Number(pageHash(pool.slabBytes(frame).subarray(off, off + PAGE_SIZE)) & 0xffffffffn) | 0;
};

function duplicateTruth(memories: GuestMemory[]): { present: number; truth: number } {
  const seen = new Set<bigint>();
  let present = 0;
  for (const m of memories) {
    for (let p = 0; p < m.pageCount; p++) {
      const v = m.pageView(p);
      if (v === null) continue;
      present++;
      seen.add(pageHash(v));
    }
  }
  return { present, truth: present - seen.size };
}

async function settle(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    globalThis.gc?.();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().rss;
}

const mib = (bytes: number) => Math.round((bytes / (1024 * 1024)) * 10) / 10;

async function runRep(name: string): Promise<Record<string, number | string | boolean>> {
  const spec = CASES[name];
  await initHashing();
  const pool = new FramePool();
  const mems = Array.from({ length: spec.vms }, (_, i) => {
    const m = new GuestMemory(pool, spec.vmMib * MIB_PAGES);
    spec.build(m, i);
    return m;
  });
  const workloads = spec.storesPerBatch
    ? mems.map((m, i) => new VcpuWorkload(m, { kind: 'hotcold', dirtyRatePagesPerSec: 0, workingSetPages: BUSY_WORKING_SET_PAGES, seed: i }, 0x9e37 + i))
    : [];
  const { present } = duplicateTruth(mems);
  const framesBefore = pool.framesInUse;
  const reservedBefore = pool.bytesReserved;
  const rssBefore = await settle();

  const ksm = new KsmScanner({
    pool,
    checksum: spec.cached ? xxhChecksum : uncachedChecksum,
    knobs: { run: 1, pages_to_scan: 1000, sleep_millisecs: 20 },
  });
  mems.forEach((m, i) => ksm.addRegion(`vm${i}`, m));

  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let convergedAt = 0;
  let convergedNs = t0;
  let converged = false;
  let last = -1;
  if (spec.timer) {
    const ksmd = new Ksmd(ksm);
    ksmd.start();
    // Converged: a whole full scan that merged nothing more.
    let scansSeen = 0;
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        const s = ksm.stats();
        if (s.full_scans === scansSeen) return;
        scansSeen = s.full_scans;
        if (s.pages_sharing !== last) {
          last = s.pages_sharing;
          convergedAt = s.full_scans;
          convergedNs = process.hrtime.bigint();
        } else if (last > 0 || s.full_scans >= MAX_FULL_SCANS) {
          converged = last > 0;
          clearInterval(poll);
          resolve();
        }
      }, 5);
    });
    ksmd.stop();
  } else {
    for (let scan = 1; scan <= MAX_FULL_SCANS; scan++) {
      if (workloads.length === 0) ksm.scanFull(1);
      else {
        while (ksm.stats().full_scans < scan) {
          ksm.scanBatch(1000);
          for (const w of workloads) w.step(spec.storesPerBatch ?? 0);
        }
      }
      const sharing = ksm.stats().pages_sharing;
      if (sharing === last && last > 0) {
        converged = true;
        break;
      }
      if (sharing !== last) {
        convergedAt = scan;
        convergedNs = process.hrtime.bigint();
      }
      last = sharing;
    }
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const s = ksm.stats();
  const { truth } = duplicateTruth(mems); // the duplicates present now (a busy guest made some unique)
  const framesFreed = framesBefore - pool.framesInUse;
  const rssAfter = await settle();
  const savedBytes = s.pages_sharing * PAGE_SIZE;
  return {
    bench: 'ksm',
    case: name,
    vms: spec.vms,
    vm_mib: spec.vmMib,
    pages: present,
    full_scans: convergedAt,
    found_over_truth: truth === 0 ? 1 : Math.round((s.pages_sharing / truth) * 10000) / 10000,
    pages_scanned_per_sec: Math.round(s.pages_scanned / seconds),
    cpu_seconds: Math.round(cpuSeconds * 1000) / 1000,
    pages_per_cpu_second: Math.round(s.pages_scanned / cpuSeconds),
    gbps: Math.round(((s.pages_scanned * PAGE_SIZE) / seconds / 1e9) * 1000) / 1000,
    frames_freed: framesFreed,
    pages_scanned: s.pages_scanned,
    seconds: Math.round(seconds * 1000) / 1000,
    converged,
    converged_ms: Math.round(Number(convergedNs - t0) / 1e6),
    over_linux_pages_per_cpu_second: Math.round((s.pages_scanned / cpuSeconds / LINUX_PAGES_PER_CPU_SECOND) * 100) / 100,
    truth,
    pages_shared: s.pages_shared,
    pages_sharing: s.pages_sharing,
    pages_unshared: s.pages_unshared,
    pages_volatile: s.pages_volatile,
    guest_stores: workloads.reduce((a, w) => a + w.writes, 0),
    general_profit_mib: mib(s.general_profit),
    checksum_cache: spec.cached,
    pool_mib_before: mib(framesBefore * PAGE_SIZE),
    pool_mib_after: mib(pool.bytesInUse),
    pool_reserved_mib_before: mib(reservedBefore),
    pool_reserved_mib_after: mib(pool.bytesReserved),
    rss_mib_before: mib(rssBefore),
    rss_mib_after: mib(rssAfter),
    rss_freed_over_saved: savedBytes === 0 ? 0 : Math.round(((rssBefore - rssAfter) / savedBytes) * 1000) / 1000,
    frames_freed_over_saved: s.pages_sharing === 0 ? 0 : Math.round((framesFreed / s.pages_sharing) * 1000) / 1000,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function runChild(name: string): Promise<Record<string, number | string | boolean>> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--rep', name], { execArgv: ['--expose-gc'], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`case ${name} exited with code ${code}`));
      else resolve(JSON.parse(out.trim()) as Record<string, number | string | boolean>);
    });
  });
}

async function main(): Promise<void> {
  const repIdx = process.argv.indexOf('--rep');
  if (repIdx >= 0) {
    process.stdout.write(`${JSON.stringify(await runRep(process.argv[repIdx + 1]))}\n`);
    return;
  }
  const only = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  for (const name of Object.keys(CASES)) {
    if (only.length > 0 && !only.includes(name)) continue;
    const reps: Record<string, number | string | boolean>[] = [];
    for (let r = 0; r < CASES[name].reps; r++) {
      process.stderr.write(`ksm bench: ${name} rep ${r + 1}/${CASES[name].reps}\n`);
      reps.push(await runChild(name));
    }
    const line: Record<string, number | string | boolean> = { ...reps[0] };
    for (const [k, v] of Object.entries(reps[0])) if (typeof v === 'number') line[k] = median(reps.map((x) => x[k] as number));
    const headline = reps.map((x) => x.pages_per_cpu_second as number);
    Object.assign(line, { reps: reps.length, min: Math.min(...headline), max: Math.max(...headline) });
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`ksm bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
