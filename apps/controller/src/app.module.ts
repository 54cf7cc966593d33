/** Wires the controller: config, logger and Redis as values, repositories, services, gRPC controllers. */
import { Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { LoggerModule } from 'nestjs-pino';
import { AgentClientPool } from './agent/agent-client.pool.js';
import { AgentGateway } from './agent/agent.gateway.js';
import { LOGGER, type Logger } from './common/logger.js';
import { CONFIG, type ControllerConfig } from './config.js';
import { ApiTokenGuard } from './grpc/api-token.guard.js';
import { ClusterGrpcController } from './grpc/cluster.grpc-controller.js';
import { RegistryGrpcController } from './grpc/registry.grpc-controller.js';
import { DrainCoordinator } from './migration/drain.coordinator.js';
import { MigrationUpdater } from './migration/migration-update.service.js';
import { MigrationOrchestrator } from './migration/migration.orchestrator.js';
import { MigrationService } from './migration/migration.service.js';
import { EventsService } from './events/events.service.js';
import { ChangesRepository } from './redis/changes.repository.js';
import { MigrationEventsRepository } from './redis/migration-events.repository.js';
import { MigrationQueueRepository } from './redis/migration-queue.repository.js';
import { MigrationRepository } from './redis/migration.repository.js';
import { MigrationRetentionRepository } from './redis/migration-retention.repository.js';
import { MemoryPressureBalancer } from './node/memory-pressure.balancer.js';
import { NodeReadinessSweeper } from './node/node-readiness.sweeper.js';
import { NodeService } from './node/node.service.js';
import { NodeRepository } from './redis/node.repository.js';
import { PlacementRepository } from './redis/placement.repository.js';
import { RequestRepository } from './redis/request.repository.js';
import { createKeys, REDIS, REDIS_KEYS } from './redis/redis.provider.js';
import { VmRepository } from './redis/vm.repository.js';
import { RegistryService } from './registry/registry.service.js';
import { HaSweeper } from './vm/ha.sweeper.js';
import { VmRestarter } from './vm/vm-restarter.js';
import { VmService } from './vm/vm.service.js';
import { ImageService } from './vm/image.service.js';
import { MigrationRetentionSweeper } from './migration/migration-retention.sweeper.js';
import { IdempotentCalls } from './grpc/idempotent-calls.js';
import { WatchLimits } from './grpc/watch-limits.js';

export interface AppDeps {
  config: ControllerConfig;
  logger: Logger;
  redis: Redis;
}

@Module({})
export class AppModule {
  static forRoot(deps: AppDeps): DynamicModule {
    return {
      module: AppModule,
      // Nest's own log lines through the app's pino logger (nestjs-pino; app.useLogger in main.ts).
      imports: [LoggerModule.forRoot({ pinoHttp: { logger: deps.logger } })],
      controllers: [ClusterGrpcController, RegistryGrpcController],
      providers: [
        { provide: CONFIG, useValue: deps.config },
        { provide: LOGGER, useValue: deps.logger },
        { provide: REDIS, useValue: deps.redis },
        { provide: REDIS_KEYS, useValue: createKeys(deps.config) },
        { provide: RedisCloser, useFactory: () => new RedisCloser(deps.redis) },
        NodeRepository,
        VmRepository,
        PlacementRepository,
        RequestRepository,
        MigrationRepository,
        MigrationRetentionRepository,
        MigrationQueueRepository,
        MigrationEventsRepository,
        ChangesRepository,
        EventsService,
        MigrationOrchestrator,
        AgentClientPool,
        AgentGateway,
        NodeService,
        VmService,
        ImageService,
        RegistryService,
        VmRestarter,
        HaSweeper,
        MigrationService,
        MigrationUpdater,
        NodeReadinessSweeper,
        MemoryPressureBalancer,
        DrainCoordinator,
        MigrationRetentionSweeper,
        ApiTokenGuard,
        IdempotentCalls,
        WatchLimits,
      ],
    };
  }
}

/** Closes the shared Redis connection after everything else has stopped. */
export class RedisCloser implements OnApplicationShutdown {
  constructor(private readonly redis: Redis) {}

  async onApplicationShutdown(): Promise<void> {
    if (this.redis.status === 'end') return;
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
