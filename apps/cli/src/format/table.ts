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

/** A boxed two-column table, for the summary of a finished migration. */
export function renderBox(title: string, fields: readonly (readonly [string, string])[]): string {
  const table = new Table({
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
    style: { head: [], border: [], 'padding-left': 1, 'padding-right': 1 },
  });
  table.push([{ colSpan: 2, content: paint.bold(title) }]);
  for (const [k, v] of fields) table.push([paint.bold(k), v]);
  return `${table.toString()}\n`;
}
