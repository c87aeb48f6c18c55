import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { formatHunting, huntingPlan, measureHunting, type HuntingResult } from "./hunting.js";
import { formatLiveness, measureLiveness, type LivenessResult } from "./liveness.js";
import { formatMirror, measureMirror, mirrorPlan, mirrorTargets, type MirrorResult } from "./mirror.js";
import { measureReplicas, type ReplicasResult } from "./replicas.js";
import { startChild } from "./rpc.js";
import type { SandboxInfo } from "./sandbox-process.js";
import type { AppParams } from "./server-process.js";
import { fixed, mb, ms, ratio, table } from "./stats.js";

/**
 * `npm run bench`: the incident mirror and its sync engine (issue 14, bench/mirror.ts) on a fleet of 1,000
 * tenants × 100 incidents — the bound a cold fleet's sync can reach, the fleet on PGlite (empty and full
 * memory, cold first query and sync time, warm latency at 1,000 and 10 tenants, throughput, stale
 * tenants), a restart on the synced mirror, the same fleet on PostgreSQL, a tenant of 20,000 incidents
 * and, with BENCH_MILLION=1, one million incidents on PGlite. Then liveness under a burst
 * (bench/liveness.ts), hunting across tenants (bench/hunting.ts) and replicas (bench/replicas.ts). Prints
 * figures and ratios and where each target stands, writes bench/results/latest.json and a timestamped
 * copy. Asserts nothing.
 *
 * Processes: this one (clients, load generator), the sandbox, and server processes (one per measurement,
 * so each RSS is that server's). `BENCH_QUICK=1`: 50 tenants, a 2,000-incident tenant, short loads
 * (bench/results/quick.json). `BENCH_TENANTS=N`: a fleet of N; `BENCH_SKIP=bound,pglite,postgres,large,liveness,hunting,replicas`
 * leaves sections out (`pglite` takes the restart with it; both written to bench/results/partial.json). `BENCH_LARGE_FULL=1` watches the large
 * tenant's first load to its end (about 4 minutes at the budget's pace) instead of 75 s.
 */

const QUICK = process.env.BENCH_QUICK === "1";
const SEED = 42;
const PLAN = mirrorPlan(QUICK);
const ONLY_TENANTS = process.env.BENCH_TENANTS ? Number(process.env.BENCH_TENANTS) : undefined;
if (ONLY_TENANTS !== undefined) {
  if (!Number.isInteger(ONLY_TENANTS) || ONLY_TENANTS < PLAN.smallTenants || ONLY_TENANTS > 1000) {
    throw new Error(`BENCH_TENANTS=${process.env.BENCH_TENANTS}: a fleet of ${PLAN.smallTenants} to 1,000 tenants`);
  }
  PLAN.tenants = ONLY_TENANTS;
}
const SKIP = new Set((process.env.BENCH_SKIP ?? "").split(",").map((s) => s.trim()).filter((s) => s.length > 0));
PLAN.skip = [...SKIP].filter((s) => ["bound", "pglite", "postgres", "large"].includes(s));
const PARTIAL = ONLY_TENANTS !== undefined || SKIP.size > 0;

const log = (line: string) => process.stdout.write(`${line}\n`);
const started = performance.now();
/** Seconds since the start, and the 1-minute load average (other work on the machine moves every figure). */
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s, load ${os.loadavg()[0]!.toFixed(1)}`;

// ---------------------------------------------------------------------------------------------------

const loadAtStart = os.loadavg();
const registryDir = await mkdtemp(join(os.tmpdir(), "crosswatch-bench-"));
const sandboxChild = await startChild("./sandbox-process.ts");
let mirror: MirrorResult | undefined;
let registryFirstStart: { storeMs: number; rssAfterStore: number } | undefined;
let replicas: ReplicasResult | { skipped: string } | undefined;
let liveness: LivenessResult | undefined;
let hunting: HuntingResult | undefined;
try {
  const sandbox = await sandboxChild.call<SandboxInfo>("start", { tenantCount: PLAN.tenants, incidentsPerTenant: PLAN.incidentsPerTenant, seed: SEED });
  log(
    `Crosswatch bench${QUICK ? " (BENCH_QUICK)" : ""}: ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? "?"}, Node ${process.version}, ` +
      `load average ${loadAtStart.map((l) => l.toFixed(2)).join(" ")}; sandbox ${PLAN.tenants} tenants × ${PLAN.incidentsPerTenant} incidents`,
  );
  // The sandbox generates a tenant's incidents on first read: all of them now, outside any measurement.
  const primed = await sandboxChild.call<{ ms: number }>("prime");
  // The registry's first start (initdb) in a process of its own, as a deployment's ./data after its first
  // start: initdb grows PGlite's WebAssembly memory for good; the measured servers reopen the directory.
  const preparer = await startChild("./server-process.ts");
  registryFirstStart = await preparer.call("init", { sandbox, dataDir: registryDir });
  await preparer.call("closeStore");
  await preparer.close();
  log(
    `  sandbox incidents generated in ${ms(primed.ms)}; registry created in ${ms(registryFirstStart!.storeMs)} ` +
      `(RSS of that first start: ${mb(registryFirstStart!.rssAfterStore)}) [${elapsed()}]`,
  );
  mirror = await measureMirror({ sandbox, sandboxChild, registryDir, plan: PLAN, log, elapsed });

  if (!SKIP.has("liveness")) {
    // Liveness under a burst (issue 12): /healthz probed from a process of its own while queries land at once.
    log(`\nliveness: /healthz during a ${QUICK ? 100 : 500}-query burst [${elapsed()}]`);
    await sandboxChild.call("setLatency", { fixedMs: 100 });
    const livenessServer = await startChild("./server-process.ts");
    try {
      // The registry the fleet synced: its tenants are fresh, so the burst reads the mirror.
      await livenessServer.call("init", { sandbox, dataDir: registryDir, register: [] });
      const app = await livenessServer.call<{ url: string }>("startApp", { freshnessSeconds: 3600 } satisfies AppParams);
      const ids = sandbox.tenants.slice(0, Math.min(100, PLAN.tenants)).filter((t) => t.readable).map((t) => t.id);
      liveness = await measureLiveness(app.url, ids, QUICK ? 100 : 500);
    } finally {
      await livenessServer.close();
    }
  }
  if (!SKIP.has("hunting")) {
    // Hunting across tenants (issue 15): its own sandbox (hunting roles, more incidents) and server processes.
    log(`\nhunting: parallel hunt over 100 tenants, memory of large hunts [${elapsed()}]`);
    hunting = await measureHunting(huntingPlan(QUICK), log);
  }
  if (!SKIP.has("replicas")) {
    log(`\nreplicas on PostgreSQL + Redis [${elapsed()}]`);
    await sandboxChild.call("setLatency", { fixedMs: 100 });
    replicas = await measureReplicas({
      sandbox,
      sandboxChild,
      tenants: sandbox.tenants.slice(0, QUICK ? 10 : 100).filter((t) => t.readable),
      loadMs: PLAN.loadMs,
      connections: PLAN.loadConnections,
      sustainedMs: QUICK ? 6_000 : 30_000,
      log,
    });
  }
} finally {
  await sandboxChild.close();
  await rm(registryDir, { recursive: true, force: true });
}
if (mirror) {
  log(`\n${formatMirror(mirror)}`);
  log("\nTargets (issue 14; goals, not gates)");
  for (const t of mirrorTargets(mirror)) log(`  ${t.met === null ? "n/a   " : t.met ? "met   " : "MISSED"}  ${t.target}: ${t.value}`);
}
if (liveness) log(`\n${formatLiveness(liveness)}`);
if (hunting) log(`\n${formatHunting(hunting)}`);
reportReplicas(replicas);
await save();

// ---------------------------------------------------------------------------------------------------

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
      `${s.listsPerTenantPerMinute.max <= s.budgetPerMinute ? "within" : "OVER"}); tokens per tenant over the section (2 replicas × 2 starts, TOKEN_CACHE_KEY set) median ${fixed(s.tokensPerTenant)}, max ${fixed(s.maxTokensPerTenant)}; throttled ${s.throttled}`,
  );
}

async function save(): Promise<void> {
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
    partial: PARTIAL ? { tenants: ONLY_TENANTS ?? null, skipped: [...SKIP] } : null,
    seconds: Math.round((performance.now() - started) / 1000),
    machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, memoryGb: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.platform()} ${os.release()}` },
    conditions: { loadAverageAtStart: loadAtStart, loadAverageAtEnd: os.loadavg(), registryFirstStart: registryFirstStart ?? null },
    plan: { ...PLAN, seed: SEED },
    mirror: mirror ?? null,
    targets: mirror ? mirrorTargets(mirror) : [],
    replicas: replicas ?? null,
    liveness: liveness ?? null,
    hunting: hunting ?? null,
  };
  const dir = new URL("./results/", import.meta.url);
  await mkdir(dir, { recursive: true });
  const json = `${JSON.stringify(document, null, 2)}\n`;
  // Only a full run is a record to compare commits by; a quick or partial one is kept apart (git-ignored).
  const complete = !QUICK && !PARTIAL;
  const name = QUICK ? "quick.json" : PARTIAL ? "partial.json" : "latest.json";
  await writeFile(new URL(name, dir), json);
  if (complete) await writeFile(new URL(`${at.toISOString().replace(/[:.]/g, "-")}-${commit}.json`, dir), json);
  log(`\nwritten: bench/results/${name}${complete ? " and a timestamped copy" : ""} [${elapsed()}]`);
}
