import { describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import type { NodeRecord, PlacementRequest } from '../common/model.js';
import { nodeStateOf } from '../node/node-state.js';
import { testNode } from '../testing/records.js';
import { antiAffinityFilter, cordonFilter, hypervisorFilter, memoryFilter, nodeSelectorFilter, readyFilter, vcpuFilter, type FilterContext } from './filters.js';
import { describeRejections, rankNodes } from './scheduler.js';
import { freeMemoryWeigher, sameImageWeigher, weighNodes } from './weighers.js';

const NOW = 1_000_000;
const node = (id: string, over: Partial<NodeRecord> = {}): NodeRecord =>
  testNode({ nodeId: id, address: `${id}:1`, vcpus: 8, memoryMib: 1000, cpuAllocationRatio: 4, ramAllocationRatio: 1.5, lastReportMs: NOW, registeredAtMs: 0, ...over });
const req = (over: Partial<PlacementRequest> = {}): PlacementRequest => ({ vcpus: 1, memoryMib: 150, antiAffinityGroup: '', ...over });
const ctx = (over: Partial<FilterContext> = {}): FilterContext => ({
  nowMs: NOW,
  staleAfterMs: 3000,
  antiAffinityNodeIds: new Set(),
  ...over,
});

describe('filters', () => {
  it('ready: reports within 3 intervals', () => {
    expect(readyFilter.passes(node('a', { lastReportMs: NOW - 3000 }), req(), ctx())).toBe(true);
    expect(readyFilter.passes(node('a', { lastReportMs: NOW - 3001 }), req(), ctx())).toBe(false);
  });

  it('node selector: the node carries every selected label', () => {
    const labelled = node('a', { labels: { disk: 'ssd', zone: 'a' } });
    expect(nodeSelectorFilter.passes(labelled, req(), ctx())).toBe(true);
    expect(nodeSelectorFilter.passes(labelled, req({ nodeSelector: {} }), ctx())).toBe(true);
    expect(nodeSelectorFilter.passes(labelled, req({ nodeSelector: { disk: 'ssd' } }), ctx())).toBe(true);
    expect(nodeSelectorFilter.passes(labelled, req({ nodeSelector: { disk: 'ssd', zone: 'a' } }), ctx())).toBe(true);
    expect(nodeSelectorFilter.passes(labelled, req({ nodeSelector: { disk: 'hdd' } }), ctx())).toBe(false);
    expect(nodeSelectorFilter.passes(labelled, req({ nodeSelector: { disk: 'ssd', gpu: '' } }), ctx())).toBe(false);
    expect(nodeSelectorFilter.passes(node('b'), req({ nodeSelector: { disk: 'ssd' } }), ctx())).toBe(false);
  });

  it('cordoned nodes are filtered', () => {
    expect(cordonFilter.passes(node('a', { cordoned: true }), req(), ctx())).toBe(false);
  });

  it('vcpus within capacity × ratio', () => {
    expect(vcpuFilter.passes(node('a', { vcpusAllocated: 31 }), req(), ctx())).toBe(true);
    expect(vcpuFilter.passes(node('a', { vcpusAllocated: 32 }), req(), ctx())).toBe(false);
  });

  it('memory within capacity × ratio (1000 × 1.5 = 1500: ten VMs of 150)', () => {
    expect(memoryFilter.passes(node('a', { memoryMibAllocated: 1350 }), req(), ctx())).toBe(true);
    expect(memoryFilter.passes(node('a', { memoryMibAllocated: 1500 }), req(), ctx())).toBe(false);
    expect(memoryFilter.passes(node('a', { memoryMibAllocated: 1351 }), req(), ctx())).toBe(false);
  });

  it('ratio products do not lose a unit to floating point (8 × 1.1 = 8.8 → 8, 10 × 0.7 = 7)', () => {
    expect(vcpuFilter.passes(node('a', { vcpus: 10, cpuAllocationRatio: 0.7, vcpusAllocated: 6 }), req(), ctx())).toBe(true);
    expect(vcpuFilter.passes(node('a', { vcpus: 8, cpuAllocationRatio: 1.1, vcpusAllocated: 8 }), req(), ctx())).toBe(false);
  });

  it('hypervisor: only nodes of the driver asked for; none asked = any', () => {
    const qemu = node('q', { hypervisor: 'qemu' });
    const emulator = node('e');
    expect(hypervisorFilter.passes(qemu, req({ hypervisor: 'qemu' }), ctx())).toBe(true);
    expect(hypervisorFilter.passes(emulator, req({ hypervisor: 'qemu' }), ctx())).toBe(false);
    expect(hypervisorFilter.passes(qemu, req({ hypervisor: 'emulator' }), ctx())).toBe(false);
    expect(hypervisorFilter.passes(qemu, req(), ctx())).toBe(true);
    expect(hypervisorFilter.passes(emulator, req({ hypervisor: '' }), ctx())).toBe(true);
    const { candidates, rejected } = rankNodes([qemu, emulator], req({ hypervisor: 'qemu' }), ctx());
    expect(candidates.map((n) => n.nodeId)).toEqual(['q']);
    expect(describeRejections(rejected)).toBe('e: hypervisor');
  });

  it('anti-affinity: one VM of a group per node', () => {
    const c = ctx({ antiAffinityNodeIds: new Set(['a']) });
    expect(antiAffinityFilter.passes(node('a'), req({ antiAffinityGroup: 'g' }), c)).toBe(false);
    expect(antiAffinityFilter.passes(node('b'), req({ antiAffinityGroup: 'g' }), c)).toBe(true);
    expect(antiAffinityFilter.passes(node('a'), req(), c)).toBe(true);
  });
});

describe('weigher and ranking', () => {
  it('free memory after placement', () => {
    expect(freeMemoryWeigher.weigh(node('a', { memoryMibAllocated: 500 }), req())).toBe(1500 - 500 - 150);
  });

  it('ranks by most free memory, ties by node id, and reports rejections', () => {
    const nodes = [
      node('c', { memoryMibAllocated: 100 }),
      node('b'),
      node('a'),
      node('d', { cordoned: true }),
      node('e', { lastReportMs: 0 }),
      node('f', { memoryMibAllocated: 1400 }),
    ];
    const { candidates, rejected } = rankNodes(nodes, req(), ctx());
    expect(candidates.map((n) => n.nodeId)).toEqual(['a', 'b', 'c']);
    expect(Object.fromEntries(rejected)).toEqual({ d: 'cordoned', e: 'not ready', f: 'memory' });
    expect(describeRejections(rejected)).toBe('d: cordoned, e: not ready, f: memory');
  });

  it('gathers VMs of one image on a node (KSM sharing) whatever their size, within the filters', () => {
    const nodes = [node('a'), node('b', { memoryMibAllocated: 500, imageCounts: { 'debian-12': 3 } })];
    expect(rankNodes(nodes, req({ image: 'debian-12' }), ctx()).candidates.map((n) => n.nodeId)).toEqual(['b', 'a']);
    expect(rankNodes(nodes, req({ image: 'alpine-3.20' }), ctx()).candidates[0]!.nodeId).toBe('a');
    // 'empty' has no image pages to share: free memory decides.
    expect(rankNodes(nodes, req({ image: 'empty' }), ctx()).candidates[0]!.nodeId).toBe('a');
    // A VM far larger than any fixed bonus still follows its image.
    const big = [node('a', { memoryMib: 65536 }), node('b', { memoryMib: 65536, memoryMibAllocated: 30000, imageCounts: { 'ubuntu-24.04': 1 } })];
    expect(rankNodes(big, req({ image: 'ubuntu-24.04', memoryMib: 8192 }), ctx()).candidates[0]!.nodeId).toBe('b');
    // The node with the image but no room is filtered out, never preferred.
    const full = [node('a'), node('b', { memoryMibAllocated: 1400, imageCounts: { 'debian-12': 9 } })];
    const ranked = rankNodes(full, req({ image: 'debian-12' }), ctx());
    expect(ranked.candidates.map((n) => n.nodeId)).toEqual(['a']);
    expect(ranked.rejected.get('b')).toBe('memory');
  });

  it('normalizes each weigher across candidates, so units do not drown a weigher', () => {
    const nodes = [node('a', { memoryMib: 1_000_000 }), node('b', { memoryMib: 2000, imageCounts: { 'debian-12': 1 } })];
    const weights = weighNodes(nodes, req({ image: 'debian-12' }));
    expect(weights[0]).toBeCloseTo(freeMemoryWeigher.multiplier);
    expect(weights[1]).toBeCloseTo(sameImageWeigher.multiplier);
    // A weigher that scores every candidate alike adds nothing.
    expect([...weighNodes([node('a'), node('b')], req())]).toEqual([0, 0]);
  });

  it('no nodes: no candidates', () => {
    expect(rankNodes([], req(), ctx()).candidates).toEqual([]);
  });
});

describe('node state', () => {
  it.each([
    [{}, cluster.NodeState.NODE_STATE_READY],
    [{ cordoned: true }, cluster.NodeState.NODE_STATE_CORDONED],
    [{ draining: true, cordoned: true }, cluster.NodeState.NODE_STATE_DRAINING],
    [{ cordoned: true, lastReportMs: NOW - 5000 }, cluster.NodeState.NODE_STATE_NOT_READY],
  ] as const)('%o → %s', (over, state) => {
    expect(nodeStateOf(node('a', over), NOW, 3000)).toBe(state);
  });
});
