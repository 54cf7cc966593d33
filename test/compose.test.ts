// No Docker engine runs here, so docker-compose.yml and the Dockerfile are kept correct by
// construction: every variable they set is one the apps read, every path they run exists after a
// build, and the services find each other by name.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO_ROOT } from '@vmm/local-cluster/cluster';
import { REDIS_DURABILITY_ARGS } from '@vmm/local-cluster/redis';
import { controllerEnv } from '../apps/controller/src/config.js';
import { agentEnv } from '../apps/node-agent/src/config.js';

interface Service {
  build?: string | { context: string; dockerfile?: string };
  image?: string;
  restart?: string;
  volumes?: (string | { type?: string; source?: string; target: string })[];
  command?: string[] | string;
  environment?: Record<string, string | number> | string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }> | string[];
}

const compose = parse(readFileSync(path.join(REPO_ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
};
const dockerfile = readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
const services = compose.services;
const AGENTS = ['agent-1', 'agent-2', 'agent-3'];

function envOf(s: Service): Record<string, string> {
  const env = s.environment ?? {};
  if (Array.isArray(env)) return Object.fromEntries(env.map((kv) => [kv.split('=')[0]!, kv.slice(kv.indexOf('=') + 1)]));
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)]));
}

function commandOf(s: Service): string[] {
  return typeof s.command === 'string' ? s.command.split(/\s+/) : (s.command ?? []);
}

/** `["node", "x.js"]` from CMD/ENTRYPOINT lines of the Dockerfile (exec form). */
function dockerfileInstruction(name: 'CMD' | 'ENTRYPOINT'): string[] | undefined {
  const line = dockerfile.split('\n').filter((l) => l.startsWith(`${name} `)).at(-1);
  return line ? (JSON.parse(line.slice(name.length + 1)) as string[]) : undefined;
}

function buildContext(s: Service): string | undefined {
  if (typeof s.build === 'string') return s.build;
  return s.build?.context;
}

describe('docker-compose.yml', () => {
  it('has redis, a controller and agents 1..3', () => {
    expect(Object.keys(services).sort()).toEqual(['agent-1', 'agent-2', 'agent-3', 'certs', 'controller', 'redis']);
    expect(services.redis!.image).toMatch(/^redis:7/);
  });

  it('builds the controller and the agents from the repository Dockerfile, with the right commands', () => {
    for (const name of ['controller', ...AGENTS]) {
      const s = services[name]!;
      expect(buildContext(s), `${name} build context`).toBe('.');
      if (typeof s.build === 'object' && s.build.dockerfile) expect(s.build.dockerfile).toBe('Dockerfile');
    }
    expect(commandOf(services.controller!)).toEqual(['node', 'apps/controller/dist/main.js']);
    for (const name of AGENTS) expect(commandOf(services[name]!)).toEqual(['node', 'apps/node-agent/dist/main.js']);
  });

  it('sets only variables the apps read (controllerEnv / agentEnv)', () => {
    for (const key of Object.keys(envOf(services.controller!))) expect(controllerEnv, `controller sets ${key}`).toHaveProperty(key);
    for (const name of AGENTS) {
      for (const key of Object.keys(envOf(services[name]!))) expect(agentEnv, `${name} sets ${key}`).toHaveProperty(key);
    }
  });

  it('runs a durable Redis: AOF with appendfsync always, its directory on a named volume, restarted when it dies', () => {
    const redis = services.redis!;
    const command = commandOf(redis);
    expect(command[0]).toBe('redis-server');
    // The flags of every Redis the project starts, in order, and nothing that turns persistence off.
    const at = command.indexOf(REDIS_DURABILITY_ARGS[0]!);
    expect(at, command.join(' ')).toBeGreaterThan(0);
    expect(command.slice(at, at + REDIS_DURABILITY_ARGS.length)).toEqual([...REDIS_DURABILITY_ARGS]);
    expect(command.filter((arg) => arg === '--appendonly')).toHaveLength(1);
    const dir = command[command.indexOf('--dir') + 1] ?? '/data'; // redis:7 images keep their files in /data
    const mounts = (redis.volumes ?? []).map((v) =>
      typeof v === 'string' ? { source: v.split(':')[0], target: v.split(':')[1] } : { source: v.source, target: v.target },
    );
    const dataMount = mounts.find((m) => m.target === dir);
    expect(dataMount, `a volume mounted on ${dir}`).toBeDefined();
    expect(Object.keys(compose.volumes ?? {}), 'a named volume, not a bind mount').toContain(dataMount!.source);
    expect(['always', 'unless-stopped', 'on-failure']).toContain(redis.restart);
  });

  it('restarts every service that dies', () => {
    for (const [name, s] of Object.entries(services)) expect(['always', 'unless-stopped', 'on-failure'], name).toContain(s.restart);
  });

  it('wires the controller to redis and the agents to the controller by service name', () => {
    const controller = envOf(services.controller!);
    expect(controller.REDIS_URL).toBe('redis://redis:6379');
    expect(controller.CONTROLLER_HOST).toBe('0.0.0.0');
    // Agents dial the controller's mutual-TLS agent-plane port, not the API's.
    const port = controller.AGENT_PLANE_PORT ?? String(controllerEnv.AGENT_PLANE_PORT!.default);
    for (const name of AGENTS) expect(envOf(services[name]!).CONTROLLER_ADDRESS).toBe(`controller:${port}`);
  });

  it('runs the agent plane over mutual TLS: the certs service makes the CA and certificates, each process mounts only its own', () => {
    const certs = services.certs!;
    const command = commandOf(certs);
    expect(command.slice(0, 2)).toEqual(['node', 'libs/tls/dist/certs-cli.js']);
    expect(existsSync(path.join(REPO_ROOT, command[1]!)), command[1]).toBe(true);
    expect(command).toContain('--split');
    const nodes = command[command.indexOf('--nodes') + 1]!.split(',');
    const out = command[command.indexOf('--out') + 1]!;
    const hosts = command[command.indexOf('--hosts') + 1]!.split(',');
    const mounts = (s: Service) => (s.volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`));
    const owners = [['controller', 'controller'], ...AGENTS.map((name) => [name, envOf(services[name]!).NODE_ID!])] as const;
    for (const [service, owner] of owners) {
      const env = envOf(services[service]!);
      expect(env.AGENT_PLANE_INSECURE ?? '0', service).toBe('0');
      expect(env, service).toMatchObject({ TLS_CA_FILE: '/certs/ca.pem', TLS_CERT_FILE: `/certs/${owner}.pem`, TLS_KEY_FILE: `/certs/${owner}-key.pem` });
      // Its own volume, which the certs service fills from <out>/<owner>: nobody else's key, not the CA's.
      expect(mounts(services[service]!), service).toEqual([`certs-${owner}:/certs:ro`]);
      expect(mounts(certs), service).toContain(`certs-${owner}:${out}/${owner}`);
      expect(hosts, `${service} is named in the server certificates`).toContain(service);
      expect(Object.keys(services[service]!.depends_on ?? {}).some((d) => d === 'certs' || d === 'controller'), service).toBe(true);
    }
    for (const name of AGENTS) expect(nodes).toContain(envOf(services[name]!).NODE_ID);
    expect(mounts(certs)).toContain(`pki:${out}`);
    for (const v of ['pki', 'certs-controller', ...nodes.map((n) => `certs-${n}`)]) expect(Object.keys(compose.volumes ?? {})).toContain(v);
    for (const dir of [out, ...['controller', ...nodes].map((o) => `${out}/${o}`)]) expect(dockerfile, `${dir} made and owned by node`).toContain(dir);
    expect(dockerfile).toMatch(/chown -R node:node/);
  });

  it('requires an API token once the API leaves the container: the certs service makes it, the controller reads it from a file', () => {
    const certs = commandOf(services.certs!);
    const tokenFile = certs[certs.indexOf('--api-token-file') + 1]!;
    const controller = envOf(services.controller!);
    expect(controller.CONTROLLER_HOST).toBe('0.0.0.0');
    expect(controller.API_TOKENS_FILE).toBe(`/certs/${path.basename(tokenFile)}`);
    expect(tokenFile).toBe(`${certs[certs.indexOf('--out') + 1]}/controller/${path.basename(tokenFile)}`);
    expect(controller.API_TOKENS ?? '').toBe('');
    // Its health check speaks plaintext to the API port although the certificates are in its environment.
    expect(services.controller!.healthcheck?.test).toContain('--plaintext');
  });

  it('gives each agent a unique NODE_ID and an advertised address that resolves to its own service', () => {
    const nodeIds = AGENTS.map((name) => envOf(services[name]!).NODE_ID);
    expect(new Set(nodeIds).size).toBe(AGENTS.length);
    for (const id of nodeIds) expect(id).toMatch(/^\S+$/);
    for (const name of AGENTS) {
      const env = envOf(services[name]!);
      // Inside the container the agent listens on every interface; peers reach it by service name.
      expect(env.AGENT_HOST).toBe('0.0.0.0');
      const agentPort = env.AGENT_PORT ?? String(agentEnv.AGENT_PORT!.default);
      expect(env.AGENT_ADVERTISE_ADDRESS).toBe(`${name}:${agentPort}`);
    }
  });

  it('starts in dependency order and health-checks with files that exist after a build', () => {
    expect(Object.keys(services.controller!.depends_on ?? {})).toContain('redis');
    for (const name of AGENTS) expect(Object.keys(services[name]!.depends_on ?? {})).toContain('controller');
    for (const name of ['controller', ...AGENTS]) {
      const test = services[name]!.healthcheck?.test ?? [];
      const script = test.find((arg) => arg.endsWith('.js'));
      if (script) expect(existsSync(path.join(REPO_ROOT, script)), script).toBe(true);
    }
  });
});

describe('Dockerfile', () => {
  it('builds on node:20-bookworm-slim with npm ci and npm run build', () => {
    expect(dockerfile).toMatch(/^FROM node:20-bookworm-slim/m);
    expect(dockerfile).toMatch(/^RUN npm ci\b/m);
    expect(dockerfile).toMatch(/^RUN npm run build\b/m);
  });

  it('copies the manifest of every workspace before npm ci', () => {
    const root = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { workspaces: string[] };
    for (const ws of root.workspaces) expect(dockerfile).toContain(`COPY ${ws}/package.json ${ws}/`);
  });

  it('runs the controller by default, from a path that exists after a build', () => {
    const command = [...(dockerfileInstruction('ENTRYPOINT') ?? []), ...(dockerfileInstruction('CMD') ?? [])];
    expect(command).toEqual(['node', 'apps/controller/dist/main.js']);
    for (const arg of command.filter((a) => a.endsWith('.js'))) expect(existsSync(path.join(REPO_ROOT, arg)), arg).toBe(true);
    for (const s of Object.values(services)) {
      for (const arg of commandOf(s).filter((a) => a.endsWith('.js'))) expect(existsSync(path.join(REPO_ROOT, arg)), arg).toBe(true);
    }
  });
});
