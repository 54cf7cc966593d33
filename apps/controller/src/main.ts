/**
 * Controller entry point: config from the environment, Redis, the Nest gRPC microservice serving
 * cluster.v1.ClusterService, agent.v1.RegistryService, health and reflection; graceful shutdown.
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { credentials, ServerCredentials, type Server } from '@grpc/grpc-js';
import { agentPlaneServerCredentials, authorizingInterceptor, routeProcessWarnings, serverTlsCredentials } from '@vmm/tls';
import { controllerCallPolicy } from './grpc/agent-plane-policy.js';
import { AGENT_PROTO, CLUSTER_PROTO, LOADER_OPTIONS, malformedRequestInterceptor, tolerateMalformedRequests } from '@vmm/proto';
import { Logger as NestPinoLogger } from 'nestjs-pino';
import { AppModule } from './app.module.js';
import { createLogger, type Logger } from './common/logger.js';
import { ConfigError, loadControllerConfig, type ControllerConfig } from './config.js';
import { GrpcExceptionFilter } from './grpc/grpc-exception.filter.js';
import { attachHealthAndReflection, createHealth, followRedis, setAllNotServing } from './grpc/health-reflection.js';
import { createRedis } from './redis/redis.provider.js';
import { createClusterMetrics, createMetricsRegistry } from './http/cluster-metrics.js';
import { grpcMetricsInterceptor } from './grpc/grpc-metrics.interceptor.js';
import { repositoryMetricsSource } from './http/metrics-source.js';
import { startOpsHttpServer, type OpsHttpServer } from './http/ops-http.server.js';
import { createConsoleApi, loopbackAddress } from './http/console-api.js';
import { MigrationRepository } from './redis/migration.repository.js';
import { NodeRepository } from './redis/node.repository.js';
import { MigrationQueueRepository } from './redis/migration-queue.repository.js';
import { VmRepository } from './redis/vm.repository.js';

/** Receive limit (docs/api.md, Security): no request, registration or report is near it; a larger one is RESOURCE_EXHAUSTED before it is decoded. */
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export interface RunningController {
  address: string;
  /** Where agents register: the mutual-TLS port, or `address` when the plane is insecure. */
  agentPlaneAddress: string;
  /** A provider of the running app (specs drive sweeps and inspect channels through it). */
  get<T>(type: abstract new (...args: never[]) => T): T;
  close(): Promise<void>;
}

/** Starts the controller; used by main() and by in-process tests. */
export async function startController(config: ControllerConfig, logger: Logger): Promise<RunningController> {
  const redis = createRedis(config);
  redis.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
  const health = createHealth();
  const registry = createMetricsRegistry();
  const url = `${config.host}:${config.port}`;
  const hostPart = config.host.includes(':') ? `[${config.host}]` : config.host;
  // The agent plane gets its own mutual-TLS port, so that ClusterService can stay plaintext on loopback
  // (or server-only TLS) while no agent ever talks to the controller without a node certificate.
  const agentPlaneUrl = config.agentPlane.insecure ? undefined : `${hostPart}:${config.agentPlanePort}`;
  let agentPlaneBound: Promise<number> | undefined;
  if (config.agentPlane.insecure) logger.warn('AGENT_PLANE_INSECURE=1: the agent plane is plaintext; anyone who reaches the controller can register as any node');
  let app;
  try {
    app = await NestFactory.createMicroservice<MicroserviceOptions>(AppModule.forRoot({ config, logger, redis }), {
      transport: Transport.GRPC,
      // Held until useLogger below: Nest's start-up lines come out through pino like the rest.
      bufferLogs: true,
      options: {
        package: ['cluster.v1', 'agent.v1'],
        protoPath: [CLUSTER_PROTO, AGENT_PROTO],
        url,
        credentials: config.apiTls ? serverTlsCredentials(config.apiTls) : ServerCredentials.createInsecure(),
        loader: { ...LOADER_OPTIONS, includeDirs: [...LOADER_OPTIONS.includeDirs] },
        maxReceiveMessageLength: MAX_MESSAGE_BYTES,
        // Nest hands channelOptions to grpc-js's Server as they are: its interceptors option among them.
        // The metrics interceptor first: calls the authorizer refuses are counted and logged too.
        channelOptions: {
          interceptors: [grpcMetricsInterceptor(registry, logger), authorizingInterceptor(controllerCallPolicy(config.agentPlane)), malformedRequestInterceptor],
        } as Record<string, unknown>,
        // Pings on idle connections and open streams: a peer that froze or vanished is noticed in seconds.
        keepalive: { keepaliveTimeMs: 10_000, keepaliveTimeoutMs: 5_000 },
        onLoadPackageDefinition: (pkg: unknown, server: Pick<Server, 'addService'>) => {
          tolerateMalformedRequests(pkg);
          attachHealthAndReflection(server as Server, health);
          if (agentPlaneUrl !== undefined && !config.agentPlane.insecure) {
            const credentials = agentPlaneServerCredentials(config.agentPlane);
            agentPlaneBound = new Promise((resolve, reject) =>
              (server as Server).bindAsync(agentPlaneUrl, credentials, (error, port) => (error ? reject(error) : resolve(port))),
            );
            agentPlaneBound.catch(() => undefined); // awaited after listen()
          }
        },
      },
    });
  } catch (error) {
    redis.disconnect();
    throw error;
  }
  app.useLogger(app.get(NestPinoLogger));
  app.useGlobalFilters(new GrpcExceptionFilter(logger));
  const redisHealth = followRedis(health, redis, (serving) =>
    serving ? logger.info('redis is back: serving') : logger.warn('redis is unreachable: health NOT_SERVING until it is back'),
  );
  await app.listen();
  let agentPlaneAddress: string | undefined;
  if (agentPlaneBound) {
    try {
      agentPlaneAddress = `${hostPart}:${await agentPlaneBound}`;
    } catch (error) {
      await app.close();
      redisHealth.stop();
      throw new Error(`agent plane port ${agentPlaneUrl}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  let http: OpsHttpServer | undefined;
  if (config.httpPort > 0) {
    createClusterMetrics(
      repositoryMetricsSource(app.get(NodeRepository), app.get(MigrationRepository), app.get(VmRepository), app.get(MigrationQueueRepository)),
      registry,
    );
    http = await startOpsHttpServer(config.host, config.httpPort, registry, {
      notReadyReason: () => (redis.status === 'ready' ? undefined : `redis is unreachable (connection ${redis.status})`),
    }, {
      // The console is a ClusterService client like any other: TLS verified against the CA when the API is TLS.
      console: createConsoleApi(loopbackAddress(config.host, config.port), config.apiTls ? credentials.createSsl(config.apiTls.ca) : undefined),
    });
    logger.info({ port: http.port, console: `http://${config.host}:${http.port}/` }, 'http: the web console at /, /metrics, /livez, /readyz');
  }
  logger.info(
    {
      address: url,
      agentPlane: agentPlaneAddress ?? `${url} (insecure)`,
      apiTls: config.apiTls !== undefined,
      redisPrefix: config.redisPrefix,
      auth: config.apiTokens.operator.length + config.apiTokens.reader.length > 0,
    },
    'listening',
  );
  let closing: Promise<void> | undefined;
  return {
    address: url,
    agentPlaneAddress: agentPlaneAddress ?? url,
    get: (type) => app.get(type, { strict: false }),
    close: () => {
      closing ??= (async () => {
        redisHealth.stop();
        setAllNotServing(health);
        await http?.close();
        await app.close();
      })();
      return closing;
    },
  };
}

async function main(): Promise<void> {
  let config: ControllerConfig;
  try {
    config = loadControllerConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`controller: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel, config.logFormat);
  routeProcessWarnings((warning) => logger.warn({ err: warning }, 'process warning'));
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled rejection'));
  // Signal handlers first: a SIGTERM during boot still stops cleanly once the server is up.
  let stopRequested: string | undefined;
  let controller: RunningController | undefined;
  const stop = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    if (!controller) {
      stopRequested = signal;
      return;
    }
    controller.close().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  controller = await startController(config, logger);
  if (stopRequested) stop(stopRequested);
}

const isEntry = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isEntry) {
  main().catch((error: unknown) => {
    process.stderr.write(`controller: failed to start: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
