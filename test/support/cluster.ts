import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { makeClusterCerts } from '@vmm/tls';
import { startCluster, type ClusterOptions, type LocalCluster } from '@vmm/local-cluster/cluster';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { forgetCluster, rememberCluster } from './peer-credentials.js';
import { removePrefix, uniquePrefix } from './redis-prefix.js';

export type TestCluster = LocalCluster & {
  /** Every child's recent output, for a failure message. */
  output(): string;
};

/**
 * A real cluster (controller + agents as processes) on the run's shared Redis, under a fresh key
 * prefix that stop() removes. Children log at `warn` unless TEST_LOG_LEVEL says otherwise; set
 * TEST_VERBOSE=1 to echo their lines.
 */
export async function startTestCluster(options: Omit<ClusterOptions, 'redisUrl' | 'prefix'> = {}): Promise<TestCluster> {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix();
  const verbose = process.env.TEST_VERBOSE === '1';
  let started: LocalCluster;
  try {
    started = await startCluster({
      agents: 1,
      logLevel: process.env.TEST_LOG_LEVEL ?? 'warn',
      onLine: verbose ? (name, line) => process.stderr.write(`[${name}] ${line}\n`) : undefined,
      ...options,
      redisUrl,
      prefix,
      removeKeysOnStop: true,
    });
  } catch (err) {
    await removePrefix(redisUrl, prefix).catch(() => {});
    throw err;
  }
  const stop = started.stop;
  rememberCluster(started);
  return Object.assign(started, {
    output: () =>
      [started.controller, ...started.agents.map((a) => a.process)]
        .map((p) => `--- ${p.name} (pid ${p.pid}) ---\n${p.output()}`)
        .join('\n'),
    stop: async () => {
      try {
        await stop();
      } finally {
        forgetCluster(started);
        await removePrefix(redisUrl, prefix).catch(() => {});
      }
    },
  });
}

/**
 * A suite's teardown: deletes the VMs it created (best effort: a VM may be gone already), closes its
 * API client and stops its cluster. Each step tolerates what never started.
 */
export async function stopTestCluster(c: TestCluster | undefined, api: ClusterApi | undefined, vmIds: Iterable<string> = []): Promise<void> {
  for (const vmId of vmIds) await api?.deleteVm({ vmId }).catch(() => {});
  api?.close();
  await c?.stop();
}

export interface PreparedCerts {
  certsDir: string;
  remove(): Promise<void>;
}

/**
 * The certificates of a cluster of `agents` nodes, made before it starts (its --certs-dir: the cluster
 * reuses this CA), for test parts that serve the agents before the cluster exists (relays, taps).
 */
export async function preparedCerts(agents: number): Promise<PreparedCerts> {
  const certsDir = await mkdtemp(path.join(os.tmpdir(), 'vmm-test-certs-'));
  await makeClusterCerts({ out: certsDir, nodes: Array.from({ length: agents }, (_, i) => `node-${i + 1}`) });
  return { certsDir, remove: () => rm(certsDir, { recursive: true, force: true }) };
}
