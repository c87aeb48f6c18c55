import { readFile, writeFile, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Agent, request } from "undici";
import { startChild, type Child } from "./rpc.js";
import type { SandboxInfo } from "./sandbox-process.js";
import type { AppParams } from "./server-process.js";
import { fixed, mb, median, ms } from "./stats.js";
import { secureContextOf } from "./upstream.js";

/**
 * Hunting across tenants (issue 15's targets), reported as ratios, never asserted:
 *
 * 1. Parallelism: `huntingQuery(query: "AlertInfo | summarize count() by Severity", first: 10)` over the
 *    first 100 sandbox tenants (those that can hunt: 97), sandbox latency 200 ms fixed so the upstream
 *    time dominates; the median of the whole hunt over the slowest tenant's own time (each tenant, or a
 *    sample, hunted alone with `tenantIds: [id]`). Target: ≤ 1.25×. Beside it the bound (the same POSTs
 *    straight to the sandbox, all at once, bare undici) and the CPU each hunt costs the server and the
 *    sandbox (/proc/<pid>/stat), which tell Crosswatch's share from the sandbox's.
 * 2. Memory: the server process's RSS (kernel VmHWM, reset through /proc/<pid>/clear_refs where allowed,
 *    else sampled every 20 ms in the process) and JS heap during a hunt that returns `take ROWS` rows from
 *    each tenant's AlertEvidence while the page keeps `first: 100`, at two tenant counts, each in a new
 *    server process: growth over the baseline (after GC) per 1,000 rows merged, and the ratio between the
 *    two sizes. Flat memory would keep the growth about the same at both sizes.
 *
 * Its own sandbox (hunting roles required, so consented tenants grant ThreatHunting.Read.All; rate limits
 * raised as in the other cases; Crosswatch's own hunting budget, 45 calls a minute per tenant, stays and
 * is far from reached: at most ~8 hunts per tenant a minute here) and its own server processes on a PGlite
 * registry prepared once. `npx tsx bench/hunting.ts` runs it alone (`BENCH_QUICK=1`: a sample of 20
 * single tenants, 50 and 150 tenants for memory; `BENCH_HUNTING_MEMORY_TENANTS=100,300`,
 * `BENCH_HUNTING_ROWS=1000` override the memory plan); `npm run bench` runs it after liveness.
 */

export interface HuntingPlan {
  /** Sandbox tenants of the parallel hunt (the first N; those that cannot hunt are left out). */
  parallelTenants: number;
  /** Measured hunts over all of them (after one warm-up). */
  huntRuns: number;
  /** Tenants hunted alone: 0 = every one, else this many evenly spaced, plus the slowest in the hunts. */
  singleSample: number;
  /** Hunts per single tenant (the median is its time). */
  singleRuns: number;
  /** Tenant counts of the memory hunts (each in a new server process). */
  memoryTenants: number[];
  /** Rows each tenant returns in the memory hunts (`AlertEvidence | take ROWS`). */
  rowsPerTenant: number;
  latencyMs: number;
}

export function huntingPlan(quick: boolean): HuntingPlan {
  const envTenants = process.env.BENCH_HUNTING_MEMORY_TENANTS?.split(",").map((n) => Number(n.trim()));
  const envRows = process.env.BENCH_HUNTING_ROWS ? Number(process.env.BENCH_HUNTING_ROWS) : undefined;
  const base: HuntingPlan = quick
    ? { parallelTenants: 100, huntRuns: 3, singleSample: 20, singleRuns: 1, memoryTenants: [50, 150], rowsPerTenant: 1000, latencyMs: 200 }
    : { parallelTenants: 100, huntRuns: 5, singleSample: 0, singleRuns: 2, memoryTenants: [100, 300], rowsPerTenant: 1000, latencyMs: 200 };
  // `BENCH_HUNTING_MEMORY_TENANTS=0`: the parallel measurement only.
  if (envTenants?.length) base.memoryTenants = envTenants.filter((n) => n > 0);
  if (envRows) base.rowsPerTenant = envRows;
  return base;
}

export interface HuntRun {
  ms: number;
  totalCount: number;
  outcomes: number;
  ok: number;
  /** Failed tenants by error code. */
  errors: Record<string, number>;
  rows: number;
  /** Each tenant's `durationMs` (its hunt, from when the service asked for it). */
  tenantMs: { tenantId: string; ms: number; rowCount: number }[];
  nodes: Record<string, unknown>[];
}

export interface MemorySample {
  tenants: number;
  hunted: number;
  rowsPerTenant: number;
  /** Rows merged (the hunt's totalCount). */
  rows: number;
  ok: number;
  errors: Record<string, number>;
  huntMs: number;
  /** Rows each tenant had available (AlertEvidence in 30 days), the smallest. */
  minAvailableRows: number;
  baselineRss: number;
  baselineHeap: number;
  /** Highest RSS during the hunt: the kernel's VmHWM after a reset, else the 20 ms samples. */
  peakRss: number;
  peakSource: "VmHWM" | "sampled";
  peakHeap: number;
  /** After the hunt and a full GC. */
  afterRss: number;
  rssGrowth: number;
  heapGrowth: number;
  rssGrowthPer1000Rows: number;
  heapGrowthPer1000Rows: number;
}

export interface HuntingResult {
  plan: HuntingPlan;
  parallel: {
    tenants: number;
    hunted: number;
    excluded: string[];
    warmUp: { ms: number; ok: number; errors: Record<string, number> };
    huntMs: number[];
    /** Tenants done in the measured hunts (median over runs): first / median / last, from durationMs. */
    tenantsDone: { first: number; median: number; last: number };
    notOk: number;
    errors: Record<string, number>;
    singles: { tenantId: string; ms: number[]; medianMs: number; tenantMs: number }[];
    singleNotOk: number;
    slowestSingleMs: number;
    medianSingleMs: number;
    /** p50 of the whole hunt over the slowest single tenant (target ≤ 1.25). */
    ratio: number;
    /**
     * The bound: the same hunt POSTed straight to the sandbox's Graph runHuntingQuery for every tenant at
     * once (bare undici, a connection per tenant, tokens fetched beforehand), median of `huntRuns` rounds
     * after one warm-up; and its CPU in the sandbox per round.
     */
    boundMs: number[];
    boundSandboxCpuMs: number;
    /** CPU time per measured hunt (over all tenants), ms: the server process's and the sandbox's (100 Hz ticks). */
    cpuPerHunt: { server: number; sandbox: number };
  };
  memory: MemorySample[];
  /** Growth per 1,000 rows (RSS) at the larger size over the smaller; and rows merged, larger over smaller. */
  memoryRatio?: { rssGrowth: number; heapGrowth: number; rows: number };
  totalMs: number;
}

const HUNT = `query($q: String!, $ids: [ID!], $first: Int) {
  huntingQuery(query: $q, tenantIds: $ids, first: $first) {
    totalCount
    edges { node }
    tenantOutcomes { tenantId ok rowCount truncated durationMs error { code } }
  }
}`;

const PARALLEL_QUERY = "AlertInfo | summarize count() by Severity";
/** Measured apps: a slow hunt is timed, not cut off at the default 20 s. */
const DEADLINE_MS = 120_000;
/** Rows per tenant in 30 days ≈ 2.6 × incidents (AlertEvidence, sandbox generator); a margin above it. */
const ROWS_PER_INCIDENT = 2.4;

async function hunt(url: string, ids: string[], query: string, first: number): Promise<HuntRun> {
  const t0 = performance.now();
  const response = await request(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query: HUNT, variables: { q: query, ids, first } }),
  });
  const text = await response.body.text();
  const elapsed = performance.now() - t0;
  const body = JSON.parse(text) as {
    data?: {
      huntingQuery: {
        totalCount: number;
        edges: { node: Record<string, unknown> }[];
        tenantOutcomes: { tenantId: string; ok: boolean; rowCount: number; durationMs: number; error: { code: string } | null }[];
      };
    };
    errors?: unknown[];
  };
  if (response.statusCode !== 200 || body.errors || !body.data) throw new Error(`hunt failed: HTTP ${response.statusCode} ${text.slice(0, 500)}`);
  const h = body.data.huntingQuery;
  const errors: Record<string, number> = {};
  for (const o of h.tenantOutcomes) if (!o.ok) errors[o.error?.code ?? "?"] = (errors[o.error?.code ?? "?"] ?? 0) + 1;
  return {
    ms: elapsed,
    totalCount: h.totalCount,
    outcomes: h.tenantOutcomes.length,
    ok: h.tenantOutcomes.filter((o) => o.ok).length,
    errors,
    rows: h.totalCount,
    tenantMs: h.tenantOutcomes.map((o) => ({ tenantId: o.tenantId, ms: o.durationMs, rowCount: o.rowCount })),
    nodes: h.edges.map((e) => e.node),
  };
}

function addErrors(into: Record<string, number>, from: Record<string, number>): void {
  for (const [code, n] of Object.entries(from)) into[code] = (into[code] ?? 0) + n;
}

const errorsText = (errors: Record<string, number>) => {
  const list = Object.entries(errors).map(([code, n]) => `${n} ${code}`);
  return list.length ? ` (${list.join(", ")})` : "";
};

/** The kernel's view of a process's memory, bytes: VmRSS now, VmHWM (high-water mark since start or reset). */
async function procMemory(pid: number): Promise<{ rss: number; hwm: number } | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN) * 1024;
    return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) a process has used, ms, from /proc/<pid>/stat; NaN where unreadable. */
async function cpuMs(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return Number.NaN;
  }
}

/** Resets VmHWM to the current RSS (`echo 5 > /proc/<pid>/clear_refs`, Linux ≥ 4.0); false where not allowed. */
async function resetHighWaterMark(pid: number): Promise<boolean> {
  try {
    await writeFile(`/proc/${pid}/clear_refs`, "5");
    const m = await procMemory(pid);
    // A reset brings the mark down to about the current RSS.
    return m !== undefined && m.hwm <= m.rss * 1.05;
  } catch {
    return false;
  }
}

interface ServerMemory {
  rss: number;
  heapUsed: number;
  peakRss: number;
  peakHeapUsed: number;
}

/**
 * Runs both measurements on a sandbox and server processes of their own (bench/sandbox-process.ts with
 * `huntingRoles`; bench/server-process.ts with `--expose-gc`).
 */
export async function measureHunting(plan: HuntingPlan, log: (line: string) => void = () => {}): Promise<HuntingResult> {
  const started = performance.now();
  const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;
  const sandboxTenants = Math.max(plan.parallelTenants, ...plan.memoryTenants);
  const incidentsPerTenant = Math.ceil(plan.rowsPerTenant / ROWS_PER_INCIDENT);
  const registryDir = await mkdtemp(join(os.tmpdir(), "crosswatch-bench-hunting-"));
  const sandboxChild = await startChild("./sandbox-process.ts");
  try {
    const sandbox = await sandboxChild.call<SandboxInfo>("start", { tenantCount: sandboxTenants, incidentsPerTenant, seed: 42, huntingRoles: true });
    const primed = await sandboxChild.call<{ ms: number }>("prime");
    const preparer = await startChild("./server-process.ts");
    await preparer.call("init", { sandbox, dataDir: registryDir });
    await preparer.call("closeStore");
    await preparer.close();
    log(`  sandbox ${sandboxTenants} tenants × ${incidentsPerTenant} incidents (generated in ${ms(primed.ms)}), hunting roles required; registry prepared [${elapsed()}]`);
    await sandboxChild.call("setLatency", { fixedMs: plan.latencyMs });

    const parallel = await measureParallel(sandbox, sandboxChild.pid, registryDir, plan, log, elapsed);
    const memory: MemorySample[] = [];
    for (const tenants of plan.memoryTenants) memory.push(await measureMemory(sandbox, registryDir, tenants, plan, log, elapsed));
    const sorted = [...memory].sort((a, b) => a.rows - b.rows);
    const small = sorted[0];
    const large = sorted.at(-1);
    const memoryRatio =
      small && large && small !== large
        ? { rssGrowth: large.rssGrowth / small.rssGrowth, heapGrowth: large.heapGrowth / small.heapGrowth, rows: large.rows / small.rows }
        : undefined;
    return { plan, parallel, memory, ...(memoryRatio ? { memoryRatio } : {}), totalMs: performance.now() - started };
  } finally {
    await sandboxChild.close();
    await rm(registryDir, { recursive: true, force: true });
  }
}

/** The bound's rounds: tokens first (not timed), then `runs` timed rounds of parallel hunt POSTs after a warm-up. */
async function boundRounds(sandbox: SandboxInfo, sandboxPid: number, ids: string[], query: string, runs: number): Promise<{ ms: number[]; sandboxCpuMs: number }> {
  const agent = new Agent({ connections: ids.length, keepAliveTimeout: 60_000, connect: { timeout: 120_000, secureContext: secureContextOf(sandbox) } });
  try {
    const tokens = await Promise.all(
      ids.map(async (id) => {
        const response = await request(`${sandbox.url}/${id}/oauth2/v2.0/token`, {
          dispatcher: agent,
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ grant_type: "client_credentials", client_id: sandbox.clientId, client_secret: sandbox.clientSecret, scope: "https://graph.microsoft.com/.default" }).toString(),
        });
        const body = (await response.body.json()) as { access_token?: string };
        if (!body.access_token) throw new Error(`bound: token for ${id}: HTTP ${response.statusCode}`);
        return body.access_token;
      }),
    );
    const round = async () => {
      const t0 = performance.now();
      await Promise.all(
        ids.map(async (id, i) => {
          const response = await request(`${sandbox.url}/v1.0/security/runHuntingQuery`, {
            dispatcher: agent,
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${tokens[i]}` },
            body: JSON.stringify({ Query: query }),
          });
          const body = (await response.body.json()) as { results?: unknown[] };
          if (response.statusCode !== 200 || !Array.isArray(body.results)) throw new Error(`bound: hunt for ${id}: HTTP ${response.statusCode}`);
        }),
      );
      return performance.now() - t0;
    };
    await round();
    const cpu0 = await cpuMs(sandboxPid);
    const times: number[] = [];
    for (let r = 0; r < runs; r++) times.push(await round());
    return { ms: times, sandboxCpuMs: ((await cpuMs(sandboxPid)) - cpu0) / runs };
  } finally {
    await agent.close();
  }
}

async function newServer(sandbox: SandboxInfo, registryDir: string): Promise<{ server: Child; url: string }> {
  const server = await startChild("./server-process.ts", ["--expose-gc"]);
  await server.call("init", { sandbox, dataDir: registryDir });
  // No incident sync engine: it would mirror 300 tenants' incidents in the background while hunts are timed.
  const { url } = await server.call<{ url: string }>("startApp", { freshnessSeconds: 3600, operationTimeoutMs: DEADLINE_MS, sync: false } satisfies AppParams);
  return { server, url };
}

async function measureParallel(
  sandbox: SandboxInfo,
  sandboxPid: number,
  registryDir: string,
  plan: HuntingPlan,
  log: (line: string) => void,
  elapsed: () => string,
): Promise<HuntingResult["parallel"]> {
  const inSandbox = sandbox.tenants.slice(0, plan.parallelTenants);
  const ids = inSandbox.filter((t) => t.canHunt).map((t) => t.id);
  const excluded = inSandbox.filter((t) => !t.canHunt).map((t) => t.displayName);
  log(`  parallel: "${PARALLEL_QUERY}", first: 10, over ${ids.length} of ${plan.parallelTenants} tenants (left out, no hunting role or consent: ${excluded.join(", ") || "none"}); latency ${plan.latencyMs} ms`);
  const { server, url } = await newServer(sandbox, registryDir);
  try {
    // Warm-up: tokens, the sandbox's hunting tables, the server's code paths.
    const warm = await hunt(url, ids, PARALLEL_QUERY, 10);
    log(`    warm-up hunt: ${ms(warm.ms)}, ${warm.ok} of ${ids.length} ok${errorsText(warm.errors)} [${elapsed()}]`);
    const huntMs: number[] = [];
    const errors: Record<string, number> = {};
    let notOk = 0;
    const done: { first: number; median: number; last: number }[] = [];
    const perTenant = new Map<string, number[]>();
    const cpu0 = { server: await cpuMs(server.pid), sandbox: await cpuMs(sandboxPid) };
    for (let i = 0; i < plan.huntRuns; i++) {
      const run = await hunt(url, ids, PARALLEL_QUERY, 10);
      huntMs.push(run.ms);
      notOk += run.outcomes - run.ok;
      addErrors(errors, run.errors);
      const sorted = run.tenantMs.map((t) => t.ms).sort((a, b) => a - b);
      done.push({ first: sorted[0] ?? Number.NaN, median: median(sorted), last: sorted.at(-1) ?? Number.NaN });
      for (const t of run.tenantMs) perTenant.set(t.tenantId, [...(perTenant.get(t.tenantId) ?? []), t.ms]);
    }
    const cpuPerHunt = {
      server: ((await cpuMs(server.pid)) - cpu0.server) / plan.huntRuns,
      sandbox: ((await cpuMs(sandboxPid)) - cpu0.sandbox) / plan.huntRuns,
    };
    log(
      `    ${plan.huntRuns} hunts over ${ids.length} tenants: ${huntMs.map((v) => ms(v)).join(", ")}; not ok: ${notOk}${errorsText(errors)}; ` +
        `CPU per hunt: server ${ms(cpuPerHunt.server)}, sandbox ${ms(cpuPerHunt.sandbox)} [${elapsed()}]`,
    );

    // Single tenants: every one, or an even sample plus the one slowest inside the hunts.
    let sample = ids;
    if (plan.singleSample > 0 && plan.singleSample < ids.length) {
      const step = ids.length / plan.singleSample;
      const picked = new Set(Array.from({ length: plan.singleSample }, (_, i) => ids[Math.floor(i * step)]!));
      const slowestInHunt = [...perTenant].sort((a, b) => median(b[1]) - median(a[1]))[0]?.[0];
      if (slowestInHunt) picked.add(slowestInHunt);
      sample = [...picked];
    }
    const singles: HuntingResult["parallel"]["singles"] = [];
    let singleNotOk = 0;
    for (const id of sample) {
      const times: number[] = [];
      const tenantTimes: number[] = [];
      for (let r = 0; r < plan.singleRuns; r++) {
        const run = await hunt(url, [id], PARALLEL_QUERY, 10);
        times.push(run.ms);
        tenantTimes.push(run.tenantMs[0]?.ms ?? Number.NaN);
        singleNotOk += run.outcomes - run.ok;
        addErrors(errors, run.errors);
      }
      singles.push({ tenantId: id, ms: times, medianMs: median(times), tenantMs: median(tenantTimes) });
    }
    const singleMedians = singles.map((s) => s.medianMs);
    const slowestSingleMs = Math.max(...singleMedians);
    const medianSingleMs = median(singleMedians);
    log(
      `    ${sample.length} tenants alone ×${plan.singleRuns}: median ${ms(medianSingleMs)}, slowest ${ms(slowestSingleMs)}; not ok: ${singleNotOk} [${elapsed()}]`,
    );
    const bound = await boundRounds(sandbox, sandboxPid, ids, PARALLEL_QUERY, plan.huntRuns);
    log(`    bound (bare parallel POSTs to the sandbox) ×${plan.huntRuns}: ${bound.ms.map((v) => ms(v)).join(", ")}; sandbox CPU per round ${ms(bound.sandboxCpuMs)} [${elapsed()}]`);
    const med = (k: "first" | "median" | "last") => median(done.map((d) => d[k]));
    return {
      tenants: plan.parallelTenants,
      hunted: ids.length,
      excluded,
      warmUp: { ms: warm.ms, ok: warm.ok, errors: warm.errors },
      huntMs,
      tenantsDone: { first: med("first"), median: med("median"), last: med("last") },
      notOk,
      errors,
      singles,
      singleNotOk,
      slowestSingleMs,
      medianSingleMs,
      ratio: median(huntMs) / slowestSingleMs,
      boundMs: bound.ms,
      boundSandboxCpuMs: bound.sandboxCpuMs,
      cpuPerHunt,
    };
  } finally {
    await server.close();
  }
}

async function measureMemory(
  sandbox: SandboxInfo,
  registryDir: string,
  tenantCount: number,
  plan: HuntingPlan,
  log: (line: string) => void,
  elapsed: () => string,
): Promise<MemorySample> {
  const ids = sandbox.tenants
    .slice(0, tenantCount)
    .filter((t) => t.canHunt)
    .map((t) => t.id);
  const query = `AlertEvidence | take ${plan.rowsPerTenant}`;
  log(`  memory: "${query}", first: 100, over ${ids.length} of ${tenantCount} tenants, new server process`);
  const { server, url } = await newServer(sandbox, registryDir);
  try {
    // Warm-up with a small answer: tokens, the sandbox's tables, the hunting code paths; and the rows available.
    const warm = await hunt(url, ids, "AlertEvidence | summarize count()", Math.min(1000, ids.length));
    const available = warm.nodes.map((n) => Number(n.count_ ?? Object.values(n).find((v) => typeof v === "number") ?? Number.NaN));
    const minAvailableRows = Math.min(...available);
    log(`    warm-up (count only): ${ms(warm.ms)}, ${warm.ok} of ${ids.length} ok${errorsText(warm.errors)}; rows available per tenant ≥ ${minAvailableRows} [${elapsed()}]`);
    const base = await server.call<ServerMemory>("memory", { gc: true });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const baseAfter = await server.call<ServerMemory>("memory", { gc: true });
    const baselineRss = Math.min(base.rss, baseAfter.rss);
    await server.call("resetPeak");
    const hwmReset = await resetHighWaterMark(server.pid);

    const run = await hunt(url, ids, query, 100);

    const during = await server.call<ServerMemory>("memory");
    const kernel = hwmReset ? await procMemory(server.pid) : undefined;
    const peakRss = kernel && Number.isFinite(kernel.hwm) ? Math.max(kernel.hwm, during.peakRss) : during.peakRss;
    const after = await server.call<ServerMemory>("memory", { gc: true });
    const rssGrowth = peakRss - baselineRss;
    const heapGrowth = during.peakHeapUsed - baseAfter.heapUsed;
    const per1000 = run.rows / 1000;
    const sample: MemorySample = {
      tenants: tenantCount,
      hunted: ids.length,
      rowsPerTenant: plan.rowsPerTenant,
      rows: run.rows,
      ok: run.ok,
      errors: run.errors,
      huntMs: run.ms,
      minAvailableRows,
      baselineRss,
      baselineHeap: baseAfter.heapUsed,
      peakRss,
      peakSource: kernel ? "VmHWM" : "sampled",
      peakHeap: during.peakHeapUsed,
      afterRss: after.rss,
      rssGrowth,
      heapGrowth,
      rssGrowthPer1000Rows: rssGrowth / per1000,
      heapGrowthPer1000Rows: heapGrowth / per1000,
    };
    log(
      `    hunt: ${ms(run.ms)}, ${run.rows.toLocaleString("en-US")} rows merged, ${run.ok} of ${ids.length} ok${errorsText(run.errors)}; ` +
        `RSS ${mb(baselineRss)} → peak ${mb(peakRss)} (${sample.peakSource}) → ${mb(after.rss)} after GC; heap ${mb(baseAfter.heapUsed)} → peak ${mb(during.peakHeapUsed)} [${elapsed()}]`,
    );
    return sample;
  } finally {
    await server.close();
  }
}

const kbText = (bytes: number) => `${fixed(bytes / 1024)} KB`;

export function formatHunting(r: HuntingResult): string {
  const p = r.parallel;
  const lines = [
    `Hunting (issue 15; sandbox latency ${r.plan.latencyMs} ms fixed)`,
    `  parallel: "${PARALLEL_QUERY}" over ${p.hunted} tenants (of the first ${p.tenants}): median ${ms(median(p.huntMs))} over ${p.huntMs.length} hunts ` +
      `(tenants done first / median / last ${fixed(p.tenantsDone.first)} / ${fixed(p.tenantsDone.median)} / ${fixed(p.tenantsDone.last)} ms); ` +
      `not ok: ${p.notOk}${errorsText(p.errors)}; CPU per hunt: server ${ms(p.cpuPerHunt.server)}, sandbox ${ms(p.cpuPerHunt.sandbox)}`,
    `  a tenant alone (${p.singles.length} tenants × ${r.plan.singleRuns}): median ${ms(p.medianSingleMs)}, slowest ${ms(p.slowestSingleMs)}; not ok: ${p.singleNotOk}`,
    `  hunt p50 / slowest tenant alone: ${fixed(p.ratio)}×  (target ≤ 1.25×: ${p.ratio <= 1.25 ? "met" : "MISSED"}); over the median tenant alone: ${fixed(median(p.huntMs) / p.medianSingleMs)}×`,
    `  bound, the same POSTs straight to the sandbox, all at once: median ${ms(median(p.boundMs))} (sandbox CPU ${ms(p.boundSandboxCpuMs)} a round); ` +
      `bound / slowest tenant alone ${fixed(median(p.boundMs) / p.slowestSingleMs)}×; hunt / bound ${fixed(median(p.huntMs) / median(p.boundMs))}×`,
  ];
  for (const m of r.memory) {
    lines.push(
      `  memory, ${m.hunted} tenants × take ${m.rowsPerTenant} (first: 100): ${m.rows.toLocaleString("en-US")} rows merged in ${ms(m.huntMs)}, ` +
        `${m.ok} ok${errorsText(m.errors)}; RSS ${mb(m.baselineRss)} → peak ${mb(m.peakRss)} (+${mb(m.rssGrowth)}, ${kbText(m.rssGrowthPer1000Rows)} per 1,000 rows); ` +
        `heap +${mb(m.heapGrowth)} (${kbText(m.heapGrowthPer1000Rows)} per 1,000 rows); ${mb(m.afterRss)} after GC`,
    );
  }
  if (r.memoryRatio) {
    const flat = r.memoryRatio.rssGrowth < 1.25;
    lines.push(
      `  larger / smaller: rows merged ${fixed(r.memoryRatio.rows)}×, RSS growth ${fixed(r.memoryRatio.rssGrowth)}×, heap growth ${fixed(r.memoryRatio.heapGrowth)}× ` +
        `(flat memory: growth ~1× whatever the rows; ${flat ? "about flat" : "grows with the rows merged: NOT flat"})`,
    );
  }
  return lines.join("\n");
}

/** Alone: `npx tsx bench/hunting.ts` (BENCH_QUICK=1 for the smaller plan). */
async function main(): Promise<void> {
  const quick = process.env.BENCH_QUICK === "1";
  const plan = huntingPlan(quick);
  const log = (line: string) => process.stdout.write(`${line}\n`);
  log(
    `Crosswatch hunting bench${quick ? " (BENCH_QUICK)" : ""}: ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? "?"}, Node ${process.version}, ` +
      `load average ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`,
  );
  const result = await measureHunting(plan, log);
  log(`\n${formatHunting(result)}\n  (${((result.totalMs) / 1000).toFixed(0)} s; load average at end ${os.loadavg().map((l) => l.toFixed(2)).join(" ")})`);
  // The whole result, single tenants' samples left out (their median and the slowest are above).
  log(JSON.stringify({ ...result, parallel: { ...result.parallel, singles: undefined } }));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
