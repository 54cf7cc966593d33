import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** Directory holding the .proto files; the include root for every loader. */
export const PROTO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CLUSTER_PROTO = path.join(PROTO_ROOT, 'cluster/v1/cluster.proto');
export const AGENT_PROTO = path.join(PROTO_ROOT, 'agent/v1/agent.proto');
