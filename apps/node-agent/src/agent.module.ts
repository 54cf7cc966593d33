import { Module, type DynamicModule } from '@nestjs/common';
import { AgentGrpcController } from './grpc/agent.grpc-controller.js';
import { MigrationService } from './migration/migration.service.js';
import { VmManager } from './vm/vm-manager.js';

/** Objects made outside Nest (they are plain classes, testable alone) and handed to the handlers. */
export interface AgentModuleDeps {
  vms: VmManager;
  migrations: MigrationService;
}

@Module({})
export class AgentModule {
  static forRoot(deps: AgentModuleDeps): DynamicModule {
    return {
      module: AgentModule,
      controllers: [AgentGrpcController],
      providers: [
        { provide: VmManager, useValue: deps.vms },
        { provide: MigrationService, useValue: deps.migrations },
      ],
    };
  }
}
