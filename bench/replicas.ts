import { randomBytes } from "node:crypto";
import { createConnection } from "node:net";
import { Redis } from "ioredis";
import pg from "pg";
import type { CounterSnapshot } from "../src/sandbox/context.js";
import { DEFAULT_RATE_LIMITS } from "../src/defender/rate-budget.js";
import { load, type LoadResult } from "./load.js";
import { startChild, type Child } from "./rpc.js";
import type { SandboxInfo } from "./sandbox-process.js";
import type { AppParams } from "./server-process.js";
import { median } from "./stats.js";

/**
 * Replicas on PostgreSQL and Redis (issue 7): warm throughput of one replica and of two behind a client
 * that spreads connections over both, and, under sustained load on both, the upstream calls each tenant
 * receives per minute beside its Defender list budget. Needs PostgreSQL and Redis: BENCH_DATABASE_URL /
 * BENCH_REDIS_URL, else the local defaults when their ports answer; otherwise the section is skipped.
 */

export interface ReplicasResult {
  tenants: number;
  oneReplica: LoadResult;
  twoReplicas: { requestsPerSecond: number; p50Ms: number; p99Ms: number; errors: number };
  sustained: {
    seconds: number;
    freshnessSeconds: number;
    listsPerTenantPerMinute: { median: number; max: number };
    budgetPerMinute: number;
    /** Token calls per tenant over the whole section (both replicas, each started twice): median and max. */
    tokensPerTenant: number;
    maxTokensPerTenant: number;
    throttled: number;
    queries: number;
  };
}

type Tenant = SandboxInfo["tenants"][number];

const QUERY = `query($ids: [ID!]) { incidents(tenantIds: $ids, first: 50) { totalCount edges { node { tenantId incidentId severity lastUpdateTime } } tenantOutcomes { tenantId ok fromCache } } }`;

/** Whether something accepts TCP connections at the URL's host and port (a service to bench against is up). */
export async function answers(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = createConnection({ host: hostname, port: Number(port) }, () => {
      socket.end();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
    socket.setTimeout(1_000, () => {
      socket.destroy();
      resolve(false);
    });
  });
}

export async function measureReplicas(options: {
  sandbox: SandboxInfo;
  sandboxChild: Child;
  tenants: Tenant[];
  loadMs: number;
  connections: number;
  sustainedMs: number;
  log: (line: string) => void;
}): Promise<ReplicasResult | { skipped: string }> {
  const databaseUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
  const redisUrl = process.env.BENCH_REDIS_URL ?? process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
  if (!(await answers(databaseUrl.replace(/^postgres(ql)?:/, "http:"))) || !(await answers(redisUrl.replace(/^rediss?:/, "http:")))) {
    return { skipped: `PostgreSQL (${new URL(databaseUrl).host}) or Redis (${new URL(redisUrl).host}) does not answer: set BENCH_DATABASE_URL and BENCH_REDIS_URL` };
  }
  const schema = `cw_bench_${randomBytes(5).toString("hex")}`;
  const prefix = `cwbench-${randomBytes(5).toString("hex")}`;
  const url = new URL(databaseUrl);
  url.searchParams.set("options", `-c search_path=${schema}`);
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  // Replicas share app-only tokens through Redis (TOKEN_CACHE_KEY, a random one per run): one token per tenant for the fleet.
  const shared = { databaseUrl: url.toString(), redisUrl, redisPrefix: prefix, tokenCacheKey: randomBytes(36).toString("base64") };
  const ids = options.tenants.map((t) => t.id);
  const body = { query: QUERY, variables: { ids } };
  const servers: Child[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const server = await startChild("./server-process.ts");
      servers.push(server);
      await server.call("attach", { sandbox: options.sandbox });
    }
    const start = async (freshnessSeconds: number) => {
      const urls: string[] = [];
      for (const server of servers) urls.push((await server.call<{ url: string }>("startApp", { freshnessSeconds, shared } satisfies AppParams)).url);
      return urls;
    };
    await options.sandboxChild.call("reset");
    let urls = await start(3600);
    await servers[0]!.call("registerTenants", { sandbox: options.sandbox });
    // Warm: the first replica refreshes every tenant; the second finds them in the shared cache.
    for (const u of urls) await load(u, body, { connections: 1, durationMs: 1 });

    options.log(`  replicas: warm throughput, one replica then two (${options.connections} connections, ${options.loadMs / 1000} s each)`);
    const oneReplica = await load(urls[0]!, body, { connections: options.connections, durationMs: options.loadMs, warmupMs: 500 });
    const half = Math.max(1, options.connections / 2);
    const both = await Promise.all(urls.map((u) => load(u, body, { connections: half, durationMs: options.loadMs, warmupMs: 500 })));
    const twoReplicas = {
      requestsPerSecond: both.reduce((sum, r) => sum + r.requestsPerSecond, 0),
      p50Ms: Math.max(...both.map((r) => r.p50Ms)),
      p99Ms: Math.max(...both.map((r) => r.p99Ms)),
      errors: both.reduce((sum, r) => sum + r.errors, 0),
    };

    // Sustained load on both with a short freshness bound: how often each tenant is called upstream.
    const freshnessSeconds = 5;
    urls = await start(freshnessSeconds);
    // Tokens over the whole section (both replicas, started twice): with TOKEN_CACHE_KEY, one per tenant for the fleet.
    const before = await options.sandboxChild.call<CounterSnapshot>("counters");
    await options.sandboxChild.call("reset");
    options.log(`  replicas: sustained load on both for ${options.sustainedMs / 1000} s, freshness ${freshnessSeconds} s`);
    const sustainedLoad = await Promise.all(urls.map((u) => load(u, body, { connections: half, durationMs: options.sustainedMs })));
    const snapshot = await options.sandboxChild.call<CounterSnapshot>("counters");
    const perMinute = options.tenants.map((t) => {
      const c = snapshot.byTenant[t.id] ?? {};
      return (((c["defender.list"] ?? 0) + (c["graph.list"] ?? 0)) * 60_000) / options.sustainedMs;
    });
    const tokens = options.tenants.map((t) => (before.byTenant[t.id]?.token ?? 0) + (snapshot.byTenant[t.id]?.token ?? 0));
    return {
      tenants: options.tenants.length,
      oneReplica,
      twoReplicas,
      sustained: {
        seconds: options.sustainedMs / 1000,
        freshnessSeconds,
        listsPerTenantPerMinute: { median: median(perMinute), max: Math.max(...perMinute) },
        budgetPerMinute: DEFAULT_RATE_LIMITS["defender.list"][0]!.limit,
        tokensPerTenant: median(tokens),
        maxTokensPerTenant: Math.max(...tokens),
        throttled: snapshot.throttled,
        queries: sustainedLoad.reduce((sum, r) => sum + r.requests, 0),
      },
    };
  } finally {
    for (const server of servers) await server.close();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
    const redis = new Redis(redisUrl);
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  }
}
