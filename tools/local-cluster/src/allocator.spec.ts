import { describe, expect, it } from 'vitest';
import { allocatorEnv } from './allocator.js';

const LIB = '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2';

describe('allocatorEnv', () => {
  it('preloads jemalloc ahead of what the caller preloads, with its background purging on', () => {
    expect(allocatorEnv('jemalloc', { library: LIB, inherited: '' })).toEqual({ LD_PRELOAD: LIB, MALLOC_CONF: 'background_thread:true' });
    expect(allocatorEnv('auto', { library: LIB, inherited: '/opt/x.so' })).toEqual({ LD_PRELOAD: `${LIB}:/opt/x.so`, MALLOC_CONF: 'background_thread:true' });
  });

  it('leaves glibc alone, and falls back to it for auto when jemalloc is not installed', () => {
    expect(allocatorEnv('glibc', { library: LIB })).toEqual({});
    expect(allocatorEnv('auto', { library: null })).toEqual({});
  });

  it('refuses jemalloc asked for by name when it is not installed, saying what to install', () => {
    expect(() => allocatorEnv('jemalloc', { library: null })).toThrow(/libjemalloc2/);
  });
});
