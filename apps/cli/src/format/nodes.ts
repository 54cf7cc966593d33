import type { cluster } from '@vmm/proto';
import { colourState, paint } from './colours.js';
import { renderFields, renderTable } from './table.js';
import {
  formatAgo,
  formatBytes,
  formatCount,
  formatMib,
  formatPages,
  formatRatio,
  stripEnumPrefix,
} from './units.js';

/** READY, NOT_READY…; a cordoned node that is not already shown as CORDONED/DRAINING gets ",CORDONED". */
export function nodeStateLabel(node: cluster.Node): string {
  const state = stripEnumPrefix(node.state, 'NODE_STATE_');
  const label = colourState(state);
  return node.cordoned && state !== 'CORDONED' && state !== 'DRAINING' ? `${label},${colourState('CORDONED')}` : label;
}

/** "6/8×4": allocated / capacity × overcommit ratio. */
export function vcpuCell(node: cluster.Node): string {
  return `${node.vcpusAllocated}/${node.vcpus}×${formatRatio(node.cpuAllocationRatio)}`;
}

export function memoryCell(node: cluster.Node): string {
  return `${formatMib(node.memoryMibAllocated)}/${formatMib(node.memoryMib)}×${formatRatio(node.ramAllocationRatio)}`;
}

/** Real memory use after KSM, with its share of the node's physical memory. */
export function usedCell(node: cluster.Node): string {
  const percent = node.memoryMib > 0 ? Math.round((node.memoryMibUsed / node.memoryMib) * 100) : 0;
  return `${formatMib(node.memoryMibUsed)} (${percent}%)`;
}

/** Memory KSM saves: pages_sharing pages, each one frame not spent. */
export function ksmSharingCell(ksm: cluster.KsmStats | undefined): string {
  if (!ksm || ksm.pagesSharing === 0) return paint.gray('0');
  return `${formatPages(ksm.pagesSharing)} (${formatCount(ksm.pagesSharing)} pg)`;
}

export function renderNodesTable(nodes: readonly cluster.Node[]): string {
  if (nodes.length === 0) return 'No nodes registered.\n';
  return renderTable(
    ['NODE', 'STATE', 'ADDRESS', 'VCPUS', 'MEMORY', 'USED', 'KSM SHARING', 'VMS'],
    nodes.map((n) => [
      n.nodeId,
      nodeStateLabel(n),
      n.address,
      vcpuCell(n),
      memoryCell(n),
      usedCell(n),
      ksmSharingCell(n.ksm),
      String(n.vmCount),
    ]),
  );
}

function knobText(value: number | boolean | undefined): string {
  return value === undefined ? paint.gray('default') : String(value);
}

export function renderKsm(node: cluster.Node): string {
  const ksm = node.ksm;
  const knobs = node.ksmKnobs ?? {};
  const runNames: Record<number, string> = { 0: 'stopped', 1: 'running', 2: 'unmerging' };
  const stats: [string, string][] = ksm
    ? [
        ['pages_shared', `${formatCount(ksm.pagesShared)}  (${formatPages(ksm.pagesShared)} of shared frames)`],
        ['pages_sharing', `${formatCount(ksm.pagesSharing)}  (${formatPages(ksm.pagesSharing)} saved)`],
        ['pages_unshared', formatCount(ksm.pagesUnshared)],
        ['pages_volatile', formatCount(ksm.pagesVolatile)],
        ['full_scans', String(ksm.fullScans)],
        ['general_profit', formatBytes(ksm.generalProfitBytes)],
      ]
    : [['stats', paint.gray('not reported yet')]];
  return (
    `${paint.bold('KSM knobs')}\n` +
    renderFields(
      [
        ['run', knobs.run === undefined ? knobText(undefined) : `${knobs.run} (${runNames[knobs.run] ?? '?'})`],
        ['pages_to_scan', knobText(knobs.pagesToScan)],
        ['sleep_millisecs', knobText(knobs.sleepMillisecs)],
        ['max_page_sharing', knobText(knobs.maxPageSharing)],
        ['use_zero_pages', knobText(knobs.useZeroPages)],
      ],
      '  ',
    ) +
    `${paint.bold('KSM stats')}\n` +
    renderFields(stats, '  ')
  );
}

/** "disk=ssd, zone=a" in key order; "—" without labels. */
export function labelsText(labels: Readonly<Record<string, string>> | undefined): string {
  const keys = Object.keys(labels ?? {}).sort();
  return keys.length ? keys.map((k) => `${k}=${labels![k]}`).join(', ') : '—';
}

export function renderNodeDetails(node: cluster.Node, nowMs = Date.now()): string {
  return (
    renderFields([
      ['Node', node.nodeId],
      ['State', nodeStateLabel(node)],
      ['Address', node.address],
      ['Cordoned', node.cordoned ? 'yes' : 'no'],
      ['vCPUs', `${node.vcpusAllocated} allocated of ${node.vcpus} × ${formatRatio(node.cpuAllocationRatio)} = ${formatRatio(node.vcpus * node.cpuAllocationRatio)}`],
      ['Memory', `${formatMib(node.memoryMibAllocated)} allocated of ${formatMib(node.memoryMib)} × ${formatRatio(node.ramAllocationRatio)} = ${formatMib(node.memoryMib * node.ramAllocationRatio)}`],
      ['Used', `${usedCell(node)} after KSM`],
      ['VMs', String(node.vmCount)],
      ['Labels', labelsText(node.labels)],
      ['Last report', formatAgo(node.lastReportMs, nowMs)],
    ]) +
    renderKsm(node) +
    renderReportedVms(node)
  );
}

/**
 * What the node's agent last reported holding (Node.reported_vms), migration copies included and
 * copies the controller does not expect too: what an operator compares against `vmctl vms`.
 */
export function renderReportedVms(node: cluster.Node): string {
  const copies = node.reportedVms ?? [];
  const title = `${paint.bold('Reported by the agent')} (${copies.length} ${copies.length === 1 ? 'copy' : 'copies'})\n`;
  if (copies.length === 0) return title;
  const rows = copies.map((c) => [
    c.vmId,
    colourState(stripEnumPrefix(c.state, 'VM_STATE_')),
    String(c.fencingEpoch),
    stripEnumPrefix(c.migrationRole, 'MIGRATION_ROLE_').toLowerCase(),
    c.migrationId || '-',
  ]);
  return title + renderTable(['VM', 'STATE', 'EPOCH', 'ROLE', 'MIGRATION'], rows);
}
