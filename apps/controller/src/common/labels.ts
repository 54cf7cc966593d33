/**
 * Label maps: VM labels, node labels (LabelNode) and node selectors (CreateVm.node_selector) follow one
 * rule, so that a selector can name any label a node may carry. Pure; errors name the proto field.
 */
import { InvalidArgumentError } from '../errors.js';

export const MAX_LABELS = 64;
/** Longest key or value, in characters (a DNS name's length, as Kubernetes label prefixes). */
export const MAX_LABEL_LENGTH = 253;

/** The checked copy of a label map (`field`: `labels`, `node_selector`…): at most MAX_LABELS, non-empty keys, bounded lengths. */
export function validateLabels(field: string, labels: Record<string, string>): Record<string, string> {
  const entries = Object.entries(labels);
  if (entries.length > MAX_LABELS) throw new InvalidArgumentError(field, `at most ${MAX_LABELS} labels`);
  for (const [key, value] of entries) validateLabel(field, key, value);
  return Object.fromEntries(entries.map(([k, v]) => [k, String(v)]));
}

/** One key (and value): what validateLabels checks of each entry. */
export function validateLabel(field: string, key: string, value = ''): void {
  if (key === '' || key.length > MAX_LABEL_LENGTH) throw new InvalidArgumentError(field, `bad key ${JSON.stringify(key)}`);
  if (String(value).length > MAX_LABEL_LENGTH) throw new InvalidArgumentError(field, `value of ${JSON.stringify(key)} too long`);
}

/** The labels carry every key of `selector` with the same value (an empty selector matches anything). */
export function matchesSelector(labels: Readonly<Record<string, string>>, selector: Readonly<Record<string, string>> | undefined): boolean {
  if (!selector) return true;
  for (const [key, value] of Object.entries(selector)) if (!Object.hasOwn(labels, key) || labels[key] !== value) return false;
  return true;
}

/** "disk=ssd,zone=a": a selector for messages, keys in order. */
export function describeSelector(selector: Readonly<Record<string, string>>): string {
  return Object.keys(selector)
    .sort()
    .map((key) => `${key}=${selector[key]}`)
    .join(',');
}

/**
 * LabelNode's result: `current` with the `remove` keys dropped and `set` applied, checked as a whole
 * (`labels` for what is set and for the total, `remove` for its keys; a key both set and removed is
 * refused rather than guessed at).
 */
export function applyLabelChange(
  current: Readonly<Record<string, string>>,
  set: Record<string, string>,
  remove: readonly string[],
): Record<string, string> {
  const clean = validateLabels('labels', set);
  for (const key of remove) {
    validateLabel('remove', key);
    if (Object.hasOwn(clean, key)) throw new InvalidArgumentError('remove', `${JSON.stringify(key)} is also set in labels`);
  }
  const next: Record<string, string> = { ...current };
  for (const key of remove) delete next[key];
  Object.assign(next, clean);
  if (Object.keys(next).length > MAX_LABELS) throw new InvalidArgumentError('labels', `a node carries at most ${MAX_LABELS} labels`);
  return next;
}
