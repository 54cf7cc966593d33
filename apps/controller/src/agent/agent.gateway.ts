/**
 * Calls to node agents (AgentService), with deadlines, turning grpc-js failures into domain errors:
 * unreachable → AgentUnavailableError, a refusal about the request → AgentRejectedError.
 */
import { Inject, Injectable } from '@nestjs/common';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { agent, type cluster } from '@vmm/proto';
import type { NodeRecord } from '../common/model.js';
import { AgentRejectedError, AgentUnavailableError, NotImplementedError } from '../errors.js';
import { AgentClientPool } from './agent-client.pool.js';

/** Creating a VM loads its image into emulator memory: allow for large VMs on a busy machine. */
export const CREATE_VM_DEADLINE_MS = 30_000;
export const AGENT_CALL_DEADLINE_MS = 10_000;

const UNAVAILABLE_CODES = new Set<status>([
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.CANCELLED,
  status.UNKNOWN,
  status.INTERNAL,
]);

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: { deadline: number },
  callback: (error: ServiceError | null, response: Res) => void,
) => unknown;

@Injectable()
export class AgentGateway {
  constructor(@Inject(AgentClientPool) private readonly pool: AgentClientPool) {}

  createVm(node: NodeRecord, spec: agent.VmSpec): Promise<agent.VmStatus> {
    return this.call(node, 'CreateVm', (c) => c.createVm.bind(c) as UnaryMethod<agent.CreateVmRequest, agent.VmStatus>, { spec }, CREATE_VM_DEADLINE_MS);
  }

  /** Resolves also when the agent no longer has the VM (NOT_FOUND): deletion is idempotent. */
  async deleteVm(node: NodeRecord, vmId: string): Promise<void> {
    try {
      await this.call(node, 'DeleteVm', (c) => c.deleteVm.bind(c) as UnaryMethod<agent.DeleteVmRequest, agent.DeleteVmResponse>, { vmId }, AGENT_CALL_DEADLINE_MS);
    } catch (error) {
      if (error instanceof AgentRejectedError && error.grpcCode === status.NOT_FOUND) return;
      throw error;
    }
  }

  async setKsm(node: NodeRecord, knobs: cluster.KsmKnobs): Promise<agent.SetKsmResponse> {
    try {
      return await this.call(node, 'SetKsm', (c) => c.setKsm.bind(c) as UnaryMethod<agent.SetKsmRequest, agent.SetKsmResponse>, { knobs }, AGENT_CALL_DEADLINE_MS);
    } catch (error) {
      if (error instanceof AgentRejectedError && error.grpcCode === status.UNIMPLEMENTED) {
        throw new NotImplementedError(`SetKsm on node ${node.nodeId}`);
      }
      throw error;
    }
  }

  private call<Req, Res>(
    node: NodeRecord,
    method: string,
    pick: (client: agent.AgentServiceClient) => UnaryMethod<Req, Res>,
    request: Req,
    deadlineMs: number,
  ): Promise<Res> {
    if (!node.address) return Promise.reject(new AgentUnavailableError(node.nodeId, 'no address registered'));
    const fn = pick(this.pool.get(node.address));
    return new Promise<Res>((resolve, reject) => {
      fn(request, new Metadata(), { deadline: Date.now() + deadlineMs }, (error, response) => {
        if (!error) return resolve(response);
        const detail = `${method}: ${error.details || error.message}`;
        if (UNAVAILABLE_CODES.has(error.code)) reject(new AgentUnavailableError(node.nodeId, detail));
        else reject(new AgentRejectedError(node.nodeId, error.code, detail));
      });
    });
  }
}
