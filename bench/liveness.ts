import { pathToFileURL } from "node:url";
import { Agent, request } from "undici";
import { startChild, type Child } from "./rpc.js";
import type { SandboxInfo } from "./sandbox-process.js";
import type { AppParams } from "./server-process.js";
import { fixed, ms } from "./stats.js";

/**
 * Liveness under load (issue 12, item 12): `/healthz` latency while a burst of GraphQL operations hits
 * the server, beside its latency when idle. A Kubernetes liveness probe with a 1 s timeout restarts a pod
 * whose `/healthz` answers late, so the figure that matters is the probe's p99 (and max) during the burst.
 *
 * The prober runs in a process of its own (bench/probe-process.ts: a new connection per probe, one every
 * 20 ms, as a kubelet would), so the bench's own busy event loop does not inflate its timings; the
 * burst's answers are dumped unread. `node --import tsx bench/liveness.ts` runs it alone (env
 * BENCH_LIVENESS_TENANTS, default 100; BENCH_LIVENESS_BURST, default 500); `npm run bench` runs it
 * after the tenant cases.
 */

export interface LivenessResult {
  tenants: number;
  burst: number;
  idle: Quantiles;
  underLoad: Quantiles;
  /** Probe p99 during the burst over the idle probes' p50. */
  ratio: number;
  /** How the burst's operations were answered: HTTP status → count (503: refused by admission control). */
  statuses: Record<string, number>;
  burstMs: number;
}

interface Quantiles {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  probes: number;
}

const QUERY = `query($ids: [ID!]) { incidents(tenantIds: $ids, first: 50) { totalCount edges { node { tenantId incidentId severity lastUpdateTime } } tenantOutcomes { tenantId ok fromCache } } }`;
const PROBE_INTERVAL_MS = 20;

function quantiles(values: number[]): Quantiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return { p50Ms: at(0.5), p99Ms: at(0.99), maxMs: sorted.at(-1) ?? Number.NaN, probes: sorted.length };
}

/** Idle probes, then `burst` concurrent incidents queries over `ids` (warm cache) with probes throughout. */
export async function measureLiveness(baseUrl: string, ids: string[], burst: number): Promise<LivenessResult> {
  const prober = await startChild("./probe-process.ts");
  const body = JSON.stringify({ query: QUERY, variables: { ids } });
  const agent = new Agent({ connections: burst, pipelining: 1 });
  const send = async () => {
    const response = await request(`${baseUrl}/graphql`, {
      dispatcher: agent,
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    await response.body.dump();
    return response.statusCode;
  };
  try {
    // Warm: every tenant in the cache, the operation's code paths compiled.
    for (let i = 0; i < 5; i++) await send();
    await prober.call("start", { url: baseUrl, intervalMs: PROBE_INTERVAL_MS });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const idle = await prober.call<number[]>("stop");
    const statuses: Record<string, number> = {};
    await prober.call("start", { url: baseUrl, intervalMs: PROBE_INTERVAL_MS });
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: burst }, () =>
        send().then(
          (status) => void (statuses[status] = (statuses[status] ?? 0) + 1),
          () => void (statuses.error = (statuses.error ?? 0) + 1),
        ),
      ),
    );
    const burstMs = performance.now() - t0;
    const underLoad = await prober.call<number[]>("stop");
    const idleQ = quantiles(idle);
    const loadQ = quantiles(underLoad);
    return { tenants: ids.length, burst, idle: idleQ, underLoad: loadQ, ratio: loadQ.p99Ms / idleQ.p50Ms, statuses, burstMs };
  } finally {
    await agent.close();
    await prober.close();
  }
}

export function formatLiveness(r: LivenessResult): string {
  const statuses = Object.entries(r.statuses)
    .map(([status, n]) => `${n} × ${status}`)
    .join(", ");
  return [
    `/healthz during a ${r.burst}-query burst (${r.tenants} tenants, warm; burst answered in ${ms(r.burstMs)}: ${statuses})`,
    `  idle:       p50 ${ms(r.idle.p50Ms)}, p99 ${ms(r.idle.p99Ms)}, max ${ms(r.idle.maxMs)} (${r.idle.probes} probes)`,
    `  under load: p50 ${ms(r.underLoad.p50Ms)}, p99 ${ms(r.underLoad.p99Ms)}, max ${ms(r.underLoad.maxMs)} (${r.underLoad.probes} probes)`,
    `  p99 under load / idle p50: ${fixed(r.ratio)}×  (target: p99 under load ≤ 100 ms: ${r.underLoad.p99Ms <= 100 ? "met" : "MISSED"})`,
  ].join("\n");
}

/** Runs on its own sandbox and server processes (used when this file is run directly). */
async function main(): Promise<void> {
  const tenantCount = Number(process.env.BENCH_LIVENESS_TENANTS ?? 100);
  const burst = Number(process.env.BENCH_LIVENESS_BURST ?? 500);
  const sandboxChild: Child = await startChild("./sandbox-process.ts");
  let server: Child | undefined;
  try {
    const sandbox = await sandboxChild.call<SandboxInfo>("start", { tenantCount, incidentsPerTenant: 100, seed: 42 });
    await sandboxChild.call("prime");
    await sandboxChild.call("setLatency", { fixedMs: 100 });
    server = await startChild("./server-process.ts");
    // No data directory: the registry lives in memory for this one process.
    await server.call("init", { sandbox, dataDir: undefined });
    const { url } = await server.call<{ url: string }>("startApp", { freshnessSeconds: 3600 } satisfies AppParams);
    const ids = sandbox.tenants.filter((t) => t.readable).map((t) => t.id);
    const result = await measureLiveness(url, ids, burst);
    process.stdout.write(`${formatLiveness(result)}\n${JSON.stringify(result)}\n`);
  } finally {
    await server?.close();
    await sandboxChild.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
