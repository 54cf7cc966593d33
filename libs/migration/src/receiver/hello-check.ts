/**
 * What a receiver checks in a HELLO before it prepares anything: the token (first, in constant time),
 * a protocol version both ends speak, the migration, and the VM spec against the incoming VM.
 */
import type { VirtualMachine } from '@vmm/emulator';
import { MigrationStateError, ProtocolError, TokenMismatchError } from '../errors.js';
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
  if (h.migrationId !== migrationId) throw new ProtocolError(`HELLO for migration ${h.migrationId}, expected ${migrationId}`);
  if (h.pageCount !== vm.memory.pageCount) {
    throw new MigrationStateError(`migration ${migrationId}: source has ${h.pageCount} pages, incoming VM ${vm.memory.pageCount}`);
  }
  if (vm.state !== 'paused') throw new MigrationStateError(`migration ${migrationId}: incoming VM is ${vm.state}, not paused`);
  const resident = h.residentPages;
  if (resident !== undefined && (!Number.isInteger(resident) || resident < 0)) throw new ProtocolError(`HELLO residentPages ${resident}`);
  return version;
}
