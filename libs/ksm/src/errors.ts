/**
 * Errors of the KSM library. Each has a stable `code` (callers branch on it, never on `message`), a
 * literal type that KsmErrorCode (at the end) collects; the node agent maps every one of them to a gRPC
 * status in a Record<KsmErrorCode, status>, so that a new or renamed code fails to compile until mapped.
 */
import type { ErrorCodeOf } from '@vmm/emulator';
import type * as ksmErrors from './errors.js';

/** A knob was set to a value Linux would reject with EINVAL (e.g. run=3, pages_to_scan=0, max_page_sharing=1). */
export class InvalidKnobError extends Error {
  readonly code = 'INVALID_KNOB';
  constructor(
    readonly knob: string,
    readonly value: unknown,
    detail: string,
  ) {
    super(`invalid ${knob}=${String(value)}: ${detail}`);
    this.name = 'InvalidKnobError';
  }
}

/** max_page_sharing was changed while KSM pages exist (Linux answers EBUSY): unmerge (run=2) first. */
export class KnobBusyError extends Error {
  readonly code = 'KNOB_BUSY';
  constructor(
    readonly knob: string,
    readonly pagesShared: number,
  ) {
    super(`cannot change ${knob} while ${pagesShared} KSM pages exist: set run=2 first`);
    this.name = 'KnobBusyError';
  }
}

/** addRegion() was called with an id that is already registered. */
export class RegionExistsError extends Error {
  readonly code = 'REGION_EXISTS';
  constructor(readonly regionId: string) {
    super(`KSM region '${regionId}' is already registered`);
    this.name = 'RegionExistsError';
  }
}

/** removeRegion() or regionStats() named a region that is not registered. */
export class UnknownRegionError extends Error {
  readonly code = 'UNKNOWN_REGION';
  constructor(readonly regionId: string) {
    super(`KSM region '${regionId}' is not registered`);
    this.name = 'UnknownRegionError';
  }
}

/** The registered regions together exceed the scanner's rmap index space (2^31 pages). */
export class RegionSpaceExhaustedError extends Error {
  readonly code = 'REGION_SPACE_EXHAUSTED';
  constructor(
    readonly regionId: string,
    readonly pageCount: number,
  ) {
    super(`no rmap index space left for region '${regionId}' (${pageCount} pages)`);
    this.name = 'RegionSpaceExhaustedError';
  }
}

/** A region's memory lives in another FramePool than the scanner's: frames can only be shared within one pool. */
export class PoolMismatchError extends Error {
  readonly code = 'POOL_MISMATCH';
  constructor(readonly regionId: string) {
    super(`KSM region '${regionId}' uses another frame pool than the scanner`);
    this.name = 'PoolMismatchError';
  }
}

/** readProcessKsmStat() got something that is not a positive integer pid. */
export class InvalidPidError extends Error {
  readonly code = 'INVALID_PID';
  constructor(readonly pid: unknown) {
    super(`invalid pid ${String(pid)}: must be a positive integer`);
    this.name = 'InvalidPidError';
  }
}

/** Every code a KSM error carries. */
export type KsmErrorCode = ErrorCodeOf<typeof ksmErrors>;
