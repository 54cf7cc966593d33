import { getImage, MAX_DIRTY_RATE_PAGES_PER_SEC, PAGE_SIZE, type WorkloadConfig, type WorkloadKind } from '@vmm/emulator';
import { assertFencingEpoch, InvalidFencingEpochError } from '@vmm/migration';
import { agent, cluster } from '@vmm/proto';
import { InvalidVmSpecError } from '../errors.js';

const PAGES_PER_MIB = (1024 * 1024) / PAGE_SIZE;
const VM_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

const workloadKinds: Partial<Record<cluster.WorkloadKind, WorkloadKind>> = {
  [cluster.WorkloadKind.WORKLOAD_KIND_IDLE]: 'idle',
  [cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM]: 'uniform',
  [cluster.WorkloadKind.WORKLOAD_KIND_HOTCOLD]: 'hotcold',
  [cluster.WorkloadKind.WORKLOAD_KIND_SEQUENTIAL]: 'sequential',
};

/** Largest VM this node accepts: its whole capacity times the overcommit ratios. */
export interface VmLimits {
  maxVcpus: number;
  maxMemoryMib: number;
}

/** A VmSpec checked and turned into what the emulator's VirtualMachine takes. */
export interface ValidatedVmSpec {
  spec: agent.VmSpec;
  memoryMib: number;
  vcpus: number;
  image: string;
  workload: WorkloadConfig;
}

/**
 * Validates a VmSpec from the controller. The controller validated the user's request already; this
 * guards the agent itself (an absurd size would exhaust the process) and names the bad field.
 * @throws InvalidVmSpecError
 */
export function validateVmSpec(spec: agent.VmSpec | undefined, limits: VmLimits): ValidatedVmSpec {
  if (!spec) throw new InvalidVmSpecError('spec', 'missing');
  if (!VM_ID.test(spec.vmId)) {
    throw new InvalidVmSpecError('vm_id', 'must be 1-128 letters, digits, ".", "_", ":" or "-"');
  }
  const vcpus = spec.vcpus;
  if (!Number.isInteger(vcpus) || vcpus <= 0 || vcpus > limits.maxVcpus) {
    throw new InvalidVmSpecError('vcpus', `must be an integer in [1, ${limits.maxVcpus}], got ${vcpus}`);
  }
  const memoryMib = spec.memoryMib;
  if (!Number.isInteger(memoryMib) || memoryMib <= 0 || memoryMib > limits.maxMemoryMib) {
    throw new InvalidVmSpecError('memory_mib', `must be an integer in [1, ${limits.maxMemoryMib}], got ${memoryMib}`);
  }
  const pageCount = memoryMib * PAGES_PER_MIB;
  const image = getImage(spec.image);
  if (!image) throw new InvalidVmSpecError('image', `unknown image '${spec.image}'`);
  if (image.pages > pageCount) {
    throw new InvalidVmSpecError('memory_mib', `image ${image.name} needs ${image.pages / PAGES_PER_MIB} MiB`);
  }
  try {
    assertFencingEpoch(spec.fencingEpoch, 'fencing_epoch');
  } catch (error) {
    if (error instanceof InvalidFencingEpochError) throw new InvalidVmSpecError('fencing_epoch', `must be a whole number in 0..2^53-1, got ${spec.fencingEpoch}`);
    throw error;
  }
  const workload = toWorkloadConfig(spec.workload ?? undefined, memoryMib);
  // A clean copy: the request comes from proto-loader (null for unset messages), and this spec is
  // sent again in ListVms and RegisterRequest, whose ts-proto encoder reads undefined as unset only.
  const clean: agent.VmSpec = {
    vmId: spec.vmId,
    name: spec.name ?? '',
    vcpus,
    memoryMib,
    image: image.name,
    workload: spec.workload
      ? { ...spec.workload }
      : { kind: cluster.WorkloadKind.WORKLOAD_KIND_IDLE, dirtyRatePagesPerSec: 0, workingSetMib: 0, seed: 0 },
    labels: { ...(spec.labels ?? {}) },
    fencingEpoch: spec.fencingEpoch,
    restartPolicy: spec.restartPolicy ?? cluster.RestartPolicy.RESTART_POLICY_UNSPECIFIED,
  };
  return { spec: clean, memoryMib, vcpus, image: image.name, workload };
}

/** A missing workload means an idle guest; an unspecified kind is an error (docs/api.md). */
function toWorkloadConfig(workload: cluster.Workload | undefined, memoryMib: number): WorkloadConfig {
  if (!workload) return { kind: 'idle', dirtyRatePagesPerSec: 0, workingSetPages: memoryMib * PAGES_PER_MIB, seed: 0 };
  const kind = workloadKinds[workload.kind];
  if (!kind) throw new InvalidVmSpecError('workload.kind', `unknown or unspecified kind ${workload.kind}`);
  const rate = workload.dirtyRatePagesPerSec;
  if (!Number.isFinite(rate) || rate < 0 || rate > MAX_DIRTY_RATE_PAGES_PER_SEC) {
    throw new InvalidVmSpecError(
      'workload.dirty_rate_pages_per_sec',
      `must be in [0, ${MAX_DIRTY_RATE_PAGES_PER_SEC}], got ${rate}`,
    );
  }
  const workingSetMib = workload.workingSetMib;
  if (!Number.isInteger(workingSetMib) || workingSetMib < 0 || workingSetMib > memoryMib) {
    throw new InvalidVmSpecError('workload.working_set_mib', `must be in [0, ${memoryMib}], got ${workingSetMib}`);
  }
  if (!Number.isSafeInteger(workload.seed) || workload.seed < 0) {
    throw new InvalidVmSpecError('workload.seed', `must be a non-negative integer below 2^53, got ${workload.seed}`);
  }
  return {
    kind,
    dirtyRatePagesPerSec: rate,
    // 0 means the whole guest memory (cluster.proto).
    workingSetPages: (workingSetMib === 0 ? memoryMib : workingSetMib) * PAGES_PER_MIB,
    seed: workload.seed,
  };
}
