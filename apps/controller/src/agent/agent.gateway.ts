/**
 * Calls to node agents (AgentService), with deadlines, turning grpc-js failures into domain errors:
 * unreachable → AgentUnavailableError, a refusal about the request → AgentRejectedError, which
 * carries the agent's stable code as read from the rich error details of its answer (ErrorInfo.reason
 * in the grpc-status-details-bin trailer), never parsed out of the message text.
 */
import { Inject, Injectable } from '@nestjs/common';
import { connectivityState, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import {
  agent,
  readStatusDetails,
  unaryCall,
  type BadRequest,
  type cluster,
  type FieldViolation,
  type UnaryMethodName,
  type UnaryRequest,
  type UnaryResponse,
} from '@vmm/proto';
import type { NodeRecord } from '../common/model.js';
import { AgentRejectedError, AgentUnavailableError, NotImplementedError } from '../errors.js';
import type { CommitAttempt } from '../migration/migration-steps.js';
import { AgentClientPool } from './agent-client.pool.js';

/** Creating a VM loads its image into emulator memory: allow for large VMs on a busy machine. */
export const CREATE_VM_DEADLINE_MS = 30_000;
export const AGENT_CALL_DEADLINE_MS = 10_000;
/** ContinueSwitchover: the source's guest is stopped meanwhile, and it gives up by itself after its hold. */
export const SWITCHOVER_CALL_DEADLINE_MS = 3_000;
/**
 * How long a call waits for a connection to an agent that is not connected (within its deadline):
 * long enough for an agent process to restart, short enough that a dead agent fails a migration
 * (and its rollback) in seconds, not after the whole deadline.
 */
export const CONNECT_WAIT_MS = 5_000;

const UNAVAILABLE_CODES = new Set<status>([
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.CANCELLED,
  status.UNKNOWN,
  status.INTERNAL,
]);

type AgentMethod = UnaryMethodName<agent.AgentServiceClient>;
type Client = agent.AgentServiceClient;

@Injectable()
export class AgentGateway {
  constructor(@Inject(AgentClientPool) private readonly pool: AgentClientPool) {}

  /** A node (re-)registered: calls to it go over a fresh channel (see AgentClientPool.reset). */
  agentRegistered(address: string, previousAddress?: string): void {
    this.pool.reset(address);
    if (previousAddress && previousAddress !== address) this.pool.reset(previousAddress);
  }

  createVm(node: NodeRecord, spec: agent.VmSpec): Promise<agent.VmStatus> {
    return this.call(node, 'createVm', { spec }, CREATE_VM_DEADLINE_MS);
  }

  /** Resolves also when the agent no longer has the VM (NOT_FOUND): deletion is idempotent. */
  async deleteVm(node: NodeRecord, vmId: string): Promise<void> {
    try {
      await this.call(node, 'deleteVm', { vmId }, AGENT_CALL_DEADLINE_MS);
    } catch (error) {
      if (error instanceof AgentRejectedError && error.grpcCode === status.NOT_FOUND) return;
      throw error;
    }
  }

  setVmPower(node: NodeRecord, vmId: string, fencingEpoch: number, action: agent.PowerAction): Promise<agent.VmStatus> {
    // START boots a VM: the create deadline (memory from its image) applies.
    return this.call(node, 'setVmPower', { vmId, fencingEpoch, action }, CREATE_VM_DEADLINE_MS);
  }

  async setKsm(node: NodeRecord, knobs: cluster.KsmKnobs): Promise<agent.SetKsmResponse> {
    try {
      return await this.call(node, 'setKsm', { knobs }, AGENT_CALL_DEADLINE_MS);
    } catch (error) {
      if (error instanceof AgentRejectedError && error.grpcCode === status.UNIMPLEMENTED) {
        throw new NotImplementedError(`SetKsm on node ${node.nodeId}`);
      }
      throw error;
    }
  }

  prepareIncoming(node: NodeRecord, req: agent.PrepareIncomingRequest): Promise<agent.PrepareIncomingResponse> {
    return this.call(node, 'prepareIncoming', req, CREATE_VM_DEADLINE_MS);
  }

  commitIncoming(node: NodeRecord, req: agent.CommitIncomingRequest): Promise<agent.CommitIncomingResponse> {
    return this.call(node, 'commitIncoming', req, 20_000);
  }

  /**
   * One CommitIncoming attempt, classified for the reconciler: NOT_FOUND (the target never held or
   * forgot the migration and does not run the VM) and DATA_LOSS (INCOMING_LOST) mean the copy is gone.
   */
  async attemptCommit(node: NodeRecord | undefined, req: agent.CommitIncomingRequest): Promise<CommitAttempt> {
    if (!node) return { kind: 'unreachable', detail: 'the target node is not registered' };
    try {
      const { resumedAtMs } = await this.commitIncoming(node, req);
      return { kind: 'resumed', resumedAtMs: Number(resumedAtMs) };
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      if (error instanceof AgentRejectedError && (error.grpcCode === status.NOT_FOUND || error.grpcCode === status.DATA_LOSS)) {
        return { kind: 'lost', detail };
      }
      if (error instanceof AgentUnavailableError) return { kind: 'unreachable', detail };
      return { kind: 'refused', detail };
    }
  }

  async releaseOutgoing(node: NodeRecord, req: agent.ReleaseOutgoingRequest): Promise<void> {
    await this.call(node, 'releaseOutgoing', req, AGENT_CALL_DEADLINE_MS);
  }

  async abortMigration(node: NodeRecord, req: agent.AbortMigrationRequest): Promise<void> {
    await this.call(node, 'abortMigration', req, AGENT_CALL_DEADLINE_MS);
  }

  /** UpdateMigration on the source agent (its next pre-copy round). */
  async updateOutgoing(node: NodeRecord, req: agent.UpdateOutgoingRequest): Promise<void> {
    await this.call(node, 'updateOutgoing', req, AGENT_CALL_DEADLINE_MS);
  }

  /** A source holding at the switch-over sends its last pages: on the downtime's critical path, so a short deadline. */
  async continueSwitchover(node: NodeRecord, req: agent.ContinueSwitchoverRequest): Promise<void> {
    await this.call(node, 'continueSwitchover', req, SWITCHOVER_CALL_DEADLINE_MS);
  }

  /**
   * The source's progress stream. `onProgress` sees every message in order (it may be async: calls
   * are queued one after the other); resolves with the last message when the stream ends.
   * `onUrgent` sees each message synchronously on arrival, ahead of the queued `onProgress` work:
   * the switch-over must not wait behind progress bookkeeping while the VM is paused.
   */
  startOutgoing(
    node: NodeRecord,
    req: agent.StartOutgoingRequest,
    deadlineMs: number,
    onProgress: (p: agent.MigrationProgress) => Promise<void>,
    onUrgent: (p: agent.MigrationProgress) => void = () => undefined,
  ): { done: Promise<agent.MigrationProgress | undefined>; cancel: () => void } {
    const startedAtMs = Date.now();
    let stream: ReturnType<agent.AgentServiceClient['startOutgoing']> | undefined;
    let cancelled = false;
    let last: agent.MigrationProgress | undefined;
    let chain = Promise.resolve();
    let progressError: unknown;
    const done = this.connected(node, deadlineMs).then(
      (client) =>
        new Promise<agent.MigrationProgress | undefined>((resolve, reject) => {
          if (cancelled) return reject(new AgentUnavailableError(node.nodeId, 'StartOutgoing: cancelled before it started'));
          const s = client.startOutgoing(req, waitForReady(), { deadline: startedAtMs + deadlineMs });
          stream = s;
          s.on('data', (p: agent.MigrationProgress) => {
            last = p;
            onUrgent(p);
            // Queued, not paused: a few messages per second need no backpressure, and pausing would
            // hold the switch-over message back behind bookkeeping.
            chain = chain.then(() => (progressError === undefined ? onProgress(p) : undefined)).catch((error: unknown) => {
              progressError ??= error;
            });
          });
          s.on('end', () => chain.then(() => (progressError === undefined ? resolve(last) : reject(progressError))));
          s.on('error', (error: ServiceError) => {
            const mapped = agentCallError(node.nodeId, 'StartOutgoing', error);
            void chain.then(() => reject(mapped));
          });
        }),
    );
    const cancel = () => {
      cancelled = true;
      stream?.cancel();
    };
    return { done, cancel };
  }

  private async call<K extends AgentMethod>(
    node: NodeRecord,
    method: K,
    request: UnaryRequest<Client[K]>,
    deadlineMs: number,
  ): Promise<UnaryResponse<Client[K]>> {
    const startedAtMs = Date.now();
    const client = await this.connected(node, deadlineMs);
    try {
      // waitForReady also covers a connection lost between the check and the call.
      return await unaryCall(client, method, request, { metadata: waitForReady(), deadline: startedAtMs + deadlineMs });
    } catch (error) {
      throw agentCallError(node.nodeId, rpcName(method), error as ServiceError);
    }
  }

  /**
   * The node's client once its channel is connected: at once when it is, else after waiting up to
   * CONNECT_WAIT_MS (within the call's deadline) for it to connect. A channel backing off after
   * failures is retried at once rather than failing with "No connection established".
   */
  private connected(node: NodeRecord, deadlineMs: number): Promise<agent.AgentServiceClient> {
    if (!node.address) return Promise.reject(new AgentUnavailableError(node.nodeId, 'no address registered'));
    const client = this.pool.get(node.address, node.nodeId);
    if (client.getChannel().getConnectivityState(true) === connectivityState.READY) return Promise.resolve(client);
    const waitMs = Math.min(deadlineMs, CONNECT_WAIT_MS);
    return new Promise((resolve, reject) => {
      client.waitForReady(Date.now() + waitMs, (error) => {
        if (error) reject(new AgentUnavailableError(node.nodeId, `no connection within ${waitMs} ms (${node.address}: agent down or restarting)`));
        else resolve(client);
      });
    });
  }
}

/**
 * grpc-js takes wait-for-ready as a metadata option: the call waits (until its deadline) for the
 * channel to connect instead of failing at once while the channel backs off after failures.
 */
function waitForReady(): Metadata {
  return new Metadata({ waitForReady: true });
}

/** `createVm` → `CreateVm`: the rpc's name in the .proto, for messages. */
function rpcName(method: string): string {
  return method.charAt(0).toUpperCase() + method.slice(1);
}

/**
 * A failed call to an agent as a domain error: unreachable (or broken) → AgentUnavailableError; a
 * refusal → AgentRejectedError with the agent's code (ErrorInfo.reason) and the fields it named.
 */
function agentCallError(nodeId: string, rpc: string, error: ServiceError): AgentUnavailableError | AgentRejectedError {
  const detail = `${rpc}: ${error.details || error.message}`;
  if (UNAVAILABLE_CODES.has(error.code)) return new AgentUnavailableError(nodeId, detail);
  const details = readStatusDetails(error);
  return new AgentRejectedError(nodeId, error.code, detail, details?.errorInfo?.reason ?? '', apiFieldViolations(details?.badRequest));
}

/**
 * The agent's bad fields as paths of the API request: an agent request carries the VM's fields under
 * `spec` (VmSpec mirrors CreateVmRequest), other fields (`knobs.*`) are named as in the API already.
 */
function apiFieldViolations(badRequest: BadRequest | undefined): FieldViolation[] {
  return (badRequest?.fieldViolations ?? []).map((v) => ({
    field: v.field.startsWith('spec.') ? v.field.slice('spec.'.length) : v.field,
    description: v.description,
  }));
}
