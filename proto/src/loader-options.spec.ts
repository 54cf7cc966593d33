import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadSync } from '@grpc/proto-loader';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { agent, cluster } from './index.js';
import { LOADER_OPTIONS } from './loader-options.js';
import { AGENT_PROTO, CLUSTER_PROTO, PROTO_ROOT } from './paths.js';

// What Nest does with LOADER_OPTIONS, against what the ts-proto types promise.
const definition = loadSync([CLUSTER_PROTO, AGENT_PROTO], { ...LOADER_OPTIONS, includeDirs: [...LOADER_OPTIONS.includeDirs] });
type Codec = { requestSerialize(v: unknown): Buffer; requestDeserialize(b: Buffer): unknown; responseSerialize(v: unknown): Buffer; responseDeserialize(b: Buffer): unknown };
const method = (service: string, name: string) => (definition[service] as unknown as Record<string, Codec>)[name]!;

const spec: agent.VmSpec = {
  vmId: 'vm-1',
  name: 'web-1',
  vcpus: 2,
  memoryMib: 6 * 1024 * 1024, // an int64 beyond 32 bits (in MiB: 6 TiB)
  image: 'debian-12',
  workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_HOTCOLD, dirtyRatePagesPerSec: 8000, workingSetMib: 64, seed: 7 },
  labels: { tier: 'web' },
  fencingEpoch: 3,
  restartPolicy: cluster.RestartPolicy.RESTART_POLICY_ALWAYS,
};
const status: agent.VmStatus = {
  vmId: 'vm-1',
  state: cluster.VmState.VM_STATE_RUNNING,
  pagesTotal: 2 ** 40,
  residentPages: 12,
  fencingEpoch: 3,
  spec,
  writesTotal: 2 ** 40 + 1,
};

describe('LOADER_OPTIONS agree with the generated types', () => {
  it('a message encoded by ts-proto decodes in Nest (proto-loader) to the same typed object', () => {
    const bytes = Buffer.from(agent.VmStatus.encode(status).finish());
    expect(method('agent.v1.AgentService', 'CreateVm').responseDeserialize(bytes)).toEqual(status);
  });

  it('what a Nest handler returns encodes to what ts-proto decodes', () => {
    const bytes = method('agent.v1.AgentService', 'CreateVm').responseSerialize(status);
    expect(agent.VmStatus.decode(bytes)).toEqual(status);
  });

  it('unset fields arrive with their defaults, as the generated (non-optional) types say', () => {
    const empty = method('cluster.v1.ClusterService', 'CreateVm').requestDeserialize(Buffer.alloc(0));
    expect(empty).toEqual({ ...cluster.CreateVmRequest.fromPartial({}), workload: null });
  });

  it('proto3 optional fields: a set one carries its value, an unset one is absent, as in ts-proto', () => {
    const bytes = Buffer.from(cluster.SetNodeKsmRequest.encode({ nodeId: 'n', knobs: { pagesToScan: 0 } }).finish());
    const decoded = method('cluster.v1.ClusterService', 'SetNodeKsm').requestDeserialize(bytes) as cluster.SetNodeKsmRequest;
    expect(decoded.knobs?.pagesToScan).toBe(0);
    expect(decoded.knobs?.run ?? undefined).toBeUndefined();
  });

  it('both generated outputs share the options that shape the types', () => {
    const config = parse(readFileSync(path.join(PROTO_ROOT, 'buf.gen.yaml'), 'utf8')) as { plugins: { out: string; opt: string[] }[] };
    const shaping = ['forceLong=number', 'stringEnums=true', 'enumsAsLiterals=true', 'env=node', 'importSuffix=.js'];
    expect(config.plugins.map((p) => p.out)).toEqual(['src/gen', 'src/gen-nest']);
    for (const plugin of config.plugins) expect(plugin.opt, plugin.out).toEqual(expect.arrayContaining(shaping));
  });
});
