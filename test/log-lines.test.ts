// Both apps log JSON lines through one adapter (nestjs-pino over each app's pino logger): Nest's own
// messages and the apps' messages, in the controller and in an agent, carry the same field names.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';
import { vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';

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

  it('one access line per RPC, with the same fields in the controller and in an agent', async () => {
    const api = c.api();
    try {
      const vm = await api.createVm(vmRequest({ name: 'log-lines-vm' }));
      await api.deleteVm({ vmId: vm.vmId });
    } finally {
      api.close();
    }
    const access = (lines: Line[], method: string) => lines.find((l) => l.access === true && l.method === method);
    const fromController = await waitFor(() => access(jsonLines(c.controller.output()), '/cluster.v1.ClusterService/CreateVm'), 10_000, "the controller's access line");
    const fromAgent = await waitFor(() => access(jsonLines(c.agents[0]!.process.output()), '/agent.v1.AgentService/CreateVm'), 10_000, "the agent's access line");
    expect(fromController).toMatchObject({ service: 'controller', msg: 'rpc', status: 'OK' });
    expect(fromAgent).toMatchObject({ service: 'node-agent', nodeId: 'node-1', msg: 'rpc', status: 'OK' });
    for (const line of [fromController, fromAgent]) {
      expect(line.latencyMs).toBeTypeOf('number');
      expect(line.peer).toMatch(/127\.0\.0\.1:\d+$/);
    }
    const fields = (l: Line) => Object.keys(l).filter((k) => k !== 'nodeId' && k !== 'requestId').sort();
    expect(fields(fromAgent)).toEqual(fields(fromController));
  });
});

describe('LOG_FORMAT=pretty', () => {
  let p: TestCluster | undefined;
  afterAll(async () => {
    await stopTestCluster(p, undefined);
  });

  it('writes lines for people instead of JSON, in both apps', async () => {
    p = await startTestCluster({ agents: 1, logLevel: 'info', extraEnv: { LOG_FORMAT: 'pretty' } });
    for (const output of [p.controller.output(), p.agents[0]!.process.output()]) {
      const lines = output.split('\n').filter((l) => l.trim() !== '');
      const listening = lines.find((l) => /INFO.*listening/.test(l));
      expect(listening, output).toBeDefined();
      expect(() => JSON.parse(listening!)).toThrow();
    }
  });
});
