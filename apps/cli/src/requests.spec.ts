import { describe, expect, it } from 'vitest';
import { parseDurationMs, parseMemoryMib } from './args.js';
import { parseServerAddress } from './client.js';
import { UsageError } from './errors.js';
import { buildCreateRequest, buildKsmKnobs, buildPolicy } from './requests.js';

const base = { vcpus: '2', memory: '1024', image: 'debian-12', workload: 'uniform:2000' };

describe('buildCreateRequest', () => {
  it('builds the request with labels and placement', () => {
    const req = buildCreateRequest('web-1', { ...base, memory: '2G', node: 'node-2', antiAffinity: 'web', label: ['tier=web', 'env=demo'] });
    expect(req).toMatchObject({ name: 'web-1', vcpus: 2, memoryMib: 2048, image: 'debian-12', nodeId: 'node-2', antiAffinityGroup: 'web' });
    expect(req.labels).toEqual({ tier: 'web', env: 'demo' });
    expect(req.workload?.dirtyRatePagesPerSec).toBe(2000);
  });

  it.each([
    [{ vcpus: '0' }, /--vcpus must be between 1/],
    [{ vcpus: 'two' }, /--vcpus must be a whole number/],
    [{ memory: '0' }, /--memory must be a whole number of MiB > 0/],
    [{ memory: '1.5M' }, /--memory must be a whole number/],
    [{ memory: 'lots' }, /--memory must be MiB/],
    [{ image: ' ' }, /--image must not be empty/],
    [{ label: ['novalue'] }, /--label must be key=value/],
    [{ label: ['a=1', 'a=2'] }, /--label a given twice/],
  ])('rejects %j', (override, message) => {
    expect(() => buildCreateRequest('vm', { ...base, ...override })).toThrow(message);
  });

  it('rejects an empty name', () => expect(() => buildCreateRequest('  ', base)).toThrow(UsageError));
});

describe('buildPolicy', () => {
  it('sends no policy when no option is given', () => expect(buildPolicy({})).toBeUndefined());
  it('sets only the given fields (unset ones take the controller defaults; an explicit 0 would not)', () => {
    expect(buildPolicy({ downtimeMs: '300', autoConverge: true })).toEqual({ downtimeLimitMs: 300, autoConverge: true });
    expect(buildPolicy({ bandwidthMib: '0' })).toEqual({ maxBandwidthMibPerSec: 0 });
    expect(buildPolicy({ bandwidthMib: '128.5', maxRounds: '30', xbzrle: true })).toMatchObject({
      maxBandwidthMibPerSec: 128.5,
      maxRounds: 30,
      xbzrle: true,
    });
  });
  it.each([
    [{ downtimeMs: '0' }, /--downtime-ms must be between 1/],
    [{ bandwidthMib: '-1' }, /--bandwidth-mib must be a number ≥ 0/],
    [{ maxRounds: 'x' }, /--max-rounds must be a whole number/],
  ])('rejects %j', (opts, message) => expect(() => buildPolicy(opts)).toThrow(message));
});

describe('buildKsmKnobs', () => {
  it('shows only (undefined) without options', () => expect(buildKsmKnobs({})).toBeUndefined());
  it('sets only the given knobs', () => {
    expect(buildKsmKnobs({ run: '1', pagesToScan: '1000', sleepMs: '20', useZeroPages: 'yes' })).toEqual({
      run: 1,
      pagesToScan: 1000,
      sleepMillisecs: 20,
      useZeroPages: true,
    });
  });
  it.each([
    [{ run: '3' }, /--run must be between 0 and 2/],
    [{ pagesToScan: '0' }, /--pages-to-scan must be between 1/],
    [{ maxPageSharing: '1' }, /--max-page-sharing must be between 2/],
    [{ useZeroPages: 'maybe' }, /--use-zero-pages must be true or false/],
  ])('rejects %j', (opts, message) => expect(() => buildKsmKnobs(opts)).toThrow(message));
});

describe('global options', () => {
  it.each([
    ['127.0.0.1:50051', '127.0.0.1:50051'],
    ['controller.local:9000', 'controller.local:9000'],
    ['[::1]:50051', '[::1]:50051'],
  ])('accepts server %s', (text, addr) => expect(parseServerAddress(text)).toBe(addr));
  it.each(['50051', 'host:', 'host:0', 'host:70000', 'a b:1'])('rejects server %j', (text) =>
    expect(() => parseServerAddress(text)).toThrow(/--server must be host:port/),
  );
  it('parses timeouts and memory units', () => {
    expect([parseDurationMs('10s', 't'), parseDurationMs('500ms', 't'), parseDurationMs('2m', 't'), parseDurationMs('3', 't')]).toEqual([
      10_000, 500, 120_000, 3000,
    ]);
    expect(() => parseDurationMs('0', '--timeout')).toThrow(/longer than 0/);
    expect([parseMemoryMib('512M'), parseMemoryMib('2GiB'), parseMemoryMib('1.5g')]).toEqual([512, 2048, 1536]);
  });
});
