import { roundDec, usd } from '@/lib/exact';
import type { BillingPayload } from '@/lib/types';

/** The latest budget alerts (billing.alerts), newest first. */
export function Alerts({ data }: { data: BillingPayload }) {
  if (data.alerts.length === 0) {
    return (
      <section className="rounded-lg border bg-white p-4 text-sm text-gray-500 shadow-sm" data-testid="alerts-none">
        No budget alert.
      </section>
    );
  }
  return (
    <section role="alert" className="rounded-lg border border-red-200 bg-red-50 p-4 shadow-sm" data-testid="alerts">
      <h2 className="mb-2 font-semibold text-red-900">Budget alerts</h2>
      <ul className="space-y-1 text-sm text-red-900">
        {data.alerts.map((a) => (
          <li key={a.id} data-testid="alert" data-alert-id={a.id}>
            <span className="font-medium">{a.budget}</span> reached{' '}
            <span data-testid="alert-threshold">{roundDec(a.threshold, 0)}%</span> of{' '}
            <span data-testid="alert-amount">{usd(a.amount)}</span> for {a.period.slice(0, 7)}: spent{' '}
            <span data-testid="alert-spent">{usd(a.spent)}</span>{' '}
            <span className="text-red-700">({new Date(a.fired_at).toISOString().slice(0, 16).replace('T', ' ')} UTC)</span>
          </li>
        ))}
      </ul>
    </section>
  );
}
