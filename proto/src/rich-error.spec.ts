import { credentials, Metadata, Server, ServerCredentials, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster } from './index.js';
import { unaryCall } from './grpc-promise.js';
import {
  API_ERROR_DOMAIN,
  decodeStatusDetails,
  encodeStatusDetails,
  errorDomainOf,
  readStatusDetails,
  STATUS_DETAILS_TRAILER,
  toServerError,
  type RichError,
} from './rich-error.js';

const invalidName: RichError = {
  code: status.INVALID_ARGUMENT,
  message: 'name: must not be empty',
  reason: 'INVALID_ARGUMENT',
  domain: API_ERROR_DOMAIN,
  metadata: { nodeId: 'node-1' },
  fieldViolations: [{ field: 'name', description: 'must not be empty' }],
};

/** A length-delimited protobuf field (tag, varint length < 128, bytes): enough for these small messages. */
function field(number: number, bytes: Buffer): Buffer {
  expect(bytes.length).toBeLessThan(128);
  return Buffer.concat([Buffer.from([(number << 3) | 2, bytes.length]), bytes]);
}
const text = (s: string) => Buffer.from(s, 'utf8');

describe('encodeStatusDetails / decodeStatusDetails', () => {
  it('round-trips ErrorInfo (reason, domain, metadata) and BadRequest field violations', () => {
    const decoded = decodeStatusDetails(encodeStatusDetails(invalidName));
    expect(decoded.code).toBe(status.INVALID_ARGUMENT);
    expect(decoded.message).toBe('name: must not be empty');
    expect(decoded.errorInfo).toEqual({ reason: 'INVALID_ARGUMENT', domain: 'cluster.v1', metadata: { nodeId: 'node-1' } });
    expect(decoded.badRequest?.fieldViolations.map((v) => [v.field, v.description])).toEqual([['name', 'must not be empty']]);
  });

  it('sends no BadRequest when no field is named', () => {
    const decoded = decodeStatusDetails(encodeStatusDetails({ code: status.NOT_FOUND, message: 'vm "x" not found', reason: 'VM_NOT_FOUND', domain: 'cluster.v1' }));
    expect(decoded.errorInfo?.reason).toBe('VM_NOT_FOUND');
    expect(decoded.errorInfo?.metadata).toEqual({});
    expect(decoded.badRequest).toBeUndefined();
  });

  it('writes the standard google.rpc.Status layout (checked against bytes built by hand)', () => {
    const errorInfo = Buffer.concat([field(1, text('VM_NOT_FOUND')), field(2, text('cluster.v1'))]);
    const any = Buffer.concat([field(1, text('type.googleapis.com/google.rpc.ErrorInfo')), field(2, errorInfo)]);
    const expected = Buffer.concat([Buffer.from([0x08, status.NOT_FOUND]), field(2, text('gone')), field(3, any)]);
    expect(encodeStatusDetails({ code: status.NOT_FOUND, message: 'gone', reason: 'VM_NOT_FOUND', domain: 'cluster.v1' })).toEqual(expected);
  });

  it('reads a Status written elsewhere, skipping details it does not know', () => {
    const unknown = Buffer.concat([field(1, text('type.googleapis.com/google.rpc.RetryInfo')), field(2, Buffer.alloc(0))]);
    const errorInfo = Buffer.concat([field(1, text('type.googleapis.com/google.rpc.ErrorInfo')), field(2, field(1, text('VM_BUSY')))]);
    const bytes = Buffer.concat([Buffer.from([0x08, status.FAILED_PRECONDITION]), field(3, unknown), field(3, errorInfo)]);
    expect(decodeStatusDetails(bytes)).toEqual({ code: status.FAILED_PRECONDITION, message: '', errorInfo: { reason: 'VM_BUSY', domain: '', metadata: {} } });
  });
});

describe('readStatusDetails', () => {
  it('reads the trailer of an error', () => {
    const { metadata } = toServerError(invalidName);
    expect(readStatusDetails({ metadata })?.errorInfo?.reason).toBe('INVALID_ARGUMENT');
  });

  it('is undefined without a trailer, with bytes that are no Status, or for a value that is no error', () => {
    expect(readStatusDetails({ metadata: new Metadata() })).toBeUndefined();
    const garbage = new Metadata();
    garbage.set(STATUS_DETAILS_TRAILER, Buffer.from([0xff, 0xff, 0xff]));
    expect(readStatusDetails({ metadata: garbage })).toBeUndefined();
    expect(readStatusDetails(new Error('plain'))).toBeUndefined();
    expect(readStatusDetails(null)).toBeUndefined();
  });
});

describe('errorDomainOf', () => {
  it.each([
    ['/cluster.v1.ClusterService/CreateVm', 'cluster.v1'],
    ['/agent.v1.RegistryService/Register', 'agent.v1'],
    [undefined, 'fallback'],
    ['', 'fallback'],
    ['/NoPackage/Call', 'fallback'],
  ])('%s → %s', (path, domain) => {
    expect(errorDomainOf(path, 'fallback')).toBe(domain);
  });
});

describe('the trailer over a real grpc-js call (loopback socket)', () => {
  let server: Server;
  let client: cluster.ClusterServiceClient;

  beforeAll(async () => {
    server = new Server();
    server.addService(cluster.ClusterServiceService, {
      createVm: (_call: unknown, callback: (error: ReturnType<typeof toServerError>) => void) => callback(toServerError(invalidName)),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, p) => (error ? reject(error) : resolve(p))),
    );
    client = new cluster.ClusterServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    await new Promise<void>((resolve) => (server ? server.tryShutdown(() => resolve()) : resolve()));
  });

  it('arrives with its status, message, ErrorInfo and BadRequest', async () => {
    const error = (await unaryCall(client, 'createVm', cluster.CreateVmRequest.fromPartial({}), { timeoutMs: 5_000 }).then(
      () => expect.fail('the call succeeded'),
      (e: ServiceError) => e,
    )) as ServiceError;
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.details).toBe('name: must not be empty');
    const details = readStatusDetails(error);
    expect(details?.errorInfo).toEqual({ reason: 'INVALID_ARGUMENT', domain: 'cluster.v1', metadata: { nodeId: 'node-1' } });
    expect(details?.badRequest?.fieldViolations[0]?.field).toBe('name');
  });
});
