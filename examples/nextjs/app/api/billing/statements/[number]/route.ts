import { queryText, STATEMENT_LINES_SQL, STATEMENT_NUMBER, STATEMENT_SQL, toCsv } from '@/lib/statements';

export const dynamic = 'force-dynamic';

// GET /api/billing/statements/202611-000001: the statement's lines as CSV,
// exactly what the SQL export writes:
//   COPY (SELECT * FROM billing.export_statement_lines('2026-11-01') WHERE number = '202611-000001')
//     TO STDOUT WITH CSV HEADER
// (amounts with every decimal, as text). 404 for a statement that does not exist.
export async function GET(_req: Request, ctx: { params: Promise<{ number: string }> }) {
  const { number } = await ctx.params;
  try {
    if (!STATEMENT_NUMBER.test(number) || (await queryText(STATEMENT_SQL, [number])).rows.length === 0) {
      return Response.json({ error: `no statement ${number}` }, { status: 404, headers: { 'cache-control': 'no-store' } });
    }
    const csv = toCsv(await queryText(STATEMENT_LINES_SQL, [number]));
    return new Response(csv, {
      headers: {
        'content-type': 'text/csv; charset=utf-8',
        'content-disposition': `attachment; filename="statement-${number}.csv"`,
        'cache-control': 'no-store',
      },
    });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    console.error(`[billing] /api/billing/statements/${number} failed: ${message}`);
    return Response.json({ error: message }, { status: 500, headers: { 'cache-control': 'no-store' } });
  }
}
