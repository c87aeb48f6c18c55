import { Pool, request } from "undici";

/**
 * A closed-loop load generator, autocannon's model without the dependency: `connections` keep-alive
 * connections, each sending the next request as soon as the previous answer has been read, for
 * `durationMs`. Runs in the bench's process; the server under load runs in another.
 */
export interface LoadResult {
  requests: number;
  /** Answers that were not HTTP 200 or carried GraphQL errors. */
  errors: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

export async function load(
  baseUrl: string,
  body: { query: string; variables?: Record<string, unknown> },
  options: { connections: number; durationMs: number; warmupMs?: number },
): Promise<LoadResult> {
  const pool = new Pool(baseUrl, { connections: options.connections, pipelining: 1 });
  const payload = JSON.stringify(body);
  const send = async (): Promise<boolean> => {
    const response = await request(`${baseUrl}/graphql`, {
      dispatcher: pool,
      method: "POST",
      headers: { "content-type": "application/json" },
      body: payload,
    });
    const text = await response.body.text();
    return response.statusCode === 200 && !text.startsWith('{"errors"') && !text.includes('"errors":[');
  };
  const run = async (durationMs: number, latencies: number[] | undefined) => {
    let requests = 0;
    let errors = 0;
    const end = performance.now() + durationMs;
    await Promise.all(
      Array.from({ length: options.connections }, async () => {
        while (performance.now() < end) {
          const t0 = performance.now();
          const ok = await send().catch(() => false);
          latencies?.push(performance.now() - t0);
          requests++;
          if (!ok) errors++;
        }
      }),
    );
    return { requests, errors };
  };
  try {
    if (options.warmupMs) await run(options.warmupMs, undefined);
    const latencies: number[] = [];
    const t0 = performance.now();
    const { requests, errors } = await run(options.durationMs, latencies);
    const seconds = (performance.now() - t0) / 1000;
    latencies.sort((a, b) => a - b);
    const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN;
    return { requests, errors, requestsPerSecond: requests / seconds, p50Ms: at(0.5), p99Ms: at(0.99) };
  } finally {
    await pool.close();
  }
}
