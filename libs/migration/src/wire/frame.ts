/**
 * Frame layout of the migration data connection (see proto/migration/v1/STREAM.md).
 *
 *   u32 LE payload length | u8 type | payload
 *
 * Pure constants: the codec and the docs must agree with this file.
 */
/** Highest protocol version this build speaks (2 added PAGE_RUN). */
export const PROTOCOL_VERSION = 2;
/** Lowest version this build speaks: both ends agree on a version in HELLO / HELLO_ACK. */
export const MIN_PROTOCOL_VERSION = 1;
export const PAGE_SIZE = 4096;
export const FRAME_HEADER_BYTES = 5;

/** Frame types. 0x0_ flow sender → receiver, 0x8_ receiver → sender, 0x7F either way. */
export const FrameType = {
  /** JSON: version, migration id, token, VM spec. Must be the first frame. */
  HELLO: 0x01,
  /** Records of u32 page index + 4096 raw bytes. */
  PAGES: 0x02,
  /** Pairs of u32 first page + u32 page count; the pages are zero. */
  ZERO: 0x03,
  /** Records of u32 page index + u16 encoded length + XBZRLE delta against the last sent version. */
  XBZRLE: 0x04,
  /** u32 round number: every page frame until the next ROUND belongs to this round. */
  ROUND: 0x05,
  /** Opaque device state bytes (vCPU registers, workload position). */
  DEVICE_STATE: 0x06,
  /** 16 ASCII hex chars: the source digest after the last page; nothing follows. */
  COMPLETE: 0x07,
  /**
   * Version 2: n u32 page indices, then the n pages' 4096 bytes back to back (n = payload / 4100). The
   * sender writes the data straight from the guest frames, without copying it into a batch.
   */
  PAGE_RUN: 0x08,
  /** Receiver accepted the HELLO. Empty, or (to a sender that offered maxVersion) u32 agreed version. */
  HELLO_ACK: 0x81,
  /** 16 ASCII hex chars: the target digest after applying everything. */
  VERIFIED: 0x82,
  /** u32 round: every page before that ROUND frame is applied. Paces the rounds to the receiver. */
  ROUND_ACK: 0x83,
  /** JSON {code, message}: the peer gives up; the connection closes after it. */
  ERROR: 0x7f,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

export const PAGE_RECORD_BYTES = 4 + PAGE_SIZE;
export const ZERO_RECORD_BYTES = 8;
export const XBZRLE_RECORD_HEADER_BYTES = 6;

/** Bytes per socket read on the receiving end (transport.ts reads into one reused buffer this big). */
export const SOCKET_READ_BUFFER_BYTES = 256 * 1024;

/** Page batches are built in buffers of this payload size (256 pages ≈ 1 MiB, docs/stack.md §8). */
export const BATCH_PAYLOAD_BYTES = 256 * PAGE_RECORD_BYTES;
/** Pages per PAGES or PAGE_RUN frame at most. */
export const BATCH_PAGES = BATCH_PAYLOAD_BYTES / PAGE_RECORD_BYTES;
/** A ZERO frame's payload at most: 8192 ranges (the sender's zero batch). */
export const ZERO_PAYLOAD_BYTES = 64 * 1024;
/**
 * HELLO's payload at most. Its fields are bounded (wire/hello.ts) and take well under 1 KiB; a HELLO
 * arrives before the peer proved anything, so what a connection may make the listener buffer is small.
 */
export const HELLO_PAYLOAD_BYTES = 4 * 1024;
/** ERROR's payload at most (its message is cut to fit, codec.ts encodeError). */
export const ERROR_PAYLOAD_BYTES = 64 * 1024;

/** Largest payload accepted per type; anything bigger is a protocol error, so the parser never buffers unbounded data. */
export const MAX_PAYLOAD_BYTES: Readonly<Record<number, number>> = {
  [FrameType.HELLO]: HELLO_PAYLOAD_BYTES,
  [FrameType.PAGES]: BATCH_PAYLOAD_BYTES,
  [FrameType.PAGE_RUN]: BATCH_PAYLOAD_BYTES,
  [FrameType.ZERO]: ZERO_PAYLOAD_BYTES,
  [FrameType.XBZRLE]: BATCH_PAYLOAD_BYTES,
  [FrameType.ROUND]: 4,
  [FrameType.DEVICE_STATE]: 16 * 1024 * 1024,
  [FrameType.COMPLETE]: 16,
  [FrameType.HELLO_ACK]: 4,
  [FrameType.VERIFIED]: 16,
  [FrameType.ROUND_ACK]: 4,
  [FrameType.ERROR]: ERROR_PAYLOAD_BYTES,
};

/** The VM as announced in HELLO; the receiver checks it against its incoming VM. */
export interface HelloPayload {
  /** Lowest protocol version the sender speaks (a version-1 receiver requires exactly 1 here). */
  version: number;
  /**
   * Highest version the sender speaks (optional, absent = `version`). A receiver that knows it answers
   * with the agreed version in HELLO_ACK; one that does not ignores it, and version 1 is spoken.
   */
  maxVersion?: number;
  migrationId: string;
  token: string;
  pageCount: number;
  memoryMib: number;
  image: string;
  vcpus: number;
  /**
   * Pages the source has backed by a frame (optional; absent = unknown). The target reserves and
   * pre-faults that many frames before it acknowledges HELLO, so the stream never waits on page faults.
   */
  residentPages?: number;
  /**
   * The source's completion timeout (optional): the target gives up that long (plus a margin) after
   * HELLO, so a sender that falls silent does not hold the incoming VM forever.
   */
  completionTimeoutMs?: number;
}

export interface ErrorPayload {
  code: string;
  message: string;
}

export function frameTypeName(type: number): string {
  for (const [name, code] of Object.entries(FrameType)) if (code === type) return name;
  return `0x${type.toString(16)}`;
}
