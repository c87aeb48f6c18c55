import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { loadConfig } from "../../src/config.js";
import { createDispatcher } from "../../src/http/dispatcher.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { answerConsentPage } from "../helpers/consent-browser.js";
import { postGraphQL, type GraphQLResponse } from "../helpers/graphql.js";

const OUTCOMES = `query($ids: [ID!]) {
  incidents(first: 1, tenantIds: $ids) {
    totalCount
    tenantOutcomes { tenantId ok fromCache fetchedAt error { code message hint retryAfterSeconds } }
  }
}`;
const DIAGNOSE = `query($ids: [ID!]!) { tokenDiagnostics(tenantIds: $ids) { tenantId ok roles error { code message retryAfterSeconds } } }`;
const TENANT_TOKEN = `query($id: ID!) { tenant(id: $id) { token { ok error { code message retryAfterSeconds } } } }`;

/** Long enough never to run out during the test: nothing here depends on the wall clock. */
const MEMORY_SECONDS = 600;

/**
 * Lasting tenant failures (no consent, no incident role) are remembered for TENANT_FAILURE_MEMORY_SECONDS:
 * server and sandbox over real HTTP, token requests and list calls counted by the sandbox.
 */
describe("lasting tenant failures are remembered", () => {
  let runtime: Runtime;
  let browser: ReturnType<typeof createDispatcher>;
  let gql: (query: string, variables?: Record<string, unknown>) => Promise<GraphQLResponse<any>>;
  let alpine: SandboxTenant;
  let coho: SandboxTenant;
  /** Calls the sandbox counted for a tenant since the last reset. */
  const calls = (tenant: SandboxTenant, endpoint: "token" | "defender.list") =>
    runtime.sandbox!.context.counterSnapshot().byTenant[tenant.id]?.[endpoint] ?? 0;
  const outcomeOf = async (tenant: SandboxTenant) => {
    const result = await gql(OUTCOMES, { ids: [tenant.id] });
    assert.equal(result.body.errors, undefined, JSON.stringify(result.body.errors));
    return result.body.data.incidents.tenantOutcomes[0];
  };

  before(async () => {
    runtime = await startRuntime(
      // The request path only (INCIDENT_SYNC off): a tenant is synced by the query that names it, so the
      // sandbox's counters hold only what the queries caused; and that query waits for the tenant's whole
      // first sync (not only its first page), however slow the machine.
      loadConfig({
        PORT: "0",
        LOG_LEVEL: "silent",
        DATA_DIR: "memory://",
        TENANT_FAILURE_MEMORY_SECONDS: String(MEMORY_SECONDS),
        INCIDENT_SYNC: "false",
        INCIDENT_FIRST_LOAD_WAIT_MS: "60000",
      }),
    );
    browser = createDispatcher({ trustedCaPem: [runtime.sandbox!.caCertPem], connectTimeoutMs: 5000, connectionsPerOrigin: 4 });
    gql = (query, variables) => postGraphQL(runtime.url, query, variables);
    alpine = runtime.sandbox!.tenants.find((t) => t.displayName === "Alpine Ski House")!;
    coho = runtime.sandbox!.tenants.find((t) => t.displayName === "Coho Winery")!;
  });
  after(async () => {
    await browser.close();
    await runtime.close();
  });

  it("an unconsented tenant costs one token request for many queries, each answered with the same failure", async () => {
    runtime.sandbox!.context.resetCounters();
    const first = await outcomeOf(alpine);
    assert.equal(first.ok, false);
    assert.equal(first.error.code, "CONSENT_REQUIRED");
    assert.equal(first.error.retryAfterSeconds, null, "the first answer is Entra's own");
    const sequential = [];
    for (let i = 0; i < 10; i++) sequential.push(await outcomeOf(alpine));
    const burst = await Promise.all(Array.from({ length: 20 }, () => outcomeOf(alpine)));
    for (const again of [...sequential, ...burst]) {
      assert.deepEqual(
        { ok: again.ok, fromCache: again.fromCache, fetchedAt: again.fetchedAt, code: again.error.code, message: again.error.message, hint: again.error.hint },
        { ok: false, fromCache: false, fetchedAt: null, code: first.error.code, message: first.error.message, hint: first.error.hint },
      );
      assert.ok(again.error.retryAfterSeconds > 0 && again.error.retryAfterSeconds <= MEMORY_SECONDS, String(again.error.retryAfterSeconds));
    }
    assert.equal(calls(alpine, "token"), 1, "one token request for 31 queries");
    assert.equal(calls(alpine, "defender.list"), 0);

    // Tenant.token honours the memory too: the remembered failure, no token request.
    const token = await gql(TENANT_TOKEN, { id: alpine.id });
    assert.equal(token.body.data.tenant.token.error.code, "CONSENT_REQUIRED");
    assert.ok(token.body.data.tenant.token.error.retryAfterSeconds > 0);
    assert.equal(calls(alpine, "token"), 1);
  });

  it("a role-less tenant costs one list call for many queries", async () => {
    runtime.sandbox!.context.resetCounters();
    const first = await outcomeOf(coho);
    assert.equal(first.error.code, "MISSING_ROLE");
    const again = await Promise.all(Array.from({ length: 15 }, () => outcomeOf(coho)));
    for (const outcome of again) {
      assert.equal(outcome.error.code, "MISSING_ROLE");
      assert.equal(outcome.error.message, first.error.message);
      assert.equal(outcome.error.hint, first.error.hint);
      assert.ok(outcome.error.retryAfterSeconds > 0);
    }
    assert.equal(calls(coho, "defender.list"), 1, "one 403 for 16 queries");
    assert.ok(calls(coho, "token") <= 1);
  });

  it("tokenDiagnostics re-checks: a fresh token request past the memory, whose answer the memory then holds", async () => {
    runtime.sandbox!.context.resetCounters();
    const rechecked = await gql(DIAGNOSE, { ids: [alpine.id] });
    assert.equal(rechecked.body.data.tokenDiagnostics[0].error.code, "CONSENT_REQUIRED");
    assert.equal(rechecked.body.data.tokenDiagnostics[0].error.retryAfterSeconds, null, "Entra's own answer, not the remembered one");
    assert.equal(calls(alpine, "token"), 1, "the re-check asked Entra");
    const outcome = await outcomeOf(alpine);
    assert.equal(outcome.error.code, "CONSENT_REQUIRED");
    assert.ok(outcome.error.retryAfterSeconds > 0);
    assert.equal(calls(alpine, "token"), 1, "the query after it asked nobody");

    // Consent given behind Crosswatch's back (no callback): the memory still answers, until a re-check.
    const response = await request(`${runtime.sandbox!.url}/_sandbox/tenants/${alpine.id}/grant-consent`, {
      method: "POST",
      dispatcher: browser,
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(response.statusCode, 200, await response.body.text());
    assert.equal((await outcomeOf(alpine)).error.code, "CONSENT_REQUIRED");
    assert.equal(calls(alpine, "token"), 1);
    const ok = await gql(DIAGNOSE, { ids: [alpine.id] });
    assert.equal(ok.body.data.tokenDiagnostics[0].ok, true);
    assert.equal(calls(alpine, "token"), 2);
    const service = runtime.app.incidents.stats();
    const listed = await outcomeOf(alpine);
    assert.equal(listed.ok, true, JSON.stringify(listed));
    assert.equal(listed.error, null);
    // The next query went upstream: one refresh. Its list is one call, unless the transport retried an
    // attempt (a timeout, a reset: a loaded machine can cause one), which the client rightly counts as one
    // more call. So: one refresh, and every list call the sandbox saw is one of that refresh's attempts.
    const now = runtime.app.incidents.stats();
    const diagnostics = JSON.stringify({ refreshes: now.refreshes - service.refreshes, upstreamCalls: now.upstreamCalls - service.upstreamCalls, sandbox: runtime.sandbox!.context.counterSnapshot().byTenant[alpine.id] });
    assert.equal(now.refreshes - service.refreshes, 1, `one refresh: ${diagnostics}`);
    assert.ok(calls(alpine, "defender.list") >= 1, `the next query went upstream: ${diagnostics}`);
    assert.equal(calls(alpine, "defender.list"), now.upstreamCalls - service.upstreamCalls, `no list call besides the refresh's attempts: ${diagnostics}`);
  });

  it("after the consent callback the next query goes upstream again, with a token carrying the new roles", async () => {
    const link = (await gql(`{ tenant(id: "${coho.id}") { consentLink { url } } }`)).body.data.tenant.consentLink.url;
    assert.equal((await outcomeOf(coho)).error.code, "MISSING_ROLE", "still remembered");
    const answer = await answerConsentPage(link, { dispatcher: browser, decision: "accept" });
    const callback = new URL(answer.location);
    assert.equal(callback.searchParams.get("admin_consent"), "True");
    runtime.sandbox!.context.resetCounters();
    const page = await request(`${runtime.url}/consent/callback${callback.search}`);
    const html = await page.body.text();
    assert.equal(page.statusCode, 200);
    assert.match(html, /is onboarded/, "the callback's check saw the new roles");
    assert.equal(calls(coho, "token"), 1, "a fresh token, past the one with the old roles");

    const outcome = await outcomeOf(coho);
    assert.equal(outcome.ok, true, JSON.stringify(outcome));
    assert.ok(calls(coho, "defender.list") >= 1, "listed upstream");
  });
});

describe("TENANT_FAILURE_MEMORY_SECONDS=0", () => {
  let runtime: Runtime;

  before(async () => {
    runtime = await startRuntime(loadConfig({ PORT: "0", LOG_LEVEL: "silent", DATA_DIR: "memory://", TENANT_FAILURE_MEMORY_SECONDS: "0", INCIDENT_SYNC: "false" }));
  });
  after(async () => {
    await runtime.close();
  });

  it("asks again on every query", async () => {
    const alpine = runtime.sandbox!.tenants.find((t) => t.displayName === "Alpine Ski House")!;
    runtime.sandbox!.context.resetCounters();
    for (let i = 0; i < 3; i++) {
      const result = await postGraphQL(runtime.url, OUTCOMES, { ids: [alpine.id] });
      const outcome = result.body.data.incidents.tenantOutcomes[0];
      assert.equal(outcome.error.code, "CONSENT_REQUIRED");
      assert.equal(outcome.error.retryAfterSeconds, null);
    }
    assert.equal(runtime.sandbox!.context.counterSnapshot().byTenant[alpine.id]?.token, 3);
  });
});
