/**
 * An in-process controller (real Nest gRPC server, real Redis under a fresh prefix) with fake
 * agents, for specs. `stop()` removes everything it made: agents, controller, keys, redis-server.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { createLogger } from '../common/logger.js';
import { loadControllerConfig, type ControllerConfig } from '../config.js';
import { startController, type RunningController } from '../main.js';
import { TestClusterClient } from './cluster-client.js';
import { FakeAgent, type FakeAgentOptions } from './fake-agent.js';
import { deletePrefix, freePort, startTestRedis, type TestRedis } from './redis-server.fixture.js';

export interface SpecCluster {
  config: ControllerConfig;
  controller: RunningController;
  api: TestClusterClient;
  agents: FakeAgent[];
  redisUrl: string;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startSpecCluster(opts: {
  agents: FakeAgentOptions[];
  env?: Record<string, string>;
  token?: string;
}): Promise<SpecCluster> {
  const redisServer: TestRedis = await startTestRedis();
  const logger = createLogger(process.env.SPEC_LOG_LEVEL ?? 'silent');
  const config = loadControllerConfig({ AGENT_PLANE_INSECURE: '1', 
    CONTROLLER_PORT: String(await freePort()),
    REDIS_URL: redisServer.url,
    REDIS_PREFIX: `spec-${randomUUID()}`,
    REPORT_INTERVAL_MS: '200',
    ...(opts.token ? { API_TOKENS: opts.token } : {}),
    ...opts.env,
  });
  const agents: FakeAgent[] = [];
  const state = {
    controller: await startController(config, logger),
    api: undefined as unknown as TestClusterClient,
  };
  state.api = new TestClusterClient(state.controller.address, opts.token ?? null);
  const cluster: SpecCluster = {
    config,
    get controller() {
      return state.controller;
    },
    get api() {
      return state.api;
    },
    agents,
    redisUrl: redisServer.url,
    async restart() {
      await state.controller.close();
      state.api.close();
      state.controller = await startController(config, logger);
      state.api = new TestClusterClient(state.controller.address, opts.token ?? null);
    },
    async stop() {
      state.api.close();
      for (const a of agents) await a.stop();
      await state.controller.close();
      const redis = new Redis(redisServer.url);
      await deletePrefix(redis, config.redisPrefix);
      await redis.quit();
      await redisServer.stop();
    },
  };
  try {
    for (const o of opts.agents) {
      const a = new FakeAgent(o);
      agents.push(a);
      await a.start();
      await a.register(state.controller.address);
    }
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
