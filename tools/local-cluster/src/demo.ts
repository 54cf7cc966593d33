#!/usr/bin/env node
// `npm run demo`: a local cluster (Redis, a controller, 3 agents) and the real `vmctl` at work on it:
// nodes, VMs of two images with different workloads, their measured dirty rates, a live migration
// of the busiest VM with its progress and digest check, then a clean stop of every process.
// It prints the web console's address (port 8080 when free, or --http-port H). Options: --agents N,
// --keep (leave the cluster running until Ctrl-C, the console with it), --supervise (restart any
// process of the cluster that dies, as `npm run cluster -- --supervise`), --verbose.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cluster } from '@vmm/proto';
import { REPO_ROOT, startCluster, type LocalCluster } from './cluster.js';
import { delay, freePort, isPortFree } from './ports.js';
import { onTerminationSignal, stopAll } from './processes.js';
import { routeProcessWarnings } from '@vmm/tls/process-warnings';
import { describeProcessEvent } from './supervised-process.js';

const VMCTL_MAIN = path.join(REPO_ROOT, 'apps/cli/dist/main.js');

const tty = process.stdout.isTTY === true && process.env.NO_COLOR === undefined;
const ansi = (code: string) => (text: string) => (tty ? `\x1b[${code}m${text}\x1b[0m` : text);
const bold = ansi('1');
const dim = ansi('2');
const cyan = ansi('36');
const yellow = ansi('33');

/** The VMs the demo creates: two images, four workload kinds. */
const DEMO_VMS: readonly string[][] = [
  ['web-1', '--image', 'debian-12', '--vcpus', '2', '--memory', '512', '--workload', 'uniform:2000', '--label', 'tier=web'],
  ['web-2', '--image', 'debian-12', '--vcpus', '2', '--memory', '512', '--workload', 'uniform:2000', '--label', 'tier=web'],
  ['db-1', '--image', 'ubuntu-24.04', '--vcpus', '4', '--memory', '1024', '--workload', 'hotcold:8000:256', '--label', 'tier=db'],
  ['cache-1', '--image', 'alpine-3.20', '--vcpus', '1', '--memory', '512', '--workload', 'sequential:20000', '--label', 'tier=cache'],
  ['idle-1', '--image', 'alpine-3.20', '--vcpus', '1', '--memory', '256', '--workload', 'idle'],
];

const RATES_TIMEOUT_MS = 30_000;
/** vmctl's exit code when the server answers UNIMPLEMENTED (apps/cli/src/errors.ts). */
const VMCTL_EXIT_UNIMPLEMENTED = 3;
const WARN = 40; // pino level

let current: ChildProcess | undefined;
let step = 0;

function heading(title: string): void {
  step += 1;
  process.stdout.write(`\n${bold(cyan(`── ${step}. ${title} `))}${cyan('─'.repeat(Math.max(3, 60 - title.length)))}\n`);
}

function note(text: string): void {
  process.stdout.write(`${dim(text)}\n`);
}

/** Runs the real CLI as a child on this terminal, after printing the command line like a shell. */
function vmctl(server: string, ...args: string[]): Promise<number> {
  process.stdout.write(`\n${bold('$ vmctl')} ${args.join(' ')}\n`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [VMCTL_MAIN, ...args], {
      stdio: 'inherit',
      env: { ...process.env, VMCTL_SERVER: server },
    });
    current = child;
    child.once('exit', (code, signal) => {
      current = undefined;
      resolve(code ?? (signal ? 128 : 1));
    });
    child.once('error', (err) => {
      current = undefined;
      process.stderr.write(`cannot run vmctl: ${err.message}\n`);
      resolve(1);
    });
  });
}

/** Children log pino JSON; the demo shows only their warnings and errors (all with --verbose). */
function echoChildLine(verbose: boolean) {
  return (name: string, line: string, stream: 'stdout' | 'stderr'): void => {
    if (!verbose) {
      if (name === 'redis') return;
      try {
        const level = (JSON.parse(line) as { level?: number }).level;
        if (typeof level === 'number' && level < WARN) return;
      } catch {
        if (stream === 'stdout') return;
      }
    }
    process.stderr.write(dim(`[${name}] ${line}`) + '\n');
  };
}

async function listVms(api: ReturnType<LocalCluster['api']>): Promise<cluster.Vm[]> {
  const vms: cluster.Vm[] = [];
  let pageToken = '';
  do {
    const page = await api.listVms({ nodeId: '', pageSize: 100, pageToken });
    vms.push(...page.vms);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return vms;
}

/**
 * Polls ListVms until every busy VM reports a measured dirty rate of at least half its workload's
 * write rate (the first report after a start covers only part of a window). Every demo workload dirties
 * more than half as many distinct pages as it writes; after the timeout it shows what is reported.
 */
async function waitForDirtyRates(api: ReturnType<LocalCluster['api']>): Promise<boolean> {
  const deadline = Date.now() + RATES_TIMEOUT_MS;
  for (;;) {
    const busy = (await listVms(api)).filter((vm) => vm.workload && vm.workload.dirtyRatePagesPerSec > 0);
    if (busy.length > 0 && busy.every((vm) => vm.dirtyRatePagesPerSec >= vm.workload!.dirtyRatePagesPerSec / 2)) return true;
    if (Date.now() > deadline) return false;
    await delay(250);
  }
}

const KSM_TIMEOUT_MS = 20_000;

/** The node running the most VMs of one image (the sharing-aware weigher gathers them). */
function nodeSharingAnImage(vms: readonly cluster.Vm[]): { nodeId: string; image: string; count: number } | undefined {
  const counts = new Map<string, number>();
  for (const vm of vms) {
    if (vm.image === 'empty') continue;
    const key = `${vm.nodeId}\u0000${vm.image}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const [key, count] = [...counts].sort((a, b) => b[1] - a[1])[0] ?? [];
  if (!key || !count || count < 2) return undefined;
  const [nodeId, image] = key.split('\u0000');
  return { nodeId: nodeId!, image: image!, count };
}

/**
 * Waits until ksmd has merged and settled on the node: two full scans at least (a page must be
 * unchanged between two scans before it merges, as in Linux) and pages_sharing no longer growing.
 */
async function waitForKsm(api: ReturnType<LocalCluster['api']>, nodeId: string): Promise<boolean> {
  const deadline = Date.now() + KSM_TIMEOUT_MS;
  let last = -1;
  for (;;) {
    const ksm = (await api.getNode({ nodeId })).ksm;
    const sharing = ksm?.pagesSharing ?? 0;
    if ((ksm?.fullScans ?? 0) >= 3 && sharing > 0 && sharing === last) return true;
    last = sharing;
    if (Date.now() > deadline) return false;
    await delay(500);
  }
}

async function runDemo(c: LocalCluster): Promise<void> {
  const server = c.controllerAddress;
  const api = c.api();
  try {
    heading('The nodes: capacity, overcommit ratios, real use after KSM');
    await vmctl(server, 'nodes');

    heading('Create VMs from two images with different workloads');
    for (const spec of DEMO_VMS) {
      const code = await vmctl(server, 'create', ...spec);
      if (code !== 0) throw new Error(`vmctl create ${spec[0]} failed (exit ${code})`);
    }

    heading('Wait for the agents to measure the dirty rates');
    const started = Date.now();
    note('polling ListVms until every busy VM reports the dirty rate its agent measures from the dirty log…');
    const ok = await waitForDirtyRates(api);
    note(
      ok
        ? `measured rates settled ${((Date.now() - started) / 1000).toFixed(1)} s after the last create`
        : `rates still settling after ${RATES_TIMEOUT_MS / 1000} s: showing what is reported`,
    );
    await vmctl(server, 'nodes');
    await vmctl(server, 'vms');

    heading('Live-migrate the busiest VM (pre-copy)');
    const vms = await listVms(api);
    const busiest = [...vms].sort((a, b) => b.dirtyRatePagesPerSec - a.dirtyRatePagesPerSec)[0];
    if (!busiest) {
      note('no VM to migrate');
    } else {
      note(
        `${busiest.name} dirties the most pages (${Math.round(busiest.dirtyRatePagesPerSec)} pages/s measured); the scheduler ` +
          'picks its target; auto-converge throttles its vCPU if it dirties memory faster than the link sends it',
      );
      const code = await vmctl(server, 'migrate', busiest.name, '--follow', '--auto-converge');
      if (code === VMCTL_EXIT_UNIMPLEMENTED) {
        process.stdout.write(yellow('MigrateVm answers UNIMPLEMENTED on this build: skipping the migration.\n'));
      } else {
        if (code !== 0) note(`vmctl migrate exited ${code}: the VM keeps running on its source (every failure before the commit rolls back)`);
        await vmctl(server, 'vms');
        await vmctl(server, 'migrations');
      }
    }

    const group = nodeSharingAnImage(await listVms(api));
    if (group) {
      heading('KSM: same-page merging frees real memory');
      note(
        `${group.nodeId} runs ${group.count} VMs of ${group.image}, each with its own copy of the image; its ksmd ` +
          'merges identical pages into one frame (copy-on-write). Scan faster, then look at the counters:',
      );
      await vmctl(server, 'ksm', group.nodeId, '--pages-to-scan', '5000');
      const settled = await waitForKsm(api, group.nodeId);
      if (!settled) note(`ksmd still merging after ${KSM_TIMEOUT_MS / 1000} s: showing what is reported`);
      await vmctl(server, 'node', group.nodeId);
      await vmctl(server, 'nodes');
    }
  } finally {
    api.close();
  }
}

/** The web console's port when free (else any free port); `--http-port` chooses another. */
const DEFAULT_CONSOLE_PORT = 8080;

async function main(): Promise<void> {
  routeProcessWarnings((warning) => process.stderr.write(`warning: ${warning.message}\n`));
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      agents: { type: 'string' },
      keep: { type: 'boolean' },
      'http-port': { type: 'string' },
      supervise: { type: 'boolean' },
      verbose: { type: 'boolean', short: 'v' },
    },
  });
  const agents = Number(values.agents ?? 3);
  if (!Number.isInteger(agents) || agents < 2 || agents > 16) throw new Error('--agents must be an integer in [2, 16]');
  if (!existsSync(VMCTL_MAIN)) throw new Error(`${VMCTL_MAIN} is missing: build first (npm run build)`);
  // The web console's port: --http-port, else 8080 when it is free, else any free one.
  const httpPort = values['http-port'] !== undefined ? Number(values['http-port']) : (await isPortFree(DEFAULT_CONSOLE_PORT)) ? DEFAULT_CONSOLE_PORT : await freePort();
  if (!Number.isInteger(httpPort) || httpPort < 1 || httpPort > 65535) throw new Error('--http-port must be a port in [1, 65535]');
  const consoleUrl = `http://127.0.0.1:${httpPort}/`;

  let c: LocalCluster | undefined;
  let stopping = false;
  const stopCluster = async (): Promise<void> => {
    current?.kill('SIGTERM');
    if (c) await c.stop();
    await stopAll();
  };
  onTerminationSignal(async (signal) => {
    stopping = true;
    process.stderr.write(`\n${signal}: stopping the cluster…\n`);
    try {
      await stopCluster();
      process.stderr.write('every process stopped.\n');
    } finally {
      process.exit(130);
    }
  });

  heading(`Start a local cluster: Redis, a controller and ${agents} node agents`);
  const t0 = Date.now();
  c = await startCluster({
    agents,
    httpPort,
    supervise: values.supervise ?? false,
    logLevel: process.env.LOG_LEVEL ?? (values.verbose ? 'info' : 'warn'),
    onLine: echoChildLine(values.verbose ?? false),
    // A process that dies (or, with --supervise, is restarted) is one line, as in `npm run cluster`.
    onProcessEvent: (event) => {
      if (!stopping) process.stderr.write(`${yellow(describeProcessEvent(event))}\n`);
    },
  });
  if (stopping) return;
  note(`ready in ${((Date.now() - t0) / 1000).toFixed(1)} s: controller ${c.controllerAddress}, agents ${c.agents.map((a) => `${a.nodeId}@${a.address}`).join(', ')}`);
  process.stdout.write(`web console: ${bold(consoleUrl)} (open it to watch the demo live)\n`);

  try {
    await runDemo(c);
    if (values.keep && !stopping) {
      heading('The cluster keeps running (--keep)');
      process.stdout.write(`web console: ${bold(consoleUrl)}\n`);
      process.stdout.write(`metrics: ${consoleUrl}metrics\n`);
      process.stdout.write(`try: ${bold(`VMCTL_SERVER=${c.controllerAddress} npm run --silent vmctl -- vms`)}\nCtrl-C stops it.\n`);
      await new Promise(() => {});
    }
  } finally {
    if (!stopping) {
      heading('Stop the cluster');
      const processes = c.agents.length + 1;
      await stopCluster();
      process.stdout.write(
        `${bold('Done.')} Stopped the controller and ${processes - 1} agents; the cluster's Redis state is gone.\n` +
          `Your own cluster: npm run cluster (then, in another terminal, npm run vmctl -- nodes).\n`,
      );
    }
  }
}

main().catch(async (err: unknown) => {
  process.stderr.write(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  current?.kill('SIGTERM');
  await stopAll();
  process.exit(1);
});
