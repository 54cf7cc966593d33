// docker-compose.yml, its overrides and the Dockerfile, kept correct by construction: every variable they
// set is one the apps read, every path they run exists after a build, the services find each other by
// name (or, on the host network of docker-compose.podman.yml, by distinct 127.0.0.1 ports) and every
// health check probes the port its process listens on. test/compose-podman.test.ts runs them.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO_ROOT } from '@vmm/local-cluster/cluster';
import { REDIS_DURABILITY_ARGS } from '@vmm/local-cluster/redis';
import { controllerEnv } from '../apps/controller/src/config.js';
import { agentEnv } from '../apps/node-agent/src/config.js';

interface Service {
  build?: string | { context: string; dockerfile?: string; args?: Record<string, string> };
  image?: string;
  pull_policy?: string;
  restart?: string;
  network_mode?: string;
  volumes?: (string | { type?: string; source?: string; target: string })[];
  command?: string[] | string;
  environment?: Record<string, string | number> | string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }> | string[];
  ports?: string[];
  user?: string;
}
interface ComposeFile {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

const read = (file: string) => readFileSync(path.join(REPO_ROOT, file), 'utf8');
const load = (file: string) => parse(read(file), { merge: true }) as ComposeFile;
const compose = load('docker-compose.yml');
// `docker compose up` without -f reads docker-compose.override.yml too; the podman run names its override.
const portsOverride = load('docker-compose.override.yml');
const podman = load('docker-compose.podman.yml');
const dockerfile = read('Dockerfile');
const services = compose.services;
// Every agent-N service is an agent: the checks below hold for however many there are.
const AGENTS = Object.keys(services).filter((name) => /^agent-\d+$/.test(name));

/** Compose's own interpolation with nothing set in the environment: `${X:-d}` → d, `$$` → `$`. */
function interpolate(value: string): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}/g, (m, _name: string, def?: string) => (m === '$$' ? '$' : (def ?? '')));
}

function envOf(s: Service): Record<string, string> {
  const env = s.environment ?? {};
  const entries = Array.isArray(env) ? env.map((kv) => [kv.split('=')[0]!, kv.slice(kv.indexOf('=') + 1)]) : Object.entries(env);
  return Object.fromEntries(entries.map(([k, v]) => [k, interpolate(String(v))]));
}

/** A shell word list as `sh -c` would split it, `${X:-d}` taken from `env` (the container's). */
function shellWords(line: string, env: Record<string, string>): string[] {
  const expanded = line.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}/g, (_m, name: string, def: string) => env[name] ?? def);
  return [...expanded.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
}

/** The process a service runs, with `sh -c "exec …"` unwrapped in the service's environment. */
function commandOf(s: Service, env = envOf(s)): string[] {
  const command = typeof s.command === 'string' ? s.command.split(/\s+/) : (s.command ?? []).map(interpolate);
  if (command[0] !== 'sh' || command[1] !== '-c') return command;
  const words = shellWords(command[2]!, env);
  return words[0] === 'exec' ? words.slice(1) : words;
}

/** The health check's words: CMD as given, CMD-SHELL split as sh would, in the service's environment. */
function healthOf(s: Service, env = envOf(s)): string[] {
  const [kind, ...rest] = (s.healthcheck?.test ?? []).map(interpolate);
  return kind === 'CMD-SHELL' ? shellWords(rest[0]!, env) : rest;
}

/** A service as Compose merges it with an override: scalars and images replaced, environments merged. */
function merged(name: string, override: ComposeFile): Service & { env: Record<string, string> } {
  const base = services[name]!;
  const over = override.services[name] ?? {};
  return { ...base, ...over, env: { ...envOf(base), ...envOf(over) } };
}

/** `["node", "x.js"]` from CMD/ENTRYPOINT lines of the Dockerfile (exec form). */
function dockerfileInstruction(name: 'CMD' | 'ENTRYPOINT'): string[] | undefined {
  const line = dockerfile.split('\n').filter((l) => l.startsWith(`${name} `)).at(-1);
  return line ? (JSON.parse(line.slice(name.length + 1)) as string[]) : undefined;
}

/** The Dockerfile's stages by name: their lines, from FROM to the next FROM. */
function stages(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of dockerfile.split(/^(?=FROM )/m).slice(1)) out[/^FROM \S+ AS (\S+)/.exec(part)?.[1] ?? '?'] = part;
  return out;
}

function buildContext(s: Service): string | undefined {
  if (typeof s.build === 'string') return s.build;
  return s.build?.context;
}

/** Variables the CLI reads (`vmctl` in the controller's container): VMCTL_SERVER, VMCTL_TOKEN_FILE… */
const cliSource = read('apps/cli/src/program.ts');
const cliReads = (key: string) => cliSource.includes(`io.env.${key}`);

describe('docker-compose.yml', () => {
  it('has redis, a controller, agents 1..3 and the certs init service', () => {
    expect(Object.keys(services).sort()).toEqual(['agent-1', 'agent-2', 'agent-3', 'certs', 'controller', 'redis']);
    expect(services.redis!.image).toMatch(/^redis:7/);
  });

  it('builds one image, vmm:local, once (the controller service, BASE_IMAGE as the Dockerfile\'s), which the others reuse', () => {
    const built = Object.entries(services).filter(([, s]) => s.build !== undefined).map(([name]) => name);
    expect(built).toEqual(['controller']);
    const controller = services.controller!;
    expect(buildContext(controller)).toBe('.');
    if (typeof controller.build === 'object' && controller.build.dockerfile) expect(controller.build.dockerfile).toBe('Dockerfile');
    const dockerfileDefault = /^ARG BASE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1];
    expect(typeof controller.build === 'object' && interpolate(controller.build.args?.BASE_IMAGE ?? '')).toBe(dockerfileDefault);
    for (const name of ['certs', 'controller', ...AGENTS]) {
      expect(services[name]!.image, name).toBe('vmm:local');
      // Never pulled (there is no such image in a registry): built by the controller service.
      if (name !== 'controller') expect(services[name]!.pull_policy, name).toBe('never');
    }
    expect(commandOf(services.controller!)).toEqual(['node', 'apps/controller/dist/main.js']);
    for (const name of AGENTS) expect(commandOf(services[name]!)).toEqual(['node', 'apps/node-agent/dist/main.js']);
  });

  it('sets only variables the apps read (controllerEnv / agentEnv; VMCTL_* for vmctl in the controller container)', () => {
    for (const key of Object.keys(envOf(services.controller!))) {
      if (key.startsWith('VMCTL_')) expect(cliReads(key), `vmctl reads ${key}`).toBe(true);
      else expect(controllerEnv, `controller sets ${key}`).toHaveProperty(key);
    }
    for (const name of AGENTS) {
      for (const key of Object.keys(envOf(services[name]!))) expect(agentEnv, `${name} sets ${key}`).toHaveProperty(key);
    }
  });

  it('lets `docker compose exec controller vmctl nodes` work: the operator token from the API tokens file', () => {
    const env = envOf(services.controller!);
    expect(env.VMCTL_TOKEN_FILE).toBe(env.API_TOKENS_FILE);
    // vmctl's default server is the controller's own API port in that container.
    expect(cliSource).toMatch(/DEFAULT_SERVER = '127\.0\.0\.1:50051'/);
    expect(env.CONTROLLER_PORT).toBe('50051');
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
    expect(command).not.toContain('--save');
    const dir = command[command.indexOf('--dir') + 1] ?? '/data'; // redis:7 images keep their files in /data
    expect(dir).toBe('/data');
    const mounts = (redis.volumes ?? []).map((v) =>
      typeof v === 'string' ? { source: v.split(':')[0], target: v.split(':')[1] } : { source: v.source, target: v.target },
    );
    const dataMount = mounts.find((m) => m.target === dir);
    expect(dataMount, `a volume mounted on ${dir}`).toBeDefined();
    expect(Object.keys(compose.volumes ?? {}), 'a named volume, not a bind mount').toContain(dataMount!.source);
    expect(['always', 'unless-stopped', 'on-failure']).toContain(redis.restart);
    // Not as root: the images' own redis user (the local base makes /data its own, as redis:7 images do).
    expect(redis.user).toBe('redis');
    expect(read('scripts/build-local-base-image.sh')).toMatch(/chown redis:redis \/data/);
    // On the compose network: port 6379 on every interface, as the controller's REDIS_URL expects.
    expect(command.slice(command.indexOf('--port'), command.indexOf('--port') + 2)).toEqual(['--port', '6379']);
    expect(command.slice(command.indexOf('--bind'), command.indexOf('--bind') + 2)).toEqual(['--bind', '0.0.0.0']);
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
    expect(nodes).toHaveLength(AGENTS.length);
    expect(mounts(certs)).toContain(`pki:${out}`);
    for (const v of ['pki', 'certs-controller', ...nodes.map((n) => `certs-${n}`)]) expect(Object.keys(compose.volumes ?? {})).toContain(v);
    for (const dir of [out, ...['controller', ...nodes].map((o) => `${out}/${o}`)]) expect(dockerfile, `${dir} made and owned by node`).toContain(dir);
    expect(dockerfile).toMatch(/chown -R node:node/);
    // An init service: the controller starts once it has finished.
    expect((services.controller!.depends_on as Record<string, { condition: string }>).certs?.condition).toBe('service_completed_successfully');
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
    expect(healthOf(services.controller!)).toContain('--plaintext');
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

  it('starts in dependency order, each waiting for the health of what it needs', () => {
    expect(services.controller!.depends_on).toMatchObject({ redis: { condition: 'service_healthy' } });
    for (const name of AGENTS) expect(services[name]!.depends_on).toMatchObject({ controller: { condition: 'service_healthy' } });
  });

  it("health-checks each process through grpc.health.v1 (its real status) on the port it listens on, with files that exist after a build", () => {
    const probe = 'tools/local-cluster/dist/health-probe.js';
    expect(existsSync(path.join(REPO_ROOT, probe)), probe).toBe(true);
    // SERVING is healthy, anything else (NOT_SERVING while Redis or the controller link is gone) is not.
    expect(read('tools/local-cluster/src/health-probe.ts')).toMatch(/process\.exit\(status === 'SERVING' \? 0 : 1\)/);
    const controller = envOf(services.controller!);
    expect(healthOf(services.controller!).slice(0, 3)).toEqual(['node', probe, `127.0.0.1:${controller.CONTROLLER_PORT}`]);
    for (const name of AGENTS) {
      const env = envOf(services[name]!);
      expect(healthOf(services[name]!), name).toEqual(['node', probe, `127.0.0.1:${env.AGENT_PORT ?? agentEnv.AGENT_PORT!.default}`]);
    }
    // The shell form reads the port from the container's environment: an agent on another port is
    // probed there (as under docker-compose.podman.yml).
    expect(healthOf(services['agent-1']!, { AGENT_PORT: '50999' })[2]).toBe('127.0.0.1:50999');
    expect(healthOf(services.redis!).join(' ')).toMatch(/^redis-cli -p 6379 ping\b/);
  });
});

describe('docker-compose.override.yml (read by `docker compose up` by default)', () => {
  it('publishes the API and the web console on 127.0.0.1, on the ports the controller listens on, and nothing else', () => {
    expect(Object.keys(portsOverride.services)).toEqual(['controller']);
    expect(Object.keys(portsOverride.services.controller!)).toEqual(['ports']);
    const env = envOf(services.controller!);
    expect(portsOverride.services.controller!.ports).toEqual([
      `127.0.0.1:${env.CONTROLLER_PORT}:${env.CONTROLLER_PORT}`,
      `127.0.0.1:${env.HTTP_PORT}:${env.HTTP_PORT}`,
    ]);
    // Host networking cannot publish ports: the base file has none, so that the podman override runs.
    for (const [name, s] of Object.entries(services)) expect(s.ports, name).toBeUndefined();
  });
});

describe('docker-compose.podman.yml (host networking, every port on 127.0.0.1)', () => {
  const all = Object.keys(services);
  const m = Object.fromEntries(all.map((name) => [name, merged(name, podman)]));
  const port = (address: string) => address.slice(address.lastIndexOf(':') + 1);

  it('sets only images, network modes and environments (podman-compose 1.0.3 appends override lists instead of replacing them)', () => {
    expect(Object.keys(podman.services).sort()).toEqual([...all].sort());
    for (const [name, s] of Object.entries(podman.services)) {
      for (const key of Object.keys(s)) expect(['image', 'network_mode', 'environment'], `${name}.${key}`).toContain(key);
      expect(s.network_mode, name).toBe('host');
    }
  });

  it('runs Redis from the local base image, which has Debian\'s redis-server, with the same durable flags', () => {
    const script = read('scripts/build-local-base-image.sh');
    const scriptDefault = /IMAGE="\$\{VMM_BASE_IMAGE:-([^}]+)\}"/.exec(script)?.[1];
    expect(interpolate(m.redis!.image!)).toBe(scriptDefault);
    expect(script).toMatch(/--include=[^ ]*\bredis-server\b/);
    expect(read('test/compose-podman.test.ts')).toContain(`'${scriptDefault}'`);
    const command = commandOf(m.redis!, m.redis!.env);
    expect(command.slice(command.indexOf(REDIS_DURABILITY_ARGS[0]!), command.indexOf(REDIS_DURABILITY_ARGS[0]!) + REDIS_DURABILITY_ARGS.length)).toEqual([
      ...REDIS_DURABILITY_ARGS,
    ]);
  });

  it('listens on 127.0.0.1 only, every process on ports of its own, and probes health there', () => {
    const redis = commandOf(m.redis!, m.redis!.env);
    expect(redis[redis.indexOf('--bind') + 1]).toBe('127.0.0.1');
    const redisPort = redis[redis.indexOf('--port') + 1]!;
    expect(healthOf(m.redis!, m.redis!.env).join(' ')).toContain(`-p ${redisPort} ping`);
    const c = m.controller!.env;
    expect(c.CONTROLLER_HOST).toBe('127.0.0.1');
    expect(healthOf(m.controller!, c)[2]).toBe(`127.0.0.1:${c.CONTROLLER_PORT}`);
    const ports = [redisPort, c.CONTROLLER_PORT, c.AGENT_PLANE_PORT, c.HTTP_PORT];
    for (const name of AGENTS) {
      const a = m[name]!.env;
      expect(a.AGENT_HOST, name).toBe('127.0.0.1');
      expect(healthOf(m[name]!, a)[2], name).toBe(`127.0.0.1:${a.AGENT_PORT}`);
      ports.push(a.AGENT_PORT!, a.AGENT_HTTP_PORT!);
    }
    for (const p of ports) expect(p).toMatch(/^[1-9]\d*$/);
    expect(new Set(ports).size, ports.join(' ')).toBe(ports.length);
    // Every port is a variable (the test passes ports it found free), with a default for people.
    const raw = read('docker-compose.podman.yml');
    for (const v of ['VMM_REDIS_PORT', 'VMM_API_PORT', 'VMM_PLANE_PORT', 'VMM_HTTP_PORT', ...AGENTS.flatMap((_, i) => [`VMM_AGENT${i + 1}_PORT`, `VMM_AGENT${i + 1}_HTTP_PORT`])]) {
      expect(raw).toMatch(new RegExp(`\\$\\{${v}:-\\d+\\}`));
    }
  });

  it('wires everything over 127.0.0.1: the controller to Redis, the agents to the agent plane, vmctl to the API', () => {
    const c = m.controller!.env;
    const redis = commandOf(m.redis!, m.redis!.env);
    expect(c.REDIS_URL).toBe(`redis://127.0.0.1:${redis[redis.indexOf('--port') + 1]}`);
    expect(c.VMCTL_SERVER).toBe(`127.0.0.1:${c.CONTROLLER_PORT}`);
    for (const name of AGENTS) {
      const a = m[name]!.env;
      expect(a.CONTROLLER_ADDRESS, name).toBe(`127.0.0.1:${c.AGENT_PLANE_PORT}`);
      expect(a.AGENT_ADVERTISE_ADDRESS, name).toBe(`127.0.0.1:${a.AGENT_PORT}`);
      expect(port(a.AGENT_ADVERTISE_ADDRESS!)).toBe(a.AGENT_PORT);
    }
    for (const key of Object.keys(c)) {
      if (key.startsWith('VMCTL_')) expect(cliReads(key), key).toBe(true);
      else expect(controllerEnv, key).toHaveProperty(key);
    }
    for (const name of AGENTS) for (const key of Object.keys(m[name]!.env)) expect(agentEnv, `${name} ${key}`).toHaveProperty(key);
  });
});

describe('Dockerfile', () => {
  const byStage = stages();

  it('takes its base image as a build argument, the official Node 20 LTS image by default, for both stages', () => {
    expect(dockerfile).toMatch(/^ARG BASE_IMAGE=node:20-bookworm-slim$/m);
    expect(dockerfile.indexOf('ARG BASE_IMAGE')).toBeLessThan(dockerfile.indexOf('FROM '));
    expect(dockerfile.match(/^FROM .*$/gm)).toEqual(['FROM ${BASE_IMAGE} AS build', 'FROM ${BASE_IMAGE} AS runtime']);
  });

  it('builds in the build stage (npm ci, npm run build), then drops the dev dependencies', () => {
    const build = byStage.build!;
    expect(build).toMatch(/^RUN npm ci\b/m);
    expect(build).toMatch(/^RUN npm run build\b/m);
    expect(build).toMatch(/^RUN npm prune --omit=dev\b/m);
    expect(build.indexOf('npm prune')).toBeGreaterThan(build.indexOf('npm run build'));
    expect(build).not.toMatch(/NODE_ENV=production/); // npm ci must install the dev dependencies first
  });

  it('runs from a runtime stage with the pruned tree only: no install of its own, NODE_ENV=production, as node', () => {
    const runtime = byStage.runtime!;
    expect(runtime).toMatch(/^COPY --from=build \/app \/app$/m);
    expect(runtime).not.toMatch(/npm (ci|install)\b/);
    expect(runtime).toMatch(/^ENV NODE_ENV=production$/m);
    expect(runtime).toMatch(/^USER node$/m);
  });

  it('puts vmctl on PATH: /usr/local/bin/vmctl runs the CLI', () => {
    const line = byStage.runtime!.split('\n').find((l) => l.includes('/usr/local/bin/vmctl'))!;
    expect(line).toContain('exec node /app/apps/cli/dist/main.js "$@"');
    expect(existsSync(path.join(REPO_ROOT, 'apps/cli/dist/main.js'))).toBe(true);
  });

  it('copies the manifest of every workspace before npm ci', () => {
    const root = JSON.parse(read('package.json')) as { workspaces: string[] };
    for (const ws of root.workspaces) expect(byStage.build!).toContain(`COPY ${ws}/package.json ${ws}/`);
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
