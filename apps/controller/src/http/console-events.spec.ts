// /api/events of the web console against a stand-in ClusterService over real gRPC: the overview is
// read again when the controller's change stream (WatchEvents) says something changed, and by polling
// where the API refuses the watch.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, ServerCredentials, status, type ServerWritableStream } from '@grpc/grpc-js';
import { cluster } from '@vmm/proto';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../../test/support/wait-for.js';
import { createConsoleApi, type ConsoleApi } from './console-api.js';

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** ClusterService with the lists the overview reads and a WatchEvents the test drives (or refuses). */
async function standIn(refuseWatch: boolean) {
  const state = { nodes: [cluster.Node.fromPartial({ nodeId: 'node-a' })], watches: [] as ServerWritableStream<cluster.WatchEventsRequest, cluster.Event>[] };
  const server = new Server();
  const unimplemented = (_call: unknown, cb: (e: unknown) => void) => cb({ code: status.UNIMPLEMENTED, details: 'not here' });
  const impl = Object.fromEntries(Object.keys(cluster.ClusterServiceService).map((name) => [name, unimplemented])) as unknown as cluster.ClusterServiceServer;
  Object.assign(impl, {
    listNodes: (_c: unknown, cb: (e: null, r: cluster.ListNodesResponse) => void) => cb(null, cluster.ListNodesResponse.fromPartial({ nodes: state.nodes })),
    listVms: (_c: unknown, cb: (e: null, r: cluster.ListVmsResponse) => void) => cb(null, cluster.ListVmsResponse.fromPartial({})),
    listMigrations: (_c: unknown, cb: (e: null, r: cluster.ListMigrationsResponse) => void) => cb(null, cluster.ListMigrationsResponse.fromPartial({})),
    watchEvents: (call: ServerWritableStream<cluster.WatchEventsRequest, cluster.Event>) => {
      if (refuseWatch) return void call.emit('error', { code: status.RESOURCE_EXHAUSTED, details: 'too many watches' });
      state.watches.push(call);
    },
  });
  server.addService(cluster.ClusterServiceService, impl);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  cleanups.push(() => void server.forceShutdown());
  return { state, address: `127.0.0.1:${port}` };
}

/** The console's HTTP side; `open()` opens one /api/events stream (a browser tab), its `cluster` events parsed. */
async function serve(console: ConsoleApi) {
  const httpServer = http.createServer((req, res) => void console.handle(req, res));
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  const requests: http.ClientRequest[] = [];
  cleanups.push(() => {
    for (const req of requests) req.destroy();
    console.close();
    return new Promise<void>((resolve) => httpServer.close(() => resolve()));
  });
  const open = () => {
    const events: { nodes: { nodeId: string }[] }[] = [];
    const req = http.get(`http://127.0.0.1:${(httpServer.address() as AddressInfo).port}/api/events`);
    requests.push(req);
    req.on('response', (res) => {
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = /^event: cluster\ndata: (.*)$/m.exec(block);
          if (data) events.push(JSON.parse(data[1]!) as { nodes: { nodeId: string }[] });
        }
      });
    });
    req.on('error', () => undefined);
    return { events, close: () => req.destroy() };
  };
  return { open };
}

const nodeIds = (e: { nodes: { nodeId: string }[] } | undefined) => e?.nodes.map((n) => n.nodeId);

describe('the console overview stream', () => {
  it('reads the cluster again on each change WatchEvents announces, one watch shared by the tabs, cancelled when they close', async () => {
    const { state, address } = await standIn(false);
    // A refresh far beyond the test: only the change stream can bring the second node.
    const web = await serve(createConsoleApi(address, undefined, { pollMs: 3_600_000, measureRefreshMs: 3_600_000 }));
    const [tab1, tab2] = [web.open(), web.open()];
    await waitFor(() => tab1.events.length === 1 && tab2.events.length === 1 && state.watches.length === 1, 5_000, 'the first overviews and the watch');
    expect(nodeIds(tab1.events[0])).toEqual(['node-a']);
    state.nodes.push(cluster.Node.fromPartial({ nodeId: 'node-b' }));
    state.watches[0]!.write(cluster.Event.fromPartial({ type: cluster.EventType.EVENT_TYPE_ADDED, revision: 7, node: { nodeId: 'node-b' } }));
    await waitFor(() => tab1.events.length === 2 && tab2.events.length === 2, 5_000, 'both overviews after the change');
    expect(nodeIds(tab2.events[1])).toEqual(['node-a', 'node-b']);
    expect(state.watches).toHaveLength(1);
    tab1.close();
    tab2.close();
    await waitFor(() => state.watches[0]!.cancelled, 5_000, 'the watch cancelled with the last tab');
  });

  it('polls where the API refuses the watch (RESOURCE_EXHAUSTED)', async () => {
    const { state, address } = await standIn(true);
    const web = await serve(createConsoleApi(address, undefined, { pollMs: 50, measureRefreshMs: 3_600_000 }));
    const { events } = web.open();
    await waitFor(() => events.length >= 1, 5_000, 'the first overview');
    state.nodes.push(cluster.Node.fromPartial({ nodeId: 'node-b' }));
    await waitFor(() => nodeIds(events.at(-1))?.length === 2, 5_000, 'the overview, polled');
  });
});
