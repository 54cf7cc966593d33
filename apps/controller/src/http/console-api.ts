/**
 * The web console's HTTP backend (`/api/*`). It holds no state and checks nothing itself: every request
 * becomes calls to the controller's own ClusterService over gRPC on loopback, carrying the user's token
 * as `authorization: Bearer` metadata, so that the API's authentication and token scopes apply to the
 * console exactly as to vmctl. A gRPC error comes back as JSON {code, codeName, message, reason}, with
 * the HTTP status its code maps to (UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404, …).
 *
 * The token: `Authorization: Bearer T` on fetch calls, or `?token=T` (EventSource sends no headers).
 *
 * Live updates are server-sent events: /api/events sends the cluster (nodes, VMs, migrations) whenever
 * it changed, read again at once on every change the controller journals (its WatchEvents stream) and
 * every MEASURE_REFRESH_MS for the figures reports measure (the journal coalesces those); where no watch
 * can be had (the API's watch limits), every POLL_MS. /api/migrations/:id/events forwards the
 * migration's WatchMigration stream, one event per change (the page draws one point per pre-copy round).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { credentials as grpcCredentials, Metadata, status as Status, type ChannelCredentials, type ClientReadableStream } from '@grpc/grpc-js';
import { cluster, promiseClient, readStatusDetails, type PromiseClient } from '@vmm/proto';

/** How often an open /api/events stream re-reads the cluster without a change stream, in ms. */
const POLL_MS = 500;
/** With one: how often it re-reads anyway, for the dirty rates and memory the reports refresh every second. */
const MEASURE_REFRESH_MS = 2_000;
/** After a change stream was refused or ended: how long before an overview tries for one again. */
const FEED_RETRY_MS = 10_000;
/** Largest POST body accepted, in bytes. */
const MAX_BODY_BYTES = 64 * 1024;
const LIST_PAGE = 500;

const CODE_NAMES = new Map(Object.entries(Status).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v as number, k]));
const HTTP_OF_CODE: Partial<Record<number, number>> = {
  [Status.INVALID_ARGUMENT]: 400, [Status.FAILED_PRECONDITION]: 409, [Status.OUT_OF_RANGE]: 400,
  [Status.UNAUTHENTICATED]: 401, [Status.PERMISSION_DENIED]: 403, [Status.NOT_FOUND]: 404,
  [Status.ALREADY_EXISTS]: 409, [Status.ABORTED]: 409, [Status.RESOURCE_EXHAUSTED]: 429,
  [Status.UNAVAILABLE]: 503, [Status.DEADLINE_EXCEEDED]: 504,
};

/** An API error as the console shows it. */
export interface ConsoleError {
  code: number;
  codeName: string;
  message: string;
  reason: string;
}

export function toConsoleError(err: unknown): { httpStatus: number; body: ConsoleError } {
  const e = err as { code?: unknown; details?: unknown; message?: unknown };
  const code = typeof e?.code === 'number' ? e.code : Status.UNKNOWN;
  const reason = readStatusDetails(err)?.errorInfo?.reason ?? '';
  const message = typeof e?.details === 'string' && e.details ? e.details : String(e?.message ?? err);
  return { httpStatus: HTTP_OF_CODE[code] ?? 500, body: { code, codeName: CODE_NAMES.get(code) ?? String(code), message, reason } };
}

type Api = PromiseClient<cluster.ClusterServiceClient>;

export interface ConsoleApi {
  /** Handles `/api/*`; false when the path is not the console's. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  close(): void;
}

/** ClusterService's address as this process reaches it: a wildcard listen address means loopback. */
export function loopbackAddress(host: string, port: number): string {
  const h = host === '' || host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `${h}:${port}`;
}

/** The token a request carries: its Authorization header, else `?token=`. */
export function requestToken(req: IncomingMessage, url: URL): string {
  const header = req.headers.authorization;
  const m = header ? /^Bearer\s+(.+)$/i.exec(header.trim()) : null;
  return m ? m[1]! : (url.searchParams.get('token') ?? '');
}

function metadataFor(token: string): Metadata {
  const md = new Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return md;
}

/** Why a console action is refused as cross-site, or undefined. */
export function crossSiteRefusal(req: Pick<IncomingMessage, 'headers'>): string | undefined {
  const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') return 'console actions take Content-Type: application/json';
  const origin = req.headers.origin;
  const host = req.headers.host;
  if (origin !== undefined && (host === undefined || (origin !== `http://${host}` && origin !== `https://${host}`))) {
    return `console actions are taken from the console's own origin only, not ${String(origin).slice(0, 100)}`;
  }
  return undefined;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw Object.assign(new Error('request body too large'), { code: Status.RESOURCE_EXHAUSTED });
    chunks.push(chunk);
  }
  if (size === 0) return {};
  try {
    const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (body && typeof body === 'object' && !Array.isArray(body)) return body as Record<string, unknown>;
  } catch { /* reported below */ }
  throw Object.assign(new Error('request body must be a JSON object'), { code: Status.INVALID_ARGUMENT });
}

/** The cluster as the overview draws it: every node, VM and migration (each list read to its end). */
export async function readCluster(api: Api, metadata: () => Metadata) {
  const nodes: cluster.Node[] = [];
  const vms: cluster.Vm[] = [];
  const migrations: cluster.Migration[] = [];
  let token = '';
  do {
    const page = await api.listNodes({ pageSize: LIST_PAGE, pageToken: token }, { metadata: metadata() });
    nodes.push(...page.nodes);
    token = page.nextPageToken;
  } while (token);
  do {
    const page = await api.listVms({ pageSize: LIST_PAGE, pageToken: token }, { metadata: metadata() });
    vms.push(...page.vms);
    token = page.nextPageToken;
  } while (token);
  do {
    const page = await api.listMigrations({ pageSize: LIST_PAGE, pageToken: token }, { metadata: metadata() });
    migrations.push(...page.migrations);
    token = page.nextPageToken;
  } while (token);
  return { nodes, vms, migrations };
}

/** The policy knobs a migrate form may send; anything else in `policy` is ignored. */
function policyFrom(raw: unknown): cluster.MigrationPolicy {
  const p = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  const num = (k: string) => (typeof p[k] === 'number' && Number.isFinite(p[k]) ? (p[k] as number) : undefined);
  const bool = (k: string) => (typeof p[k] === 'boolean' ? (p[k] as boolean) : undefined);
  return cluster.MigrationPolicy.fromPartial({
    downtimeLimitMs: num('downtimeLimitMs'), maxBandwidthMibPerSec: num('maxBandwidthMibPerSec'), maxRounds: num('maxRounds'),
    autoConverge: bool('autoConverge'), xbzrle: bool('xbzrle'), completionTimeoutMs: num('completionTimeoutMs'),
    xbzrleCacheMib: num('xbzrleCacheMib'), multifdChannels: num('multifdChannels'),
  });
}

/**
 * The console's API, calling ClusterService at `address` (the controller's own, on loopback).
 * `channelCredentials` are the API's (plaintext on loopback unless it serves TLS).
 */
export function createConsoleApi(
  address: string,
  channelCredentials: ChannelCredentials = grpcCredentials.createInsecure(),
  timing: { pollMs: number; measureRefreshMs: number } = { pollMs: POLL_MS, measureRefreshMs: MEASURE_REFRESH_MS },
): ConsoleApi {
  const client = new cluster.ClusterServiceClient(address, channelCredentials);
  const api: Api = promiseClient(client, cluster.ClusterServiceService, cluster);
  const feeds = new ChangeFeeds(client, api);

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  const fail = (res: ServerResponse, err: unknown) => {
    const { httpStatus, body } = toConsoleError(err);
    if (res.headersSent) sseSend(res, 'api-error', body);
    else json(res, httpStatus, body);
  };

  const sseOpen = (res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write('retry: 1000\n\n');
  };
  const sseSend = (res: ServerResponse, event: string, data: unknown) => {
    if (!res.writableEnded) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };

  /** Sends the cluster when it changed since the last send, until the client goes away. */
  function clusterEvents(res: ServerResponse, token: string, metadata: () => Metadata) {
    sseOpen(res);
    let last = '';
    let timer: NodeJS.Timeout | undefined;
    let closed = false;
    // One read at a time; changes that come during one make one more read after it.
    let reading = false;
    let again = false;
    let refreshMs = timing.measureRefreshMs;
    const read = async () => {
      if (reading) return void (again = true);
      reading = true;
      clearTimeout(timer);
      try {
        const body = JSON.stringify(await readCluster(api, metadata));
        if (body !== last) {
          last = body;
          if (!res.writableEnded) res.write(`event: cluster\ndata: ${body}\n\n`);
        }
      } catch (err) {
        last = '';
        sseSend(res, 'api-error', toConsoleError(err).body);
      }
      reading = false;
      if (closed) return;
      if (again) {
        again = false;
        return void read();
      }
      timer = setTimeout(() => void read(), refreshMs);
    };
    let unsubscribe = () => {};
    let retry: NodeJS.Timeout | undefined;
    const follow = () => {
      unsubscribe = feeds.subscribe(token, metadata, {
        changed: () => void read(),
        // Refused (the watch limits) or ended: re-read more often meanwhile, and try again later.
        lost: () => {
          refreshMs = timing.pollMs;
          void read();
          if (!closed) retry = setTimeout(follow, FEED_RETRY_MS);
        },
      });
      // Followed again: the change stream carries the news, the refresh only the reports' figures.
      refreshMs = timing.measureRefreshMs;
    };
    follow();
    res.on('close', () => {
      closed = true;
      clearTimeout(timer);
      clearTimeout(retry);
      unsubscribe();
    });
    void read();
  }

  /** Forwards WatchMigration: the migration after every change, then `end` when its stream ends. */
  function migrationEvents(res: ServerResponse, migrationId: string, metadata: () => Metadata) {
    sseOpen(res);
    const stream: ClientReadableStream<cluster.Migration> = client.watchMigration({ migrationId }, metadata());
    stream.on('data', (m: cluster.Migration) => sseSend(res, 'migration', m));
    stream.on('error', (err: { code?: number }) => {
      if (err.code !== Status.CANCELLED) sseSend(res, 'api-error', toConsoleError(err).body);
      res.end();
    });
    stream.on('end', () => { sseSend(res, 'end', {}); res.end(); });
    res.on('close', () => stream.cancel());
  }

  async function route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const token = requestToken(req, url);
    const metadata = () => metadataFor(token);
    const opts = () => ({ metadata: metadata() });
    const path = url.pathname;
    const get = req.method === 'GET';
    const post = req.method === 'POST';
    let m: RegExpExecArray | null;
    if (post) {
      // A cross-site page can post a form (text/plain, urlencoded) without a preflight, and with tokens off
      // it would act: actions take JSON only (a preflight we never answer), and only from our own origin.
      const refusal = crossSiteRefusal(req);
      if (refusal) return json(res, 403, { code: Status.PERMISSION_DENIED, codeName: 'PERMISSION_DENIED', message: refusal, reason: 'CROSS_SITE_REQUEST' });
    }
    if (get && path === '/api/cluster') return json(res, 200, await readCluster(api, metadata));
    if (get && path === '/api/events') return clusterEvents(res, token, metadata);
    if (get && (m = /^\/api\/migrations\/([^/]+)$/.exec(path))) return json(res, 200, await api.getMigration({ migrationId: decodeURIComponent(m[1]!) }, opts()));
    if (get && (m = /^\/api\/migrations\/([^/]+)\/events$/.exec(path))) return migrationEvents(res, decodeURIComponent(m[1]!), metadata);
    if (post && (m = /^\/api\/migrations\/([^/]+)\/cancel$/.exec(path))) return json(res, 200, await api.cancelMigration({ migrationId: decodeURIComponent(m[1]!) }, opts()));
    if (post && (m = /^\/api\/vms\/([^/]+)\/migrate$/.exec(path))) {
      const body = await readJson(req);
      const targetNodeId = typeof body.targetNodeId === 'string' ? body.targetNodeId : '';
      return json(res, 200, await api.migrateVm({ vmId: decodeURIComponent(m[1]!), targetNodeId, policy: policyFrom(body.policy) }, opts()));
    }
    if (post && (m = /^\/api\/nodes\/([^/]+)\/(cordon|uncordon|drain)$/.exec(path))) {
      const nodeId = decodeURIComponent(m[1]!);
      if (m[2] === 'cordon') return json(res, 200, await api.cordonNode({ nodeId }, opts()));
      if (m[2] === 'uncordon') return json(res, 200, await api.uncordonNode({ nodeId }, opts()));
      return json(res, 200, await api.drainNode({ nodeId }, opts()));
    }
    json(res, 404, { code: Status.NOT_FOUND, codeName: 'NOT_FOUND', message: `no such console call: ${req.method} ${path}`, reason: '' });
  }

  return {
    handle(req, res) {
      const url = new URL(req.url ?? '/', 'http://console');
      if (!url.pathname.startsWith('/api/')) return false;
      route(req, res, url).catch((err: unknown) => fail(res, err));
      return true;
    },
    close: () => {
      feeds.close();
      client.close();
    },
  };
}

interface Feed {
  stream: ClientReadableStream<cluster.Event> | undefined;
  listeners: Set<FeedListener>;
}

interface FeedListener {
  /** Something changed (WatchEvents sent an event). */
  changed(): void;
  /** The stream was refused or ended: this listener is no longer subscribed. */
  lost(): void;
}

/**
 * One WatchEvents stream per token, shared by every overview opened with it: every browser tab reaches
 * the API from loopback, where the watch limits (per client host) would otherwise run out with tabs.
 * A feed starts at the revision the cluster is at (not from 0, which would list every object first)
 * and closes when its last listener leaves.
 */
class ChangeFeeds {
  private readonly feeds = new Map<string, Feed>();

  constructor(
    private readonly client: cluster.ClusterServiceClient,
    private readonly api: Api,
  ) {}

  subscribe(token: string, metadata: () => Metadata, listener: FeedListener): () => void {
    let feed = this.feeds.get(token);
    if (!feed) {
      const created: Feed = { stream: undefined, listeners: new Set<FeedListener>() };
      feed = created;
      this.feeds.set(token, created);
      void this.open(token, created, metadata);
    }
    feed.listeners.add(listener);
    const joined = feed;
    return () => {
      joined.listeners.delete(listener);
      if (joined.listeners.size === 0) this.end(token, joined);
    };
  }

  close(): void {
    for (const [token, feed] of this.feeds) this.end(token, feed);
  }

  private async open(token: string, feed: Feed, metadata: () => Metadata): Promise<void> {
    const lose = () => {
      if (this.feeds.get(token) !== feed) return;
      this.feeds.delete(token);
      for (const l of [...feed.listeners]) l.lost();
      feed.listeners.clear();
    };
    let sinceRevision = 0;
    try {
      sinceRevision = Number((await this.api.listNodes({ pageSize: 1, pageToken: '' }, { metadata: metadata() })).revision);
    } catch {
      return lose();
    }
    if (this.feeds.get(token) !== feed) return;
    const stream = this.client.watchEvents({ sinceRevision, kinds: [] }, metadata());
    feed.stream = stream;
    stream.on('data', () => {
      for (const l of feed.listeners) l.changed();
    });
    stream.on('error', lose);
    stream.on('end', lose);
  }

  private end(token: string, feed: Feed): void {
    if (this.feeds.get(token) === feed) this.feeds.delete(token);
    feed.stream?.cancel();
  }
}
