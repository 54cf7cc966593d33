import { agent, cluster } from '@vmm/proto';
import { pino } from 'pino';

/** A VmSpec as the controller sends it, small enough for tests. */
export function vmSpec(overrides: Partial<agent.VmSpec> = {}): agent.VmSpec {
  // Spread last: an override of undefined (e.g. workload) is kept, as the controller may send it.
  return {
    vmId: 'vm-1',
    name: 'test-vm',
    vcpus: 1,
    memoryMib: 32,
    image: 'alpine-3.20',
    workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_IDLE, dirtyRatePagesPerSec: 0, workingSetMib: 0, seed: 1 },
    labels: {},
    fencingEpoch: 0,
    restartPolicy: cluster.RestartPolicy.RESTART_POLICY_UNSPECIFIED,
    ...overrides,
  };
}

export const silentLogger = pino({ level: 'silent' });

/** A loopback port nobody listens on right now, below the ephemeral range (one owner: the local cluster's). */
export { freePort } from '@vmm/local-cluster/ports';
