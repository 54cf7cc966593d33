import { Module, type DynamicModule } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import type { Logger } from 'pino';
import { AgentGrpcController } from './grpc/agent.grpc-controller.js';
import { KsmService } from './ksm/ksm.service.js';
import { MigrationService } from './migration/migration.service.js';
import { VmManager } from './vm/vm-manager.js';

/** Objects made outside Nest (they are plain classes, testable alone) and handed to the handlers. */
export interface AgentModuleDeps {
  vms: VmManager;
  migrations: MigrationService;
  ksm: KsmService;
  /** The agent's pino logger, which Nest's own messages go to as well. */
  log: Logger;
}

@Module({})
export class AgentModule {
  static forRoot(deps: AgentModuleDeps): DynamicModule {
    return {
      module: AgentModule,
      // Nest's own log lines through the agent's pino logger (nestjs-pino; app.useLogger in agent.ts).
      imports: [LoggerModule.forRoot({ pinoHttp: { logger: deps.log } })],
      controllers: [AgentGrpcController],
      providers: [
        { provide: VmManager, useValue: deps.vms },
        { provide: MigrationService, useValue: deps.migrations },
        { provide: KsmService, useValue: deps.ksm },
      ],
    };
  }
}
