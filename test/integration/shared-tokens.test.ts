import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { request } from "undici";
import { createApp, type App } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { withSandbox } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { openStore, type Store } from "../../src/store/store.js";
import { postGraphQL } from "../helpers/graphql.js";
import { captureLogger } from "../helpers/log-capture.js";
import { startTestSandbox, type TestSandbox } from "../helpers/sandbox.js";

const REDIS_URL = process.env.TEST_REDIS_URL;
const skip = REDIS_URL ? false : "needs TEST_REDIS_URL (set by .ci/run): the replicas share their tokens through Redis";

const INCIDENTS = `query($ids: [ID!], $maxAge: Int) {
  incidents(tenantIds: $ids, first: 5, maxAgeSeconds: $maxAge) { tenantOutcomes { tenantId ok fromCache error { code } } }
}`;
const TOKEN = `query($id: ID!) { tenant(id: $id) { token { ok fromCache tid roles claimsReadable expiresAt } } }`;

/**
 * Issue 14's upstream economy across a fleet: two apps (replicas) on one sandbox, one store and one Redis
 * with one TOKEN_CACHE_KEY ask Entra once per tenant and resource per token lifetime, keep the tokens
 * encrypted in Redis, and after a consent on one of them both use the one new token. Counted by the
 * sandbox's own token endpoint, per tenant; no background sync (INCIDENT_SYNC=false), so every token
 * request is one the test caused.
 */
describe("app-only tokens shared by two replicas through Redis", { skip }, () => {
  let t: TestSandbox;
  let store: Store;
  let a: App;
  let b: App;
  let urlA: string;
  let urlB: string;
  let tenant: SandboxTenant;
  const prefix = `cwtest-${randomBytes(5).toString("hex")}`;
  const tokenCacheKey = `shared-token-key-${randomBytes(24).toString("hex")}`;
  const logsA = captureLogger("debug");
  const logsB = captureLogger("debug");
  /** Replica B's incident clock runs ten minutes ahead, so `maxAgeSeconds: 60` makes it sync (and use a token). */
  const clockB = () => Date.now() + 10 * 60_000;
  const tokenCalls = () => t.sandbox.context.counterSnapshot().byTenant[tenant.id]?.token ?? 0;
  const listCalls = () => t.sandbox.context.counterSnapshot().byTenant[tenant.id]?.["defender.list"] ?? 0;
  /** Every value stored under this run's prefix (the token entries, generations and locks). */
  const redisValues = async (): Promise<Map<string, string>> => {
    const redis = new Redis(REDIS_URL!);
    try {
      const keys = await redis.keys(`${prefix}:*`);
      const out = new Map<string, string>();
      for (const key of keys) {
        if ((await redis.type(key)) === "string") out.set(key, (await redis.get(key))!);
      }
      return out;
    } finally {
      redis.disconnect();
    }
  };

  before(async () => {
    t = await startTestSandbox();
    tenant = t.sandbox.tenants.find((x) => x.resources.defender && x.consent.granted && x.consent.roles.defender.includes("Incident.ReadWrite.All"))!;
    assert.ok(tenant, "a consented Defender tenant");
    store = await openStore({});
    const config = withSandbox(
      loadConfig({
        PORT: "0",
        METRICS_PORT: "off",
        SANDBOX: "true",
        DATA_DIR: "memory://",
        REDIS_URL,
        REDIS_PREFIX: prefix,
        TOKEN_CACHE_KEY: tokenCacheKey,
        // Only the test's queries ask for tokens.
        INCIDENT_SYNC: "false",
        // A cold query waits for the tenant's whole first sync, however loaded the machine.
        INCIDENT_FIRST_LOAD_WAIT_MS: "60000",
        OPERATION_TIMEOUT_MS: "60000",
      }),
      t.sandbox,
    );
    a = await createApp(config, { store, logger: logsA.logger });
    b = await createApp(config, { store, logger: logsB.logger, incidentClock: clockB });
    [urlA, urlB] = await Promise.all([a.listen(), b.listen()]);
    await store.tenants.registerMissing([{ id: tenant.id, displayName: tenant.displayName, tags: tenant.tags, consentState: "GRANTED" }]);
  });

  after(async () => {
    await a?.close();
    await b?.close();
    await store?.close();
    await t?.close();
    const redis = new Redis(REDIS_URL!);
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  it("asks Entra once for both replicas, keeps the token encrypted in Redis, and gets one new token for both after a consent", async () => {
    // Replica A's first query: one token request.
    const cold = await postGraphQL(urlA, INCIDENTS, { ids: [tenant.id] });
    assert.equal(cold.body.errors, undefined, JSON.stringify(cold.body.errors));
    assert.equal(cold.body.data.incidents.tenantOutcomes[0].ok, true, JSON.stringify(cold.body.data));
    assert.equal(tokenCalls(), 1);
    const issued = await a.tokenProvider.getToken(tenant.id, "defender");
    assert.equal(issued.fromCache, true, "from A's memory: no further request");

    // What Redis holds: neither the token (nor its payload) nor the key it is sealed with.
    const values = await redisValues();
    const entries = [...values].filter(([key]) => key.endsWith(`{${tenant.id}}:defender`));
    assert.equal(entries.length, 1, [...values.keys()].join(", "));
    for (const [key, value] of values) {
      assert.ok(!value.includes(issued.accessToken) && !value.includes(issued.accessToken.split(".")[1]!), `${key} holds the token`);
      assert.ok(!value.includes(tokenCacheKey) && !key.includes(tokenCacheKey), `${key} holds TOKEN_CACHE_KEY`);
    }
    assert.match(entries[0]![1], /^v1\./);

    // Replica B's first query of the tenant makes an upstream call, and no token request.
    const lists = listCalls();
    const onB = await postGraphQL(urlB, INCIDENTS, { ids: [tenant.id], maxAge: 60 });
    assert.equal(onB.body.errors, undefined, JSON.stringify(onB.body.errors));
    assert.deepEqual(onB.body.data.incidents.tenantOutcomes[0], { tenantId: tenant.id, ok: true, fromCache: false, error: null });
    assert.equal(listCalls(), lists + 1, "B synced the tenant itself");
    assert.equal(tokenCalls(), 1, "with A's token");
    assert.equal(b.tokenProvider.stats().acquisitions, 0);
    assert.equal((await b.tokenProvider.getToken(tenant.id, "defender")).accessToken, issued.accessToken);

    // Token diagnostics on B describe the shared token: from cache, its claims read as usual.
    const diagnosis = (await postGraphQL(urlB, TOKEN, { id: tenant.id })).body.data.tenant.token;
    assert.equal(diagnosis.ok, true);
    assert.equal(diagnosis.fromCache, true);
    assert.equal(diagnosis.claimsReadable, true);
    assert.equal(diagnosis.tid, tenant.id);
    assert.deepEqual(diagnosis.roles, tenant.consent.roles.defender);
    assert.equal(new Date(diagnosis.expiresAt).getTime(), issued.expiresOn.getTime());
    assert.equal(tokenCalls(), 1);

    // The customer's admin changes the grant and answers on A (a stateless answer: A checks it with a
    // fresh token). Every replica must now use a token with the new roles.
    tenant.consent.roles.defender = tenant.consent.roles.defender.filter((role) => role !== "Incident.ReadWrite.All");
    const callback = await request(`${urlA}/consent/callback?admin_consent=True&tenant=${tenant.id}`);
    const page = await callback.body.text();
    assert.equal(callback.statusCode, 200, page);
    assert.equal(tokenCalls(), 2, "A asked Entra for a fresh token");
    // B hears of the invalidation and drops its copy (an event on B's side: polled, not slept on).
    for (let i = 0; i < 3000 && b.tokenProvider.stats().cachedTokens > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(b.tokenProvider.stats().cachedTokens, 0, "B dropped the token issued before the consent");

    const after = (await postGraphQL(urlB, TOKEN, { id: tenant.id })).body.data.tenant.token;
    assert.equal(after.fromCache, true, "B took A's new token");
    assert.deepEqual(after.roles, tenant.consent.roles.defender);
    assert.ok(!after.roles.includes("Incident.ReadWrite.All"));
    const fresh = await a.tokenProvider.getToken(tenant.id, "defender");
    assert.notEqual(fresh.accessToken, issued.accessToken);
    assert.equal((await b.tokenProvider.getToken(tenant.id, "defender")).accessToken, fresh.accessToken);
    const again = await postGraphQL(urlB, INCIDENTS, { ids: [tenant.id], maxAge: 60 });
    assert.equal(again.body.data.incidents.tenantOutcomes[0].ok, true, JSON.stringify(again.body));
    assert.equal(tokenCalls(), 2, "one new token for the fleet, not one per replica");
    assert.equal(b.tokenProvider.stats().acquisitions, 0, "B never asked MSAL");

    // No log line of either replica carries a token or the cache key.
    for (const line of [...logsA.lines, ...logsB.lines]) {
      for (const secret of [issued.accessToken, fresh.accessToken, tokenCacheKey]) assert.ok(!line.includes(secret), line.slice(0, 200));
    }
    assert.ok(logsB.lines.some((line) => line.includes("access token taken from the shared cache")), "B's debug log says where its token came from");
  });
});
