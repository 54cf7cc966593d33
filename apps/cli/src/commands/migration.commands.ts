import { cluster } from '@vmm/proto';
import { watchList } from './events.command.js';
import { MigrationNotCompletedError } from '../errors.js';
import { followMigration } from '../follow.js';
import { digestCheck, isTerminal, phaseName, renderMigrationDetails, renderMigrationsTable, renderSummary } from '../format/migrations.js';
import { nodeStateLabel } from '../format/nodes.js';
import { shortId } from '../format/units.js';
import { createProgressView } from '../progress.js';
import { resolveMigration, resolveVm, vmNames } from '../resolve.js';
import { type CommandContext, interruptible, printJson, printJsonLine } from './context.js';

export interface MigrateOptions {
  to?: string;
  follow?: boolean;
  /** Undefined leaves every policy field to the controller's defaults. */
  policy?: cluster.MigrationPolicy;
}

const succeeded = (m: cluster.Migration): boolean =>
  m.phase === cluster.MigrationPhase.MIGRATION_PHASE_COMPLETED && digestCheck(m) === 'match';

/** Follows migrations with progress bars (or JSON lines) and returns their final states. */
async function followAll(
  ctx: CommandContext,
  items: readonly { migration: cluster.Migration; label: string }[],
): Promise<cluster.Migration[]> {
  const view = ctx.json ? undefined : createProgressView(ctx.io);
  // One width for every label, so that the bars of a drain line up.
  const width = Math.max(...items.map((i) => i.label.length));
  const onUpdate = (label: string) => (m: cluster.Migration) =>
    ctx.json ? printJsonLine(ctx, m) : view!.update(label, m);
  try {
    return await interruptible(ctx, (signal) =>
      Promise.all(items.map(({ migration, label }) => followMigration(ctx.api, migration.migrationId, onUpdate(label.padEnd(width)), signal))),
    );
  } finally {
    view?.stop();
  }
}

export async function migrateCommand(ctx: CommandContext, ref: string, opts: MigrateOptions): Promise<void> {
  const vm = await resolveVm(ctx.api, ref);
  const started = await ctx.api.migrateVm({ vmId: vm.vmId, targetNodeId: opts.to ?? '', policy: opts.policy });
  if (!opts.follow) {
    if (ctx.json) return printJson(ctx, started);
    ctx.io.out(
      `migration ${started.migrationId} started: ${vm.name} ${started.sourceNodeId} → ${started.targetNodeId || '(scheduler picks)'}\n` +
        `follow it with: vmctl migration ${shortId(started.migrationId)}\n`,
    );
    return;
  }
  if (!ctx.json) {
    ctx.io.out(`migrating ${vm.name} (${shortId(vm.vmId)}): ${started.sourceNodeId} → ${started.targetNodeId || '?'}, migration ${started.migrationId}\n`);
  }
  const [final] = await followAll(ctx, [{ migration: started, label: vm.name }]);
  if (!ctx.json) ctx.io.out(renderSummary(final!, { vmName: vm.name, vmMemoryMib: vm.memoryMib }));
  if (!succeeded(final!)) throw new MigrationNotCompletedError(final!.migrationId, phaseName(final!));
}

export async function migrationsCommand(ctx: CommandContext, opts: { vm?: string; watch?: boolean }): Promise<void> {
  const vmId = opts.vm ? (await resolveVm(ctx.api, opts.vm)).vmId : '';
  if (opts.watch && !ctx.json) {
    return watchList(ctx, cluster.EventKind.EVENT_KIND_MIGRATION, async () => renderMigrationsTable(await ctx.api.listAllMigrations(vmId), await vmNames(ctx.api)));
  }
  const migrations = await ctx.api.listAllMigrations(vmId);
  if (ctx.json) return printJson(ctx, { migrations });
  ctx.io.out(renderMigrationsTable(migrations, await vmNames(ctx.api)));
}

export async function migrationCommand(ctx: CommandContext, ref: string, opts: { follow?: boolean }): Promise<void> {
  let m = await resolveMigration(ctx.api, ref);
  const names = await vmNames(ctx.api);
  const name = names.get(m.vmId);
  if (opts.follow) [m] = (await followAll(ctx, [{ migration: m, label: name ?? shortId(m.vmId) }])) as [cluster.Migration];
  if (ctx.json && !opts.follow) printJson(ctx, m);
  if (!ctx.json) {
    ctx.io.out(renderMigrationDetails(m, name));
    if (isTerminal(m)) ctx.io.out(renderSummary(m, { vmName: name }));
  }
  // Following is waiting for an outcome: a failed one is a failure, as for `migrate --follow`.
  if (opts.follow && !succeeded(m)) throw new MigrationNotCompletedError(m.migrationId, phaseName(m));
}

export async function cancelCommand(ctx: CommandContext, ref: string): Promise<void> {
  const m = await ctx.api.cancelMigration((await resolveMigration(ctx.api, ref)).migrationId);
  if (ctx.json) return printJson(ctx, m);
  ctx.io.out(`migration ${m.migrationId}: ${phaseName(m)}${m.error ? ` (${m.error})` : ''}\n`);
}

/** UpdateMigration: a new downtime limit or bandwidth for a migration in pre-copy, or force its switch-over. */
export async function migrationUpdateCommand(ctx: CommandContext, ref: string, request: Omit<cluster.UpdateMigrationRequest, 'migrationId'>): Promise<void> {
  const m = await ctx.api.updateMigration({ ...request, migrationId: (await resolveMigration(ctx.api, ref)).migrationId });
  if (ctx.json) return printJson(ctx, m);
  const bandwidth = m.policy?.maxBandwidthMibPerSec ? `${m.policy.maxBandwidthMibPerSec} MiB/s` : 'unlimited';
  const forced = request.forceComplete ? '; switching over at the next round' : '';
  ctx.io.out(`migration ${m.migrationId}: ${phaseName(m)}, downtime limit ${m.policy?.downtimeLimitMs ?? '?'} ms, bandwidth ${bandwidth}${forced}\n`);
}

/** Cordons the node and migrates every VM off it; with follow, waits for all of them. */
export async function drainCommand(ctx: CommandContext, nodeId: string, opts: { follow?: boolean }): Promise<void> {
  const { node, migrations } = await ctx.api.drainNode(nodeId);
  const names = await vmNames(ctx.api);
  if (ctx.json && !opts.follow) return printJson(ctx, { node, migrations });
  if (!ctx.json) {
    ctx.io.out(`node ${nodeId} draining${node ? ` (${nodeStateLabel(node)})` : ''}: ${migrations.length} migration(s) started\n`);
    if (migrations.length > 0) ctx.io.out(renderMigrationsTable(migrations, names));
  }
  if (!opts.follow || migrations.length === 0) return;
  const finals = await followAll(
    ctx,
    migrations.map((m) => ({ migration: m, label: names.get(m.vmId) ?? shortId(m.vmId) })),
  );
  if (!ctx.json) ctx.io.out(renderMigrationsTable(finals, names));
  const failed = finals.find((m) => !succeeded(m));
  if (failed) throw new MigrationNotCompletedError(failed.migrationId, phaseName(failed));
}
