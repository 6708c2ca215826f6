import { Pool } from 'pg';

// One pool per server process (kept across hot reloads in `next dev`).
// Connection settings come from the usual PG* variables or DATABASE_URL.
const globalForPool = globalThis as unknown as { billingPool?: Pool };

export const pool: Pool =
  globalForPool.billingPool ??
  new Pool({
    connectionString: process.env.DATABASE_URL,
    max: 5,
    application_name: 'billing-example-nextjs',
  });

if (process.env.NODE_ENV !== 'production') globalForPool.billingPool = pool;
