/**
 * Finishes drains, as Nova's host evacuation and KubeVirt's node drain do: a drain migration that
 * fails (NOT_CONVERGED, the target failing, …) is retried while the node is DRAINING, up to
 * DRAIN_MAX_ATTEMPTS per VM and drain, each retry preferring a target the VM's failed attempts did not
 * use; a VM that starts running on the node during the drain is moved too. Stateless between
 * sweeps: the attempts are the VM's `drain` migrations created since the drain began (Redis), so a
 * restarted controller carries on where the last one stopped.
 *
 * When nothing runs on the node any more it stays DRAINING and cordoned (nothing is placed on it)
 * until UncordonNode. A VM whose attempts are used up, or whose drain migration was cancelled, stays
 * where it is, running; a new DrainNode call starts a fresh count.
 */
import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { isFinal } from '@vmm/migration/phase';
import { cluster } from '@vmm/proto';
import { LOGGER, type Logger } from '../common/logger.js';
import { PeriodicSweep } from '../common/periodic-sweep.js';
import type { NodeRecord, VmRecord } from '../common/model.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import { NoCapacityError } from '../errors.js';
import { MigrationRepository } from '../redis/migration.repository.js';
import { NodeRepository } from '../redis/node.repository.js';
import { VmRepository } from '../redis/vm.repository.js';
import { DRAIN_POLICY, DRAIN_REASON, isDrainAttempt } from './drain-policy.js';
import { MigrationService } from './migration.service.js';

/** Migrations per VM and drain (the first one included). */
export const DRAIN_MAX_ATTEMPTS = 3;

@Injectable()
export class DrainCoordinator implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly sweeps: PeriodicSweep<string>;
  /** "vmId@drainStartedAtMs" of VMs given up on, so that it is logged once. */
  private readonly givenUp = new Set<string>();

  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
    @Inject(VmRepository) private readonly vms: VmRepository,
    @Inject(MigrationRepository) private readonly migrationRecords: MigrationRepository,
    @Inject(MigrationService) private readonly migrations: MigrationService,
  ) {
    this.sweeps = new PeriodicSweep('drain', logger);
  }

  onApplicationBootstrap(): void {
    // Also the pause between a failed attempt and the next one.
    this.sweeps.start(Math.max(1000, this.config.reportIntervalMs), () => this.sweep());
  }

  onModuleDestroy(): void {
    this.sweeps.stop();
  }

  /** One pass over the draining nodes; returns the ids of the migrations started. */
  async sweep(): Promise<string[]> {
    return this.sweeps.run(async (started) => {
      for (const node of await this.nodes.list()) {
        if (node.draining) started.push(...(await this.continueDrain(node)));
      }
    });
  }

  private async continueDrain(node: NodeRecord): Promise<string[]> {
    const started: string[] = [];
    for (const vm of await this.vms.getMany(await this.vms.idsOnNode(node.nodeId))) {
      if (vm.state !== cluster.VmState.VM_STATE_RUNNING) continue;
      const id = await this.retry(node, vm);
      if (id) started.push(id);
    }
    return started;
  }

  private async retry(node: NodeRecord, vm: VmRecord): Promise<string | undefined> {
    const attempts = (await this.migrationRecords.listForVm(vm.vmId)).filter((m) => isDrainAttempt(m, node.nodeId, node.drainStartedAtMs));
    // In flight; or cancelled by an operator, who wants it left where it is.
    if (attempts.some((m) => !isFinal(m.phase) || m.phase === 'CANCELLED')) return undefined;
    const log = { nodeId: node.nodeId, vmId: vm.vmId, attempts: attempts.length };
    if (attempts.length >= DRAIN_MAX_ATTEMPTS) {
      const key = `${vm.vmId}@${node.drainStartedAtMs}`;
      if (!this.givenUp.has(key)) {
        this.givenUp.add(key);
        this.logger.warn({ ...log, lastError: attempts.at(-1)?.error }, 'drain: attempts used up; the vm stays on the draining node');
      }
      return undefined;
    }
    const avoidTargets = new Set(attempts.filter((m) => m.phase === 'FAILED').map((m) => m.targetNodeId));
    try {
      const m = await this.migrations.migrate({ vmId: vm.vmId, policy: DRAIN_POLICY }, DRAIN_REASON, { avoidTargets });
      this.logger.info({ ...log, migrationId: m.migrationId, target: m.targetNodeId, lastError: attempts.at(-1)?.error }, 'drain: migrating a vm (again)');
      return m.migrationId;
    } catch (error) {
      // No room anywhere right now is not an attempt: the next sweep tries again.
      this.logger[error instanceof NoCapacityError ? 'debug' : 'warn']({ ...log, err: error }, 'drain: no migration started');
      return undefined;
    }
  }
}
