import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { loadConfig } from "../../src/config.js";
import { createDispatcher } from "../../src/http/dispatcher.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { answerConsentPage } from "../helpers/consent-browser.js";
import { postGraphQL, type GraphQLResponse } from "../helpers/graphql.js";

const DEFENDER_SCOPE = "https://api.security.microsoft.com/.default";
const GRAPH_SCOPE = "https://graph.microsoft.com/.default";
const MTP_APP_ID = "8ee8fdad-f234-4243-8f3b-15c294843740";

/**
 * Issue 13, items 4 and 5: a consent link asks only for the resource the tenant's backend uses (Entra
 * refuses the whole request with AADSTS650052 when the tenant has no service principal for a resource it
 * names), the sandbox answers 650052 as Entra does and the callback explains it with a public code; and
 * the LEGACY_V1 link's stateless answer is accepted for a registered tenant only when a fresh token for
 * that tenant proves the consent, at most once per tenant a minute, audited only when it verified.
 */
describe("consent fidelity: per-backend links, AADSTS650052, the stateless v1 answer", () => {
  let runtime: Runtime;
  let browser: ReturnType<typeof createDispatcher>;
  const gql = (query: string, variables?: Record<string, unknown>): Promise<GraphQLResponse<any>> => postGraphQL(runtime.url, query, variables);
  const named = (name: string): SandboxTenant => {
    const found = runtime.sandbox!.tenants.find((t) => t.displayName === name);
    assert.ok(found, name);
    return found;
  };
  const tokenCalls = (tenantId: string) => runtime.sandbox!.context.counterSnapshot().byTenant[tenantId]?.token ?? 0;
  const consentState = async (tenantId: string) =>
    (await gql(`query($t: ID!) { tenant(id: $t) { consentState consentError } }`, { t: tenantId })).body.data.tenant;
  const consentRows = async (tenantId: string) =>
    (await gql(`query($t: ID!) { auditEvents(filter: { tenantId: $t }, first: 500) { edges { node { action actorKind actorId actorName outcome detail } } } }`, { t: tenantId }))
      .body.data.auditEvents.edges.map((e: { node: Record<string, string> }) => e.node)
      .filter((row: { action: string }) => row.action.startsWith("consent."));
  const rejections = async (): Promise<Record<string, number>> => {
    const metric = runtime.app.metrics.registry.getSingleMetric("crosswatch_consent_callback_rejections_total");
    assert.ok(metric);
    return Object.fromEntries((await metric.get()).values.map((v) => [String(v.labels.reason), v.value]));
  };
  /** Follows a redirect from the sandbox back to Crosswatch's callback, as the admin's browser does. */
  const followToCallback = async (location: string) => {
    const back = new URL(location);
    assert.equal(back.pathname, "/consent/callback");
    const response = await request(`${runtime.url}/consent/callback${back.search}`);
    return { status: response.statusCode, html: await response.body.text(), headers: response.headers };
  };
  const sandboxControl = async (path: string) => {
    const response = await request(`${runtime.sandbox!.url}/_sandbox${path}`, { method: "POST", dispatcher: browser });
    assert.equal(response.statusCode, 200, await response.body.text());
  };

  before(async () => {
    runtime = await startRuntime(loadConfig({ PORT: "0", LOG_LEVEL: "silent", DATA_DIR: "memory://" }));
    browser = createDispatcher({ trustedCaPem: [runtime.sandbox!.caCertPem], connectTimeoutMs: 5000, connectionsPerOrigin: 4 });
  });
  after(async () => {
    await browser.close();
    await runtime.close();
  });

  it("asks each link for its tenant's backend only: a Graph tenant's for Graph's .default, a Defender tenant's for MTP's", async () => {
    const proseware = named("Proseware, Inc.");
    const contoso = named("Contoso Ltd");
    const result = await gql(
      `query($g: ID!, $d: ID!) {
         graph: tenant(id: $g) { consentLink { url backend permissions { resource role } } }
         defender: tenant(id: $d) { consentLink { url backend permissions { resource role } } } }`,
      { g: proseware.id, d: contoso.id },
    );
    assert.equal(result.body.errors, undefined, result.text);
    const graph = result.body.data.graph.consentLink;
    assert.equal(new URL(graph.url).searchParams.get("scope"), GRAPH_SCOPE);
    assert.equal(graph.backend, "GRAPH");
    // Hunting is on in the sandbox (HUNTING_ENABLED), on Graph by default: Graph's link lists its hunting role, MTP's none.
    assert.deepEqual(graph.permissions, [
      { resource: "Microsoft Graph", role: "SecurityIncident.ReadWrite.All" },
      { resource: "Microsoft Graph", role: "ThreatHunting.Read.All" },
    ]);
    const defender = result.body.data.defender.consentLink;
    assert.equal(new URL(defender.url).searchParams.get("scope"), DEFENDER_SCOPE);
    assert.equal(defender.backend, "DEFENDER");
    assert.deepEqual(defender.permissions, [{ resource: "Microsoft Threat Protection", role: "Incident.ReadWrite.All" }]);

    // Not registered: the server default (DEFENDER here), or the backend the caller names.
    const unregistered = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
    const links = await gql(
      `query($t: ID) { byDefault: consentLink(tenantId: $t) { url backend } asked: consentLink(tenantId: $t, backend: GRAPH) { url backend } }`,
      { t: unregistered },
    );
    assert.equal(links.body.errors, undefined, links.text);
    assert.equal(new URL(links.body.data.byDefault.url).searchParams.get("scope"), DEFENDER_SCOPE);
    assert.equal(new URL(links.body.data.asked.url).searchParams.get("scope"), GRAPH_SCOPE);
    assert.equal(links.body.data.asked.backend, "GRAPH");
    const v1 = await gql(`{ consentLink(flow: LEGACY_V1, backend: GRAPH) { url } }`);
    assert.equal(v1.body.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");
    assert.equal(v1.body.errors?.[0]?.extensions?.field, "backend");
  });

  it("the sandbox answers AADSTS650052 when a Graph-only tenant is asked for MTP, and the callback explains it with RESOURCE_NOT_PROVISIONED", async () => {
    const proseware = named("Proseware, Inc.");
    const link = (await gql(`query($t: ID) { consentLink(tenantId: $t, backend: DEFENDER) { url } }`, { t: proseware.id })).body.data.consentLink.url;
    const state = new URL(link).searchParams.get("state");
    // Entra checks the named resources before it prompts: straight back to the redirect URI, nothing granted.
    const opened = await request(link, { dispatcher: browser });
    await opened.body.dump();
    assert.equal(opened.statusCode, 302);
    const back = new URL(String(opened.headers.location));
    assert.equal(back.searchParams.get("error"), "invalid_client");
    assert.match(back.searchParams.get("error_description")!, new RegExp(`^AADSTS650052: The app is trying to access a service '${MTP_APP_ID}'\\(Microsoft Threat Protection\\) that your organization '${proseware.id}' lacks a service principal for\\.`));
    assert.equal(back.searchParams.get("state"), state);
    assert.deepEqual(proseware.consent.roles, { defender: [], graph: ["SecurityIncident.ReadWrite.All", "ThreatHunting.Read.All"] }, "nothing was granted");

    const page = await followToCallback(back.toString());
    assert.equal(page.status, 200);
    assert.match(page.html, /Consent failed: a service is missing in this tenant/);
    assert.match(page.html, /AADSTS650052/);
    assert.match(page.html, /Microsoft Threat Protection \(Microsoft Defender XDR\)/);
    assert.match(page.html, /RESOURCE_NOT_PROVISIONED/);
    assert.match(page.html, /Microsoft Graph/, "it says what to do: read the tenant through Graph");
    assert.equal((await consentState(proseware.id)).consentState, "GRANTED", "the tenant's Graph consent stands");
    const rows = await consentRows(proseware.id);
    assert.deepEqual(
      rows.map((r: Record<string, string>) => [r.action, r.outcome, JSON.parse(r.detail).aadsts]),
      [["consent.denied", "RESOURCE_NOT_PROVISIONED", 650052]],
    );

    // Its own link (Graph only) goes through the consent page to a recorded grant.
    const graphLink = (await gql(`query($t: ID!) { tenant(id: $t) { consentLink { url } } }`, { t: proseware.id })).body.data.tenant.consentLink.url;
    const answer = await answerConsentPage(graphLink, { dispatcher: browser, decision: "accept" });
    const granted = await followToCallback(answer.location);
    assert.equal(granted.status, 200);
    assert.match(granted.html, /Consent recorded/);
  });

  it("a LEGACY_V1 link through the sandbox consent page ends in GRANTED, verified by a fresh token and audited as such", async () => {
    // Northwind starts over: unregistered, re-registered (PENDING) and without consent in the sandbox.
    const northwind = named("Northwind Traders");
    await sandboxControl(`/tenants/${northwind.id}/revoke-consent`);
    assert.equal((await gql(`mutation($t: ID!) { removeTenant(id: $t) }`, { t: northwind.id })).body.data.removeTenant, true);
    const registered = await gql(`mutation($t: ID!) { registerTenant(input: { id: $t, displayName: "Northwind Traders" }) { consentState } }`, { t: northwind.id });
    assert.equal(registered.body.data.registerTenant.consentState, "PENDING", registered.text);

    const link = (await gql(`{ consentLink(flow: LEGACY_V1) { url } }`)).body.data.consentLink.url;
    assert.equal(new URL(link).searchParams.get("state"), null, "the v1 link carries no state");
    const answer = await answerConsentPage(link, { dispatcher: browser, decision: "accept", tenantId: northwind.id });
    assert.equal(answer.status, 302);
    // Back at the app's registered reply URL (Crosswatch's callback) with admin_consent and the tenant, no state.
    const back = new URL(answer.location);
    assert.equal(back.searchParams.get("admin_consent"), "True");
    assert.equal(back.searchParams.get("tenant"), northwind.id);
    assert.equal(back.searchParams.get("state"), null);

    const tokensBefore = tokenCalls(northwind.id);
    const page = await followToCallback(answer.location);
    assert.equal(page.status, 200, page.html);
    assert.match(page.html, /Consent recorded/);
    assert.match(page.html, /verified it by acquiring a token/);
    assert.ok(tokenCalls(northwind.id) > tokensBefore, "verified by a token request to Entra, not by the redirect");
    assert.equal((await consentState(northwind.id)).consentState, "GRANTED");
    const rows = await consentRows(northwind.id);
    assert.equal(rows.length, 1, JSON.stringify(rows));
    assert.deepEqual(
      [rows[0].action, rows[0].actorKind, rows[0].actorId, rows[0].actorName, rows[0].outcome],
      ["consent.granted", "ANONYMOUS", "consent-callback", "customer administrator (consent callback)", "SUCCESS"],
    );
    assert.deepEqual(JSON.parse(rows[0].detail), {
      verified: true,
      verifiedBy: "token",
      stateless: true,
      roles: ["Incident.ReadWrite.All", "AdvancedHunting.Read.All"],
      missingRoles: [],
      answeredBy: "customer administrator (consent callback)",
    });
  });

  it("a forged stateless answer for a tenant whose token fails stays refused: no GRANTED, no audit row, at most one check a minute", async () => {
    const alpine = named("Alpine Ski House"); // registered, PENDING, never consented in the sandbox
    const before = await rejections();
    const tokensBefore = tokenCalls(alpine.id);
    const forged = await request(`${runtime.url}/consent/callback?admin_consent=True&tenant=${alpine.id}`);
    const html = await forged.body.text();
    assert.equal(forged.statusCode, 400);
    assert.match(html, /Consent could not be confirmed/);
    assert.match(html, /CONSENT_REQUIRED/);
    assert.match(html, /Nothing was changed/);
    assert.equal(tokenCalls(alpine.id), tokensBefore + 1, "checked with exactly one token request");
    assert.equal((await consentState(alpine.id)).consentState, "PENDING");
    assert.deepEqual(await consentRows(alpine.id), []);

    // Again at once: refused without asking Entra (once per tenant per interval).
    const again = await request(`${runtime.url}/consent/callback?admin_consent=True&tenant=${alpine.id}&code=x`);
    assert.equal(again.statusCode, 429);
    assert.ok(Number(again.headers["retry-after"]) >= 1);
    assert.match(await again.body.text(), /Nothing was changed/);
    assert.equal(tokenCalls(alpine.id), tokensBefore + 1);
    const after = await rejections();
    assert.equal(after.NOT_VERIFIED, (before.NOT_VERIFIED ?? 0) + 1);
    assert.equal(after.VERIFY_RATE_LIMITED, (before.VERIFY_RATE_LIMITED ?? 0) + 1);
  });

  it("a stateless answer for an unregistered tenant is refused without a token request, registration or audit row", async () => {
    // Trey Research is consented in the sandbox (a token would work), but Crosswatch no longer knows it.
    const trey = named("Trey Research");
    assert.equal((await gql(`mutation($t: ID!) { removeTenant(id: $t) }`, { t: trey.id })).body.data.removeTenant, true);
    const tokensBefore = tokenCalls(trey.id);
    const response = await request(`${runtime.url}/consent/callback?admin_consent=True&tenant=${trey.id}`);
    assert.equal(response.statusCode, 400);
    assert.match(await response.body.text(), /only for a tenant its partner has already registered.*Nothing was changed/);
    assert.equal(tokenCalls(trey.id), tokensBefore, "no token request for a tenant a request merely named");
    const tenant = await gql(`query($t: ID!) { tenant(id: $t) { consentState } }`, { t: trey.id });
    assert.notEqual(tenant.body.data?.tenant?.consentState, "GRANTED");
    assert.equal(tenant.body.data?.tenant ?? null, null, "not registered by the answer");
    assert.deepEqual(await consentRows(trey.id), []);
  });

  it("a LEGACY_V1 link on a Graph-only tenant comes back with AADSTS650052 and no state: explained, nothing recorded", async () => {
    const proseware = named("Proseware, Inc.");
    const link = (await gql(`{ consentLink(flow: LEGACY_V1) { url } }`)).body.data.consentLink.url;
    const answer = await answerConsentPage(link, { dispatcher: browser, decision: "accept", tenantId: proseware.id });
    const back = new URL(answer.location);
    assert.equal(back.searchParams.get("error"), "invalid_client");
    assert.match(back.searchParams.get("error_description")!, /^AADSTS650052: /);
    const rowsBefore = (await consentRows(proseware.id)).length;
    const page = await followToCallback(answer.location);
    assert.equal(page.status, 200);
    assert.match(page.html, /RESOURCE_NOT_PROVISIONED/);
    assert.match(page.html, /carried no state, so Crosswatch recorded nothing/);
    assert.equal((await consentRows(proseware.id)).length, rowsBefore);
    assert.equal((await consentState(proseware.id)).consentState, "GRANTED");
  });
});
