import { status } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { completionScript } from './completion.js';
import { Command, CommanderError, Option } from 'commander';
import { parseDurationMs, requireName } from './args.js';
import { ClusterApi, parseServerAddress, type ClientOptions } from './client.js';
import { OUTPUT_FORMATS, type CommandContext, type OutputFormat } from './commands/context.js';
import { cancelCommand, drainCommand, migrateCommand, migrationCommand, migrationsCommand, migrationUpdateCommand } from './commands/migration.commands.js';
import { cordonCommand, imagesCommand, ksmCommand, labelCommand, nodeCommand, nodesCommand, uncordonCommand } from './commands/node.commands.js';
import { createCommand, deleteCommand, lifecycleCommand, vmCommand, vmsCommand } from './commands/vm.commands.js';
import { eventsCommand } from './commands/events.command.js';
import { versionCommand } from './commands/version.command.js';
import { describeError, EXIT_USAGE, isServiceError, UsageError } from './errors.js';
import { FollowInterruptedError } from './follow.js';
import { paint, setColour } from './format/colours.js';
import type { Io } from './io.js';
import {
  buildCreateRequest,
  buildKsmKnobs,
  buildLabelNodeRequest,
  buildMigrationUpdate,
  buildPolicy,
  type CreateOptions,
  type KsmOptions,
  type MigrationUpdateOptions,
  type PolicyOptions,
} from './requests.js';
import { WORKLOAD_KINDS } from './workload.js';

const DEFAULT_SERVER = '127.0.0.1:50051';
const EXIT_INTERRUPTED = 130;

interface GlobalOptions {
  server: string;
  token?: string;
  tokenFile?: string;
  output?: OutputFormat;
  ca?: string;
  cert?: string;
  key?: string;
  json?: boolean;
  timeout: string;
}

/** The token of a file: its `operator` line (the format of API_TOKENS_FILE), else its `reader` line, else its first line. */
export function readTokenFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--token-file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const scoped = (scope: string) => lines.map((l) => new RegExp(`^${scope}\\s+(\\S+)$`).exec(l)?.[1]).find((t) => t !== undefined);
  const token = scoped('operator') ?? scoped('reader') ?? (lines[0] && !/\s/.test(lines[0]) ? lines[0] : undefined);
  if (!token) throw new UsageError(`--token-file ${file} holds no token`);
  return token;
}

/** --ca/--cert/--key as one setting: a certificate needs its key, and both need the CA. */
function tlsFiles(globals: GlobalOptions): ClientOptions['tls'] {
  if ((globals.cert === undefined) !== (globals.key === undefined)) throw new UsageError('--cert and --key go together');
  if (globals.ca === undefined) {
    if (globals.cert !== undefined) throw new UsageError('--cert needs --ca (the controller is verified with the cluster CA)');
    return undefined;
  }
  return { ca: globals.ca, cert: globals.cert, key: globals.key };
}

type Action = (ctx: CommandContext, ...args: any[]) => Promise<void>;

/** Builds the `vmctl` command tree; `run` executes one command with a fresh client and closes it. */
export function buildProgram(io: Io, run: (cmd: Command, action: Action, args: unknown[]) => Promise<void>): Command {
  const program = new Command('vmctl')
    .description('Operate a cluster of emulated VMs: nodes, VMs, live migration, KSM.')
    .addOption(new Option('--server <host:port>', 'controller address (env VMCTL_SERVER)').default(io.env.VMCTL_SERVER || DEFAULT_SERVER))
    .addOption(new Option('--token <token>', 'API bearer token (env VMCTL_TOKEN; keeps it out of ps)').default(io.env.VMCTL_TOKEN || undefined))
    .addOption(new Option('--token-file <file>', 'read the token from a file: a bare token, or the operator line of an API_TOKENS_FILE (env VMCTL_TOKEN_FILE)').default(io.env.VMCTL_TOKEN_FILE || undefined))
    .addOption(new Option('--ca <file>', "TLS to a controller started with --api-tls, verified with the cluster's ca.pem (env VMCTL_CA)").default(io.env.VMCTL_CA || undefined))
    .addOption(new Option('--cert <file>', 'a client certificate to present, e.g. operator.pem (env VMCTL_CERT)').default(io.env.VMCTL_CERT || undefined))
    .addOption(new Option('--key <file>', 'its private key, e.g. operator-key.pem (env VMCTL_KEY)').default(io.env.VMCTL_KEY || undefined))
    .option('--json', 'machine-readable JSON output (as -o json)')
    .addOption(new Option('-o, --output <format>', 'table | wide | json | yaml | name (kind/id per line)').choices([...OUTPUT_FORMATS]))
    .option('--timeout <duration>', 'deadline of each call: 10s, 500ms, 2m', '10s')
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out(s),
      writeErr: (s) => io.err(s),
      outputError: (s, write) => write(paint.red(s)),
    });
  const on = (action: Action) =>
    async function (this: Command, ...args: unknown[]): Promise<void> {
      await run(this, action, args.slice(0, -1));
    };

  program
    .command('completion <shell>')
    .description('print a completion script: source <(vmctl completion bash), or zsh')
    .addHelpText('after', '\nExample:\n  echo \'source <(vmctl completion bash)\' >> ~/.bashrc\n')
    .action((shell: string) => io.out(completionScript(shell, program)));
  program
    .command('nodes')
    .description('list nodes with capacity, overcommit, real use and KSM sharing')
    .option('-w, --watch', 'draw the table again after every change (WatchEvents), until Ctrl-C')
    .action(on((ctx, opts) => nodesCommand(ctx, opts)));
  program.command('node <node>').description('show a node, its KSM counters and its VMs').action(on(nodeCommand));
  program
    .command('vms')
    .description('list VMs with their workloads and measured dirty rates')
    .option('--node <node>', 'only the VMs of this node')
    .option('-w, --watch', 'draw the table again after every change (WatchEvents), until Ctrl-C')
    .action(on((ctx, opts) => vmsCommand(ctx, opts)));
  program.command('vm <vm>').description('show a VM (by id, short id or name)').action(on(vmCommand));
  program
    .command('create <name>')
    .description('create and start a VM')
    .option('--vcpus <n>', 'virtual CPUs', '1')
    .option('--memory <MiB>', 'guest memory in MiB (or 512M, 2G)', '512')
    .option('--image <image>', 'disk image: debian-12, ubuntu-24.04, alpine-3.20, empty', 'debian-12')
    .option('--workload <spec>', `kind[:rate[:wss_mib[:seed]]], kind one of ${WORKLOAD_KINDS.join('|')}; rate in pages/s (2000, 8k)`, 'idle')
    .option('--node <node>', 'place exactly on this node (else the scheduler picks)')
    .option('--anti-affinity <group>', 'never share a node with another VM of this group')
    .option('--restart <policy>', 'never | always: boot it again on another node when its node is lost', 'never')
    .option('--hypervisor <driver>', 'emulator | qemu: only nodes of this driver (default: any)')
    .option('--label <key=value>', 'a label (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--node-selector <key=value>', 'only on nodes carrying this label (repeatable: all of them)', (v: string, prev: string[] = []) => [...prev, v])
    .action(on((ctx, name: string, opts: CreateOptions) => createCommand(ctx, buildCreateRequest(name, opts))));
  program.command('delete <vm>').description('stop and delete a VM').action(on(deleteCommand));
  program.command('pause <vm>').description('pause a VM: its vCPUs stop, its memory stays (resume continues where it was)').action(on(lifecycleCommand('pause')));
  program.command('resume <vm>').description('resume a paused VM where it was').action(on(lifecycleCommand('resume')));
  program.command('stop <vm>').description('stop a VM: it keeps its record and allocation and holds no memory').action(on(lifecycleCommand('stop')));
  program.command('start <vm>').description('start a stopped VM fresh from its image').action(on(lifecycleCommand('start')));
  program.command('cordon <node>').description('mark a node unschedulable').action(on(cordonCommand));
  program.command('uncordon <node>').description('mark a node schedulable again').action(on(uncordonCommand));
  program
    .command('label <node> [labels...]')
    .description('set labels (key=value) on a node, or remove them (--remove key, or key-); VMs select nodes by them (create --node-selector)')
    .option('--remove <key>', 'remove this label (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .addHelpText('after', '\nExamples:\n  vmctl label node-1 disk=ssd zone=a\n  vmctl label node-1 --remove zone')
    .action(on((ctx, node: string, labels: string[], opts: { remove?: string[] }) => labelCommand(ctx, buildLabelNodeRequest(node, labels, opts.remove))));
  program.command('images').description('list the preset images and the images in use, with sizes and VM counts').action(on(imagesCommand));
  program
    .command('migrate <vm>')
    .description('live-migrate a VM (pre-copy); the scheduler picks the target unless --to')
    .option('--to <node>', 'target node')
    .option('-f, --follow', 'show live progress and the outcome summary')
    .option('--downtime-ms <ms>', 'downtime limit for the switch-over')
    .option('--bandwidth-mib <MiB/s>', 'bandwidth limit (0 = unlimited)')
    .option('--max-rounds <n>', 'pre-copy rounds before giving up (or forcing convergence)')
    .option('--auto-converge', 'throttle the vCPU step by step when the VM dirties faster than the link')
    .option('--xbzrle', 'send XOR deltas of re-dirtied pages')
    .option('--xbzrle-cache-mib <MiB>', 'XBZRLE page cache size')
    .option('--multifd <n>', 'parallel stream connections (QEMU multifd, 1..16; the emulator streams over one)')
    .option('--completion-timeout-ms <ms>', 'give up (roll back) after this long')
    .action(
      on((ctx, vm: string, opts: PolicyOptions & { to?: string; follow?: boolean }) =>
        migrateCommand(ctx, vm, { to: opts.to, follow: opts.follow, policy: buildPolicy(opts) }),
      ),
    );
  program
    .command('migrations')
    .description('list migrations')
    .option('--vm <vm>', 'only the migrations of this VM')
    .option('-w, --watch', 'draw the table again after every change (WatchEvents), until Ctrl-C')
    .action(on((ctx, opts) => migrationsCommand(ctx, opts)));
  program
    .command('migration <id>')
    .description('show a migration (by id or short id)')
    .option('-f, --follow', 'follow it to the end')
    .action(on((ctx, id: string, opts) => migrationCommand(ctx, id, opts)));
  program.command('cancel <id>').description('cancel a migration; the VM keeps running on its source').action(on(cancelCommand));
  program
    .command('migration-update <id>')
    .description('change a migration in pre-copy from its next round (virsh migrate-setmaxdowntime / migrate-setspeed)')
    .option('--downtime-ms <ms>', 'new downtime limit for the switch-over')
    .option('--bandwidth-mib <MiB/s>', 'new bandwidth limit (0 = unlimited)')
    .option('--force-complete', 'switch over at the next round whatever the predicted downtime')
    .addHelpText('after', '\nExample:\n  vmctl migration-update 3f2a --downtime-ms 500 --bandwidth-mib 0\n  vmctl migration-update 3f2a --force-complete\n')
    .action(on((ctx, id: string, opts: MigrationUpdateOptions) => migrationUpdateCommand(ctx, id, buildMigrationUpdate('', opts))));
  program
    .command('drain <node>')
    .description('cordon a node and migrate every VM off it')
    .option('-f, --follow', 'follow the migrations to the end')
    .action(on((ctx, node: string, opts) => drainCommand(ctx, node, opts)));
  program
    .command('ksm <node>')
    .description("show a node's KSM knobs and counters; with options, set the knobs")
    .option('--run <0|1|2>', '0 stop, 1 run, 2 unmerge everything')
    .option('--pages-to-scan <n>', 'pages scanned per wake-up')
    .option('--sleep-ms <ms>', 'sleep between wake-ups (sleep_millisecs)')
    .option('--max-page-sharing <n>', 'most pages sharing one KSM page')
    .option('--use-zero-pages <bool>', 'merge empty pages with the zero page')
    .action(on((ctx, node: string, opts: KsmOptions) => ksmCommand(ctx, node, buildKsmKnobs(opts))));
  program
    .command('events')
    .description('follow changes of VMs, nodes and migrations (WatchEvents), one line per event, until Ctrl-C')
    .option('--since <revision>', 'only changes after this revision (from a list or an earlier event); default: every current object first')
    .option('--kind <kind...>', 'only vm, node or migration (repeatable, or comma-separated)')
    .action(on((ctx, opts) => eventsCommand(ctx, opts)));
  program.command('version').description("this CLI's version and the controller's, with the API features it serves").action(on(versionCommand));
  addExamples(program);
  program.addHelpText(
    'after',
    `
Examples:
  vmctl nodes
  vmctl create web-1 --image debian-12 --vcpus 2 --memory 1G --workload uniform:2000
  vmctl migrate web-1 --follow --downtime-ms 100 --auto-converge
  vmctl --json vms
VM and migration arguments take an id, the short id the tables show, or (for VMs) a name.
Exit codes: 0 ok, 1 API error or failed migration, 2 bad command line, 3 method not implemented.`,
  );
  return program;
}

/** An example for each command's --help (those that have their own keep it). */
const EXAMPLES: Record<string, string[]> = {
  nodes: ['vmctl nodes', 'vmctl nodes -w', 'vmctl -o yaml nodes'],
  node: ['vmctl node node-1'],
  vms: ['vmctl vms', 'vmctl vms --node node-2 -w', 'vmctl -o name vms'],
  vm: ['vmctl vm web-1'],
  create: ['vmctl create web-1 --image debian-12 --vcpus 2 --memory 1G --workload uniform:2000', 'vmctl create db-1 --node-selector disk=ssd --restart always'],
  delete: ['vmctl delete web-1'],
  pause: ['vmctl pause web-1'],
  resume: ['vmctl resume web-1'],
  stop: ['vmctl stop web-1'],
  start: ['vmctl start web-1'],
  cordon: ['vmctl cordon node-2'],
  uncordon: ['vmctl uncordon node-2'],
  images: ['vmctl images'],
  migrate: ['vmctl migrate web-1 --to node-2 --follow', 'vmctl migrate web-1 --downtime-ms 100 --auto-converge --bandwidth-mib 256'],
  migrations: ['vmctl migrations', 'vmctl migrations --vm web-1 -w'],
  migration: ['vmctl migration 3f2a --follow'],
  cancel: ['vmctl cancel 3f2a'],
  drain: ['vmctl drain node-2 --follow'],
  ksm: ['vmctl ksm node-1', 'vmctl ksm node-1 --pages-to-scan 5000 --sleep-ms 10'],
  events: ['vmctl events', 'vmctl events --since 120 --kind migration'],
  version: ['vmctl version'],
};

function addExamples(program: Command): void {
  for (const command of program.commands) {
    const lines = EXAMPLES[command.name()];
    if (lines) command.addHelpText('after', `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((l) => `  ${l}`).join('\n')}\n`);
  }
}

/** Parses argv (without node and script), runs the command, and returns the exit code. */
export async function execute(argv: readonly string[], io: Io): Promise<number> {
  setColour(io.colour && !argv.includes('--json'));
  let code = 0;
  const run = async (cmd: Command, action: Action, args: unknown[]): Promise<void> => {
    const globals = cmd.optsWithGlobals<GlobalOptions>();
    const api = new ClusterApi({
      server: parseServerAddress(globals.server),
      token: globals.token ?? (globals.tokenFile === undefined ? undefined : readTokenFile(globals.tokenFile)),
      tls: tlsFiles(globals),
      timeoutMs: parseDurationMs(globals.timeout, '--timeout'),
    });
    try {
      for (const arg of args) if (typeof arg === 'string') requireName(arg, cmd.name());
      const output: OutputFormat = globals.output ?? (globals.json === true ? 'json' : 'table');
      await action({ api, io, json: output === 'json' || output === 'yaml' || output === 'name', output }, ...args);
    } finally {
      api.close();
    }
  };
  try {
    await buildProgram(io, run).parseAsync([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed the message (or the help) already.
      code = err.exitCode === 0 ? 0 : EXIT_USAGE;
    } else if (err instanceof FollowInterruptedError) {
      io.err(`\n${err.message}\n`);
      code = EXIT_INTERRUPTED;
    } else {
      const { message, exitCode } = describeError(err);
      io.err(`${paint.red(`error: ${message}`)}\n`);
      if (isServiceError(err) && err.code === status.UNAVAILABLE) {
        io.err('hint: is the controller running there? Set --server or VMCTL_SERVER (npm run cluster starts one).\n');
      }
      code = exitCode;
    }
  }
  return code;
}
