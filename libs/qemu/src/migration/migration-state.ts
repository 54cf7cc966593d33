/**
 * The two ends of a QEMU migration, as explicit state machines; the allowed transitions live here.
 *
 * Source (OutgoingState):
 *   starting → precopy → switchover-ready → switching → completed
 *   any state before completed → cancelled | failed (the source runs on)
 * - starting:         capabilities and parameters set, `migrate` sent.
 * - precopy:          QEMU `active`: rounds while the guest runs.
 * - switchover-ready: QEMU `pre-switchover`: the source is stopped, the last dirty pages not yet sent;
 *                     QEMU waits for continueSwitchover() (the caller's gate: ask the controller here).
 * - switching:        migrate-continue sent; QEMU sends the rest and the device state.
 * - completed:        QEMU `completed`: source stopped (postmigrate), target paused (-S). Digest both,
 *                     then commit (target cont, source deleted) or roll back (source resume).
 *
 * Target (IncomingState):
 *   listening → received → committed;  listening | received → aborted | failed
 * - listening: started with -S -incoming defer, migrate-incoming issued, waiting for or reading the stream.
 * - received:  QEMU `completed` on the target: the guest holds the state, paused.
 * - committed: `cont` sent: the target runs the VM.
 * - aborted:   the copy was discarded (QEMU quit); failed: QEMU reported `failed` or died.
 */
export type OutgoingState = 'starting' | 'precopy' | 'switchover-ready' | 'switching' | 'completed' | 'cancelled' | 'failed';
export type IncomingState = 'listening' | 'received' | 'committed' | 'aborted' | 'failed';

const OUTGOING: Readonly<Record<OutgoingState, readonly OutgoingState[]>> = {
  starting: ['precopy', 'switchover-ready', 'cancelled', 'failed'],
  precopy: ['switchover-ready', 'cancelled', 'failed'],
  'switchover-ready': ['switching', 'cancelled', 'failed'],
  switching: ['completed', 'failed'],
  completed: [],
  cancelled: [],
  failed: [],
};

const INCOMING: Readonly<Record<IncomingState, readonly IncomingState[]>> = {
  listening: ['received', 'aborted', 'failed'],
  received: ['committed', 'aborted', 'failed'],
  committed: [],
  aborted: [],
  failed: [],
};

export function canMoveOutgoing(from: OutgoingState, to: OutgoingState): boolean {
  return from === to || OUTGOING[from].includes(to);
}

export function canMoveIncoming(from: IncomingState, to: IncomingState): boolean {
  return from === to || INCOMING[from].includes(to);
}

export const isOutgoingFinal = (s: OutgoingState): boolean => OUTGOING[s].length === 0;
export const isIncomingFinal = (s: IncomingState): boolean => INCOMING[s].length === 0;
