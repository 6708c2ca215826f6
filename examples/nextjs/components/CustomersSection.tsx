import { usd } from '@/lib/exact';
import type { BillingPayload } from '@/lib/types';

/** Per customer: the period's OpenAI, AWS and total cost, and its statements (printable page and CSV). */
export function CustomersSection({ data }: { data: BillingPayload }) {
  const customers = data.customers ?? [];
  return (
    <section aria-labelledby="customers" className="rounded-lg border bg-white p-5 shadow-sm">
      <h2 id="customers" className="mb-3 text-lg font-semibold">
        Customers <span className="text-sm font-normal text-gray-500">(this month, and their statements)</span>
      </h2>
      {customers.length === 0 ? (
        <div className="text-sm text-gray-500">No customer: billing does not know the customers of this app yet.</div>
      ) : (
        <div className="overflow-x-auto">
          <table className="w-full text-sm" data-testid="customers">
            <thead>
              <tr className="border-b text-left text-gray-500">
                <th className="py-2 pr-4 font-medium">Customer</th>
                <th className="py-2 pr-4 text-right font-medium">OpenAI</th>
                <th className="py-2 pr-4 text-right font-medium">AWS</th>
                <th className="py-2 pr-4 text-right font-medium">Total</th>
                <th className="py-2 font-medium">Statements</th>
              </tr>
            </thead>
            <tbody>
              {customers.map((c) => (
                <tr key={c.customer} className="border-b align-top last:border-0" data-testid="customer-row"
                    data-customer={c.customer}>
                  <td className="py-2 pr-4 font-medium">{c.customer}</td>
                  <td className="py-2 pr-4 text-right tabular-nums" data-testid="customer-openai">{usd(c.openai)}</td>
                  <td className="py-2 pr-4 text-right tabular-nums" data-testid="customer-aws">{usd(c.aws)}</td>
                  <td className="py-2 pr-4 text-right tabular-nums" data-testid="customer-total">{usd(c.cost)}</td>
                  <td className="py-2">
                    {c.statements.length === 0 ? (
                      <span className="text-gray-400">none yet</span>
                    ) : (
                      <ul className="space-y-1">
                        {c.statements.map((s) => (
                          <li key={s.number} data-testid="statement" data-number={s.number}>
                            <span className="tabular-nums">{s.month.slice(0, 7)}</span>{' '}
                            <a className="text-indigo-600 underline" href={`/billing/statements/${s.number}`}
                               data-testid="statement-page">
                              {s.number}
                            </a>{' '}
                            <span className="tabular-nums" data-testid="statement-total">{usd(s.total)}</span>{' '}
                            <a className="no-print text-indigo-600 underline" href={`/api/billing/statements/${s.number}`}
                               download={`statement-${s.number}.csv`} data-testid="statement-csv">
                              CSV
                            </a>
                          </li>
                        ))}
                      </ul>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
