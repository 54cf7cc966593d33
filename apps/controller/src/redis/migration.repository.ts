/**
 * Migration records in Redis: creation with the target's room reserved, compare-and-set phase
 * changes, the switch-over commit and its revert, rollback, completion, in-flight slots, and the
 * open set the reconciler walks. Every phase list a script checks against comes from the phase model.
 */
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import {
  isCancellable,
  isCommitted,
  isFinal,
  MIGRATION_PHASES,
  pathTo,
  phasesLeadingTo,
  toProtoPhase,
  type MigrationPhase,
} from '@vmm/migration/phase';
import type { MigrationRecord } from '../migration/migration-record.js';
import { RecordScript } from './lua-script.js';
import {
  ACQUIRE_SLOT_LUA,
  ADVANCE_MIGRATION_LUA,
  COMMIT_MIGRATION_LUA,
  CREATE_MIGRATION_LUA,
  FINISH_MIGRATION_LUA,
  MARK_TARGET_RESUMED_LUA,
  REVERT_COMMIT_LUA,
  ROLLBACK_MIGRATION_LUA,
} from './lua/migration.lua.js';
import { hashToMigration } from './migration-codec.js';
import type { RedisKeys } from './redis-keys.js';
import { REDIS, REDIS_KEYS } from './redis.provider.js';
import type { AdmissionRefusal } from './lua/shared.lua.js';

export type CreateMigrationOutcome =
  | 'OK'
  | 'NO_VM'
  | 'VM_MIGRATING'
  | 'VM_NOT_RUNNING'
  | 'SAME_NODE'
  | 'NO_NODE'
  | AdmissionRefusal;

export type SlotOutcome = 'OK' | 'CLUSTER' | 'OUTBOUND' | 'INBOUND';

export interface SlotLimits {
  cluster: number;
  outboundPerNode: number;
  inboundPerNode: number;
}

/** Field values go to the scripts as strings, so that Lua never reformats a number. */
export type Fields = Record<string, string | number>;

const createMigration = new RecordScript('create-migration', CREATE_MIGRATION_LUA);
const advanceMigration = new RecordScript('advance-migration', ADVANCE_MIGRATION_LUA);
const commitMigration = new RecordScript('commit-migration', COMMIT_MIGRATION_LUA);
const markTargetResumed = new RecordScript('mark-target-resumed', MARK_TARGET_RESUMED_LUA);
const finishMigration = new RecordScript('finish-migration', FINISH_MIGRATION_LUA);
const rollbackMigration = new RecordScript('rollback-migration', ROLLBACK_MIGRATION_LUA);
const revertCommit = new RecordScript('revert-commit', REVERT_COMMIT_LUA);
const acquireSlot = new RecordScript('acquire-slot', ACQUIRE_SLOT_LUA);

const proto = (phases: readonly MigrationPhase[]) => phases.map(toProtoPhase);
const strings = (fields: Fields) => Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, String(v)]));

/** From each phase, the phases the commit enters to reach COMMITTING (the scripts' `paths`). */
const COMMIT_PATHS = Object.fromEntries(
  MIGRATION_PHASES.filter((p) => !isFinal(p) && !isCommitted(p) && p !== 'PENDING' && p !== 'PREPARING')
    .map((p) => [toProtoPhase(p), proto(pathTo(p, 'COMMITTING'))] as const)
    .filter(([, path]) => path.length > 0),
);
const COMMITTED = proto(MIGRATION_PHASES.filter(isCommitted));
const ROLLBACK_FROM = proto(MIGRATION_PHASES.filter(isCancellable));

/** What a rollback, revert or failure records about why. */
export interface Outcome {
  error: string;
  errorReason: string;
}

@Injectable()
export class MigrationRepository {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(REDIS_KEYS) private readonly keys: RedisKeys,
  ) {}

  /** Creates a PENDING migration, reserving the target's room and marking the VM MIGRATING, atomically. */
  async create(
    m: Pick<MigrationRecord, 'migrationId' | 'vmId' | 'targetNodeId' | 'policy' | 'reason' | 'createdAtMs' | 'token'>,
    nowMs: number,
    staleAfterMs: number,
  ): Promise<CreateMigrationOutcome> {
    const k = this.keys;
    // A VM's group never changes: read here, the script's group key cannot disagree with its record.
    const group = (await this.redis.hget(k.vm(m.vmId), 'antiAffinityGroup')) ?? '';
    const fields: Fields = {
      migrationId: m.migrationId,
      vmId: m.vmId,
      targetNodeId: m.targetNodeId,
      policy: JSON.stringify(m.policy),
      reason: m.reason,
      createdAtMs: m.createdAtMs,
      finishedAtMs: 0,
      token: m.token,
    };
    const keys = [
      k.vm(m.vmId),
      k.migration(m.migrationId),
      k.migrations(),
      k.vmMigrations(m.vmId),
      k.node(m.targetNodeId),
      this.groupKey(group),
      k.migrationsOpen(),
      k.migrationEvents(m.migrationId),
    ];
    const args = { migrationId: m.migrationId, targetNodeId: m.targetNodeId, nowMs, staleAfterMs, phase: toProtoPhase('PENDING'), fields: strings(fields) };
    return (await createMigration.runJson(this.redis, this.keys, keys, args)) as CreateMigrationOutcome;
  }

  async get(migrationId: string): Promise<MigrationRecord | undefined> {
    return hashToMigration(await this.redis.hgetall(this.keys.migration(migrationId)));
  }

  async getMany(ids: readonly string[]): Promise<MigrationRecord[]> {
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.keys.migration(id));
    const out: MigrationRecord[] = [];
    for (const [error, hash] of (await pipeline.exec()) ?? []) {
      if (error) throw error;
      const m = hashToMigration(hash as Record<string, string>);
      if (m) out.push(m);
    }
    return out;
  }

  /** Ids of every migration that is not final: the reconciler's work list. */
  async openIds(): Promise<string[]> {
    return this.redis.smembers(this.keys.migrationsOpen());
  }

  async listPage(after: string, limit: number, vmId: string): Promise<{ migrations: MigrationRecord[]; more: boolean }> {
    const index = vmId ? this.keys.vmMigrations(vmId) : this.keys.migrations();
    const ids = await this.redis.zrangebylex(index, after ? `(${after}` : '-', '+', 'LIMIT', 0, limit + 1);
    const more = ids.length > limit;
    const page = more ? ids.slice(0, limit) : ids;
    return { migrations: await this.getMany(page), more };
  }

  /** Every migration of one VM, oldest first. */
  async listForVm(vmId: string): Promise<MigrationRecord[]> {
    const all: MigrationRecord[] = [];
    let after = '';
    for (;;) {
      const page = await this.listPage(after, 500, vmId);
      all.push(...page.migrations);
      const last = page.migrations.at(-1);
      if (!page.more || !last) return all;
      after = last.migrationId;
    }
  }

  /**
   * Moves to `to` if allowed from the current phase by the phase model (or stays in `to` when
   * `allowSame`), writing `fields` with it. False if the phase moved elsewhere meanwhile.
   */
  async advance(migrationId: string, to: MigrationPhase, fields: Fields = {}, allowSame = false): Promise<boolean> {
    const keys = [this.keys.migration(migrationId), this.keys.migrationEvents(migrationId), this.keys.migrationsOpen()];
    const args = { to: toProtoPhase(to), from: proto(phasesLeadingTo(to, allowSame)), fields: strings(fields), final: isFinal(to), nowMs: Date.now() };
    return (await advanceMigration.runJson(this.redis, this.keys, keys, args)) === 1;
  }

  /** Writes fields without a phase change (progress within a phase); false unless the phase is `phase`. */
  async update(migrationId: string, phase: MigrationPhase, fields: Fields): Promise<boolean> {
    const keys = [this.keys.migration(migrationId), this.keys.migrationEvents(migrationId), this.keys.migrationsOpen()];
    const args = { to: toProtoPhase(phase), from: [toProtoPhase(phase)], fields: strings(fields), final: false, nowMs: Date.now() };
    return (await advanceMigration.runJson(this.redis, this.keys, keys, args)) === 1;
  }

  /**
   * The switch-over commit (see COMMIT_MIGRATION_LUA): the epoch the VM holds on the target, also
   * when it was committed already (a retry), or 0 if not committable. On the downtime's critical path.
   */
  async commit(m: MigrationRecord, fields: Fields): Promise<number> {
    const keys = [this.keys.migration(m.migrationId), this.keys.vm(m.vmId), this.keys.migrationEvents(m.migrationId), ...this.moveKeys(m)];
    const args = { paths: COMMIT_PATHS, committed: COMMITTED, fields: strings(fields), nowMs: Date.now() };
    return Number(await commitMigration.runJson(this.redis, this.keys, keys, args));
  }

  /** The target runs the VM at the committed epoch: the commit can no longer be reverted. False if it was reverted. */
  async markTargetResumed(m: Pick<MigrationRecord, 'migrationId' | 'fencingEpoch'>, resumedAtMs: number): Promise<boolean> {
    const keys = [this.keys.migration(m.migrationId), this.keys.migrationEvents(m.migrationId)];
    const args = { committing: toProtoPhase('COMMITTING'), fencingEpoch: m.fencingEpoch, resumedAtMs: String(resumedAtMs || Date.now()) };
    return (await markTargetResumed.runJson(this.redis, this.keys, keys, args)) === 1;
  }

  /** COMMITTING → COMPLETED once the target resumed; false if it was already completed (or reverted). */
  async complete(m: Pick<MigrationRecord, 'migrationId' | 'vmId'>, fields: Fields): Promise<boolean> {
    const k = this.keys;
    const keys = [k.migration(m.migrationId), k.vm(m.vmId), k.migrationEvents(m.migrationId), k.migrationsOpen()];
    const args = { from: proto(phasesLeadingTo('COMPLETED')), to: toProtoPhase('COMPLETED'), fields: strings(fields), nowMs: Date.now() };
    return (await finishMigration.runJson(this.redis, this.keys, keys, args)) === 1;
  }

  /** Ends a migration that did not commit (see ROLLBACK_MIGRATION_LUA); false when it is final or committed already. */
  async rollback(m: Pick<MigrationRecord, 'migrationId' | 'vmId' | 'targetNodeId' | 'antiAffinityGroup'>, phase: 'FAILED' | 'CANCELLED', outcome: Outcome): Promise<boolean> {
    const k = this.keys;
    const keys = [k.migration(m.migrationId), k.vm(m.vmId), k.migrationEvents(m.migrationId), k.node(m.targetNodeId), this.groupKey(m.antiAffinityGroup), k.migrationsOpen()];
    const args = { phase: toProtoPhase(phase), from: ROLLBACK_FROM, error: outcome.error, errorReason: outcome.errorReason, nowMs: Date.now() };
    return (await rollbackMigration.runJson(this.redis, this.keys, keys, args)) === 1;
  }

  /**
   * Gives a committed VM back to its source under a newer epoch (see REVERT_COMMIT_LUA); the new
   * epoch, or 0 when refused (the target resumed, or, with `silentBeforeMs`, reported since).
   */
  async revert(m: MigrationRecord, outcome: Outcome, silentBeforeMs = 0): Promise<number> {
    const keys = [this.keys.migration(m.migrationId), this.keys.vm(m.vmId), this.keys.migrationEvents(m.migrationId), ...this.moveKeys(m), this.keys.migrationsOpen()];
    const args = { committing: toProtoPhase('COMMITTING'), phase: toProtoPhase('FAILED'), error: outcome.error, errorReason: outcome.errorReason, nowMs: Date.now(), silentBeforeMs };
    return Number(await revertCommit.runJson(this.redis, this.keys, keys, args));
  }

  async acquireSlot(m: Pick<MigrationRecord, 'migrationId' | 'sourceNodeId' | 'targetNodeId'>, limits: SlotLimits): Promise<SlotOutcome> {
    const k = this.keys;
    const keys = [k.migrationsActive(), k.migrationsOut(m.sourceNodeId), k.migrationsIn(m.targetNodeId)];
    const args = { migrationId: m.migrationId, cluster: limits.cluster, outbound: limits.outboundPerNode, inbound: limits.inboundPerNode };
    return (await acquireSlot.runJson(this.redis, this.keys, keys, args)) as SlotOutcome;
  }

  async releaseSlot(m: Pick<MigrationRecord, 'migrationId' | 'sourceNodeId' | 'targetNodeId'>): Promise<void> {
    const k = this.keys;
    await this.redis
      .multi()
      .srem(k.migrationsActive(), m.migrationId)
      .srem(k.migrationsOut(m.sourceNodeId), m.migrationId)
      .srem(k.migrationsIn(m.targetNodeId), m.migrationId)
      .exec();
  }

  /** Slot holders that are not open any more (a controller died between the end and the release). */
  async strandedSlots(): Promise<string[]> {
    return this.redis.sdiff(this.keys.migrationsActive(), this.keys.migrationsOpen());
  }

  /** The keys a commit or a revert moves the VM between (source and target node, their indexes, the group). */
  private moveKeys(m: Pick<MigrationRecord, 'sourceNodeId' | 'targetNodeId' | 'antiAffinityGroup'>): string[] {
    const k = this.keys;
    return [
      k.node(m.sourceNodeId),
      k.node(m.targetNodeId),
      k.nodeVms(m.sourceNodeId),
      k.nodeVms(m.targetNodeId),
      k.nodeImages(m.sourceNodeId),
      k.nodeImages(m.targetNodeId),
      this.groupKey(m.antiAffinityGroup),
    ];
  }

  /** The group's anti-affinity hash; without a group a key the scripts never write. */
  private groupKey(group: string): string {
    return group ? this.keys.antiAffinity(group) : this.keys.migrationsOpen();
  }
}
