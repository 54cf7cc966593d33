import { decodeBitmapRle, FramePool, testBit } from '@vmm/emulator';
import { agent, cluster } from '@vmm/proto';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger, vmSpec } from '../testing/fixtures.js';
import { WORKING_SET_WINDOW_REPORTS } from '../vm/dirty-tracker.js';
import { VmManager } from '../vm/vm-manager.js';
import { ReportBuilder } from './report-builder.js';
import { asEmulated } from '../hypervisor/emulated-vm.js';

let clockMs = 0;
const config = { nodeId: 'node-t', ksm: { run: 1, pagesToScan: 100, sleepMillisecs: 20 } };
let vms: VmManager;

function setup(): { builder: ReportBuilder; write: (vmId: string, ...pages: number[]) => void } {
  clockMs = 1_000;
  vms = new VmManager(new FramePool(), { maxVcpus: 8, maxMemoryMib: 256 }, silentLogger, () => clockMs);
  const builder = new ReportBuilder(vms, config, { nowMs: () => clockMs, bootId: 'boot-1' });
  const write = (vmId: string, ...pages: number[]) => {
    for (const page of pages) asEmulated(vms.require(vmId).vm).memory.writeWord(page, 8, page + 1, 0);
  };
  return { builder, write };
}

/** Decodes the report's bitmap as the controller would: the set pages, ascending. */
function dirtyPagesOf(report: agent.VmReport): number[] {
  expect(report.dirtyBitmapEncoding).toBe(agent.BitmapEncoding.BITMAP_ENCODING_RLE);
  const bitmap = decodeBitmapRle(report.dirtyBitmap, report.pagesTotal);
  const pages: number[] = [];
  for (let page = 0; page < report.pagesTotal; page++) if (testBit(bitmap, page)) pages.push(page);
  return pages;
}

afterEach(() => vms.stopAll());

describe('ReportBuilder', () => {
  it('reports the node and each VM', () => {
    const { builder } = setup();
    vms.create(vmSpec({ vmId: 'a', image: 'alpine-3.20', fencingEpoch: 2 }));
    const report = builder.build();
    expect(report).toMatchObject({
      nodeId: 'node-t',
      memoryUsedBytes: vms.pool.bytesInUse,
      bootId: 'boot-1',
      seq: 1,
      ksm: { pagesShared: 0, pagesSharing: 0, fullScans: 0, generalProfitBytes: 0 },
      ksmKnobs: { run: 1, pagesToScan: 100, sleepMillisecs: 20 },
    });
    expect(report.memoryUsedBytes).toBeGreaterThan(0);
    expect(report.vms).toHaveLength(1);
    expect(report.vms[0]).toMatchObject({
      vmId: 'a',
      state: cluster.VmState.VM_STATE_RUNNING,
      pagesTotal: 32 * 256,
      fencingEpoch: 2,
      dirtyPages: 0,
      writesTotal: 0,
    });
    expect(report.vms[0].residentPages).toBe(vms.require('a').vm.memory.residentPages);
    expect(dirtyPagesOf(report.vms[0])).toEqual([]);
  });

  it('carries the pages written since the previous report, and the rate over the elapsed time', () => {
    const { builder, write } = setup();
    vms.create(vmSpec({ vmId: 'a', image: 'empty' }));
    write('a', 3, 7, 100, 7, 8191);
    clockMs += 500;
    const first = builder.build().vms[0];
    expect(dirtyPagesOf(first)).toEqual([3, 7, 100, 8191]);
    expect(first.dirtyPages).toBe(4);
    expect(first.dirtyRatePagesPerSec).toBeCloseTo(8);
    expect(first.workingSetPages).toBe(4);

    write('a', 7, 200);
    clockMs += 2_000;
    const second = builder.build().vms[0];
    expect(dirtyPagesOf(second)).toEqual([7, 200]);
    expect(second.dirtyRatePagesPerSec).toBeCloseTo(1);
    expect(second.workingSetPages).toBe(5);
  });

  it('estimates the working set over the last reports only', () => {
    const { builder, write } = setup();
    vms.create(vmSpec({ vmId: 'a', image: 'empty' }));
    write('a', 1, 2, 3);
    const ws = (): number => {
      clockMs += 1_000;
      return builder.build().vms[0].workingSetPages;
    };
    expect(ws()).toBe(3);
    write('a', 3, 4);
    expect(ws()).toBe(4);
    for (let i = 2; i < WORKING_SET_WINDOW_REPORTS; i++) expect(ws()).toBe(4);
    expect(ws()).toBe(2); // the first report's pages 1 and 2 left the window
    expect(ws()).toBe(0);
  });

  it('survives the wire: a StreamReportsRequest round-trips with its bitmap', () => {
    const { builder, write } = setup();
    vms.create(vmSpec({ vmId: 'a', image: 'empty' }));
    write('a', 0, 31, 32, 33, 5000);
    clockMs += 1_000;
    const request: agent.StreamReportsRequest = { report: builder.build() };
    const decoded = agent.StreamReportsRequest.decode(agent.StreamReportsRequest.encode(request).finish());
    expect(dirtyPagesOf(decoded.report!.vms[0])).toEqual([0, 31, 32, 33, 5000]);
  });

  it('leaves uncommitted migration targets out', () => {
    const { builder } = setup();
    vms.create(vmSpec({ vmId: 'a', image: 'empty' }));
    vms.create(vmSpec({ vmId: 'in', image: 'empty' }), { incoming: true });
    expect(builder.build().vms.map((v) => v.vmId)).toEqual(['a']);
  });

  it('reports a running workload\'s writes', async () => {
    const { builder } = setup();
    const entry = vms.create(
      vmSpec({
        vmId: 'busy',
        image: 'empty',
        workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: 20_000, workingSetMib: 1, seed: 3 },
      }),
    );
    const deadline = Date.now() + 5_000;
    while (entry.vm.writesTotal < 100 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    entry.vm.pause();
    clockMs += 1_000;
    const report = builder.build().vms[0];
    expect(report.writesTotal).toBe(entry.vm.writesTotal);
    expect(report.dirtyPages).toBeGreaterThan(0);
    expect(report.dirtyPages).toBeLessThanOrEqual(256);
    expect(dirtyPagesOf(report).every((page) => page < 256)).toBe(true);
  });
});
