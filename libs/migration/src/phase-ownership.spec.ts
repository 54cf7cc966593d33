// phase.ts is the one owner of the phase model: no other source file (test fixtures aside) spells out a set of phases (an
// array or Set literal naming two or more of them). Such a copy is what drifted before (the commit
// script accepted PRECOPY → COMMITTING while the table forbade it; the final set was written six times).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { MIGRATION_PHASES } from './phase.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SOURCE_DIRS = ['apps', 'libs', 'tools'].map((d) => path.join(ROOT, d));
const OWNER = path.join(ROOT, 'libs/migration/src/phase.ts');

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name === 'gen' || name === 'gen-nest') continue;
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) sources(full, out);
    else if (/\.ts$/.test(name) && !/\.(spec|test)\.ts$/.test(name) && !full.includes('/testing/')) out.push(full);
  }
  return out;
}

const phaseName = new RegExp(`\\b(?:MIGRATION_PHASE_)?(${MIGRATION_PHASES.join('|')})\\b`, 'g');

/** Array literals (also inside `new Set(...)`) that name at least two distinct phases. */
function phaseSets(text: string): string[] {
  const found: string[] = [];
  for (const literal of text.match(/\[[^[\]]*\]/g) ?? []) {
    const names = new Set([...literal.matchAll(phaseName)].map((m) => m[1]));
    if (names.size >= 2) found.push(literal.replace(/\s+/g, ' ').slice(0, 120));
  }
  return found;
}

describe('the phase model has one owner', () => {
  it('no source file but phase.ts lists phases', () => {
    const offenders: string[] = [];
    for (const file of SOURCE_DIRS.flatMap((d) => sources(d))) {
      if (file === OWNER) continue;
      for (const literal of phaseSets(readFileSync(file, 'utf8'))) offenders.push(`${path.relative(ROOT, file)}: ${literal}`);
    }
    expect(offenders).toEqual([]);
  });

  it('would notice one', () => {
    expect(phaseSets("const done = ['MIGRATION_PHASE_COMPLETED', 'MIGRATION_PHASE_FAILED'];")).toHaveLength(1);
    expect(phaseSets("const one = ['FAILED'];")).toHaveLength(0);
  });
});
