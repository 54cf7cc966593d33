/**
 * Orphaned source copies: after a commit the source is told to destroy its copy (ReleaseOutgoing);
 * if that call never reached it (the source was unreachable), the source keeps a paused copy and
 * reports it as MIGRATING. When a node reports (or registers with) a VM that is placed on another
 * node under a higher fencing epoch, its agent is sent ReleaseOutgoing again with the VM's current
 * epoch: the agent destroys a copy below that epoch even without a known migration id
 * (apps/node-agent/README.md), and refuses anything that is not stale (VM_FENCED).
 *
 * Idempotent on the agent; here fire-and-forget (never delays a report), logged, and at most one
 * attempt per node and VM every RELEASE_RETRY_MS (a copy that is gone is no longer reported).
 */
import { Inject, Injectable } from '@nestjs/common';
import { cluster } from '@vmm/proto';
import { AgentGateway } from '../agent/agent.gateway.js';
import { LOGGER, type Logger } from '../common/logger.js';
import { MigrationRepository } from '../redis/migration.repository.js';
import { NodeRepository, type StaleCopy } from '../redis/node.repository.js';

export const RELEASE_RETRY_MS = 10_000;

@Injectable()
export class StaleCopyReaper {
  /** "nodeId/vmId" → when the last attempt started (kept while in flight or after a failure). */
  private readonly attempts = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
    @Inject(MigrationRepository) private readonly migrations: MigrationRepository,
    @Inject(AgentGateway) private readonly agents: AgentGateway,
  ) {}

  /**
   * Asks `nodeId`'s agent to destroy its stale copies. Skipped: a VM whose migration is still being
   * finished (MIGRATING: the orchestrator sends ReleaseOutgoing itself), and a VM that is FAILED
   * where it is placed (a target that never resumed it: the fenced source copy may be the only
   * intact one, kept for an operator). Returns at once.
   */
  release(nodeId: string, copies: readonly StaleCopy[], nowMs = Date.now()): void {
    this.prune(nowMs);
    for (const copy of copies) {
      if (copy.currentState === cluster.VmState.VM_STATE_MIGRATING || copy.currentState === cluster.VmState.VM_STATE_FAILED) continue;
      const key = `${nodeId}/${copy.vmId}`;
      const last = this.attempts.get(key);
      if (last !== undefined && nowMs - last < RELEASE_RETRY_MS) continue;
      this.attempts.set(key, nowMs);
      const p = this.releaseOne(nodeId, copy).then(
        () => void this.attempts.delete(key),
        (error: unknown) => this.logger.warn({ nodeId, vmId: copy.vmId, fencingEpoch: copy.currentEpoch, err: error }, 'could not release a stale vm copy; will retry'),
      );
      this.inFlight.add(p);
      void p.finally(() => this.inFlight.delete(p));
    }
  }

  /** Resolves when the releases started so far have ended (specs, shutdown). */
  async settled(): Promise<void> {
    await Promise.all([...this.inFlight]);
  }

  private async releaseOne(nodeId: string, copy: StaleCopy): Promise<void> {
    const node = await this.nodes.get(nodeId);
    if (!node) return;
    // The migration that moved the VM off this node, so that the agent also retires its side of it.
    const moved = (await this.migrations.listForVm(copy.vmId)).filter((m) => m.committed && m.sourceNodeId === nodeId).at(-1);
    const migrationId = moved?.migrationId ?? '';
    await this.agents.releaseOutgoing(node, { migrationId, vmId: copy.vmId, fencingEpoch: copy.currentEpoch });
    this.logger.info({ nodeId, vmId: copy.vmId, migrationId, fencingEpoch: copy.currentEpoch }, 'released a stale vm copy (its source never got ReleaseOutgoing)');
  }

  private prune(nowMs: number): void {
    if (this.attempts.size < 1000) return;
    for (const [key, at] of this.attempts) if (nowMs - at >= RELEASE_RETRY_MS) this.attempts.delete(key);
  }
}
