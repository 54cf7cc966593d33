/**
 * VM lifecycle: create (validate → schedule → atomic reservation → agent CreateVm → RUNNING, or
 * release everything on failure), get, list, delete.
 */
import { Inject, Injectable } from '@nestjs/common';
import { agent, cluster } from '@vmm/proto';
import { status as grpcStatus } from '@grpc/grpc-js';
import { AgentGateway, CREATE_VM_DEADLINE_MS } from '../agent/agent.gateway.js';
import { matchesSelector } from '../common/labels.js';
import { LOGGER, type Logger } from '../common/logger.js';
import { NO_MEASUREMENTS, type NodeRecord, type VmRecord } from '../common/model.js';
import { nextPageToken, parseLabelSelector, readPageRequest, scanPage } from '../common/page-token.js';
import { requireFound } from '../common/require-found.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import {
  AgentRejectedError,
  AgentUnavailableError,
  NoCapacityError,
  NodeNotFoundError,
  NodeNotSchedulableError,
  VmBusyError,
  VmNameTakenError,
  VmNotFoundError,
  VmStateConflictError,
} from '../errors.js';
import { isNodeReady } from '../node/node-state.js';
import { NodeService } from '../node/node.service.js';
import { NodeRepository } from '../redis/node.repository.js';
import { PlacementRepository, type ReserveOutcome } from '../redis/placement.repository.js';
import { VmRepository } from '../redis/vm.repository.js';
import { describeRejections, rankNodes } from '../scheduler/scheduler.js';
import { LIFECYCLE, lifecycleStep, type LifecycleAction } from './vm-state.js';
import { newVmId } from './vm-id.js';
import { validateCreateVm, type CreateVmSpec } from './vm-validation.js';

const { VmState } = cluster;

/** A PENDING VM older than this was left by a controller that died mid-create: it may be deleted. */
export const STALE_PENDING_MS = CREATE_VM_DEADLINE_MS + 5_000;

const POWER_ACTION: Record<LifecycleAction, agent.PowerAction> = {
  pause: agent.PowerAction.POWER_ACTION_PAUSE,
  resume: agent.PowerAction.POWER_ACTION_RESUME,
  stop: agent.PowerAction.POWER_ACTION_STOP,
  start: agent.PowerAction.POWER_ACTION_START,
};

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
      nodeSelector: spec.nodeSelector,
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

  /** GetVm: `vmIdOrName` is a VM's id or, when no VM has that id, its name (docs/api.md). */
  async get(vmIdOrName: string): Promise<cluster.Vm> {
    return toProtoVm(
      await requireFound(
        'vm_id',
        vmIdOrName,
        async (ref) => (await this.vms.get(ref)) ?? (await this.byName(ref)),
        (ref) => new VmNotFoundError(ref),
      ),
    );
  }

  private async byName(name: string): Promise<VmRecord | undefined> {
    const vmId = await this.vms.idByName(name);
    return vmId ? this.vms.get(vmId) : undefined;
  }

  async require(vmId: string): Promise<VmRecord> {
    return requireFound('vm_id', vmId, (id) => this.vms.get(id), (id) => new VmNotFoundError(id));
  }

  /** A page of VMs; the controller adds the revision (read before this). */
  async list(request: Partial<cluster.ListVmsRequest>): Promise<Omit<cluster.ListVmsResponse, 'revision'>> {
    const nodeId = request.nodeId ?? '';
    const state = request.state && request.state !== VmState.VM_STATE_UNSPECIFIED ? request.state : '';
    const selector = request.labelSelector ?? '';
    const matchesLabels = parseLabelSelector(selector);
    // The token names its filter; the node filter alone keeps the form tokens had before the others.
    const filter = state || selector ? JSON.stringify([nodeId, state, selector]) : nodeId;
    const { pageSize, after } = readPageRequest(request, filter);
    if (nodeId && !(await this.nodes.get(nodeId))) throw new NodeNotFoundError(nodeId);
    const page = await scanPage(
      after,
      pageSize,
      async (from, count) => {
        const p = await this.vms.listPage(from, count, nodeId);
        return { items: p.vms, more: p.more };
      },
      (vm) => (!state || vm.state === state) && matchesLabels(vm.labels),
      (vm) => vm.vmId,
    );
    return { vms: page.items.map(toProtoVm), nextPageToken: nextPageToken(page.more, page.lastRead, filter) };
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

  /**
   * PauseVm, ResumeVm, StopVm, StartVm. The record moves to the new state first, by compare-and-set
   * from the state read: a migration is created only from RUNNING (Lua CREATE_MIGRATION), so a pause
   * or a stop written first cannot race a migration's start, and two lifecycle calls cannot both
   * proceed. Then the agent acts; if it refuses or cannot be reached, the record goes back (the
   * node's next report says what it really runs). The allocation stays in every state.
   */
  async lifecycle(vmId: string, action: LifecycleAction): Promise<cluster.Vm> {
    const vm = await this.require(vmId);
    const step = lifecycleStep(action, vm.state);
    if (step === 'done') return toProtoVm(vm);
    if (step === 'refused') {
      if (vm.state === VmState.VM_STATE_MIGRATING) throw new VmBusyError(vm.vmId, 'migrating');
      if (vm.state === VmState.VM_STATE_PENDING) throw new VmBusyError(vm.vmId, 'being created');
      throw new VmStateConflictError(vm.vmId, action, vm.state.replace('VM_STATE_', ''));
    }
    const node = await this.nodes.get(vm.nodeId);
    if (!node) throw new AgentUnavailableError(vm.nodeId, 'the node is not registered');
    const { to } = LIFECYCLE[action];
    if (!(await this.vms.setState(vm.vmId, to, [vm.state]))) throw new VmBusyError(vm.vmId, 'changing state (retry)');
    let status: agent.VmStatus;
    try {
      status = await this.powerOnAgent(node, vm, action);
    } catch (error) {
      await this.vms.setState(vm.vmId, vm.state, [to]).catch(() => false);
      throw error;
    }
    await this.vms.setFields(vm.vmId, { residentPages: String(status.residentPages ?? 0) });
    this.logger.info({ vmId: vm.vmId, nodeId: node.nodeId, action }, 'vm lifecycle');
    return this.get(vm.vmId);
  }

  /** The agent's power action; a start of a VM the agent no longer holds (it restarted) boots it from the record's spec. */
  private async powerOnAgent(node: NodeRecord, vm: VmRecord, action: LifecycleAction): Promise<agent.VmStatus> {
    try {
      return await this.agents.setVmPower(node, vm.vmId, vm.fencingEpoch, POWER_ACTION[action]);
    } catch (error) {
      if (action === 'start' && error instanceof AgentRejectedError && error.grpcCode === grpcStatus.NOT_FOUND) {
        return this.agents.createVm(node, toVmSpec(vm));
      }
      throw error;
    }
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
      if (!matchesSelector(node.labels, spec.nodeSelector)) throw new NodeNotSchedulableError(node.nodeId, 'without the node_selector labels');
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
    // The record keeps the id of its last migration; only one in flight is the VM's business.
    migrationId: vm.state === VmState.VM_STATE_MIGRATING ? vm.migrationId : '',
  };
}
