import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { request } from "undici";
import type { CounterSnapshot, LatencySpec } from "../src/sandbox/context.js";
import { formatHunting, huntingPlan, measureHunting, type HuntingResult } from "./hunting.js";
import { formatLiveness, measureLiveness, type LivenessResult } from "./liveness.js";
import { load, type LoadResult } from "./load.js";
import { measureReplicas, type ReplicasResult } from "./replicas.js";
import { startChild, type Child } from "./rpc.js";
import type { SandboxInfo } from "./sandbox-process.js";
import type { AppParams } from "./server-process.js";
import { fixed, mb, median, ms, ratio, table } from "./stats.js";
import { boundRound, scriptLoop } from "./upstream.js";

/**
 * `npm run bench`: Crosswatch's `incidents(tenantIds:)` beside the bound (one parallel round of token +
 * list per tenant over bare undici) and the script (the same calls, tenant after tenant), for 10, 100
 * and 1,000 tenants, cold, warm and refreshing; upstream calls per query from the sandbox's counters;
 * warm throughput beside a bare Apollo Server; the server's peak RSS. Prints medians and ratios, writes
 * bench/results/latest.json and a timestamped copy. Reports where each target stands; asserts nothing.
 * Then liveness under a burst (bench/liveness.ts), hunting across tenants (bench/hunting.ts) and replicas.
 *
 * Three processes: this one (the clients: bound, script, GraphQL queries, load generator), the sandbox,
 * and the server (a new Crosswatch app per cold run). `BENCH_QUICK=1`: 10 tenants, one run, short load.
 */

const QUICK = process.env.BENCH_QUICK === "1";
const FIXED: LatencySpec = { fixedMs: 100 };
const SPREAD: LatencySpec = { medianMs: 80, p95Ms: 400 };
const INCIDENTS_PER_TENANT = 100;
/**
 * The operation deadline of the measured apps, instead of the default 20 s: a slow cold query is timed,
 * not cut off. The first query of each server process runs at the default, and its outcome is reported.
 */
const MEASURED_DEADLINE_MS = 120_000;
const SEED = 42;

interface CasePlan {
  /** Sandbox tenants (the first N); the unconsented and role-less ones are left out of `tenantIds`. */
  tenants: number;
  /** Measured Crosswatch runs (each: two new apps, two cold samples). */
  runs: number;
  /** Measured rounds of the bound on each transport. */
  boundRuns: number;
  /** Runs of the sequential script; 0 extrapolates it from the per-tenant time at the smaller N. */
  scriptRuns: number;
  /** Also measure with the realistic latency spread. */
  spread: boolean;
  scriptRunsSpread: number;
}

const PLAN: { cases: CasePlan[]; warmQueries: number; refreshQueries: number; loadMs: number; loadConnections: number } = QUICK
  ? {
      cases: [{ tenants: 10, runs: 1, boundRuns: 1, scriptRuns: 1, spread: false, scriptRunsSpread: 0 }],
      warmQueries: 3,
      refreshQueries: 2,
      loadMs: 1_500,
      loadConnections: 8,
    }
  : {
      cases: [
        { tenants: 10, runs: 5, boundRuns: 5, scriptRuns: 5, spread: true, scriptRunsSpread: 3 },
        { tenants: 100, runs: 3, boundRuns: 3, scriptRuns: 1, spread: true, scriptRunsSpread: 0 },
        { tenants: 1000, runs: 1, boundRuns: 1, scriptRuns: 0, spread: false, scriptRunsSpread: 0 },
      ],
      warmQueries: 5,
      refreshQueries: 3,
      loadMs: 4_000,
      loadConnections: 8,
    };

/** `BENCH_TENANTS=100` (or `10,1000`) runs only those cases of the plan, for working on one of them. */
const ONLY = process.env.BENCH_TENANTS?.split(",").map((n) => Number(n.trim()));
if (ONLY) PLAN.cases = PLAN.cases.filter((c) => ONLY.includes(c.tenants));
if (PLAN.cases.length === 0) throw new Error(`BENCH_TENANTS=${process.env.BENCH_TENANTS} matches no case of the plan`);

const INCIDENTS_QUERY = `query($ids: [ID!]) {
  incidents(tenantIds: $ids, first: 50) {
    totalCount
    edges { node { tenantId incidentId severity lastUpdateTime } }
    tenantOutcomes { tenantId ok fromCache durationMs error { code } }
  }
}`;

type Tenant = SandboxInfo["tenants"][number];

interface Calls {
  tokens: number;
  /** List calls: one per page read. */
  lists: number;
  /** Everything the sandbox counted (discovery, JWKS, other tenants …). */
  total: number;
  throttled: number;
}

/** When tenants were done, ms from the start: the first, the median and the last one. */
interface TenantTimes {
  first: number;
  median: number;
  last: number;
}

function tenantTimes(values: number[]): TenantTimes {
  const sorted = [...values].sort((a, b) => a - b);
  return { first: sorted[0] ?? Number.NaN, median: median(sorted), last: sorted.at(-1) ?? Number.NaN };
}

interface QueryResult {
  ms: number;
  /** From each tenant's `durationMs` (its load, from when the resolver asked for it). */
  tenantMs: TenantTimes;
  totalCount: number;
  ok: number;
  fromCache: number;
  outcomes: number;
  /** Failed tenants by error code. */
  errors: Record<string, number>;
}

interface CrosswatchSamples {
  cold: number[];
  coldTenantMs: TenantTimes[];
  warm: number[];
  refresh: number[];
  /** Calls per query, summed over the queried tenants. */
  coldCalls: Calls[];
  warmCalls: Calls[];
  refreshCalls: Calls[];
  /** Token calls over a whole app lifetime (cold + refreshes), per tenant. */
  tokensPerTenantPerLifetime: number[];
  appStartMs: number[];
  totalCount: number;
}

interface LatencyCase {
  latency: LatencySpec;
  bound: number[];
  boundTenantMs: TenantTimes[];
  /** The bound over Crosswatch's own dispatcher (64 connections, a TLS context per connection). */
  boundOnCrosswatchDispatcher: number[];
  script: number[];
  /** Extrapolated from the smaller N's per-tenant time when the script was not run at this N. */
  scriptEstimateMs?: number;
  crosswatch: CrosswatchSamples;
}

interface CaseResult {
  tenants: number;
  queried: number;
  excluded: string[];
  fixed: LatencyCase;
  spread?: LatencyCase;
  /**
   * The first query of a new server process (JIT cold) at the default 20 s operation deadline, not counted
   * in the cold medians: how many tenants it returned, and why the others failed.
   */
  firstQuery: QueryResult;
  throughput: { crosswatch: LoadResult; crosswatchTypename: LoadResult; bareApollo: LoadResult; tokensDuringLoad: number; listsDuringLoad: number };
  /**
   * Bytes, of the server process. `rssBeforeStore` / `rssAfterStore`: around opening the registry
   * (embedded PGlite). Peaks: sampled every 20 ms from after start-up to the case's end (cold queries
   * included: page bodies and their parsed JSON are alive at once). `retained*`: with the warm app
   * holding every queried tenant's incidents, after a full GC. `maxRssKb`: the kernel's high-water mark,
   * PGlite's initdb included.
   */
  memory: {
    rssBeforeStore: number;
    rssAfterStore: number;
    peakRss: number;
    peakHeapUsed: number;
    maxRssKb: number;
    retainedRss: number;
    retainedHeapUsed: number;
    /** Memory outside the JS heap that V8 knows of: mostly PGlite's WebAssembly memory. */
    retainedExternal: number;
  };
}

const log = (line: string) => process.stdout.write(`${line}\n`);
const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;

// ---------------------------------------------------------------------------------------------------

const maxTenants = Math.max(...PLAN.cases.map((c) => c.tenants));
const loadAtStart = os.loadavg();
const registryDir = await mkdtemp(join(os.tmpdir(), "crosswatch-bench-"));
const sandboxChild = await startChild("./sandbox-process.ts");
const results: CaseResult[] = [];
let registryFirstStart: { storeMs: number; rssAfterStore: number };
let replicas: ReplicasResult | { skipped: string } | undefined;
let liveness: LivenessResult | undefined;
let hunting: HuntingResult | undefined;
try {
  const sandbox = await sandboxChild.call<SandboxInfo>("start", { tenantCount: maxTenants, incidentsPerTenant: INCIDENTS_PER_TENANT, seed: SEED });
  log(
    `Crosswatch bench${QUICK ? " (BENCH_QUICK)" : ""}: ${os.cpus().length} cores, Node ${process.version}, ` +
      `load average ${loadAtStart.map((l) => l.toFixed(2)).join(" ")}; sandbox ${maxTenants} tenants × ${INCIDENTS_PER_TENANT} incidents`,
  );
  // The sandbox generates a tenant's incidents on first read: all of them now, outside any measurement.
  const primed = await sandboxChild.call<{ ms: number }>("prime");
  // The registry's first start (initdb) in a process of its own; the measured servers reopen it.
  const preparer = await startChild("./server-process.ts");
  registryFirstStart = await preparer.call("init", { sandbox, dataDir: registryDir });
  await preparer.call("closeStore");
  await preparer.close();
  log(
    `  sandbox incidents generated in ${ms(primed.ms)}; registry created in ${ms(registryFirstStart.storeMs)} ` +
      `(RSS of that first start: ${mb(registryFirstStart.rssAfterStore)}) [${elapsed()}]`,
  );
  for (const plan of PLAN.cases) results.push(await runCase(sandbox, registryDir, plan, results));
  // Liveness under a burst (issue 12): /healthz probed from a process of its own while 500 queries land at once.
  log(`\nliveness: /healthz during a ${QUICK ? 100 : 500}-query burst [${elapsed()}]`);
  await sandboxChild.call("setLatency", FIXED);
  const livenessServer = await startChild("./server-process.ts");
  try {
    await livenessServer.call("init", { sandbox, dataDir: registryDir });
    const app = await livenessServer.call<{ url: string }>("startApp", { freshnessSeconds: 3600 } satisfies AppParams);
    const ids = sandbox.tenants.slice(0, Math.min(100, maxTenants)).filter((t) => t.readable).map((t) => t.id);
    liveness = await measureLiveness(app.url, ids, QUICK ? 100 : 500);
  } finally {
    await livenessServer.close();
  }
  // Hunting across tenants (issue 15): its own sandbox (hunting roles, more incidents) and server processes.
  log(`\nhunting: parallel hunt over 100 tenants, memory of large hunts [${elapsed()}]`);
  hunting = await measureHunting(huntingPlan(QUICK), log);
  log(`\nreplicas on PostgreSQL + Redis [${elapsed()}]`);
  await sandboxChild.call("setLatency", FIXED);
  replicas = await measureReplicas({
    sandbox,
    sandboxChild,
    tenants: sandbox.tenants.slice(0, QUICK ? 10 : 100).filter((t) => t.readable),
    loadMs: PLAN.loadMs,
    connections: PLAN.loadConnections,
    sustainedMs: QUICK ? 6_000 : 30_000,
    log,
  });
} finally {
  await sandboxChild.close();
  await rm(registryDir, { recursive: true, force: true });
}
report(results);
if (liveness) log(`\n${formatLiveness(liveness)}`);
if (hunting) log(`\n${formatHunting(hunting)}`);
reportReplicas(replicas);
await save(results, { loadAverageAtStart: loadAtStart, loadAverageAtEnd: os.loadavg(), registryFirstStart }, replicas, liveness, hunting);

// ---------------------------------------------------------------------------------------------------

async function runCase(sandbox: SandboxInfo, registryDir: string, plan: CasePlan, earlier: CaseResult[]): Promise<CaseResult> {
  const inSandbox = sandbox.tenants.slice(0, plan.tenants);
  const tenants = inSandbox.filter((t) => t.readable);
  const excluded = inSandbox.filter((t) => !t.readable).map((t) => t.displayName);
  log(`\n${plan.tenants} tenants (${tenants.length} queried${excluded.length ? `; left out: ${excluded.join(", ")}` : ""})`);

  // A new server process per case: its peak RSS is this case's.
  const server = await startChild("./server-process.ts", ["--expose-gc"]);
  try {
    const init = await server.call<{ storeMs: number; rssBeforeStore: number; rssAfterStore: number }>("init", { sandbox, dataDir: registryDir });
    await server.call("resetPeak");
    // The first query of a server process pays for JIT compilation: kept apart from the cold runs.
    await sandboxChild.call("setLatency", FIXED);
    const first = await server.call<{ url: string }>("startApp", { freshnessSeconds: 3600 } satisfies AppParams);
    const firstQuery = await query(first.url, tenants.map((t) => t.id), { strict: false });
    const failed = Object.entries(firstQuery.errors).map(([code, n]) => `${n} ${code}`);
    log(
      `  server process ready (registry ${ms(init.storeMs)}); first query, default deadline: ${ms(firstQuery.ms)}, ` +
        `${firstQuery.ok} of ${tenants.length} tenants ok${failed.length ? ` (${failed.join(", ")})` : ""} [${elapsed()}]`,
    );

    let throughput: CaseResult["throughput"] | undefined;
    let retained: Memory | undefined;
    const fixedCase = await runLatencyCase(sandbox, server, tenants, plan, plan.scriptRuns, FIXED, async (url) => {
      log(`  throughput (${PLAN.loadConnections} connections, ${PLAN.loadMs / 1000} s each) [${elapsed()}]`);
      throughput = await measureThroughput(server, url, tenants);
      // What the warm app keeps: every queried tenant's incidents in its cache, after a full GC.
      retained = await server.call<Memory>("memory", { gc: true });
    });
    if (plan.scriptRuns === 0) fixedCase.scriptEstimateMs = extrapolateScript(earlier, "fixed", tenants.length);

    let spread: LatencyCase | undefined;
    if (plan.spread) {
      spread = await runLatencyCase(sandbox, server, tenants, plan, plan.scriptRunsSpread, SPREAD);
      if (plan.scriptRunsSpread === 0) spread.scriptEstimateMs = extrapolateScript(earlier, "spread", tenants.length);
      await sandboxChild.call("setLatency", FIXED);
    }
    const end = await server.call<Memory>("memory");
    return {
      tenants: plan.tenants,
      queried: tenants.length,
      excluded,
      fixed: fixedCase,
      ...(spread ? { spread } : {}),
      firstQuery,
      throughput: throughput!,
      memory: {
        rssBeforeStore: init.rssBeforeStore,
        rssAfterStore: init.rssAfterStore,
        peakRss: end.peakRss,
        peakHeapUsed: end.peakHeapUsed,
        maxRssKb: end.maxRssKb,
        retainedRss: retained!.rss,
        retainedHeapUsed: retained!.heapUsed,
        retainedExternal: retained!.external,
      },
    };
  } finally {
    await server.close();
  }
}

interface Memory {
  rss: number;
  heapUsed: number;
  external: number;
  peakRss: number;
  peakHeapUsed: number;
  maxRssKb: number;
}

/**
 * The bound (both transports), the script and Crosswatch at one latency. Each Crosswatch run starts two
 * apps: one with a long freshness bound (cold, then warm repeats) and one with freshness 0 (cold, then
 * refreshes that find every tenant stale). `onWarmApp` runs against the last run's warm app.
 */
async function runLatencyCase(
  sandbox: SandboxInfo,
  server: Child,
  tenants: Tenant[],
  plan: CasePlan,
  scriptRuns: number,
  latency: LatencySpec,
  onWarmApp?: (url: string) => Promise<void>,
): Promise<LatencyCase> {
  const label = "fixedMs" in latency ? `latency ${latency.fixedMs} ms` : `latency median ${latency.medianMs} / p95 ${latency.p95Ms} ms`;
  await sandboxChild.call("setLatency", latency);
  const ids = tenants.map((t) => t.id);

  log(`  ${label}: bound ×${plan.boundRuns} on each transport [${elapsed()}]`);
  // A warm-up round (JIT of the client path) where it is cheap; at 1,000 tenants a round takes seconds.
  if (tenants.length <= 100) await boundRound(sandbox, tenants);
  const bound: number[] = [];
  const boundTenantMs: TenantTimes[] = [];
  const boundOnCrosswatchDispatcher: number[] = [];
  for (let i = 0; i < plan.boundRuns; i++) {
    const round = await boundRound(sandbox, tenants, "ideal");
    bound.push(round.ms);
    boundTenantMs.push(tenantTimes(round.tenantDoneMs));
    boundOnCrosswatchDispatcher.push((await boundRound(sandbox, tenants, "crosswatch")).ms);
  }

  const script: number[] = [];
  if (scriptRuns > 0) log(`  ${label}: script ×${scriptRuns} [${elapsed()}]`);
  for (let i = 0; i < scriptRuns; i++) script.push((await scriptLoop(sandbox, tenants)).ms);

  log(`  ${label}: Crosswatch ×${plan.runs} (cold, warm ×${PLAN.warmQueries}; cold, refresh ×${PLAN.refreshQueries}) [${elapsed()}]`);
  const crosswatch: CrosswatchSamples = {
    cold: [],
    coldTenantMs: [],
    warm: [],
    refresh: [],
    coldCalls: [],
    warmCalls: [],
    refreshCalls: [],
    tokensPerTenantPerLifetime: [],
    appStartMs: [],
    totalCount: 0,
  };
  const startApp = async (freshnessSeconds: number) => {
    const app = await server.call<{ url: string; startMs: number }>("startApp", { freshnessSeconds, operationTimeoutMs: MEASURED_DEADLINE_MS } satisfies AppParams);
    crosswatch.appStartMs.push(app.startMs);
    await sandboxChild.call("reset");
    return app.url;
  };
  for (let i = 0; i < plan.runs; i++) {
    // Warm: a long freshness bound, so every repeat is served from the cache.
    let url = await startApp(3600);
    const cold = await query(url, ids, { fromCache: 0 });
    crosswatch.cold.push(cold.ms);
    crosswatch.coldTenantMs.push(cold.tenantMs);
    crosswatch.totalCount = cold.totalCount;
    crosswatch.coldCalls.push(await calls(tenants));
    await sandboxChild.call("reset");
    for (let w = 0; w < PLAN.warmQueries; w++) crosswatch.warm.push((await query(url, ids, { fromCache: tenants.length })).ms);
    crosswatch.warmCalls.push(perQuery(await calls(tenants), PLAN.warmQueries));
    if (i === plan.runs - 1 && onWarmApp) await onWarmApp(url);

    // Refresh: freshness 0, so every query after the first finds each tenant stale.
    url = await startApp(0);
    const cold2 = await query(url, ids, { fromCache: 0 });
    crosswatch.cold.push(cold2.ms);
    crosswatch.coldTenantMs.push(cold2.tenantMs);
    const coldCalls = await calls(tenants);
    crosswatch.coldCalls.push(coldCalls);
    let lifetimeTokens = coldCalls.tokens;
    for (let r = 0; r < PLAN.refreshQueries; r++) {
      await sandboxChild.call("reset");
      crosswatch.refresh.push((await query(url, ids, { fromCache: 0 })).ms);
      const refreshCalls = await calls(tenants);
      crosswatch.refreshCalls.push(refreshCalls);
      lifetimeTokens += refreshCalls.tokens;
    }
    crosswatch.tokensPerTenantPerLifetime.push(lifetimeTokens / tenants.length);
  }
  await server.call("stopApp");
  return { latency, bound, boundTenantMs, boundOnCrosswatchDispatcher, script, crosswatch };
}

/** Closed-loop load on the warm app (incidents, then `{ __typename }`), then on a bare Apollo Server. */
async function measureThroughput(server: Child, url: string, tenants: Tenant[]): Promise<CaseResult["throughput"]> {
  const options = { connections: PLAN.loadConnections, durationMs: PLAN.loadMs, warmupMs: Math.min(500, PLAN.loadMs / 2) };
  const ids = tenants.map((t) => t.id);
  await sandboxChild.call("reset");
  const crosswatch = await load(url, { query: INCIDENTS_QUERY, variables: { ids } }, options);
  const during = await calls(tenants);
  const crosswatchTypename = await load(url, { query: "{ __typename }" }, options);
  const bare = await server.call<{ url: string }>("startBare");
  const bareApollo = await load(bare.url, { query: "{ __typename }" }, options);
  await server.call("stopBare");
  return { crosswatch, crosswatchTypename, bareApollo, tokensDuringLoad: during.tokens, listsDuringLoad: during.lists };
}

/** One `incidents(tenantIds:)` query, timed from send to the last byte; checks every tenant came back ok. */
async function query(baseUrl: string, ids: string[], expect: { fromCache?: number; strict?: boolean } = {}): Promise<QueryResult> {
  const t0 = performance.now();
  const response = await request(`${baseUrl}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query: INCIDENTS_QUERY, variables: { ids } }),
  });
  const text = await response.body.text();
  const elapsedMs = performance.now() - t0;
  const body = JSON.parse(text) as {
    data?: { incidents: { totalCount: number; tenantOutcomes: { ok: boolean; fromCache: boolean; durationMs: number; error: { code: string } | null }[] } };
    errors?: unknown[];
  };
  if (response.statusCode !== 200 || body.errors || !body.data) throw new Error(`query failed: HTTP ${response.statusCode} ${text.slice(0, 500)}`);
  const outcomes = body.data.incidents.tenantOutcomes;
  const errors: Record<string, number> = {};
  for (const o of outcomes) if (o.error) errors[o.error.code] = (errors[o.error.code] ?? 0) + 1;
  const result = {
    ms: elapsedMs,
    tenantMs: tenantTimes(outcomes.map((o) => o.durationMs)),
    totalCount: body.data.incidents.totalCount,
    ok: outcomes.filter((o) => o.ok).length,
    fromCache: outcomes.filter((o) => o.fromCache).length,
    outcomes: outcomes.length,
    errors,
  };
  if (result.ok !== ids.length && expect.strict !== false) {
    throw new Error(`only ${result.ok} of ${ids.length} tenants ok after ${ms(elapsedMs)}: ${JSON.stringify(errors)}`);
  }
  if (expect.fromCache !== undefined && result.fromCache !== expect.fromCache) {
    throw new Error(`${result.fromCache} of ${ids.length} tenants from cache, expected ${expect.fromCache}`);
  }
  return result;
}

/** Upstream calls since the last reset, summed over the queried tenants. */
async function calls(tenants: Tenant[]): Promise<Calls> {
  const snapshot = await sandboxChild.call<CounterSnapshot>("counters");
  let tokens = 0;
  let lists = 0;
  for (const t of tenants) {
    const c = snapshot.byTenant[t.id] ?? {};
    tokens += c.token ?? 0;
    lists += (c["defender.list"] ?? 0) + (c["graph.list"] ?? 0);
  }
  return { tokens, lists, total: snapshot.total, throttled: snapshot.throttled };
}

function perQuery(c: Calls, queries: number): Calls {
  return { tokens: c.tokens / queries, lists: c.lists / queries, total: c.total / queries, throttled: c.throttled / queries };
}

/** The script's time at N from its per-tenant time at the largest smaller N it ran at. */
function extrapolateScript(earlier: CaseResult[], which: "fixed" | "spread", tenants: number): number | undefined {
  for (const c of [...earlier].reverse()) {
    const samples = c[which]?.script;
    if (samples && samples.length > 0) return (median(samples) / c.queried) * tenants;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------

function report(cases: CaseResult[]): void {
  const header = (list: CaseResult[]) => ["", ...list.map((c) => `${c.tenants} tenants (${c.queried} queried)`)];
  const row = (label: string, f: (c: CaseResult) => string, list = cases) => [label, ...list.map(f)];
  const script = (l: LatencyCase) => (l.script.length > 0 ? median(l.script) : l.scriptEstimateMs);
  const scriptLabel = (l: LatencyCase) => (l.script.length > 0 ? ms(median(l.script)) : l.scriptEstimateMs ? `~${ms(l.scriptEstimateMs)} (extrapolated)` : "–");
  const times = (t: TenantTimes[] | undefined) =>
    t && t.length ? [median(t.map((x) => x.first)), median(t.map((x) => x.median)), median(t.map((x) => x.last))].map((v) => fixed(v)).join(" / ") : "–";
  const callsText = (c: Calls[] | undefined, queried: number) => {
    if (!c || c.length === 0) return "–";
    return `${fixed(median(c.map((x) => x.tokens)) / queried)} / ${fixed(median(c.map((x) => x.lists)) / queried)}`;
  };
  const latencyRows = (list: CaseResult[], l: (c: CaseResult) => LatencyCase | undefined) =>
    latencyRowsOf(l).map(([label, f]) => row(label, f, list));
  const latencyRowsOf = (l: (c: CaseResult) => LatencyCase | undefined): [string, (c: CaseResult) => string][] => [
    ["bound: parallel token + list", (c) => ms(l(c) && median(l(c)!.bound))],
    ["  tenants done: first / median / last", (c) => times(l(c)?.boundTenantMs)],
    ["bound on Crosswatch's dispatcher", (c) => ms(l(c) && median(l(c)!.boundOnCrosswatchDispatcher))],
    ["script: tenant after tenant", (c) => (l(c) ? scriptLabel(l(c)!) : "–")],
    ["Crosswatch cold", (c) => ms(l(c) && median(l(c)!.crosswatch.cold))],
    ["  tenants done: first / median / last", (c) => times(l(c)?.crosswatch.coldTenantMs)],
    ["Crosswatch warm", (c) => ms(l(c) && median(l(c)!.crosswatch.warm))],
    ["Crosswatch refresh (stale cache)", (c) => ms(l(c) && median(l(c)!.crosswatch.refresh))],
    ["cold / best bound (target ≤ 1.25)", (c) => ratio(l(c) && median(l(c)!.crosswatch.cold), l(c) && bestBound(l(c)!))],
    ["cold / bound on Crosswatch's dispatcher", (c) => ratio(l(c) && median(l(c)!.crosswatch.cold), l(c) && median(l(c)!.boundOnCrosswatchDispatcher))],
    ["script / cold (target ≥ 50 at 100)", (c) => ratio(l(c) && script(l(c)!), l(c) && median(l(c)!.crosswatch.cold))],
    ["calls/tenant cold: tokens / lists", (c) => callsText(l(c)?.crosswatch.coldCalls, c.queried)],
    ["calls/tenant warm: tokens / lists", (c) => callsText(l(c)?.crosswatch.warmCalls, c.queried)],
    ["calls/tenant refresh: tokens / lists", (c) => callsText(l(c)?.crosswatch.refreshCalls, c.queried)],
  ];
  log(`\nMedians, sandbox latency 100 ms fixed; first: 50; ${INCIDENTS_PER_TENANT} incidents per tenant`);
  log(
    table(header(cases), [
      ...latencyRows(cases, (c) => c.fixed),
      row("tokens/tenant per app lifetime", (c) => fixed(median(c.fixed.crosswatch.tokensPerTenantPerLifetime))),
      row("first query of a process, 20 s deadline", (c) => `${ms(c.firstQuery.ms)}, ${c.firstQuery.ok} ok`),
      row("warm throughput, incidents query", (c) => `${fixed(c.throughput.crosswatch.requestsPerSecond)} req/s`),
      row("  p50 / p99 under load", (c) => `${ms(c.throughput.crosswatch.p50Ms)} / ${ms(c.throughput.crosswatch.p99Ms)}`),
      row("Crosswatch { __typename }", (c) => `${fixed(c.throughput.crosswatchTypename.requestsPerSecond)} req/s`),
      row("bare Apollo { __typename }", (c) => `${fixed(c.throughput.bareApollo.requestsPerSecond)} req/s`),
      row("warm throughput / bare (target ≥ 0.5)", (c) => ratio(c.throughput.crosswatch.requestsPerSecond, c.throughput.bareApollo.requestsPerSecond)),
      row("upstream calls during load", (c) => `${c.throughput.tokensDuringLoad + c.throughput.listsDuringLoad}`),
      row("server RSS before / after registry", (c) => `${mb(c.memory.rssBeforeStore)} / ${mb(c.memory.rssAfterStore)}`),
      row("server after GC, warm: RSS / heap / ext.", (c) => `${mb(c.memory.retainedRss)} / ${mb(c.memory.retainedHeapUsed)} / ${mb(c.memory.retainedExternal)}`),
      row("server peak: RSS / JS heap", (c) => `${mb(c.memory.peakRss)} / ${mb(c.memory.peakHeapUsed)}`),
    ]),
  );
  const withSpread = cases.filter((c) => c.spread);
  if (withSpread.length > 0) {
    log(`\nMedians, sandbox latency log-normal, median 80 ms / p95 400 ms`);
    log(table(header(withSpread), latencyRows(withSpread, (c) => c.spread)));
  }
  log("\nTargets (issue 8; goals, not gates)");
  for (const t of targets(cases)) log(`  ${t.met === null ? "n/a   " : t.met ? "met   " : "MISSED"}  ${t.target}: ${t.value}`);
}

interface TargetStatus {
  target: string;
  value: string;
  /** null when this run has no case to judge it by. */
  met: boolean | null;
}

/**
 * The bound a target is judged by: the faster of the two bare rounds. With 1,000 connections at once the
 * sandbox's event loop can thrash, and the round on 64 connections then finishes first.
 */
function bestBound(l: LatencyCase): number {
  return Math.min(median(l.bound), median(l.boundOnCrosswatchDispatcher));
}

/** Where each target of issue 8 stands in this run (at 100 ms fixed latency). */
function targets(cases: CaseResult[]): TargetStatus[] {
  const at = (n: number) => cases.find((c) => c.tenants === n);
  const out: TargetStatus[] = [];
  const judge = (target: string, values: [string, number | undefined][], ok: (v: number) => boolean, format: (v: number) => string) => {
    const known = values.filter((v): v is [string, number] => v[1] !== undefined && Number.isFinite(v[1]));
    out.push({
      target,
      value: known.length ? known.map(([label, v]) => `${format(v)}${label ? ` at ${label}` : ""}`).join(", ") : "not measured in this run",
      met: known.length ? known.every(([, v]) => ok(v)) : null,
    });
  };
  const times = (v: number) => `${fixed(v)}×`;
  const coldOverBound = (c: CaseResult | undefined) => c && median(c.fixed.crosswatch.cold) / bestBound(c.fixed);
  judge("cold ≤ 1.25× the best bound at 100 and 1,000 tenants", [["100", coldOverBound(at(100))], ["1,000", coldOverBound(at(1000))]], (v) => v <= 1.25, times);
  const c100 = at(100);
  const script100 = c100 && (c100.fixed.script.length ? median(c100.fixed.script) : c100.fixed.scriptEstimateMs);
  judge("cold ≥ 50× faster than the script at 100", [["100", c100 && script100 !== undefined ? script100 / median(c100.fixed.crosswatch.cold) : undefined]], (v) => v >= 50, times);
  const w10 = at(10);
  const w1000 = at(1000);
  judge("warm(1,000) ≤ 2× warm(10)", [["", w10 && w1000 ? median(w1000.fixed.crosswatch.warm) / median(w10.fixed.crosswatch.warm) : undefined]], (v) => v <= 2, times);
  const perTenant = (f: (c: CaseResult) => number[]) => cases.map((c): [string, number] => [String(c.tenants), Math.max(...f(c))]);
  judge(
    "zero upstream calls when warm (max per query, and during load)",
    perTenant((c) => [...c.fixed.crosswatch.warmCalls.map((x) => x.tokens + x.lists), c.throughput.tokensDuringLoad + c.throughput.listsDuringLoad]),
    (v) => v === 0,
    (v) => `${v}`,
  );
  judge(
    "one delta call per stale tenant, no token (max per tenant and refresh)",
    perTenant((c) => c.fixed.crosswatch.refreshCalls.map((x) => (x.lists + x.tokens) / c.queried)),
    (v) => v === 1,
    fixed,
  );
  judge("one token per tenant per token lifetime (max per app)", perTenant((c) => c.fixed.crosswatch.tokensPerTenantPerLifetime), (v) => v === 1, fixed);
  judge(
    "warm throughput ≥ ½ bare Apollo's",
    cases.map((c): [string, number] => [String(c.tenants), c.throughput.crosswatch.requestsPerSecond / c.throughput.bareApollo.requestsPerSecond]),
    (v) => v >= 0.5,
    times,
  );
  const m1000 = w1000?.memory;
  judge(
    "RSS ≤ 300 MB at 1,000 × 100 (warm after GC; peak)",
    [["warm", m1000?.retainedRss], ["peak", m1000?.peakRss]],
    (v) => v <= 300 * 2 ** 20,
    mb,
  );
  return out;
}

function reportReplicas(result: ReplicasResult | { skipped: string } | undefined): void {
  if (!result) return;
  if ("skipped" in result) {
    log(`\nreplicas: skipped (${result.skipped})`);
    return;
  }
  log(`\nReplicas on PostgreSQL + Redis, ${result.tenants} tenants, warm incidents query:`);
  log(
    table(["", "req/s", "p50", "p99", "errors"], [
      ["one replica", fixed(result.oneReplica.requestsPerSecond), ms(result.oneReplica.p50Ms), ms(result.oneReplica.p99Ms), String(result.oneReplica.errors)],
      ["two replicas", fixed(result.twoReplicas.requestsPerSecond), ms(result.twoReplicas.p50Ms), ms(result.twoReplicas.p99Ms), String(result.twoReplicas.errors)],
      ["two / one", ratio(result.twoReplicas.requestsPerSecond, result.oneReplica.requestsPerSecond), "", "", ""],
    ]),
  );
  const s = result.sustained;
  log(
    `Sustained load on both replicas, ${s.seconds} s, freshness ${s.freshnessSeconds} s, ${s.queries} queries: list calls per tenant per minute ` +
      `median ${fixed(s.listsPerTenantPerMinute.median)}, max ${fixed(s.listsPerTenantPerMinute.max)} (budget ${s.budgetPerMinute}/min: ` +
      `${s.listsPerTenantPerMinute.max <= s.budgetPerMinute ? "within" : "OVER"}); tokens per tenant ${fixed(s.tokensPerTenant)}; throttled ${s.throttled}`,
  );
}

async function save(
  cases: CaseResult[],
  conditions: Record<string, unknown>,
  replicas?: ReplicasResult | { skipped: string },
  liveness?: LivenessResult,
  hunting?: HuntingResult,
): Promise<void> {
  let commit = "unknown";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
  } catch {
    // not a git checkout
  }
  const at = new Date();
  const document = {
    at: at.toISOString(),
    commit,
    quick: QUICK,
    only: ONLY ?? null,
    machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, memoryGb: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.platform()} ${os.release()}` },
    conditions,
    plan: { ...PLAN, incidentsPerTenant: INCIDENTS_PER_TENANT, seed: SEED, latency: { fixed: FIXED, spread: SPREAD } },
    cases,
    replicas: replicas ?? null,
    liveness: liveness ?? null,
    hunting: hunting ?? null,
    targets: targets(cases),
  };
  const dir = new URL("./results/", import.meta.url);
  await mkdir(dir, { recursive: true });
  const json = `${JSON.stringify(document, null, 2)}\n`;
  // Only a full run is a record to compare commits by; a quick or partial one is kept apart (git-ignored).
  const complete = !QUICK && !ONLY;
  const name = QUICK ? "quick.json" : ONLY ? "partial.json" : "latest.json";
  await writeFile(new URL(name, dir), json);
  if (complete) await writeFile(new URL(`${at.toISOString().replace(/[:.]/g, "-")}-${commit}.json`, dir), json);
  log(`\nwritten: bench/results/${name}${complete ? " and a timestamped copy" : ""} [${elapsed()}]`);
}
