/** Untrusted text (a peer's HELLO or ERROR) cut to a size that fits any message, log line or frame. */

/** At most `max` characters of `text`, with a note of how long it was. */
export function boundedText(text: string, max = 64): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}
