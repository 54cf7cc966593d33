/**
 * A process that only receives migrations, for tests that must see a receiver survive what arrives on
 * its data connections (test/data-plane-fuzz.test.ts). Commands are JSON lines on stdin, events JSON
 * lines on stdout:
 *   {"cmd":"listen","migrationId","token","memoryMib"} → {"event":"listening","migrationId","port"},
 *     later {"event":"verified","migrationId","digest"} or {"event":"failed","migrationId","code"}
 *   {"cmd":"stats"} → {"event":"stats","framesInUse","pendingConnections"}
 * An uncaught exception ends the process (Node's default): the test sees it exit.
 */
import { createInterface } from 'node:readline';
import { FramePool, initHashing } from '@vmm/emulator';
import { MigrationReceiver } from '../receiver.js';
import { listenForIncoming, processPendingBudget } from '../transport.js';
import { makeIncomingVm } from './vm-fixture.js';

const pool = new FramePool();
const say = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`);

async function receive(migrationId: string, token: string, memoryMib: number): Promise<void> {
  const vm = makeIncomingVm(pool, `vm-${migrationId}`, memoryMib);
  const listener = await listenForIncoming({ migrationId, token, helloTimeoutMs: 1000, acceptTimeoutMs: 120_000, maxPendingConnections: 64 });
  say({ event: 'listening', migrationId, port: listener.port });
  try {
    const { connection, hello } = await listener.accept;
    const result = await new MigrationReceiver({ vm, migrationId, token, timeoutMs: 30_000, idleTimeoutMs: 5000 }).run(connection, hello);
    result.commit();
    say({ event: 'verified', migrationId, digest: result.targetDigest });
  } catch (err) {
    say({ event: 'failed', migrationId, code: (err as { code?: unknown }).code ?? 'UNCODED' });
  } finally {
    listener.close();
    if (vm.state !== 'stopped') vm.stop();
  }
}

await initHashing();
createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line) as { cmd: string; migrationId: string; token: string; memoryMib: number };
  if (cmd.cmd === 'listen') void receive(cmd.migrationId, cmd.token, cmd.memoryMib);
  if (cmd.cmd === 'stats') say({ event: 'stats', framesInUse: pool.framesInUse, pendingConnections: processPendingBudget.inUse });
});
say({ event: 'ready', pid: process.pid });
