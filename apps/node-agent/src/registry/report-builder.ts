import { encodeBitmapRle } from '@vmm/emulator';
import { agent, cluster } from '@vmm/proto';
import type { AgentConfig } from '../config.js';
import type { KsmService } from '../ksm/ksm.service.js';
import type { MigrationLedger } from '../migration/migration-ledger.js';
import { toVmState, type ManagedVm, type VmManager } from '../vm/vm-manager.js';

/** Counters when no ksmd runs (tests of the report alone). */
const NO_KSM_STATS: cluster.KsmStats = cluster.KsmStats.fromPartial({});

/** A no-copy Buffer over the encoded bytes: ts-proto's codec wants a Buffer for bytes (env=node). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Builds the NodeReport sent every interval. Sampling a VM syncs (and clears) its report dirty log,
 * so each report carries exactly the pages written since the previous one.
 */
export interface ReportSources {
  /** The node's ksmd; without it the KSM counters are zero and the knobs the configured ones. */
  ksm?: Pick<KsmService, 'stats' | 'knobs' | 'hostKsm'>;
  /** The migration ends this node holds; without it none are reported. */
  migrations?: Pick<MigrationLedger, 'reported'>;
  nowMs?: () => number;
  /** Random per agent process (RegisterRequest.boot_id). */
  bootId?: string;
}

export class ReportBuilder {
  private readonly nowMs: () => number;
  private seq = 0;
  /** The VMs of the last report built, as sent (what /metrics shows: sampling clears the dirty log). */
  lastVms: readonly agent.VmReport[] = [];

  constructor(
    private readonly vms: VmManager,
    private readonly config: Pick<AgentConfig, 'nodeId' | 'ksm'>,
    private readonly sources: ReportSources = {},
  ) {
    this.nowMs = sources.nowMs ?? (() => performance.now());
  }

  build(): agent.NodeReport {
    const now = this.nowMs();
    const ksm = this.sources.ksm;
    const vms: agent.VmReport[] = [];
    // Migration targets are not the controller's VMs until committed; they are not reported.
    for (const entry of this.vms.all()) if (entry.role !== 'incoming') vms.push(this.vmReport(entry, now));
    this.lastVms = vms;
    return {
      nodeId: this.config.nodeId,
      sentAtMs: Date.now(),
      vms,
      memoryUsedBytes: this.vms.hypervisor.memoryUsedBytes(),
      ksm: ksm ? ksm.stats() : NO_KSM_STATS,
      ksmKnobs: ksm
        ? ksm.knobs()
        : {
            run: this.config.ksm.run,
            pagesToScan: this.config.ksm.pagesToScan,
            sleepMillisecs: this.config.ksm.sleepMillisecs,
            ...(this.config.ksm.maxPageSharing !== undefined && { maxPageSharing: this.config.ksm.maxPageSharing }),
            ...(this.config.ksm.useZeroPages !== undefined && { useZeroPages: this.config.ksm.useZeroPages }),
          },
      hostKsm: ksm ? ksm.hostKsm() : { sysfs: {}, process: {} },
      migrations: this.sources.migrations?.reported() ?? [],
      bootId: this.sources.bootId ?? '',
      seq: ++this.seq,
    };
  }

  private vmReport(entry: ManagedVm, now: number): agent.VmReport {
    const { vm } = entry;
    const pagesTotal = vm.memory.pageCount;
    const sample = entry.tracker.sample(now);
    return {
      vmId: vm.id,
      state: toVmState(entry),
      pagesTotal,
      dirtyBitmap: asBuffer(encodeBitmapRle(sample.bitmap, pagesTotal)),
      dirtyBitmapEncoding: agent.BitmapEncoding.BITMAP_ENCODING_RLE,
      dirtyPages: sample.dirtyPages,
      dirtyRatePagesPerSec: sample.dirtyRatePagesPerSec,
      workingSetPages: sample.workingSetPages,
      residentPages: vm.state === 'stopped' ? 0 : vm.memory.residentPages,
      fencingEpoch: entry.fencingEpoch,
      writesTotal: vm.writesTotal,
      migrationId: entry.role === 'outgoing' ? entry.migrationId : '',
      leasePaused: entry.leasePaused,
    };
  }
}
