import { credentials, Metadata, Server, ServerCredentials, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promiseClient, unaryCall } from './grpc-promise.js';
import { cluster } from './index.js';

type Callback = (error: { code: status; details: string } | null, response?: unknown) => void;
type Call = { request: { vmId?: string; nodeId?: string }; metadata: Metadata };

// A ClusterService on a loopback port: getVm answers with the token it was sent, getNode never answers
// (for deadlines), deleteVm fails; grpc-js answers UNIMPLEMENTED for the rest.
let server: Server;
let client: cluster.ClusterServiceClient;
const held: Callback[] = [];

beforeAll(async () => {
  server = new Server();
  server.addService(cluster.ClusterServiceService, {
    getVm: (call: Call, callback: Callback) =>
      callback(null, cluster.Vm.fromPartial({ vmId: call.request.vmId, name: String(call.metadata.get('authorization')[0] ?? '') })),
    getNode: (_call: Call, callback: Callback) => held.push(callback),
    deleteVm: (_call: Call, callback: Callback) => callback({ code: status.FAILED_PRECONDITION, details: 'busy' }),
    createVm: (call: { request: cluster.CreateVmRequest }, callback: Callback) =>
      callback(null, cluster.Vm.fromPartial({ name: call.request.name, image: call.request.image, memoryMib: call.request.memoryMib, workload: call.request.workload })),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, p) => (error ? reject(error) : resolve(p))),
  );
  client = new cluster.ClusterServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
});

afterAll(async () => {
  for (const callback of held) callback({ code: status.CANCELLED, details: 'test over' });
  client?.close();
  await new Promise<void>((resolve) => (server ? server.tryShutdown(() => resolve()) : resolve()));
});

const rejection = (p: Promise<unknown>) => p.then(() => expect.fail('the call succeeded'), (e: ServiceError) => e);

describe('unaryCall', () => {
  it('resolves with the response and sends the metadata', async () => {
    const metadata = new Metadata();
    metadata.set('authorization', 'Bearer t');
    const vm = await unaryCall(client, 'getVm', { vmId: 'vm-1' }, { metadata });
    expect([vm.vmId, vm.name]).toEqual(['vm-1', 'Bearer t']);
  });

  it('rejects with the ServiceError as grpc-js made it', async () => {
    const error = await rejection(unaryCall(client, 'deleteVm', { vmId: 'vm-1', requestId: '' }));
    expect([error.code, error.details]).toEqual([status.FAILED_PRECONDITION, 'busy']);
    expect(error.metadata).toBeInstanceOf(Metadata);
  });

  it('applies the deadline: timeoutMs from now, or an absolute deadline', async () => {
    expect((await rejection(unaryCall(client, 'getNode', { nodeId: 'n' }, { timeoutMs: 50 }))).code).toBe(status.DEADLINE_EXCEEDED);
    expect((await rejection(unaryCall(client, 'getNode', { nodeId: 'n' }, { deadline: Date.now() + 50 }))).code).toBe(status.DEADLINE_EXCEEDED);
  });
});

describe('promiseClient', () => {
  it('wraps the unary methods only, with the defaults of each call under its own options', async () => {
    const api = promiseClient(client, cluster.ClusterServiceService, cluster, () => {
      const metadata = new Metadata();
      metadata.set('authorization', 'Bearer default');
      return { metadata, timeoutMs: 5_000 };
    });
    expect(Object.keys(api)).toContain('getVm');
    expect(Object.keys(api)).not.toContain('watchMigration');
    expect((await api.getVm({ vmId: 'a' })).name).toBe('Bearer default');
    const own = new Metadata();
    own.set('authorization', 'Bearer own');
    expect((await api.getVm({ vmId: 'a' }, { metadata: own })).name).toBe('Bearer own');
    expect((await rejection(api.getNode({ nodeId: 'n' }, { timeoutMs: 50 }))).code).toBe(status.DEADLINE_EXCEEDED);
  });

  it('sends the fields a request leaves out, at any depth, with their proto defaults', async () => {
    const api = promiseClient(client, cluster.ClusterServiceService, cluster);
    // Without the completion, ts-proto's encoder throws on the int64 memory_mib left undefined.
    const vm = await api.createVm({ name: 'partial', workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM } });
    expect(vm).toMatchObject({ name: 'partial', image: '', memoryMib: 0, workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, seed: 0 } });
  });

  it('refuses messages that do not name every request type', () => {
    expect(() => promiseClient(client, cluster.ClusterServiceService, {})).toThrow(/CreateVmRequest/);
  });
});
