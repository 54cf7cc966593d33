import { Metadata, status } from '@grpc/grpc-js';
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { encodeStatusDetails } from '@vmm/proto';
import { crossSiteRefusal, loopbackAddress, requestToken, toConsoleError } from './console-api.js';

describe('console API helpers', () => {
  it.each([
    ['0.0.0.0', 50051, '127.0.0.1:50051'],
    ['', 1, '127.0.0.1:1'],
    ['::', 2, '[::1]:2'],
    ['127.0.0.1', 3, '127.0.0.1:3'],
    ['::1', 4, '[::1]:4'],
  ])('reaches %s:%d at %s', (host, port, expected) => expect(loopbackAddress(host, port)).toBe(expected));

  it('takes the token from the Authorization header first, else from ?token=', () => {
    const req = (authorization?: string) => ({ headers: { authorization } }) as IncomingMessage;
    expect(requestToken(req('Bearer abc'), new URL('http://x/api/cluster?token=zzz'))).toBe('abc');
    expect(requestToken(req(), new URL('http://x/api/events?token=zzz'))).toBe('zzz');
    expect(requestToken(req(), new URL('http://x/api/events'))).toBe('');
  });

  it.each([
    [status.UNAUTHENTICATED, 401, 'UNAUTHENTICATED'],
    [status.PERMISSION_DENIED, 403, 'PERMISSION_DENIED'],
    [status.NOT_FOUND, 404, 'NOT_FOUND'],
    [status.FAILED_PRECONDITION, 409, 'FAILED_PRECONDITION'],
    [status.INTERNAL, 500, 'INTERNAL'],
  ])('maps gRPC code %d to HTTP %d, naming it and its stable reason', (code, http, name) => {
    const metadata = new Metadata();
    metadata.set('grpc-status-details-bin', encodeStatusDetails({ code, message: 'm', reason: 'SOME_REASON', domain: 'cluster.v1' }));
    const { httpStatus, body } = toConsoleError(Object.assign(new Error(`${code} x: details`), { code, details: 'details', metadata }));
    expect(httpStatus).toBe(http);
    expect(body).toEqual({ code, codeName: name, message: 'details', reason: 'SOME_REASON' });
  });
});

describe('crossSiteRefusal', () => {
  const req = (headers: Record<string, string>) => ({ headers });
  it('takes JSON from its own origin (or from a client that sends no Origin, such as curl)', () => {
    expect(crossSiteRefusal(req({ 'content-type': 'application/json', host: '127.0.0.1:8080', origin: 'http://127.0.0.1:8080' }))).toBeUndefined();
    expect(crossSiteRefusal(req({ 'content-type': 'application/json; charset=utf-8', host: '127.0.0.1:8080' }))).toBeUndefined();
  });
  it('refuses a form post and another origin: a page elsewhere cannot drain nodes', () => {
    expect(crossSiteRefusal(req({ 'content-type': 'text/plain', host: '127.0.0.1:8080' }))).toMatch(/application\/json/);
    expect(crossSiteRefusal(req({ 'content-type': 'application/x-www-form-urlencoded', host: 'h' }))).toMatch(/application\/json/);
    expect(crossSiteRefusal(req({ host: 'h' }))).toMatch(/application\/json/);
    expect(crossSiteRefusal(req({ 'content-type': 'application/json', host: '127.0.0.1:8080', origin: 'http://evil.example' }))).toMatch(/own origin/);
  });
});
