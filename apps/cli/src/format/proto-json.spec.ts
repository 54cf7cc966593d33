import { describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import { messageNameOf, toProtoJson } from './proto-json.js';

describe('toProtoJson', () => {
  it('prints an API message as grpcurl does: enums by name, int64 as strings, every field', () => {
    const node = cluster.Node.fromPartial({ nodeId: 'node-1', vcpus: 8, memoryMib: 8192, state: cluster.NodeState.NODE_STATE_READY, vcpusAllocated: 2 });
    const json = toProtoJson({ nodes: [node] }) as { nodes: Record<string, unknown>[] };
    expect(json.nodes[0]).toMatchObject({ nodeId: 'node-1', vcpus: 8, memoryMib: '8192', state: 'NODE_STATE_READY', vcpusAllocated: 2, labels: {} });
  });

  it('converts the messages inside a composite and leaves other values alone', () => {
    const vm = cluster.Vm.fromPartial({ vmId: 'v', memoryMib: 64, workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_IDLE } });
    expect(messageNameOf(vm)).toBe('Vm');
    expect(toProtoJson({ client: { version: '1' }, vms: [vm] })).toMatchObject({ client: { version: '1' }, vms: [{ vmId: 'v', memoryMib: '64' }] });
    expect(toProtoJson('plain')).toBe('plain');
  });
});
