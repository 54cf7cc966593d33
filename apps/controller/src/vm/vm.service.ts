/**
 * VM lifecycle: create (validate → schedule → atomic reservation → agent CreateVm → RUNNING, or
 * release everything on failure), get, list, delete.
 */
import { Inject, Injectable } from '@nestjs/common';
import { cluster, type agent } from '@vmm/proto';
import { AgentGateway, CREATE_VM_DEADLINE_MS } from '../agent/agent.gateway.js';
import { LOGGER, type Logger } from '../common/logger.js';
import { NO_MEASUREMENTS, type NodeRecord, type VmRecord } from '../common/model.js';
import { nextPageToken, readPageRequest } from '../common/page-token.js';
import { requireFound } from '../common/require-found.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import {
  AgentUnavailableError,
  NoCapacityError,
  NodeNotFoundError,
  NodeNotSchedulableError,
  VmBusyError,
  VmNameTakenError,
  VmNotFoundError,
} from '../errors.js';
import { isNodeReady } from '../node/node-state.js';
import { NodeService } from '../node/node.service.js';
import { NodeRepository } from '../redis/node.repository.js';
import { PlacementRepository, type ReserveOutcome } from '../redis/placement.repository.js';
import { VmRepository } from '../redis/vm.repository.js';
import { describeRejections, rankNodes } from '../scheduler/scheduler.js';
import { newVmId } from './vm-id.js';
import { validateCreateVm, type CreateVmSpec } from './vm-validation.js';

const { VmState } = cluster;

/** A PENDING VM older than this was left by a controller that died mid-create: it may be deleted. */
export const STALE_PENDING_MS = CREATE_VM_DEADLINE_MS + 5_000;

const REJECT_REASON: Partial<Record<ReserveOutcome, string>> = {
  NO_NODE: 'gone',
  CORDONED: 'cordoned',
  DRAINING: 'draining',
  NOT_READY: 'not ready',
  NO_VCPUS: 'vcpus',
  NO_MEMORY: 'memory',
  ANTI_AFFINITY: 'anti-affinity',
};

@Injectable()
export class VmService {
  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
    @Inject(VmRepository) private readonly vms: VmRepository,
    @Inject(PlacementRepository) private readonly placement: PlacementRepository,
    @Inject(AgentGateway) private readonly agents: AgentGateway,
  ) {}

  async create(request: Partial<cluster.CreateVmRequest>): Promise<cluster.Vm> {
    const nodes = await this.nodes.list();
    const spec = validateCreateVm(request, NodeService.largestNode(nodes));
    if (await this.vms.idByName(spec.name)) throw new VmNameTakenError(spec.name);

    const candidates = await this.candidates(spec, nodes);
    const now = Date.now();
    const vm: VmRecord = {
      vmId: newVmId(now),
      name: spec.name,
      nodeId: '',
      state: VmState.VM_STATE_PENDING,
      vcpus: spec.vcpus,
      memoryMib: spec.memoryMib,
      image: spec.image,
      workload: spec.workload,
      labels: spec.labels,
      antiAffinityGroup: spec.antiAffinityGroup,
      createdAtMs: now,
      fencingEpoch: 1,
      ...NO_MEASUREMENTS,
      restartPolicy: spec.restartPolicy,
      migrationId: '',
      failureReason: '',
    };
    const node = await this.reserveOnFirst(vm, candidates, spec.nodeId !== '');

    let status: agent.VmStatus;
    try {
      status = await this.agents.createVm(node, toVmSpec(vm));
    } catch (error) {
      await this.releaseAfterFailure(vm, error);
      throw error;
    }
    const running = await this.vms.setState(vm.vmId, VmState.VM_STATE_RUNNING, [VmState.VM_STATE_PENDING]);
    if (running) await this.vms.setFields(vm.vmId, { residentPages: String(status.residentPages ?? 0) });
    this.logger.info({ vmId: vm.vmId, name: vm.name, nodeId: node.nodeId }, 'vm created');
    return this.get(vm.vmId);
  }

  async get(vmId: string): Promise<cluster.Vm> {
    return toProtoVm(await this.require(vmId));
  }

  async require(vmId: string): Promise<VmRecord> {
    return requireFound('vm_id', vmId, (id) => this.vms.get(id), (id) => new VmNotFoundError(id));
  }

  async list(request: Partial<cluster.ListVmsRequest>): Promise<cluster.ListVmsResponse> {
    const nodeId = request.nodeId ?? '';
    const { pageSize, after } = readPageRequest(request, nodeId);
    if (nodeId && !(await this.nodes.get(nodeId))) throw new NodeNotFoundError(nodeId);
    const page = await this.vms.listPage(after, pageSize, nodeId);
    return { vms: page.vms.map(toProtoVm), nextPageToken: nextPageToken(page.more, page.vms.at(-1)?.vmId, nodeId) };
  }

  /**
   * Deletes on the agent, then releases the allocation and indexes. A node that cannot be told now
   * (not ready, or unreachable) gets a tombstone: its copy is destroyed when it reports it again.
   */
  async delete(vmId: string): Promise<void> {
    const vm = await this.require(vmId);
    if (vm.state === VmState.VM_STATE_MIGRATING) throw new VmBusyError(vmId, 'migrating');
    if (vm.state === VmState.VM_STATE_PENDING && Date.now() - vm.createdAtMs < STALE_PENDING_MS) {
      throw new VmBusyError(vmId, 'being created');
    }
    const node = await this.nodes.get(vm.nodeId);
    if (node) {
      // The tombstone first: a report read before the agent's delete finds it, not a VM to adopt.
      await this.nodes.addTombstone(node.nodeId, vmId, vm.fencingEpoch);
      try {
        await this.agents.deleteVm(node, vmId);
      } catch (error) {
        if (!(error instanceof AgentUnavailableError)) throw error;
        this.logger.warn({ vmId, nodeId: node.nodeId }, 'vm deleted while its node cannot be reached: destroyed when it reports again');
      }
    }
    await this.placement.release(vmId);
    this.logger.info({ vmId, name: vm.name, nodeId: vm.nodeId }, 'vm deleted');
  }

  /** The nodes to try, best first. A requested node must exist and be schedulable (its room is checked by the reservation). */
  private async candidates(spec: CreateVmSpec, nodes: readonly NodeRecord[]): Promise<NodeRecord[]> {
    const now = Date.now();
    if (spec.nodeId) {
      const node = nodes.find((n) => n.nodeId === spec.nodeId);
      if (!node) throw new NodeNotFoundError(spec.nodeId);
      if (!isNodeReady(node, now, this.config.nodeStaleAfterMs)) throw new NodeNotSchedulableError(node.nodeId, 'not ready');
      if (node.cordoned) throw new NodeNotSchedulableError(node.nodeId, 'cordoned');
      if (node.draining) throw new NodeNotSchedulableError(node.nodeId, 'draining');
      if (spec.hypervisor && node.hypervisor !== spec.hypervisor) throw new NodeNotSchedulableError(node.nodeId, 'of another hypervisor');
      return [node];
    }
    const antiAffinityNodeIds = await this.vms.antiAffinityNodeIds(spec.antiAffinityGroup);
    const ranked = rankNodes(nodes, spec, { nowMs: now, staleAfterMs: this.config.nodeStaleAfterMs, antiAffinityNodeIds });
    if (ranked.candidates.length === 0) throw new NoCapacityError(describeRejections(ranked.rejected));
    return ranked.candidates;
  }

  /** Tries the atomic reservation on each candidate in turn; a lost race moves on to the next one. */
  private async reserveOnFirst(vm: VmRecord, candidates: readonly NodeRecord[], explicit: boolean): Promise<NodeRecord> {
    const lost: string[] = [];
    for (const node of candidates) {
      vm.nodeId = node.nodeId;
      const outcome = await this.placement.reserve(vm, Date.now(), this.config.nodeStaleAfterMs);
      if (outcome === 'OK') return node;
      if (outcome === 'NAME_TAKEN') throw new VmNameTakenError(vm.name);
      if (explicit && outcome === 'NO_NODE') throw new NodeNotFoundError(node.nodeId);
      if (explicit && (outcome === 'CORDONED' || outcome === 'NOT_READY' || outcome === 'DRAINING')) {
        throw new NodeNotSchedulableError(node.nodeId, REJECT_REASON[outcome] as 'cordoned' | 'not ready' | 'draining');
      }
      if (outcome === 'VM_EXISTS') vm.vmId = newVmId();
      lost.push(`${node.nodeId}: ${REJECT_REASON[outcome] ?? outcome}`);
    }
    throw new NoCapacityError(lost.join(', '));
  }

  private async releaseAfterFailure(vm: VmRecord, cause: unknown): Promise<void> {
    try {
      await this.placement.release(vm.vmId);
    } catch (releaseError) {
      this.logger.error({ vmId: vm.vmId, err: releaseError }, 'could not release the reservation of a failed create');
    }
    this.logger.warn({ vmId: vm.vmId, nodeId: vm.nodeId, err: cause }, 'vm create failed on the agent; reservation released');
    if (cause instanceof AgentUnavailableError) {
      // A deadline may expire after the agent did create it: ask it to drop the VM, without waiting.
      const node = await this.nodes.get(vm.nodeId).catch(() => undefined);
      if (node) this.agents.deleteVm(node, vm.vmId).catch(() => undefined);
    }
  }
}

export function toVmSpec(vm: VmRecord): agent.VmSpec {
  return {
    vmId: vm.vmId,
    name: vm.name,
    vcpus: vm.vcpus,
    memoryMib: vm.memoryMib,
    image: vm.image,
    workload: vm.workload,
    labels: vm.labels,
    fencingEpoch: vm.fencingEpoch,
    restartPolicy: vm.restartPolicy,
  };
}

export function toProtoVm(vm: VmRecord): cluster.Vm {
  return {
    vmId: vm.vmId,
    name: vm.name,
    nodeId: vm.nodeId,
    state: vm.state,
    vcpus: vm.vcpus,
    memoryMib: vm.memoryMib,
    image: vm.image,
    workload: vm.workload,
    dirtyRatePagesPerSec: vm.dirtyRatePagesPerSec,
    workingSetPages: vm.workingSetPages,
    residentPages: vm.residentPages,
    labels: vm.labels,
    antiAffinityGroup: vm.antiAffinityGroup,
    createdAtMs: vm.createdAtMs,
    fencingEpoch: vm.fencingEpoch,
    restartPolicy: vm.restartPolicy,
  };
}
