/**
 * Periodic sweep that records readiness transitions (READY → NOT_READY when reports stop for
 * 3 intervals, and back), so they are logged and visible in Redis. The state served to clients is
 * computed from last_report_ms on every read and does not depend on this sweep having run.
 */
import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { LOGGER, type Logger } from '../common/logger.js';
import { PeriodicSweep } from '../common/periodic-sweep.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import { NodeRepository } from '../redis/node.repository.js';
import { isNodeReadySince } from './node-state.js';

@Injectable()
export class NodeReadinessSweeper implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly sweeps: PeriodicSweep<string>;

  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
  ) {
    this.sweeps = new PeriodicSweep('node readiness', logger);
  }

  onApplicationBootstrap(): void {
    this.sweeps.start(this.config.reportIntervalMs, () => this.sweep());
  }

  onModuleDestroy(): void {
    this.sweeps.stop();
  }

  /** One pass; returns the node ids whose readiness changed. */
  async sweep(nowMs = Date.now()): Promise<string[]> {
    return this.sweeps.run(async (changed) => {
      for (const node of await this.nodes.list()) {
        const ready = isNodeReadySince(node, nowMs, this.config.nodeStaleAfterMs, this.config.startedAtMs);
        if (ready === node.readyRecorded) continue;
        if (!(await this.nodes.recordReadiness(node.nodeId, ready, node.lastReportMs))) continue;
        changed.push(node.nodeId);
        const fields = { nodeId: node.nodeId, lastReportMs: node.lastReportMs, silentForMs: nowMs - node.lastReportMs };
        if (ready) this.logger.info(fields, 'node ready');
        else this.logger.warn(fields, 'node not ready: reports stopped');
      }
    });
  }
}
