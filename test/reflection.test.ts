// Go-based tools call the API through reflection alone: `buf curl` (the buf CLI, a dev dependency)
// lists the services, and calls ListNodes, CreateVm (a map field: labels) and WatchMigration (a
// server stream) on a real controller, knowing nothing of the .proto files.
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { certFiles } from '@vmm/local-cluster/cluster-env';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';

const run = promisify(execFile);
const BUF = path.join(path.dirname(createRequire(import.meta.url).resolve('@bufbuild/buf/package.json')), 'bin', 'buf');
const TOKEN = 'reflection-test-token';

let c: TestCluster;
let api: ClusterApi;
const vmIds: string[] = [];

beforeAll(async () => {
  c = await startTestCluster({ agents: 2, token: TOKEN });
  api = c.api();
});

afterAll(() => stopTestCluster(c, api, vmIds));

/**
 * `buf curl` to `address` with the API token: plaintext HTTP/2 to the API; to an agent (mutual TLS)
 * with the operator's certificate, verified against the cluster CA as any TLS client would.
 */
async function bufCurl(address: string, args: string[]): Promise<string> {
  const files = certFiles(c.certsDir, 'operator');
  const transport = address === c.controllerAddress
    ? ['--http2-prior-knowledge']
    : ['--cacert', files.ca, '--cert', files.cert, '--key', files.key];
  const scheme = address === c.controllerAddress ? 'http' : 'https';
  const { stdout } = await run(BUF, ['curl', '--protocol', 'grpc', ...transport, '-H', `authorization: Bearer ${TOKEN}`, ...args.slice(0, -1), `${scheme}://${address}${args.at(-1)}`], {
    timeout: 60_000,
  });
  return stdout;
}

/** buf curl prints each response message as JSON, one after another. */
function messages(stdout: string): Record<string, unknown>[] {
  return stdout
    .split(/\n(?=\{)/)
    .filter((s) => s.trim())
    .map((s) => JSON.parse(s) as Record<string, unknown>);
}

it('lists what each server serves: the controller its two services and health, an agent its own', async () => {
  const controller = (await bufCurl(c.controllerAddress, ['--list-services', ''])).split('\n').filter(Boolean).sort();
  expect(controller).toEqual(['agent.v1.RegistryService', 'cluster.v1.ClusterService', 'grpc.health.v1.Health']);
  const agent = (await bufCurl(c.agents[0]!.address, ['--list-services', ''])).split('\n').filter(Boolean).sort();
  expect(agent).toEqual(['agent.v1.AgentService', 'grpc.health.v1.Health']);
});

it('calls ListNodes and CreateVm (with a map field) by reflection alone', async () => {
  const [nodes] = messages(await bufCurl(c.controllerAddress, ['-d', '{}', '/cluster.v1.ClusterService/ListNodes']));
  expect((nodes!.nodes as { nodeId: string }[]).map((n) => n.nodeId).sort()).toEqual(['node-1', 'node-2']);

  const request = { name: 'by-reflection', vcpus: 1, memory_mib: 64, image: 'empty', workload: { kind: 'WORKLOAD_KIND_IDLE' }, labels: { tier: 'web' }, node_id: 'node-1' };
  const [vm] = messages(await bufCurl(c.controllerAddress, ['-d', JSON.stringify(request), '/cluster.v1.ClusterService/CreateVm']));
  vmIds.push(String(vm!.vmId));
  expect(vm).toMatchObject({ name: 'by-reflection', nodeId: 'node-1', labels: { tier: 'web' }, state: 'VM_STATE_RUNNING' });
  expect((await api.getVm({ vmId: String(vm!.vmId) })).labels).toEqual({ tier: 'web' });
});

it('follows a migration with WatchMigration (a server stream) to COMPLETED', async () => {
  const vm = await api.createVm({ name: 'watched', vcpus: 1, memoryMib: 64, image: 'empty', nodeId: 'node-1', workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_IDLE } });
  vmIds.push(vm.vmId);
  const migration = await api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' });
  const stream = messages(await bufCurl(c.controllerAddress, ['-d', JSON.stringify({ migration_id: migration.migrationId }), '/cluster.v1.ClusterService/WatchMigration']));
  expect(stream.length).toBeGreaterThan(0);
  expect(stream.every((m) => m.migrationId === migration.migrationId)).toBe(true);
  expect(stream.at(-1)).toMatchObject({ phase: 'MIGRATION_PHASE_COMPLETED', targetNodeId: 'node-2' });
});

it('GetVersion names the release, the API and the features served, through reflection too', async () => {
  const [version] = messages(await bufCurl(c.controllerAddress, ['-d', '{}', '/cluster.v1.ClusterService/GetVersion']));
  expect(version).toMatchObject({ apiVersion: 'cluster.v1', version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
  expect(version!.features).toEqual(expect.arrayContaining(['reflection', 'request_id']));
  const direct = await api.getVersion({});
  expect({ version: direct.version, apiVersion: direct.apiVersion, features: direct.features }).toEqual({ version: version!.version, apiVersion: version!.apiVersion, features: version!.features });
  // The controller's defaults are configuration, shown as such (int64 as strings in the JSON mapping).
  const defaults = version!.defaults as Record<string, unknown>;
  expect(defaults).toMatchObject({ downtimeLimitMs: '300', maxRounds: 30, migrationRetentionMs: String(7 * 86_400_000) });
  expect(direct.defaults).toMatchObject({ downtimeLimitMs: 300, maxRounds: 30, autoConverge: false, migrationRetentionMs: 7 * 86_400_000 });
});
