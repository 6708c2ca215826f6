'use client';

import { useCallback, useEffect, useRef, useState } from 'react';
import { parseExact } from '@/lib/exact';
import type { BillingPayload } from '@/lib/types';
import { CurrentPeriodCards } from '@/components/Cards';
import { ForecastBudgets } from '@/components/ForecastBudgets';
import { Alerts } from '@/components/Alerts';
import { ConversationTable } from '@/components/ConversationTable';
import { HistoryChart } from '@/components/HistoryChart';
import { CustomersSection } from '@/components/CustomersSection';

type State =
  | { status: 'loading' }
  | { status: 'error'; message: string }
  | { status: 'ready'; data: BillingPayload; ms: number; loads: number };

// The page's sections, in order; each takes the whole payload. A new
// section is one more entry.
const SECTIONS: { key: string; Component: (props: { data: BillingPayload }) => React.ReactNode }[] = [
  { key: 'alerts', Component: Alerts },
  { key: 'cards', Component: CurrentPeriodCards },
  { key: 'forecast', Component: ForecastBudgets },
  { key: 'conversations', Component: ConversationTable },
  { key: 'customers', Component: CustomersSection },
  { key: 'history', Component: HistoryChart },
];

export default function BillingPage() {
  const [state, setState] = useState<State>({ status: 'loading' });
  const [refreshing, setRefreshing] = useState(false);
  const loads = useRef(0);

  const load = useCallback(async () => {
    const started = performance.now();
    setRefreshing(true);
    try {
      const res = await fetch('/api/billing', { cache: 'no-store' });
      const text = await res.text();
      if (!res.ok) {
        let message = `HTTP ${res.status}`;
        try {
          message = (JSON.parse(text) as { error?: string }).error ?? message;
        } catch {
          /* not JSON: keep the status */
        }
        throw new Error(message);
      }
      const data = parseExact(text) as BillingPayload;
      loads.current += 1;
      setState({ status: 'ready', data, ms: performance.now() - started, loads: loads.current });
    } catch (err) {
      setState({ status: 'error', message: err instanceof Error ? err.message : String(err) });
    } finally {
      setRefreshing(false);
    }
  }, []);

  useEffect(() => {
    void load();
  }, [load]);

  return (
    <main className="mx-auto max-w-6xl space-y-6 p-6">
      <header className="flex items-center justify-between">
        <div>
          <h1 className="text-2xl font-bold">Billing</h1>
          <p className="text-sm text-gray-500">OpenAI and AWS costs, computed in PostgreSQL by the billing extension</p>
        </div>
        <button
          type="button"
          onClick={() => void load()}
          disabled={refreshing}
          className="no-print rounded-md bg-indigo-600 px-4 py-2 text-sm font-medium text-white shadow-sm hover:bg-indigo-500 disabled:opacity-50"
          data-testid="refresh"
        >
          {refreshing ? 'Refreshing…' : 'Refresh'}
        </button>
      </header>

      {state.status === 'loading' && (
        <div className="animate-pulse space-y-4" data-testid="loading" aria-busy="true">
          <div className="grid grid-cols-1 gap-4 md:grid-cols-3">
            {[0, 1, 2].map((i) => (
              <div key={i} className="h-28 rounded-lg bg-gray-200" />
            ))}
          </div>
          <div className="h-64 rounded-lg bg-gray-200" />
        </div>
      )}

      {state.status === 'error' && (
        <div role="alert" className="rounded-lg border border-red-300 bg-red-50 p-4 text-red-900" data-testid="error">
          <div className="font-semibold">The billing data could not be loaded.</div>
          <div className="mt-1 font-mono text-sm">{state.message}</div>
          <button type="button" onClick={() => void load()} className="mt-3 text-sm font-medium underline">
            Try again
          </button>
        </div>
      )}

      {state.status === 'ready' && (
        <div className="space-y-6" data-testid="billing-data" data-loads={state.loads} data-ms={state.ms.toFixed(1)}
             data-generated-at={state.data.generated_at}>
          {SECTIONS.map(({ key, Component }) => (
            <Component key={key} data={state.data} />
          ))}
          <p className="text-xs text-gray-400">
            Data as of {state.data.generated_at} · loaded in {state.ms.toFixed(0)} ms
          </p>
        </div>
      )}
    </main>
  );
}
