/**
 * Domain errors of the controller. Each carries a stable `code`; `grpcStatusOf` maps codes to gRPC
 * statuses in one place (a Record over ControllerErrorCode: a new code fails to compile until mapped),
 * and the one exception filter (grpc/grpc-exception.filter.ts) uses it and sends the code as the
 * error's google.rpc.ErrorInfo reason. Branch on `code`, never on `message`.
 */
import { status } from '@grpc/grpc-js';
import type { FieldViolation } from '@vmm/proto';

export type ControllerErrorCode =
  | 'INVALID_ARGUMENT'
  | 'VM_NOT_FOUND'
  | 'NODE_NOT_FOUND'
  | 'MIGRATION_NOT_FOUND'
  | 'VM_NAME_TAKEN'
  | 'NODE_NOT_SCHEDULABLE'
  | 'NO_CAPACITY'
  | 'VM_BUSY'
  | 'VM_STATE_CONFLICT'
  | 'MIGRATION_NOT_CANCELLABLE'
  | 'MIGRATION_NOT_UPDATABLE'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'AGENT_UNAVAILABLE'
  | 'AGENT_REJECTED'
  | 'NOT_IMPLEMENTED'
  | 'REQUEST_IN_PROGRESS'
  | 'TOO_MANY_STREAMS'
  | 'REVISION_COMPACTED'
  | 'INTERNAL';

export abstract class ControllerError extends Error {
  abstract readonly code: ControllerErrorCode;
  constructor(message: string) {
    super(message);
    this.name = this.constructor.name;
  }
}

/** A request field is malformed or out of range; `field` is its proto name (path: `workload.kind`). */
export class InvalidArgumentError extends ControllerError {
  readonly code = 'INVALID_ARGUMENT';
  constructor(
    readonly field: string,
    /** What is wrong with it ("must not be empty"). */
    readonly description: string,
  ) {
    super(`${field}: ${description}`);
  }
}

/** No VM has this id. */
export class VmNotFoundError extends ControllerError {
  readonly code = 'VM_NOT_FOUND';
  constructor(readonly vmId: string) {
    super(`vm ${JSON.stringify(vmId)} not found`);
  }
}

/** No registered node has this id. */
export class NodeNotFoundError extends ControllerError {
  readonly code = 'NODE_NOT_FOUND';
  constructor(readonly nodeId: string) {
    super(`node ${JSON.stringify(nodeId)} not found`);
  }
}

/** No migration has this id. */
export class MigrationNotFoundError extends ControllerError {
  readonly code = 'MIGRATION_NOT_FOUND';
  constructor(readonly migrationId: string) {
    super(`migration ${JSON.stringify(migrationId)} not found`);
  }
}

/** CreateVm with a name another VM already has. */
export class VmNameTakenError extends ControllerError {
  readonly code = 'VM_NAME_TAKEN';
  constructor(readonly vmName: string) {
    super(`a vm named ${JSON.stringify(vmName)} already exists`);
  }
}

/** The node a request names explicitly is cordoned or not ready, so nothing may be placed there. */
export class NodeNotSchedulableError extends ControllerError {
  readonly code = 'NODE_NOT_SCHEDULABLE';
  constructor(
    readonly nodeId: string,
    readonly reason: 'cordoned' | 'not ready' | 'draining' | 'of another hypervisor' | 'without the node_selector labels',
  ) {
    super(`node ${JSON.stringify(nodeId)} is ${reason}`);
  }
}

/** The VM would fit an empty node, but no (requested) node has room within its overcommit limits now. */
export class NoCapacityError extends ControllerError {
  readonly code = 'NO_CAPACITY';
  constructor(detail: string) {
    super(`no room for the vm: ${detail}`);
  }
}

/** The VM is being created or migrated right now; the request must wait until that is over. */
export class VmBusyError extends ControllerError {
  readonly code = 'VM_BUSY';
  constructor(
    readonly vmId: string,
    activity: string,
  ) {
    super(`vm ${JSON.stringify(vmId)} is ${activity}`);
  }
}

/** A lifecycle call (PauseVm, ResumeVm, StopVm, StartVm) the VM's state does not allow: pause a stopped VM, start a running one. */
export class VmStateConflictError extends ControllerError {
  readonly code = 'VM_STATE_CONFLICT';
  constructor(
    readonly vmId: string,
    readonly action: string,
    readonly state: string,
  ) {
    super(`vm ${JSON.stringify(vmId)} cannot ${action}: it is ${state}`);
  }
}

/** CancelMigration once the migration is COMMITTING: the verified copy is already becoming the VM. */
export class MigrationNotCancellableError extends ControllerError {
  readonly code = 'MIGRATION_NOT_CANCELLABLE';
  constructor(
    readonly migrationId: string,
    readonly phase: string,
  ) {
    super(`migration ${JSON.stringify(migrationId)} can no longer be cancelled (phase ${phase})`);
  }
}

/**
 * UpdateMigration of a migration that is not in PRECOPY (not started yet, switching over, finished),
 * or whose source has already left its pre-copy rounds.
 */
export class MigrationNotUpdatableError extends ControllerError {
  readonly code = 'MIGRATION_NOT_UPDATABLE';
  constructor(
    readonly migrationId: string,
    readonly phase: string,
  ) {
    super(`migration ${JSON.stringify(migrationId)} can be updated only in PRECOPY (phase ${phase})`);
  }
}

/** A ClusterService call without a valid `authorization: Bearer <token>` while API_TOKENS is set. */
export class UnauthenticatedError extends ControllerError {
  readonly code = 'UNAUTHENTICATED';
  constructor(reason: string) {
    super(reason);
  }
}

/** A caller proved who it is but may not make this call: a reader token on a write, a node acting as another node. */
export class PermissionDeniedError extends ControllerError {
  readonly code = 'PERMISSION_DENIED';
  constructor(reason: string) {
    super(reason);
  }
}

/** A node agent could not be reached (down, restarting, deadline exceeded). The request left no state. */
export class AgentUnavailableError extends ControllerError {
  readonly code = 'AGENT_UNAVAILABLE';
  constructor(
    readonly nodeId: string,
    detail: string,
  ) {
    super(`node ${JSON.stringify(nodeId)} agent unavailable: ${detail}`);
  }
}

/**
 * A node agent refused a request for a reason the caller can act on. `grpcCode` is the agent's status,
 * `reason` the agent's stable code (its ErrorInfo.reason, e.g. KNOB_BUSY; empty if it sent none) and
 * `fieldViolations` the fields it named (its BadRequest, as paths of the API request).
 */
export class AgentRejectedError extends ControllerError {
  readonly code = 'AGENT_REJECTED';
  constructor(
    readonly nodeId: string,
    readonly grpcCode: status,
    detail: string,
    readonly reason = '',
    readonly fieldViolations: readonly FieldViolation[] = [],
  ) {
    super(`node ${JSON.stringify(nodeId)} agent refused: ${detail}`);
  }
}

/** A method this controller does not serve (yet), or an agent lacking the method asked for. */
export class NotImplementedError extends ControllerError {
  readonly code = 'NOT_IMPLEMENTED';
  constructor(what: string) {
    super(`${what} is not implemented`);
  }
}

/** A broken invariant or a failure of Redis itself; the last resort, logged with its cause. */
/** A call with this request_id is still being carried out (by this or another controller): retry. */
export class RequestInProgressError extends ControllerError {
  readonly code = 'REQUEST_IN_PROGRESS';
  constructor(readonly requestId: string) {
    super(`request ${JSON.stringify(requestId)} is still in progress; retry it`);
  }
}

/** A client (or the whole controller) holds as many watch streams as it may: close one first. */
export class TooManyStreamsError extends ControllerError {
  readonly code = 'TOO_MANY_STREAMS';
  constructor(detail: string) {
    super(`too many watch streams: ${detail}`);
  }
}

/** WatchEvents from a revision older than the change history kept (compacted): list again, then watch from the list's revision. */
export class RevisionCompactedError extends ControllerError {
  readonly code = 'REVISION_COMPACTED';
  constructor(
    readonly sinceRevision: number,
    readonly oldestRevision: number,
  ) {
    super(`revision ${sinceRevision} is compacted: the history kept starts after ${oldestRevision - 1}; list again and watch from its revision`);
  }
}

export class InternalError extends ControllerError {
  readonly code = 'INTERNAL';
  constructor(message: string) {
    super(message);
  }
}

/** Agent statuses passed through as they are: they describe the request, not the agent's health. */
const PASS_THROUGH_AGENT_CODES = new Set<status>([
  status.INVALID_ARGUMENT,
  status.ALREADY_EXISTS,
  status.RESOURCE_EXHAUSTED,
  status.FAILED_PRECONDITION,
  status.NOT_FOUND,
  status.UNIMPLEMENTED,
]);

const STATUS_BY_CODE: Record<ControllerErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  VM_NOT_FOUND: status.NOT_FOUND,
  NODE_NOT_FOUND: status.NOT_FOUND,
  MIGRATION_NOT_FOUND: status.NOT_FOUND,
  VM_NAME_TAKEN: status.ALREADY_EXISTS,
  NODE_NOT_SCHEDULABLE: status.FAILED_PRECONDITION,
  NO_CAPACITY: status.RESOURCE_EXHAUSTED,
  VM_BUSY: status.FAILED_PRECONDITION,
  VM_STATE_CONFLICT: status.FAILED_PRECONDITION,
  MIGRATION_NOT_CANCELLABLE: status.FAILED_PRECONDITION,
  MIGRATION_NOT_UPDATABLE: status.FAILED_PRECONDITION,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  AGENT_UNAVAILABLE: status.UNAVAILABLE,
  AGENT_REJECTED: status.FAILED_PRECONDITION,
  NOT_IMPLEMENTED: status.UNIMPLEMENTED,
  REQUEST_IN_PROGRESS: status.ABORTED,
  TOO_MANY_STREAMS: status.RESOURCE_EXHAUSTED,
  REVISION_COMPACTED: status.OUT_OF_RANGE,
  INTERNAL: status.INTERNAL,
};

export function grpcStatusOf(error: ControllerError): status {
  if (error instanceof AgentRejectedError && PASS_THROUGH_AGENT_CODES.has(error.grpcCode)) return error.grpcCode;
  return STATUS_BY_CODE[error.code];
}

export function isControllerError(error: unknown): error is ControllerError {
  return error instanceof ControllerError;
}
