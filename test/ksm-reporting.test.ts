// KSM end to end: agents run ksmd over their VMs' memory and report its counters and knobs; the
// controller shows them in GetNode/ListNodes and forwards SetNodeKsm to the node's agent; the CLI
// shows and sets them. Four idle debian-12 VMs on one node must merge (nearly) every duplicate page
// and the node's real memory use must fall by what was merged; run=2 must undo it all.
//
// The agents start with ksmd stopped (KSM_RUN=0) so that the memory use before merging is measured
// on a settled node, not raced against ksmd; SetNodeKsm run=1 starts it.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import { REPO_ROOT } from '@vmm/local-cluster/cluster';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';
import { expectGrpcError, status } from './support/grpc.js';
import {
  expectedPagesSharing,
  imageShape,
  imageVm,
  MIB,
  nodeFigures,
  PAGE_BYTES,
  waitForKsmSettled,
  waitForNode,
} from './support/ksm.js';

const run = promisify(execFile);
const CLI = path.join(REPO_ROOT, 'apps/cli/dist/main.js');
const IMAGE = 'debian-12';
const COPIES = 4;
const NODE = 'node-1';
const OTHER = 'node-2';
const PAGES_TO_SCAN = 500;
const SLEEP_MS = 20;

describe(`KSM with ${COPIES} idle ${IMAGE} VMs on one node`, () => {
  let c: TestCluster;
  let api: ClusterApi;
  const vmIds: string[] = [];
  const expected = expectedPagesSharing(IMAGE, COPIES);
  const shape = imageShape(IMAGE);
  // Frames the loaded images hold before any merge: every non-zero image page of every copy.
  const imagesMib = (COPIES * shape.nonZeroPages * PAGE_BYTES) / MIB;
  let before: cluster.Node | undefined; // node-1 loaded, ksmd stopped
  let merged: cluster.Node | undefined; // node-1 after ksmd settled

  beforeAll(async () => {
    c = await startTestCluster({
      agents: 2,
      reportIntervalMs: 500,
      agentEnv: () => ({ KSM_RUN: '0', KSM_PAGES_TO_SCAN: String(PAGES_TO_SCAN), KSM_SLEEP_MILLISECS: String(SLEEP_MS) }),
    });
    api = c.api();
  });

  afterAll(() => stopTestCluster(c, api, vmIds));

  it('GetNode and ListNodes show ksm counters and the knobs the agents started with', async () => {
    const n = await waitForNode(api, NODE, (x) => x.lastReportMs > 0 && x.ksmKnobs?.pagesToScan !== undefined, 10_000, 'a first report');
    expect(n.ksmKnobs).toMatchObject({ run: 0, pagesToScan: PAGES_TO_SCAN, sleepMillisecs: SLEEP_MS });
    expect(n.ksm).toMatchObject({ pagesShared: 0, pagesSharing: 0 });
    const { nodes } = await api.listNodes({});
    expect(nodes.map((x) => x.nodeId).sort()).toEqual([NODE, OTHER]);
    for (const x of nodes) {
      expect(x.ksm, `${x.nodeId}.ksm`).toBeDefined();
      expect(x.ksmKnobs, `${x.nodeId}.ksm_knobs`).toMatchObject({ run: 0, pagesToScan: PAGES_TO_SCAN, sleepMillisecs: SLEEP_MS });
    }
  });

  it(`merges ≥ 95% of the ${IMAGE} duplicates and memory_mib_used falls by ≥ 90% of what pages_sharing saves`, async () => {
    for (let i = 0; i < COPIES; i++) {
      const vm = await api.createVm(imageVm(IMAGE, `ksm-${IMAGE}-${i}`, NODE));
      vmIds.push(vm.vmId);
      expect(vm.nodeId).toBe(NODE);
    }
    // Loaded and reported, ksmd still stopped: the images' frames are all there, none merged.
    before = await waitForNode(
      api,
      NODE,
      (n) => n.vmCount === COPIES && n.memoryMibUsed >= imagesMib,
      30_000,
      `${COPIES} images loaded on ${NODE} (${imagesMib.toFixed(1)} MiB)`,
    );
    expect(before.ksm!.pagesSharing).toBe(0);
    expect(before.memoryMibUsed, 'nothing but the images is resident (idle VMs)').toBeLessThan(imagesMib + 1);

    const started = await api.setNodeKsm({ nodeId: NODE, knobs: { run: 1 } });
    expect(started.ksmKnobs).toMatchObject({ run: 1, pagesToScan: PAGES_TO_SCAN, sleepMillisecs: SLEEP_MS });

    merged = await waitForKsmSettled(api, NODE, Math.ceil(0.95 * expected), 150_000);
    const k = merged.ksm!;
    const savedMib = (k.pagesSharing * PAGE_BYTES) / MIB;
    console.info(
      `ksm-reporting: expected pages_sharing=${expected} (${COPIES}×${shape.nonZeroPages} non-zero − ${shape.distinctPages} distinct); ` +
        `observed ${nodeFigures(merged)}; memory_mib_used ${before.memoryMibUsed.toFixed(1)} → ${merged.memoryMibUsed.toFixed(1)} ` +
        `(saved ${savedMib.toFixed(1)} MiB by pages_sharing)`,
    );
    expect(k.pagesSharing).toBeGreaterThanOrEqual(0.95 * expected);
    // More than every duplicate cannot be merged: a higher count would be a counting bug.
    expect(k.pagesSharing).toBeLessThanOrEqual(expected);
    // At least 3× the image's data pages: three of four copies fold onto the first.
    expect(k.pagesSharing).toBeGreaterThanOrEqual(3 * shape.nonZeroPages);
    expect(k.pagesShared).toBeGreaterThan(0);
    expect(k.pagesShared).toBeLessThanOrEqual(shape.distinctPages);
    expect(k.fullScans).toBeGreaterThanOrEqual(2);
    expect(k.generalProfitBytes).toBeGreaterThan(0);
    expect(before.memoryMibUsed - merged.memoryMibUsed).toBeGreaterThanOrEqual(0.9 * savedMib);

    // ListNodes says the same; the node without VMs merged nothing.
    const { nodes } = await api.listNodes({});
    const listed = nodes.find((n) => n.nodeId === NODE)!;
    expect(listed.ksm!.pagesSharing).toBe(k.pagesSharing);
    expect(listed.ksmKnobs).toMatchObject({ run: 1 });
    const other = nodes.find((n) => n.nodeId === OTHER)!;
    expect(other.ksm!.pagesSharing).toBe(0);
    expect(other.memoryMibUsed).toBe(0);
  });

  it('SetNodeKsm changes pages_to_scan and sleep_millisecs, keeps the unset knobs, and the next report carries them', async () => {
    const setAtMs = Date.now();
    const answer = await api.setNodeKsm({ nodeId: NODE, knobs: { pagesToScan: 1234, sleepMillisecs: 7 } });
    expect(answer.nodeId).toBe(NODE);
    expect(answer.ksmKnobs).toMatchObject({ run: 1, pagesToScan: 1234, sleepMillisecs: 7 });
    // A report sent after the change overwrites the stored knobs with what ksmd really runs with.
    const later = await waitForNode(api, NODE, (n) => n.lastReportMs > setAtMs + 100, 10_000, 'a report after SetNodeKsm');
    expect(later.ksmKnobs).toMatchObject({ run: 1, pagesToScan: 1234, sleepMillisecs: 7 });
    // The other node is untouched.
    expect((await api.getNode({ nodeId: OTHER })).ksmKnobs).toMatchObject({ pagesToScan: PAGES_TO_SCAN, sleepMillisecs: SLEEP_MS });
  });

  it('bad knob values are INVALID_ARGUMENT, max_page_sharing while pages are shared FAILED_PRECONDITION, an unknown node NOT_FOUND; nothing changes', async () => {
    const knobsBefore = (await api.getNode({ nodeId: NODE })).ksmKnobs;
    const bad: [cluster.KsmKnobs, RegExp][] = [
      [{ run: 3 }, /run/],
      [{ run: -1 }, /run/],
      [{ pagesToScan: -5 }, /pages_to_scan/],
      [{ sleepMillisecs: -1 }, /sleep_millisecs/],
      [{ maxPageSharing: 1 }, /max_page_sharing/],
      // A valid knob next to a bad one: all or nothing.
      [{ pagesToScan: 999, sleepMillisecs: -2 }, /sleep_millisecs/],
    ];
    for (const [knobs, field] of bad) {
      await expectGrpcError(api.setNodeKsm({ nodeId: NODE, knobs }), status.INVALID_ARGUMENT, field);
    }
    await expectGrpcError(api.setNodeKsm({ nodeId: 'no-such-node', knobs: { pagesToScan: 10 } }), status.NOT_FOUND);
    // A valid max_page_sharing while pages are shared: refused as Linux does (EBUSY), nothing applied.
    await expectGrpcError(api.setNodeKsm({ nodeId: NODE, knobs: { maxPageSharing: 128, pagesToScan: 999 } }), status.FAILED_PRECONDITION);
    const setAtMs = Date.now();
    const after = await waitForNode(api, NODE, (n) => n.lastReportMs > setAtMs + 100, 10_000, 'a report after the bad calls');
    expect(after.ksmKnobs).toEqual(knobsBefore);
    expect(after.ksm!.pagesSharing, 'still merged').toBeGreaterThanOrEqual(0.95 * expected);
  });

  it('the CLI shows a node with its KSM counters and sets pages_to_scan (`node`, `ksm --pages-to-scan`)', async () => {
    const cli = (...args: string[]) =>
      run(process.execPath, [CLI, '--server', c.controllerAddress, ...args], { cwd: REPO_ROOT, env: { ...process.env, NO_COLOR: '1' }, timeout: 30_000 });
    const shown = await cli('node', NODE);
    expect(shown.stdout).toContain(NODE);
    expect(shown.stdout).toMatch(/pages_sharing\s+\d/);
    expect(shown.stdout).toMatch(/pages_to_scan\s+1234/);

    const json = JSON.parse((await cli('--json', 'node', NODE)).stdout) as { node: cluster.Node };
    const now = await api.getNode({ nodeId: NODE });
    expect(Number(json.node.ksm!.pagesSharing)).toBe(now.ksm!.pagesSharing); // settled: stable
    expect(Number(json.node.ksm!.pagesSharing)).toBeGreaterThanOrEqual(0.95 * expected);

    const set = await cli('ksm', NODE, '--pages-to-scan', '777');
    expect(set.stdout).toMatch(/pages_to_scan\s+777/);
    expect(set.stdout).toMatch(/pages_sharing\s+\d/);
    expect((await api.getNode({ nodeId: NODE })).ksmKnobs).toMatchObject({ pagesToScan: 777, sleepMillisecs: 7, run: 1 });

    // A bad value is refused by the CLI with a non-zero exit and changes nothing.
    const refused = await cli('ksm', NODE, '--pages-to-scan', '-3').then(
      () => undefined,
      (err: { code: number; stderr: string }) => err,
    );
    expect(refused, 'exit status of a bad --pages-to-scan').toBeDefined();
    expect(refused!.code).not.toBe(0);
    expect((await api.getNode({ nodeId: NODE })).ksmKnobs).toMatchObject({ pagesToScan: 777 });
  });

  it('run=2 unmerges everything: pages_sharing back to 0 and memory_mib_used back up', async () => {
    expect(merged, 'the merge test ran').toBeDefined();
    const answer = await api.setNodeKsm({ nodeId: NODE, knobs: { run: 2 } });
    expect(answer.ksmKnobs).toMatchObject({ run: 2 });
    const unmerged = await waitForNode(
      api,
      NODE,
      (n) => n.ksm!.pagesSharing === 0 && n.ksm!.pagesShared === 0 && n.memoryMibUsed >= before!.memoryMibUsed - 0.5,
      60_000,
      'everything unmerged',
    );
    console.info(`ksm-reporting: after run=2 ${nodeFigures(unmerged)}`);
    expect(unmerged.memoryMibUsed).toBeGreaterThanOrEqual(imagesMib);
    expect(unmerged.memoryMibUsed - merged!.memoryMibUsed).toBeGreaterThanOrEqual((0.9 * merged!.ksm!.pagesSharing * PAGE_BYTES) / MIB);
    // Nothing is shared any more: max_page_sharing may change now.
    const changed = await api.setNodeKsm({ nodeId: NODE, knobs: { maxPageSharing: 128 } });
    expect(changed.ksmKnobs).toMatchObject({ maxPageSharing: 128, run: 2 });
    // The VMs kept running through merge and unmerge.
    for (const vmId of vmIds) expect((await api.getVm({ vmId })).state).toBe(cluster.VmState.VM_STATE_RUNNING);
  });
});
