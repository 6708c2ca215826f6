import { pool } from '@/lib/db';
import { BILLING_QUERY } from '@/lib/billing-query';

// Never prerendered or cached: every GET asks the database.
export const dynamic = 'force-dynamic';

// GET /api/billing: one query (lib/billing-query.ts). The jsonb text is the
// response body as PostgreSQL wrote it, so money keeps all its digits.
export async function GET() {
  try {
    const { rows } = await pool.query<{ payload: string }>(BILLING_QUERY);
    return new Response(rows[0].payload, {
      headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
    });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    console.error(`[billing] /api/billing failed: ${message}`);
    return Response.json({ error: message }, { status: 500, headers: { 'cache-control': 'no-store' } });
  }
}
