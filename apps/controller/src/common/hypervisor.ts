import { InvalidArgumentError } from '../errors.js';

/**
 * The VM drivers a node can advertise (Node.hypervisor) and a VM can ask for (CreateVm.hypervisor).
 * The agent keeps the same two names in its own list (apps share only proto/ and libs).
 */
export const HYPERVISORS = ['emulator', 'qemu'] as const;

/** An agent that registers without naming its driver predates the field and runs the emulator. */
export function validHypervisor(value: string | undefined, field = 'hypervisor'): string {
  const name = (value ?? '').trim();
  if (name === '') return 'emulator';
  if (!(HYPERVISORS as readonly string[]).includes(name)) throw new InvalidArgumentError(field, `must be one of ${HYPERVISORS.join(', ')}`);
  return name;
}

/** CreateVm.hypervisor: empty means any node's driver. */
export function requestedHypervisor(value: string | undefined): string {
  const name = (value ?? '').trim();
  return name === '' ? '' : validHypervisor(name);
}
