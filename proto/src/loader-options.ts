import { PROTO_ROOT } from './paths.js';

/**
 * proto-loader options used by every Nest server: Nest decodes requests and encodes responses with
 * proto-loader at run time, while the handlers are typed by ts-proto's output. The two must agree
 * (buf.gen.yaml: forceLong=number ↔ longs: Number, stringEnums ↔ enums: String, camelCase fields on
 * both sides, every field present ↔ defaults: true), so that the generated types describe what Nest
 * hands to the handlers; loader-options.spec.ts round-trips messages between the two codecs.
 */
export const LOADER_OPTIONS = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
} as const;
