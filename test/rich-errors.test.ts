// Rich errors (docs/api.md, Errors), decoded from the real grpc-status-details-bin trailer of calls
// over real sockets to a real controller and agent: every error carries google.rpc.ErrorInfo (the
// stable reason, the domain), INVALID_ARGUMENT also a google.rpc.BadRequest naming the field; and an
// agent's refusal reaches the controller with the agent's own reason.
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster, decodeStatusDetails, STATUS_DETAILS_TRAILER, type StatusDetails } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';
import { imageVm, waitForNode } from './support/ksm.js';
import { agentAddress, agentApi, type AgentApi } from './support/migration.js';
import { vmRequest } from './support/vms.js';

const TOKEN = 'rich-errors-token';
const NODE = 'node-1';
const IMAGE = 'alpine-3.20';

let c: TestCluster;
let api: ClusterApi;
let agentOfNode: AgentApi;
const vmIds: string[] = [];

beforeAll(async () => {
  c = await startTestCluster({ agents: 1, token: TOKEN, reportIntervalMs: 250 });
  api = c.api();
  agentOfNode = agentApi(agentAddress(c, NODE));
});

afterAll(async () => {
  agentOfNode?.close();
  await stopTestCluster(c, api, vmIds);
});

/** The call's failure, and the google.rpc.Status its trailer carried (decoded here, from the bytes). */
async function failure(call: Promise<unknown>): Promise<{ error: ServiceError; details: StatusDetails }> {
  const error = await call.then(
    (value) => expect.fail(`the call succeeded with ${JSON.stringify(value)}`),
    (e: ServiceError) => e,
  );
  const [trailer] = error.metadata.get(STATUS_DETAILS_TRAILER);
  expect(Buffer.isBuffer(trailer), `a ${STATUS_DETAILS_TRAILER} trailer on "${error.details}"`).toBe(true);
  const details = decodeStatusDetails(trailer as Buffer);
  // The Status in the trailer repeats the call's status and message, as the standard asks.
  expect([details.code, details.message]).toEqual([error.code, error.details]);
  return { error, details };
}

describe('ClusterService errors carry ErrorInfo (domain cluster.v1)', () => {
  it.each([
    ['an empty name', { name: '' }, 'name'],
    ['zero memory_mib', { memoryMib: 0 }, 'memory_mib'],
    ['an unspecified workload kind', { workload: { ...vmRequest().workload!, kind: cluster.WorkloadKind.WORKLOAD_KIND_UNSPECIFIED } }, 'workload.kind'],
  ])('CreateVm with %s: INVALID_ARGUMENT, and a BadRequest naming %s', async (_case, overrides, field) => {
    const { error, details } = await failure(api.createVm(vmRequest(overrides)));
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(details.errorInfo).toMatchObject({ reason: 'INVALID_ARGUMENT', domain: 'cluster.v1' });
    expect(details.badRequest?.fieldViolations.map((v) => v.field)).toEqual([field]);
    expect(details.badRequest?.fieldViolations[0]?.description).not.toBe('');
  });

  it('NOT_FOUND names the code and the id', async () => {
    const { error, details } = await failure(api.getVm({ vmId: 'no-such-vm' }));
    expect(error.code).toBe(status.NOT_FOUND);
    expect(details.errorInfo).toEqual({ reason: 'VM_NOT_FOUND', domain: 'cluster.v1', metadata: { vmId: 'no-such-vm' } });
    expect(details.badRequest).toBeUndefined();
  });

  it('UNAUTHENTICATED, from the guard, carries its reason too', async () => {
    const client = new cluster.ClusterServiceClient(c.controllerAddress, credentials.createInsecure());
    try {
      const call = new Promise((resolve, reject) => client.listNodes(cluster.ListNodesRequest.fromPartial({}), (e, r) => (e ? reject(e) : resolve(r))));
      const { error, details } = await failure(call);
      expect(error.code).toBe(status.UNAUTHENTICATED);
      expect(details.errorInfo).toMatchObject({ reason: 'UNAUTHENTICATED', domain: 'cluster.v1' });
    } finally {
      client.close();
    }
  });
});

describe("an agent's refusal", () => {
  it('AgentService answers in domain agent.v1, naming the field of bad input', async () => {
    // pages_to_scan 0 straight to the agent (the controller is not asked): Linux's range starts at 1.
    const { error, details } = await failure(agentOfNode.setKsm({ knobs: { pagesToScan: 0 } }));
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(details.errorInfo).toMatchObject({ reason: 'INVALID_KNOB', domain: 'agent.v1' });
    expect(details.badRequest?.fieldViolations.map((v) => v.field)).toEqual(['knobs.pages_to_scan']);
  });

  it("reaches the controller with the agent's reason: max_page_sharing while KSM pages exist (KNOB_BUSY)", async () => {
    // Two VMs of one image on the node, and a fast ksmd, until KSM pages exist.
    for (const name of ['rich-a', 'rich-b']) vmIds.push((await api.createVm(imageVm(IMAGE, name, NODE))).vmId);
    await api.setNodeKsm({ nodeId: NODE, knobs: { run: 1, pagesToScan: 5000, sleepMillisecs: 10 } });
    await waitForNode(api, NODE, (n) => (n.ksm?.pagesShared ?? 0) > 0, 30_000, 'KSM pages on node-1');

    // Only the agent knows that KSM pages exist: it refuses (Linux: EBUSY), the controller passes it on.
    const { error, details } = await failure(api.setNodeKsm({ nodeId: NODE, knobs: { maxPageSharing: 100 } }));
    expect(error.code).toBe(status.FAILED_PRECONDITION);
    expect(details.errorInfo).toEqual({
      reason: 'AGENT_REJECTED',
      domain: 'cluster.v1',
      metadata: { nodeId: NODE, agentReason: 'KNOB_BUSY' },
    });
    // The same refusal from the agent itself, in its own domain.
    const direct = await failure(agentOfNode.setKsm({ knobs: { maxPageSharing: 100 } }));
    expect(direct.details.errorInfo).toMatchObject({ reason: 'KNOB_BUSY', domain: 'agent.v1' });
    // Nothing changed: the knob keeps its value.
    expect((await api.getNode({ nodeId: NODE })).ksmKnobs?.maxPageSharing).toBe(256);
  });
});
