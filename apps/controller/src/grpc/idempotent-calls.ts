/**
 * request_id (docs/api.md, "Calls that are safe to retry"): a call made again with the same id within
 * 24 h gets the first call's response instead of being carried out twice, as Stripe's and Google's
 * APIs do. The first call claims the id with the fingerprint of its request; its response is stored
 * encoded. A retry while the first is still running waits for it; the same id with another request is
 * INVALID_ARGUMENT. A call that fails releases its claim: it changed nothing (no request leaves
 * anything half-done), so a retry carries it out afresh.
 */
import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { InvalidArgumentError, RequestInProgressError } from '../errors.js';
import { RequestRepository } from '../redis/request.repository.js';

/** A ts-proto message type: what is needed to fingerprint a request and to store a response. */
export interface MessageCodec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(bytes: Uint8Array): T;
  toJSON(message: T): unknown;
  fromPartial(object: never): T;
}

export const MAX_REQUEST_ID_LENGTH = 128;
/** Longer than any call runs (CreateVm waits for its agent at most AGENT_CALL_DEADLINE_MS). */
const CLAIM_MS = 120_000;
/** How long a retry waits for the first call before answering REQUEST_IN_PROGRESS (ABORTED). */
const WAIT_FOR_FIRST_MS = 30_000;
const POLL_MS = 100;

@Injectable()
export class IdempotentCalls {
  constructor(@Inject(RequestRepository) private readonly requests: RequestRepository) {}

  /**
   * Carries out `call` once per `requestId` of `method`; with an empty id, every time.
   * @throws InvalidArgumentError (request_id) for an id that is too long or was used for another request
   * @throws RequestInProgressError when the first call with this id has not ended in time
   */
  async run<Req extends { requestId: string }, Res>(
    method: string,
    request: Req,
    requestType: MessageCodec<Req>,
    responseType: MessageCodec<Res>,
    call: () => Promise<Res>,
  ): Promise<Res> {
    const requestId = request.requestId ?? '';
    if (requestId === '') return call();
    if (requestId.length > MAX_REQUEST_ID_LENGTH) throw new InvalidArgumentError('request_id', `must be at most ${MAX_REQUEST_ID_LENGTH} characters`);
    // fromPartial first: Nest's decoder gives null for an unset message field, which toJSON does not take.
    const fingerprint = fingerprintOf(requestType.toJSON(requestType.fromPartial({ ...request, requestId: '' } as never)));
    const deadline = Date.now() + WAIT_FOR_FIRST_MS;
    for (;;) {
      const claim = await this.requests.claim(method, requestId, fingerprint, CLAIM_MS);
      if (claim.kind === 'claimed') break;
      if (claim.fingerprint !== fingerprint) {
        throw new InvalidArgumentError('request_id', `was used within 24 h for a different ${method} request`);
      }
      if (claim.kind === 'done') return responseType.decode(Buffer.from(claim.response, 'base64'));
      if (Date.now() > deadline) throw new RequestInProgressError(requestId);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    let response: Res;
    try {
      response = await call();
    } catch (error) {
      await this.requests.release(method, requestId).catch(() => {});
      throw error;
    }
    await this.requests.complete(method, requestId, fingerprint, Buffer.from(responseType.encode(response).finish()).toString('base64'));
    return response;
  }
}

/** SHA-256 of the request's canonical JSON (object keys sorted: a map's order is not its meaning). */
export function fingerprintOf(json: unknown): string {
  return createHash('sha256').update(canonical(json)).digest('hex');
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
