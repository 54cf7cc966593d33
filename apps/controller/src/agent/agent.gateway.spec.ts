// AgentGateway against a plain grpc-js AgentService on a loopback port that refuses with the rich
// error details the real agent sends: the agent's reason and fields reach AgentRejectedError from
// the trailer, whatever the message text says.
import { Server, ServerCredentials, status, type sendUnaryData } from '@grpc/grpc-js';
import { agent, AGENT_ERROR_DOMAIN, toServerError } from '@vmm/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeRecord } from '../common/model.js';
import { AgentRejectedError, AgentUnavailableError } from '../errors.js';
import { AgentClientPool } from './agent-client.pool.js';
import { AgentGateway } from './agent.gateway.js';

type Callback = sendUnaryData<never>;

let server: Server;
let node: NodeRecord;
const pool = new AgentClientPool({ agentPlane: { insecure: true } });
const gateway = new AgentGateway(pool);

beforeAll(async () => {
  server = new Server();
  server.addService(agent.AgentServiceService, {
    setKsm: (_call: unknown, callback: Callback) =>
      callback(toServerError({ code: status.FAILED_PRECONDITION, message: 'text that names no code', reason: 'KNOB_BUSY', domain: AGENT_ERROR_DOMAIN })),
    createVm: (_call: unknown, callback: Callback) =>
      callback(
        toServerError({
          code: status.INVALID_ARGUMENT,
          message: "invalid image: unknown image 'x'",
          reason: 'INVALID_VM_SPEC',
          domain: AGENT_ERROR_DOMAIN,
          fieldViolations: [{ field: 'spec.image', description: "unknown image 'x'" }],
        }),
      ),
    // An answer without details (an older agent): the refusal still maps, with no reason.
    deleteVm: (_call: unknown, callback: Callback) => callback({ code: status.PERMISSION_DENIED, details: 'no' }),
    abortMigration: (_call: unknown, callback: Callback) => callback({ code: status.UNAVAILABLE, details: 'going away' }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, p) => (error ? reject(error) : resolve(p))),
  );
  node = { nodeId: 'node-1', address: `127.0.0.1:${port}` } as NodeRecord;
});

afterAll(async () => {
  pool.onModuleDestroy();
  await new Promise<void>((resolve) => (server ? server.tryShutdown(() => resolve()) : resolve()));
});

const rejection = (p: Promise<unknown>) => p.then(() => expect.fail('the call succeeded'), (e: unknown) => e);

describe('AgentGateway', () => {
  it("reads the agent's reason from the details trailer into AgentRejectedError", async () => {
    const error = await rejection(gateway.setKsm(node, { maxPageSharing: 10 }));
    expect(error).toBeInstanceOf(AgentRejectedError);
    expect(error).toMatchObject({ nodeId: 'node-1', grpcCode: status.FAILED_PRECONDITION, reason: 'KNOB_BUSY', fieldViolations: [] });
    expect((error as Error).message).toBe('node "node-1" agent refused: SetKsm: text that names no code');
  });

  it("names the agent's bad fields as fields of the API request", async () => {
    const error = await rejection(gateway.createVm(node, agent.VmSpec.fromPartial({ vmId: 'vm-1', image: 'x' })));
    expect(error).toMatchObject({ grpcCode: status.INVALID_ARGUMENT, reason: 'INVALID_VM_SPEC', fieldViolations: [{ field: 'image', description: "unknown image 'x'" }] });
  });

  it('maps a refusal without details, with an empty reason', async () => {
    const error = await rejection(gateway.deleteVm(node, 'vm-1'));
    expect(error).toMatchObject({ grpcCode: status.PERMISSION_DENIED, reason: '' });
  });

  it('an unavailable agent is AgentUnavailableError', async () => {
    expect(await rejection(gateway.abortMigration(node, agent.AbortMigrationRequest.fromPartial({ migrationId: 'm', reason: 'test' })))).toBeInstanceOf(AgentUnavailableError);
  });
});
