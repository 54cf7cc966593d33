import { Chalk, type ChalkInstance } from 'chalk';
import type { MigrationPhase } from '@vmm/migration/phase';

/** One chalk instance for the whole CLI; `setColour(false)` for pipes, NO_COLOR and --json. */
export const paint: ChalkInstance = new Chalk({ level: 1 });

export function setColour(enabled: boolean): void {
  paint.level = enabled ? 1 : 0;
}

type Tone = 'good' | 'busy' | 'warn' | 'bad' | 'off';

/** Every migration phase has its tone: a phase added to phase.ts without one fails to compile. */
const phaseTone = {
  PENDING: 'busy',
  PREPARING: 'busy',
  PRECOPY: 'busy',
  STOP_AND_COPY: 'busy',
  COMMITTING: 'busy',
  COMPLETED: 'good',
  FAILED: 'bad',
  CANCELLED: 'warn',
} as const satisfies Record<MigrationPhase, Tone>;

const toneOf: Record<string, Tone> = {
  ...phaseTone,
  // Node
  READY: 'good',
  NOT_READY: 'bad',
  CORDONED: 'warn',
  DRAINING: 'warn',
  // VM
  RUNNING: 'good',
  PENDING: 'busy',
  MIGRATING: 'busy',
  PAUSED: 'warn',
  STOPPED: 'off',
  FAILED: 'bad',
};

/** Colours a state name (already stripped of its enum prefix) by what it means to an operator. */
export function colourState(state: string): string {
  switch (toneOf[state]) {
    case 'good':
      return paint.green(state);
    case 'busy':
      return paint.cyan(state);
    case 'warn':
      return paint.yellow(state);
    case 'bad':
      return paint.red(state);
    case 'off':
      return paint.gray(state);
    default:
      return state;
  }
}

export const tick = (): string => paint.green('✓');
export const cross = (): string => paint.red('✗');
