import Table from 'cli-table3';
import { paint } from './colours.js';

const NO_BORDER = {
  top: '', 'top-mid': '', 'top-left': '', 'top-right': '',
  bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
  left: '', 'left-mid': '', mid: '', 'mid-mid': '',
  right: '', 'right-mid': '', middle: '  ',
};

/** A borderless, kubectl-style table with a bold header row; trailing spaces trimmed. */
export function renderTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const table = new Table({
    head: head.map((h) => paint.bold(h)),
    chars: NO_BORDER,
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 },
  });
  for (const row of rows) table.push([...row]);
  return `${table
    .toString()
    .split('\n')
    .map((line) => line.trimEnd())
    .join('\n')}\n`;
}

/** A two-column "key  value" list for the details of one object. */
export function renderFields(fields: readonly (readonly [string, string])[], indent = ''): string {
  const width = Math.max(0, ...fields.map(([k]) => k.length));
  return fields.map(([k, v]) => `${indent}${paint.bold(k.padEnd(width))}  ${v}\n`).join('');
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** Width on screen: ANSI colour codes take none (the symbols used here are all one column wide). */
export function visibleWidth(text: string): number {
  return [...text.replace(ANSI, '')].length;
}

/** A box with the title in its top border and "key  value" lines: the summary of a migration. */
export function renderBox(title: string, fields: readonly (readonly [string, string])[]): string {
  const keyWidth = Math.max(...fields.map(([k]) => k.length));
  const lines = fields.map(([k, v]) => `${paint.bold(k.padEnd(keyWidth))}  ${v}`);
  const inner = Math.max(visibleWidth(title) + 3, ...lines.map(visibleWidth));
  const top = `┌─ ${paint.bold(title)} ${'─'.repeat(inner - visibleWidth(title) - 1)}┐`;
  const body = lines.map((line) => `│ ${line}${' '.repeat(inner - visibleWidth(line))} │`);
  const bottom = `└${'─'.repeat(inner + 2)}┘`;
  return `${[top, ...body, bottom].join('\n')}\n`;
}
