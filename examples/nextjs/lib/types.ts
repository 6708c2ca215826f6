import type { Dec } from './exact';

// The /api/billing payload (billing.dashboard() plus what lib/billing-query.ts
// adds), as parseExact() returns it: every number is its decimal text (Dec).
export interface BillingPayload {
  period: { start: string; end: string };
  openai: {
    cost: Dec;
    estimated_cost: Dec;
    tokens: Dec;
    prompt_tokens: Dec;
    completion_tokens: Dec;
    cached_tokens: Dec;
    estimated_tokens: Dec;
    messages: Dec;
    by_model: Record<string, { cost: Dec | null; tokens: Dec; messages: Dec }>;
  };
  aws: {
    cost: Dec;
    emails: Dec;
    breakdown: Record<string, { quantity: Dec; cost: Dec | null; basis: string; unpriced_quantity?: Dec }>;
    source: 'actual' | 'estimate' | 'mixed';
  };
  total_cost: Dec;
  conversations: { conversation_id: string; title: string | null; cost: Dec; tokens: Dec; messages: Dec }[];
  history: { month: string; openai: Dec; aws: Dec; total: Dec }[];
  /** null: the reading role may not see billing.budgets */
  budgets: Budget[] | null;
  forecast: Record<'openai' | 'aws' | 'total', { spent: Dec; forecast: Dec; past_daily: Dec | null; method: string }> | null;
  alerts: Alert[];
  /** Every customer with costs in the period or with statements ([] until billing knows customers). */
  customers: Customer[];
  generated_at: string;
}

export interface Customer {
  customer: string;
  /** the period's costs (billing.costs over the dashboard's period) */
  openai: Dec;
  aws: Dec;
  cost: Dec;
  /** its issued statements, newest month first */
  statements: { number: string; month: string; total: Dec }[];
}

export interface Budget {
  budget: string;
  scope: string;
  model: string | null;
  conversation_id: string | null;
  amount: Dec;
  spent: Dec;
  remaining: Dec;
  percent: Dec;
  forecast: Dec;
  state: 'ok' | 'warning' | 'exceeded';
  blocks: boolean;
}

export interface Alert {
  id: Dec;
  budget: string;
  threshold: Dec;
  period: string;
  spent: Dec;
  amount: Dec;
  fired_at: string;
}
