import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, logAccess, parseLogFormat } from './index.js';

function sink(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({ write(chunk, _enc, done) { chunks.push(String(chunk)); done(); } });
  return { stream, text: () => chunks.join('') };
}

describe('logger adapter', () => {
  it.each([
    [undefined, 'json'], ['', 'json'], ['json', 'json'], ['pretty', 'pretty'], [' PRETTY ', 'pretty'], ['yaml', undefined],
  ])('LOG_FORMAT=%j is %s', (value, expected) => expect(parseLogFormat(value)).toBe(expected));

  it('writes JSON lines with the service and the base fields, and one access line per RPC', () => {
    const out = sink();
    const log = createLogger({ service: 'node-agent', level: 'info', base: { nodeId: 'n1' }, destination: out.stream });
    logAccess(log, { method: '/agent.v1.AgentService/CreateVm', status: 'OK', latencyMs: 1.234, peer: 'ipv4:127.0.0.1:5', requestId: 'r-1' });
    const line = JSON.parse(out.text().trim()) as Record<string, unknown>;
    expect(line).toMatchObject({
      level: 30, service: 'node-agent', nodeId: 'n1', msg: 'rpc', access: true,
      method: '/agent.v1.AgentService/CreateVm', status: 'OK', latencyMs: 1.2, peer: 'ipv4:127.0.0.1:5', requestId: 'r-1',
    });
  });

  it('writes lines for people with LOG_FORMAT=pretty', () => {
    const out = sink();
    const log = createLogger({ service: 'controller', level: 'info', format: 'pretty', destination: out.stream });
    log.info({ address: '127.0.0.1:1' }, 'listening');
    const text = out.text();
    expect(text).toContain('INFO');
    expect(text).toContain('listening');
    expect(text).toContain('address: "127.0.0.1:1"');
    expect(() => JSON.parse(text)).toThrow();
  });
});
