import { describe, expect, it } from 'vitest';
import { parseClusterArgs, UsageError } from './args.js';

describe('parseClusterArgs', () => {
  it('has the defaults of docs/api.md', () => {
    expect(parseClusterArgs([])).toMatchObject({ agents: 3, port: 50051, token: undefined, nodeMemoryMib: 8192, nodeVcpus: 8 });
  });

  it('reads every documented flag', () => {
    expect(
      parseClusterArgs(['--agents', '2', '--port', '50555', '--token', 't0k', '--node-memory-mib', '4096', '--node-vcpus', '4']),
    ).toMatchObject({ agents: 2, port: 50555, token: 't0k', nodeMemoryMib: 4096, nodeVcpus: 4 });
    expect(parseClusterArgs(['--agents=5'])).toMatchObject({ agents: 5 });
  });

  it.each([
    [['--agents', '0'], /--agents/],
    [['--agents', 'two'], /--agents/],
    [['--port', '70000'], /--port/],
    [['--node-memory-mib', '-1'], /--node-memory-mib/],
    [['--token', ''], /--token/],
    [['--bogus'], /bogus/],
    [['extra'], /extra|positional/i],
  ])('rejects %j', (argv, pattern) => {
    expect(() => parseClusterArgs(argv)).toThrow(UsageError);
    expect(() => parseClusterArgs(argv)).toThrow(pattern);
  });
});
