import net from 'node:net';
import { expect, it } from 'vitest';
import { freePort, isPortFree } from './ports.js';

it('freePort gives a bindable port; isPortFree sees a listener', async () => {
  const port = await freePort();
  expect(await isPortFree(port)).toBe(true);
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  try {
    expect(await isPortFree(port)).toBe(false);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
  expect(await isPortFree(port)).toBe(true);
});
