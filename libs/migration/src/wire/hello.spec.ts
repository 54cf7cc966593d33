import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../errors.js';
import { decodeHello } from './hello.js';

const valid = { version: 1, maxVersion: 2, migrationId: 'mig-1', token: 'secret-token', pageCount: 1024, memoryMib: 4, image: 'debian-12', vcpus: 2 };
const utf8 = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8');

function refusal(payload: Uint8Array): ProtocolError {
  try {
    decodeHello(payload);
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    return e as ProtocolError;
  }
  throw new Error('expected a ProtocolError');
}

describe('decodeHello', () => {
  it('decodes a valid HELLO, keeps the optional fields, ignores unknown ones', () => {
    const hello = decodeHello(utf8({ ...valid, residentPages: 512, completionTimeoutMs: 150_000, futureField: { nested: true } }));
    expect(hello).toEqual({ ...valid, residentPages: 512, completionTimeoutMs: 150_000 });
    expect(decodeHello(utf8(valid))).toEqual(valid);
  });

  it.each<[string, unknown, RegExp]>([
    ['a migration id of 64 KiB', { ...valid, migrationId: 'm'.repeat(64 * 1024) }, /migrationId/],
    ['a migration id with a space', { ...valid, migrationId: 'mig 1' }, /migrationId/],
    ['a migration id of the wrong type', { ...valid, migrationId: 42 }, /migrationId/],
    ['no migration id', { ...valid, migrationId: undefined }, /migrationId/],
    ['an empty token', { ...valid, token: '' }, /token/],
    ['a token of 257 characters', { ...valid, token: 't'.repeat(257) }, /token/],
    ['a fractional version', { ...valid, version: 1.5 }, /version/],
    ['a page count beyond 2^31', { ...valid, pageCount: 2 ** 32 }, /pageCount/],
    ['no pages', { ...valid, pageCount: 0 }, /pageCount/],
    ['memory beyond 8 TiB', { ...valid, memoryMib: 16 * 1024 * 1024 }, /memoryMib/],
    ['no vCPUs', { ...valid, vcpus: 0 }, /vcpus/],
    ['an image with upper case', { ...valid, image: 'Debian' }, /image/],
    ['an image of 129 characters', { ...valid, image: 'a'.repeat(129) }, /image/],
    ['more resident pages than pages', { ...valid, residentPages: 1025 }, /residentPages/],
    ['negative resident pages', { ...valid, residentPages: -1 }, /residentPages/],
    ['a completion timeout past a day', { ...valid, completionTimeoutMs: 2 ** 31 }, /completionTimeoutMs/],
    ['an array', [valid], /not a JSON object/],
    ['null', null, /not a JSON object/],
  ])('refuses %s, naming it, without quoting the payload', (_what, value, field) => {
    const e = refusal(utf8(value));
    expect(e.message).toMatch(field);
    expect(e.message.length).toBeLessThan(200);
  });

  it('refuses invalid UTF-8 (a 64 KiB migration id of 0xff bytes once killed the agent)', () => {
    const head = Buffer.from('{"version":1,"migrationId":"', 'utf8');
    const payload = Buffer.concat([head, Buffer.alloc(64 * 1024, 0xff), Buffer.from('"}', 'utf8')]);
    expect(refusal(payload).message).toMatch(/not valid UTF-8 JSON/);
  });

  it('refuses what is not JSON', () => {
    expect(refusal(Buffer.from('{"version":1,', 'utf8')).message).toMatch(/not valid UTF-8 JSON/);
    expect(refusal(new Uint8Array(0)).message).toMatch(/not valid UTF-8 JSON/);
  });
});
