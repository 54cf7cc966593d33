/**
 * Preloaded by the fuzzer into the processes of its own cluster only (`--import`, with `--expose-gc`),
 * never into a product process: SIGUSR2 runs a full garbage collection, so that the fuzzer reads each
 * process's RSS before and after the run in the same state (what the process holds, not garbage V8 has
 * not collected yet). The fuzzer sends it to the controller and the agents only. The handler is there
 * even without `--expose-gc` (then it does nothing): SIGUSR2's default would end the process.
 */
const gc = (globalThis as { gc?: () => void }).gc;
process.on('SIGUSR2', () => gc?.());
