/**
 * Complete NodeRecord and VmRecord values for specs and benches, so that each of them states only
 * what it is about and a field added to the model is defaulted in one place.
 */
import { cluster } from '@vmm/proto';
import type { NodeRecord, VmRecord } from '../common/model.js';

/** The workload of VMs whose pages do not change (specs that are not about dirty pages). */
export const IDLE_WORKLOAD: cluster.Workload = { kind: cluster.WorkloadKind.WORKLOAD_KIND_IDLE, dirtyRatePagesPerSec: 0, workingSetMib: 0, seed: 0 };

/** A ready, schedulable node with nothing allocated; id, address, size and ratios are the caller's. */
export function testNode(
  fields: Pick<NodeRecord, 'nodeId' | 'address' | 'vcpus' | 'memoryMib' | 'cpuAllocationRatio' | 'ramAllocationRatio' | 'lastReportMs' | 'registeredAtMs'> &
    Partial<NodeRecord>,
): NodeRecord {
  return {
    vcpusAllocated: 0,
    memoryMibAllocated: 0,
    vmCount: 0,
    cordoned: false,
    draining: false,
    drainStartedAtMs: 0,
    readyRecorded: true,
    memoryUsedBytes: 0,
    ksm: undefined,
    ksmKnobs: undefined,
    agentVersion: '',
    hypervisor: 'emulator',
    metricsUrl: '',
    imageCounts: {},
    reportedVms: [],
    labels: {},
    ...fields,
  };
}

/** A PENDING 1-vCPU idle VM of image 'empty', no labels or group, epoch 1, nothing measured yet. */
export function testVm(fields: Pick<VmRecord, 'vmId' | 'name' | 'nodeId' | 'memoryMib'> & Partial<VmRecord>): VmRecord {
  return {
    state: cluster.VmState.VM_STATE_PENDING,
    vcpus: 1,
    image: 'empty',
    workload: IDLE_WORKLOAD,
    labels: {},
    antiAffinityGroup: '',
    createdAtMs: Date.now(),
    fencingEpoch: 1,
    dirtyRatePagesPerSec: 0,
    workingSetPages: 0,
    residentPages: 0,
    restartPolicy: cluster.RestartPolicy.RESTART_POLICY_UNSPECIFIED,
    migrationId: '',
    failureReason: '',
    nodeSelector: {},
    ...fields,
  };
}
