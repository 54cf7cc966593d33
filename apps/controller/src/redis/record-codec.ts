/** Node and VM records ⇄ Redis hash fields (all strings; JSON for nested messages). */
import { cluster } from '@vmm/proto';
import { VM_MEASURED_FIELDS, type NodeRecord, type VmMeasured, type VmRecord } from '../common/model.js';

type Hash = Record<string, string>;

const num = (v: string | undefined, fallback = 0): number => {
  const n = Number(v);
  return v === undefined || v === '' || !Number.isFinite(n) ? fallback : n;
};

function json<T>(v: string | undefined): T | undefined {
  if (!v) return undefined;
  try {
    return JSON.parse(v) as T;
  } catch {
    return undefined;
  }
}

/** A label map as stored (JSON); {} when unset or unreadable. */
export function labelsOf(v: string | undefined): Record<string, string> {
  return json<Record<string, string>>(v) ?? {};
}

export function hashToNode(h: Hash): NodeRecord | undefined {
  if (!h.nodeId) return undefined;
  return {
    nodeId: h.nodeId,
    address: h.address ?? '',
    vcpus: num(h.vcpus),
    memoryMib: num(h.memoryMib),
    cpuAllocationRatio: num(h.cpuAllocationRatio, 1),
    ramAllocationRatio: num(h.ramAllocationRatio, 1),
    vcpusAllocated: num(h.vcpusAllocated),
    memoryMibAllocated: num(h.memoryMibAllocated),
    vmCount: num(h.vmCount),
    cordoned: h.cordoned === '1',
    draining: h.draining === '1',
    drainStartedAtMs: num(h.drainStartedAtMs),
    lastReportMs: num(h.lastReportMs),
    registeredAtMs: num(h.registeredAtMs),
    readyRecorded: h.readyRecorded !== '0',
    memoryUsedBytes: num(h.memoryUsedBytes),
    ksm: json<cluster.KsmStats>(h.ksm),
    ksmKnobs: json<cluster.KsmKnobs>(h.ksmKnobs),
    agentVersion: h.agentVersion ?? '',
    // Nodes registered before the field ran the emulator, the only driver there was.
    hypervisor: h.hypervisor || 'emulator',
    metricsUrl: h.metricsUrl ?? '',
    imageCounts: {},
    reportedVms: json<cluster.ReportedVm[]>(h.reportedVms) ?? [],
    labels: labelsOf(h.labels),
  };
}

/** Every field of a new VM record, as the hash HSET writes (strings). */
export function vmToHash(vm: VmRecord): Record<string, string> {
  return {
    vmId: vm.vmId,
    name: vm.name,
    nodeId: vm.nodeId,
    state: vm.state,
    vcpus: String(vm.vcpus),
    memoryMib: String(vm.memoryMib),
    image: vm.image,
    workload: JSON.stringify(vm.workload),
    labels: JSON.stringify(vm.labels),
    antiAffinityGroup: vm.antiAffinityGroup,
    createdAtMs: String(vm.createdAtMs),
    fencingEpoch: String(vm.fencingEpoch),
    ...Object.fromEntries(VM_MEASURED_FIELDS.map((field) => [field, String(vm[field])])),
    restartPolicy: vm.restartPolicy,
    nodeSelector: JSON.stringify(vm.nodeSelector),
  };
}

export function hashToVm(h: Hash): VmRecord | undefined {
  if (!h.vmId) return undefined;
  return {
    vmId: h.vmId,
    name: h.name ?? '',
    nodeId: h.nodeId ?? '',
    state: (h.state as cluster.VmState) ?? cluster.VmState.VM_STATE_UNSPECIFIED,
    vcpus: num(h.vcpus),
    memoryMib: num(h.memoryMib),
    image: h.image ?? '',
    workload: json<cluster.Workload>(h.workload) ?? {
      kind: cluster.WorkloadKind.WORKLOAD_KIND_UNSPECIFIED,
      dirtyRatePagesPerSec: 0,
      workingSetMib: 0,
      seed: 0,
    },
    labels: json<Record<string, string>>(h.labels) ?? {},
    antiAffinityGroup: h.antiAffinityGroup ?? '',
    createdAtMs: num(h.createdAtMs),
    fencingEpoch: num(h.fencingEpoch),
    ...(Object.fromEntries(VM_MEASURED_FIELDS.map((field) => [field, num(h[field])])) as VmMeasured),
    restartPolicy: (h.restartPolicy as cluster.RestartPolicy) || cluster.RestartPolicy.RESTART_POLICY_UNSPECIFIED,
    migrationId: h.migrationId ?? '',
    failureReason: h.failureReason ?? '',
    // VMs created before the field have none.
    nodeSelector: labelsOf(h.nodeSelector),
  };
}
