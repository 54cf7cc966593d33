/**
 * The controller's own records of nodes and VMs, as kept in Redis (see redis/redis-keys.ts).
 * Wire shapes (cluster.Node, cluster.Vm) are built from these by the services.
 */
import type { cluster } from '@vmm/proto';

export interface NodeRecord {
  nodeId: string;
  /** host:port of the agent's AgentService. */
  address: string;
  vcpus: number;
  memoryMib: number;
  cpuAllocationRatio: number;
  ramAllocationRatio: number;
  vcpusAllocated: number;
  memoryMibAllocated: number;
  vmCount: number;
  cordoned: boolean;
  draining: boolean;
  /** When the current drain was asked for (its migrations are those created since); 0 if never. */
  drainStartedAtMs: number;
  /** Controller clock (ms since epoch) of the last registration or report. */
  lastReportMs: number;
  registeredAtMs: number;
  /** Readiness as last recorded by the sweep or a report (the computed state is what counts). */
  readyRecorded: boolean;
  /** Host frames the agent's emulator holds for guest memory: real use after KSM. */
  memoryUsedBytes: number;
  ksm: cluster.KsmStats | undefined;
  ksmKnobs: cluster.KsmKnobs | undefined;
  agentVersion: string;
  /** The driver that runs the node's VMs (`emulator` or `qemu`): Node.hypervisor. */
  hypervisor: string;
  /** The agent's Prometheus endpoint (Node.metrics_url); '' when it serves none. */
  metricsUrl: string;
  /** Image → number of VMs of that image placed on the node. */
  imageCounts: Record<string, number>;
  /** What the agent's last report said it holds (Node.reported_vms). */
  reportedVms: cluster.ReportedVm[];
  /** Node.labels, set by LabelNode only (a registration keeps them). */
  labels: Record<string, string>;
}

/**
 * The fields of a VM that its agent measures and every report refreshes. The one list that the report
 * script writes and the record codec stores and reads: a new measurement is added here, in the
 * protos, and where the compiler then points (the report's mapping, the API's Vm).
 */
export const VM_MEASURED_FIELDS = ['dirtyRatePagesPerSec', 'workingSetPages', 'residentPages'] as const;
export type VmMeasured = Record<(typeof VM_MEASURED_FIELDS)[number], number>;
/** A VM nothing has been measured of yet. */
export const NO_MEASUREMENTS: Readonly<VmMeasured> = Object.freeze(
  Object.fromEntries(VM_MEASURED_FIELDS.map((field) => [field, 0])) as VmMeasured,
);

export interface VmRecord extends VmMeasured {
  vmId: string;
  name: string;
  nodeId: string;
  state: cluster.VmState;
  vcpus: number;
  memoryMib: number;
  image: string;
  workload: cluster.Workload;
  labels: Record<string, string>;
  antiAffinityGroup: string;
  createdAtMs: number;
  fencingEpoch: number;
  restartPolicy: cluster.RestartPolicy;
  /** The migration in flight (set while MIGRATING). */
  migrationId: string;
  /** Why the VM is FAILED ('' otherwise). */
  failureReason: string;
  /** CreateVm.node_selector: every node it runs on (placement, migration, HA restart) carries these labels. */
  nodeSelector: Record<string, string>;
}

/** What the scheduler needs to know about a VM being placed. */
export interface PlacementRequest {
  vcpus: number;
  memoryMib: number;
  antiAffinityGroup: string;
  /** The VM's image, for the KSM-sharing weigher ('' = unknown). */
  image?: string;
  /** Only nodes of this driver (CreateVm.hypervisor); '' or absent = any. */
  hypervisor?: string;
  /** Only nodes carrying all these labels (CreateVm.node_selector); empty or absent = any. */
  nodeSelector?: Readonly<Record<string, string>>;
}

/**
 * Admission limit of one resource: whole units within capacity × ratio. The small epsilon keeps
 * 8 × 1.5 from landing on 11.999…; the reservation Lua script computes the same expression.
 */
export function allocationLimit(capacity: number, ratio: number): number {
  return Math.floor(capacity * ratio + 1e-6);
}
