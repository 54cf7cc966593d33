import type { cluster } from '@vmm/proto';
import { workloadLabel } from '../workload.js';
import { colourState, paint } from './colours.js';
import { renderFields, renderTable } from './table.js';
import { formatAgo, formatCount, formatMib, formatPageRate, formatPages, shortId, stripEnumPrefix } from './units.js';

export const vmStateName = (vm: cluster.Vm): string => stripEnumPrefix(vm.state, 'VM_STATE_');

/** "uniform@2k/s", "idle". */
export function workloadCell(vm: cluster.Vm): string {
  return workloadLabel(vm.workload, (rate) => `${formatCount(rate)}/s`);
}

/** Measured dirty rate; grey until the first report has measured anything. */
function measuredRateCell(vm: cluster.Vm): string {
  const text = formatPageRate(vm.dirtyRatePagesPerSec);
  return vm.dirtyRatePagesPerSec > 0 ? text : paint.gray(text);
}

export function renderVmsTable(vms: readonly cluster.Vm[]): string {
  if (vms.length === 0) return 'No VMs.\n';
  return renderTable(
    ['NAME', 'ID', 'NODE', 'STATE', 'VCPUS', 'MEMORY', 'IMAGE', 'WORKLOAD', 'DIRTY RATE', 'WSS', 'RESIDENT'],
    vms.map((vm) => [
      vm.name,
      shortId(vm.vmId),
      vm.nodeId || paint.gray('—'),
      colourState(vmStateName(vm)),
      String(vm.vcpus),
      formatMib(vm.memoryMib),
      vm.image,
      workloadCell(vm),
      measuredRateCell(vm),
      formatPages(vm.workingSetPages),
      formatPages(vm.residentPages),
    ]),
  );
}

export function renderVmDetails(vm: cluster.Vm, nowMs = Date.now()): string {
  const w = vm.workload;
  const labels = Object.entries(vm.labels ?? {});
  return renderFields([
    ['Name', vm.name],
    ['ID', vm.vmId],
    ['Node', vm.nodeId || '—'],
    ['State', colourState(vmStateName(vm))],
    ['vCPUs', String(vm.vcpus)],
    ['Memory', formatMib(vm.memoryMib)],
    ['Image', vm.image],
    [
      'Workload',
      w
        ? `${workloadCell(vm)}  (working set ${w.workingSetMib > 0 ? formatMib(w.workingSetMib) : 'whole memory'}, seed ${w.seed})`
        : '—',
    ],
    ['Dirty rate', `${formatPageRate(vm.dirtyRatePagesPerSec)} (measured)`],
    ['Working set', `${formatPages(vm.workingSetPages)} (${formatCount(vm.workingSetPages)} pages, measured)`],
    ['Resident', `${formatPages(vm.residentPages)} (${formatCount(vm.residentPages)} pages)`],
    ['Anti-affinity', vm.antiAffinityGroup || '—'],
    ['Labels', labels.length ? labels.map(([k, v]) => `${k}=${v}`).join(', ') : '—'],
    ['Fencing epoch', String(vm.fencingEpoch)],
    ['Created', vm.createdAtMs ? formatAgo(vm.createdAtMs, nowMs) : '—'],
  ]);
}
