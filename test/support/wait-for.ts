/**
 * The one wait helper of every test in the repository (unit specs import it too; vitest's `vi.waitFor`
 * needs a throwing callback and `expect.poll` returns no value, and six local copies with four
 * signatures had grown before).
 * Polls `condition` until it returns a truthy value (which is returned) or `timeoutMs` passes; then
 * throws with `what` and the last value or error seen. Tests wait on conditions, never on sleeps.
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  timeoutMs: number,
  what = 'condition',
  intervalMs = 50,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${detail})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
