import { Metadata, type ClientDuplexStream, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { agentPlaneChannelCredentials } from '@vmm/tls';
import { agent } from '@vmm/proto';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config.js';
import type { VmManager } from '../vm/vm-manager.js';
import { backoffDelayMs, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js';
import type { ReportBuilder } from './report-builder.js';

/** What happens to a report's answer: the lease, the directives, the confirmations (registry/ack-handler.ts). */
export interface AckHandler {
  onAck(ack: agent.ReportAck, report: agent.NodeReport): void;
}

export const AGENT_VERSION = '0.1.0';
const REGISTER_TIMEOUT_MS = 5_000;
/** Bounds on the interval the controller may ask for. */
const MIN_REPORT_INTERVAL_MS = 10;
const MAX_REPORT_INTERVAL_MS = 60_000;
/** How long stop() lets the controller acknowledge the half-closed stream before cancelling it. */
const STOP_GRACE_MS = 500;

/**
 * The link's lifecycle:
 * idle → registering → reporting → backoff → registering → …; any state → stopped (final).
 * A Register failure goes straight from registering to backoff.
 */
export type LinkState = 'idle' | 'registering' | 'reporting' | 'backoff' | 'stopped';

const allowed: Record<LinkState, readonly LinkState[]> = {
  idle: ['registering', 'stopped'],
  registering: ['reporting', 'backoff', 'stopped'],
  reporting: ['backoff', 'stopped'],
  backoff: ['registering', 'stopped'],
  stopped: [],
};

/** gRPC channel options: reconnect fast when the controller comes back; notice a dead or frozen peer. */
const CHANNEL_OPTIONS = {
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 5_000,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
};
/** Reports waiting for their ack, at most: a controller that stopped answering gets no more. */
const MAX_UNACKED_REPORTS = 8;

export interface ControllerLinkDeps {
  config: AgentConfig;
  vms: VmManager;
  reports: ReportBuilder;
  log: Logger;
  backoff?: BackoffOptions;
  acks?: AckHandler;
  /** RegisterRequest.boot_id. */
  bootId?: string;
  /** Told every state the link enters (the agent's health follows it: SERVING only while reporting). */
  onState?: (state: LinkState) => void;
}

/**
 * Keeps this agent registered with the controller and streams one NodeReport per interval. Whatever
 * the controller does (absent, restarting, erroring), the link retries with backoff and never throws.
 */
export class ControllerLink {
  private current: LinkState = 'idle';
  private loop: Promise<void> | undefined;
  private call: ClientDuplexStream<agent.StreamReportsRequest, agent.ReportAck> | undefined;
  private registerCall: ClientUnaryCall | undefined;
  private wake: (() => void) | undefined;
  /** Report interval in force, ms: the controller's answer to Register, else the configured one. */
  intervalMs: number;
  /** Successful registrations since start (re-registrations after reconnects included). */
  registrations = 0;
  /** Reports handed to the stream since start. */
  reportsSent = 0;
  /** Acks received since start. */
  acksReceived = 0;

  constructor(private readonly deps: ControllerLinkDeps) {
    this.intervalMs = deps.config.reportIntervalMs;
  }

  get state(): LinkState {
    return this.current;
  }

  start(): void {
    if (this.current !== 'idle') return;
    this.loop = this.run();
  }

  /** Ends the report stream (half-close, then cancel after a grace period) and the retry loop. */
  async stop(): Promise<void> {
    if (this.current === 'stopped') return;
    this.transition('stopped');
    this.wake?.();
    this.registerCall?.cancel();
    const call = this.call;
    if (call) {
      call.end();
      const cancel = setTimeout(() => call.cancel(), STOP_GRACE_MS);
      await this.loop;
      clearTimeout(cancel);
    }
    await this.loop;
  }

  private transition(next: LinkState): boolean {
    if (!allowed[this.current].includes(next)) return false;
    this.deps.log.debug({ from: this.current, to: next }, 'controller link');
    this.current = next;
    this.deps.onState?.(next);
    return true;
  }

  private async run(): Promise<void> {
    const { config, log } = this.deps;
    let attempt = 0;
    while (this.transition('registering')) {
      const client = new agent.RegistryServiceClient(config.controllerAddress, agentPlaneChannelCredentials(config.agentPlane, { role: 'controller' }), CHANNEL_OPTIONS);
      try {
        const response = await this.register(client);
        attempt = 0;
        this.registrations++;
        this.intervalMs = clampInterval(response.reportIntervalMs, config.reportIntervalMs);
        log.info({ controller: config.controllerAddress, reportIntervalMs: this.intervalMs }, 'registered');
        if (!this.transition('reporting')) break;
        await this.streamReports(client);
      } catch (err) {
        log.warn({ controller: config.controllerAddress, err: describe(err) }, 'register failed');
      } finally {
        client.close();
      }
      if (!this.transition('backoff')) break;
      const delayMs = backoffDelayMs(attempt++, this.deps.backoff ?? DEFAULT_BACKOFF);
      log.debug({ delayMs, attempt }, 'reconnecting to the controller after a delay');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  private register(client: agent.RegistryServiceClient): Promise<agent.RegisterResponse> {
    const { config, vms } = this.deps;
    const request: agent.RegisterRequest = {
      nodeId: config.nodeId,
      address: config.advertiseAddress,
      vcpus: config.vcpus,
      memoryMib: config.memoryMib,
      cpuAllocationRatio: config.cpuAllocationRatio,
      ramAllocationRatio: config.ramAllocationRatio,
      agentVersion: AGENT_VERSION,
      reportIntervalMs: config.reportIntervalMs,
      vms: vms.list(),
      bootId: this.deps.bootId ?? '',
      hypervisor: config.hypervisor,
      metricsUrl: config.metricsUrl ?? '',
    };
    return new Promise((resolve, reject) => {
      this.registerCall = client.register(request, new Metadata(), { deadline: Date.now() + REGISTER_TIMEOUT_MS }, (err, response) => {
        this.registerCall = undefined;
        if (err) reject(err);
        else resolve(response);
      });
    });
  }

  /**
   * Resolves when the stream ends, for whatever reason; never rejects. Each report is answered by a
   * ReportAck (lease, directives); a report is sent only while fewer than MAX_UNACKED_REPORTS wait.
   */
  private streamReports(client: agent.RegistryServiceClient): Promise<void> {
    const { log } = this.deps;
    return new Promise<void>((resolve) => {
      let waitingForDrain = false;
      let timer: NodeJS.Timeout | undefined;
      let ended = false;
      const unacked = new Map<number, agent.NodeReport>();
      const call = client.streamReports();
      const end = (err: ServiceError | undefined): void => {
        if (ended) return;
        ended = true;
        clearInterval(timer);
        this.call = undefined;
        if (err && this.current !== 'stopped') log.warn({ err: describe(err) }, 'report stream ended');
        else if (!err) log.info('report stream closed by the controller');
        resolve();
      };
      this.call = call;
      call.on('data', (ack: agent.ReportAck) => {
        const seq = Number(ack.seq);
        const report = unacked.get(seq);
        for (const s of unacked.keys()) if (s <= seq) unacked.delete(s);
        if (!report) return;
        this.acksReceived++;
        try {
          this.deps.acks?.onAck(ack, report);
        } catch (err) {
          log.error({ err }, 'applying a report ack failed');
        }
      });
      call.on('error', (err: ServiceError) => end(err));
      call.on('end', () => end(undefined));
      const tick = (): void => {
        // A slow controller: skip this tick; the dirty log keeps accumulating for the next report.
        if (this.current !== 'reporting' || waitingForDrain || unacked.size >= MAX_UNACKED_REPORTS) return;
        let report: agent.NodeReport;
        try {
          report = this.deps.reports.build();
        } catch (err) {
          log.error({ err }, 'building a report failed');
          return;
        }
        this.reportsSent++;
        unacked.set(Number(report.seq), report);
        if (!call.write({ report })) {
          waitingForDrain = true;
          call.once('drain', () => (waitingForDrain = false));
        }
      };
      tick();
      timer = setInterval(tick, this.intervalMs);
    });
  }
}

function clampInterval(requestedMs: number, fallbackMs: number): number {
  if (!Number.isFinite(requestedMs) || requestedMs <= 0) return fallbackMs;
  return Math.min(Math.max(requestedMs, MIN_REPORT_INTERVAL_MS), MAX_REPORT_INTERVAL_MS);
}

function describe(err: unknown): { code?: number; message: string } {
  const e = err as Partial<ServiceError>;
  return { code: e?.code, message: e?.details || (err instanceof Error ? err.message : String(err)) };
}
