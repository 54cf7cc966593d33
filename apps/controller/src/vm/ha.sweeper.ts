/**
 * Periodic sweep of HA restarts: restartable VMs (RESTART_POLICY_ALWAYS) on a node that has been silent
 * for twice its lease are booted again elsewhere, and restartable VMs left FAILED (a restart that
 * failed, a node that restarted without them) are tried again after a pause.
 */
import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { cluster } from '@vmm/proto';
import { LOGGER, type Logger } from '../common/logger.js';
import { PeriodicSweep } from '../common/periodic-sweep.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import { NodeRepository } from '../redis/node.repository.js';
import { VmRepository } from '../redis/vm.repository.js';
import { VmRestarter } from './vm-restarter.js';

const { VmState } = cluster;

@Injectable()
export class HaSweeper implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly sweeps: PeriodicSweep<string>;

  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) logger: Logger,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
    @Inject(VmRepository) private readonly vms: VmRepository,
    @Inject(VmRestarter) private readonly restarter: VmRestarter,
  ) {
    this.sweeps = new PeriodicSweep('ha restart', logger);
  }

  onApplicationBootstrap(): void {
    this.sweeps.start(this.config.reportIntervalMs, () => this.sweep());
  }

  onModuleDestroy(): void {
    this.sweeps.stop();
  }

  /** One pass; returns the VM ids it restarted. */
  async sweep(nowMs = Date.now()): Promise<string[]> {
    return this.sweeps.run(async (restarted) => {
      for (const node of await this.nodes.list()) {
        const silent = nowMs - node.lastReportMs > 2 * this.config.nodeLeaseMs;
        for (const vm of await this.vms.getMany(await this.vms.idsOnNode(node.nodeId))) {
          if (vm.restartPolicy !== cluster.RestartPolicy.RESTART_POLICY_ALWAYS) continue;
          const lostWithNode = silent && (vm.state === VmState.VM_STATE_RUNNING || vm.state === VmState.VM_STATE_PAUSED);
          const failed = vm.state === VmState.VM_STATE_FAILED;
          if (!lostWithNode && !failed) continue;
          const reason = lostWithNode ? `its node ${node.nodeId} is silent` : vm.failureReason || 'it failed';
          if (await this.restarter.restart(vm, reason, silent)) restarted.push(vm.vmId);
        }
      }
    });
  }
}
