import { existsSync, readFileSync } from 'node:fs';

/**
 * The malloc a cluster process runs with. glibc's hands freed memory back only from the top of its main
 * heap: under bursts (a thousand TLS connections at once, a stream of large frames) that heap grows by
 * 20–30 MiB and one later, long-lived allocation above the freed part keeps all of it resident. Seen in
 * 10-minute fuzz runs (`npm run fuzz`): an agent's brk heap went from 10 to 38 MiB within 30 s and
 * stayed at 30, with its JS heap, external memory and handles unchanged; the controller's RSS came back
 * 15–20% above its start. jemalloc (Debian's libjemalloc2, a dependency of redis-server) returns freed
 * pages within seconds (`background_thread`): the same runs came back within 8%. It costs the data
 * plane, though: `npm run bench:stream` over mutual TLS ran at 0.49–0.54 GB/s with it against
 * 0.58–0.60 GB/s with glibc (same machine, same run). So the controller, which carries no guest memory,
 * runs with jemalloc where the library is installed; the agents run with glibc unless asked.
 */
export const ALLOCATORS = ['auto', 'glibc', 'jemalloc'] as const;
/** `auto`: jemalloc when installed, else glibc. */
export type Allocator = (typeof ALLOCATORS)[number];

/** Where Debian's libjemalloc2 puts the library, per architecture. */
const JEMALLOC_PATHS = ['/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2'];

export function jemallocLibrary(): string | undefined {
  return JEMALLOC_PATHS.find((p) => existsSync(p));
}

/**
 * The variables that make a child run with `allocator` (preloaded ahead of anything the caller's own
 * LD_PRELOAD names). @throws Error for `jemalloc` when the library is not installed.
 */
export function allocatorEnv(
  allocator: Allocator,
  opts: { /** null: not installed */ library?: string | null; inherited?: string } = {},
): Record<string, string> {
  if (allocator === 'glibc') return {};
  const library = opts.library === undefined ? jemallocLibrary() : opts.library;
  const inherited = opts.inherited ?? process.env.LD_PRELOAD;
  if (!library) {
    if (allocator === 'auto') return {};
    throw new Error('allocator jemalloc: libjemalloc.so.2 is not installed (apt-get install libjemalloc2)');
  }
  return { LD_PRELOAD: [library, inherited].filter(Boolean).join(':'), MALLOC_CONF: 'background_thread:true' };
}

/** The malloc a running process has mapped (glibc when it has no jemalloc, or when it is gone). */
export function processAllocator(pid: number): 'jemalloc' | 'glibc' {
  try {
    return readFileSync(`/proc/${pid}/maps`, 'utf8').includes('libjemalloc') ? 'jemalloc' : 'glibc';
  } catch {
    return 'glibc';
  }
}
