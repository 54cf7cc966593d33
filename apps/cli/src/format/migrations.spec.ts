import { cluster } from '@vmm/proto';
import { beforeAll, describe, expect, it } from 'vitest';
import { setColour } from './colours.js';
import { migration } from './migration.fixture.js';
import { digestCheck, percentInSync, percentSent, progressLine, renderMigrationsTable, renderSummary, roundsText } from './migrations.js';

const P = cluster.MigrationPhase;

beforeAll(() => setColour(false));

describe('digestCheck', () => {
  it('matches equal non-empty digests only', () => {
    expect(digestCheck(migration())).toBe('match');
    expect(digestCheck(migration({ targetDigest: '0000000000000000' }))).toBe('mismatch');
    expect(digestCheck(migration({ targetDigest: '' }))).toBe('unchecked');
  });
});

describe('renderSummary', () => {
  it('shows outcome, downtime, time, rounds, data sent against VM size and the digest check', () => {
    const text = renderSummary(migration(), { vmName: 'db-1', vmMemoryMib: 1024 });
    expect(text).toContain('Migration 7c1f0e2a of db-1');
    expect(text).toMatch(/│ Outcome {5}COMPLETED ✓/);
    expect(text).toContain('node-1 → node-2');
    expect(text).toMatch(/Downtime {4}23 ms {2}\(limit 300 ms\)/);
    expect(text).toMatch(/Total time  1\.84 s/);
    expect(text).toMatch(/Rounds {6}5 \(4 pre-copy \+ stop-and-copy\) /);
    expect(text).toContain('600 MiB = 0.59 × VM size (1 GiB)');
    expect(text).toContain('source 9f3c5a7e11d2b4c0 == target 9f3c5a7e11d2b4c0 ✓');
    // A box: every line starts and ends with a border, and all lines are equally wide.
    const lines = text.trimEnd().split('\n');
    for (const line of lines) expect(line).toMatch(/^[┌│└].*[┐│┘]$/);
    expect(new Set(lines.map((l) => [...l].length)).size).toBe(1);
  });

  it('marks a downtime over the limit', () => {
    expect(renderSummary(migration({ downtimeMs: 198 }))).toMatch(/Downtime {4}198 ms {2}\(limit 300 ms\) /);
    expect(renderSummary(migration({ downtimeMs: 412 }))).toMatch(/Downtime {4}412 ms {2}\(limit 300 ms, exceeded\) /);
  });

  it('flags a digest mismatch', () => {
    const text = renderSummary(migration({ targetDigest: '0000000000000000' }));
    expect(text).toContain('COMPLETED ✗ digest not verified');
    expect(text).toContain('!= target 0000000000000000 ✗');
  });

  it('shows a failure with its error and no digest check', () => {
    const text = renderSummary(migration({ phase: P.MIGRATION_PHASE_FAILED, error: 'did not converge', sourceDigest: '', targetDigest: '', throttlePercent: 60, downtimeMs: 0 }));
    expect(text).toContain('FAILED ✗  did not converge');
    expect(text).toContain('not checked');
    expect(text).toMatch(/Throttle\s+60% at the end/);
    expect(text).toContain('Downtime    none: the VM kept running on node-1');
  });

  it('counts the passes of a failed migration as pre-copy rounds, and none before the first page', () => {
    expect(roundsText(migration({ phase: P.MIGRATION_PHASE_FAILED, round: 29 }))).toBe('30 pre-copy');
    expect(roundsText(migration({ phase: P.MIGRATION_PHASE_FAILED, round: 0, pagesSent: 0 }))).toBe('0');
  });

  it('uses the page count as VM size when the VM is unknown', () => {
    expect(renderSummary(migration())).toContain('× VM size (1 GiB)');
  });
});

describe('progress', () => {
  it('caps percent sent at 100 (later rounds resend pages)', () => {
    expect(percentSent(migration({ pagesSent: 131072 }))).toBe(50);
    expect(percentSent(migration())).toBe(100);
    expect(percentSent(migration({ pagesTotal: 0 }))).toBe(0);
  });
  it('shows the share of memory in sync: sent pages in round 0, then all but the dirty ones', () => {
    const precopy = P.MIGRATION_PHASE_PRECOPY;
    expect(percentInSync(migration({ phase: precopy, round: 0, pagesSent: 65536, dirtyPagesRemaining: 0 }))).toBe(25);
    expect(percentInSync(migration({ phase: precopy, round: 1, dirtyPagesRemaining: 262144 }))).toBe(0);
    expect(percentInSync(migration({ phase: precopy, round: 3, dirtyPagesRemaining: 26214.4 }))).toBeCloseTo(90);
    expect(percentInSync(migration({ phase: P.MIGRATION_PHASE_COMMITTING }))).toBe(100);
  });

  it('renders one line with round, share in sync, dirty pages, data sent, throughput and throttle', () => {
    const line = progressLine(migration({ phase: P.MIGRATION_PHASE_PRECOPY, round: 2, bytesSent: 536870912, dirtyPagesRemaining: 1234, throttlePercent: 30 }));
    expect(line).toMatch(/^PRECOPY\s+round 2 {2}in sync {2}99% {2}dirty 1\.2k pages {2}sent 512 MiB {2}1 GiB\/s {2}throttle 30%$/);
  });
});

describe('renderMigrationsTable', () => {
  it('names VMs when known and marks the digest check', () => {
    const names = new Map([['a1b2c3d4-0000-0000-0000-000000000000', 'db-1']]);
    const text = renderMigrationsTable([migration(), migration({ migrationId: 'ffffffff-0000-4000-8000-000000000000', phase: P.MIGRATION_PHASE_PRECOPY, targetDigest: '' })], names);
    const [head, first, second] = text.split('\n');
    expect(head).toMatch(/^ID\s+VM\s+SOURCE\s+TARGET\s+PHASE\s+ROUND\s+SENT\s+DOWNTIME\s+TOTAL\s+DIGEST\s+REASON$/);
    expect(first).toMatch(/^7c1f0e2a\s+db-1\s+node-1\s+node-2\s+COMPLETED\s+4\s+600 MiB\s+23 ms\s+1\.84 s\s+✓\s+user$/);
    expect(second).toMatch(/^ffffffff\s+db-1\s+node-1\s+node-2\s+PRECOPY\s+4\s+600 MiB\s+—\s+—\s+—\s+user$/);
  });
});
