import { cluster } from '@vmm/proto';
import { watchList } from './events.command.js';
import { paint } from '../format/colours.js';
import { renderImagesTable } from '../format/images.js';
import { labelsText, nodeStateLabel, renderKsm, renderNodeDetails, renderNodesTable } from '../format/nodes.js';
import { renderVmsTable } from '../format/vms.js';
import { type CommandContext, printJson } from './context.js';

export async function nodesCommand(ctx: CommandContext, opts: { watch?: boolean } = {}): Promise<void> {
  if (opts.watch && !ctx.json) return watchList(ctx, cluster.EventKind.EVENT_KIND_NODE, async () => renderNodesTable((await ctx.api.listNodes()).nodes));
  const { nodes } = await ctx.api.listNodes();
  if (ctx.json) return printJson(ctx, { nodes });
  ctx.io.out(renderNodesTable(nodes));
}

export async function nodeCommand(ctx: CommandContext, nodeId: string): Promise<void> {
  const node = await ctx.api.getNode(nodeId);
  const vms = await ctx.api.listAllVms(nodeId);
  if (ctx.json) return printJson(ctx, { node, vms });
  ctx.io.out(renderNodeDetails(node));
  ctx.io.out(`${paint.bold('VMs')}\n`);
  ctx.io.out(renderVmsTable(vms));
}

function printNodeChange(ctx: CommandContext, node: cluster.Node, verb: string): void {
  if (ctx.json) return printJson(ctx, node);
  ctx.io.out(`node ${node.nodeId} ${verb}: ${nodeStateLabel(node)}\n`);
}

export async function cordonCommand(ctx: CommandContext, nodeId: string): Promise<void> {
  printNodeChange(ctx, await ctx.api.cordonNode(nodeId), 'cordoned (no new VMs or incoming migrations)');
}

export async function uncordonCommand(ctx: CommandContext, nodeId: string): Promise<void> {
  printNodeChange(ctx, await ctx.api.uncordonNode(nodeId), 'uncordoned');
}

/** Sets and removes a node's labels (LabelNode) and prints the labels it now carries. */
export async function labelCommand(ctx: CommandContext, request: cluster.LabelNodeRequest): Promise<void> {
  const node = await ctx.api.labelNode(request);
  if (ctx.json) return printJson(ctx, node);
  ctx.io.out(`node ${node.nodeId} labels: ${labelsText(node.labels)}\n`);
}

/** The preset images and the images in use, with their sizes and VM counts (ListImages). */
export async function imagesCommand(ctx: CommandContext): Promise<void> {
  const { images } = await ctx.api.listImages();
  if (ctx.json) return printJson(ctx, { images });
  ctx.io.out(renderImagesTable(images));
}

/** Shows a node's ksmd knobs and counters; with knobs given, sets them first (SetNodeKsm). */
export async function ksmCommand(ctx: CommandContext, nodeId: string, knobs: cluster.KsmKnobs | undefined): Promise<void> {
  const node = knobs ? await ctx.api.setNodeKsm(nodeId, knobs) : await ctx.api.getNode(nodeId);
  if (ctx.json) return printJson(ctx, { nodeId: node.nodeId, knobs: node.ksmKnobs, stats: node.ksm });
  if (knobs) ctx.io.out(`node ${node.nodeId}: ksm knobs updated\n`);
  ctx.io.out(renderKsm(node));
}
