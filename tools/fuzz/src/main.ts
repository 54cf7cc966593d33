#!/usr/bin/env node
/** `npm run fuzz -- [--seconds S] [--seed N]`: one JSON summary line on stdout; exit 1 on a crash or violation. */
import { parseArgs } from 'node:util';
import { routeProcessWarnings } from '@vmm/tls';
import { runFuzz } from './fuzz.js';

const USAGE = 'usage: npm run fuzz -- [--seconds S (default 60)] [--seed N] [--verbose]';

async function main(): Promise<void> {
  routeProcessWarnings((warning) => process.stderr.write(`warning: ${warning.message}\n`));
  let values;
  try {
    ({ values } = parseArgs({ options: { seconds: { type: 'string' }, seed: { type: 'string' }, verbose: { type: 'boolean' }, help: { type: 'boolean' } }, strict: true }));
  } catch (err) {
    process.stderr.write(`fuzz: ${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (values.help) return void process.stdout.write(`${USAGE}\n`);
  const seconds = Number(values.seconds ?? '60');
  const seed = Number(values.seed ?? String(Date.now() % 2 ** 31));
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 86_400) {
    process.stderr.write(`fuzz: --seconds must be an integer in 1..86400\n${USAGE}\n`);
    process.exit(2);
  }
  if (!Number.isInteger(seed)) {
    process.stderr.write(`fuzz: --seed must be an integer\n${USAGE}\n`);
    process.exit(2);
  }
  const summary = await runFuzz({ seconds, seed, log: (line) => (values.verbose || /VIOLATION|CRASH/.test(line) ? process.stderr.write(`${line}\n`) : undefined) });
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(summary.crashes.length > 0 || summary.violations.length > 0 ? 1 : 0);
}

main().catch((err: unknown) => {
  process.stderr.write(`fuzz: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
