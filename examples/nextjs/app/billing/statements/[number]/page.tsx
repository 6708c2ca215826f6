import { notFound } from 'next/navigation';
import { usd } from '@/lib/exact';
import { queryText, STATEMENT_LINES_SQL, STATEMENT_NUMBER, STATEMENT_SQL, type TextResult } from '@/lib/statements';
import { PrintButton } from '@/components/PrintButton';

export const dynamic = 'force-dynamic';

type Row = Record<string, string | null>;
const objects = ({ columns, rows }: TextResult): Row[] =>
  rows.map((r) => Object.fromEntries(columns.map((c, i) => [c, r[i]])));

const monthName = (month: string) =>
  new Date(`${month.slice(0, 7)}-01T00:00:00Z`).toLocaleDateString('en-US', { month: 'long', year: 'numeric', timeZone: 'UTC' });

/** The printable statement (the browser saves it as PDF): billing.statements and its lines, as issued. */
export default async function StatementPage({ params }: { params: Promise<{ number: string }> }) {
  const { number } = await params;
  if (!STATEMENT_NUMBER.test(number)) notFound();
  const [statement] = objects(await queryText(STATEMENT_SQL, [number]));
  if (!statement) notFound();
  const lines = objects(await queryText(STATEMENT_LINES_SQL, [number]));
  const usage = lines.filter((l) => l.kind === 'usage');
  const adjustments = lines.filter((l) => l.kind !== 'usage');

  return (
    <main className="mx-auto max-w-5xl space-y-6 p-6 print:p-0" data-testid="statement-page">
      <header className="flex items-start justify-between">
        <div>
          <h1 className="text-2xl font-bold">Statement {statement.number}</h1>
          <dl className="mt-2 grid grid-cols-[auto_1fr] gap-x-4 text-sm">
            <dt className="text-gray-500">Customer</dt>
            <dd data-testid="statement-customer">{statement.customer}</dd>
            <dt className="text-gray-500">Month</dt>
            <dd data-testid="statement-month">{monthName(statement.month!)}</dd>
            <dt className="text-gray-500">Issued</dt>
            <dd>{statement.issued_at}</dd>
          </dl>
        </div>
        <div className="no-print flex gap-3">
          <a href="/billing" className="px-2 py-2 text-sm text-indigo-600 underline">Back to billing</a>
          <a href={`/api/billing/statements/${number}`} download={`statement-${number}.csv`}
             className="px-2 py-2 text-sm text-indigo-600 underline">CSV</a>
          <PrintButton />
        </div>
      </header>

      <section aria-labelledby="usage">
        <h2 id="usage" className="mb-2 text-lg font-semibold">Usage</h2>
        <LineTable lines={usage} adjustments={false} />
      </section>

      {adjustments.length > 0 && (
        <section aria-labelledby="adjustments">
          <h2 id="adjustments" className="mb-2 text-lg font-semibold">Adjustments of earlier months</h2>
          <LineTable lines={adjustments} adjustments />
        </section>
      )}

      <table className="ml-auto text-sm" data-testid="statement-totals">
        <tbody>
          <tr><td className="pr-6 text-gray-500">Usage</td><td className="text-right tabular-nums" data-testid="statement-usage-total">{usd(statement.usage_total)}</td></tr>
          <tr><td className="pr-6 text-gray-500">Adjustments</td><td className="text-right tabular-nums" data-testid="statement-adjustments-total">{usd(statement.adjustments_total)}</td></tr>
          <tr className="border-t font-semibold"><td className="pr-6">Total (USD)</td><td className="text-right tabular-nums" data-testid="statement-total">{usd(statement.total)}</td></tr>
        </tbody>
      </table>
      <p className="text-xs text-gray-500">
        Amounts are rounded to the cent; the total is the exact sum ({statement.total} USD), rounded. Unit prices are
        USD per token (OpenAI) or per unit of the service (AWS), from the price row named.
      </p>
    </main>
  );
}

function LineTable({ lines, adjustments }: { lines: Row[]; adjustments: boolean }) {
  if (lines.length === 0) return <div className="text-sm text-gray-500">No usage this month.</div>;
  return (
    <table className="w-full text-sm" data-testid={adjustments ? 'adjustment-lines' : 'usage-lines'}>
      <thead>
        <tr className="border-b text-left text-gray-500">
          <th className="py-1 pr-3 font-medium">#</th>
          {adjustments && <th className="py-1 pr-3 font-medium">Adjusts</th>}
          <th className="py-1 pr-3 font-medium">Item</th>
          <th className="py-1 pr-3 font-medium">Description</th>
          <th className="py-1 pr-3 text-right font-medium">Quantity</th>
          <th className="py-1 pr-3 text-right font-medium">Unit price</th>
          <th className="py-1 pr-3 font-medium">Price row</th>
          <th className="py-1 text-right font-medium">Amount</th>
        </tr>
      </thead>
      <tbody>
        {lines.map((l) => (
          <tr key={l.line} className="border-b last:border-0" data-testid="statement-line" data-line={l.line}>
            <td className="py-1 pr-3 tabular-nums">{l.line}</td>
            {adjustments && (
              <td className="py-1 pr-3">
                {l.kind} · {l.month!.slice(0, 7)}{l.adjusts ? ` · ${l.adjusts}` : ''}
              </td>
            )}
            <td className="py-1 pr-3">{l.source === 'openai' ? 'OpenAI' : 'AWS'} {l.item}</td>
            <td className="py-1 pr-3">{l.description}</td>
            <td className="py-1 pr-3 text-right tabular-nums" data-testid="line-quantity">{l.quantity}</td>
            <td className="py-1 pr-3 text-right tabular-nums" data-testid="line-unit-price">{l.unit_price ?? 'unpriced'}</td>
            <td className="py-1 pr-3 text-xs" data-testid="line-price">
              {l.price_name ? `${l.price_name} from ${l.price_effective_from}` : '—'}
            </td>
            <td className="py-1 text-right tabular-nums" data-testid="line-amount">{usd(l.amount)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
