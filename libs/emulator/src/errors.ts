/**
 * Errors of the emulator. Each has a stable `code` (callers branch on it, never on `message`), a
 * literal type that EmulatorErrorCode (at the end) collects; the node agent maps every one of them to a
 * gRPC status in a Record<EmulatorErrorCode, status>, so that a new or renamed code fails to compile
 * until it is mapped.
 */
import type * as emulatorErrors from './errors.js';

/** A page number, frame number, byte offset or count is outside its valid range. */
export class OutOfRangeError extends Error {
  readonly code = 'OUT_OF_RANGE';
  constructor(
    readonly what: string,
    readonly value: number,
    readonly limit: number,
  ) {
    super(`${what} ${value} is out of range (limit ${limit})`);
    this.name = 'OutOfRangeError';
  }
}

/** A constructor or setter got a malformed value (e.g. memoryMib ≤ 0, unknown workload kind). */
export class InvalidArgumentError extends Error {
  readonly code = 'INVALID_ARGUMENT';
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`invalid ${field}: ${detail}`);
    this.name = 'InvalidArgumentError';
  }
}

/**
 * A VM was created from an image name that names no image: not a preset and not 1–128 characters from
 * [a-z0-9._:/-] starting with a letter or digit (images.ts IMAGE_NAME_PATTERN). The field is `image`.
 */
export class UnknownImageError extends Error {
  readonly code = 'UNKNOWN_IMAGE';
  readonly field = 'image';
  constructor(readonly image: string) {
    super(`unknown image '${image}': an image name is 1-128 characters from a-z, 0-9, '.', '_', ':', '/', '-', starting with a letter or digit`);
    this.name = 'UnknownImageError';
  }
}

/** digest() or pageHash() was called before `await initHashing()`. */
export class HashingNotInitializedError extends Error {
  readonly code = 'HASHING_NOT_INITIALIZED';
  constructor() {
    super('hashing is not initialized: await initHashing() first');
    this.name = 'HashingNotInitializedError';
  }
}

/** A VM operation is not allowed in the VM's current state (e.g. resume a stopped VM, load device state while running). */
export class InvalidVmStateError extends Error {
  readonly code = 'INVALID_VM_STATE';
  constructor(
    readonly vmId: string,
    readonly state: string,
    readonly operation: string,
  ) {
    super(`VM ${vmId} is ${state}: cannot ${operation}`);
    this.name = 'InvalidVmStateError';
  }
}

/** Guest memory was used after release() (its VM was stopped). */
export class MemoryReleasedError extends Error {
  readonly code = 'MEMORY_RELEASED';
  constructor() {
    super('guest memory was released');
    this.name = 'MemoryReleasedError';
  }
}

/** A frame number does not name a frame in use (refcount 0) where one is required. */
export class InvalidFrameError extends Error {
  readonly code = 'INVALID_FRAME';
  constructor(readonly frame: number) {
    super(`frame ${frame} is not in use`);
    this.name = 'InvalidFrameError';
  }
}

/** Saved device state or an RLE bitmap could not be decoded (bad magic, version, length or content). */
export class CorruptStateError extends Error {
  readonly code = 'CORRUPT_STATE';
  constructor(
    readonly what: string,
    detail: string,
  ) {
    super(`corrupt ${what}: ${detail}`);
    this.name = 'CorruptStateError';
  }
}

/**
 * The codes of the error classes a module exports (`typeof import('./errors.js')`): every exported
 * class whose instances carry a `code`. Derived, not listed, so that no class can be left out.
 */
export type ErrorCodeOf<Module> = InstanceType<
  Extract<Module[keyof Module], abstract new (...args: never) => { readonly code: string }>
>['code'];

/** Every code an emulator error carries. */
export type EmulatorErrorCode = ErrorCodeOf<typeof emulatorErrors>;
