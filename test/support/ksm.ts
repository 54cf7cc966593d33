// Helpers of the KSM, overcommit and placement integration tests (test/ksm-*.test.ts,
// test/overcommit-*.test.ts, test/placement-*.test.ts): the duplicate structure of an image, waiting
// on a node's reported figures, and waiting for ksmd to converge.
import { imageTemplate } from '@vmm/emulator';
import { agent, cluster } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { RegistryRelay } from './registry-relay.js';
import { waitFor } from './wait-for.js';

export const PAGE_BYTES = 4096;
export const MIB = 1024 * 1024;
export const PAGES_PER_MIB = MIB / PAGE_BYTES;

export interface ImageShape {
  /** Guest pages the image covers. */
  pages: number;
  /** Pages of the image that hold data (a zero page is never loaded, so it takes no frame). */
  nonZeroPages: number;
  /** Distinct page contents among them. */
  distinctPages: number;
}

/** What the emulator loads for `image` (the same deterministic template the agents use). */
export function imageShape(image: string): ImageShape {
  const t = imageTemplate(image);
  return { pages: t.spec.pages, nonZeroPages: t.spec.pages - t.zeroPages, distinctPages: t.uniqueSlots };
}

/**
 * pages_sharing once ksmd has merged everything on a node running `copies` idle VMs of `image`
 * (Linux's count: every mapping of a KSM page beyond the first). All the image's frames with one
 * content collapse into one KSM page, within a VM (the image's own duplicates) and across VMs.
 */
export function expectedPagesSharing(image: string, copies: number): number {
  if (copies <= 0) return 0;
  const s = imageShape(image);
  return copies * s.nonZeroPages - s.distinctPages;
}

/** Expected pages_sharing of a node running `counts[image]` idle VMs of each image. */
export function expectedNodeSharing(counts: Readonly<Record<string, number>>): number {
  return Object.entries(counts).reduce((sum, [image, n]) => sum + expectedPagesSharing(image, n), 0);
}

/** Short one-line figures of a node, for messages and logs. */
export function nodeFigures(n: cluster.Node): string {
  const k = n.ksm;
  return (
    `${n.nodeId}: used=${n.memoryMibUsed.toFixed(1)}MiB/${n.memoryMib} vms=${n.vmCount} ` +
    `sharing=${k?.pagesSharing ?? '-'} shared=${k?.pagesShared ?? '-'} unshared=${k?.pagesUnshared ?? '-'} ` +
    `full_scans=${k?.fullScans ?? '-'} knobs=${JSON.stringify(n.ksmKnobs ?? {})}`
  );
}

/** Polls GetNode until `predicate` holds; returns that Node. */
export function waitForNode(
  api: ClusterApi,
  nodeId: string,
  predicate: (n: cluster.Node) => boolean,
  timeoutMs: number,
  what: string,
  intervalMs = 100,
): Promise<cluster.Node> {
  let last = 'no answer';
  return waitFor(
    async () => {
      const n = await api.getNode({ nodeId });
      last = nodeFigures(n);
      return predicate(n) ? n : undefined;
    },
    timeoutMs,
    what,
    intervalMs,
  ).catch((err: Error) => {
    throw new Error(`${err.message} [last ${last}]`);
  });
}

/**
 * Waits until ksmd on `nodeId` has settled: pages_sharing > `atLeast` and unchanged over two more
 * full scans (merging completes in the second scan of a page whose checksum is stable, so two scans
 * without change mean nothing is left to merge). Returns the node as then reported.
 */
export async function waitForKsmSettled(
  api: ClusterApi,
  nodeId: string,
  atLeast: number,
  timeoutMs: number,
): Promise<cluster.Node> {
  let value = -1;
  let since = 0; // full_scans when `value` was first seen
  return waitForNode(
    api,
    nodeId,
    (n) => {
      const k = n.ksm!;
      if (k.pagesSharing !== value) {
        value = k.pagesSharing;
        since = k.fullScans;
        return false;
      }
      return value >= atLeast && k.fullScans >= since + 2;
    },
    timeoutMs,
    `ksm on ${nodeId} settled with pages_sharing ≥ ${atLeast}`,
    200,
  );
}

/** An idle VM of `image` sized to the image (the smallest memory that holds it). */
export function imageVm(image: string, name: string, nodeId = ''): cluster.CreateVmRequest {
  const mib = Math.max(1, Math.ceil(imageShape(image).pages / PAGES_PER_MIB));
  return cluster.CreateVmRequest.fromPartial({
    name,
    vcpus: 1,
    memoryMib: mib,
    image,
    workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_IDLE, dirtyRatePagesPerSec: 0, workingSetMib: 0, seed: 1 },
    nodeId,
    antiAffinityGroup: '',
    labels: {},
  });
}

/** Deletes every VM in `vmIds` (ignoring ones already gone) and waits until the nodes report none. */
export async function deleteVmsAndWait(api: ClusterApi, vmIds: readonly string[], nodeIds: readonly string[], timeoutMs = 30_000): Promise<void> {
  for (const vmId of vmIds) await api.deleteVm({ vmId }).catch(() => {});
  for (const nodeId of nodeIds) {
    await waitForNode(api, nodeId, (n) => n.vmCount === 0 && n.memoryMibUsed === 0, timeoutMs, `${nodeId} empty`);
  }
}

/**
 * Keeps the last NodeReport of each node, seen through a RegistryRelay (the host KSM figures are
 * reported but not exposed by the public API). Point the agents' CONTROLLER_ADDRESS at `address`.
 */
export class NodeReportTap {
  readonly last = new Map<string, agent.NodeReport>();
  private relay!: RegistryRelay;

  private constructor() {}

  static async start(controllerAddress: string): Promise<NodeReportTap> {
    const tap = new NodeReportTap();
    tap.relay = await RegistryRelay.start(controllerAddress, (report) => {
      if (report.nodeId) tap.last.set(report.nodeId, report);
    });
    return tap;
  }

  /** Where the agents should report (their CONTROLLER_ADDRESS). */
  get address(): string {
    return this.relay.address;
  }

  stop(): Promise<void> {
    return this.relay.stop();
  }
}

