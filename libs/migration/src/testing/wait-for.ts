/** For tests: polls `cond` every `pollMs` until it holds; rejects after `timeoutMs`. */
export async function waitFor(cond: () => boolean, timeoutMs = 5000, pollMs = 5): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
