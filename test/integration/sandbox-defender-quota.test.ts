import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { UpstreamError } from "../../src/defender/backend-client.js";
import { DefenderIncidentsClient } from "../../src/defender/defender-client.js";
import { InProcessRateBudget } from "../../src/defender/rate-budget.js";
import type { TokenProvider } from "../../src/auth/token-provider.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { startTestSandbox, type RawResponse, type TestSandbox } from "../helpers/sandbox.js";

/**
 * The Defender incidents API's overall quota (api-incident: 50 calls a minute and 1,500 an hour per app
 * per tenant for list, get and update together, besides each method's own): the sandbox enforces it, and
 * the client's budget keeps a mix of calls under it without meeting a 429.
 */

describe("the Defender API's overall quota", () => {
  let t: TestSandbox;
  let small: TestSandbox;

  before(async () => {
    [t, small] = await Promise.all([
      startTestSandbox(),
      // Small windows keep the mixed-call tests fast; each method's own quota stays far above.
      startTestSandbox({ rateLimits: { "defender.api": [{ limit: 5, windowSeconds: 60 }] } }),
    ]);
  });
  after(async () => {
    await Promise.all([t?.close(), small?.close()]);
  });

  const defenderTenants = (s: TestSandbox) => s.sandbox.tenants.filter((x) => x.resources.defender && x.consent.granted && x.incidentCount > 0);

  /** One call of each kind in turn: list, get, update (a harmless assignedTo). */
  async function mixedCall(s: TestSandbox, tenant: SandboxTenant, token: string, i: number): Promise<RawResponse> {
    const id = s.sandbox.incidents.forTenant(tenant.id)[0]!.incidentId;
    switch (i % 3) {
      case 0:
        return s.call("GET", "/api/incidents?$top=1", { token });
      case 1:
        return s.call("GET", `/api/incidents/${id}`, { token });
      default:
        return s.call("PATCH", `/api/incidents/${id}`, { token, json: { assignedTo: `analyst${i}@contoso.example` } });
    }
  }

  it("with Microsoft's numbers: 50 mixed list/get/update calls in a minute pass, the 51st gets 429 with Retry-After", async () => {
    const [tenant, other] = defenderTenants(t);
    const token = await t.sandbox.mintAccessToken({ tenantId: tenant!.id, resource: "defender" });
    t.sandbox.context.resetCounters(true);
    // 17 lists, 17 gets, 16 updates: each far below its own quota (50, 100, 50 a minute).
    for (let i = 0; i < 50; i++) {
      const response = await mixedCall(t, tenant!, token, i);
      assert.equal(response.status, 200, `call ${i + 1}: ${response.text}`);
    }
    const refused = await mixedCall(t, tenant!, token, 50);
    assert.equal(refused.status, 429);
    assert.equal(refused.json.error.code, "TooManyRequests");
    assert.match(refused.json.error.message, /Maximum allowed 50 per 1 minute\(s\)/);
    const retryAfter = Number(refused.headers["retry-after"]);
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    // Per app and tenant: another tenant still has its whole quota.
    const otherToken = await t.sandbox.mintAccessToken({ tenantId: other!.id, resource: "defender" });
    assert.equal((await mixedCall(t, other!, otherToken, 1)).status, 200);
    assert.equal(t.sandbox.context.counterSnapshot().byTenant[tenant!.id]?.throttled, 1);
  });

  it("configurable: a mix of list, get and update shares a window of 5; refused calls use none of it", async () => {
    const [tenant] = defenderTenants(small);
    const token = await small.sandbox.mintAccessToken({ tenantId: tenant!.id, resource: "defender" });
    small.sandbox.context.resetCounters(true);
    for (let i = 0; i < 5; i++) assert.equal((await mixedCall(small, tenant!, token, i)).status, 200, `call ${i + 1}`);
    for (let i = 5; i < 8; i++) {
      const refused = await mixedCall(small, tenant!, token, i);
      assert.equal(refused.status, 429, `call ${i + 1} kind ${i % 3}`);
      assert.match(refused.json.error.message, /Maximum allowed 5 per 1 minute\(s\)/);
      assert.ok(Number(refused.headers["retry-after"]) >= 1);
    }
    // The window slides on the sandbox clock; the refused calls were not charged, so all 5 slots are back.
    small.sandbox.context.advanceClock(61_000);
    for (let i = 0; i < 5; i++) assert.equal((await mixedCall(small, tenant!, token, i)).status, 200, `after the minute, call ${i + 1}`);
    // Graph is another API with its own quota.
    const graphToken = await small.sandbox.mintAccessToken({ tenantId: tenant!.id, resource: "graph" });
    if (tenant!.resources.graph) assert.equal((await small.call("GET", "/v1.0/security/incidents?$top=1", { token: graphToken })).status, 200);
  });

  it("the client's budget keeps a mix of calls under the overall quota: refused before sending, never a 429", async () => {
    const [, tenant] = defenderTenants(small);
    small.sandbox.context.resetCounters(true);
    const tokens: TokenProvider = {
      getToken: async (tenantId, resource) => {
        const accessToken = await small.sandbox.mintAccessToken({ tenantId, resource });
        return { accessToken, expiresOn: new Date(Date.now() + 3_600_000), fromCache: false, claims: undefined, fingerprint: "test" };
      },
      invalidate: () => undefined,
      forgetFailures: () => undefined,
      stats: () => ({ requests: 0, cacheHits: 0, coalesced: 0, acquisitions: 0, tokensIssued: 0, failures: 0, backoffRefusals: 0, cachedTokens: 0 }),
    };
    const client = new DefenderIncidentsClient({
      baseUrl: small.sandbox.url,
      dispatcher: small.dispatcher,
      tokenProvider: tokens,
      // The same overall quota as the sandbox's; each method's own is Microsoft's (far above 5).
      budget: new InProcessRateBudget({ limits: { "defender.api": [{ limit: 5, windowSeconds: 60 }] } }),
    });
    const id = String(small.sandbox.incidents.forTenant(tenant!.id)[0]!.incidentId);
    // Generous, so no single call can run out of time on a loaded machine; the refused one waits 60 s, far past it.
    const options = () => ({ deadline: Date.now() + 30_000 });
    const calls = [
      () => client.listIncidents(tenant!.id, { ...options(), updatedSince: new Date(Date.now() + 86_400_000) }),
      () => client.getIncident(tenant!.id, id, options()),
      () => client.updateIncident(tenant!.id, id, { assignedTo: "analyst@contoso.example" }, options()),
    ];
    let refused: unknown;
    for (let i = 0; i < 9 && refused === undefined; i++) {
      await calls[i % 3]!().catch((e: unknown) => (refused = e));
    }
    assert.ok(refused instanceof UpstreamError, String(refused));
    assert.equal(refused.code, "THROTTLED");
    assert.ok(refused.retryAfterSeconds! > 5);
    assert.equal(refused.details.status, undefined, "refused by the budget, not by the API");
    const counters = small.sandbox.context.counterSnapshot();
    const sent = counters.byTenant[tenant!.id] ?? {};
    assert.equal((sent["defender.list"] ?? 0) + (sent["defender.get"] ?? 0) + (sent["defender.patch"] ?? 0), 5);
    assert.equal(counters.throttled, 0);
  });
});
