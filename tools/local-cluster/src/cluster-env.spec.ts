import { describe, expect, it } from 'vitest';
// Only to check names against what the apps read (as test/compose.test.ts does); the launcher itself
// knows the apps by the path of their dist/main.js alone.
import { controllerEnv } from '../../../apps/controller/src/config.js';
import { agentEnv } from '../../../apps/node-agent/src/config.js';
import { agentEnvironment, certFiles, controllerEnvironment, type SecuritySettings } from './cluster-env.js';

const security: SecuritySettings = { certsDir: '/tmp/c/certs', insecure: false, apiTls: false };
const common = { REPORT_INTERVAL_MS: '300', LOG_LEVEL: 'warn' };

/**
 * Variables the launcher sets for version 2 (docs/api.md "The local cluster, version 2") that the apps do
 * not read yet; the lead engineer wires them. Remove a name here once its app reads it (STATE_DIR:
 * once the agent's fence work on main is merged, which reads it).
 */
const NOT_YET_READ = {
  controller: [] as string[],
  agent: [] as string[],
};

const controller = (over: Partial<Parameters<typeof controllerEnvironment>[0]> = {}) =>
  controllerEnvironment({ port: 50051, agentPlanePort: 50050, redisUrl: 'redis://127.0.0.1:6379', prefix: 'p', security, common, ...over });
const agent = (over: Partial<Parameters<typeof agentEnvironment>[0]> = {}) =>
  agentEnvironment({
    nodeId: 'node-2',
    port: 40002,
    controllerAddress: '127.0.0.1:50051',
    nodeVcpus: 8,
    nodeMemoryMib: 8192,
    hypervisor: 'emulator',
    stateDir: '/tmp/c/agents/node-2',
    security,
    common,
    ...over,
  });

describe('the environment of the controller', () => {
  it('carries the ports, Redis, tokens and the security settings', () => {
    expect(controller({ token: 'op', readToken: 'reader', httpPort: 8080, security: { ...security, apiTls: true } })).toEqual({
      ...common,
      CONTROLLER_HOST: '127.0.0.1',
      CONTROLLER_PORT: '50051',
      AGENT_PLANE_PORT: '50050',
      REDIS_URL: 'redis://127.0.0.1:6379',
      REDIS_PREFIX: 'p',
      API_TOKENS: 'op',
      API_READ_TOKENS: 'reader',
      HTTP_PORT: '8080',
      API_TLS: '1',
      TLS_CA_FILE: '/tmp/c/certs/ca.pem',
      TLS_CERT_FILE: '/tmp/c/certs/controller.pem',
      TLS_KEY_FILE: '/tmp/c/certs/controller-key.pem',
      AGENT_PLANE_INSECURE: '0',
    });
  });

  it('leaves HTTP_PORT to the controller when not given, and lets overrides win', () => {
    const env = controller({ overrides: { API_TOKENS: 'x', LOG_LEVEL: 'debug' } });
    expect(env).not.toHaveProperty('HTTP_PORT');
    expect(env).toMatchObject({ API_TOKENS: 'x', LOG_LEVEL: 'debug', API_READ_TOKENS: '', API_TLS: '0' });
  });

  it('sets only variables the controller reads, or the version-2 ones still to be wired', () => {
    const env = controller({ token: 'op', readToken: 'r', httpPort: 8080 });
    for (const key of Object.keys(env)) {
      if (!(key in controllerEnv)) expect(NOT_YET_READ.controller, `controller ${key}`).toContain(key);
    }
  });
});

describe('the environment of an agent', () => {
  it('carries its node id, port, capacity, driver, STATE_DIR and its own certificate', () => {
    expect(agent({ hypervisor: 'qemu', security: { ...security, insecure: true } })).toEqual({
      ...common,
      NODE_ID: 'node-2',
      AGENT_HOST: '127.0.0.1',
      AGENT_PORT: '40002',
      AGENT_ADVERTISE_ADDRESS: '127.0.0.1:40002',
      CONTROLLER_ADDRESS: '127.0.0.1:50051',
      NODE_VCPUS: '8',
      NODE_MEMORY_MIB: '8192',
      HYPERVISOR: 'qemu',
      STATE_DIR: '/tmp/c/agents/node-2',
      TLS_CA_FILE: '/tmp/c/certs/ca.pem',
      TLS_CERT_FILE: '/tmp/c/certs/node-2.pem',
      TLS_KEY_FILE: '/tmp/c/certs/node-2-key.pem',
      AGENT_PLANE_INSECURE: '1',
    });
  });

  it('sets only variables the agent reads, or the version-2 ones still to be wired', () => {
    for (const key of Object.keys(agent())) {
      if (!(key in agentEnv)) expect(NOT_YET_READ.agent, `agent ${key}`).toContain(key);
    }
  });

  it('names the certificate files after their owner', () => {
    expect(certFiles('/d', 'operator')).toEqual({ ca: '/d/ca.pem', cert: '/d/operator.pem', key: '/d/operator-key.pem' });
  });
});
