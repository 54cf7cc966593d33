/**
 * Run-time overcommit: a ready node whose real memory use (after KSM, from its agent's reports)
 * crosses the high watermark has VMs migrated off it, each chosen by expected migration cost
 * (scheduler/migration-cost.ts), to nodes that stay under the high watermark, until its use less the
 * VMs still leaving is at or below the low watermark (memory-pressure.policy.ts).
 *
 * No oscillation: hysteresis between the watermarks; outbound migrations in flight count toward the
 * goal; after a start or the end of one of its migrations a node cools down for a few report
 * intervals, so that the next decision sees reports taken after the move; targets are checked with
 * the memory already on its way to them.
 */
import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { isFinal } from '@vmm/migration/phase';
import { cluster } from '@vmm/proto';
import { LOGGER, type Logger } from '../common/logger.js';
import { PeriodicSweep } from '../common/periodic-sweep.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import { NoCapacityError } from '../errors.js';
import { MigrationService } from '../migration/migration.service.js';
import { MigrationRepository } from '../redis/migration.repository.js';
import { NodeRepository } from '../redis/node.repository.js';
import { VmRepository } from '../redis/vm.repository.js';
import { pickVmToEvacuate, PAGE_BYTES } from '../scheduler/migration-cost.js';
import { memoryPressure } from './memory-pressure.policy.js';
import { isNodeReady } from './node-state.js';

const MIB = 1024 * 1024;
/** Report intervals a node waits after a start or an end before the next decision about it. */
export const COOLDOWN_REPORT_INTERVALS = 3;

interface Started {
  sourceNodeId: string;
  targetNodeId: string;
  mib: number;
}

@Injectable()
export class MemoryPressureBalancer implements OnApplicationBootstrap, OnModuleDestroy {
  /** Per node; specs may shorten it. */
  cooldownMs: number;
  private readonly sweeps: PeriodicSweep<string>;
  private readonly relieving = new Set<string>();
  private readonly coolUntilMs = new Map<string, number>();
  /** Memory-pressure migrations started by this process and not yet seen final. */
  private readonly inFlight = new Map<string, Started>();

  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
    @Inject(VmRepository) private readonly vms: VmRepository,
    @Inject(MigrationRepository) private readonly migrationRecords: MigrationRepository,
    @Inject(MigrationService) private readonly migrations: MigrationService,
  ) {
    this.cooldownMs = config.reportIntervalMs * COOLDOWN_REPORT_INTERVALS;
    this.sweeps = new PeriodicSweep('memory pressure', logger);
  }

  onApplicationBootstrap(): void {
    // A few reports per decision, so that a migration's effect shows before the next one.
    this.sweeps.start(Math.max(2000, this.config.reportIntervalMs * 5), () => this.sweep());
  }

  onModuleDestroy(): void {
    this.sweeps.stop();
  }

  /** Whether the node is between "above high" and "at or below low" (for specs and logs). */
  isRelieving(nodeId: string): boolean {
    return this.relieving.has(nodeId);
  }

  /** One pass; returns the ids of the migrations started. */
  async sweep(nowMs = Date.now()): Promise<string[]> {
    return this.sweeps.run(async (started) => {
      const inboundMib = await this.refreshInFlight(nowMs);
      const watermarks = { highPercent: this.config.memoryHighWatermarkPercent, lowPercent: this.config.memoryLowWatermarkPercent };
      for (const node of await this.nodes.list()) {
        const wasRelieving = this.relieving.has(node.nodeId);
        if (!isNodeReady(node, nowMs, this.config.nodeStaleAfterMs) || node.draining) {
          this.relieving.delete(node.nodeId);
          continue;
        }
        // Cheap check first: below the low watermark nothing is to be done, whatever is leaving.
        if (!memoryPressure({ ...node, leavingMib: 0 }, wasRelieving, watermarks).relieving) {
          if (wasRelieving) this.logger.info({ nodeId: node.nodeId }, 'memory pressure relieved (at or below the low watermark)');
          this.relieving.delete(node.nodeId);
          continue;
        }
        const vms = await this.vms.getMany(await this.vms.idsOnNode(node.nodeId));
        const leavingMib = vms
          .filter((v) => v.state === cluster.VmState.VM_STATE_MIGRATING)
          .reduce((sum, v) => sum + (v.residentPages * PAGE_BYTES) / MIB, 0);
        const { goalMib, stepMib } = memoryPressure({ ...node, leavingMib }, wasRelieving, watermarks);
        if (!wasRelieving) this.logger.info({ nodeId: node.nodeId, usedMib: Math.round(node.memoryUsedBytes / MIB) }, 'memory pressure (above the high watermark)');
        this.relieving.add(node.nodeId);
        if (goalMib <= 0 || nowMs < (this.coolUntilMs.get(node.nodeId) ?? 0)) continue;
        const vm = pickVmToEvacuate(vms, stepMib);
        if (!vm) continue;
        try {
          const m = await this.migrations.migrate({ vmId: vm.vmId }, 'memory-pressure', { avoidMemoryPressure: true, inboundMib });
          const mib = (vm.residentPages * PAGE_BYTES) / MIB;
          this.inFlight.set(m.migrationId, { sourceNodeId: node.nodeId, targetNodeId: m.targetNodeId, mib });
          inboundMib.set(m.targetNodeId, (inboundMib.get(m.targetNodeId) ?? 0) + mib);
          this.coolUntilMs.set(node.nodeId, nowMs + this.cooldownMs);
          started.push(m.migrationId);
          this.logger.info(
            { nodeId: node.nodeId, vmId: vm.vmId, migrationId: m.migrationId, target: m.targetNodeId, goalMib: Math.round(goalMib), stepMib: Math.round(stepMib), leavingMib: Math.round(leavingMib) },
            'memory pressure: migrating a vm off',
          );
        } catch (error) {
          const level = error instanceof NoCapacityError ? 'debug' : 'warn';
          this.logger[level]({ nodeId: node.nodeId, vmId: vm.vmId, err: error }, 'memory pressure: no migration started');
        }
      }
    });
  }

  /**
   * Drops the migrations that ended (their source cools down from their end, as its reports may not
   * show the move yet) and returns the memory still on its way to each target.
   */
  private async refreshInFlight(nowMs: number): Promise<Map<string, number>> {
    const inboundMib = new Map<string, number>();
    for (const [id, s] of this.inFlight) {
      const m = await this.migrationRecords.get(id);
      if (!m || isFinal(m.phase)) {
        this.inFlight.delete(id);
        const endedAtMs = m?.finishedAtMs || nowMs;
        this.coolUntilMs.set(s.sourceNodeId, Math.max(this.coolUntilMs.get(s.sourceNodeId) ?? 0, endedAtMs + this.cooldownMs));
        continue;
      }
      inboundMib.set(s.targetNodeId, (inboundMib.get(s.targetNodeId) ?? 0) + s.mib);
    }
    return inboundMib;
  }
}
