/**
 * The cluster at a glance: each node with its memory as bars (capacity, allocated, used after KSM, saved
 * by KSM), its state and its VMs; the VMs with their measured dirty rate and working set; the migrations,
 * running first. Redrawn from each `cluster` event; the actions call the API through the backend.
 */
import type { ClusterView, Migration, Node, Vm } from './api.js';
import { FINAL, PAGE_BYTES, bytes, h, mib, short } from './dom.js';

export interface OverviewActions {
  migrate(vm: Vm): void;
  cancel(migrationId: string): void;
  node(nodeId: string, action: 'cordon' | 'uncordon' | 'drain'): void;
}

function bar(label: string, valueMib: number, scaleMib: number, kind: string): HTMLElement {
  const pct = scaleMib > 0 ? Math.min(100, (valueMib / scaleMib) * 100) : 0;
  return h('div', { class: 'bar-row' },
    h('span', { class: 'bar-label' }, label),
    h('span', { class: 'bar' }, h('span', { class: `bar-fill ${kind}`, style: `width:${pct.toFixed(1)}%` })),
    h('span', { class: 'bar-value', 'data-bar': kind }, mib(valueMib)));
}

function nodeStates(n: Node): string[] {
  const states = new Set<string>();
  const s = short(n.state);
  if (s !== 'READY' && s !== 'UNSPECIFIED') states.add(s.replace('_', ' ').toLowerCase());
  if (n.cordoned) states.add('cordoned');
  if (states.size === 0) states.add('ready');
  return [...states];
}

function nodeCard(n: Node, vms: Vm[], actions: OverviewActions): HTMLElement {
  const savedMib = ((n.ksm?.pagesSharing ?? 0) * PAGE_BYTES) / 2 ** 20;
  const scale = Math.max(n.memoryMib, n.memoryMibAllocated);
  return h('section', { class: 'card node', 'data-node': n.nodeId },
    h('div', { class: 'card-head' },
      h('h3', {}, n.nodeId),
      ...nodeStates(n).map((s) => h('span', { class: `badge state-${s.replace(' ', '-')}` }, s)),
      h('span', { class: 'muted' }, `${n.vcpusAllocated}/${n.vcpus} vCPU · ${n.hypervisor || 'emulator'}`)),
    bar('capacity', n.memoryMib, scale, 'capacity'),
    bar('allocated', n.memoryMibAllocated, scale, 'allocated'),
    bar('used after KSM', n.memoryMibUsed, scale, 'used'),
    bar('saved by KSM', savedMib, scale, 'saved'),
    h('div', { class: 'node-vms' }, vms.length === 0 ? h('span', { class: 'muted' }, 'no VMs') : vms.map((v) => h('span', { class: 'chip', title: v.vmId }, v.name || v.vmId))),
    h('div', { class: 'actions' },
      n.cordoned
        ? h('button', { class: 'action', 'data-action': 'uncordon', onclick: () => actions.node(n.nodeId, 'uncordon') }, 'Uncordon')
        : h('button', { class: 'action', 'data-action': 'cordon', onclick: () => actions.node(n.nodeId, 'cordon') }, 'Cordon'),
      h('button', { class: 'action', 'data-action': 'drain', onclick: () => actions.node(n.nodeId, 'drain') }, 'Drain')));
}

function vmRow(v: Vm, actions: OverviewActions): HTMLElement {
  const state = short(v.state);
  return h('tr', { 'data-vm': v.vmId },
    h('td', {}, h('strong', {}, v.name || v.vmId), h('div', { class: 'muted mono' }, v.vmId)),
    h('td', {}, h('span', { class: `badge vm-${state.toLowerCase()}` }, state)),
    h('td', {}, v.nodeId),
    h('td', { class: 'mono' }, v.image),
    h('td', { class: 'num' }, `${mib(v.memoryMib)} · ${v.vcpus} vCPU`),
    h('td', { class: 'num' }, `${bytes(v.dirtyRatePagesPerSec * PAGE_BYTES)}/s`),
    h('td', { class: 'num' }, bytes(v.workingSetPages * PAGE_BYTES)),
    h('td', {}, v.migrationId
      ? h('a', { href: `#/migrations/${encodeURIComponent(v.migrationId)}` }, 'migrating…')
      : state === 'RUNNING' ? h('button', { class: 'action', 'data-action': 'migrate', onclick: () => actions.migrate(v) }, 'Migrate') : ''));
}

/** Running first (newest first), then the finished ones (most recently finished first). */
export function migrationOrder(a: Migration, b: Migration): number {
  const fa = FINAL.has(short(a.phase)), fb = FINAL.has(short(b.phase));
  if (fa !== fb) return fa ? 1 : -1;
  return fa ? b.finishedAtMs - a.finishedAtMs : b.createdAtMs - a.createdAtMs;
}

function migrationRow(m: Migration, vmName: string, actions: OverviewActions): HTMLElement {
  const phase = short(m.phase);
  const pct = m.pagesTotal > 0 ? Math.min(100, (m.pagesSent / m.pagesTotal) * 100) : 0;
  return h('tr', { 'data-migration': m.migrationId, 'data-phase': phase },
    h('td', {}, h('a', { href: `#/migrations/${encodeURIComponent(m.migrationId)}`, class: 'mono' }, m.migrationId)),
    h('td', {}, vmName),
    h('td', {}, `${m.sourceNodeId} → ${m.targetNodeId || '?'}`),
    h('td', {}, h('span', { class: `badge phase-${phase.toLowerCase()}` }, phase)),
    h('td', { class: 'num' }, m.round),
    h('td', { class: 'num' }, `${pct.toFixed(0)}% sent`),
    h('td', {}, m.reason),
    h('td', {}, FINAL.has(phase) ? (m.errorReason ? h('span', { class: 'muted' }, m.errorReason) : '')
      : h('button', { class: 'action', 'data-action': 'cancel', onclick: () => actions.cancel(m.migrationId) }, 'Cancel')));
}

export function renderOverview(view: ClusterView, actions: OverviewActions): HTMLElement {
  const vmsByNode = new Map<string, Vm[]>();
  for (const v of view.vms) vmsByNode.set(v.nodeId, [...(vmsByNode.get(v.nodeId) ?? []), v]);
  const names = new Map(view.vms.map((v) => [v.vmId, v.name || v.vmId]));
  const nodes = [...view.nodes].sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  const vms = [...view.vms].sort((a, b) => (a.name || a.vmId).localeCompare(b.name || b.vmId));
  const migrations = [...view.migrations].sort(migrationOrder);
  return h('div', { class: 'overview' },
    h('h2', {}, `Nodes (${nodes.length})`),
    h('div', { class: 'nodes' }, nodes.map((n) => nodeCard(n, vmsByNode.get(n.nodeId) ?? [], actions))),
    h('h2', {}, `VMs (${vms.length})`),
    h('table', { class: 'vms' },
      h('thead', {}, h('tr', {}, ['VM', 'state', 'node', 'image', 'size', 'dirty rate', 'working set', ''].map((c) => h('th', {}, c)))),
      h('tbody', {}, vms.map((v) => vmRow(v, actions)))),
    h('h2', {}, `Migrations (${migrations.length})`),
    migrations.length === 0 ? h('p', { class: 'muted' }, 'none yet') : h('table', { class: 'migrations' },
      h('thead', {}, h('tr', {}, ['migration', 'VM', 'route', 'phase', 'round', 'progress', 'reason', ''].map((c) => h('th', {}, c)))),
      h('tbody', {}, migrations.map((m) => migrationRow(m, names.get(m.vmId) ?? m.vmId, actions)))));
}
