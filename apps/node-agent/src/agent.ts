import type { INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FramePool, initHashing } from '@vmm/emulator';
import { Logger as NestPinoLogger } from 'nestjs-pino';
import type { Logger } from 'pino';
import { AgentModule } from './agent.module.js';
import type { AgentConfig } from './config.js';
import { AgentExceptionFilter } from './grpc/agent-exception.filter.js';
import { AGENT_SERVICE_NAME, agentGrpcOptions, createHealth } from './grpc/grpc-server.options.js';
import { KsmService } from './ksm/ksm.service.js';
import { MigrationService } from './migration/migration.service.js';
import { ControllerLink } from './registry/controller-link.js';
import { ReportBuilder } from './registry/report-builder.js';
import { VmManager } from './vm/vm-manager.js';

/** A started agent: its parts (for tests and the shutdown path) and how to stop it. */
export interface RunningAgent {
  readonly app: INestMicroservice;
  readonly vms: VmManager;
  readonly migrations: MigrationService;
  readonly ksm: KsmService;
  readonly link: ControllerLink;
  /** host:port the gRPC server listens on. */
  readonly address: string;
  /** Stops reporting, stops every VM, closes the server. Idempotent. */
  stop(): Promise<void>;
}

/** Boots the agent: hashing, the VM manager, the gRPC server, then the controller link. */
export async function startAgent(config: AgentConfig, log: Logger): Promise<RunningAgent> {
  await initHashing();
  const vms = new VmManager(
    new FramePool(),
    {
      maxVcpus: Math.floor(config.vcpus * config.cpuAllocationRatio),
      maxMemoryMib: Math.floor(config.memoryMib * config.ramAllocationRatio),
    },
    log.child({ component: 'vm-manager' }),
  );
  const ksm = new KsmService(vms.pool, config.ksm, log.child({ component: 'ksm' }));
  vms.setHooks({ started: (entry) => ksm.attach(entry), stopping: (entry) => ksm.detach(entry) });
  ksm.start();
  const migrations = new MigrationService(vms, config, log.child({ component: 'migration' }));
  const health = createHealth();
  const address = `${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`;
  const app = await NestFactory.createMicroservice(AgentModule.forRoot({ vms, migrations, ksm, log }), {
    ...agentGrpcOptions(address, health),
    // Held until useLogger below: Nest's start-up lines come out through pino like the rest.
    bufferLogs: true,
  });
  app.useLogger(app.get(NestPinoLogger));
  app.useGlobalFilters(new AgentExceptionFilter(log.child({ component: 'grpc' })));
  await app.listen();
  log.info({ address, advertiseAddress: config.advertiseAddress }, 'listening');

  const link = new ControllerLink({
    config,
    vms,
    reports: new ReportBuilder(vms, config, { ksm }),
    log: log.child({ component: 'controller-link' }),
  });
  link.start();

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      health.setStatus('', 'NOT_SERVING');
      health.setStatus(AGENT_SERVICE_NAME, 'NOT_SERVING');
      await link.stop();
      migrations.abortAll('the node agent is shutting down');
      vms.stopAll();
      ksm.stop();
      await app.close();
      log.info('stopped');
    })());
  return { app, vms, migrations, ksm, link, address, stop };
}
