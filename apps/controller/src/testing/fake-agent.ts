/**
 * A fake node agent for controller specs: a real grpc-js server implementing agent.v1.AgentService
 * over loopback, holding VMs in a map, plus a registry client that registers and streams reports
 * like the real agent. Behaviour can be switched (fail CreateVm, lack SetKsm).
 */
import { Server, ServerCredentials, credentials, status, type ServiceError } from '@grpc/grpc-js';
import { agent, cluster } from '@vmm/proto';

export interface FakeAgentOptions {
  nodeId: string;
  vcpus?: number;
  memoryMib?: number;
  cpuAllocationRatio?: number;
  ramAllocationRatio?: number;
  /** Bind this port (0 = any free one); a restarted fake agent keeps its address. */
  port?: number;
}

export class FakeAgent {
  readonly vms = new Map<string, agent.VmStatus>();
  failCreate: { code: status; details: string } | undefined;
  createDelayMs = 0;
  setKsmImplemented = true;
  knobs: cluster.KsmKnobs = { run: 1, pagesToScan: 100, sleepMillisecs: 20 };
  address = '';
  /** Migration calls received, in order: "prepare:<id>", "start:<id>", "continue:<id>", "commit:<id>@<epoch>", "release:<id>@<epoch>", "abort:<id>". */
  readonly calls: string[] = [];
  /** Progress the source sends for a migration; the default converges in two rounds with equal digests. */
  progressScript: (migrationId: string) => Partial<agent.MigrationProgress>[] = defaultProgress;
  progressDelayMs = 20;
  /** ReleaseOutgoing calls to fail (UNAVAILABLE) before the next ones succeed: a source the release never reached. */
  failReleases = 0;
  /** Resident pages reported for a VM (a memory-pressure evacuation frees that much). */
  residentPagesOf: (vmId: string) => number = () => 77;
  /** Merged into every report (e.g. memoryUsedBytes to fake memory pressure). */
  reportOverrides: Partial<agent.NodeReport> = {};
  private readonly incoming = new Map<string, agent.VmSpec>();
  private readonly aborted = new Set<string>();
  /** ContinueSwitchover answers UNAVAILABLE (the call never reached the source). */
  failContinue = false;
  /** Runs when ContinueSwitchover arrives, before it is answered (a spec looks at the record then). */
  beforeContinue: (migrationId: string) => Promise<void> = async () => undefined;
  /** Migrations whose source holds at the switch-over: what ContinueSwitchover lets go on. */
  private readonly held = new Map<string, () => void>();
  private server = new Server();
  private reportStream: ReturnType<agent.RegistryServiceClient['streamReports']> | undefined;
  /** Every ReportAck the controller sent, in order. */
  readonly acks: agent.ReportAck[] = [];
  private seq = 0;
  private registry: agent.RegistryServiceClient | undefined;
  private reportTimer: NodeJS.Timeout | undefined;

  constructor(readonly options: FakeAgentOptions) {}

  async start(): Promise<void> {
    this.server = new Server();
    const impl: agent.AgentServiceServer = {
      createVm: (call, cb) => {
        const reply = () => {
          if (this.failCreate) return cb(err(this.failCreate.code, this.failCreate.details));
          const spec = call.request.spec!;
          const vm: agent.VmStatus = {
            vmId: spec.vmId,
            state: cluster.VmState.VM_STATE_RUNNING,
            pagesTotal: spec.memoryMib * 256,
            writesTotal: 0,
            residentPages: 3,
            fencingEpoch: spec.fencingEpoch,
            spec,
          };
          this.vms.set(spec.vmId, vm);
          cb(null, vm);
        };
        if (this.createDelayMs > 0) setTimeout(reply, this.createDelayMs);
        else reply();
      },
      deleteVm: (call, cb) => {
        if (!this.vms.delete(call.request.vmId)) return cb(err(status.NOT_FOUND, `no vm ${call.request.vmId}`));
        cb(null, {});
      },
      setVmPower: (call, cb) => {
        const vm = this.vms.get(call.request.vmId);
        if (!vm) return cb(err(status.NOT_FOUND, `no vm ${call.request.vmId}`));
        const A = agent.PowerAction;
        const S = cluster.VmState;
        const to = { [A.POWER_ACTION_PAUSE]: S.VM_STATE_PAUSED, [A.POWER_ACTION_STOP]: S.VM_STATE_STOPPED }[call.request.action as string];
        vm.state = to ?? S.VM_STATE_RUNNING;
        cb(null, vm);
      },
      listVms: (_call, cb) => cb(null, { vms: [...this.vms.values()] }),
      setKsm: (call, cb) => {
        if (!this.setKsmImplemented) return cb(err(status.UNIMPLEMENTED, 'SetKsm'));
        this.knobs = { ...this.knobs, ...stripUnset(call.request.knobs ?? {}) };
        cb(null, { knobs: this.knobs, stats: { pagesShared: 5, pagesSharing: 9, pagesUnshared: 1, pagesVolatile: 0, fullScans: 2, generalProfitBytes: 4096 } });
      },
      prepareIncoming: (call, cb) => {
        this.calls.push(`prepare:${call.request.migrationId}`);
        this.incoming.set(call.request.migrationId, call.request.spec!);
        cb(null, { dataAddress: '127.0.0.1:9' });
      },
      startOutgoing: (call) => {
        const id = call.request.migrationId;
        this.calls.push(`start:${id}`);
        const steps = this.progressScript(id);
        let i = 0;
        const next = () => {
          if (call.cancelled) return;
          if (this.aborted.has(id)) {
            call.write(agent.MigrationProgress.fromPartial({ phase: cluster.MigrationPhase.MIGRATION_PHASE_CANCELLED, error: 'aborted' }));
            return call.end();
          }
          if (i >= steps.length) return call.end();
          const step = steps[i++]!;
          call.write(agent.MigrationProgress.fromPartial(step));
          if (!step.awaitingSwitchover) return void setTimeout(next, this.progressDelayMs);
          // Held like QEMU's source: the next step only after ContinueSwitchover, else a rollback after the hold.
          const timer = setTimeout(() => {
            this.held.delete(id);
            if (call.cancelled) return;
            call.write(agent.MigrationProgress.fromPartial({ phase: cluster.MigrationPhase.MIGRATION_PHASE_FAILED, error: 'hold timed out', errorReason: 'SWITCHOVER_TIMEOUT' }));
            call.end();
          }, step.switchoverHoldMs || 5_000);
          this.held.set(id, () => {
            clearTimeout(timer);
            next();
          });
        };
        setTimeout(next, this.progressDelayMs);
      },
      commitIncoming: (call, cb) => {
        const id = call.request.migrationId;
        this.calls.push(`commit:${id}@${call.request.fencingEpoch}`);
        const spec = this.incoming.get(id);
        if (!spec) return cb(err(status.NOT_FOUND, `no incoming migration ${id}`));
        this.vms.set(spec.vmId, {
          vmId: spec.vmId,
          state: cluster.VmState.VM_STATE_RUNNING,
          pagesTotal: spec.memoryMib * 256,
          writesTotal: 0,
          residentPages: 3,
          fencingEpoch: call.request.fencingEpoch,
          spec: { ...spec, fencingEpoch: call.request.fencingEpoch },
        });
        cb(null, { resumedAtMs: Date.now() });
      },
      releaseOutgoing: (call, cb) => {
        this.calls.push(`release:${call.request.migrationId}@${call.request.fencingEpoch}`);
        if (this.failReleases > 0) {
          this.failReleases--;
          return cb(err(status.UNAVAILABLE, 'release lost on the way'));
        }
        this.vms.delete(call.request.vmId);
        cb(null, {});
      },
      abortMigration: (call, cb) => {
        this.calls.push(`abort:${call.request.migrationId}`);
        this.aborted.add(call.request.migrationId);
        this.incoming.delete(call.request.migrationId);
        cb(null, {});
      },
      continueSwitchover: (call, cb) => {
        const id = call.request.migrationId;
        this.calls.push(`continue:${id}`);
        if (this.failContinue) return cb(err(status.UNAVAILABLE, 'ContinueSwitchover lost on the way'));
        const go = this.held.get(id);
        if (!go) return cb(err(status.FAILED_PRECONDITION, `migration ${id} does not hold at the switch-over`));
        this.held.delete(id);
        void this.beforeContinue(id).then(() => {
          cb(null, {});
          setTimeout(go, this.progressDelayMs);
        });
      },
      updateOutgoing: (call, cb) => {
        const r = call.request;
        this.calls.push(`update:${r.migrationId}:${r.downtimeLimitMs ?? ''}:${r.maxBandwidthMibPerSec ?? ''}:${r.forceComplete}`);
        cb(null, {});
      },
    };
    this.server.addService(agent.AgentServiceService, impl);
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`127.0.0.1:${this.options.port ?? 0}`, ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    this.address = `127.0.0.1:${port}`;
    this.options.port = port;
  }

  /** Like a killed agent process: the server goes away at once (connections reset), reporting stops. */
  kill(): void {
    this.stopReporting();
    this.server.forceShutdown();
  }

  registerRequest(): agent.RegisterRequest {
    const o = this.options;
    return agent.RegisterRequest.fromPartial({
      nodeId: o.nodeId,
      address: this.address,
      vcpus: o.vcpus ?? 8,
      memoryMib: o.memoryMib ?? 8192,
      cpuAllocationRatio: o.cpuAllocationRatio ?? 4,
      ramAllocationRatio: o.ramAllocationRatio ?? 1.5,
      agentVersion: 'fake',
      reportIntervalMs: 1000,
      vms: [...this.vms.values()],
    });
  }

  /** Registers with the controller, opens the report stream and reports at the interval it was told. */
  async register(controllerAddress: string): Promise<agent.RegisterResponse> {
    this.registry?.close();
    this.registry = new agent.RegistryServiceClient(controllerAddress, credentials.createInsecure());
    const registry = this.registry;
    const res = await new Promise<agent.RegisterResponse>((resolve, reject) =>
      registry.register(this.registerRequest(), (e, r) => (e ? reject(e) : resolve(r))),
    );
    this.stopReporting();
    const stream = registry.streamReports();
    stream.on('data', (ack: agent.ReportAck) => this.acks.push(ack));
    stream.on('error', () => undefined);
    this.reportStream = stream;
    this.reportTimer = setInterval(() => void this.report().catch(() => undefined), Number(res.reportIntervalMs));
    return res;
  }

  /** Sends one report with the current VMs; resolves once written. */
  report(extra: Partial<agent.NodeReport> = {}): Promise<void> {
    const stream = this.reportStream;
    if (!stream) return Promise.reject(new Error('not registered'));
    const report = agent.NodeReport.fromPartial({
      nodeId: this.options.nodeId,
      seq: ++this.seq,
      sentAtMs: Date.now(),
      memoryUsedBytes: 64 * 1024 * 1024,
      ksm: { pagesShared: 1, pagesSharing: 2, pagesUnshared: 3, pagesVolatile: 4, fullScans: 5, generalProfitBytes: 8192 },
      ksmKnobs: this.knobs,
      vms: [...this.vms.values()].map((vm) => ({
        vmId: vm.vmId,
        state: vm.state,
        pagesTotal: vm.pagesTotal,
        dirtyRatePagesPerSec: 12.5,
        workingSetPages: 40,
        residentPages: this.residentPagesOf(vm.vmId),
        fencingEpoch: vm.fencingEpoch,
      })),
      ...this.reportOverrides,
      ...extra,
    });
    return new Promise((resolve) => stream.write({ report }, () => resolve()));
  }

  stopReporting(): void {
    if (this.reportTimer) clearInterval(this.reportTimer);
    this.reportTimer = undefined;
    this.reportStream?.end();
    this.reportStream = undefined;
  }

  async stop(): Promise<void> {
    this.stopReporting();
    this.registry?.close();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
  }
}

/** defaultProgress with a source that holds at the switch-over (QEMU's) until ContinueSwitchover. */
export function heldProgress(): Partial<agent.MigrationProgress>[] {
  return defaultProgress().map((step) => (step.phase === cluster.MigrationPhase.MIGRATION_PHASE_STOP_AND_COPY ? { ...step, awaitingSwitchover: true, switchoverHoldMs: 5_000 } : step));
}

export function defaultProgress(): Partial<agent.MigrationProgress>[] {
  const P = cluster.MigrationPhase;
  const base = { pagesTotal: 1000 };
  return [
    { ...base, phase: P.MIGRATION_PHASE_PRECOPY, round: 0, pagesSent: 1000, bytesSent: 4_096_000, dirtyPagesRemaining: 50, expectedDowntimeMs: 40 },
    { ...base, phase: P.MIGRATION_PHASE_PRECOPY, round: 1, pagesSent: 1050, bytesSent: 4_300_800, dirtyPagesRemaining: 5, expectedDowntimeMs: 4 },
    { ...base, phase: P.MIGRATION_PHASE_STOP_AND_COPY, round: 2, pagesSent: 1055, pausedAtMs: Date.now() },
    { ...base, phase: P.MIGRATION_PHASE_COMMITTING, round: 2, pagesSent: 1055, sourceDigest: 'abc123', targetDigest: 'abc123', pausedAtMs: Date.now(), downtimeMs: 12 },
  ];
}

function err(code: status, details: string): ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: undefined as never });
}

function stripUnset(k: cluster.KsmKnobs): cluster.KsmKnobs {
  return Object.fromEntries(Object.entries(k).filter(([, v]) => v !== undefined && v !== null)) as cluster.KsmKnobs;
}
