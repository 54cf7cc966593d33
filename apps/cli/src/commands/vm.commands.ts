import { cluster } from '@vmm/proto';
import { watchList } from './events.command.js';
import { colourState } from '../format/colours.js';
import { formatMib, shortId } from '../format/units.js';
import { renderVmDetails, renderVmsTable, vmStateName, workloadCell } from '../format/vms.js';
import type { VmLifecycleAction } from '../client.js';
import { resolveVm } from '../resolve.js';
import { type CommandContext, printJson } from './context.js';

export async function vmsCommand(ctx: CommandContext, opts: { node?: string; watch?: boolean }): Promise<void> {
  if (opts.watch && !ctx.json) return watchList(ctx, cluster.EventKind.EVENT_KIND_VM, async () => renderVmsTable(await ctx.api.listAllVms(opts.node ?? '')));
  const vms = await ctx.api.listAllVms(opts.node ?? '');
  if (ctx.json) return printJson(ctx, { vms });
  ctx.io.out(renderVmsTable(vms));
}

export async function vmCommand(ctx: CommandContext, ref: string): Promise<void> {
  const vm = await resolveVm(ctx.api, ref);
  if (ctx.json) return printJson(ctx, vm);
  ctx.io.out(renderVmDetails(vm));
}

export async function createCommand(ctx: CommandContext, request: cluster.CreateVmRequest): Promise<void> {
  const vm = await ctx.api.createVm(request);
  if (ctx.json) return printJson(ctx, vm);
  ctx.io.out(
    `vm ${vm.name} (${shortId(vm.vmId)}) created on ${vm.nodeId}: ${colourState(vmStateName(vm))}, ` +
      `${vm.vcpus} vCPU, ${formatMib(vm.memoryMib)}, ${vm.image}, ${workloadCell(vm)}\n`,
  );
}

const LIFECYCLE_DONE: Record<VmLifecycleAction, string> = {
  pause: 'paused (its memory and workload kept where they were)',
  resume: 'resumed where it was',
  stop: 'stopped (record and allocation kept, no memory held)',
  start: 'started fresh from its image',
};

/** vmctl pause|resume|stop|start VM: libvirt's suspend, resume, shutdown and start. */
export function lifecycleCommand(action: VmLifecycleAction) {
  return async (ctx: CommandContext, ref: string): Promise<void> => {
    const { vmId } = await resolveVm(ctx.api, ref);
    const vm = await ctx.api.vmLifecycle(action, vmId);
    if (ctx.json) return printJson(ctx, vm);
    ctx.io.out(`vm ${vm.name} (${shortId(vm.vmId)}) ${LIFECYCLE_DONE[action]}: ${colourState(vmStateName(vm))}\n`);
  };
}

export async function deleteCommand(ctx: CommandContext, ref: string): Promise<void> {
  const vm = await resolveVm(ctx.api, ref);
  await ctx.api.deleteVm(vm.vmId);
  if (ctx.json) return printJson(ctx, { deleted: vm.vmId, name: vm.name });
  ctx.io.out(`vm ${vm.name} (${shortId(vm.vmId)}) deleted\n`);
}
