import { count, usd } from '@/lib/exact';
import type { BillingPayload } from '@/lib/types';

/** Per-Conversation Breakdown: the month's top 50 conversations by cost. */
export function ConversationTable({ data }: { data: BillingPayload }) {
  return (
    <section aria-labelledby="conversations" className="rounded-lg border bg-white p-5 shadow-sm">
      <h2 id="conversations" className="mb-3 text-lg font-semibold">
        Per-conversation breakdown <span className="text-sm font-normal text-gray-500">(top 50, this month)</span>
      </h2>
      {data.conversations.length === 0 ? (
        <div className="text-sm text-gray-500">No conversation this month.</div>
      ) : (
        <div className="overflow-x-auto">
          <table className="w-full text-sm" data-testid="conversations">
            <thead>
              <tr className="border-b text-left text-gray-500">
                <th className="py-2 pr-4 font-medium">Conversation</th>
                <th className="py-2 pr-4 text-right font-medium">Messages</th>
                <th className="py-2 pr-4 text-right font-medium">Tokens</th>
                <th className="py-2 text-right font-medium">Cost</th>
              </tr>
            </thead>
            <tbody>
              {data.conversations.map((c) => (
                <tr key={c.conversation_id} className="border-b last:border-0" data-testid="conversation-row"
                    data-conversation-id={c.conversation_id}>
                  <td className="py-2 pr-4">
                    <div data-testid="conversation-title">{c.title ?? 'Untitled'}</div>
                    <div className="font-mono text-xs text-gray-400">{c.conversation_id}</div>
                  </td>
                  <td className="py-2 pr-4 text-right tabular-nums" data-testid="conversation-messages">{count(c.messages)}</td>
                  <td className="py-2 pr-4 text-right tabular-nums" data-testid="conversation-tokens">{count(c.tokens)}</td>
                  <td className="py-2 text-right tabular-nums" data-testid="conversation-cost">{usd(c.cost)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
