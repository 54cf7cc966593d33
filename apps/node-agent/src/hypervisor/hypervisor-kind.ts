/**
 * The drivers a node agent can run its VMs with (HYPERVISOR, advertised as Node.hypervisor and
 * matched by CreateVm.hypervisor). The one list of their names: config, registration and the
 * controller's validation all read these strings.
 */
export const HYPERVISOR_KINDS = ['emulator', 'qemu'] as const;
export type HypervisorKind = (typeof HYPERVISOR_KINDS)[number];

/** What an agent that registered without naming a driver runs (agents older than the field). */
export const DEFAULT_HYPERVISOR: HypervisorKind = 'emulator';
