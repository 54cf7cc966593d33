/**
 * The node registry: agents register (and re-register after any restart) and stream reports. Every
 * report is reconciled in both directions and answered with a ReportAck: the node's lease, and what
 * the agent must do with the copies it holds (report-reconcile.ts). VMs the controller places on the
 * node that its reports leave out are FAILED after a grace, or booted again (RESTART_POLICY_ALWAYS).
 */
import { Inject, Injectable } from '@nestjs/common';
import { agent, cluster } from '@vmm/proto';
import { AgentGateway } from '../agent/agent.gateway.js';
import { LOGGER, type Logger } from '../common/logger.js';
import { NO_MEASUREMENTS, type VmRecord } from '../common/model.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import { InvalidArgumentError, NodeNotFoundError } from '../errors.js';
import { validHypervisor } from '../common/hypervisor.js';
import { MigrationRepository } from '../redis/migration.repository.js';
import { NodeRepository, type NodeRegistration, type VmMeasurement } from '../redis/node.repository.js';
import { PlacementRepository } from '../redis/placement.repository.js';
import { VmRepository } from '../redis/vm.repository.js';
import { VmRestarter } from '../vm/vm-restarter.js';
import { canVmTransition, isControllerOwned, REPORTED_STATES } from '../vm/vm-state.js';
import { STALE_PENDING_MS } from '../vm/vm.service.js';
import { reconcileReport } from './report-reconcile.js';
import { reconcileSeconds } from '../common/reconcile-metrics.js';

const { VmState } = cluster;
const REPORTABLE = REPORTED_STATES;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
/**
 * The most VMs one node's registration or report may list: far above what a host runs, and low enough
 * that one report is one bounded Lua call (a report of 10^6 VMs blocked Redis in one EVALSHA).
 */
export const MAX_VMS_PER_NODE = 10_000;

function checkVmCount(field: string, count: number): void {
  if (count > MAX_VMS_PER_NODE) throw new InvalidArgumentError(field, `lists ${count} VMs; a node may hold at most ${MAX_VMS_PER_NODE}`);
}

@Injectable()
export class RegistryService {
  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
    @Inject(VmRepository) private readonly vms: VmRepository,
    @Inject(PlacementRepository) private readonly placement: PlacementRepository,
    @Inject(MigrationRepository) private readonly migrations: MigrationRepository,
    @Inject(AgentGateway) private readonly agents: AgentGateway,
    @Inject(VmRestarter) private readonly restarter: VmRestarter,
  ) {}

  async register(req: Partial<agent.RegisterRequest>): Promise<agent.RegisterResponse> {
    const reg = validateRegistration(req);
    checkVmCount('vms', req.vms?.length ?? 0);
    const previous = await this.nodes.get(reg.nodeId);
    const existed = previous !== undefined;
    await this.nodes.upsertRegistration(reg, Date.now());
    // A registration means a (re)started agent: its old channel may be backing off after failures.
    this.agents.agentRegistered(reg.address, previous?.address);
    const summary = await this.reconcileRegistration(reg.nodeId, req.vms ?? []);
    this.logger.info({ ...reg, bootId: req.bootId, reregistered: existed, ...summary }, 'node registered');
    return { nodeId: reg.nodeId, reportIntervalMs: this.config.reportIntervalMs };
  }

  /**
   * Applies one report and answers it. Throws NodeNotFoundError when the node is not registered (a
   * Redis that came back empty, say), so that the agent registers again and its VMs are adopted.
   */
  async report(report: agent.NodeReport | undefined | null): Promise<agent.ReportAck> {
    const stopTimer = reconcileSeconds.startTimer({ loop: 'node report' });
    try {
      return await this.applyReport(report);
    } finally {
      stopTimer();
    }
  }

  private async applyReport(report: agent.NodeReport | undefined | null): Promise<agent.ReportAck> {
    if (!report?.nodeId) throw new InvalidArgumentError('report.node_id', 'must not be empty');
    const nodeId = report.nodeId;
    const nowMs = Date.now();
    const vmReports = report.vms ?? [];
    checkVmCount('report.vms', vmReports.length);
    const ends = report.migrations ?? [];
    const measurements: VmMeasurement[] = vmReports.map((vm) => ({
      vmId: vm.vmId,
      state: vm.state,
      measured: {
        dirtyRatePagesPerSec: finite(vm.dirtyRatePagesPerSec),
        workingSetPages: safeInt(vm.workingSetPages),
        residentPages: safeInt(vm.residentPages),
      },
      fencingEpoch: safeInt(vm.fencingEpoch),
      outgoing: Boolean(vm.migrationId),
    }));
    const result = await this.nodes.applyReport(nodeId, nowMs, {
      memoryUsedBytes: safeInt(report.memoryUsedBytes),
      ksm: report.ksm ?? undefined,
      ksmKnobs: report.ksmKnobs ?? undefined,
      vms: measurements,
      reportedVms: reportedVms(vmReports, ends),
      missingGraceMs: this.config.missingVmGraceMs,
    });
    if (!result.known) throw new NodeNotFoundError(nodeId);
    if (result.wasNotReady) this.logger.info({ nodeId }, 'node ready again');
    for (const vmId of result.missing) await this.lost(vmId, nodeId);

    const records = new Map((await this.vms.getMany(vmReports.map((v) => v.vmId))).map((r) => [r.vmId, r] as const));
    const migrationIds = new Set<string>([...ends.map((e) => e.migrationId), ...[...records.values()].map((r) => r.migrationId).filter(Boolean)]);
    const migrations = new Map((await this.migrations.getMany([...migrationIds])).map((m) => [m.migrationId, m] as const));
    const tombstones = await this.nodes.tombstones(nodeId);
    const outcome = reconcileReport({
      nodeId,
      vms: measurements.map((m, i) => ({ vmId: m.vmId, fencingEpoch: m.fencingEpoch, migrationId: vmReports[i]!.migrationId ?? '' })),
      ends,
      records,
      migrations,
      tombstones,
    });
    const directives = outcome.directives;
    for (const { migration, vmId } of outcome.resumed) {
      // The commit becomes irreversible before the ack confirms the copy; a revert that got there first wins.
      if (!(await this.migrations.markTargetResumed(migration, nowMs))) {
        directives.push({ vmId, migrationId: '', action: agent.DirectiveAction.DIRECTIVE_ACTION_HOLD, fencingEpoch: migration.fencingEpoch, reason: 'the commit was reverted' });
      }
    }
    await this.nodes.clearTombstones(nodeId, outcome.clearedTombstones);
    for (const c of outcome.conflicts) this.logger.warn({ nodeId, ...c }, 'reported copy does not match the records');
    for (const d of directives) {
      if (d.action !== agent.DirectiveAction.DIRECTIVE_ACTION_HOLD) this.logger.info({ nodeId, vmId: d.vmId, migrationId: d.migrationId, action: d.action, fencingEpoch: d.fencingEpoch, reason: d.reason }, 'directive');
    }
    return { seq: report.seq, leaseMs: this.config.nodeLeaseMs, directives };
  }

  /** A VM the node's reports leave out past the grace: gone with its agent. Restarted or FAILED. */
  private async lost(vmId: string, nodeId: string): Promise<void> {
    const vm = await this.vms.get(vmId);
    if (!vm || vm.nodeId !== nodeId) return;
    const reason = `its node ${nodeId} no longer runs it`;
    if (vm.restartPolicy === cluster.RestartPolicy.RESTART_POLICY_ALWAYS) {
      await this.restarter.restart(vm, reason);
      return;
    }
    if (await this.vms.fail(vm, reason, [VmState.VM_STATE_RUNNING, VmState.VM_STATE_PAUSED])) {
      this.logger.warn({ vmId, nodeId }, 'vm missing from its node\'s reports: FAILED');
    }
  }

  /**
   * Brings the records of one node in line with the VMs its agent runs at registration:
   * - a known VM the agent runs: its state is taken from the agent (a stale PENDING becomes RUNNING);
   * - a known VM the agent does not run: FAILED (the agent restarted and lost it), unless it is still
   *   being created or is migrating (the reports' grace handles those);
   * - a VM the controller does not know and has no tombstone for (its record was lost): adopted, if
   *   its spec is valid and fits.
   */
  private async reconcileRegistration(nodeId: string, reported: readonly agent.VmStatus[]) {
    const now = Date.now();
    const byId = new Map(reported.filter((s) => s.vmId).map((s) => [s.vmId, s]));
    const known = await this.vms.getMany(await this.vms.idsOnNode(nodeId));
    const tombstones = await this.nodes.tombstones(nodeId);
    let failed = 0;
    let adopted = 0;
    for (const vm of known) {
      const status = byId.get(vm.vmId);
      byId.delete(vm.vmId);
      const stalePending = vm.state === VmState.VM_STATE_PENDING && now - vm.createdAtMs > STALE_PENDING_MS;
      if (status) {
        if (isControllerOwned(vm.state) && !stalePending) continue;
        const state = REPORTABLE.has(status.state) ? status.state : VmState.VM_STATE_RUNNING;
        if (canVmTransition(vm.state, state)) await this.vms.setState(vm.vmId, state, [vm.state]);
      } else if (!isControllerOwned(vm.state) || stalePending) {
        if (vm.state === VmState.VM_STATE_FAILED || vm.state === VmState.VM_STATE_STOPPED) continue;
        if (vm.restartPolicy === cluster.RestartPolicy.RESTART_POLICY_ALWAYS && vm.state !== VmState.VM_STATE_PENDING) {
          await this.restarter.restart(vm, `its node ${nodeId} restarted without it`);
          continue;
        }
        if (await this.vms.fail(vm, `its node ${nodeId} restarted without it`, [vm.state])) failed++;
        this.logger.warn({ vmId: vm.vmId, nodeId }, 'vm lost by its agent; marked FAILED');
      }
    }
    for (const status of byId.values()) {
      if (tombstones.has(status.vmId)) continue;
      if (await this.adopt(nodeId, status, now)) adopted++;
    }
    return { vmsReported: reported.length, vmsFailed: failed, vmsAdopted: adopted };
  }

  private async adopt(nodeId: string, status: agent.VmStatus, now: number): Promise<boolean> {
    if (await this.vms.get(status.vmId)) return false; // placed elsewhere: the reports' directives handle the copy
    const spec = status.spec;
    const problem = adoptionProblem(status);
    if (!spec || problem) {
      this.logger.warn({ vmId: status.vmId, nodeId, problem: problem ?? 'no spec' }, 'agent runs an unknown vm that cannot be adopted');
      return false;
    }
    const vm: VmRecord = {
      vmId: status.vmId,
      name: spec.name || status.vmId,
      nodeId,
      state: REPORTABLE.has(status.state) ? status.state : VmState.VM_STATE_RUNNING,
      vcpus: spec.vcpus,
      memoryMib: spec.memoryMib,
      image: spec.image,
      workload: spec.workload ?? { kind: cluster.WorkloadKind.WORKLOAD_KIND_IDLE, dirtyRatePagesPerSec: 0, workingSetMib: 0, seed: 0 },
      labels: spec.labels ?? {},
      antiAffinityGroup: '',
      createdAtMs: now,
      fencingEpoch: Number(status.fencingEpoch || spec.fencingEpoch || 1),
      ...NO_MEASUREMENTS,
      residentPages: Number(status.residentPages ?? 0),
      restartPolicy: spec.restartPolicy ?? cluster.RestartPolicy.RESTART_POLICY_UNSPECIFIED,
      migrationId: '',
      failureReason: '',
      nodeSelector: {},
    };
    const outcome = await this.placement.reserve(vm, now, this.config.nodeStaleAfterMs, true);
    if (outcome !== 'OK') {
      this.logger.warn({ vmId: vm.vmId, nodeId, outcome }, 'could not adopt a vm the agent runs');
      return false;
    }
    this.logger.info({ vmId: vm.vmId, nodeId }, 'adopted a vm the agent runs (its record was lost)');
    return true;
  }
}

/** Node.reported_vms from a report: its VMs (a migration's source copy as SOURCE) and its incoming copies. */
export function reportedVms(vms: readonly agent.VmReport[], ends: readonly agent.MigrationEnd[]): cluster.ReportedVm[] {
  const R = cluster.MigrationRole;
  const out: cluster.ReportedVm[] = vms.map((vm) => ({
    vmId: vm.vmId,
    state: vm.state,
    fencingEpoch: safeInt(vm.fencingEpoch),
    migrationRole: vm.migrationId ? R.MIGRATION_ROLE_SOURCE : R.MIGRATION_ROLE_NONE,
    migrationId: vm.migrationId ?? '',
  }));
  const E = agent.MigrationEndState;
  for (const end of ends) {
    if (end.role !== R.MIGRATION_ROLE_TARGET) continue;
    if (end.state !== E.MIGRATION_END_STATE_RECEIVING && end.state !== E.MIGRATION_END_STATE_READY && end.state !== E.MIGRATION_END_STATE_COMMITTED) continue;
    out.push({ vmId: end.vmId, state: VmState.VM_STATE_MIGRATING, fencingEpoch: safeInt(end.fencingEpoch), migrationRole: R.MIGRATION_ROLE_TARGET, migrationId: end.migrationId });
  }
  return out;
}

/** Why a VM an agent reports cannot become a record: a spec out of the API's bounds. */
function adoptionProblem(status: agent.VmStatus): string | undefined {
  const spec = status.spec;
  if (!spec) return 'no spec';
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1 || spec.vcpus > 1024) return `vcpus ${spec.vcpus}`;
  const memoryMib = Number(spec.memoryMib);
  if (!Number.isSafeInteger(memoryMib) || memoryMib < 1 || memoryMib > 16 * 1024 * 1024) return `memory_mib ${spec.memoryMib}`;
  const epoch = Number(status.fencingEpoch || spec.fencingEpoch || 1);
  if (!Number.isSafeInteger(epoch) || epoch < 0) return `fencing_epoch ${status.fencingEpoch}`;
  if (typeof spec.name !== 'string' || spec.name.length > 128) return 'name';
  return undefined;
}

function safeInt(value: unknown): number {
  const n = Number(value ?? 0);
  return Number.isFinite(n) ? Math.min(Math.max(Math.trunc(n), 0), MAX_SAFE) : 0;
}

function finite(value: unknown): number {
  const n = Number(value ?? 0);
  return Number.isFinite(n) && n >= 0 ? n : 0;
}

/** RegisterRequest.metrics_url: empty, or an http(s) URL of at most 512 characters. */
function validMetricsUrl(value: string | undefined): string {
  const url = (value ?? '').trim();
  if (url === '') return '';
  let ok = url.length <= 512;
  try {
    ok &&= ['http:', 'https:'].includes(new URL(url).protocol);
  } catch {
    ok = false;
  }
  if (!ok) throw new InvalidArgumentError('metrics_url', 'must be an http(s) URL of at most 512 characters');
  return url;
}

function validateRegistration(req: Partial<agent.RegisterRequest>): NodeRegistration {
  const nodeId = (req.nodeId ?? '').trim();
  if (!nodeId) throw new InvalidArgumentError('node_id', 'must not be empty');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(nodeId)) throw new InvalidArgumentError('node_id', 'use letters, digits, ".", "_", "-"');
  const address = (req.address ?? '').trim();
  if (!/^[^\s]+:\d+$/.test(address)) throw new InvalidArgumentError('address', 'expected host:port');
  const vcpus = Number(req.vcpus ?? 0);
  if (!Number.isInteger(vcpus) || vcpus <= 0) throw new InvalidArgumentError('vcpus', 'must be greater than 0');
  const memoryMib = Number(req.memoryMib ?? 0);
  if (!Number.isInteger(memoryMib) || memoryMib <= 0) throw new InvalidArgumentError('memory_mib', 'must be greater than 0');
  const ratio = (field: string, value: number | undefined): number => {
    const r = Number(value ?? 0);
    if (r === 0) return 1;
    if (!Number.isFinite(r) || r < 0 || r > 100) throw new InvalidArgumentError(field, 'must be in (0, 100]');
    return r;
  };
  return {
    nodeId,
    address,
    vcpus,
    memoryMib,
    cpuAllocationRatio: ratio('cpu_allocation_ratio', req.cpuAllocationRatio),
    ramAllocationRatio: ratio('ram_allocation_ratio', req.ramAllocationRatio),
    agentVersion: req.agentVersion ?? '',
    hypervisor: validHypervisor(req.hypervisor),
    metricsUrl: validMetricsUrl(req.metricsUrl),
  };
}
