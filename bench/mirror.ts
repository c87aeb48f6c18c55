import { randomBytes } from "node:crypto";
import pg from "pg";
import { request } from "undici";
import { DEFAULT_RATE_LIMITS } from "../src/defender/rate-budget.js";
import type { CounterSnapshot } from "../src/sandbox/context.js";
import { createDispatcher } from "../src/http/dispatcher.js";
import { load, type LoadResult } from "./load.js";
import { answers } from "./replicas.js";
import { sandboxToken } from "./upstream.js";
import { startChild, type Child } from "./rpc.js";
import type { SandboxInfo } from "./sandbox-process.js";
import type { AppParams } from "./server-process.js";
import { fixed, mb, median, ms, ratio, table } from "./stats.js";

/**
 * The incident mirror and its sync engine (issue 14), measured against the sandbox:
 *
 * - **sync bound**: what the upstream allows a cold fleet — every tenant's token, then its list pages as
 *   Crosswatch asks for them (watermark filter, `$orderby`, `$top=100`; Graph 50), JSON parsed, over 64
 *   connections (Crosswatch's cap on calls in flight), all tenants at once, bare undici;
 * - **fleet** (PGlite in a data directory, then PostgreSQL): the server's RSS with the registry open and an
 *   empty mirror; a cold start — the first query at the default 20 s deadline (what it answers), then the
 *   time until every tenant's first load is complete (beside the bound); warm `incidents(first: 50)` at N
 *   and at 10 tenants (p50 of sequential queries) and under the closed-loop load generator; one query with
 *   `maxAgeSeconds: 0` (every tenant stale: one delta call each); RSS with the mirror full, after GC;
 * - **restart** (PGlite): a new server process on the same data directory, mirror synced within the
 *   freshness bound: the first query over every tenant and the upstream calls it and the engine make;
 * - **large tenant**: one tenant of 20,000 incidents added to the sandbox — how long its first query
 *   waits for a page, the pace of its first load against the 50-list-calls-a-minute budget, and whether any
 *   list URL was asked twice;
 * - **one million incidents** (`BENCH_MILLION=1`): 1,000 tenants × 1,000 incidents seeded straight into a
 *   PGlite mirror with IncidentMirror.put (no sandbox calls), then a new server process on it: RSS, queries.
 *
 * Upstream calls come from the sandbox's counters; sandbox and server CPU from their processes.
 */

export interface MirrorPlan {
  /** Fleet size: the sandbox's first N tenants (the readable ones are queried). */
  tenants: number;
  incidentsPerTenant: number;
  /** The small case the warm p50 is compared with. */
  smallTenants: number;
  warmQueries: number;
  loadMs: number;
  loadConnections: number;
  /** Longest wait for a cold fleet's syncs to complete before the bench queries to finish them. */
  syncCapMs: number;
  largeIncidents: number;
  /** How long the large tenant's first load is watched (0: until complete). */
  largeObserveMs: number;
  million: { tenants: number; perTenant: number } | null;
  postgres: boolean;
  /** Sections left out (BENCH_SKIP): `bound`, `pglite` (and with it `restart`), `postgres`, `large`. */
  skip: string[];
}

export function mirrorPlan(quick: boolean): MirrorPlan {
  const million = process.env.BENCH_MILLION === "1";
  const largeFull = process.env.BENCH_LARGE_FULL === "1";
  return quick
    ? {
        tenants: 50,
        incidentsPerTenant: 100,
        smallTenants: 10,
        warmQueries: 10,
        loadMs: 1_500,
        loadConnections: 8,
        syncCapMs: 60_000,
        largeIncidents: 2_000,
        largeObserveMs: largeFull ? 0 : 15_000,
        million: million ? { tenants: 50, perTenant: 1_000 } : null,
        postgres: true,
        skip: [],
      }
    : {
        tenants: 1000,
        incidentsPerTenant: 100,
        smallTenants: 10,
        warmQueries: 20,
        loadMs: 4_000,
        loadConnections: 8,
        syncCapMs: 240_000,
        largeIncidents: 20_000,
        largeObserveMs: largeFull ? 0 : 75_000,
        million: million ? { tenants: 1000, perTenant: 1_000 } : null,
        postgres: true,
        skip: [],
      };
}

/**
 * The freshness bound of the warm and restarted apps: long, so the data a fleet synced stays fresh through
 * the measurements and the restart. Their quiet-poll ceiling (INCIDENT_SYNC_QUIET_SECONDS, default 300 s)
 * is raised to match: below the bound, the engine would poll fresh tenants every 5 minutes.
 */
const FRESHNESS_SECONDS = 3600;
const LONG_QUIET = { INCIDENT_SYNC_QUIET_SECONDS: String(FRESHNESS_SECONDS) };
/** The cold app runs as deployed: the default freshness bound (its transient-failure retry interval too). */
const COLD_FRESHNESS_SECONDS = 30;
const LATENCY_MS = 100;
/** Crosswatch's cap on upstream calls in flight (rate-budget.ts) and its dispatcher's connections per origin. */
const IN_FLIGHT = 64;
const DEFENDER_PAGE = 100;
const GRAPH_PAGE = 50;
const WINDOW_DAYS = 90;

/** The warm query of the targets (as the earlier benches asked it). */
export const INCIDENTS_QUERY = `query($ids: [ID!]) {
  incidents(tenantIds: $ids, first: 50) {
    totalCount
    edges { node { tenantId incidentId severity lastUpdateTime } }
    tenantOutcomes { tenantId ok fromCache durationMs error { code } }
  }
}`;

/** The same with each tenant's sync state, for the cold, refresh and restart queries. */
const OUTCOMES_QUERY = `query($ids: [ID!], $first: Int, $maxAge: Int) {
  incidents(tenantIds: $ids, first: $first, maxAgeSeconds: $maxAge) {
    totalCount
    edges { node { tenantId incidentId } }
    tenantOutcomes { tenantId ok fromCache complete syncState incidentsMirrored durationMs error { code } }
  }
}`;

type Tenant = SandboxInfo["tenants"][number];

interface Outcome {
  tenantId: string;
  ok: boolean;
  fromCache: boolean;
  complete: boolean;
  syncState: string | null;
  incidentsMirrored: number | null;
  durationMs: number;
  error: { code: string } | null;
}

/** One query's answer, summed up. */
export interface Answer {
  ms: number;
  edges: number;
  totalCount: number;
  tenants: number;
  ok: number;
  /** Tenants whose incidents the answer could show (incidentsMirrored > 0). */
  withData: number;
  complete: number;
  bySyncState: Record<string, number>;
  errors: Record<string, number>;
}

export interface Memory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  /** external − arrayBuffers: WebAssembly memory, i.e. mostly PGlite's. */
  wasm: number;
  peakRss: number;
  peakHeapUsed: number;
  maxRssKb: number;
}

interface Calls {
  /** Token and list calls of the measured tenants. */
  tokens: number;
  lists: number;
  /** Measured tenants that received any call. */
  tenantsCalled: number;
  /** Every call the sandbox counted, and by endpoint. */
  total: number;
  byEndpoint: Record<string, number>;
  throttled: number;
}

export interface SyncBound {
  tenants: number;
  ms: number;
  tokens: number;
  lists: number;
  /** ceil(calls / 64) × latency: the budget's cap on calls in flight and the latency alone, no CPU anywhere. */
  modelMs: number;
  /** Sandbox CPU over the round's wall time (1.0: one core busy the whole time). */
  sandboxCpuShare: number;
}

export interface FleetResult {
  store: "pglite" | "postgres";
  tenants: number;
  /** Server process: after start-up (node, modules), then with the registry open (PGlite: its WASM heap). */
  baseline: Memory;
  storeOpen: { ms: number; memory: Memory };
  /** An app started without the sync engine, after a short `{ __typename }` load and GC: the empty mirror. */
  empty: Memory;
  cold: {
    firstQuery: Answer;
    /** Tenants with a first page in the mirror right after that answer (sync state rows). */
    withDataAtAnswer: number;
    /** From the first query's send until every tenant's first load was complete (null: not within the cap). */
    syncMs: number | null;
    /** Tenants complete when the wait ended, and failing ones by then. */
    completeAtEnd: number;
    failingAtEnd: number;
    /** When the background syncs did not complete them all: queries (as a client polling would send) until they did. */
    finishedByQueries: { queries: number; ms: number; complete: number } | null;
    calls: Calls;
    pagesRead: number;
    incidentsMirrored: number;
    sandboxCpuShare: number;
    serverCpuShare: number;
  };
  warm: {
    p50Ms: number;
    p50SmallMs: number;
    samples: number[];
    samplesSmall: number[];
    load: LoadResult;
    loadSmall: LoadResult;
    /** Server CPU over the wall time of the load at N tenants. */
    serverCpuShare: number;
    /** Upstream calls during the warm queries and both loads. */
    calls: Calls;
  };
  /** Two queries with maxAgeSeconds: 0 in a row (`first` takes the app's tokens); the second. */
  refresh: { first: { answer: Answer; calls: Calls }; answer: Answer; calls: Calls };
  /** Token calls per tenant over the cold app's life (first query, syncs, background deltas). */
  tokensPerTenant: number;
  /** The same over the warm app's life (warm queries, loads, the maxAgeSeconds: 0 query). */
  tokensPerTenantWarmApp: number;
  /** After the syncs completed (GC), and after the warm loads and refresh (GC). */
  fullAfterSync: Memory;
  full: Memory;
}

export interface RestartResult {
  tenants: number;
  storeOpen: { ms: number };
  firstQuery: Answer;
  /** Upstream calls from the new app's start through the first query and three engine ticks. */
  calls: Calls;
  engineTicks: number;
  memory: Memory;
}

export interface LargeResult {
  incidents: number;
  generatedMs: number;
  firstQuery: Answer;
  /** When the mirror first held a page of the tenant (its sync state, polled every 20 ms during the query). */
  firstPageMs: number | null;
  /** How long the tenant's first load was watched, and whether it completed by then. */
  observedMs: number;
  completeMs: number | null;
  incidentsMirrored: number;
  listCalls: number;
  distinctUrls: number;
  /** Most list calls within any 60 s window (the budget: 50). */
  maxPerMinute: number;
  /** Pages a complete first load takes (incidents / 100 + 1) and its bound at 50 list calls a minute. */
  pagesNeeded: number;
  budgetBoundMs: number;
  /** When the load was not watched to its end and went at the budget's pace: when it would complete at that pace. */
  projectedMs: number | null;
}

export interface MillionResult {
  tenants: number;
  perTenant: number;
  method: string;
  generatedMs: number;
  seededMs: number;
  rows: number;
  baseline: Memory;
  storeOpen: Memory;
  firstQuery: Answer;
  p50Ms: number;
  load: LoadResult;
  memory: Memory;
  calls: Calls;
}

export interface MirrorResult {
  plan: MirrorPlan;
  latencyMs: number;
  freshnessSeconds: number;
  bound?: SyncBound;
  pglite?: FleetResult;
  restart?: RestartResult;
  postgres?: FleetResult | { skipped: string };
  large?: LargeResult;
  million?: MillionResult | { skipped: string };
}

interface Context {
  sandbox: SandboxInfo;
  sandboxChild: Child;
  tenants: Tenant[];
  registryDir: string;
  plan: MirrorPlan;
  log: (line: string) => void;
  elapsed: () => string;
}

// ---------------------------------------------------------------------------------------------------

export async function measureMirror(options: Omit<Context, "tenants">): Promise<MirrorResult> {
  const { sandbox, sandboxChild, plan, log, elapsed } = options;
  const tenants = sandbox.tenants.slice(0, plan.tenants).filter((t) => t.readable);
  const ctx: Context = { ...options, tenants };
  const result: MirrorResult = { plan, latencyMs: LATENCY_MS, freshnessSeconds: FRESHNESS_SECONDS };
  await sandboxChild.call("setLatency", { fixedMs: LATENCY_MS });

  const skip = new Set(plan.skip);
  if (!skip.has("bound")) {
    log(`\nsync bound: ${tenants.length} tenants, token + list pages each, ${IN_FLIGHT} connections, bare undici [${elapsed()}]`);
    result.bound = await syncBound(ctx);
    log(`  ${ms(result.bound.ms)} (${result.bound.tokens} tokens, ${result.bound.lists} lists; sandbox CPU ${pct(result.bound.sandboxCpuShare)} of the wall time)`);
  }

  if (!skip.has("pglite")) {
    log(`\nfleet on PGlite (${ctx.registryDir.replace(/.*\//, "…/")}): ${tenants.length} tenants × ${plan.incidentsPerTenant} incidents [${elapsed()}]`);
    result.pglite = await measureFleet(ctx, "pglite", { dataDir: ctx.registryDir });
    log(`\nrestart on the same PGlite directory [${elapsed()}]`);
    result.restart = await measureRestart(ctx);
  }

  if (plan.postgres && !skip.has("postgres")) {
    const databaseUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
    if (!(await answers(databaseUrl.replace(/^postgres(ql)?:/, "http:")))) {
      result.postgres = { skipped: `PostgreSQL (${new URL(databaseUrl).host}) does not answer: set BENCH_DATABASE_URL` };
      log(`\nfleet on PostgreSQL: skipped (${result.postgres.skipped})`);
    } else {
      log(`\nfleet on PostgreSQL (a fresh schema): ${tenants.length} tenants [${elapsed()}]`);
      result.postgres = await withSchema(databaseUrl, (url) => measureFleet(ctx, "postgres", { databaseUrl: url }));
    }
  }

  if (!skip.has("large")) {
    log(`\nlarge tenant: ${plan.largeIncidents.toLocaleString("en-US")} incidents [${elapsed()}]`);
    result.large = await measureLarge(ctx);
  }

  if (plan.million) {
    log(`\none million: ${plan.million.tenants} tenants × ${plan.million.perTenant} incidents seeded into PGlite [${elapsed()}]`);
    result.million = await measureMillion(ctx, plan.million);
  } else {
    result.million = { skipped: "BENCH_MILLION=1 runs it (seeding takes minutes)" };
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------
// The bound

/**
 * Every tenant's token, then its list pages as Crosswatch reads them (oldest first from the window's start,
 * each next page from the last item's time skipping the one already seen), until a short page; all at once
 * over 64 connections. JSON parsed, nothing kept.
 */
async function syncBound(ctx: Context): Promise<SyncBound> {
  const { sandbox, tenants } = ctx;
  const dispatcher = createDispatcher({ trustedCaPem: [sandbox.caCertPem], connectTimeoutMs: 120_000, connectionsPerOrigin: IN_FLIGHT });
  await ctx.sandboxChild.call("reset");
  const cpu0 = await cpuOf(ctx.sandboxChild);
  const t0 = performance.now();
  let tokens = 0;
  let lists = 0;
  try {
    const windowStart = new Date(Date.now() - WINDOW_DAYS * 86_400_000);
    await Promise.all(
      tenants.map(async (tenant) => {
        const token = await sandboxToken(sandbox, tenant, dispatcher);
        tokens++;
        const field = tenant.defender ? "lastUpdateTime" : "lastUpdateDateTime";
        const top = tenant.defender ? DEFENDER_PAGE : GRAPH_PAGE;
        const base = tenant.defender ? `${sandbox.url}/api/incidents` : `${sandbox.url}/v1.0/security/incidents`;
        let since = windowStart.toISOString();
        let skip = 0;
        for (;;) {
          const params = [`$top=${top}`, `$filter=${encodeURIComponent(`${field} ge ${since}`)}`, `$orderby=${encodeURIComponent(`${field} asc`)}`];
          if (skip > 0) params.push(`$skip=${skip}`);
          const answer = await request(`${base}?${params.join("&")}`, { dispatcher, headers: { authorization: `Bearer ${token}` } });
          const page = (await answer.body.json()) as { value?: Record<string, unknown>[] };
          lists++;
          if (answer.statusCode !== 200 || !Array.isArray(page.value)) throw new Error(`bound: list of ${tenant.id} answered ${answer.statusCode}`);
          if (page.value.length < top) break;
          const last = String(page.value.at(-1)![field]);
          since = last;
          skip = page.value.filter((i) => i[field] === last).length;
        }
      }),
    );
  } finally {
    await dispatcher.close();
  }
  const wall = performance.now() - t0;
  const cpu1 = await cpuOf(ctx.sandboxChild);
  return {
    tenants: tenants.length,
    ms: wall,
    tokens,
    lists,
    modelMs: Math.ceil((tokens + lists) / IN_FLIGHT) * LATENCY_MS,
    sandboxCpuShare: (cpu1 - cpu0) / wall,
  };
}

// ---------------------------------------------------------------------------------------------------
// A fleet

async function measureFleet(ctx: Context, kind: "pglite" | "postgres", storeAt: { dataDir?: string; databaseUrl?: string }): Promise<FleetResult> {
  const { tenants, plan, log, elapsed, sandboxChild } = ctx;
  const ids = tenants.map((t) => t.id);
  const small = ids.slice(0, plan.smallTenants);
  const server = await startChild("./server-process.ts", ["--expose-gc"]);
  try {
    const baseline = await server.call<Memory>("memory", { gc: true });
    const init = await server.call<{ storeMs: number }>("init", { sandbox: ctx.sandbox, ...storeAt, register: ctx.sandbox.tenants.slice(0, plan.tenants) });
    const storeOpen = { ms: init.storeMs, memory: await server.call<Memory>("memory", { gc: true }) };
    const emptyApp = await server.call<{ url: string }>("startApp", { freshnessSeconds: FRESHNESS_SECONDS, sync: false } satisfies AppParams);
    await load(emptyApp.url, { query: "{ __typename }" }, { connections: plan.loadConnections, durationMs: 1_000 });
    const empty = await server.call<Memory>("memory", { gc: true });
    await server.call("stopApp");
    log(
      `  server RSS: ${mb(baseline.rss)} at start, ${mb(storeOpen.memory.rss)} with the registry open (${ms(init.storeMs)}; WASM ${mb(storeOpen.memory.wasm)}), ` +
        `${mb(empty.rss)} with an app and an empty mirror [${elapsed()}]`,
    );

    // Cold: a new app as deployed (default freshness, the engine starting with it), and at once the first
    // query at the default deadline; then the background syncs, watched through the sync state.
    await server.call("resetPeak");
    await sandboxChild.call("reset");
    const sandboxCpu0 = await cpuOf(sandboxChild);
    const serverCpu0 = await cpuOf(server);
    const cold = await server.call<{ url: string }>("startApp", { freshnessSeconds: COLD_FRESHNESS_SECONDS } satisfies AppParams);
    const t0 = performance.now();
    const firstQuery = await ask(cold.url, ids, { first: 50 });
    const atAnswer = await progress(server, ids);
    log(
      `  cold: first query (default deadline) ${ms(firstQuery.ms)}: ${firstQuery.withData} of ${ids.length} tenants with data, ${firstQuery.ok} ok` +
        `${describeErrors(firstQuery.errors)}; ${atAnswer.withData} had a first page in the mirror [${elapsed()}]`,
    );
    const waited = await waitForSync(server, ids, t0, plan.syncCapMs);
    const wall = performance.now() - t0;
    const sandboxCpu = (await cpuOf(sandboxChild)) - sandboxCpu0;
    const serverCpu = (await cpuOf(server)) - serverCpu0;
    let finishedByQueries: FleetResult["cold"]["finishedByQueries"] = null;
    if (waited.syncMs === null) {
      log(`  cold: ${waited.complete} of ${ids.length} complete after ${ms(performance.now() - t0)} (${waited.failing} failing); querying until all are [${elapsed()}]`);
      finishedByQueries = await queryUntilSynced(cold.url, ids, plan.syncCapMs);
    }
    const coldCalls = await calls(sandboxChild, tenants);
    const afterSync = await progress(server, ids);
    log(
      `  cold: every first load complete ${waited.syncMs !== null ? `after ${ms(waited.syncMs)}` : finishedByQueries ? `only with ${finishedByQueries.queries} more queries (${ms(finishedByQueries.ms)})` : "NOT reached"}; ` +
        `${coldCalls.tokens} tokens, ${coldCalls.lists} lists (${afterSync.pages} pages in the sync state), ${afterSync.incidents} incidents mirrored [${elapsed()}]`,
    );
    const fullAfterSync = await server.call<Memory>("memory", { gc: true });
    await server.call("stopApp");

    // Warm: a new app with a long freshness bound (and quiet polls no more often than that), so the synced
    // mirror stays fresh and nothing syncs meanwhile; every tenant FRESH first, through the outcomes.
    const app = await server.call<{ url: string }>("startApp", { freshnessSeconds: FRESHNESS_SECONDS, env: LONG_QUIET } satisfies AppParams);
    await sandboxChild.call("reset");
    const fresh = await queryUntilSynced(app.url, ids, 60_000);
    const samples = await timed(app.url, ids, plan.warmQueries);
    const samplesSmall = await timed(app.url, small, plan.warmQueries);
    const loadOptions = { connections: plan.loadConnections, durationMs: plan.loadMs, warmupMs: Math.min(500, plan.loadMs / 2) };
    const serverCpuLoad0 = await cpuOf(server);
    const loadStarted = performance.now();
    const loadN = await load(app.url, { query: INCIDENTS_QUERY, variables: { ids } }, loadOptions);
    const loadShare = ((await cpuOf(server)) - serverCpuLoad0) / (performance.now() - loadStarted);
    const loadSmall = await load(app.url, { query: INCIDENTS_QUERY, variables: { ids: small } }, loadOptions);
    const warmCalls = await calls(sandboxChild, tenants);
    log(
      `  warm (${fresh.complete} of ${ids.length} FRESH): p50 ${ms(median(samples))} at ${ids.length}, ${ms(median(samplesSmall))} at ${small.length}; ` +
        `${fixed(loadN.requestsPerSecond)} req/s at ${ids.length} (p50 ${ms(loadN.p50Ms)}, ${loadN.errors} errors, server CPU ${pct(loadShare)}), ` +
        `${fixed(loadSmall.requestsPerSecond)} req/s at ${small.length}; upstream calls ${warmCalls.tokens + warmCalls.lists} for the queried tenants, ` +
        `${warmCalls.total - warmCalls.tokens - warmCalls.lists} others [${elapsed()}]`,
    );

    // Every tenant stale for one query (maxAgeSeconds: 0): one delta each. Twice: the first takes this app's
    // tokens (its first upstream calls), the second shows the steady state.
    await sandboxChild.call("reset");
    const firstRefresh = await ask(app.url, ids, { first: 50, maxAge: 0 });
    const firstRefreshCalls = await calls(sandboxChild, tenants);
    await sandboxChild.call("reset");
    const refresh = await ask(app.url, ids, { first: 50, maxAge: 0 });
    const refreshCalls = await calls(sandboxChild, tenants);
    log(
      `  maxAgeSeconds: 0 over ${ids.length}, twice: ${ms(firstRefresh.ms)} then ${ms(refresh.ms)}, ${refresh.ok} ok${describeErrors(refresh.errors)}; ` +
        `per tenant ${fixed(firstRefreshCalls.lists / ids.length)} then ${fixed(refreshCalls.lists / ids.length)} lists, ` +
        `${fixed(firstRefreshCalls.tokens / ids.length)} then ${fixed(refreshCalls.tokens / ids.length)} tokens [${elapsed()}]`,
    );
    const full = await server.call<Memory>("memory", { gc: true });
    log(`  server RSS with the mirror full: ${mb(fullAfterSync.rss)} after the syncs, ${mb(full.rss)} after the loads (GC; WASM ${mb(full.wasm)}); peak ${mb(full.peakRss)}`);
    await server.call("stopApp");
    return {
      store: kind,
      tenants: ids.length,
      baseline,
      storeOpen,
      empty,
      cold: {
        firstQuery,
        withDataAtAnswer: atAnswer.withData,
        syncMs: waited.syncMs,
        completeAtEnd: waited.complete,
        failingAtEnd: waited.failing,
        finishedByQueries,
        calls: coldCalls,
        pagesRead: afterSync.pages,
        incidentsMirrored: afterSync.incidents,
        sandboxCpuShare: sandboxCpu / wall,
        serverCpuShare: serverCpu / wall,
      },
      warm: { p50Ms: median(samples), p50SmallMs: median(samplesSmall), samples, samplesSmall, load: loadN, loadSmall, serverCpuShare: loadShare, calls: warmCalls },
      refresh: { first: { answer: firstRefresh, calls: firstRefreshCalls }, answer: refresh, calls: refreshCalls },
      tokensPerTenant: coldCalls.tokens / ids.length,
      tokensPerTenantWarmApp: (warmCalls.tokens + firstRefreshCalls.tokens + refreshCalls.tokens) / ids.length,
      fullAfterSync,
      full,
    };
  } finally {
    await server.close();
  }
}

interface Progress {
  tenants: number;
  withData: number;
  complete: number;
  fresh: number;
  failing: number;
  pages: number;
  incidents: number;
}

function progress(server: Child, ids: string[]): Promise<Progress> {
  return server.call<Progress>("progress", { tenantIds: ids, freshnessMs: FRESHNESS_SECONDS * 1000 });
}

/** Polls the sync state until every tenant's first load is complete, nothing moved for 75 s (retries come after 30 s), or the cap. */
async function waitForSync(server: Child, ids: string[], t0: number, capMs: number): Promise<{ syncMs: number | null; complete: number; failing: number }> {
  let last = -1;
  let movedAt = performance.now();
  for (;;) {
    const p = await progress(server, ids);
    const now = performance.now();
    if (p.complete >= ids.length) return { syncMs: now - t0, complete: p.complete, failing: p.failing };
    if (p.complete !== last) {
      last = p.complete;
      movedAt = now;
    }
    if (now - t0 > capMs || now - movedAt > 75_000) return { syncMs: null, complete: p.complete, failing: p.failing };
    await sleep(250);
  }
}

/** Queries (first: 1) until every tenant's outcome is FRESH or complete, as a client polling would. */
async function queryUntilSynced(url: string, ids: string[], capMs: number): Promise<{ queries: number; ms: number; complete: number }> {
  const t0 = performance.now();
  let queries = 0;
  for (;;) {
    const answer = await ask(url, ids, { first: 1 });
    queries++;
    const done = answer.complete;
    if (done >= ids.length || performance.now() - t0 > capMs) return { queries, ms: performance.now() - t0, complete: done };
    await sleep(1_000);
  }
}

/** Up to `count` sequential warm queries after two unmeasured ones (at least 5, then stopping after 20 s); their times. */
async function timed(url: string, ids: string[], count: number): Promise<number[]> {
  const out: number[] = [];
  const started = performance.now();
  for (let i = 0; i < count + 2; i++) {
    const t0 = performance.now();
    await post(url, INCIDENTS_QUERY, { ids });
    if (i >= 2) out.push(performance.now() - t0);
    if (out.length >= 5 && performance.now() - started > 20_000) break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Restart

async function measureRestart(ctx: Context): Promise<RestartResult> {
  const { tenants, sandboxChild, log, elapsed } = ctx;
  const ids = tenants.map((t) => t.id);
  const server = await startChild("./server-process.ts", ["--expose-gc"]);
  try {
    const init = await server.call<{ storeMs: number }>("init", { sandbox: ctx.sandbox, dataDir: ctx.registryDir, register: [] });
    await sandboxChild.call("reset");
    const app = await server.call<{ url: string }>("startApp", { freshnessSeconds: FRESHNESS_SECONDS, env: LONG_QUIET } satisfies AppParams);
    const firstQuery = await ask(app.url, ids, { first: 50 });
    // Three ticks of the engine after the query: anything it would sync, it has started by then.
    const ticks = new Set<string>();
    const t0 = performance.now();
    while (ticks.size < 4 && performance.now() - t0 < 15_000) {
      const stats = await server.call<{ lastTickAt: string | null } | null>("engineStats");
      if (stats?.lastTickAt) ticks.add(stats.lastTickAt);
      await sleep(100);
    }
    const restartCalls = await calls(sandboxChild, tenants);
    const memory = await server.call<Memory>("memory", { gc: true });
    log(
      `  registry reopened in ${ms(init.storeMs)}; first query over ${ids.length} tenants ${ms(firstQuery.ms)}: ${firstQuery.ok} ok, ` +
        `${firstQuery.bySyncState.FRESH ?? 0} FRESH${describeErrors(firstQuery.errors)}; upstream calls through ${Math.max(0, ticks.size - 1)} more engine ticks: ` +
        `${restartCalls.lists} lists, ${restartCalls.tokens} tokens; RSS ${mb(memory.rss)} (WASM ${mb(memory.wasm)}) [${elapsed()}]`,
    );
    await server.call("stopApp");
    return { tenants: ids.length, storeOpen: { ms: init.storeMs }, firstQuery, calls: restartCalls, engineTicks: Math.max(0, ticks.size - 1), memory };
  } finally {
    await server.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// A large tenant

async function measureLarge(ctx: Context): Promise<LargeResult> {
  const { plan, sandboxChild, log, elapsed } = ctx;
  const added = await sandboxChild.call<{ tenant: Tenant; generatedMs: number }>("addTenant", { displayName: "Bench Large Tenant", incidents: plan.largeIncidents });
  const tenant = added.tenant;
  const server = await startChild("./server-process.ts");
  try {
    // Its own registry (in memory) holding this tenant alone: nothing else syncs meanwhile.
    await server.call("init", { sandbox: { ...ctx.sandbox, tenants: [tenant] }, register: [tenant] });
    const app = await server.call<{ url: string }>("startApp", { freshnessSeconds: FRESHNESS_SECONDS } satisfies AppParams);
    const t0 = performance.now();
    const t0Date = Date.now();
    // Beside the query, when the mirror first holds a page of the tenant (its sync state, polled).
    let firstPageMs: number | null = null;
    let asking = true;
    const watcher = (async () => {
      while (asking && firstPageMs === null) {
        const s = await server.call<{ pagesRead: number } | null>("tenantState", { tenantId: tenant.id });
        if (s && s.pagesRead > 0) firstPageMs = performance.now() - t0;
        else await sleep(20);
      }
    })();
    const firstQuery = await ask(app.url, [tenant.id], { first: 50 });
    asking = false;
    await watcher;
    log(
      `  first query: ${ms(firstQuery.ms)}, ${firstQuery.edges} incidents on the page, ${firstQuery.withData ? "" : "NO "}data ` +
        `(${Object.keys(firstQuery.bySyncState).join(", ")}${describeErrors(firstQuery.errors)}); first page in the mirror after ${ms(firstPageMs ?? undefined)} [${elapsed()}]`,
    );
    let completeMs: number | null = null;
    let state: { fullFetchedAt: string | null; incidentCount: number } | null = null;
    for (;;) {
      state = await server.call<{ fullFetchedAt: string | null; incidentCount: number } | null>("tenantState", { tenantId: tenant.id });
      const now = performance.now() - t0;
      if (state?.fullFetchedAt) {
        completeMs = now;
        break;
      }
      if (plan.largeObserveMs > 0 && now >= plan.largeObserveMs) break;
      await sleep(500);
    }
    const observedMs = performance.now() - t0;
    const listed = await sandboxChild.call<{ at: number; url: string }[]>("listUrls", { tenantId: tenant.id });
    const times = listed.map((l) => l.at);
    let maxPerMinute = 0;
    for (let i = 0, j = 0; i < times.length; i++) {
      while (times[i]! - times[j]! >= 60_000) j++;
      maxPerMinute = Math.max(maxPerMinute, i - j + 1);
    }
    const budget = DEFAULT_RATE_LIMITS["defender.list"][0]!.limit;
    const pagesNeeded = Math.floor(plan.largeIncidents / DEFENDER_PAGE) + 1;
    // At the budget: the first minute's calls at once, then `budget` more each minute.
    const budgetBoundMs = Math.max(0, Math.ceil(pagesNeeded / budget) - 1) * 60_000;
    // Not watched to its end: at the budget's pace each minute replays the first minute's calls (a sliding
    // window frees each slot 60 s after it was taken), so the last page comes (pages − 1) / 50 minutes after
    // the call of the same rank in the first minute.
    const k = (pagesNeeded - 1) % budget;
    const projectedMs =
      completeMs === null && maxPerMinute >= budget && times.length > k
        ? times[0]! - t0Date + Math.floor((pagesNeeded - 1) / budget) * 60_000 + (times[k]! - times[0]!)
        : null;
    const distinct = new Set(listed.map((l) => l.url)).size;
    log(
      `  ${completeMs !== null ? `complete after ${ms(completeMs)}` : `watched ${ms(observedMs)}`}: ${listed.length} list calls, ${distinct} distinct URLs, ` +
        `at most ${maxPerMinute} in any 60 s (budget ${budget}); ${state?.incidentCount ?? 0} incidents mirrored [${elapsed()}]`,
    );
    await server.call("stopApp");
    return {
      incidents: plan.largeIncidents,
      generatedMs: added.generatedMs,
      firstQuery,
      firstPageMs,
      observedMs,
      completeMs,
      incidentsMirrored: state?.incidentCount ?? 0,
      listCalls: listed.length,
      distinctUrls: distinct,
      maxPerMinute,
      pagesNeeded,
      budgetBoundMs,
      projectedMs,
    };
  } finally {
    await server.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// One million incidents

async function measureMillion(ctx: Context, size: { tenants: number; perTenant: number }): Promise<MillionResult | { skipped: string }> {
  const { sandbox, sandboxChild, log, elapsed } = ctx;
  const { mkdtemp, rm } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = await mkdtemp(join(tmpdir(), "crosswatch-bench-million-"));
  const tenants = sandbox.tenants.slice(0, size.tenants).filter((t) => t.readable && t.defender);
  const ids = tenants.map((t) => t.id);
  try {
    // Seeding in a process of its own, so the measured server starts as a deployment restarting on it would.
    const seeder = await startChild("./server-process.ts");
    let seeded: { generatedMs: number; seededMs: number; rows: number };
    try {
      await seeder.call("init", { sandbox, dataDir: dir, register: tenants });
      seeded = await seeder.call("seedMirror", { tenantIds: ids, perTenant: size.perTenant, pageSize: DEFENDER_PAGE, seed: 4242 });
      await seeder.call("closeStore");
    } finally {
      await seeder.close();
    }
    log(`  seeded ${seeded.rows.toLocaleString("en-US")} incidents in ${ms(seeded.seededMs)} (IncidentMirror.put, ${DEFENDER_PAGE} a page, no sandbox calls) [${elapsed()}]`);
    const server = await startChild("./server-process.ts", ["--expose-gc"]);
    try {
      const baseline = await server.call<Memory>("memory", { gc: true });
      await server.call("init", { sandbox, dataDir: dir, register: [] });
      const storeOpen = await server.call<Memory>("memory", { gc: true });
      await sandboxChild.call("reset");
      const app = await server.call<{ url: string }>("startApp", { freshnessSeconds: FRESHNESS_SECONDS } satisfies AppParams);
      const firstQuery = await ask(app.url, ids, { first: 50 });
      const samples = await timed(app.url, ids, 10);
      const loadResult = await load(app.url, { query: INCIDENTS_QUERY, variables: { ids } }, { connections: 8, durationMs: 4_000, warmupMs: 500 });
      const memory = await server.call<Memory>("memory", { gc: true });
      const millionCalls = await calls(sandboxChild, tenants);
      log(
        `  server: RSS ${mb(baseline.rss)} at start, ${mb(storeOpen.rss)} with the registry open, ${mb(memory.rss)} after queries and load (GC; WASM ${mb(memory.wasm)}; peak ${mb(memory.peakRss)}); ` +
          `first query ${ms(firstQuery.ms)}, warm p50 ${ms(median(samples))}, ${fixed(loadResult.requestsPerSecond)} req/s; upstream calls ${millionCalls.total} [${elapsed()}]`,
      );
      await server.call("stopApp");
      return {
        tenants: ids.length,
        perTenant: size.perTenant,
        method: "seeded with IncidentMirror.put from the sandbox's generator (one tenant's incidents, mapped, given each tenant's id), not synced through the sandbox",
        generatedMs: seeded.generatedMs,
        seededMs: seeded.seededMs,
        rows: seeded.rows,
        baseline,
        storeOpen,
        firstQuery,
        p50Ms: median(samples),
        load: loadResult,
        memory,
        calls: millionCalls,
      };
    } finally {
      await server.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------
// Helpers

async function post(url: string, query: string, variables: Record<string, unknown>): Promise<{ text: string; ms: number }> {
  const t0 = performance.now();
  const response = await request(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.body.text();
  const elapsedMs = performance.now() - t0;
  if (response.statusCode !== 200 || text.startsWith('{"errors"')) throw new Error(`query failed: HTTP ${response.statusCode} ${text.slice(0, 500)}`);
  return { text, ms: elapsedMs };
}

/** One query with the outcomes' sync state, summed up. */
async function ask(url: string, ids: string[], args: { first: number; maxAge?: number }): Promise<Answer> {
  const { text, ms: elapsedMs } = await post(url, OUTCOMES_QUERY, { ids, first: args.first, ...(args.maxAge !== undefined ? { maxAge: args.maxAge } : {}) });
  const body = JSON.parse(text) as { data?: { incidents: { totalCount: number; edges: unknown[]; tenantOutcomes: Outcome[] } }; errors?: unknown[] };
  if (!body.data || body.errors) throw new Error(`query failed: ${text.slice(0, 500)}`);
  const { tenantOutcomes, edges, totalCount } = body.data.incidents;
  const errors: Record<string, number> = {};
  const bySyncState: Record<string, number> = {};
  for (const o of tenantOutcomes) {
    if (o.error) errors[o.error.code] = (errors[o.error.code] ?? 0) + 1;
    const s = o.syncState ?? "null";
    bySyncState[s] = (bySyncState[s] ?? 0) + 1;
  }
  return {
    ms: elapsedMs,
    edges: edges.length,
    totalCount,
    tenants: tenantOutcomes.length,
    ok: tenantOutcomes.filter((o) => o.ok).length,
    withData: tenantOutcomes.filter((o) => (o.incidentsMirrored ?? 0) > 0).length,
    complete: tenantOutcomes.filter((o) => o.complete || o.syncState === "FRESH").length,
    bySyncState,
    errors,
  };
}

async function calls(sandboxChild: Child, tenants: Tenant[]): Promise<Calls> {
  const snapshot = await sandboxChild.call<CounterSnapshot>("counters");
  let tokens = 0;
  let lists = 0;
  let tenantsCalled = 0;
  for (const t of tenants) {
    const c = snapshot.byTenant[t.id];
    if (!c) continue;
    tenantsCalled++;
    tokens += c.token ?? 0;
    lists += (c["defender.list"] ?? 0) + (c["graph.list"] ?? 0);
  }
  return { tokens, lists, tenantsCalled, total: snapshot.total, byEndpoint: snapshot.byEndpoint as Record<string, number>, throttled: snapshot.throttled };
}

/** CPU time of a bench child so far, ms. */
async function cpuOf(child: Child): Promise<number> {
  const cpu = await child.call<{ userUs: number; systemUs: number }>("cpu");
  return (cpu.userUs + cpu.systemUs) / 1000;
}

function describeErrors(errors: Record<string, number>): string {
  const entries = Object.entries(errors);
  return entries.length ? ` (${entries.map(([code, n]) => `${n} ${code}`).join(", ")})` : "";
}

function describeEndpoints(byEndpoint: Record<string, number>): string {
  return Object.entries(byEndpoint)
    .map(([endpoint, n]) => `${n} ${endpoint}`)
    .join(", ");
}

function pct(share: number): string {
  return `${Math.round(share * 100)} %`;
}

function sleep(msToWait: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, msToWait));
}

/** Runs `work` on a fresh schema of the database (search_path), dropped afterwards. */
async function withSchema<T>(databaseUrl: string, work: (url: string) => Promise<T>): Promise<T> {
  const schema = `cw_bench_${randomBytes(5).toString("hex")}`;
  const url = new URL(databaseUrl);
  url.searchParams.set("options", `-c search_path=${schema}`);
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  try {
    return await work(url.toString());
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  }
}

// ---------------------------------------------------------------------------------------------------
// Report

export interface TargetStatus {
  target: string;
  value: string;
  /** null when this run has no figure to judge it by. */
  met: boolean | null;
}

export function mirrorTargets(r: MirrorResult): TargetStatus[] {
  const out: TargetStatus[] = [];
  const push = (target: string, value: string | undefined, met: boolean | null) => out.push({ target, value: value ?? "not measured in this run", met: value === undefined ? null : met });
  const fleet = r.pglite;
  const pgFleet = r.postgres && "store" in r.postgres ? r.postgres : undefined;
  const n = fleet?.tenants ?? 0;
  const small = r.plan.smallTenants;
  if (fleet) {
    const w = fleet.warm.p50Ms / fleet.warm.p50SmallMs;
    push(`warm p50 at ${n} ≤ 2× at ${small} tenants (PGlite)`, `${fixed(w)}× (${ms(fleet.warm.p50Ms)} / ${ms(fleet.warm.p50SmallMs)})`, w <= 2);
    push(`warm ≥ 300 req/s at ${n} tenants (PGlite)`, `${fixed(fleet.warm.load.requestsPerSecond)} req/s`, fleet.warm.load.requestsPerSecond >= 300);
  } else {
    push(`warm p50 at N ≤ 2× at ${small} tenants`, undefined, null);
  }
  if (pgFleet) {
    const w = pgFleet.warm.p50Ms / pgFleet.warm.p50SmallMs;
    push(`warm p50 at ${pgFleet.tenants} ≤ 2× at ${small} tenants (PostgreSQL)`, `${fixed(w)}× (${ms(pgFleet.warm.p50Ms)} / ${ms(pgFleet.warm.p50SmallMs)})`, w <= 2);
    push(`warm ≥ 300 req/s at ${pgFleet.tenants} tenants (PostgreSQL)`, `${fixed(pgFleet.warm.load.requestsPerSecond)} req/s`, pgFleet.warm.load.requestsPerSecond >= 300);
    push(
      `server RSS ≤ 300 MB, ${pgFleet.tenants} × ${r.plan.incidentsPerTenant} mirrored on PostgreSQL (after GC; peak)`,
      `${mb(pgFleet.full.rss)}; peak ${mb(pgFleet.full.peakRss)}`,
      pgFleet.full.rss <= 300 * 2 ** 20,
    );
  } else {
    push("server RSS ≤ 300 MB on PostgreSQL", undefined, null);
  }
  if (fleet) {
    const f = fleet.full.rss / fleet.empty.rss;
    push(`RSS full / empty mirror ≤ 1.3× on PGlite (${n} × ${r.plan.incidentsPerTenant})`, `${fixed(f)}× (${mb(fleet.full.rss)} / ${mb(fleet.empty.rss)})`, f <= 1.3);
  }
  if (r.million && "rows" in r.million) {
    push(`RSS ≤ 1 GB with ${r.million.rows.toLocaleString("en-US")} incidents on PGlite (seeded)`, mb(r.million.memory.rss), r.million.memory.rss <= 2 ** 30);
  } else {
    push("RSS ≤ 1 GB with one million incidents on PGlite", undefined, null);
  }
  if (r.restart) {
    const q = r.restart.firstQuery;
    push(`restart within the freshness bound: 0 list calls`, `${r.restart.calls.lists} lists, ${r.restart.calls.tokens} tokens`, r.restart.calls.lists === 0);
    push(
      `restart: first query over ${r.restart.tenants} tenants answers every tenant in ≤ 2 s`,
      `${ms(q.ms)}, ${q.ok} of ${r.restart.tenants} ok`,
      q.ms <= 2_000 && q.ok === r.restart.tenants,
    );
  }
  if (r.large) {
    const l = r.large;
    push(`tenant of ${l.incidents.toLocaleString("en-US")}: first page served ≤ 2 s after first asked`, `${ms(l.firstQuery.ms)} (${l.firstQuery.edges} incidents)`, l.firstQuery.ms <= 2_000 && l.firstQuery.edges > 0);
    push(
      `tenant of ${l.incidents.toLocaleString("en-US")}: no page read twice, ≤ 50 list calls a minute`,
      `${l.distinctUrls} distinct of ${l.listCalls} list URLs; at most ${l.maxPerMinute} in 60 s`,
      l.distinctUrls === l.listCalls && l.maxPerMinute <= 50,
    );
  }
  if (fleet && r.bound) {
    const q = fleet.cold.firstQuery;
    push(
      `cold fleet: first query (20 s deadline) answers every tenant whose first page arrived`,
      `${q.withData} with data of ${fleet.tenants}; ${fleet.cold.withDataAtAnswer} had a first page right after`,
      q.withData >= fleet.cold.withDataAtAnswer,
    );
    const syncMs = fleet.cold.syncMs;
    push(
      `cold fleet: sync complete ≤ 1.25× the bound`,
      syncMs === null ? `not complete within ${ms(r.plan.syncCapMs)} (${fleet.cold.completeAtEnd} of ${fleet.tenants})` : `${fixed(syncMs / r.bound.ms)}× (${ms(syncMs)} / ${ms(r.bound.ms)})`,
      syncMs !== null && syncMs / r.bound.ms <= 1.25,
    );
  }
  if (fleet) {
    push(
      `1 token per tenant per app lifetime (cold app; warm app)`,
      `${fixed(fleet.tokensPerTenant)}; ${fixed(fleet.tokensPerTenantWarmApp)}`,
      fleet.tokensPerTenant === 1 && fleet.tokensPerTenantWarmApp === 1,
    );
    // The queried tenants' calls; others (a role-less tenant the engine retries every minute) are shown beside.
    const own = fleet.warm.calls.tokens + fleet.warm.calls.lists;
    const others = fleet.warm.calls.total - own;
    push(
      `0 upstream calls for fresh tenants (warm queries and loads)`,
      `${own}${others > 0 ? ` (and ${others} to tenants not queried: ${describeEndpoints(fleet.warm.calls.byEndpoint)})` : ""}`,
      own === 0,
    );
    const perTenant = fleet.refresh.calls.lists / fleet.tenants;
    push(`1 delta call per stale tenant (maxAgeSeconds: 0, the second query), no token`, `${fixed(perTenant)} lists, ${fleet.refresh.calls.tokens} tokens`, perTenant === 1 && fleet.refresh.calls.tokens === 0);
  }
  return out;
}

export function formatMirror(r: MirrorResult): string {
  const lines: string[] = [];
  const fleets = [r.pglite, r.postgres && "store" in r.postgres ? r.postgres : undefined].filter((f): f is FleetResult => f !== undefined);
  lines.push(`Incident mirror and sync engine (issue 14): sandbox latency ${r.latencyMs} ms fixed, INCIDENT_FRESHNESS_SECONDS=${r.freshnessSeconds}, ${r.plan.incidentsPerTenant} incidents per tenant`);
  if (r.bound) {
    lines.push(
      `Sync bound, ${r.bound.tenants} tenants: ${ms(r.bound.ms)} (${r.bound.tokens} tokens + ${r.bound.lists} lists over ${IN_FLIGHT} connections; ` +
        `latency alone would allow ${ms(r.bound.modelMs)}; sandbox CPU ${pct(r.bound.sandboxCpuShare)} of the wall time${r.bound.sandboxCpuShare > 0.8 ? ": the sandbox's own CPU dominates" : ""})`,
    );
  }
  if (fleets.length > 0) {
    const row = (label: string, f: (x: FleetResult) => string) => [label, ...fleets.map(f)];
    lines.push(
      table(
        ["", ...fleets.map((f) => `${f.store === "pglite" ? "PGlite" : "PostgreSQL"}, ${f.tenants} tenants`)],
        [
          row("server RSS: start / registry open / empty mirror", (f) => `${mb(f.baseline.rss)} / ${mb(f.storeOpen.memory.rss)} / ${mb(f.empty.rss)}`),
          row("  WASM (PGlite) at registry open / full", (f) => `${mb(f.storeOpen.memory.wasm)} / ${mb(f.full.wasm)}`),
          row("cold: first query, default deadline", (f) => `${ms(f.cold.firstQuery.ms)}`),
          row("  tenants with data / ok / first page in mirror", (f) => `${f.cold.firstQuery.withData} / ${f.cold.firstQuery.ok} / ${f.cold.withDataAtAnswer}`),
          row("  errors", (f) => describeErrors(f.cold.firstQuery.errors).replace(/^ \(|\)$/g, "") || "none"),
          row("cold: every first load complete", (f) =>
            f.cold.syncMs !== null ? ms(f.cold.syncMs) : f.cold.finishedByQueries ? `not by itself (${f.cold.completeAtEnd}); +${f.cold.finishedByQueries.queries} queries, ${ms(f.cold.finishedByQueries.ms)}` : "not reached",
          ),
          row("  / sync bound (target ≤ 1.25)", (f) => (f.cold.syncMs !== null && r.bound ? ratio(f.cold.syncMs, r.bound.ms) : "–")),
          row("  calls per tenant: tokens / lists (pages synced)", (f) => `${fixed(f.cold.calls.tokens / f.tenants)} / ${fixed(f.cold.calls.lists / f.tenants)} (${fixed(f.cold.pagesRead / f.tenants)})`),
          row("  CPU share: sandbox / server", (f) => `${pct(f.cold.sandboxCpuShare)} / ${pct(f.cold.serverCpuShare)}`),
          row("  incidents mirrored", (f) => f.cold.incidentsMirrored.toLocaleString("en-US")),
          row(`warm p50: ${fleets[0]!.tenants} / ${r.plan.smallTenants} tenants`, (f) => `${ms(f.warm.p50Ms)} / ${ms(f.warm.p50SmallMs)}`),
          row("  ratio (target ≤ 2)", (f) => ratio(f.warm.p50Ms, f.warm.p50SmallMs)),
          row(`warm load, ${r.plan.loadConnections} connections: req/s at N (target ≥ 300)`, (f) => `${fixed(f.warm.load.requestsPerSecond)} req/s`),
          row("  p50 / p99 under load; errors", (f) => `${ms(f.warm.load.p50Ms)} / ${ms(f.warm.load.p99Ms)}; ${f.warm.load.errors}`),
          row("  server CPU during the load", (f) => pct(f.warm.serverCpuShare)),
          row(`  req/s at ${r.plan.smallTenants} tenants`, (f) => `${fixed(f.warm.loadSmall.requestsPerSecond)} req/s`),
          row("upstream calls while warm: queried tenants / others", (f) => `${f.warm.calls.tokens + f.warm.calls.lists} / ${f.warm.calls.total - f.warm.calls.tokens - f.warm.calls.lists}`),
          row("maxAgeSeconds: 0 (all stale), 1st / 2nd: time", (f) => `${ms(f.refresh.first.answer.ms)} / ${ms(f.refresh.answer.ms)}`),
          row("  ok; lists / tokens per tenant, 1st", (f) => `${f.refresh.first.answer.ok}; ${fixed(f.refresh.first.calls.lists / f.tenants)} / ${fixed(f.refresh.first.calls.tokens / f.tenants)}`),
          row("  ok; lists / tokens per tenant, 2nd", (f) => `${f.refresh.answer.ok}; ${fixed(f.refresh.calls.lists / f.tenants)} / ${fixed(f.refresh.calls.tokens / f.tenants)}`),
          row("tokens per tenant, app lifetime: cold / warm app", (f) => `${fixed(f.tokensPerTenant)} / ${fixed(f.tokensPerTenantWarmApp)}`),
          row("server RSS full: after syncs / after loads (GC)", (f) => `${mb(f.fullAfterSync.rss)} / ${mb(f.full.rss)}`),
          row("  JS heap / peak RSS", (f) => `${mb(f.full.heapUsed)} / ${mb(f.full.peakRss)}`),
          row("  full / empty (PGlite target ≤ 1.3)", (f) => ratio(f.full.rss, f.empty.rss)),
        ],
      ),
    );
  }
  if (r.pglite) {
    const f = r.pglite;
    lines.push(
      `PGlite's share (PGlite fleet): the server process is ${mb(f.baseline.rss)} before the registry opens and ${mb(f.storeOpen.memory.rss)} after ` +
        `(+${mb(f.storeOpen.memory.rss - f.baseline.rss)}; WebAssembly memory ${mb(f.storeOpen.memory.wasm)}). With the mirror full (after the loads, GC): ` +
        `WebAssembly ${mb(f.full.wasm)}, JS heap ${mb(f.full.heapTotal)} (${mb(f.full.heapUsed)} used), array buffers ${mb(f.full.arrayBuffers)}, ` +
        `the rest of the RSS (code, native allocations) ${mb(f.full.rss - f.full.heapTotal - f.full.external)}; at start that rest was ${mb(f.baseline.rss - f.baseline.heapTotal - f.baseline.external)}.`,
    );
  }
  if (r.restart) {
    const x = r.restart;
    lines.push(
      `Restart (PGlite, mirror synced within the freshness bound): registry reopened in ${ms(x.storeOpen.ms)}; first query over ${x.tenants} tenants ${ms(x.firstQuery.ms)}, ` +
        `${x.firstQuery.ok} ok (${Object.entries(x.firstQuery.bySyncState).map(([s, k]) => `${k} ${s}`).join(", ")}); upstream calls through ${x.engineTicks} engine ticks: ` +
        `${x.calls.lists} lists, ${x.calls.tokens} tokens; RSS ${mb(x.memory.rss)} (WASM ${mb(x.memory.wasm)}).`,
    );
  }
  if (r.large) {
    const l = r.large;
    lines.push(
      `Tenant of ${l.incidents.toLocaleString("en-US")} incidents: first page served ${ms(l.firstQuery.ms)} after first asked (${l.firstQuery.edges} incidents, ` +
        `${Object.keys(l.firstQuery.bySyncState).join("/")}${describeErrors(l.firstQuery.errors)}; the mirror held its first page after ${ms(l.firstPageMs ?? undefined)}); ` +
        (l.completeMs !== null ? `complete after ${ms(l.completeMs)}` : `watched ${ms(l.observedMs)}${l.projectedMs !== null ? `, at the budget's pace complete after ~${ms(l.projectedMs)}` : ""}`) +
        ` (${l.pagesNeeded} pages at 50 list calls a minute: ${l.budgetBoundMs > 0 ? `≥ ${ms(l.budgetBoundMs)}` : "within the first minute's budget"}); ` +
        `${l.listCalls} list calls, ${l.distinctUrls} distinct URLs, at most ${l.maxPerMinute} in any 60 s; ${l.incidentsMirrored.toLocaleString("en-US")} incidents mirrored.`,
    );
  }
  if (r.million) {
    if ("skipped" in r.million) lines.push(`One million incidents: skipped (${r.million.skipped}).`);
    else {
      const m = r.million;
      lines.push(
        `${m.rows.toLocaleString("en-US")} incidents (${m.tenants} × ${m.perTenant}) on PGlite, ${m.method}: seeded in ${ms(m.seededMs)}; ` +
          `server RSS ${mb(m.baseline.rss)} at start, ${mb(m.storeOpen.rss)} with the registry open, ${mb(m.memory.rss)} after queries and a load (GC; WASM ${mb(m.memory.wasm)}, ` +
          `JS heap ${mb(m.memory.heapUsed)}, peak ${mb(m.memory.peakRss)}); first query ${ms(m.firstQuery.ms)} (${m.firstQuery.ok} ok), warm p50 ${ms(m.p50Ms)}, ` +
          `${fixed(m.load.requestsPerSecond)} req/s; upstream calls ${m.calls.total}.`,
      );
    }
  }
  if (r.postgres && "skipped" in r.postgres) lines.push(`PostgreSQL: skipped (${r.postgres.skipped}).`);
  return lines.join("\n");
}
