import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { composeServices } from "@apollo/composition";
import { ApolloGateway, RemoteGraphQLDataSource, type GraphQLDataSource } from "@apollo/gateway";
import { ApolloServer } from "@apollo/server";
import { startStandaloneServer } from "@apollo/server/standalone";
import { parse } from "graphql";
import { Redis } from "ioredis";
import pg from "pg";
import { createApp, type App } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { UpstreamError } from "../../src/defender/backend-client.js";
import { withSandbox } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { RedisRateBudget } from "../../src/shared/redis-state.js";
import { openStore } from "../../src/store/store.js";
import { postGraphQL } from "../helpers/graphql.js";
import { startTestSandbox, type TestSandbox } from "../helpers/sandbox.js";

const DATABASE_URL = process.env.TEST_DATABASE_URL;
const REDIS_URL = process.env.TEST_REDIS_URL;
const skip = !DATABASE_URL || !REDIS_URL ? "needs TEST_DATABASE_URL and TEST_REDIS_URL (set by .ci/run)" : false;

const silent = { debug() {}, info() {}, warn() {}, error() {} };
const QUEUE = `query($ids: [ID!], $maxAgeSeconds: Int) {
  incidents(tenantIds: $ids, first: 20, maxAgeSeconds: $maxAgeSeconds) { totalCount tenantOutcomes { tenantId ok fromCache syncState error { code } } }
}`;

/**
 * The gateway's view of one subgraph run as several replicas: round robin, and the next replica when one
 * refuses the connection (what a router or load balancer does).
 */
class ReplicaSet implements GraphQLDataSource {
  private next = 0;
  readonly served = new Map<string, number>();
  private readonly sources: { url: string; source: RemoteGraphQLDataSource }[];

  constructor(urls: string[]) {
    this.sources = urls.map((url) => ({ url, source: new RemoteGraphQLDataSource({ url }) }));
  }

  async process(options: Parameters<GraphQLDataSource["process"]>[0]) {
    let lastError: unknown;
    // Each request tries every replica once, starting from its turn (concurrent requests move `next` too).
    const start = this.next++;
    for (let i = 0; i < this.sources.length; i++) {
      const { url, source } = this.sources[(start + i) % this.sources.length]!;
      try {
        const response = await source.process(options);
        this.served.set(url, (this.served.get(url) ?? 0) + 1);
        return response;
      } catch (error) {
        lastError = error;
        if (!/ECONNREFUSED|ECONNRESET|other side closed|socket hang up/i.test(String((error as Error).message))) throw error;
      }
    }
    throw lastError;
  }
}

describe("two replicas on PostgreSQL and Redis behind @apollo/gateway", { skip }, () => {
  let t: TestSandbox;
  let replicas: App[] = [];
  let urls: string[] = [];
  let gatewayServer: ApolloServer | undefined;
  let gatewayUrl: string;
  let replicaSet: ReplicaSet;
  let readable: SandboxTenant[];
  /** The replicas' incident clock: the test moves it forward to make every cached tenant stale at once. */
  let clockOffsetMs = 0;
  const incidentClock = () => Date.now() + clockOffsetMs;
  const schema = `cw_replicas_${randomBytes(5).toString("hex")}`;
  const prefix = `cwtest-${randomBytes(5).toString("hex")}`;
  const databaseUrl = () => {
    const url = new URL(DATABASE_URL!);
    url.searchParams.set("options", `-c search_path=${schema}`);
    return url.toString();
  };
  const viaGateway = async (query: string, variables?: Record<string, unknown>) => {
    const response = await fetch(gatewayUrl, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query, variables }) });
    return (await response.json()) as { data?: any; errors?: { message: string }[] };
  };
  const lists = (tenantId: string) => t.sandbox.context.counterSnapshot().byTenant[tenantId]?.["defender.list"] ?? 0;

  before(async () => {
    t = await startTestSandbox({ latency: { fixedMs: 40 } });
    // Defender tenants the app can read (the unconsented, role-less and Graph-only ones aside).
    readable = t.sandbox.tenants.filter((x) => x.resources.defender && x.consent.granted && x.displayName !== "Coho Winery");
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    await admin.end();

    const config = withSandbox(
      loadConfig({
        PORT: "0",
        LOG_LEVEL: "silent",
        // The sandbox on an external database is a choice, never a fallback (src/deployment-mode.ts).
        SANDBOX: "true",
        DATABASE_URL: databaseUrl(),
        REDIS_URL,
        REDIS_PREFIX: prefix,
        // Fresh for the whole cold burst however loaded the machine; the test ages the mirror by its clock.
        INCIDENT_FRESHNESS_SECONDS: "60",
        // No background sync: every list call counted is one a query caused (tenants sync when a query must
        // wait for them: never synced, or older than its maxAgeSeconds).
        INCIDENT_SYNC: "false",
        // A cold query waits for each tenant's whole first sync run (up to the operation's deadline), however loaded the machine.
        INCIDENT_FIRST_LOAD_WAIT_MS: "60000",
      }),
      t.sandbox,
    );
    // Both replicas start together: the migrations run once, under the advisory lock.
    replicas = await Promise.all([createApp(config, { incidentClock }), createApp(config, { incidentClock })]);
    urls = await Promise.all(replicas.map((r) => r.listen()));
    await replicas[0]!.store.tenants.registerMissing(
      t.sandbox.tenants.map((x) => ({ id: x.id, displayName: x.displayName, tags: x.tags, consentState: x.consent.granted ? ("GRANTED" as const) : ("PENDING" as const) })),
    );

    const service = await postGraphQL(urls[0]!, "{ _service { sdl } }");
    const composed = composeServices([{ name: "crosswatch", url: `${urls[0]}/graphql`, typeDefs: parse(service.body.data._service.sdl) }]);
    if (composed.errors) assert.fail(composed.errors.map((e) => e.message).join("; "));
    replicaSet = new ReplicaSet(urls.map((u) => `${u}/graphql`));
    const gateway = new ApolloGateway({ supergraphSdl: composed.supergraphSdl, logger: silent, buildService: () => replicaSet });
    gatewayServer = new ApolloServer({ gateway, logger: silent });
    ({ url: gatewayUrl } = await startStandaloneServer(gatewayServer, { listen: { host: "127.0.0.1", port: 0 } }));
  });
  after(async () => {
    await gatewayServer?.stop();
    for (const replica of replicas) await replica.close();
    await t?.close();
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
    const redis = new Redis(REDIS_URL!);
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });

  it("refreshes each tenant once across both replicas, cold and then stale, under concurrent queries", async () => {
    const ids = readable.map((x) => x.id);
    const cold = await Promise.all(Array.from({ length: 12 }, () => viaGateway(QUEUE, { ids })));
    for (const result of cold) {
      assert.equal(result.errors, undefined, JSON.stringify(result.errors));
      assert.ok(result.data.incidents.tenantOutcomes.every((o: any) => o.ok), JSON.stringify(result.data.incidents.tenantOutcomes.filter((o: any) => !o.ok)));
    }
    assert.ok([...replicaSet.served.values()].every((n) => n >= 5), `both replicas served: ${JSON.stringify([...replicaSet.served])}`);
    for (const tenant of readable) {
      const count = t.sandbox.incidents.forTenant(tenant.id).length;
      // One full list: pages of 100, and one more (empty or short) that says the list has ended.
      assert.equal(lists(tenant.id), Math.floor(count / 100) + 1, `${tenant.displayName}: one cold refresh in all`);
    }
    const refreshes = replicas.map((r) => r.incidents.stats().refreshes);
    assert.equal(refreshes[0]! + refreshes[1]!, readable.length, `refreshes per replica: ${refreshes.join(" + ")}`);

    const before = new Map(readable.map((x) => [x.id, lists(x.id)]));
    clockOffsetMs += 61_000;
    // Stale now: without maxAgeSeconds the mirror is served as it is, with no call (no engine runs here).
    const served = await viaGateway(QUEUE, { ids });
    assert.equal(served.errors, undefined, JSON.stringify(served.errors));
    assert.ok(
      served.data.incidents.tenantOutcomes.every((o: any) => o.ok && o.fromCache && o.syncState === "STALE"),
      JSON.stringify(served.data.incidents.tenantOutcomes),
    );
    assert.deepEqual(new Map(readable.map((x) => [x.id, lists(x.id)])), before, "a stale tenant is served without a call");
    // Callers that want data at most 60 s old: each tenant is synced once more, by one replica for both.
    const stale = await Promise.all(Array.from({ length: 12 }, () => viaGateway(QUEUE, { ids, maxAgeSeconds: 60 })));
    for (const result of stale) {
      assert.equal(result.errors, undefined, JSON.stringify(result.errors));
      assert.ok(result.data.incidents.tenantOutcomes.every((o: any) => o.ok), JSON.stringify(result.data.incidents.tenantOutcomes.filter((o: any) => !o.ok)));
    }
    for (const tenant of readable) {
      assert.equal(lists(tenant.id) - before.get(tenant.id)!, 1, `${tenant.displayName}: one delta call in all, not one per replica`);
    }
    const deltas = replicas.map((r) => r.incidents.stats().refreshes);
    assert.equal(deltas[0]! + deltas[1]!, 2 * readable.length, `syncs per replica: ${deltas.join(" + ")}`);
  });

  it("keeps serving, and loses no stored data, when one replica stops under load", async () => {
    const ids = readable.map((x) => x.id);
    const renamed = readable[0]!;
    const rename = await viaGateway(`mutation { updateTenant(id: "${renamed.id}", input: { displayName: "Renamed during failover" }) { displayName } }`);
    assert.equal(rename.data.updateTenant.displayName, "Renamed during failover");

    const load = Array.from({ length: 20 }, (_, i) =>
      new Promise((resolve) => setTimeout(resolve, i * 15)).then(() => viaGateway(QUEUE, { ids })),
    );
    await new Promise((resolve) => setTimeout(resolve, 60));
    await replicas[0]!.close();
    const results = await Promise.all(load);
    for (const result of results) assert.equal(result.errors, undefined, JSON.stringify(result.errors));

    const after = await viaGateway(`{ tenant(id: "${renamed.id}") { displayName } tenants(first: 100) { totalCount } }`);
    assert.equal(after.data.tenant.displayName, "Renamed during failover");
    assert.equal(after.data.tenants.totalCount, t.sandbox.tenants.length);
    const store = await openStore({ databaseUrl: databaseUrl() });
    try {
      assert.equal(await store.tenants.count(), t.sandbox.tenants.length);
      assert.equal((await store.tenants.get(renamed.id))?.displayName, "Renamed during failover");
      const audit = await store.audit.list({ tenantId: renamed.id, action: "tenant.update" });
      assert.equal(audit.items[0]?.outcome, "SUCCESS");
    } finally {
      await store.close();
    }
  });
});

describe("the rate budget shared through Redis", { skip }, () => {
  let redis: [Redis, Redis];
  const prefix = `cwtest-${randomBytes(5).toString("hex")}`;

  before(async () => {
    redis = [new Redis(REDIS_URL!), new Redis(REDIS_URL!)];
  });
  after(async () => {
    const keys = await redis[0].keys(`${prefix}:*`);
    if (keys.length > 0) await redis[0].del(...keys);
    await Promise.all(redis.map((r) => r.quit()));
  });

  it("lets two replicas together send no more than the tenant's window allows, and refuses waits past the deadline", async () => {
    const limits = { "defender.list": [{ limit: 4, windowSeconds: 2 }] };
    const budgets = redis.map((r) => new RedisRateBudget(r, { prefix, limits, safetyMarginMs: 0 }));
    const granted: number[] = [];
    const started = Date.now();
    const attempts = Array.from({ length: 12 }, (_, i) =>
      // Below the 2 s window, so the fifth call's slot never fits; as long as it can be, so the first four are
      // granted however slowly a loaded machine gets to them.
      budgets[i % 2]!.acquire("tenant-a", "defender.list", { deadline: Date.now() + 1_900 }).then(
        (permit) => {
          granted.push(Date.now() - started);
          permit.release();
          return "granted";
        },
        (error: unknown) => (error instanceof UpstreamError ? error.code : String(error)),
      ),
    );
    const outcomes = await Promise.all(attempts);
    assert.equal(outcomes.filter((o) => o === "granted").length, 4, JSON.stringify(outcomes));
    assert.equal(outcomes.filter((o) => o === "THROTTLED").length, 8);
    // Another tenant's window is its own.
    const other = await budgets[1]!.acquire("tenant-b", "defender.list", { deadline: Date.now() + 100 });
    other.release();
  });

  it("makes every replica wait out a Retry-After that one of them received", async () => {
    const budgets = redis.map((r) => new RedisRateBudget(r, { prefix }));
    budgets[0]!.throttled("tenant-c", "graph", 30_000);
    // The block is written to Redis in the background: wait until it is there, not for a guessed while.
    while ((await redis[1].exists(`${prefix}:block:{tenant-c}:graph`)) === 0) await new Promise((resolve) => setImmediate(resolve));
    await assert.rejects(budgets[1]!.acquire("tenant-c", "graph", { deadline: Date.now() + 1_000 }), (error: unknown) => {
      assert.ok(error instanceof UpstreamError);
      assert.equal(error.code, "THROTTLED");
      assert.ok((error.retryAfterSeconds ?? 0) >= 20, String(error.retryAfterSeconds));
      return true;
    });
  });
});
