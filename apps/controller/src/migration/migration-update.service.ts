/**
 * UpdateMigration (virsh migrate-setmaxdowntime / migrate-setspeed, Nova's force-complete): a new
 * downtime limit or bandwidth for a migration in PRECOPY, or its switch-over forced at the next round.
 *
 *   check the values (libs/migration policy ranges) → the record in PRECOPY → its policy updated in
 *   Redis (compare-and-set on the phase: GetMigration and a restarted controller see it, watchers get
 *   the change) → UpdateOutgoing to the source agent, which applies it from its next round.
 *
 * A source that has already left pre-copy refuses (the switch-over began between the read and the
 * call): the recorded policy is put back and the caller gets FAILED_PRECONDITION, as for any phase
 * other than PRECOPY.
 */
import { Inject, Injectable } from '@nestjs/common';
import { status } from '@grpc/grpc-js';
import { InvalidPolicyError } from '@vmm/migration/errors';
import { applyPolicyUpdate, checkPolicyUpdate, type CheckedPolicyUpdate } from '@vmm/migration/policy';
import type { cluster } from '@vmm/proto';
import { AgentGateway } from '../agent/agent.gateway.js';
import { LOGGER, type Logger } from '../common/logger.js';
import { AgentRejectedError, AgentUnavailableError, InvalidArgumentError, MigrationNotUpdatableError } from '../errors.js';
import { MigrationRepository } from '../redis/migration.repository.js';
import { NodeRepository } from '../redis/node.repository.js';
import { MigrationService } from './migration.service.js';

/**
 * UpdateMigrationRequest's values, checked against MigrateVm's ranges.
 * @throws InvalidArgumentError naming the request's field (`downtime_limit_ms`, `max_bandwidth_mib_per_sec`)
 */
export function checkUpdateRequest(req: Partial<cluster.UpdateMigrationRequest>): CheckedPolicyUpdate {
  try {
    return checkPolicyUpdate({
      // proto-loader gives int64 as a number or a string, and an unset `optional` as undefined or null.
      downtimeLimitMs: req.downtimeLimitMs === undefined || req.downtimeLimitMs === null ? undefined : Number(req.downtimeLimitMs),
      maxBandwidthMibPerSec: req.maxBandwidthMibPerSec,
      forceComplete: req.forceComplete ?? false,
    });
  } catch (error) {
    if (error instanceof InvalidPolicyError) throw new InvalidArgumentError(error.protoField, `${String(error.value)}: ${error.reason}`);
    throw error;
  }
}

@Injectable()
export class MigrationUpdater {
  constructor(
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(MigrationService) private readonly service: MigrationService,
    @Inject(MigrationRepository) private readonly migrations: MigrationRepository,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
    @Inject(AgentGateway) private readonly agents: AgentGateway,
  ) {}

  /**
   * @throws InvalidArgumentError for a bad value or migration_id
   * @throws MigrationNotFoundError for an unknown migration
   * @throws MigrationNotUpdatableError unless the migration is in PRECOPY (and its source still sending rounds)
   */
  async update(req: Partial<cluster.UpdateMigrationRequest>): Promise<cluster.Migration> {
    const update = checkUpdateRequest(req);
    const m = await this.service.require(req.migrationId ?? '');
    const id = m.migrationId;
    if (m.phase !== 'PRECOPY') throw new MigrationNotUpdatableError(id, m.phase);
    const policy = applyPolicyUpdate(m.policy, update);
    if (!(await this.migrations.update(id, 'PRECOPY', { policy: JSON.stringify(policy) }))) {
      throw new MigrationNotUpdatableError(id, (await this.service.require(id)).phase);
    }
    const source = await this.nodes.get(m.sourceNodeId);
    try {
      if (!source) throw new AgentUnavailableError(m.sourceNodeId, 'the source node is not registered');
      await this.agents.updateOutgoing(source, {
        migrationId: id,
        downtimeLimitMs: update.downtimeLimitMs,
        maxBandwidthMibPerSec: update.maxBandwidthMibPerSec,
        forceComplete: update.forceComplete,
      });
    } catch (error) {
      // Not applied: the record keeps the policy the source runs with (if the phase is still PRECOPY).
      await this.migrations.update(id, 'PRECOPY', { policy: JSON.stringify(m.policy) }).catch(() => false);
      if (error instanceof AgentRejectedError && (error.grpcCode === status.FAILED_PRECONDITION || error.grpcCode === status.NOT_FOUND)) {
        throw new MigrationNotUpdatableError(id, `${(await this.service.require(id)).phase}; the source is past pre-copy`);
      }
      throw error;
    }
    this.logger.info(
      { migrationId: id, vmId: m.vmId, downtimeLimitMs: policy.downtimeLimitMs, maxBandwidthMibPerSec: policy.maxBandwidthMibPerSec, forceComplete: update.forceComplete },
      'migration updated',
    );
    return this.service.get(id);
  }
}
