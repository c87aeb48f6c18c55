import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { loadConfig } from "../../src/config.js";
import { createDispatcher } from "../../src/http/dispatcher.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import { answerConsentPage } from "../helpers/consent-browser.js";
import { postGraphQL } from "../helpers/graphql.js";

const config = (dataDir: string) => loadConfig({ PORT: "0", LOG_LEVEL: "silent", DATA_DIR: dataDir, INCIDENT_FRESHNESS_SECONDS: "0" });

/** POST to the sandbox's control API with a JSON body. */
async function control(runtime: Runtime, path: string, body: unknown): Promise<{ status: number; json: any }> {
  const dispatcher = createDispatcher({ trustedCaPem: [runtime.sandbox!.caCertPem], connectTimeoutMs: 5000, connectionsPerOrigin: 1 });
  try {
    const response = await request(`${runtime.sandbox!.url}/_sandbox${path}`, {
      method: "POST",
      dispatcher,
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: response.statusCode, json: await response.body.json() };
  } finally {
    await dispatcher.close();
  }
}

/**
 * Issue 13 item 11: the sandbox keeps consents, incident edits and added tenants in DATA_DIR beside the
 * registry, so after a restart the registry's GRANTED still holds and the edits are still there; a user
 * onboards a sandbox tenant of their own from scratch; a damaged state file stops the start with a clear error.
 */
describe("the sandbox remembers across restarts", () => {
  let dataDir: string;
  let runtime: Runtime | undefined;
  const gql = (query: string, variables?: Record<string, unknown>) => postGraphQL(runtime!.url, query, variables);

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "crosswatch-sandbox-state-"));
  });
  after(async () => {
    await runtime?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("onboards a new sandbox tenant, keeps its consent, an incident edit and the tenant through a restart", async () => {
    runtime = await startRuntime(config(dataDir));
    // A tenant of one's own: the sandbox's Entra knows it, nobody consented yet.
    const created = await control(runtime, "/tenants", { displayName: "Margie's Travel", incidents: 5 });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    const tenantId: string = created.json.id;
    assert.equal(created.json.consent.granted, false);
    assert.equal(created.json.domain, "margiestravel.onmicrosoft.com");

    // The README's walkthrough: registerTenant → consentLink → the consent page → the callback → GRANTED → incidents.
    const registered = await gql(
      `mutation($id: ID!) { registerTenant(input: { id: $id, displayName: "Margie's Travel" }) { consentState consentLink { url } } }`,
      { id: tenantId },
    );
    assert.equal(registered.body.errors, undefined, registered.text);
    assert.equal(registered.body.data.registerTenant.consentState, "PENDING");
    const browser = createDispatcher({ trustedCaPem: [runtime.sandbox!.caCertPem], connectTimeoutMs: 5000, connectionsPerOrigin: 2 });
    const answer = await answerConsentPage(registered.body.data.registerTenant.consentLink.url, { dispatcher: browser, decision: "accept" });
    await browser.close();
    const page = await request(`${runtime.url}/consent/callback${new URL(answer.location).search}`);
    assert.equal(page.statusCode, 200);
    assert.match(await page.body.text(), /is onboarded/);
    const own = await gql(`query($t: [ID!]) { incidents(tenantIds: $t) { totalCount tenantOutcomes { ok } } }`, { t: [tenantId] });
    assert.deepEqual(own.body.data.incidents, { totalCount: 5, tenantOutcomes: [{ ok: true }] }, own.text);

    // An edit of a seeded tenant's incident.
    const contoso = runtime.sandbox!.tenants.find((t) => t.displayName === "Contoso Ltd")!;
    const listed = await gql(`query($t: [ID!]) { incidents(tenantIds: $t, first: 1) { edges { node { incidentId } } } }`, { t: [contoso.id] });
    const incidentId: string = listed.body.data.incidents.edges[0].node.incidentId;
    const updated = await gql(
      `mutation($t: ID!, $i: ID!) { updateIncident(tenantId: $t, incidentId: $i, input: { assignedTo: "persisted@partner.example", comment: "kept across restarts" }) { assignedTo } }`,
      { t: contoso.id, i: incidentId },
    );
    assert.equal(updated.body.errors, undefined, updated.text);
    const edited = await gql(`query($t: ID!, $i: ID!) { incident(tenantId: $t, incidentId: $i) { assignedTo lastUpdateTime comments { comment } } }`, {
      t: contoso.id,
      i: incidentId,
    });

    await runtime.close();
    runtime = undefined;
    const saved = JSON.parse(await readFile(join(dataDir, "sandbox-state.json"), "utf8"));
    assert.equal(saved.version, 1);
    assert.equal(saved.consents[tenantId].granted, true);

    // Restart on the same DATA_DIR: a new sandbox process (new port, certificate and app secret).
    runtime = await startRuntime(config(dataDir));
    const tenant = runtime.sandbox!.context.findTenant(tenantId);
    assert.ok(tenant, "the added tenant is back");
    assert.equal(tenant.displayName, "Margie's Travel");
    assert.equal(tenant.consent.granted, true, "its consent is back");
    const diagnosis = await gql(`query($t: [ID!]!) { tokenDiagnostics(tenantIds: $t) { ok error { code } } }`, { t: [tenantId] });
    assert.deepEqual(diagnosis.body.data.tokenDiagnostics, [{ ok: true, error: null }], "a token is issued for it");
    const registry = await gql(`query($t: ID!) { tenant(id: $t) { consentState } }`, { t: tenantId });
    assert.equal(registry.body.data.tenant.consentState, "GRANTED");
    const again = await gql(`query($t: ID!, $i: ID!) { incident(tenantId: $t, incidentId: $i) { assignedTo lastUpdateTime comments { comment } } }`, {
      t: contoso.id,
      i: incidentId,
    });
    assert.deepEqual(again.body.data, edited.body.data, "the edit is there, to the timestamp");
    assert.ok(again.body.data.incident.comments.some((c: { comment: string }) => c.comment === "kept across restarts"));
    const ownAgain = await gql(`query($t: [ID!]) { incidents(tenantIds: $t) { totalCount tenantOutcomes { ok } } }`, { t: [tenantId] });
    assert.deepEqual(ownAgain.body.data.incidents, { totalCount: 5, tenantOutcomes: [{ ok: true }] });
    await runtime.close();
    runtime = undefined;
  });

  it("refuses to start on a damaged state file, naming it and the way out", async () => {
    const damaged = await mkdtemp(join(tmpdir(), "crosswatch-sandbox-damaged-"));
    try {
      await writeFile(join(damaged, "sandbox-state.json"), '{"version":1,"seed":42,"cons');
      await assert.rejects(startRuntime(config(damaged)), (error: Error) => {
        assert.equal(error.name, "SandboxStateError");
        assert.match(error.message, /sandbox-state\.json is not valid JSON/);
        assert.match(error.message, /delete it/);
        return true;
      });
      await writeFile(join(damaged, "sandbox-state.json"), JSON.stringify({ version: 1, seed: 7, anchorMs: 0, clockOffsetMs: 0, addedTenants: [], consents: {}, incidents: {} }));
      await assert.rejects(startRuntime(config(damaged)), /written with SANDBOX_SEED=7, not 42/);
    } finally {
      await rm(damaged, { recursive: true, force: true });
    }
  });
});
