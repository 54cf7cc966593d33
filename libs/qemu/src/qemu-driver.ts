import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { resolvePolicy, type PartialMigrationPolicy } from '@vmm/migration';
import { GuestExistsError, GuestNotFoundError, InvalidGuestStateError, QmpCommandError } from './errors.js';
import { detectAccelerator } from './guest/accelerator.js';
import { measureDirtyRate } from './guest/dirty-rate.js';
import { checkStateDir, guestPaths, isGuestDirName, pathsIn } from './guest/guest-paths.js';
import { readGuestRecord, writeGuestRecord, type GuestRecord } from './guest/guest-record.js';
import { resolveGuestSpec, type GuestSpec } from './guest/guest-spec.js';
import { defaultGuestImageDir, requireHost, type GuestImage } from './guest/host-setup.js';
import { buildKernelCmdline } from './guest/kernel-cmdline.js';
import { isQemuOf } from './guest/proc-info.js';
import { buildQemuArgs, type Accelerator } from './guest/qemu-args.js';
import { QemuGuest, type GuestStats, type GuestStatus } from './guest/qemu-guest.js';
import { startQemu } from './guest/qemu-process.js';
import { digestGuestRam, dumpGuestRam, type RamDigest } from './guest/ram-digest.js';
import { IncomingMigration } from './migration/incoming-migration.js';
import {
  migrationCapabilities,
  migrationUri,
  sourceMigrationParameters,
  targetMigrationParameters,
} from './migration/migration-params.js';
import { incomingPortOf, type QemuMigrationInfo } from './migration/migration-progress.js';
import { OutgoingMigration } from './migration/outgoing-migration.js';
import { QmpClient } from './qmp/qmp-client.js';

export interface QemuDriverOptions {
  /** One directory per guest below it (QMP socket, pid file, console, guest.json); kept across restarts. */
  stateDir: string;
  /** Where vmlinuz and initramfs.cpio.gz are (scripts/build-guest-image.sh); default defaultGuestImageDir(). */
  imageDir?: string;
  /** 'auto' (default): KVM when a guest really boots under it, else TCG. */
  accel?: Accelerator | 'auto';
  /** Where RAM dumps for digests go (memory-backed): default /dev/shm. */
  shmDir?: string;
  /** Deadline for a guest to print `vmm: ready`, ms (TCG boots in ~7 s on an idle machine). Default 120 s. */
  bootTimeoutMs?: number;
  /**
   * PEMs of the cluster CA and this node's certificate (server and client use): QEMU's migration
   * stream then runs over TLS (tls-creds-x509, verify-peer), both ends holding certificates of the CA.
   */
  tls?: { ca: Buffer; cert: Buffer; key: Buffer };
}

export interface IncomingOptions {
  /** Address QEMU listens on for the stream; port 0 (default) lets the kernel choose. */
  host?: string;
  port?: number;
  /** The migration's policy, for the stream-shaping capabilities both ends must share (multifd). */
  policy?: PartialMigrationPolicy;
  /** Over TLS: the subject (`CN=node-1`) the source's certificate must have (QEMU's tls-authz). */
  peerSubject?: string;
}

export interface OutgoingOptions {
  migrationId: string;
  /** The target's IncomingMigration host and port. */
  host: string;
  port: number;
  policy?: PartialMigrationPolicy;
}

/** QEMU's file names in a tls-creds-x509 directory; one node certificate serves both ends. */
async function writeTlsCreds(dir: string, tls: { ca: Buffer; cert: Buffer; key: Buffer }): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const files: [string, Buffer][] = [
    ['ca-cert.pem', tls.ca],
    ['server-cert.pem', tls.cert],
    ['server-key.pem', tls.key],
    ['client-cert.pem', tls.cert],
    ['client-key.pem', tls.key],
  ];
  for (const [name, content] of files) await writeFile(path.join(dir, name), content, { mode: 0o600 });
  return dir;
}

/**
 * Runs guests as qemu-system-x86_64 processes and migrates them through QMP: the QEMU counterpart of the
 * emulator's VirtualMachine + the migration engine, offering the operations the agent needs for both:
 * create / delete / pause / resume / status / stats / measureDirtyRate, prepareIncoming / startOutgoing
 * (progress, the switch-over gate) / digest / commitIncoming / abortIncoming. Guests outlive the driver:
 * open() on the same state directory reattaches to every QEMU still running (an agent restart).
 */
export class QemuDriver {
  private readonly guests = new Map<string, QemuGuest>();
  private readonly incoming = new Map<string, IncomingMigration>();
  private readonly outgoing = new Map<string, OutgoingMigration>();

  private constructor(
    readonly stateDir: string,
    readonly binary: string,
    readonly image: GuestImage,
    readonly accel: Accelerator,
    private readonly shmDir: string,
    private readonly bootTimeoutMs: number,
  ) {}

  /**
   * Checks QEMU and the guest image, chooses the accelerator, and reattaches to the guests of the state
   * directory. @throws QemuUnavailableError, InvalidGuestSpecError (state directory)
   */
  static async open(opts: QemuDriverOptions): Promise<QemuDriver> {
    const stateDir = checkStateDir(opts.stateDir);
    const { binary, image } = requireHost(opts.imageDir ?? defaultGuestImageDir());
    await mkdir(stateDir, { recursive: true });
    const accel = !opts.accel || opts.accel === 'auto' ? await detectAccelerator(binary, image, stateDir) : opts.accel;
    const driver = new QemuDriver(stateDir, binary, image, accel, opts.shmDir ?? '/dev/shm', opts.bootTimeoutMs ?? 120_000);
    if (opts.tls) driver.tlsCredsDir = await writeTlsCreds(path.join(stateDir, 'tls'), opts.tls);
    await driver.rediscover();
    return driver;
  }

  /** QEMU's tls-creds-x509 directory, when the stream runs over TLS. */
  private tlsCredsDir: string | undefined;

  /** Registers this end's TLS credentials with a guest's QEMU and names them in its migration parameters. */
  private async useTls(guest: QemuGuest, endpoint: 'server' | 'client', id: string, peer: { hostname?: string; subject?: string } = {}): Promise<Record<string, string>> {
    if (!this.tlsCredsDir) return {};
    await guest.qmp.execute('object-add', { 'qom-type': 'tls-creds-x509', id, dir: this.tlsCredsDir, endpoint, 'verify-peer': true });
    const params: Record<string, string> = { 'tls-creds': id };
    if (peer.hostname !== undefined) params['tls-hostname'] = peer.hostname;
    if (peer.subject !== undefined) {
      // Any certificate of the CA passes verify-peer: only the source node the controller named may feed this guest.
      await guest.qmp.execute('object-add', { 'qom-type': 'authz-simple', id: `${id}-authz`, identity: peer.subject });
      params['tls-authz'] = `${id}-authz`;
    }
    return params;
  }

  /** The vm ids of the guests this driver holds. */
  list(): string[] {
    return [...this.guests.keys()];
  }

  /**
   * Boots a guest and resolves once its program printed `vmm: ready` (image in memory, workload running).
   * With `waitReady: false` it resolves once QEMU runs and answers QMP; the boot goes on behind it, and
   * a guest that does not come up within the boot timeout is removed (status() then throws NOT_FOUND).
   */
  async create(spec: GuestSpec, opts: { waitReady?: boolean } = {}): Promise<GuestStatus> {
    const guest = await this.start(spec, 'guest');
    if (opts.waitReady === false) {
      void guest.waitReady(this.bootTimeoutMs).catch(() => this.remove(guest).catch(() => {}));
      return guest.status();
    }
    try {
      await guest.waitReady(this.bootTimeoutMs);
    } catch (err) {
      await this.remove(guest);
      throw err;
    }
    return guest.status();
  }

  /** Stops the guest (quit, then SIGKILL by pid) and removes its files. */
  async delete(vmId: string): Promise<void> {
    const guest = this.get(vmId);
    this.outgoing.delete(vmId);
    this.incoming.get(vmId)?.markAborted();
    this.incoming.delete(vmId);
    await this.remove(guest);
  }

  async pause(vmId: string): Promise<void> {
    this.refuseWhileMigrating(vmId, 'pause');
    await this.get(vmId).pause();
  }

  /** Resumes a paused guest; also the rollback of a completed but uncommitted outgoing migration. */
  async resume(vmId: string): Promise<void> {
    if (this.incoming.has(vmId)) throw new InvalidGuestStateError(vmId, 'incoming', 'resume (commit the migration instead)');
    const out = this.outgoing.get(vmId);
    if (out && out.state !== 'completed' && out.state !== 'failed' && out.state !== 'cancelled') {
      throw new InvalidGuestStateError(vmId, `migration ${out.state}`, 'resume');
    }
    await this.get(vmId).resume();
    this.outgoing.delete(vmId);
  }

  status(vmId: string): Promise<GuestStatus> {
    return this.get(vmId).status();
  }

  stats(vmId: string): Promise<GuestStats> {
    return this.get(vmId).stats();
  }

  /**
   * The migration settings QEMU holds for the guest (query-migrate-capabilities, query-migrate-parameters
   * as numbers): what a policy became at either end, for tools and for tests that check it got there.
   */
  async migrationSettings(vmId: string): Promise<{ capabilities: Record<string, boolean>; parameters: Record<string, number> }> {
    const guest = this.get(vmId);
    const caps = await guest.qmp.execute<{ capability: string; state: boolean }[]>('query-migrate-capabilities');
    const params = await guest.qmp.execute<Record<string, unknown>>('query-migrate-parameters');
    return {
      capabilities: Object.fromEntries(caps.map((c) => [c.capability, c.state])),
      parameters: Object.fromEntries(Object.entries(params).filter((e): e is [string, number] => typeof e[1] === 'number')),
    };
  }

  /** Measures the dirty rate over `calcTimeSec` (page sampling), pages/s; kept for stats(). */
  async measureDirtyRate(vmId: string, calcTimeSec = 1): Promise<number> {
    this.refuseWhileMigrating(vmId, 'measure the dirty rate');
    const guest = this.get(vmId);
    guest.lastDirtyRatePagesPerSec = await measureDirtyRate(guest.qmp, calcTimeSec);
    return guest.lastDirtyRatePagesPerSec;
  }

  /** Hashes the guest's RAM (see ram-digest.ts); meant for a stopped guest (both ends at the switch-over). */
  digest(vmId: string): Promise<RamDigest> {
    const guest = this.get(vmId);
    return digestGuestRam(guest.qmp, vmId, guest.record.spec.memoryMib * 1024 * 1024, this.shmDir);
  }

  /** Writes the guest's RAM to `file` (pmemsave), for tools and tests that compare pages. */
  dumpRam(vmId: string, file: string): Promise<void> {
    const guest = this.get(vmId);
    return dumpGuestRam(guest.qmp, vmId, guest.record.spec.memoryMib * 1024 * 1024, file);
  }

  /**
   * Target: starts a guest of `spec` with -S -incoming defer, sets the capabilities the stream needs,
   * and listens (migrate-incoming) on host:port (port 0: chosen by the kernel, reported back).
   */
  async prepareIncoming(spec: GuestSpec, opts: IncomingOptions = {}): Promise<IncomingMigration> {
    const guest = await this.start(spec, 'incoming');
    try {
      const policy = resolvePolicy(opts.policy, spec.memoryMib * 1024 * 1024);
      await guest.qmp.execute('migrate-set-capabilities', { capabilities: migrationCapabilities(policy) });
      const params = { ...targetMigrationParameters(policy), ...(await this.useTls(guest, 'server', 'vmm-tls-in', { subject: opts.peerSubject })) };
      if (Object.keys(params).length > 0) await guest.qmp.execute('migrate-set-parameters', params);
      const host = opts.host ?? '127.0.0.1';
      await guest.qmp.execute('migrate-incoming', { uri: migrationUri(host, opts.port ?? 0) });
      const info = await guest.qmp.execute<QemuMigrationInfo>('query-migrate');
      const port = opts.port || incomingPortOf(info);
      if (!port) throw new QmpCommandError('query-migrate', 'NoPort', 'the target reports no listening port');
      const incoming = new IncomingMigration(guest, host, port, () => this.recordCommitted(guest));
      this.incoming.set(spec.vmId, incoming);
      return incoming;
    } catch (err) {
      await this.remove(guest);
      throw err;
    }
  }

  /** Target: the received copy becomes the VM (`cont`). The point of no return on this end. */
  async commitIncoming(vmId: string): Promise<void> {
    const incoming = this.incoming.get(vmId);
    if (!incoming) throw new GuestNotFoundError(vmId);
    await incoming.commit();
    this.incoming.delete(vmId);
  }

  /** Target: discards the copy (QEMU quits), whatever state the incoming migration is in. */
  async abortIncoming(vmId: string): Promise<void> {
    if (!this.incoming.has(vmId) && !this.guests.has(vmId)) return;
    await this.delete(vmId);
  }

  /**
   * Source: applies the policy (migrate-set-capabilities, migrate-set-parameters) and starts `migrate`
   * to the target. The source runs on; the returned OutgoingMigration reports progress, holds the
   * switch-over at pre-switchover until continueSwitchover(), and cancels.
   */
  async startOutgoing(vmId: string, opts: OutgoingOptions): Promise<OutgoingMigration> {
    const guest = this.get(vmId);
    if (this.outgoing.has(vmId) || this.incoming.has(vmId)) throw new InvalidGuestStateError(vmId, 'migrating', 'start a migration');
    const s = await guest.qemuStatus();
    if (s !== 'running') throw new InvalidGuestStateError(vmId, s, 'migrate (the source must run)');
    const memoryBytes = guest.record.spec.memoryMib * 1024 * 1024;
    const policy = resolvePolicy(opts.policy, memoryBytes);
    await guest.qmp.execute('migrate-set-capabilities', { capabilities: migrationCapabilities(policy) });
    // One credentials object per migration: a guest that migrates again (there and back) keeps the old one.
    const tls = await this.useTls(guest, 'client', `vmm-tls-${opts.migrationId.replace(/[^A-Za-z0-9_.-]/g, '_')}`, { hostname: opts.host });
    await guest.qmp.execute('migrate-set-parameters', { ...sourceMigrationParameters(policy, memoryBytes), ...tls });
    await guest.qmp.execute('migrate', { uri: migrationUri(opts.host, opts.port) });
    const out = new OutgoingMigration(opts.migrationId, guest, policy);
    this.outgoing.set(vmId, out);
    void out.settled().then((state) => {
      if ((state === 'failed' || state === 'cancelled') && this.outgoing.get(vmId) === out) this.outgoing.delete(vmId);
    });
    return out;
  }

  /** The outgoing migration of that VM in flight, if any. */
  outgoingOf(vmId: string): OutgoingMigration | undefined {
    return this.outgoing.get(vmId);
  }

  /**
   * Reattaches to every guest of the state directory whose QEMU still runs (pid file + -name guest=
   * on its command line + QMP answering); removes the directories of guests that are gone. A target
   * found in `inmigrate` was cut off mid-migration by the restart: it is discarded, as any migration
   * the agent did not finish before it died (the controller drives the source back).
   */
  async rediscover(): Promise<string[]> {
    const found: string[] = [];
    for (const name of await readdir(this.stateDir).catch(() => [] as string[])) {
      if (!isGuestDirName(name)) continue;
      const paths = pathsIn(path.join(this.stateDir, name));
      const record = await readGuestRecord(paths.record);
      const pid = Number((await readFile(paths.pidFile, 'utf8').catch(() => '')).trim());
      const vmId = record?.spec.vmId;
      if (!record || !vmId || this.guests.has(vmId)) continue;
      if (!Number.isInteger(pid) || pid <= 0 || !(await isQemuOf(pid, vmId))) {
        await rm(paths.dir, { recursive: true, force: true });
        continue;
      }
      let qmp: QmpClient;
      try {
        qmp = await QmpClient.connect(paths.qmpSocket, { timeoutMs: 5_000 });
      } catch {
        continue; // alive but not answering: left alone, found again next time
      }
      const guest = new QemuGuest(record, pid, qmp, paths);
      this.guests.set(vmId, guest);
      if (!(await this.adoptMigration(guest))) {
        await this.remove(guest);
        continue;
      }
      found.push(vmId);
    }
    return found;
  }

  /**
   * Takes up the migration a rediscovered guest was in when the previous driver went, so that the agent
   * can finish it the controller's way: an outgoing migration still in QEMU (pre-copy, or held at the
   * gate with the source stopped) gets an OutgoingMigration handle (no round or time limit: the caller
   * decides), a target that received everything but was never committed gets an IncomingMigration in
   * `received`. Returns false for a target cut off mid-stream (it holds nothing usable: discarded).
   */
  private async adoptMigration(guest: QemuGuest): Promise<boolean> {
    const qemuStatus = await guest.qemuStatus();
    if (qemuStatus === 'gone') return true; // reported as gone; the agent deletes it
    const info = await guest.qmp.execute<QemuMigrationInfo>('query-migrate');
    if (guest.record.origin === 'incoming' && !guest.record.committed) {
      if (qemuStatus === 'inmigrate' || info.status !== 'completed') return false;
      if (qemuStatus === 'paused') {
        const incoming = new IncomingMigration(guest, '', 0, () => this.recordCommitted(guest), 'received');
        this.incoming.set(guest.vmId, incoming);
      }
      return true;
    }
    if (info.status === 'setup' || info.status === 'active' || info.status === 'pre-switchover' || info.status === 'device') {
      const unbounded = resolvePolicy({ maxRounds: Number.MAX_SAFE_INTEGER, completionTimeoutMs: Number.MAX_SAFE_INTEGER }, 0);
      this.outgoing.set(guest.vmId, new OutgoingMigration(`adopted:${guest.vmId}`, guest, unbounded));
    }
    return true;
  }

  /** A committed target is the VM from now on: its record says so before commitIncoming() returns. */
  private async recordCommitted(guest: QemuGuest): Promise<void> {
    guest.record.committed = true;
    await writeGuestRecord(guest.paths.record, guest.record);
  }

  /** Lets go of every guest without stopping them (agent shutdown); a later open() reattaches. */
  detach(): void {
    for (const g of this.guests.values()) g.detach();
    this.guests.clear();
    this.incoming.clear();
    this.outgoing.clear();
  }

  /** Stops every guest (tests, node decommissioning). */
  async destroyAll(): Promise<void> {
    await Promise.all([...this.guests.keys()].map((id) => this.delete(id).catch(() => {})));
  }

  private get(vmId: string): QemuGuest {
    const g = this.guests.get(vmId);
    if (!g) throw new GuestNotFoundError(vmId);
    return g;
  }

  private refuseWhileMigrating(vmId: string, operation: string): void {
    const out = this.outgoing.get(vmId);
    if (this.incoming.has(vmId)) throw new InvalidGuestStateError(vmId, 'incoming', operation);
    if (out && out.state !== 'failed' && out.state !== 'cancelled') throw new InvalidGuestStateError(vmId, `migration ${out.state}`, operation);
  }

  private async start(spec: GuestSpec, origin: GuestRecord['origin']): Promise<QemuGuest> {
    const resolved = resolveGuestSpec(spec);
    if (this.guests.has(spec.vmId)) throw new GuestExistsError(spec.vmId);
    const paths = guestPaths(this.stateDir, spec.vmId);
    await rm(paths.dir, { recursive: true, force: true });
    await mkdir(paths.dir, { recursive: true });
    const record: GuestRecord = { version: 1, spec: { ...spec, workload: { ...spec.workload } }, origin, accel: this.accel, createdAtMs: Date.now() };
    await writeGuestRecord(paths.record, record);
    const args = buildQemuArgs({
      vmId: spec.vmId,
      memoryMib: spec.memoryMib,
      vcpus: spec.vcpus,
      accel: this.accel,
      kernel: this.image.kernel,
      initrd: this.image.initrd,
      cmdline: buildKernelCmdline(resolved),
      paths,
      incoming: origin === 'incoming',
    });
    try {
      const { pid, qmp } = await startQemu(this.binary, args, spec.vmId, paths, 30_000);
      const guest = new QemuGuest(record, pid, qmp, paths);
      this.guests.set(spec.vmId, guest);
      return guest;
    } catch (err) {
      await rm(paths.dir, { recursive: true, force: true });
      throw err;
    }
  }

  private async remove(guest: QemuGuest): Promise<void> {
    if (this.guests.get(guest.vmId) === guest) this.guests.delete(guest.vmId);
    await guest.destroy();
  }
}

