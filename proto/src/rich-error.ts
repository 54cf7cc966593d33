/**
 * The rich error model on the wire (docs/api.md, Errors): a failed call carries, besides its status
 * code and message, a serialized google.rpc.Status in the standard `grpc-status-details-bin` trailer,
 * whose details hold a google.rpc.ErrorInfo (`reason`: the stable UPPER_SNAKE code, `domain`: the
 * package of the service that answered) and, for bad input, a google.rpc.BadRequest naming the fields.
 *
 * Servers build what they send with toServerError(); clients read it back with readStatusDetails().
 * Callers branch on `reason`, never on the message text.
 */
import { Metadata, type status } from '@grpc/grpc-js';
import { Any } from './gen/google/protobuf/any.js';
import { BadRequest, ErrorInfo } from './gen/google/rpc/error_details.js';
import { Status } from './gen/google/rpc/status.js';

export { BadRequest, ErrorInfo } from './gen/google/rpc/error_details.js';

/** The trailer grpc-js (like every gRPC implementation) carries the serialized google.rpc.Status in. */
export const STATUS_DETAILS_TRAILER = 'grpc-status-details-bin';
/** Error domain of the scheduler-facing API (cluster.v1.ClusterService). */
export const API_ERROR_DOMAIN = 'cluster.v1';
/** Error domain of the agent plane (agent.v1.AgentService on agents, agent.v1.RegistryService on the controller). */
export const AGENT_ERROR_DOMAIN = 'agent.v1';

const TYPE_URL_PREFIX = 'type.googleapis.com/';
const ERROR_INFO_TYPE_URL = `${TYPE_URL_PREFIX}google.rpc.ErrorInfo`;
const BAD_REQUEST_TYPE_URL = `${TYPE_URL_PREFIX}google.rpc.BadRequest`;

/** One bad field: its path in the request (proto names, dot-separated: `workload.kind`) and why. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** An error as a server sends it. */
export interface RichError {
  code: status;
  message: string;
  /** The stable UPPER_SNAKE code of the error (ErrorInfo.reason). */
  reason: string;
  /** ErrorInfo.domain: API_ERROR_DOMAIN or AGENT_ERROR_DOMAIN. */
  domain: string;
  /** ErrorInfo.metadata: lowerCamelCase keys, e.g. `nodeId`. */
  metadata?: Readonly<Record<string, string>>;
  /** The bad fields (BadRequest); sent when there are any. */
  fieldViolations?: readonly FieldViolation[];
}

/** What a failed call's trailer said. */
export interface StatusDetails {
  code: number;
  message: string;
  errorInfo?: ErrorInfo;
  badRequest?: BadRequest;
}

/** The serialized google.rpc.Status of `error`: ErrorInfo first, then BadRequest when fields are named. */
export function encodeStatusDetails(error: RichError): Buffer {
  const details: Any[] = [
    {
      typeUrl: ERROR_INFO_TYPE_URL,
      value: Buffer.from(ErrorInfo.encode({ reason: error.reason, domain: error.domain, metadata: { ...error.metadata } }).finish()),
    },
  ];
  if (error.fieldViolations?.length) {
    const fieldViolations = error.fieldViolations.map((v) => ({ ...v, reason: '', localizedMessage: undefined }));
    details.push({ typeUrl: BAD_REQUEST_TYPE_URL, value: Buffer.from(BadRequest.encode({ fieldViolations }).finish()) });
  }
  return Buffer.from(Status.encode({ code: error.code, message: error.message, details }).finish());
}

/**
 * Decodes a serialized google.rpc.Status, picking out the details it knows (others are skipped).
 * @throws Error when the bytes are not a google.rpc.Status
 */
export function decodeStatusDetails(bytes: Uint8Array): StatusDetails {
  const decoded = Status.decode(bytes);
  const out: StatusDetails = { code: decoded.code, message: decoded.message };
  for (const any of decoded.details) {
    if (any.typeUrl === ERROR_INFO_TYPE_URL) out.errorInfo ??= ErrorInfo.decode(any.value);
    else if (any.typeUrl === BAD_REQUEST_TYPE_URL) out.badRequest ??= BadRequest.decode(any.value);
  }
  return out;
}

/**
 * The error object a grpc-js server sends (a handler's callback, a stream's 'error', or what a Nest
 * exception filter throws): the status code, the message, and the trailer with the details.
 */
export function toServerError(error: RichError): { code: status; message: string; details: string; metadata: Metadata } {
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_TRAILER, encodeStatusDetails(error));
  return { code: error.code, message: error.message, details: error.message, metadata };
}

/**
 * The details a failed call carried in its trailer (`error` is a grpc-js ServiceError); undefined when
 * it carried none, or none that decodes (a server outside this project, a proxy that dropped it).
 */
export function readStatusDetails(error: unknown): StatusDetails | undefined {
  // Duck-typed, not instanceof: the error may come from another copy of grpc-js.
  const metadata = (error as { metadata?: Partial<Pick<Metadata, 'get'>> } | null)?.metadata;
  if (typeof metadata?.get !== 'function') return undefined;
  const [bytes] = metadata.get(STATUS_DETAILS_TRAILER);
  if (!Buffer.isBuffer(bytes)) return undefined;
  try {
    return decodeStatusDetails(bytes);
  } catch {
    return undefined;
  }
}

/**
 * The error domain of a call: the package of the service its method path names
 * (`/cluster.v1.ClusterService/CreateVm` → `cluster.v1`), or `fallback` without a path.
 */
export function errorDomainOf(methodPath: string | undefined, fallback: string): string {
  const service = methodPath?.split('/')[1];
  const dot = service?.lastIndexOf('.') ?? -1;
  return service && dot > 0 ? service.slice(0, dot) : fallback;
}
