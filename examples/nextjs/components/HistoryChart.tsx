'use client';

import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { approx, usd } from '@/lib/exact';
import type { BillingPayload } from '@/lib/types';

/** Historical usage: a stacked bar chart of OpenAI vs AWS over the 6 months,
 *  and the period list beside it (exact figures). Bar heights are doubles;
 *  the tooltip and the list show the exact decimal text rounded to the cent. */
export function HistoryChart({ data }: { data: BillingPayload }) {
  const rows = data.history.map((h) => ({
    month: h.month,
    openai: approx(h.openai),
    aws: approx(h.aws),
    exact: h,
  }));
  return (
    <section aria-labelledby="history" className="rounded-lg border bg-white p-5 shadow-sm">
      <h2 id="history" className="mb-3 text-lg font-semibold">Historical usage (6 months)</h2>
      <div className="grid grid-cols-1 gap-6 lg:grid-cols-3">
        <div className="h-72 lg:col-span-2" data-testid="history-chart">
          <ResponsiveContainer width="100%" height="100%">
            <BarChart data={rows} margin={{ top: 8, right: 8, bottom: 8, left: 8 }}>
              <CartesianGrid strokeDasharray="3 3" vertical={false} />
              <XAxis dataKey="month" />
              <YAxis tickFormatter={(v: number) => `$${v}`} width={70} />
              <Tooltip
                formatter={(_value, name, item) => {
                  const exact = (item?.payload as { exact?: BillingPayload['history'][number] })?.exact;
                  const key = name === 'OpenAI' ? 'openai' : 'aws';
                  return [exact ? usd(exact[key]) : String(_value), name];
                }}
              />
              <Legend />
              <Bar dataKey="openai" name="OpenAI" stackId="cost" fill="#10b981" isAnimationActive={false} />
              <Bar dataKey="aws" name="AWS" stackId="cost" fill="#f59e0b" isAnimationActive={false} />
            </BarChart>
          </ResponsiveContainer>
        </div>
        <table className="w-full self-start text-sm" data-testid="history">
          <thead>
            <tr className="border-b text-left text-gray-500">
              <th className="py-1 font-medium">Month</th>
              <th className="py-1 text-right font-medium">OpenAI</th>
              <th className="py-1 text-right font-medium">AWS</th>
              <th className="py-1 text-right font-medium">Total</th>
            </tr>
          </thead>
          <tbody>
            {data.history.map((h) => (
              <tr key={h.month} className="border-b last:border-0" data-testid="history-row" data-month={h.month}>
                <td className="py-1">{h.month}</td>
                <td className="py-1 text-right tabular-nums" data-testid="history-openai">{usd(h.openai)}</td>
                <td className="py-1 text-right tabular-nums" data-testid="history-aws">{usd(h.aws)}</td>
                <td className="py-1 text-right tabular-nums" data-testid="history-total">{usd(h.total)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
