// The compose file, run: the image built with podman from the local base (no registry image can be pulled
// here), docker-compose.yml + docker-compose.podman.yml (host networking, every port on 127.0.0.1, ports
// chosen free now) brought up by Debian's docker-compose against podman's API socket, every health check
// passing, `vmctl nodes` in the controller's container showing three READY nodes, a VM created and
// migrated there to COMPLETED; then everything the project made (containers, volumes, networks, pods)
// removed, also when a step fails. The images stay, on purpose: vmm:local and its build stage
// vmm-build:local (rebuilt by every run, so never stale: with the build stage's layers as cache a run
// where only sources changed builds in ~55-90 s, one where nothing changed in ~15 s, one from nothing in
// ~2-2.5 min, mostly npm ci and tsc), whose previous versions each run removes, and the base image
// (scripts/build-local-base-image.sh).
// Skipped, saying why, where podman, docker-compose, the base image or root are missing; CI
// (.ci/run runs scripts/build-local-base-image.sh first) fails instead of skipping.
// podman without systemd does not run health checks by itself (its timers are systemd units): this test
// runs them (`podman healthcheck run`, the containers' own checks) every 2 s, as the timers would, so that
// docker-compose's `condition: service_healthy` and the waits below see the real status.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '@vmm/local-cluster/cluster';
import { freePort } from '@vmm/local-cluster/ports';
import { waitFor } from './support/wait-for.js';

const run = promisify(execFile);
const BASE_IMAGE = process.env.VMM_BASE_IMAGE ?? 'localhost/vmm-base:bookworm-node20';
const IMAGE = 'vmm:local';
/** The Dockerfile's build stage, kept as the layer cache of the next build. */
const BUILD_IMAGE = 'vmm-build:local';
const SERVICES = ['redis', 'controller', 'agent-1', 'agent-2', 'agent-3'] as const;
const NODES = ['node-1', 'node-2', 'node-3'];

async function ok(file: string, args: string[]): Promise<boolean> {
  try {
    await run(file, args, { timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

/** The image's id, or '' when there is none by that name. */
async function imageId(name: string): Promise<string> {
  try {
    return (await run('podman', ['image', 'inspect', '--format', '{{.Id}}', name], { timeout: 30_000 })).stdout.trim();
  } catch {
    return '';
  }
}

async function whySkip(): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'not root (podman here runs rootful: scripts/ensure-podman.sh)';
  if (!(await ok('podman', ['--version']))) return 'podman is missing (bash scripts/ensure-podman.sh)';
  if (!(await ok('docker-compose', ['version']))) return 'docker-compose is missing (bash scripts/ensure-podman.sh)';
  if (!(await ok('podman', ['info']))) return "no container engine runs ('podman info' fails)";
  if (!(await ok('podman', ['image', 'exists', BASE_IMAGE]))) return `no base image ${BASE_IMAGE} (bash scripts/build-local-base-image.sh)`;
  return undefined;
}

const skipReason = await whySkip();
if (skipReason) {
  if (process.env.CI) throw new Error(`the podman compose test cannot run in CI: ${skipReason}`);
  console.warn(`[compose-podman] skipped: ${skipReason}`);
}

describe.skipIf(skipReason !== undefined)('docker-compose.yml under podman (host networking)', () => {
  const project = `vmmtest${process.pid}${Math.floor(Math.random() * 1e6)}`;
  // Made in beforeAll (a skipped suite makes nothing): podman's API socket lives there.
  let dir = '';
  let socket = '';
  const env: Record<string, string> = {};
  let service: ChildProcess | undefined;
  let pumping = false;
  let pump: NodeJS.Timeout | undefined;
  const timings: Record<string, number> = {};

  const compose = (args: string[], timeout: number) =>
    run('docker-compose', ['-p', project, '-f', 'docker-compose.yml', '-f', 'docker-compose.podman.yml', ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env, DOCKER_HOST: `unix://${socket}`, COMPOSE_INTERACTIVE_NO_CLI: '1' },
      timeout,
      maxBuffer: 64 * 1024 * 1024,
    });
  const containerOf = (svc: string) => `${project}_${svc}_1`;
  const vmctl = async (...args: string[]) => (await run('podman', ['exec', containerOf('controller'), 'vmctl', ...args], { timeout: 120_000 })).stdout;
  const projectIds = async (kind: 'ps' | 'volume' | 'network' | 'pod') => {
    const args =
      kind === 'ps' ? ['ps', '-a', '-q'] : kind === 'volume' ? ['volume', 'ls', '-q'] : kind === 'network' ? ['network', 'ls', '-q'] : ['pod', 'ps', '-q'];
    const label = kind === 'pod' ? [] : ['--filter', `label=com.docker.compose.project=${project}`];
    const { stdout } = await run('podman', [...args, ...label], { timeout: 30_000 });
    const ids = stdout.split('\n').filter(Boolean);
    if (kind !== 'pod') return ids;
    // Pods carry no compose label: those named after the project (docker-compose makes none; swept anyway).
    const { stdout: names } = await run('podman', ['pod', 'ps', '--format', '{{.ID}} {{.Name}}'], { timeout: 30_000 });
    return names.split('\n').filter((l) => l.includes(project)).map((l) => l.split(' ')[0]!);
  };
  const health = async (svc: string) =>
    (await run('podman', ['inspect', '--format', '{{.State.Health.Status}}', containerOf(svc)], { timeout: 30_000 })).stdout.trim();

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vmm-compose-'));
    socket = path.join(dir, 'podman.sock');
    let t = Date.now();
    // Host network for the build: npm ci reaches the registry as the host does. The build stage is
    // tagged too (BUILD_IMAGE), so that its layers (npm ci's above all) stay as the next run's cache;
    // the images these tags pointed to before are removed when the build moved them (nothing else is).
    const before = await Promise.all([IMAGE, BUILD_IMAGE].map(imageId));
    for (const [target, tag] of [['build', BUILD_IMAGE], ['runtime', IMAGE]] as const) {
      await run('podman', ['build', '--network', 'host', '--build-arg', `BASE_IMAGE=${BASE_IMAGE}`, '--target', target, '-t', tag, '.'], {
        cwd: REPO_ROOT,
        timeout: 600_000,
        maxBuffer: 256 * 1024 * 1024,
      });
    }
    const after = await Promise.all([IMAGE, BUILD_IMAGE].map(imageId));
    for (const [i, id] of before.entries()) if (id && id !== after[i]) await run('podman', ['rmi', id], { timeout: 60_000 }).catch(() => {});
    timings.build = Date.now() - t;

    const names = ['VMM_REDIS_PORT', 'VMM_API_PORT', 'VMM_PLANE_PORT', 'VMM_HTTP_PORT'];
    for (const n of [1, 2, 3]) names.push(`VMM_AGENT${n}_PORT`, `VMM_AGENT${n}_HTTP_PORT`);
    const ports = new Set<number>();
    while (ports.size < names.length) ports.add(await freePort());
    names.forEach((name, i) => (env[name] = String([...ports][i])));
    env.VMM_BASE_IMAGE = BASE_IMAGE;

    service = spawn('podman', ['system', 'service', '--time=0', `unix://${socket}`], { stdio: 'ignore' });
    await waitFor(() => existsSync(socket), 30_000, "podman's API socket");
    // The health-check timers podman would have with systemd.
    pump = setInterval(() => {
      if (pumping) return;
      pumping = true;
      void (async () => {
        for (const id of await projectIds('ps').catch(() => [])) await run('podman', ['healthcheck', 'run', id], { timeout: 10_000 }).catch(() => {});
      })().finally(() => (pumping = false));
    }, 2_000);

    t = Date.now();
    // Returns once the agents started, i.e. after redis and the controller were healthy and certs done.
    await compose(['up', '-d', '--no-build'], 300_000);
    await waitFor(async () => (await Promise.all(SERVICES.map(health))).every((s) => s === 'healthy'), 180_000, 'every service healthy', 1_000);
    timings.up = Date.now() - t;
  }, 900_000);

  afterAll(async () => {
    const t = Date.now();
    const errors: unknown[] = [];
    try {
      if (service) await compose(['down', '-v', '--remove-orphans', '-t', '5'], 180_000);
    } catch (err) {
      errors.push(err);
    }
    if (pump) clearInterval(pump);
    await waitFor(() => !pumping, 30_000, 'the health-check pump to stop').catch(() => {});
    // Whatever down left (or made before failing): by the project's label.
    for (const id of await projectIds('ps').catch(() => [])) await run('podman', ['rm', '-f', '-t', '0', id]).catch((e) => errors.push(e));
    for (const id of await projectIds('pod').catch(() => [])) await run('podman', ['pod', 'rm', '-f', id]).catch((e) => errors.push(e));
    for (const id of await projectIds('volume').catch(() => [])) await run('podman', ['volume', 'rm', '-f', id]).catch((e) => errors.push(e));
    for (const id of await projectIds('network').catch(() => [])) await run('podman', ['network', 'rm', '-f', id]).catch((e) => errors.push(e));
    if (service?.pid) service.kill('SIGTERM');
    if (dir) rmSync(dir, { recursive: true, force: true });
    timings.down = Date.now() - t;
    console.log(`[compose-podman] ${project}: build ${timings.build} ms, up to healthy ${timings.up} ms, down ${timings.down} ms`);
    if (skipReason === undefined && service) {
      const left = (await Promise.all((['ps', 'pod', 'volume', 'network'] as const).map(projectIds))).flat();
      expect(left, `what ${project} left behind`).toEqual([]);
    }
    if (errors.length) throw errors[0];
  }, 300_000);

  it('runs every service, healthy by its own health check, and the certs init service once', async () => {
    for (const svc of SERVICES) expect(await health(svc), svc).toBe('healthy');
    const { stdout } = await run('podman', ['inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', containerOf('certs')]);
    expect(stdout.trim()).toBe('exited 0');
    // The processes listen on 127.0.0.1 (host networking): the controller's /readyz answers there.
    const ready = await fetch(`http://127.0.0.1:${env.VMM_HTTP_PORT}/readyz`);
    expect(ready.status, await ready.text()).toBe(200);
  });

  it('has no dev dependency in the image: no package the lock file marks dev-only', async () => {
    const lock = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const dev = Object.entries(lock.packages).filter(([key, p]) => key.includes('node_modules/') && p.dev).map(([key]) => key);
    expect(dev).toContain('node_modules/typescript');
    const script = `for (const p of JSON.parse(process.env.DEV)) if (require('fs').existsSync('/app/' + p)) console.log(p)`;
    const { stdout } = await run('podman', ['run', '--rm', '--network', 'none', '-e', `DEV=${JSON.stringify(dev)}`, IMAGE, 'node', '-e', script], {
      timeout: 60_000,
    });
    expect(stdout.trim()).toBe('');
  });

  it('shows three READY nodes through `vmctl nodes` in the controller container', async () => {
    const table = await waitFor(async () => {
      const out = await vmctl('nodes');
      return NODES.every((n) => new RegExp(`^${n}\\s+READY\\b`, 'm').test(out)) && out;
    }, 60_000, 'three READY nodes in vmctl nodes', 1_000);
    console.log(table);
    const { nodes } = JSON.parse(await vmctl('nodes', '-o', 'json')) as { nodes: { nodeId: string; state: string }[] };
    expect(nodes.map((n) => n.nodeId).sort()).toEqual(NODES);
    for (const n of nodes) expect(n.state, n.nodeId).toMatch(/(^|_)READY$/);
    for (const n of nodes) expect(n.state, n.nodeId).not.toMatch(/NOT_READY/);
  });

  it('creates a VM and migrates it to another node through vmctl: COMPLETED', async () => {
    await vmctl('create', 'web', '--memory', '128', '--workload', 'uniform:1000:8', '--node', 'node-1');
    await waitFor(async () => /\bRUNNING\b/.test(await vmctl('vm', 'web')), 60_000, 'web RUNNING', 500);
    const out = await vmctl('migrate', 'web', '--to', 'node-2', '--follow');
    expect(out).toMatch(/Outcome\s+COMPLETED ✓/);
    const vm = JSON.parse(await vmctl('vm', 'web', '-o', 'json')) as { nodeId?: string; vm?: { nodeId: string } };
    expect(vm.vm?.nodeId ?? vm.nodeId).toBe('node-2');
  });
});
