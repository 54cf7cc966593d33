/**
 * Migration requests: MigrateVm (checks, target choice, the Redis record with the target's room
 * reserved, one queued job), Get/List/Watch, CancelMigration and DrainNode. The orchestrator runs
 * the jobs.
 */
import { Inject, Injectable } from '@nestjs/common';
import { isCancellable, isFinal, toProtoPhase } from '@vmm/migration/phase';
import { cluster } from '@vmm/proto';
import { Observable } from 'rxjs';
import { matchesSelector } from '../common/labels.js';
import { LOGGER, type Logger } from '../common/logger.js';
import type { NodeRecord, PlacementRequest } from '../common/model.js';
import { nextPageToken, readPageRequest, scanPage } from '../common/page-token.js';
import { requireFound } from '../common/require-found.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import {
  InvalidArgumentError,
  MigrationNotCancellableError,
  MigrationNotFoundError,
  NoCapacityError,
  NodeNotFoundError,
  NodeNotSchedulableError,
  VmBusyError,
  VmNotFoundError,
  type ControllerError,
} from '../errors.js';
import { staysUnderHighWatermark } from '../node/memory-pressure.policy.js';
import { isNodeReady } from '../node/node-state.js';
import { NodeService } from '../node/node.service.js';
import { MigrationEventsRepository } from '../redis/migration-events.repository.js';
import { MigrationQueueRepository } from '../redis/migration-queue.repository.js';
import { MigrationRepository, type CreateMigrationOutcome } from '../redis/migration.repository.js';
import { NodeRepository } from '../redis/node.repository.js';
import { VmRepository } from '../redis/vm.repository.js';
import { PAGE_BYTES } from '../scheduler/migration-cost.js';
import { describeRejections, rankNodes } from '../scheduler/scheduler.js';
import { VmService } from '../vm/vm.service.js';
import { newMigrationId, newMigrationToken } from './migration-id.js';
import { migrationFromEvent } from '../redis/migration-codec.js';
import { toProtoMigration, type MigrationRecord } from './migration-record.js';
import { DRAIN_POLICY, DRAIN_REASON, isDrainAttempt } from './drain-policy.js';
import { resolveRequestPolicy } from './migration-policy.js';
import { MigrationOrchestrator } from './migration.orchestrator.js';

const { VmState } = cluster;

@Injectable()
export class MigrationService {
  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(VmService) private readonly vmService: VmService,
    @Inject(NodeService) private readonly nodeService: NodeService,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
    @Inject(VmRepository) private readonly vms: VmRepository,
    @Inject(MigrationRepository) private readonly migrations: MigrationRepository,
    @Inject(MigrationQueueRepository) private readonly queue: MigrationQueueRepository,
    @Inject(MigrationEventsRepository) private readonly events: MigrationEventsRepository,
    @Inject(MigrationOrchestrator) private readonly orchestrator: MigrationOrchestrator,
  ) {}

  /**
   * `avoidMemoryPressure`: only targets whose real memory use stays at or below the high watermark
   * with the VM's resident pages and `inboundMib` (memory already on its way to them) added:
   * memory-pressure evacuations must not move the problem.
   */
  async migrate(
    req: Partial<cluster.MigrateVmRequest>,
    reason = 'user',
    opts: { avoidMemoryPressure?: boolean; inboundMib?: ReadonlyMap<string, number>; avoidTargets?: ReadonlySet<string> } = {},
  ): Promise<cluster.Migration> {
    const vm = await this.vmService.require(req.vmId ?? '');
    const policy = resolveRequestPolicy(req.policy, vm.memoryMib, this.config.migrationPolicyDefaults);
    const targetNodeId = (req.targetNodeId ?? '').trim();
    let candidates = await this.targets(vm.nodeId, targetNodeId, {
      vcpus: vm.vcpus,
      memoryMib: vm.memoryMib,
      antiAffinityGroup: vm.antiAffinityGroup,
      image: vm.image,
      nodeSelector: vm.nodeSelector,
    });
    if (opts.avoidMemoryPressure) {
      const addMib = (vm.residentPages * PAGE_BYTES) / (1024 * 1024);
      const high = this.config.memoryHighWatermarkPercent;
      candidates = candidates.filter((n) => staysUnderHighWatermark(n, addMib + (opts.inboundMib?.get(n.nodeId) ?? 0), high));
      if (candidates.length === 0) throw new NoCapacityError('no target stays under its memory watermark');
    }
    // Targets to skip when others will do (a drain's retry goes elsewhere than the failed attempts).
    const avoid = opts.avoidTargets;
    if (avoid && avoid.size > 0 && candidates.some((n) => !avoid.has(n.nodeId))) candidates = candidates.filter((n) => !avoid.has(n.nodeId));
    if (vm.state === VmState.VM_STATE_MIGRATING) throw new VmBusyError(vm.vmId, 'already migrating');
    if (vm.state !== VmState.VM_STATE_RUNNING) throw new VmBusyError(vm.vmId, `not running (${vm.state})`);

    const now = Date.now();
    const migrationId = newMigrationId(now);
    const lost: string[] = [];
    for (const target of candidates) {
      const outcome = await this.migrations.create(
        { migrationId, vmId: vm.vmId, targetNodeId: target.nodeId, policy, reason, createdAtMs: now, token: newMigrationToken() },
        Date.now(),
        this.config.nodeStaleAfterMs,
      );
      if (outcome === 'OK') {
        try {
          await this.queue.enqueue(migrationId);
        } catch (error) {
          await this.migrations.rollback(
            { migrationId, vmId: vm.vmId, targetNodeId: target.nodeId, antiAffinityGroup: vm.antiAffinityGroup },
            'FAILED',
            { error: 'could not queue the migration', errorReason: 'INTERNAL' },
          );
          throw error;
        }
        this.logger.info({ migrationId, vmId: vm.vmId, source: vm.nodeId, target: target.nodeId, reason }, 'migration queued');
        return this.get(migrationId);
      }
      const error = outcomeError(outcome, vm.vmId, target.nodeId, targetNodeId !== '');
      if (error) throw error;
      lost.push(`${target.nodeId}: ${outcome.toLowerCase().replace('_', ' ')}`);
    }
    throw new NoCapacityError(lost.join(', '));
  }

  async get(migrationId: string): Promise<cluster.Migration> {
    return toProtoMigration(await this.require(migrationId));
  }

  async require(migrationId: string): Promise<MigrationRecord> {
    return requireFound('migration_id', migrationId, (id) => this.migrations.get(id), (id) => new MigrationNotFoundError(id));
  }

  /** A page of migrations; the controller adds the revision (read before this). */
  async list(req: Partial<cluster.ListMigrationsRequest>): Promise<Omit<cluster.ListMigrationsResponse, 'revision'>> {
    const vmId = req.vmId ?? '';
    const nodeId = req.nodeId ?? '';
    const phase = req.phase && req.phase !== cluster.MigrationPhase.MIGRATION_PHASE_UNSPECIFIED ? req.phase : '';
    const reason = req.reason ?? '';
    // The token names its filter; the VM filter alone keeps the form tokens had before the others.
    const filter = nodeId || phase || reason ? JSON.stringify([vmId, nodeId, phase, reason]) : vmId;
    const { pageSize, after } = readPageRequest(req, filter);
    const page = await scanPage(
      after,
      pageSize,
      async (from, count) => {
        const p = await this.migrations.listPage(from, count, vmId);
        return { items: p.migrations, more: p.more };
      },
      (m) =>
        (!nodeId || m.sourceNodeId === nodeId || m.targetNodeId === nodeId) &&
        (!phase || toProtoPhase(m.phase) === phase) &&
        (!reason || m.reason === reason),
      (m) => m.migrationId,
    );
    if (vmId && !after && page.items.length === 0 && !page.more && !(await this.vms.get(vmId))) throw new VmNotFoundError(vmId);
    return { migrations: page.items.map(toProtoMigration), nextPageToken: nextPageToken(page.more, page.lastRead, filter) };
  }

  /** The current state at once, then every change, completing after a final phase. */
  async watch(migrationId: string): Promise<Observable<cluster.Migration>> {
    await this.require(migrationId);
    return new Observable<cluster.Migration>((subscriber) => {
      let lastRev = -1;
      let unsubscribe: (() => void) | undefined;
      let closed = false;
      const emit = (m: MigrationRecord) => {
        if (closed || m.rev <= lastRev) return;
        lastRev = m.rev;
        subscriber.next(toProtoMigration(m));
        if (isFinal(m.phase)) {
          closed = true;
          subscriber.complete();
          unsubscribe?.();
        }
      };
      const reread = () => {
        if (closed) return;
        this.migrations.get(migrationId).then(
          (m) => m && emit(m),
          () => undefined, // Redis is away: the next resync tries again
        );
      };
      void (async () => {
        unsubscribe = await this.events.subscribe(migrationId, { onRecord: emit, resync: reread });
        if (closed) return unsubscribe();
        // Read after subscribing, so that no change falls between the two.
        const current = await this.migrations.get(migrationId);
        if (current) emit(current);
      })().catch((error: unknown) => subscriber.error(error));
      return () => {
        closed = true;
        unsubscribe?.();
      };
    });
  }

  async cancel(migrationId: string): Promise<cluster.Migration> {
    const m = await this.require(migrationId);
    if (isFinal(m.phase)) return toProtoMigration(m);
    if (!isCancellable(m.phase)) throw new MigrationNotCancellableError(migrationId, m.phase);
    // One atomic step: CANCELLED, the target's room given back, the VM RUNNING on its source. The
    // commit requires an open phase before COMMITTING, so nothing can commit after this.
    await this.migrations.rollback(m, 'CANCELLED', { error: 'cancelled', errorReason: 'CANCELLED' });
    const after = await this.require(migrationId);
    if (after.phase !== 'CANCELLED') {
      if (isFinal(after.phase)) return toProtoMigration(after);
      throw new MigrationNotCancellableError(migrationId, after.phase);
    }
    const neverStarted = m.phase === 'PENDING' && (await this.queue.removeWaiting(migrationId));
    this.orchestrator.cancelLocal(migrationId);
    // Agents forget unknown migration ids, so telling both ends is always safe.
    if (!neverStarted) await this.orchestrator.tellAgents(m, 'cancelled', m.sourceEpoch);
    this.logger.info({ migrationId, vmId: m.vmId, phase: m.phase }, 'migration cancelled');
    return this.get(migrationId);
  }

  /**
   * Marks the node DRAINING (and cordoned) and starts a migration for each of its running VMs, with
   * DRAIN_POLICY. The DrainCoordinator retries the ones that fail and moves VMs that start running
   * later; the node stays DRAINING and cordoned until UncordonNode, also once it is empty.
   */
  async drain(nodeId: string): Promise<cluster.DrainNodeResponse> {
    await this.nodeService.require(nodeId);
    const drainStartedAtMs = Date.now();
    await this.nodes.setFields(nodeId, { draining: '1', cordoned: '1', drainStartedAtMs: String(drainStartedAtMs) });
    const started: cluster.Migration[] = [];
    for (const vm of await this.vms.getMany(await this.vms.idsOnNode(nodeId))) {
      if (vm.state !== VmState.VM_STATE_RUNNING) continue;
      try {
        started.push(await this.migrate({ vmId: vm.vmId, policy: DRAIN_POLICY }, DRAIN_REASON));
      } catch (error) {
        // The drain coordinator's sweep sees the node draining from the line above on, and may have
        // started this VM's migration meanwhile: that one is part of this drain too.
        const bySweep = (await this.migrations.listForVm(vm.vmId)).find((m) => isDrainAttempt(m, nodeId, drainStartedAtMs) && !isFinal(m.phase));
        if (bySweep) started.push(toProtoMigration(bySweep));
        else this.logger.warn({ nodeId, vmId: vm.vmId, err: error }, 'drain: could not start a migration');
      }
    }
    return { node: await this.nodeService.get(nodeId), migrations: started };
  }

  /** Target candidates, best first: the requested node (checked), or the scheduler's choice. */
  private async targets(sourceNodeId: string, targetNodeId: string, request: PlacementRequest): Promise<NodeRecord[]> {
    const now = Date.now();
    // A VM moves only between nodes of its source's driver: an emulated VM's state means nothing to QEMU.
    const source = await this.nodes.get(sourceNodeId);
    request = { ...request, hypervisor: source?.hypervisor ?? '' };
    if (targetNodeId) {
      const target = await this.nodeService.require(targetNodeId);
      if (request.hypervisor && target.hypervisor !== request.hypervisor) throw new NodeNotSchedulableError(target.nodeId, 'of another hypervisor');
      if (!matchesSelector(target.labels, request.nodeSelector)) throw new NodeNotSchedulableError(target.nodeId, 'without the node_selector labels');
      if (target.nodeId === sourceNodeId) throw new InvalidArgumentError('target_node_id', 'is the node the vm runs on');
      if (!isNodeReady(target, now, this.config.nodeStaleAfterMs)) throw new NodeNotSchedulableError(target.nodeId, 'not ready');
      if (target.draining) throw new NodeNotSchedulableError(target.nodeId, 'draining');
      if (target.cordoned) throw new NodeNotSchedulableError(target.nodeId, 'cordoned');
      return [target];
    }
    const nodes = (await this.nodes.list()).filter((n) => n.nodeId !== sourceNodeId);
    const antiAffinityNodeIds = await this.vms.antiAffinityNodeIds(request.antiAffinityGroup);
    const ranked = rankNodes(nodes, request, { nowMs: now, staleAfterMs: this.config.nodeStaleAfterMs, antiAffinityNodeIds });
    if (ranked.candidates.length === 0) throw new NoCapacityError(`no target: ${describeRejections(ranked.rejected)}`);
    return ranked.candidates;
  }
}

/** The error for a refused creation, or undefined when the next candidate should be tried. */
function outcomeError(outcome: CreateMigrationOutcome, vmId: string, nodeId: string, explicit: boolean): ControllerError | undefined {
  switch (outcome) {
    case 'NO_VM':
      return new VmNotFoundError(vmId);
    case 'VM_MIGRATING':
      return new VmBusyError(vmId, 'already migrating');
    case 'VM_NOT_RUNNING':
      return new VmBusyError(vmId, 'not running');
    case 'SAME_NODE':
      return explicit ? new InvalidArgumentError('target_node_id', 'is the node the vm runs on') : undefined;
    case 'NO_NODE':
      return explicit ? new NodeNotFoundError(nodeId) : undefined;
    case 'CORDONED':
      return explicit ? new NodeNotSchedulableError(nodeId, 'cordoned') : undefined;
    case 'DRAINING':
      return explicit ? new NodeNotSchedulableError(nodeId, 'draining') : undefined;
    case 'NOT_READY':
      return explicit ? new NodeNotSchedulableError(nodeId, 'not ready') : undefined;
    case 'NO_VCPUS':
    case 'NO_MEMORY':
    case 'ANTI_AFFINITY':
      return explicit ? new NoCapacityError(`${nodeId}: ${outcome.toLowerCase().replace('_', ' ')}`) : undefined;
    default:
      return undefined;
  }
}
