/**
 * Bounds of the data plane (agent ↔ agent migration connections) beyond the policy's: how long a
 * connection may stay silent, how long the source may stay paused before the target verified, and
 * what a listener holds for connections that have not sent their HELLO yet (docs/design.md: every wait has
 * a bound, every input is bounded before it is used). Each is an option of the sender, receiver or
 * listener; these are the defaults.
 */
import { MigrationStateError } from './errors.js';
import { MAX_COMPLETION_TIMEOUT_MS } from './policy.js';
import { FRAME_HEADER_BYTES, HELLO_PAYLOAD_BYTES } from './wire/frame.js';

/**
 * No byte in either direction for this long, after the handshake, ends the migration on both ends
 * (CONNECTION_IDLE). The longest legitimate silence is both ends hashing round 0 (about 1.5 µs a page
 * on each, in parallel: 4 s for 8 GiB on a loaded two-core host); a bandwidth cap of at least 1 MiB/s
 * lets a batch leave every second.
 */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/**
 * The source stays paused in STOP_AND_COPY at most this long before the target's VERIFIED (at least;
 * see switchOverTimeoutMsFor): then the sender rolls back and the source resumes (SWITCHOVER_TIMEOUT).
 */
export const MIN_SWITCH_OVER_TIMEOUT_MS = 10_000;
/** ...or this many times the downtime limit, if that is longer: the prediction may be off, not tenfold. */
export const SWITCH_OVER_TIMEOUT_DOWNTIME_FACTOR = 10;

/** The default bound on the paused time before VERIFIED, for a policy's downtime limit. */
export function switchOverTimeoutMsFor(downtimeLimitMs: number): number {
  return Math.max(MIN_SWITCH_OVER_TIMEOUT_MS, SWITCH_OVER_TIMEOUT_DOWNTIME_FACTOR * downtimeLimitMs);
}

/** A connection to a data listener must present its HELLO within this time. */
export const DEFAULT_HELLO_TIMEOUT_MS = 5000;
/** Connections one listener holds before their HELLO; more are closed at once. */
export const DEFAULT_MAX_PENDING_PER_LISTENER = 4;
/** Connections all listeners of the process (one agent) hold before their HELLO; more are closed at once. */
export const DEFAULT_MAX_PENDING_PER_PROCESS = 64;
/** Read buffer of a connection before its HELLO: one HELLO frame (the 256 KiB buffer comes after it). */
export const PRE_HELLO_READ_BYTES = FRAME_HEADER_BYTES + HELLO_PAYLOAD_BYTES;

/**
 * A time bound given as an option: `allowZero` lets 0 mean "no bound".
 * @throws MigrationStateError naming the option
 */
export function checkTimeoutOption(name: string, value: number, allowZero: boolean): number {
  const ok = Number.isInteger(value) && ((allowZero && value === 0) || (value >= 1 && value <= MAX_COMPLETION_TIMEOUT_MS));
  if (!ok) throw new MigrationStateError(`${name} must be a whole number of ms in ${allowZero ? '0 (no bound) or ' : ''}1..${MAX_COMPLETION_TIMEOUT_MS}, got ${value}`);
  return value;
}
