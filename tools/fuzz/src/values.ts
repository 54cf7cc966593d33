/**
 * Random and boundary values for the fields of any generated request message: the message's own
 * shape (decoded from zero bytes, every field at its default) says which type each field has, and
 * each is replaced by values of that type that servers must bound: empty, huge, negative, 2^63,
 * NaN, 10^6 entries. Raw byte strings cover what typed values cannot: invalid UTF-8, truncated and
 * unknown fields.
 */
import fc from 'fast-check';

const HUGE_STRING = 'x'.repeat(64 * 1024);
const BOUNDARY_NUMBERS = [0, -1, 1, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 2 ** 32, 2 ** 53, -(2 ** 53), 2 ** 63, Number.MAX_VALUE, NaN, Infinity, -Infinity, 0.5, 1e-300];

export const numberValue = fc.oneof(fc.constantFrom(...BOUNDARY_NUMBERS), fc.integer(), fc.double());
export const stringValue = fc.oneof(
  fc.constantFrom('', ' ', 'node-1', 'node-2', 'vm-1', '../../etc/passwd', 'tier=web,env!=dev', '\u0000', '\ud800', HUGE_STRING, 'é'.repeat(200)),
  fc.string({ maxLength: 300 }),
  fc.string({ unit: 'binary', maxLength: 300 }),
);

type Shape = unknown;

/** A value shaped like `template` (a decoded default message), with random field values. */
export function valueLike(template: Shape, depth = 0): fc.Arbitrary<unknown> {
  if (typeof template === 'number') return numberValue;
  if (typeof template === 'string') return stringValue;
  if (typeof template === 'boolean') return fc.boolean();
  if (Array.isArray(template)) return fc.constant([]);
  if (template instanceof Uint8Array) return fc.uint8Array({ maxLength: 512 });
  if (template === undefined || template === null) return fc.constant(undefined);
  if (typeof template === 'object') {
    const entries = Object.entries(template as Record<string, unknown>);
    const fields: Record<string, fc.Arbitrary<unknown>> = {};
    for (const [key, value] of entries) fields[key] = fc.oneof({ weight: 1, arbitrary: fc.constant(value) }, { weight: 2, arbitrary: valueLike(value, depth + 1) });
    return fc.record(fields);
  }
  return fc.constant(template);
}

/** A request: typed random fields, sometimes with a list of 10^5..10^6 entries in place of an empty one. */
export function requestLike(template: Record<string, unknown>): fc.Arbitrary<Record<string, unknown>> {
  const listFields = Object.entries(template).filter(([, v]) => Array.isArray(v)).map(([k]) => k);
  const base = valueLike(template) as fc.Arbitrary<Record<string, unknown>>;
  if (listFields.length === 0) return base;
  return fc.oneof(
    { weight: 9, arbitrary: base },
    { weight: 1, arbitrary: fc.tuple(base, fc.constantFrom(...listFields), fc.constantFrom(100_000, 1_000_000)).map(([r, field, n]) => ({ ...r, [field]: Array.from({ length: n }, () => '') })) },
  );
}

/** Bytes that are not a valid message: random, truncated valid ones, unknown fields, 64 MiB. */
export function rawBytes(valid: Buffer): fc.Arbitrary<Buffer> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 4096 }).map((b) => Buffer.from(b)),
    fc.integer({ min: 0, max: Math.max(0, valid.length - 1) }).map((n) => valid.subarray(0, n)),
    // Field 1000 (unknown) as a varint, then as a length-delimited field with invalid UTF-8.
    fc.constant(Buffer.concat([valid, Buffer.from([0xc0, 0x3e, 0x01]), Buffer.from([0xc2, 0x3e, 0x02, 0xff, 0xfe])])),
    // Field 1 as a string of invalid UTF-8.
    fc.constant(Buffer.from([0x0a, 0x04, 0xff, 0xfe, 0xc3, 0x28])),
    // A length that claims 2^31 bytes.
    fc.constant(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x07, 0x41])),
    fc.constant(Buffer.alloc(64 * 1024 * 1024, 0x41)),
  );
}
