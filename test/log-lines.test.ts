// Both apps log JSON lines through one adapter (nestjs-pino over each app's pino logger): Nest's own
// messages and the apps' messages, in the controller and in an agent, carry the same field names.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';

let c: TestCluster;

beforeAll(async () => {
  // At info, so that Nest's start-up lines (info) are in the processes' output.
  c = await startTestCluster({ agents: 1, logLevel: 'info' });
});

afterAll(async () => {
  await stopTestCluster(c, undefined);
});

type Line = Record<string, unknown>;

/** The JSON lines of a process's output (anything else there would be a bug of its own). */
function jsonLines(output: string): Line[] {
  return output
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      try {
        return JSON.parse(l) as Line;
      } catch {
        throw new Error(`not a JSON line: ${l}`);
      }
    });
}

describe('log lines', () => {
  it("Nest's lines and the app's own lines have the same fields in the controller and in an agent", () => {
    const controller = jsonLines(c.controller.output());
    const agent = jsonLines(c.agents[0]!.process.output());
    const nest = (lines: Line[]) => lines.find((l) => l.context === 'NestMicroservice');
    const listening = (lines: Line[]) => lines.find((l) => l.msg === 'listening');
    // The agent's lines name its node besides; everything else is the same.
    const fields = (l: Line | undefined) => Object.keys(l ?? {}).filter((k) => k !== 'nodeId').sort();

    expect(nest(controller), c.controller.output()).toMatchObject({ service: 'controller', level: 30, msg: 'Nest microservice successfully started' });
    expect(nest(agent), c.agents[0]!.process.output()).toMatchObject({ service: 'node-agent', nodeId: 'node-1', msg: 'Nest microservice successfully started' });
    expect(fields(nest(agent))).toEqual(fields(nest(controller)));
    expect(fields(nest(controller))).toEqual(['context', 'level', 'msg', 'service', 'time']);
    expect(listening(controller)).toMatchObject({ service: 'controller', address: c.controllerAddress });
    expect(listening(agent)).toMatchObject({ service: 'node-agent', nodeId: 'node-1' });
  });
});
