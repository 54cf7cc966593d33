export { KsmScanner, type KsmScannerOptions } from './ksm-scanner.js';
export { Ksmd } from './ksmd.js';
export { DEFAULT_KNOBS, KNOB_RANGES, KSM_ENV, knobsFromEnv, mergeKnobs, type KnobRange, type KsmKnobs, type KsmKnobsPatch } from './knobs.js';
export { RMAP_ITEM_BYTES, generalProfit, type KsmStats, type KsmRegionStats } from './stats.js';
export type { KsmMemory, KsmFramePool, FrameChecksum } from './ksm-memory.port.js';
export { xxhChecksum, zeroChecksum, framesEqual, frameIsZero } from './page-checksum.js';
export { hostKsmPaths, readHostKsm, readProcessKsmStat } from './host-ksm.reader.js';
export * from './errors.js';
