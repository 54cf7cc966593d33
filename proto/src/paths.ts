import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** Directory holding the .proto files; the include root for every loader. */
export const PROTO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CLUSTER_PROTO = path.join(PROTO_ROOT, 'cluster/v1/cluster.proto');
export const AGENT_PROTO = path.join(PROTO_ROOT, 'agent/v1/agent.proto');

/**
 * proto-loader options used by every Nest server. They must agree with ts-proto's options in
 * buf.gen.yaml (forceLong=number ↔ longs: Number, stringEnums ↔ enums: String), so that the
 * generated types describe what Nest hands to the handlers.
 */
export const LOADER_OPTIONS = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
} as const;
