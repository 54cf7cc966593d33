/**
 * Run-time overcommit: a ready node whose real memory use (after KSM, from its agent's reports)
 * crosses the high watermark has one VM at a time migrated off it, the one chosen by expected
 * migration cost (scheduler/migration-cost.ts), to a node that stays under its own watermark.
 */
import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { cluster } from '@vmm/proto';
import { LOGGER, type Logger } from '../common/logger.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import { NoCapacityError } from '../errors.js';
import { MEMORY_HIGH_WATERMARK, MigrationService } from '../migration/migration.service.js';
import { NodeRepository } from '../redis/node.repository.js';
import { VmRepository } from '../redis/vm.repository.js';
import { pickVmToEvacuate } from '../scheduler/migration-cost.js';
import { isNodeReady } from './node-state.js';

const MIB = 1024 * 1024;

@Injectable()
export class MemoryPressureBalancer implements OnApplicationBootstrap, OnModuleDestroy {
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
    @Inject(VmRepository) private readonly vms: VmRepository,
    @Inject(MigrationService) private readonly migrations: MigrationService,
  ) {}

  onApplicationBootstrap(): void {
    // A few reports per decision, so that a migration's effect shows before the next one.
    this.timer = setInterval(() => void this.sweep(), Math.max(2000, this.config.reportIntervalMs * 5));
    this.timer.unref();
  }

  onModuleDestroy(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One pass; returns the ids of the migrations started. */
  async sweep(nowMs = Date.now()): Promise<string[]> {
    if (this.running) return [];
    this.running = true;
    const started: string[] = [];
    try {
      for (const node of await this.nodes.list()) {
        if (!isNodeReady(node, nowMs, this.config.nodeStaleAfterMs) || node.draining) continue;
        const excessMib = node.memoryUsedBytes / MIB - node.memoryMib * MEMORY_HIGH_WATERMARK;
        if (excessMib <= 0) continue;
        const vms = await this.vms.getMany(await this.vms.idsOnNode(node.nodeId));
        if (vms.some((v) => v.state === cluster.VmState.VM_STATE_MIGRATING)) continue;
        const vm = pickVmToEvacuate(vms, excessMib);
        if (!vm) continue;
        try {
          const m = await this.migrations.migrate({ vmId: vm.vmId }, 'memory-pressure', { avoidMemoryPressure: true });
          started.push(m.migrationId);
          this.logger.info({ nodeId: node.nodeId, vmId: vm.vmId, migrationId: m.migrationId, excessMib: Math.round(excessMib) }, 'memory pressure: migrating a vm off');
        } catch (error) {
          const level = error instanceof NoCapacityError ? 'debug' : 'warn';
          this.logger[level]({ nodeId: node.nodeId, vmId: vm.vmId, err: error }, 'memory pressure: no migration started');
        }
      }
    } catch (error) {
      this.logger.error({ err: error }, 'memory pressure sweep failed');
    } finally {
      this.running = false;
    }
    return started;
  }
}
