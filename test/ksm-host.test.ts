// The agent's host KSM reader (libs/ksm readHostKsm / readProcessKsmStat): each NodeReport carries
// the real host's /sys/kernel/mm/ksm numbers and the agent process's /proc/<pid>/ksm_stat, next to
// the emulated ksmd's counters. Checked against the files read here (a host without KSM must report
// an empty map). The reports are seen through a tap between the agent and the controller, since the
// public API exposes only the emulated counters.
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { agent } from '@vmm/proto';
import { freePort } from '@vmm/local-cluster/ports';
import { startTestCluster, type TestCluster } from './support/cluster.js';
import { NodeReportTap } from './support/ksm.js';
import { waitFor } from './support/wait-for.js';

const SYSFS = '/sys/kernel/mm/ksm';
/** Knobs that nothing changes while the test runs (the counters move with the host's own ksmd). */
const STABLE_KNOBS = ['run', 'pages_to_scan', 'sleep_millisecs', 'max_page_sharing', 'merge_across_nodes', 'use_zero_pages'];

async function readSysfs(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of await readdir(SYSFS)) {
    const text = (await readFile(`${SYSFS}/${name}`, 'utf8').catch(() => '')).trim();
    if (/^-?\d+$/.test(text)) out[name] = Number(text);
  }
  return out;
}

describe('host KSM in the node reports', () => {
  let c: TestCluster;
  let tap: NodeReportTap;

  beforeAll(async () => {
    const port = await freePort();
    tap = await NodeReportTap.start(`127.0.0.1:${port}`);
    try {
      // The tap relays the agent's reports (a man in the middle, which mutual TLS keeps out): plaintext on purpose.
      c = await startTestCluster({ agents: 1, port, insecure: true, reportIntervalMs: 300, agentEnv: () => ({ CONTROLLER_ADDRESS: tap.address }) });
    } catch (err) {
      await tap.stop();
      throw err;
    }
  });

  afterAll(async () => {
    try {
      await c?.stop();
    } finally {
      await tap?.stop();
    }
  });

  it("reports the host's /sys/kernel/mm/ksm and the agent's /proc/<pid>/ksm_stat", async () => {
    const report: agent.NodeReport = await waitFor(() => tap.last.get('node-1'), 10_000, 'a report from node-1');
    const hostKsm = report.hostKsm!;
    if (!existsSync(SYSFS)) {
      expect(hostKsm.sysfs).toEqual({});
    } else {
      const mine = await readSysfs();
      const theirs = Object.fromEntries(Object.entries(hostKsm.sysfs).map(([k, v]) => [k, Number(v)]));
      console.info(`ksm-host: host sysfs ${JSON.stringify(theirs)}`);
      // Every numeric file, by its name; the stable knobs with the same value.
      expect(Object.keys(theirs).sort()).toEqual(Object.keys(mine).sort());
      for (const knob of STABLE_KNOBS.filter((k) => k in mine)) expect(theirs[knob], knob).toBe(mine[knob]);
    }

    const statPath = `/proc/${c.agents[0]!.pid}/ksm_stat`;
    if (!existsSync(statPath)) {
      expect(hostKsm.process).toEqual({});
    } else {
      const lines = (await readFile(statPath, 'utf8')).trim().split('\n');
      const mine = Object.fromEntries(
        lines.map((l) => {
          const [k, v] = l.trim().split(/\s+/);
          // "ksm_merge_any: no": the yes/no lines carry a colon.
          return [k!.replace(/:$/, ''), v === 'yes' ? 1 : v === 'no' ? 0 : Number(v)];
        }),
      );
      const theirs = Object.fromEntries(Object.entries(hostKsm.process).map(([k, v]) => [k, Number(v)]));
      console.info(`ksm-host: agent ksm_stat ${JSON.stringify(theirs)}`);
      expect(Object.keys(theirs).sort()).toEqual(Object.keys(mine).sort());
      // The agent never madvises its memory to the host's ksmd: the yes/no flags agree.
      for (const flag of ['ksm_merge_any', 'ksm_mergeable'].filter((k) => k in mine)) expect(theirs[flag], flag).toBe(mine[flag]);
    }
    // The emulated ksmd's counters travel separately (what GetNode shows).
    expect(report.ksm).toBeDefined();
    expect(report.ksmKnobs).toBeDefined();
  });
});
