/**
 * How often a QEMU migration that QEMU calls complete leaves the target's RAM different from the
 * source's (libs/qemu/README.md, "Measured here": 7.2 under TCG sometimes completes with pages missing). Boots one guest, then
 * migrates it back and forth between two drivers over loopback, each migration through the driver's
 * full path (gate, migrate-continue, digest of both ends with the source stopped and the target paused);
 * equal digests commit (target cont, source deleted), different ones roll back (target discarded,
 * source resumed), as the agent does. Prints one JSON line per migration and a summary.
 *
 *   node libs/qemu/dist/bench/digest-agreement.js [--runs 10] [--rate 50000] [--bandwidth-mib 128] [--auto-converge] [--fresh]
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { QemuDriver } from '../qemu-driver.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    rate: { type: 'string', default: '50000' },
    'bandwidth-mib': { type: 'string', default: '128' },
    'auto-converge': { type: 'boolean', default: false },
    'memory-mib': { type: 'string', default: '256' },
    'working-set-mib': { type: 'string', default: '128' },
    /** Boot a new guest for every run (no guest migrates twice, none after a rollback). */
    fresh: { type: 'boolean', default: false },
  },
});

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'vmm-qemu-digest-'));
  const nodes = [await QemuDriver.open({ stateDir: path.join(root, 'a') })];
  nodes.push(await QemuDriver.open({ stateDir: path.join(root, 'b'), accel: nodes[0].accel }));
  const vmId = 'digest-bench';
  const memoryMib = Number(values['memory-mib']);
  const spec = {
    vmId,
    memoryMib,
    vcpus: 1,
    image: 'debian-12',
    workload: { kind: 'uniform' as const, dirtyRatePagesPerSec: Number(values.rate), workingSetPages: Number(values['working-set-mib']) * 256, seed: 1 },
  };
  const policy = { maxBandwidthMibPerSec: Number(values['bandwidth-mib']), autoConverge: values['auto-converge'], downtimeLimitMs: 300, maxRounds: 200 };
  let agree = 0;
  let differ = 0;
  let failed = 0;
  try {
    await nodes[0].create(spec);
    for (let run = 0; run < Number(values.runs); run++) {
      if (values.fresh && run > 0) {
        for (const d of nodes) await d.destroyAll();
        await nodes[0].create(spec);
      }
      const [src, dst] = nodes;
      nodes.reverse(); // a committed migration leaves the guest on dst: the next run starts there
      const t0 = Date.now();
      const incoming = await dst.prepareIncoming(spec, { policy });
      const out = await src.startOutgoing(vmId, { migrationId: `run-${run}`, host: incoming.host, port: incoming.port, policy });
      let throttleMax = 0;
      out.on('progress', (p: { throttlePercent: number }) => (throttleMax = Math.max(throttleMax, p.throttlePercent)));
      try {
        await out.switchoverReady();
        const done = await out.continueSwitchover();
        await incoming.received(60_000);
        const [s, t] = await Promise.all([src.digest(vmId), dst.digest(vmId)]);
        const ok = s.digest === t.digest;
        const differingPages = ok ? 0 : await countDifferingPages(src, dst, vmId, root);
        if (ok) agree++;
        else differ++;
        console.log(
          JSON.stringify({
            run,
            rate: spec.workload.dirtyRatePagesPerSec,
            policy,
            rounds: done.progress.round,
            total_ms: done.totalTimeMs,
            downtime_ms: done.downtimeMs,
            throttle_percent_max: throttleMax,
            digest_ok: ok,
            differing_pages: differingPages,
            source_digest: s.digest,
            target_digest: t.digest,
            digest_ms: Math.round(Math.max(s.dumpMs + s.hashMs, t.dumpMs + t.hashMs)),
            wall_ms: Date.now() - t0,
          }),
        );
        if (ok) {
          await dst.commitIncoming(vmId);
          await src.delete(vmId);
        } else {
          // What the agent does on DIGEST_MISMATCH: discard the copy, the source runs on.
          await dst.abortIncoming(vmId);
          await src.resume(vmId);
          nodes.reverse(); // the next run starts from the same source again
        }
      } catch (err) {
        failed++;
        console.log(JSON.stringify({ run, error: (err as Error).message }));
        await dst.abortIncoming(vmId).catch(() => {});
        if ((await src.status(vmId).catch(() => null))?.state !== 'running') break; // the guest died
        nodes.reverse();
      }
    }
  } finally {
    for (const d of nodes) await d.destroyAll();
    await rm(root, { recursive: true, force: true });
  }
  console.log(JSON.stringify({ summary: true, agree, differ, failed }));
}

/** Dumps both ends' RAM (both are stopped) and counts the 4 KiB pages whose bytes differ. */
async function countDifferingPages(src: QemuDriver, dst: QemuDriver, vmId: string, dir: string): Promise<number> {
  const files = [path.join(dir, 'src.ram'), path.join(dir, 'dst.ram')];
  try {
    await Promise.all([src.dumpRam(vmId, files[0]), dst.dumpRam(vmId, files[1])]);
    const [x, y] = await Promise.all(files.map((f) => readFile(f)));
    let n = 0;
    for (let at = 0; at < x.length; at += 4096) if (x.compare(y, at, at + 4096, at, at + 4096) !== 0) n++;
    return n;
  } finally {
    await Promise.all(files.map((f) => rm(f, { force: true })));
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
