import path from 'node:path';
import { certFileNames } from '@vmm/tls/cluster-ca';

/**
 * The environment of each process of a local cluster: the apps are configured by environment
 * variables only (docs/internals.md), and a restarted process gets exactly the same one.
 */

export const HYPERVISORS = ['emulator', 'qemu'] as const;
export type Hypervisor = (typeof HYPERVISORS)[number];

/** The three planes' settings (docs/api.md, "Security"), as the launcher's options give them. */
export interface SecuritySettings {
  /** Where the CA and the certificates are (`ca.pem`, `<owner>.pem`, `<owner>-key.pem`). */
  certsDir: string;
  /** Plaintext agent plane. */
  insecure: boolean;
  /** ClusterService over TLS. */
  apiTls: boolean;
}

/** The certificate files of `owner` (`controller`, `operator`, a node id) in the certs directory. */
export function certFiles(certsDir: string, owner: string): { ca: string; cert: string; key: string } {
  // The names are npm run certs' own (libs/tls), not a second copy of them.
  const names = certFileNames(owner);
  return { ca: path.join(certsDir, 'ca.pem'), cert: path.join(certsDir, names.cert), key: path.join(certsDir, names.key) };
}

function securityEnv(security: SecuritySettings, owner: string): Record<string, string> {
  const files = certFiles(security.certsDir, owner);
  return {
    TLS_CA_FILE: files.ca,
    TLS_CERT_FILE: files.cert,
    TLS_KEY_FILE: files.key,
    AGENT_PLANE_INSECURE: security.insecure ? '1' : '0',
  };
}

export interface ControllerEnvInput {
  port: number;
  /** AGENT_PLANE_PORT: the mutual-TLS port agents dial (ignored on an insecure plane). */
  agentPlanePort: number;
  redisUrl: string;
  prefix: string;
  token?: string;
  readToken?: string;
  /** HTTP_PORT (metrics, probes, console); unset: the controller's default. */
  httpPort?: number;
  security: SecuritySettings;
  /** REPORT_INTERVAL_MS, LOG_LEVEL and the caller's extra variables: set for every process. */
  common: Record<string, string>;
  /** The caller's controller-only variables; they win. */
  overrides?: Record<string, string>;
}

export function controllerEnvironment(input: ControllerEnvInput): Record<string, string> {
  return {
    ...input.common,
    CONTROLLER_HOST: '127.0.0.1',
    CONTROLLER_PORT: String(input.port),
    AGENT_PLANE_PORT: String(input.agentPlanePort),
    REDIS_URL: input.redisUrl,
    REDIS_PREFIX: input.prefix,
    API_TOKENS: input.token ?? '',
    API_READ_TOKENS: input.readToken ?? '',
    ...(input.httpPort === undefined ? {} : { HTTP_PORT: String(input.httpPort) }),
    API_TLS: input.security.apiTls ? '1' : '0',
    ...securityEnv(input.security, 'controller'),
    ...input.overrides,
  };
}

export interface AgentEnvInput {
  nodeId: string;
  port: number;
  controllerAddress: string;
  nodeVcpus: number;
  nodeMemoryMib: number;
  hypervisor: Hypervisor;
  /** STATE_DIR: what the agent must remember across its restarts (fences) lives there. */
  stateDir: string;
  security: SecuritySettings;
  common: Record<string, string>;
  overrides?: Record<string, string>;
}

export function agentEnvironment(input: AgentEnvInput): Record<string, string> {
  return {
    ...input.common,
    NODE_ID: input.nodeId,
    AGENT_HOST: '127.0.0.1',
    AGENT_PORT: String(input.port),
    AGENT_ADVERTISE_ADDRESS: `127.0.0.1:${input.port}`,
    CONTROLLER_ADDRESS: input.controllerAddress,
    NODE_VCPUS: String(input.nodeVcpus),
    NODE_MEMORY_MIB: String(input.nodeMemoryMib),
    HYPERVISOR: input.hypervisor,
    STATE_DIR: input.stateDir,
    ...securityEnv(input.security, input.nodeId),
    ...input.overrides,
  };
}
