/**
 * Errors of the node agent. Each has a stable `code`, a literal type that AgentErrorCode (at the end)
 * collects; the exception filter (grpc/agent-exception.filter.ts) maps these codes and the libs' to
 * gRPC statuses in typed Records, so that a new or renamed code fails to compile until it is mapped.
 * Branch on `code`, never on `message`.
 */
import type { ErrorCodeOf } from '@vmm/emulator';
import type * as agentErrors from './errors.js';

/** The environment holds a bad configuration value; the agent refuses to start. */
export class ConfigError extends Error {
  readonly code = 'INVALID_CONFIG';
  constructor(readonly problems: readonly string[]) {
    super(`invalid node agent configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** A VmSpec from the controller has a malformed or out-of-range field (names the field). */
export class InvalidVmSpecError extends Error {
  readonly code = 'INVALID_VM_SPEC';
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`invalid ${field}: ${detail}`);
    this.name = 'InvalidVmSpecError';
  }
}

/** A request field other than the VM spec is missing or malformed (names the field). */
export class InvalidRequestError extends Error {
  readonly code = 'INVALID_REQUEST';
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`invalid ${field}: ${detail}`);
    this.name = 'InvalidRequestError';
  }
}

/** A request names a VM this agent does not run. */
export class VmNotFoundError extends Error {
  readonly code = 'VM_NOT_FOUND';
  constructor(readonly vmId: string) {
    super(`VM ${vmId} is not on this node`);
    this.name = 'VmNotFoundError';
  }
}

/**
 * A request would run a VM id under an epoch older than one it was fenced at (the VM migrated away
 * and committed elsewhere), or older than the epoch the running copy already holds.
 */
export class VmFencedError extends Error {
  readonly code = 'VM_FENCED';
  constructor(
    readonly vmId: string,
    readonly requestedEpoch: number,
    readonly fencedEpoch: number,
  ) {
    super(`VM ${vmId} is fenced at epoch ${fencedEpoch}; refusing epoch ${requestedEpoch}`);
    this.name = 'VmFencedError';
  }
}

/** An incoming migration would take this node past the memory it may allocate (capacity × ratio). */
export class InsufficientMemoryError extends Error {
  readonly code = 'INSUFFICIENT_MEMORY';
  constructor(
    readonly vmId: string,
    readonly wantedMib: number,
    readonly freeMib: number,
  ) {
    super(`VM ${vmId} needs ${wantedMib} MiB but this node has ${freeMib} MiB left to allocate`);
    this.name = 'InsufficientMemoryError';
  }
}

/** A VM exists but is in a state the operation does not allow (e.g. it is migrating). */
export class VmBusyError extends Error {
  readonly code = 'VM_BUSY';
  constructor(
    readonly vmId: string,
    readonly reason: string,
  ) {
    super(`VM ${vmId} is busy: ${reason}`);
    this.name = 'VmBusyError';
  }
}

/** A migration request names a migration this agent does not hold (never prepared, or finished). */
export class MigrationNotFoundError extends Error {
  readonly code = 'MIGRATION_NOT_FOUND';
  constructor(readonly migrationId: string) {
    super(`migration ${migrationId} is not known on this node`);
    this.name = 'MigrationNotFoundError';
  }
}

/**
 * A migration request does not fit the migration's current step (e.g. commit before transfer).
 * Not the engine's MigrationStateError (@vmm/migration, code INVALID_STATE): this one is the agent's
 * answer to the controller's request.
 */
export class MigrationStepError extends Error {
  readonly code = 'MIGRATION_STATE';
  constructor(
    readonly migrationId: string,
    detail: string,
  ) {
    super(`migration ${migrationId}: ${detail}`);
    this.name = 'MigrationStepError';
  }
}

/** An RPC this version of the agent does not implement yet. */
export class NotImplementedError extends Error {
  readonly code = 'NOT_IMPLEMENTED';
  constructor(readonly method: string) {
    super(`${method} is not implemented by this agent`);
    this.name = 'NotImplementedError';
  }
}

/** The agent is shutting down and takes no new work. */
export class ShuttingDownError extends Error {
  readonly code = 'SHUTTING_DOWN';
  constructor() {
    super('the node agent is shutting down');
    this.name = 'ShuttingDownError';
  }
}

/** STATE_DIR cannot be used (not creatable, unreadable, or a state file this version does not read). */
export class StateDirError extends Error {
  readonly code = 'STATE_DIR';
  constructor(
    readonly dir: string,
    detail: string,
  ) {
    super(`state directory ${dir}: ${detail}`);
    this.name = 'StateDirError';
  }
}

/**
 * A decision about a migration contradicts one this agent already applied: a release after the source
 * resumed, an abort after the target resumed or the source released. The agent keeps what it did.
 */
export class DecisionConflictError extends Error {
  readonly code = 'DECISION_CONFLICT';
  constructor(
    readonly migrationId: string,
    readonly applied: string,
    readonly refused: string,
  ) {
    super(`migration ${migrationId}: refusing ${refused}, this node already applied ${applied}`);
    this.name = 'DecisionConflictError';
  }
}

/**
 * The incoming copy of a migration is gone (the agent restarted, or it was discarded), so it can never
 * be committed here: the controller may resume the source's copy instead.
 */
export class IncomingLostError extends Error {
  readonly code = 'INCOMING_LOST';
  constructor(
    readonly migrationId: string,
    detail: string,
  ) {
    super(`migration ${migrationId}: the incoming copy is lost (${detail})`);
    this.name = 'IncomingLostError';
  }
}

/**
 * SetKsm on a node whose KSM is the host kernel's (HYPERVISOR=qemu): the agent reports those
 * counters and knobs but does not set them; the host's administrator does.
 */
export class HostKsmReadOnlyError extends Error {
  readonly code = 'HOST_KSM_READ_ONLY';
  constructor() {
    super("this node's KSM is the host kernel's (/sys/kernel/mm/ksm): read here, set by the host");
    this.name = 'HostKsmReadOnlyError';
  }
}

/** Every code an error of the agent itself carries. */
export type AgentErrorCode = ErrorCodeOf<typeof agentErrors>;
