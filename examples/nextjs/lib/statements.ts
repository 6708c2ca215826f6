import { pool } from '@/lib/db';

// Issued statements, read for the CSV route and the printable page. Every
// value comes back as the text PostgreSQL wrote (no type parser: numeric,
// date and timestamptz stay strings), so amounts keep every decimal and the
// CSV equals COPY's.

/** A statement number as billing.issue_statements writes it: YYYYMM-NNNNNN. */
export const STATEMENT_NUMBER = /^\d{6}-\d{6,}$/;

const asText = { getTypeParser: () => (value: string) => value };

export interface TextResult {
  columns: string[];
  rows: (string | null)[][];
}

export async function queryText(text: string, values: unknown[]): Promise<TextResult> {
  const r = await pool.query<(string | null)[]>({ text, values, rowMode: 'array', types: asText });
  return { columns: r.fields.map((f) => f.name), rows: r.rows };
}

/**
 * The statement's lines as the SQL export gives them:
 *   COPY (SELECT * FROM billing.export_statement_lines(<its month>) WHERE number = '<number>') TO STDOUT WITH CSV HEADER
 */
export const STATEMENT_LINES_SQL = `
SELECT e.* FROM billing.export_statement_lines((SELECT s.month FROM billing.statements AS s WHERE s.number = $1)) AS e
 WHERE e.number = $1`;

export const STATEMENT_SQL = `
SELECT e.* FROM billing.export_statements((SELECT s.month FROM billing.statements AS s WHERE s.number = $1)) AS e
 WHERE e.number = $1`;

// PostgreSQL's COPY ... WITH CSV: NULL is an empty field; a value is quoted
// ("" for a quote) when it is empty, contains the delimiter, a quote, CR or
// LF, or is \. ; rows end with LF.
function csvField(v: string | null): string {
  if (v === null) return '';
  if (v === '' || v === '\\.' || /[",\r\n]/.test(v)) return `"${v.replace(/"/g, '""')}"`;
  return v;
}

/** A result as COPY (...) TO STDOUT WITH CSV HEADER writes it. */
export function toCsv({ columns, rows }: TextResult): string {
  return [columns, ...rows].map((r) => `${r.map(csvField).join(',')}\n`).join('');
}
