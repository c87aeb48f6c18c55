import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { loadConfig } from "../../src/config.js";
import { createDispatcher } from "../../src/http/dispatcher.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import type { TenantStore } from "../../src/store/tenant-store.js";
import { answerConsentPage } from "../helpers/consent-browser.js";
import { postGraphQL, type GraphQLResponse } from "../helpers/graphql.js";

const OUTCOMES = `query($ids: [ID!]) {
  incidents(first: 1, tenantIds: $ids, maxAgeSeconds: 0) {
    edges { node { incidentId } }
    tenantOutcomes { tenantId ok error { code consentLink { url } } }
  }
}`;
const TENANT = `query($id: ID!) { tenant(id: $id) { consentState consentError lastFailureCode lastFailureAt lastTokenSuccessAt } }`;
const AUDIT = `query($t: ID!) { auditEvents(filter: { tenantId: $t }, first: 50) { edges { node { action actorKind actorId outcome } } } }`;

/**
 * Issue 13 item 10: every path records a registered tenant's outcome in the registry (throttled: one write
 * per tenant per code per minute), and a GRANTED tenant whose token is refused for want of consent becomes
 * REVOKED, audited under a SYSTEM actor. Server and sandbox over real HTTP; store writes counted by wrapping
 * `TenantStore.recordOutcome`.
 */
describe("tenant outcomes are remembered in the registry", () => {
  let runtime: Runtime;
  let browser: ReturnType<typeof createDispatcher>;
  let gql: (query: string, variables?: Record<string, unknown>) => Promise<GraphQLResponse<any>>;
  /** Every recordOutcome call: tenant id and what was recorded. */
  const writes: { tenantId: string; ok: boolean; code?: string }[] = [];
  const named = (name: string): SandboxTenant => runtime.sandbox!.tenants.find((t) => t.displayName === name)!;
  const writesOf = (tenant: SandboxTenant) => writes.filter((w) => w.tenantId === tenant.id);
  const registry = async (tenant: SandboxTenant) => {
    await runtime.app.outcomes.idle();
    const result = await gql(TENANT, { id: tenant.id });
    assert.equal(result.body.errors, undefined, result.text);
    return result.body.data.tenant;
  };
  const outcomeOf = async (tenant: SandboxTenant) => {
    const result = await gql(OUTCOMES, { ids: [tenant.id] });
    assert.equal(result.body.errors, undefined, result.text);
    return { outcome: result.body.data.incidents.tenantOutcomes[0], edges: result.body.data.incidents.edges };
  };
  const auditOf = async (tenant: SandboxTenant) =>
    (await gql(AUDIT, { t: tenant.id })).body.data.auditEvents.edges.map((e: { node: Record<string, string> }) => e.node);
  const control = async (path: string) => {
    const response = await request(`${runtime.sandbox!.url}/_sandbox${path}`, { method: "POST", dispatcher: browser });
    assert.equal(response.statusCode, 200, await response.body.text());
    await response.body.dump();
  };

  before(async () => {
    runtime = await startRuntime(
      loadConfig({
        PORT: "0",
        LOG_LEVEL: "silent",
        DATA_DIR: "memory://",
        // Every query goes upstream (maxAgeSeconds: 0, no remembered failure, no background syncs of its own):
        // what is recorded is what the query met.
        INCIDENT_FRESHNESS_SECONDS: "0",
        TENANT_FAILURE_MEMORY_SECONDS: "0",
        INCIDENT_SYNC: "false",
      }),
    );
    browser = createDispatcher({ trustedCaPem: [runtime.sandbox!.caCertPem], connectTimeoutMs: 5000, connectionsPerOrigin: 4 });
    gql = (query, variables) => postGraphQL(runtime.url, query, variables);
    const tenants: TenantStore = runtime.app.store.tenants;
    const original = tenants.recordOutcome.bind(tenants);
    tenants.recordOutcome = async (id, outcome) => {
      writes.push({ tenantId: id, ok: outcome.ok, ...(outcome.ok ? {} : { code: outcome.code }) });
      return original(id, outcome);
    };
  });
  after(async () => {
    await browser.close();
    await runtime.close();
  });

  it("records an unconsented tenant's failure once for twenty queries, and once across the other paths", async () => {
    const alpine = named("Alpine Ski House");
    const before = await registry(alpine);
    assert.equal(before.lastFailureCode, null);
    assert.equal(before.lastFailureAt, null);

    for (let i = 0; i < 20; i++) {
      const { outcome } = await outcomeOf(alpine);
      assert.equal(outcome.error.code, "CONSENT_REQUIRED");
    }
    const after = await registry(alpine);
    assert.equal(after.lastFailureCode, "CONSENT_REQUIRED");
    assert.ok(after.lastFailureAt, "lastFailureAt is set");
    assert.equal(after.consentState, "PENDING", "never granted, so nothing is revoked");
    assert.deepEqual(writesOf(alpine), [{ tenantId: alpine.id, ok: false, code: "CONSENT_REQUIRED" }], "one store write for twenty queries");

    // The same code through a single incident and through token diagnostics: within the minute, no write.
    const single = await gql(`query($t: ID!) { incident(tenantId: $t, incidentId: "1") { incidentId } }`, { t: alpine.id });
    assert.equal(single.body.errors?.[0]?.extensions?.code, "CONSENT_REQUIRED", single.text);
    const diagnosis = await gql(`query($t: [ID!]!) { tokenDiagnostics(tenantIds: $t) { error { code } } }`, { t: [alpine.id] });
    assert.equal(diagnosis.body.data.tokenDiagnostics[0].error.code, "CONSENT_REQUIRED");
    await runtime.app.outcomes.idle();
    assert.equal(writesOf(alpine).length, 1);
  });

  it("records MISSING_ROLE from token diagnostics without calling it revoked consent", async () => {
    const coho = named("Coho Winery");
    const diagnosis = await gql(`query($t: [ID!]!) { tokenDiagnostics(tenantIds: $t) { error { code } } }`, { t: [coho.id] });
    assert.equal(diagnosis.body.data.tokenDiagnostics[0].error.code, "MISSING_ROLE", diagnosis.text);
    const record = await registry(coho);
    assert.equal(record.lastFailureCode, "MISSING_ROLE");
    assert.equal(record.consentState, "GRANTED", "a token was issued: the app is consented, it lacks a role");
    assert.deepEqual(await auditOf(coho), []);
  });

  it("marks a GRANTED tenant whose consent was revoked REVOKED, audited, with the consent link in its outcome; the callback restores it", async () => {
    const northwind = named("Northwind Traders");
    // A working tenant first, with a cached token: the revocation is found by the API refusing it.
    assert.equal((await outcomeOf(northwind)).outcome.ok, true);
    assert.equal((await registry(northwind)).consentState, "GRANTED");
    assert.deepEqual(writesOf(northwind), [], "a clean tenant's success writes nothing");

    await control(`/tenants/${northwind.id}/revoke-consent`);
    const { outcome } = await outcomeOf(northwind);
    assert.equal(outcome.error.code, "CONSENT_REQUIRED");
    assert.match(outcome.error.consentLink.url, new RegExp(`/${northwind.id}/v2\\.0/adminconsent\\?`), "the admin (anonymous sandbox caller) gets the link");
    const revoked = await registry(northwind);
    assert.equal(revoked.consentState, "REVOKED");
    assert.equal(revoked.lastFailureCode, "CONSENT_REQUIRED");
    assert.match(revoked.consentError, /^CONSENT_REQUIRED/);
    assert.deepEqual(await auditOf(northwind), [
      { action: "consent.revoked_detected", actorKind: "SYSTEM", actorId: "crosswatch", outcome: "CONSENT_REQUIRED" },
    ]);

    // Re-granted through the consent link and Crosswatch's callback.
    const answer = await answerConsentPage(outcome.error.consentLink.url, { dispatcher: browser, decision: "accept" });
    const page = await request(`${runtime.url}/consent/callback${new URL(answer.location).search}`);
    assert.equal(page.statusCode, 200, await page.body.text());
    const regranted = await registry(northwind);
    assert.equal(regranted.consentState, "GRANTED");
    assert.equal(regranted.lastFailureCode, null, "the callback's successful check clears the failure");
    assert.equal((await outcomeOf(northwind)).outcome.ok, true);
    assert.equal((await registry(northwind)).consentState, "GRANTED");
  });

  it("records a single incident's outcome too, and a working token after REVOKED restores GRANTED (audited)", async () => {
    const fabrikam = named("Fabrikam, Inc.");
    const { edges } = await outcomeOf(fabrikam);
    const incidentId = edges[0].node.incidentId as string;
    const get = () => gql(`query($t: ID!, $i: ID!) { incident(tenantId: $t, incidentId: $i) { incidentId } }`, { t: fabrikam.id, i: incidentId });

    await control(`/tenants/${fabrikam.id}/revoke-consent`);
    const refused = await get();
    assert.equal(refused.body.errors?.[0]?.extensions?.code, "CONSENT_REQUIRED", refused.text);
    const revoked = await registry(fabrikam);
    assert.equal(revoked.consentState, "REVOKED");
    assert.equal(revoked.lastFailureCode, "CONSENT_REQUIRED");

    // Consent given again behind Crosswatch's back (no callback): the next working call says so.
    await control(`/tenants/${fabrikam.id}/grant-consent`);
    const found = await get();
    assert.equal(found.body.errors, undefined, found.text);
    const restored = await registry(fabrikam);
    assert.equal(restored.consentState, "GRANTED");
    assert.equal(restored.lastFailureCode, null);
    assert.ok(restored.lastTokenSuccessAt, "the recovery stamps lastTokenSuccessAt");
    assert.deepEqual(
      (await auditOf(fabrikam)).map((e: Record<string, string>) => `${e.action}:${e.actorKind}`),
      ["consent.restored_detected:SYSTEM", "consent.revoked_detected:SYSTEM"],
    );
  });
});
