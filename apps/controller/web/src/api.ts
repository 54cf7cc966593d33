/**
 * The console's calls to its backend (/api/*, console-api.ts). The token comes from `?token=T` in the
 * address (then kept in localStorage and taken out of the address), else from the login form; it is
 * sent as `Authorization: Bearer` and, for event streams (EventSource sends no headers), as `?token=`.
 */
import type { cluster } from '@vmm/proto';

export type Node = cluster.Node;
export type Vm = cluster.Vm;
export type Migration = cluster.Migration;
export interface ClusterView { nodes: Node[]; vms: Vm[]; migrations: Migration[] }

/** An API error as the backend returns it (the gRPC status and the stable reason). */
export class ApiError extends Error {
  constructor(readonly codeName: string, message: string, readonly reason: string) {
    super(message);
    this.name = 'ApiError';
  }
}

const TOKEN_KEY = 'vmm-console-token';

export function takeTokenFromAddress(): void {
  const url = new URL(location.href);
  const token = url.searchParams.get('token');
  if (token === null) return;
  localStorage.setItem(TOKEN_KEY, token);
  url.searchParams.delete('token');
  history.replaceState(null, '', url.toString());
}

export const getToken = (): string => localStorage.getItem(TOKEN_KEY) ?? '';
export const setToken = (token: string): void => (token ? localStorage.setItem(TOKEN_KEY, token) : localStorage.removeItem(TOKEN_KEY));

export async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const token = getToken();
  if (token) headers.authorization = `Bearer ${token}`;
  // Every POST is JSON, also without a body: the server refuses anything else (no cross-site form posts).
  if (method === 'POST') headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: method === 'POST' ? JSON.stringify(body ?? {}) : undefined });
  const data = (await res.json().catch(() => ({}))) as { codeName?: string; message?: string; reason?: string };
  if (!res.ok) throw new ApiError(data.codeName ?? `HTTP_${res.status}`, data.message ?? res.statusText, data.reason ?? '');
  return data as T;
}

/** An event stream of the backend; `on` gets each event's parsed data. Returns a function that closes it. */
export function events(path: string, on: Record<string, (data: unknown) => void>, onOpen?: () => void, onDown?: () => void): () => void {
  const token = getToken();
  const source = new EventSource(token ? `${path}?token=${encodeURIComponent(token)}` : path);
  for (const [name, handler] of Object.entries(on)) {
    source.addEventListener(name, (e) => handler(JSON.parse((e as MessageEvent<string>).data)));
  }
  source.onopen = () => onOpen?.();
  source.onerror = () => onDown?.();
  return () => source.close();
}
