import type { INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FramePool, initHashing } from '@vmm/emulator';
import { Logger as NestPinoLogger } from 'nestjs-pino';
import type { Logger } from 'pino';
import { AgentModule } from './agent.module.js';
import type { AgentConfig } from './config.js';
import { AgentExceptionFilter } from './grpc/agent-exception.filter.js';
import { AGENT_SERVICE_NAME, agentGrpcOptions, createHealth, followLink } from './grpc/grpc-server.options.js';
import { createAgentMetrics, startAgentHttpServer, type AgentHttpServer } from './http/agent-metrics.js';
import { KsmService } from './ksm/ksm.service.js';
import { MigrationService } from './migration/migration.service.js';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { EmulatorHypervisor } from './hypervisor/emulator.hypervisor.js';
import type { Hypervisor } from './hypervisor/hypervisor.js';
import { QemuHypervisor } from './hypervisor/qemu/qemu.hypervisor.js';
import { LeaseGuard } from './lease/lease-guard.js';
import { ReportAckHandler } from './registry/ack-handler.js';
import { ControllerLink } from './registry/controller-link.js';
import { ReportBuilder } from './registry/report-builder.js';
import { AgentStateStore } from './state/agent-state.store.js';
import { VmManager } from './vm/vm-manager.js';

/** The lease a fresh agent assumes until the controller's first ack names one. */
export const INITIAL_LEASE_MS = 5_000;

/** A started agent: its parts (for tests and the shutdown path) and how to stop it. */
export interface RunningAgent {
  readonly app: INestMicroservice;
  readonly vms: VmManager;
  readonly migrations: MigrationService;
  readonly ksm: KsmService;
  readonly link: ControllerLink;
  readonly lease: LeaseGuard;
  /** host:port the gRPC server listens on. */
  readonly address: string;
  /** Stops reporting, stops every VM, closes the server. Idempotent. */
  stop(): Promise<void>;
}

/** Boots the agent: hashing, the VM manager, the gRPC server, then the controller link. */
export async function startAgent(config: AgentConfig, log: Logger): Promise<RunningAgent> {
  await initHashing();
  if (config.agentPlane.insecure) log.warn('AGENT_PLANE_INSECURE=1: the agent plane is plaintext and unauthenticated; anyone who reaches this port controls its VMs');
  if (!config.stateDir) log.warn('STATE_DIR is not set: fences and migration state are kept in memory only and lost when the agent restarts');
  const store = AgentStateStore.open(config.stateDir || undefined, log.child({ component: 'state' }));
  const bootId = randomUUID();
  const pool = new FramePool();
  const hypervisor = await openHypervisor(config, pool, log);
  const vms = new VmManager(
    pool,
    {
      maxVcpus: Math.floor(config.vcpus * config.cpuAllocationRatio),
      maxMemoryMib: Math.floor(config.memoryMib * config.ramAllocationRatio),
    },
    log.child({ component: 'vm-manager' }),
    undefined,
    store,
    hypervisor,
  );
  // QEMU guests are merged by the host's KSM (mem-merge=on): its counters are the node's.
  const ksm = new KsmService(vms.pool, config.ksm, log.child({ component: 'ksm' }), hypervisor.kind === 'qemu' ? 'host' : 'emulated');
  vms.setHooks({ started: (entry) => ksm.attach(entry), stopping: (entry) => ksm.detach(entry) });
  ksm.start();
  vms.adoptRediscovered();
  const migrations = new MigrationService(vms, config, log.child({ component: 'migration' }));
  const health = createHealth();
  const address = `${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`;
  const app = await NestFactory.createMicroservice(AgentModule.forRoot({ vms, migrations, ksm, log }), {
    ...agentGrpcOptions(address, health, config.agentPlane, log),
    // Held until useLogger below: Nest's start-up lines come out through pino like the rest.
    bufferLogs: true,
  });
  app.useLogger(app.get(NestPinoLogger));
  app.useGlobalFilters(new AgentExceptionFilter(log.child({ component: 'grpc' })));
  await app.listen();
  log.info({ address, advertiseAddress: config.advertiseAddress }, 'listening');

  const lease = new LeaseGuard(vms, migrations, log.child({ component: 'lease' }), INITIAL_LEASE_MS);
  lease.start();
  const reports = new ReportBuilder(vms, config, { ksm, migrations: migrations.ledger, bootId });
  const link = new ControllerLink({
    config,
    vms,
    reports,
    log: log.child({ component: 'controller-link' }),
    acks: new ReportAckHandler(vms, migrations, lease, log.child({ component: 'reconcile' })),
    bootId,
    onState: (state) => {
      if (state !== 'stopped') followLink(health, state);
    },
  });
  link.start();
  let http: AgentHttpServer | undefined;
  if (config.httpPort > 0) {
    const registry = createAgentMetrics({
      nodeId: config.nodeId,
      lastVms: () => reports.lastVms,
      imageOf: (vmId) => vms.get(vmId)?.spec.image,
      memoryUsedBytes: () => vms.pool.bytesInUse,
      ksm: () => ksm.stats(),
      linkUp: () => link.state === 'reporting',
    });
    http = await startAgentHttpServer(config.host, config.httpPort, registry);
    log.info({ port: http.port, metricsUrl: config.metricsUrl }, 'http: /metrics, /livez');
  }

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      health.setStatus('', 'NOT_SERVING');
      health.setStatus(AGENT_SERVICE_NAME, 'NOT_SERVING');
      await link.stop();
      await http?.close();
      lease.stop();
      migrations.abortAll('the node agent is shutting down');
      vms.stopAll();
      await hypervisor.shutdown(log);
      ksm.stop();
      await app.close();
      log.info('stopped');
    })());
  return { app, vms, migrations, ksm, link, lease, address, stop };
}

/**
 * The node's driver (HYPERVISOR). QEMU's state directory is STATE_DIR/qemu, or a directory of the
 * node id under the system's temporary directory, so that a restarted agent finds its guests either way.
 * @throws QemuUnavailableError (QEMU or the guest image missing): the agent does not start
 */
async function openHypervisor(config: AgentConfig, pool: FramePool, log: Logger): Promise<Hypervisor> {
  if (config.hypervisor === 'emulator') return new EmulatorHypervisor(pool);
  const stateDir = config.stateDir ? path.join(config.stateDir, 'qemu') : path.join(os.tmpdir(), `vmm-qemu-${config.nodeId}`);
  return QemuHypervisor.open({ stateDir, log: log.child({ component: 'qemu' }), tls: config.agentPlane.insecure ? undefined : config.agentPlane.material });
}
