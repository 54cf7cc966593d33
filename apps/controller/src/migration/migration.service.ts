/**
 * Migration requests. Phase 1: requests are checked exactly as they will be (unknown ids NOT_FOUND,
 * bad policy INVALID_ARGUMENT, unschedulable target or busy VM FAILED_PRECONDITION), then answered
 * UNIMPLEMENTED: orchestration lands with the "Pre-copy live migration" issue.
 */
import { Inject, Injectable } from '@nestjs/common';
import { cluster } from '@vmm/proto';
import { CONFIG, type ControllerConfig } from '../config.js';
import { InvalidArgumentError, NodeNotSchedulableError, NotImplementedError, VmBusyError } from '../errors.js';
import { isNodeReady } from '../node/node-state.js';
import { NodeService } from '../node/node.service.js';
import { VmService } from '../vm/vm.service.js';
import { validatePolicy } from './migration-validation.js';

@Injectable()
export class MigrationService {
  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(VmService) private readonly vms: VmService,
    @Inject(NodeService) private readonly nodes: NodeService,
  ) {}

  async migrate(req: Partial<cluster.MigrateVmRequest>): Promise<cluster.Migration> {
    const vm = await this.vms.require(req.vmId ?? '');
    validatePolicy(req.policy);
    if (req.targetNodeId) {
      if (req.targetNodeId === vm.nodeId) throw new InvalidArgumentError('target_node_id', 'is the node the vm runs on');
      const target = await this.nodes.require(req.targetNodeId);
      if (!isNodeReady(target, Date.now(), this.config.nodeStaleAfterMs)) throw new NodeNotSchedulableError(target.nodeId, 'not ready');
      if (target.cordoned) throw new NodeNotSchedulableError(target.nodeId, 'cordoned');
      if (target.draining) throw new NodeNotSchedulableError(target.nodeId, 'draining');
    }
    if (vm.state === cluster.VmState.VM_STATE_MIGRATING) throw new VmBusyError(vm.vmId, 'already migrating');
    if (vm.state !== cluster.VmState.VM_STATE_RUNNING) throw new VmBusyError(vm.vmId, `not running (${vm.state})`);
    throw new NotImplementedError('MigrateVm');
  }

  async drain(nodeId: string): Promise<cluster.DrainNodeResponse> {
    await this.nodes.require(nodeId);
    throw new NotImplementedError('DrainNode');
  }
}
