import type { FramePool } from '@vmm/emulator';
import { Ksmd, KsmScanner, readHostKsm, readProcessKsmStat, type KsmKnobsPatch } from '@vmm/ksm';
import type { agent, cluster } from '@vmm/proto';
import type { Logger } from 'pino';
import type { KsmSettings } from '../config.js';
import { HostKsmReadOnlyError } from '../errors.js';
import { asEmulated } from '../hypervisor/emulated-vm.js';
import type { ManagedVm } from '../vm/vm-manager.js';

/**
 * Whose KSM the node reports: `emulated`, the agent's own ksmd over its FramePool (emulated VMs);
 * `host`, the kernel's (/sys/kernel/mm/ksm), which merges QEMU guests' RAM (mem-merge=on).
 */
export type KsmSource = 'emulated' | 'host';

/** The host's own KSM files change slowly; reading them every report would be wasted syscalls. */
const HOST_KSM_REFRESH_MS = 10_000;

/**
 * The node's emulated ksmd over the agent's one FramePool (frames are shared only within a pool).
 * Running VMs are its regions; a migration target joins at commit, a VM leaves before it stops.
 */
export class KsmService {
  readonly scanner: KsmScanner;
  private readonly ksmd: Ksmd;
  private host: agent.HostKsm = { sysfs: {}, process: {} };
  private hostTimer: NodeJS.Timeout | undefined;
  private configuring: Promise<void> = Promise.resolve(); // the SetKsm calls before this one

  /** @throws InvalidKnobError for bad KSM_* configuration (checked by loadAgentConfig first) */
  constructor(
    pool: FramePool,
    knobs: KsmSettings,
    private readonly log: Logger,
    readonly source: KsmSource = 'emulated',
  ) {
    this.scanner = new KsmScanner({
      pool,
      knobs: {
        run: knobs.run as 0 | 1 | 2,
        pages_to_scan: Math.max(knobs.pagesToScan, 1),
        sleep_millisecs: knobs.sleepMillisecs,
        ...(knobs.maxPageSharing !== undefined && { max_page_sharing: knobs.maxPageSharing }),
        ...(knobs.useZeroPages !== undefined && { use_zero_pages: knobs.useZeroPages ? 1 : 0 }),
      },
    });
    this.ksmd = new Ksmd(this.scanner, (err) => this.log.warn({ err }, 'ksm batch failed'));
  }

  /** Starts ksmd (needs `await initHashing()` before: the checksum is xxh64). */
  start(): void {
    if (this.source === 'emulated') this.ksmd.start();
    const refresh = (): void => void this.refreshHost();
    refresh();
    // The host's counters are this node's own in host mode: read them about as often as reports go.
    this.hostTimer = setInterval(refresh, this.source === 'host' ? HOST_KSM_REFRESH_MS / 5 : HOST_KSM_REFRESH_MS);
    this.hostTimer.unref();
  }

  stop(): void {
    this.ksmd.stop();
    clearInterval(this.hostTimer);
  }

  /** A VM started running here (created, or an incoming migration committed). */
  attach(entry: ManagedVm): void {
    if (this.source === 'host') return;
    if (!this.scanner.hasRegion(entry.vm.id)) this.scanner.addRegion(entry.vm.id, asEmulated(entry.vm).memory);
  }

  /** A VM is about to stop (deleted, or released after migrating away): its memory goes as is. */
  detach(entry: ManagedVm): void {
    if (this.scanner.hasRegion(entry.vm.id)) this.scanner.removeRegion(entry.vm.id);
  }

  /**
   * SetKsm: applies the fields that are set, all checked before any applies; answers once they apply
   * (run=2: once every page is unmerged, in slices between which the agent keeps serving).
   * @throws InvalidKnobError (INVALID_ARGUMENT), KnobBusyError (FAILED_PRECONDITION)
   */
  configure(knobs: cluster.KsmKnobs | undefined | null): Promise<{ knobs: cluster.KsmKnobs; stats: cluster.KsmStats }> {
    // One call at a time, each answered with the state it left (not a later call's).
    const answer = this.configuring.then(() => this.apply(knobs));
    this.configuring = answer.then(
      () => undefined,
      () => undefined,
    );
    return answer;
  }

  private async apply(knobs: cluster.KsmKnobs | undefined | null): Promise<{ knobs: cluster.KsmKnobs; stats: cluster.KsmStats }> {
    // The host's ksmd is the host's (and every other tenant's): the agent reads it, never sets it.
    if (this.source === 'host') throw new HostKsmReadOnlyError();
    const patch: KsmKnobsPatch = {};
    if (knobs?.run != null) patch.run = knobs.run as 0 | 1 | 2;
    if (knobs?.pagesToScan != null) patch.pages_to_scan = knobs.pagesToScan;
    if (knobs?.sleepMillisecs != null) patch.sleep_millisecs = knobs.sleepMillisecs;
    if (knobs?.maxPageSharing != null) patch.max_page_sharing = knobs.maxPageSharing;
    if (knobs?.useZeroPages != null) patch.use_zero_pages = knobs.useZeroPages;
    await this.scanner.configureYielding(patch);
    this.log.info({ knobs: this.scanner.knobs }, 'ksm knobs set');
    return { knobs: this.knobs(), stats: this.stats() };
  }

  knobs(): cluster.KsmKnobs {
    if (this.source === 'host') {
      const h = this.host.sysfs;
      return {
        run: h.run ?? 0,
        pagesToScan: h.pages_to_scan ?? 0,
        sleepMillisecs: h.sleep_millisecs ?? 0,
        maxPageSharing: h.max_page_sharing ?? 0,
        useZeroPages: h.use_zero_pages === 1,
      };
    }
    const k = this.scanner.knobs;
    return {
      run: k.run,
      pagesToScan: k.pages_to_scan,
      sleepMillisecs: k.sleep_millisecs,
      maxPageSharing: k.max_page_sharing,
      useZeroPages: k.use_zero_pages === 1,
    };
  }

  stats(): cluster.KsmStats {
    if (this.source === 'host') {
      const h = this.host.sysfs;
      return {
        pagesShared: h.pages_shared ?? 0,
        pagesSharing: h.pages_sharing ?? 0,
        pagesUnshared: h.pages_unshared ?? 0,
        pagesVolatile: h.pages_volatile ?? 0,
        fullScans: h.full_scans ?? 0,
        generalProfitBytes: h.general_profit ?? 0,
      };
    }
    const s = this.scanner.stats();
    return {
      pagesShared: s.pages_shared,
      pagesSharing: s.pages_sharing,
      pagesUnshared: s.pages_unshared,
      pagesVolatile: s.pages_volatile,
      fullScans: s.full_scans,
      generalProfitBytes: s.general_profit,
    };
  }

  /** The real host's KSM state as last read ({} where the host has none). */
  hostKsm(): agent.HostKsm {
    return this.host;
  }

  private async refreshHost(): Promise<void> {
    try {
      const [sysfs, process] = await Promise.all([readHostKsm(), readProcessKsmStat(globalThis.process.pid)]);
      this.host = { sysfs, process };
    } catch (err) {
      this.log.debug({ err }, 'reading the host KSM state failed');
    }
  }
}
