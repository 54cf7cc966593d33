/**
 * CreateVm request validation (docs/api.md status table): every malformed field is INVALID_ARGUMENT
 * naming the proto field. Pure: the largest node's capacity is passed in.
 */
import { cluster } from '@vmm/proto';
import { requestedHypervisor } from '../common/hypervisor.js';
import { MAX_LABEL_LENGTH, validateLabels } from '../common/labels.js';
import { InvalidArgumentError } from '../errors.js';

/**
 * The emulator's rule for image names (libs/emulator IMAGE_NAME_PATTERN: any such name is an image, its
 * content derived from the name). A copy, because the controller must not import the emulator; an agent
 * refusing an image anyway is mapped to INVALID_ARGUMENT too.
 */
export const IMAGE_NAME_PATTERN = /^[a-z0-9][a-z0-9._:/-]{0,127}$/;
export const DEFAULT_IMAGE = 'empty';

const WORKLOAD_KINDS = new Set<string>([
  cluster.WorkloadKind.WORKLOAD_KIND_IDLE,
  cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM,
  cluster.WorkloadKind.WORKLOAD_KIND_HOTCOLD,
  cluster.WorkloadKind.WORKLOAD_KIND_SEQUENTIAL,
]);

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Physical capacity of the largest node, per resource (each maximum over all registered nodes). */
export interface LargestNode {
  vcpus: number;
  memoryMib: number;
}

export interface CreateVmSpec {
  name: string;
  vcpus: number;
  memoryMib: number;
  image: string;
  workload: cluster.Workload;
  nodeId: string;
  antiAffinityGroup: string;
  labels: Record<string, string>;
  restartPolicy: cluster.RestartPolicy;
  /** Only nodes of this driver; '' = any. */
  hypervisor: string;
  /** Only nodes carrying all these labels; {} = any. */
  nodeSelector: Record<string, string>;
}

const RESTART_POLICIES = new Set<string>([
  cluster.RestartPolicy.RESTART_POLICY_UNSPECIFIED,
  cluster.RestartPolicy.RESTART_POLICY_NEVER,
  cluster.RestartPolicy.RESTART_POLICY_ALWAYS,
]);

function wholeNumber(field: string, value: unknown, min: number): number {
  const n = typeof value === 'number' ? value : Number(value ?? 0);
  if (!Number.isFinite(n) || !Number.isInteger(n)) throw new InvalidArgumentError(field, 'must be a whole number');
  if (n < min) throw new InvalidArgumentError(field, min === 1 ? 'must be greater than 0' : `must be at least ${min}`);
  return n;
}

/** `largest` is undefined when no node is registered: then the size check is left to placement. */
export function validateCreateVm(req: Partial<cluster.CreateVmRequest>, largest: LargestNode | undefined): CreateVmSpec {
  const name = (req.name ?? '').trim();
  if (name === '') throw new InvalidArgumentError('name', 'must not be empty');
  if (!NAME_PATTERN.test(name)) {
    throw new InvalidArgumentError('name', 'use 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit');
  }
  const vcpus = wholeNumber('vcpus', req.vcpus, 1);
  const memoryMib = wholeNumber('memory_mib', req.memoryMib, 1);
  if (largest && vcpus > largest.vcpus) {
    throw new InvalidArgumentError('vcpus', `${vcpus} is larger than the largest node (${largest.vcpus} vCPUs)`);
  }
  if (largest && memoryMib > largest.memoryMib) {
    throw new InvalidArgumentError('memory_mib', `${memoryMib} is larger than the largest node (${largest.memoryMib} MiB)`);
  }
  const image = (req.image ?? '').trim() || DEFAULT_IMAGE;
  if (!IMAGE_NAME_PATTERN.test(image)) {
    throw new InvalidArgumentError(
      'image',
      `invalid image ${JSON.stringify(image)}: use 1-128 characters from a-z, 0-9, ".", "_", ":", "/", "-", starting with a letter or digit`,
    );
  }
  const workload = validateWorkload(req.workload ?? undefined, memoryMib);
  const antiAffinityGroup = (req.antiAffinityGroup ?? '').trim();
  if (antiAffinityGroup.length > MAX_LABEL_LENGTH) throw new InvalidArgumentError('anti_affinity_group', 'too long');
  const labels = validateLabels('labels', req.labels ?? {});
  const nodeSelector = validateLabels('node_selector', req.nodeSelector ?? {});
  const restartPolicy = req.restartPolicy ?? cluster.RestartPolicy.RESTART_POLICY_UNSPECIFIED;
  if (!RESTART_POLICIES.has(restartPolicy)) throw new InvalidArgumentError('restart_policy', `unknown restart policy ${String(restartPolicy)}`);
  const hypervisor = requestedHypervisor(req.hypervisor);
  return { name, vcpus, memoryMib, image, workload, nodeId: (req.nodeId ?? '').trim(), antiAffinityGroup, labels, restartPolicy, hypervisor, nodeSelector };
}

function validateWorkload(w: cluster.Workload | undefined, memoryMib: number): cluster.Workload {
  const kind = w?.kind ?? cluster.WorkloadKind.WORKLOAD_KIND_UNSPECIFIED;
  if (!WORKLOAD_KINDS.has(kind)) {
    throw new InvalidArgumentError('workload.kind', `must be one of idle, uniform, hotcold, sequential (got ${String(kind)})`);
  }
  const rate = Number(w?.dirtyRatePagesPerSec ?? 0);
  if (!Number.isFinite(rate) || rate < 0) {
    throw new InvalidArgumentError('workload.dirty_rate_pages_per_sec', 'must be a finite number ≥ 0');
  }
  const workingSetMib = wholeNumber('workload.working_set_mib', w?.workingSetMib ?? 0, 0);
  if (workingSetMib > memoryMib) {
    throw new InvalidArgumentError('workload.working_set_mib', `${workingSetMib} is larger than memory_mib (${memoryMib})`);
  }
  const seed = Number(w?.seed ?? 0);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new InvalidArgumentError('workload.seed', 'must be a whole number ≥ 0');
  return { kind, dirtyRatePagesPerSec: rate, workingSetMib, seed };
}
