import { percent, usd } from '@/lib/exact';
import type { BillingPayload } from '@/lib/types';

const stateStyle: Record<string, string> = {
  ok: 'bg-emerald-100 text-emerald-800',
  warning: 'bg-amber-100 text-amber-800',
  exceeded: 'bg-red-100 text-red-800',
};

/** The month's forecast (billing.forecast()) and each budget's state. */
export function ForecastBudgets({ data }: { data: BillingPayload }) {
  const f = data.forecast;
  return (
    <section aria-labelledby="forecast" className="grid grid-cols-1 gap-4 md:grid-cols-2">
      <div className="rounded-lg border bg-white p-5 shadow-sm" data-testid="forecast">
        <h2 id="forecast" className="mb-2 text-lg font-semibold">Forecast for the month</h2>
        {f ? (
          <>
            <div className="text-3xl font-semibold tabular-nums" data-testid="forecast-total">
              {usd(f.total.forecast)}
            </div>
            <div className="mt-1 text-sm text-gray-600">
              OpenAI <span data-testid="forecast-openai">{usd(f.openai.forecast)}</span> · AWS{' '}
              <span data-testid="forecast-aws">{usd(f.aws.forecast)}</span>
            </div>
            <div className="mt-1 text-xs text-gray-500">{f.total.method}</div>
          </>
        ) : (
          <div className="text-sm text-gray-500">No forecast.</div>
        )}
      </div>
      <div className="rounded-lg border bg-white p-5 shadow-sm" data-testid="budgets">
        <h2 className="mb-2 text-lg font-semibold">Budgets</h2>
        {data.budgets === null ? (
          <div className="text-sm text-gray-500">This role may not read billing.budgets.</div>
        ) : data.budgets.length === 0 ? (
          <div className="text-sm text-gray-500">No budget set (INSERT INTO billing.budgets ...).</div>
        ) : (
          <ul className="space-y-2">
            {data.budgets.map((b) => (
              <li key={b.budget} data-testid={`budget-${b.budget}`} className="text-sm">
                <div className="flex items-center justify-between">
                  <span className="font-medium">
                    {b.budget} <span className="text-gray-500">({b.scope}{b.model ? `: ${b.model}` : ''})</span>
                  </span>
                  <span className={`rounded px-2 py-0.5 text-xs font-semibold ${stateStyle[b.state] ?? ''}`}
                        data-testid="budget-state">
                    {b.state}
                  </span>
                </div>
                <div className="mt-1 h-2 w-full overflow-hidden rounded bg-gray-100">
                  <div
                    className={b.state === 'exceeded' ? 'h-2 bg-red-500' : b.state === 'warning' ? 'h-2 bg-amber-500' : 'h-2 bg-emerald-500'}
                    style={{ width: `${Math.min(100, Number(b.percent))}%` }}
                  />
                </div>
                <div className="mt-1 tabular-nums text-gray-600">
                  <span data-testid="budget-spent">{usd(b.spent)}</span> of{' '}
                  <span data-testid="budget-amount">{usd(b.amount)}</span> (
                  <span data-testid="budget-percent">{percent(b.percent)}</span>), forecast{' '}
                  <span data-testid="budget-forecast">{usd(b.forecast)}</span>
                  {b.blocks ? ' · blocks requests when spent' : ''}
                </div>
              </li>
            ))}
          </ul>
        )}
      </div>
    </section>
  );
}
