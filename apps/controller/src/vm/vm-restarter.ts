/**
 * HA restart (vSphere HA, KubeVirt's runStrategy Always): a VM with RESTART_POLICY_ALWAYS whose copy is
 * gone (its node lost it, or its node is lost) is booted again from its image under a new epoch, on
 * another node where one fits (its own node as the last choice when that node is alive).
 *
 * Never while another copy may run: a node that is silent is restarted from only once it has been
 * silent for twice its lease (its agent pauses such VMs after one lease); the move is a
 * compare-and-set on the VM's node, epoch and state, so two restarts never both happen, and any copy
 * that turns up later sits below the new epoch and is destroyed through its node's reports.
 */
import { Inject, Injectable } from '@nestjs/common';
import { cluster } from '@vmm/proto';
import { AgentGateway } from '../agent/agent.gateway.js';
import { LOGGER, type Logger } from '../common/logger.js';
import type { VmRecord } from '../common/model.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import { NodeRepository } from '../redis/node.repository.js';
import { PlacementRepository } from '../redis/placement.repository.js';
import { VmRepository } from '../redis/vm.repository.js';
import { rankNodes } from '../scheduler/scheduler.js';
import { toVmSpec } from './vm.service.js';

const { VmState } = cluster;
/** States a restartable VM is restarted from (a FAILED one too: a restart that failed is tried again). */
const RESTARTABLE_FROM: readonly string[] = [VmState.VM_STATE_RUNNING, VmState.VM_STATE_PAUSED, VmState.VM_STATE_FAILED];

@Injectable()
export class VmRestarter {
  private readonly inFlight = new Set<string>();

  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
    @Inject(VmRepository) private readonly vms: VmRepository,
    @Inject(PlacementRepository) private readonly placement: PlacementRepository,
    @Inject(AgentGateway) private readonly agents: AgentGateway,
  ) {}

  /**
   * Boots `vm` again elsewhere. `nodeSilent`: its node stopped reporting (the move then requires the
   * node to be silent for twice the lease); otherwise the node is alive and no longer runs it.
   * Returns the node it now runs on, or undefined (nothing fits now, or the VM changed meanwhile).
   */
  async restart(vm: VmRecord, reason: string, nodeSilent = false): Promise<string | undefined> {
    if (this.inFlight.has(vm.vmId)) return undefined;
    this.inFlight.add(vm.vmId);
    try {
      const now = Date.now();
      const all = await this.nodes.list();
      const others = all.filter((n) => n.nodeId !== vm.nodeId);
      const ranked = rankNodes(others, vm, { nowMs: now, staleAfterMs: this.config.nodeStaleAfterMs, antiAffinityNodeIds: await this.vms.antiAffinityNodeIds(vm.antiAffinityGroup) }).candidates;
      const own = all.find((n) => n.nodeId === vm.nodeId);
      if (!nodeSilent && own) ranked.push(own);
      const silentBeforeMs = nodeSilent ? now - 2 * this.config.nodeLeaseMs : 0;
      for (const node of ranked) {
        const moved = await this.placement.moveForRestart(vm, node.nodeId, { from: RESTARTABLE_FROM, nowMs: Date.now(), staleAfterMs: this.config.nodeStaleAfterMs, silentBeforeMs });
        if (moved.outcome === 'CHANGED' || moved.outcome === 'NOT_SILENT') return undefined;
        if (moved.outcome !== 'OK') continue;
        const booted: VmRecord = { ...vm, nodeId: node.nodeId, fencingEpoch: moved.fencingEpoch, state: VmState.VM_STATE_PENDING, migrationId: '' };
        this.logger.warn({ vmId: vm.vmId, from: vm.nodeId, to: node.nodeId, fencingEpoch: moved.fencingEpoch, reason }, 'restarting vm (restart policy ALWAYS)');
        try {
          await this.agents.createVm(node, toVmSpec(booted));
          await this.vms.setState(vm.vmId, VmState.VM_STATE_RUNNING, [VmState.VM_STATE_PENDING]);
          return node.nodeId;
        } catch (error) {
          // PENDING → FAILED: the next sweep tries again (a FAILED restartable VM is restarted too).
          await this.vms.fail(booted, `restart on ${node.nodeId} failed: ${error instanceof Error ? error.message : String(error)}`, [VmState.VM_STATE_PENDING]);
          return undefined;
        }
      }
      this.logger.warn({ vmId: vm.vmId, reason }, 'no node to restart the vm on now; will retry');
      return undefined;
    } finally {
      this.inFlight.delete(vm.vmId);
    }
  }
}
