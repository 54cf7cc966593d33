/**
 * npm run chaos -- [--migrations N] [--seed S] [--agents A] [--vms V] [--fault-rate F] [--max-stop-ms MS]
 *
 * Migrations under injected faults on a supervised local cluster (chaos.ts). Progress goes to stderr;
 * one JSON line with the summary goes to stdout. Exit code 0 when no invariant was violated, 1 when one
 * was, 2 for a bad command line.
 */
import { parseArgs } from 'node:util';
import { runChaos } from './chaos.js';

const USAGE = 'usage: npm run chaos -- [--migrations N] [--seed S] [--agents A] [--vms V] [--fault-rate 0..1] [--max-stop-ms MS]';

function number(value: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max) {
    process.stderr.write(`chaos: --${name} must be a number in [${min}, ${max}], got ${JSON.stringify(value)}\n${USAGE}\n`);
    process.exit(2);
  }
  return n;
}

async function main(): Promise<void> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        migrations: { type: 'string' },
        seed: { type: 'string' },
        agents: { type: 'string' },
        vms: { type: 'string' },
        'fault-rate': { type: 'string' },
        'max-stop-ms': { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`chaos: ${(error as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const str = (k: string) => values[k] as string | undefined;
  const started = Date.now();
  const summary = await runChaos({
    migrations: Math.floor(number(str('migrations'), 'migrations', 100, 1, 1_000_000)),
    seed: Math.floor(number(str('seed'), 'seed', Date.now() % 1_000_000, 0, 2 ** 32 - 1)),
    agents: Math.floor(number(str('agents'), 'agents', 3, 3, 16)),
    vms: Math.floor(number(str('vms'), 'vms', 6, 1, 100)),
    faultRate: number(str('fault-rate'), 'fault-rate', 0.5, 0, 1),
    maxStopMs: Math.floor(number(str('max-stop-ms'), 'max-stop-ms', 20_000, 1_000, 20_000)),
    log: (line) => process.stderr.write(`[chaos +${Math.round((Date.now() - started) / 1000)}s] ${line}\n`),
  });
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exitCode = summary.violations.length === 0 ? 0 : 1;
}

main().catch((error: unknown) => {
  process.stderr.write(`chaos: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
