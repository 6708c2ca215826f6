import { count, usd } from '@/lib/exact';
import type { BillingPayload } from '@/lib/types';

function Card(props: { title: string; testid: string; cost: string; detail: React.ReactNode; accent: string }) {
  return (
    <div className={`rounded-lg border bg-white p-5 shadow-sm border-l-4 ${props.accent}`} data-testid={props.testid}>
      <div className="text-sm font-medium text-gray-500">{props.title}</div>
      <div className="mt-1 text-3xl font-semibold tabular-nums" data-testid={`${props.testid}-cost`}>
        {props.cost}
      </div>
      <div className="mt-1 text-sm text-gray-600">{props.detail}</div>
    </div>
  );
}

/** Current Period Summary: OpenAI (cost, tokens), AWS (cost, e-mails), total. */
export function CurrentPeriodCards({ data }: { data: BillingPayload }) {
  return (
    <section aria-labelledby="current-period">
      <h2 id="current-period" className="mb-3 text-lg font-semibold">
        Current period{' '}
        <span className="text-sm font-normal text-gray-500">
          {data.period.start.slice(0, 10)} to {data.period.end.slice(0, 10)}
        </span>
      </h2>
      <div className="grid grid-cols-1 gap-4 md:grid-cols-3">
        <Card
          title="OpenAI"
          testid="card-openai"
          accent="border-l-emerald-500"
          cost={usd(data.openai.cost)}
          detail={
            <>
              <span data-testid="card-openai-tokens">{count(data.openai.tokens)}</span> tokens ·{' '}
              <span data-testid="card-openai-messages">{count(data.openai.messages)}</span> messages
            </>
          }
        />
        <Card
          title="AWS services"
          testid="card-aws"
          accent="border-l-amber-500"
          cost={usd(data.aws.cost)}
          detail={
            <>
              <span data-testid="card-aws-emails">{count(data.aws.emails)}</span> emails · {data.aws.source}
            </>
          }
        />
        <Card
          title="Total"
          testid="card-total"
          accent="border-l-indigo-500"
          cost={usd(data.total_cost)}
          detail={<>OpenAI + AWS this month</>}
        />
      </div>
    </section>
  );
}
