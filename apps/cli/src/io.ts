/** Where a command writes, so that tests can capture output and the binary writes to the terminal. */
export interface Io {
  /** Writes text to stdout as is (callers add newlines). */
  out(text: string): void;
  /** Writes text to stderr as is. */
  err(text: string): void;
  /** Stream for live progress bars; undefined when stderr is not a terminal. */
  progressStream: NodeJS.WriteStream | undefined;
  /** Whether to colour output (a terminal, no NO_COLOR, not --json). */
  colour: boolean;
  env: NodeJS.ProcessEnv;
  /** Registers a handler for Ctrl-C; returns a function that removes it. */
  onInterrupt(handler: () => void): () => void;
}

export function processIo(): Io {
  const colourWanted =
    process.env.FORCE_COLOR !== undefined && process.env.FORCE_COLOR !== '0'
      ? true
      : process.stdout.isTTY === true && process.env.NO_COLOR === undefined && process.env.TERM !== 'dumb';
  return {
    out: (text) => void process.stdout.write(text),
    err: (text) => void process.stderr.write(text),
    progressStream: process.stderr.isTTY ? process.stderr : undefined,
    colour: colourWanted,
    env: process.env,
    onInterrupt(handler) {
      process.on('SIGINT', handler);
      return () => void process.off('SIGINT', handler);
    },
  };
}
