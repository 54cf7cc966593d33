/**
 * The node registry: agents register (and re-register after any restart) and stream reports.
 * Registration reconciles the controller's VM records with what the agent really runs.
 */
import { Inject, Injectable } from '@nestjs/common';
import { cluster, type agent } from '@vmm/proto';
import { AgentGateway } from '../agent/agent.gateway.js';
import { LOGGER, type Logger } from '../common/logger.js';
import type { VmRecord } from '../common/model.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import { InvalidArgumentError, NodeNotFoundError } from '../errors.js';
import { NodeRepository, type NodeRegistration } from '../redis/node.repository.js';
import { PlacementRepository } from '../redis/placement.repository.js';
import { VmRepository } from '../redis/vm.repository.js';
import { canVmTransition, isControllerOwned, REPORTED_STATES } from '../vm/vm-state.js';
import { STALE_PENDING_MS } from '../vm/vm.service.js';
import { StaleCopyReaper } from './stale-copy.reaper.js';

const { VmState } = cluster;
const REPORTABLE = REPORTED_STATES;

@Injectable()
export class RegistryService {
  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
    @Inject(VmRepository) private readonly vms: VmRepository,
    @Inject(PlacementRepository) private readonly placement: PlacementRepository,
    @Inject(AgentGateway) private readonly agents: AgentGateway,
    @Inject(StaleCopyReaper) private readonly staleCopies: StaleCopyReaper,
  ) {}

  async register(req: Partial<agent.RegisterRequest>): Promise<agent.RegisterResponse> {
    const reg = validateRegistration(req);
    const previous = await this.nodes.get(reg.nodeId);
    const existed = previous !== undefined;
    await this.nodes.upsertRegistration(reg, Date.now());
    // A registration means a (re)started agent: its old channel may be backing off after failures.
    this.agents.agentRegistered(reg.address, previous?.address);
    const summary = await this.reconcile(reg.nodeId, req.vms ?? []);
    this.logger.info({ ...reg, reregistered: existed, ...summary }, 'node registered');
    return { nodeId: reg.nodeId, reportIntervalMs: this.config.reportIntervalMs };
  }

  /** Applies one report. Throws NodeNotFoundError when the node is not registered, so the agent re-registers. */
  async report(report: agent.NodeReport | undefined | null): Promise<void> {
    if (!report?.nodeId) throw new InvalidArgumentError('report.node_id', 'must not be empty');
    const result = await this.nodes.applyReport(report.nodeId, Date.now(), {
      memoryUsedBytes: Number(report.memoryUsedBytes ?? 0),
      rssBytes: Number(report.rssBytes ?? 0),
      ksm: report.ksm ?? undefined,
      ksmKnobs: report.ksmKnobs ?? undefined,
      vms: (report.vms ?? []).map((vm) => ({
        vmId: vm.vmId,
        state: vm.state,
        dirtyRatePagesPerSec: Number(vm.dirtyRatePagesPerSec ?? 0),
        workingSetPages: Number(vm.workingSetPages ?? 0),
        residentPages: Number(vm.residentPages ?? 0),
        fencingEpoch: Number(vm.fencingEpoch ?? 0),
      })),
    });
    if (!result.known) throw new NodeNotFoundError(report.nodeId);
    if (result.staleCopies.length > 0) this.staleCopies.release(report.nodeId, result.staleCopies);
    if (result.wasNotReady) this.logger.info({ nodeId: report.nodeId }, 'node ready again');
  }

  /**
   * Brings the records of one node in line with the VMs its agent runs:
   * - a known VM the agent runs: its state is taken from the agent (a stale PENDING becomes RUNNING);
   * - a known VM the agent does not run: FAILED (the agent restarted and lost it), unless it is still
   *   being created or is migrating;
   * - a VM the controller does not know (its record was lost): adopted as it is, never destroyed.
   */
  private async reconcile(nodeId: string, reported: readonly agent.VmStatus[]) {
    const now = Date.now();
    const byId = new Map(reported.filter((s) => s.vmId).map((s) => [s.vmId, s]));
    const known = await this.vms.getMany(await this.vms.idsOnNode(nodeId));
    let failed = 0;
    let adopted = 0;
    for (const vm of known) {
      const status = byId.get(vm.vmId);
      byId.delete(vm.vmId);
      const stalePending = vm.state === VmState.VM_STATE_PENDING && now - vm.createdAtMs > STALE_PENDING_MS;
      if (status) {
        if (isControllerOwned(vm.state) && !stalePending) continue;
        const state = REPORTABLE.has(status.state) ? status.state : VmState.VM_STATE_RUNNING;
        if (canVmTransition(vm.state, state)) await this.vms.setState(vm.vmId, state, [vm.state]);
      } else if (!isControllerOwned(vm.state) || stalePending) {
        if (await this.vms.setState(vm.vmId, VmState.VM_STATE_FAILED, [vm.state])) failed++;
        this.logger.warn({ vmId: vm.vmId, nodeId }, 'vm lost by its agent; marked FAILED');
      }
    }
    for (const status of byId.values()) {
      if (await this.adopt(nodeId, status, now)) adopted++;
    }
    return { vmsReported: reported.length, vmsFailed: failed, vmsAdopted: adopted };
  }

  private async adopt(nodeId: string, status: agent.VmStatus, now: number): Promise<boolean> {
    const existing = await this.vms.get(status.vmId);
    if (existing) {
      // Placed elsewhere: a stale copy (e.g. the source of a committed migration that never got
      // ReleaseOutgoing). Below the VM's epoch it is released; otherwise fencing keeps it harmless.
      this.logger.warn({ vmId: status.vmId, nodeId, placedOn: existing.nodeId }, 'agent runs a vm placed on another node');
      const epoch = Number(status.fencingEpoch ?? 0);
      if (existing.nodeId !== nodeId && epoch < existing.fencingEpoch) {
        this.staleCopies.release(nodeId, [{ vmId: existing.vmId, currentEpoch: existing.fencingEpoch, currentState: existing.state }]);
      }
      return false;
    }
    const spec = status.spec;
    if (!spec) {
      this.logger.warn({ vmId: status.vmId, nodeId }, 'agent runs an unknown vm without a spec; not adopted');
      return false;
    }
    const vm: VmRecord = {
      vmId: status.vmId,
      name: spec.name || status.vmId,
      nodeId,
      state: REPORTABLE.has(status.state) ? status.state : VmState.VM_STATE_RUNNING,
      vcpus: spec.vcpus,
      memoryMib: spec.memoryMib,
      image: spec.image,
      workload: spec.workload ?? {
        kind: cluster.WorkloadKind.WORKLOAD_KIND_IDLE,
        dirtyRatePagesPerSec: 0,
        workingSetMib: 0,
        seed: 0,
      },
      labels: spec.labels ?? {},
      antiAffinityGroup: '',
      createdAtMs: now,
      fencingEpoch: Number(status.fencingEpoch || spec.fencingEpoch || 1),
      dirtyRatePagesPerSec: 0,
      workingSetPages: 0,
      residentPages: Number(status.residentPages ?? 0),
    };
    const outcome = await this.placement.reserve(vm, now, this.config.nodeStaleAfterMs, true);
    if (outcome !== 'OK') {
      this.logger.warn({ vmId: vm.vmId, nodeId, outcome }, 'could not adopt a vm the agent runs');
      return false;
    }
    this.logger.info({ vmId: vm.vmId, nodeId }, 'adopted a vm the agent runs');
    return true;
  }
}

function validateRegistration(req: Partial<agent.RegisterRequest>): NodeRegistration {
  const nodeId = (req.nodeId ?? '').trim();
  if (!nodeId) throw new InvalidArgumentError('node_id', 'must not be empty');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(nodeId)) throw new InvalidArgumentError('node_id', 'use letters, digits, ".", "_", "-"');
  const address = (req.address ?? '').trim();
  if (!/^[^\s]+:\d+$/.test(address)) throw new InvalidArgumentError('address', 'expected host:port');
  const vcpus = Number(req.vcpus ?? 0);
  if (!Number.isInteger(vcpus) || vcpus <= 0) throw new InvalidArgumentError('vcpus', 'must be greater than 0');
  const memoryMib = Number(req.memoryMib ?? 0);
  if (!Number.isInteger(memoryMib) || memoryMib <= 0) throw new InvalidArgumentError('memory_mib', 'must be greater than 0');
  const ratio = (field: string, value: number | undefined): number => {
    const r = Number(value ?? 0);
    if (r === 0) return 1;
    if (!Number.isFinite(r) || r < 0 || r > 100) throw new InvalidArgumentError(field, 'must be in (0, 100]');
    return r;
  };
  return {
    nodeId,
    address,
    vcpus,
    memoryMib,
    cpuAllocationRatio: ratio('cpu_allocation_ratio', req.cpuAllocationRatio),
    ramAllocationRatio: ratio('ram_allocation_ratio', req.ramAllocationRatio),
    agentVersion: req.agentVersion ?? '',
  };
}
