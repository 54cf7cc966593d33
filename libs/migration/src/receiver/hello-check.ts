/**
 * What a receiver checks in a HELLO before it prepares anything: the token (first, in constant time),
 * a protocol version both ends speak, the migration, and the VM spec against the incoming VM. The
 * HELLO was decoded with wire/hello.ts (fields typed and bounded) or by the listener, which uses it too.
 */
import type { VirtualMachine } from '@vmm/emulator';
import { boundedText } from '../bounded-text.js';
import { MigrationStateError, ProtocolError, SpecMismatchError, TokenMismatchError } from '../errors.js';
import { tokenMatches } from '../token.js';
import { agreedVersion } from '../wire/codec.js';
import { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, type HelloPayload } from '../wire/frame.js';

export interface HelloExpectation {
  token: string;
  migrationId: string;
  /** The incoming VM the controller prepared: paused and empty. */
  vm: VirtualMachine;
}

/**
 * @returns the agreed protocol version
 * @throws TokenMismatchError, ProtocolError (version, migration, fields), MigrationStateError (the VM)
 */
export function checkHello(h: HelloPayload, expected: HelloExpectation): number {
  const { migrationId, vm } = expected;
  if (!tokenMatches(expected.token, h.token)) throw new TokenMismatchError(migrationId);
  const version = agreedVersion(h);
  if (version === null) {
    throw new ProtocolError(
      `sender speaks protocol versions ${h.version}..${h.maxVersion ?? h.version}, this receiver ${MIN_PROTOCOL_VERSION}..${PROTOCOL_VERSION}`,
    );
  }
  if (h.migrationId !== migrationId) throw new ProtocolError(`HELLO for migration ${boundedText(String(h.migrationId))}, expected ${migrationId}`);
  // The VM the controller prepared here is what the sender must send: a different one would overrun
  // or misread the incoming VM, and residentPages sets how much memory is pre-faulted before HELLO_ACK.
  const mismatch = (field: string, sent: unknown, prepared: unknown) =>
    new SpecMismatchError(migrationId, field, `${boundedText(String(sent))} does not match the incoming VM's ${String(prepared)}`);
  if (h.pageCount !== vm.memory.pageCount) throw mismatch('pageCount', h.pageCount, vm.memory.pageCount);
  if (h.memoryMib !== vm.memoryMib) throw mismatch('memoryMib', h.memoryMib, vm.memoryMib);
  if (h.vcpus !== vm.vcpus) throw mismatch('vcpus', h.vcpus, vm.vcpus);
  if (h.image !== vm.image) throw mismatch('image', h.image, vm.image);
  const resident = h.residentPages;
  if (resident !== undefined && (!Number.isInteger(resident) || resident < 0 || resident > vm.memory.pageCount)) {
    throw new SpecMismatchError(migrationId, 'residentPages', `${boundedText(String(resident))} is not in 0..${vm.memory.pageCount} (the incoming VM's pages)`);
  }
  if (vm.state !== 'paused') throw new MigrationStateError(`migration ${migrationId}: incoming VM is ${vm.state}, not paused`);
  return version;
}
