import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { decodeJwt, SignJWT } from "jose";
import { request } from "undici";
import type { CallerRole, TenantScope } from "../../src/auth/caller.js";
import { loadConfig } from "../../src/config.js";
import { createDispatcher } from "../../src/http/dispatcher.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { answerConsentPage } from "../helpers/consent-browser.js";
import { postGraphQL, type GraphQLResponse } from "../helpers/graphql.js";
import { captureLogger } from "../helpers/log-capture.js";

const ALL: TenantScope = { allTenants: true, tenantIds: [], tenantTags: [] };
const STATE_SECRET = "consent-hardening-test-secret-0123456789abcdef";
const RATE_PER_MINUTE = 10;
const EXTRA_REDIRECT = "https://onboarding.partner.example/consent/return";
const ANSWERED_BY = "customer administrator (consent callback)";
const LIVE_LINK = /adminconsent|[?&]state=/;

/**
 * Issue 12, items 1 and 7: who may mint a consent link (ADMIN over the tenant, on every path), the minting
 * caller bound into the state and the callback audited under it, redirect URIs from an allow-list, and an
 * unauthenticated callback that is rate-limited and writes no audit row for an answer it refuses.
 */
describe("consent links and the consent callback, hardened", () => {
  let runtime: Runtime;
  let browser: ReturnType<typeof createDispatcher>;
  const logs = captureLogger("debug");
  const keys: Record<string, string> = {};
  let adminKeyId: string;
  let alpine: SandboxTenant; // not consented: CONSENT_REQUIRED
  let litware: SandboxTenant; // made read-only below: MISSING_ROLE on update
  let fabrikam: SandboxTenant; // named by forged callbacks

  const named = (name: string) => runtime.sandbox!.tenants.find((t) => t.displayName === name)!;
  const gql = (key: string, query: string, variables?: Record<string, unknown>) =>
    postGraphQL(runtime.url, query, variables, { authorization: `Bearer ${key}` });
  const createKey = async (name: string, role: CallerRole, scope: TenantScope) =>
    runtime.app.store.apiKeys.create({ name, role, scope, createdBy: "test" });
  const sandboxCalls = () => runtime.sandbox!.context.counterSnapshot().total;
  const errorCode = (result: GraphQLResponse) => result.body.errors?.[0]?.extensions?.code;
  const callback = (query: string) => request(`${runtime.url}/consent/callback?${query}`);
  const rejections = async (): Promise<Record<string, number>> => {
    const metric = runtime.app.metrics.registry.getSingleMetric("crosswatch_consent_callback_rejections_total");
    assert.ok(metric, "the rejection counter is registered");
    const { values } = await metric.get();
    return Object.fromEntries(values.map((v) => [String(v.labels.reason), v.value]));
  };
  const auditRows = async (tenantId: string) =>
    (await gql(keys.admin!, `query($t: ID!) { auditEvents(filter: { tenantId: $t }, first: 500) { edges { node { action actorKind actorId actorName outcome detail } } } }`, { t: tenantId }))
      .body.data.auditEvents.edges.map((e: { node: Record<string, string> }) => e.node);

  before(async () => {
    runtime = await startRuntime(
      loadConfig({
        PORT: "0",
        LOG_LEVEL: "debug",
        DATA_DIR: "memory://",
        AUTH_ANONYMOUS: "false",
        CONSENT_STATE_SECRET: STATE_SECRET,
        CONSENT_REDIRECT_URIS: EXTRA_REDIRECT,
        CONSENT_CALLBACK_RATE_PER_MINUTE: String(RATE_PER_MINUTE),
      }),
      { logger: logs.logger },
    );
    browser = createDispatcher({ trustedCaPem: [runtime.sandbox!.caCertPem], connectTimeoutMs: 5000, connectionsPerOrigin: 4 });
    alpine = named("Alpine Ski House");
    litware = named("Litware, Inc.");
    fabrikam = named("Fabrikam, Inc.");
    // Litware's app may read incidents but not update them (before any token for it is cached).
    litware.consent.roles.defender = ["Incident.Read.All"];
    const admin = await createKey("admin", "ADMIN", ALL);
    keys.admin = admin.key;
    adminKeyId = admin.record.id;
    keys.readerAlpine = (await createKey("reader alpine", "READER", { allTenants: false, tenantIds: [alpine.id], tenantTags: [] })).key;
    keys.readerAll = (await createKey("reader all", "READER", ALL)).key;
    keys.responderLitware = (await createKey("responder litware", "RESPONDER", { allTenants: false, tenantIds: [litware.id], tenantTags: [] })).key;
    keys.adminEu = (await createKey("admin eu", "ADMIN", { allTenants: false, tenantIds: [], tenantTags: ["eu"] })).key;
  });
  after(async () => {
    await browser.close();
    await runtime.close();
  });

  it("gives a reader no live link on any path: Tenant.consentLink and TenantError.consentLink are null, consentLink is FORBIDDEN", async () => {
    const answers: GraphQLResponse[] = [];
    const tenant = await gql(
      keys.readerAlpine!,
      `query($t: ID!) { tenant(id: $t) { consentState consentLink { url }
         token { error { code hint consentLink { url } } }
         incidentSummary { outcome { error { code consentLink { url } } } } } }`,
      { t: alpine.id },
    );
    answers.push(tenant);
    assert.equal(tenant.body.errors, undefined, tenant.text);
    assert.equal(tenant.body.data.tenant.consentState, "PENDING");
    assert.equal(tenant.body.data.tenant.consentLink, null);
    assert.equal(tenant.body.data.tenant.token.error.code, "CONSENT_REQUIRED", "the reader still sees that consent is needed");
    assert.match(tenant.body.data.tenant.token.error.hint, /consent/);
    assert.equal(tenant.body.data.tenant.token.error.consentLink, null);
    assert.equal(tenant.body.data.tenant.incidentSummary.outcome.error.code, "CONSENT_REQUIRED");
    assert.equal(tenant.body.data.tenant.incidentSummary.outcome.error.consentLink, null);

    const incidents = await gql(keys.readerAlpine!, `query($t: [ID!]) { incidents(tenantIds: $t) { tenantOutcomes { error { code consentLink { url } } } } }`, { t: [alpine.id] });
    answers.push(incidents);
    assert.deepEqual(incidents.body.data.incidents.tenantOutcomes, [{ error: { code: "CONSENT_REQUIRED", consentLink: null } }]);
    const diagnostics = await gql(keys.readerAlpine!, `query($t: [ID!]!) { tokenDiagnostics(tenantIds: $t) { error { code consentLink { url } } } }`, { t: [alpine.id] });
    answers.push(diagnostics);
    assert.deepEqual(diagnostics.body.data.tokenDiagnostics, [{ error: { code: "CONSENT_REQUIRED", consentLink: null } }]);

    const direct = await gql(keys.readerAlpine!, `query($t: ID) { consentLink(tenantId: $t) { url } }`, { t: alpine.id });
    answers.push(direct);
    assert.equal(errorCode(direct), "FORBIDDEN");
    const anyTenant = await gql(keys.readerAll!, `{ consentLink { url } }`);
    answers.push(anyTenant);
    assert.equal(errorCode(anyTenant), "FORBIDDEN");
    const allReader = await gql(keys.readerAll!, `query($t: ID!) { tenant(id: $t) { consentLink { url } } }`, { t: alpine.id });
    answers.push(allReader);
    assert.equal(allReader.body.data.tenant.consentLink, null, "reading every tenant is not managing one");
    for (const answer of answers) assert.doesNotMatch(answer.text, LIVE_LINK, "no consent link or state reached a reader");
  });

  it("gives a responder no link in updateIncident's MISSING_ROLE, and an admin over the tenant one on every path", async () => {
    const update = `mutation($t: ID!) { updateIncident(tenantId: $t, incidentId: "1", input: { status: IN_PROGRESS }) { incidentId } }`;
    const responder = await gql(keys.responderLitware!, update, { t: litware.id });
    assert.equal(errorCode(responder), "MISSING_ROLE", responder.text);
    assert.equal(responder.body.errors![0]!.extensions!.consentLink, undefined);
    assert.doesNotMatch(responder.text, LIVE_LINK);
    const admin = await gql(keys.admin!, update, { t: litware.id });
    assert.equal(errorCode(admin), "MISSING_ROLE");
    assert.match(String(admin.body.errors![0]!.extensions!.consentLink), new RegExp(`/${litware.id}/v2\\.0/adminconsent\\?`));

    // An admin over tag eu (Alpine carries it): the tenant's link, the one in its error, and consentLink.
    const scoped = await gql(
      keys.adminEu!,
      `query($t: ID!, $id: ID) { tenant(id: $t) { consentLink { tenantId } token { error { consentLink { tenantId } } } } consentLink(tenantId: $id) { tenantId } }`,
      { t: alpine.id, id: alpine.id },
    );
    assert.equal(scoped.body.errors, undefined, scoped.text);
    assert.deepEqual(scoped.body.data, {
      tenant: { consentLink: { tenantId: alpine.id }, token: { error: { consentLink: { tenantId: alpine.id } } } },
      consentLink: { tenantId: alpine.id },
    });
    // … but not for a tenant outside its tags, nor for any tenant.
    const outside = await gql(keys.adminEu!, `query($t: ID) { consentLink(tenantId: $t) { url } }`, { t: litware.id });
    assert.equal(errorCode(outside), "TENANT_FORBIDDEN");
    assert.equal(errorCode(await gql(keys.adminEu!, `{ consentLink { url } }`)), "FORBIDDEN");
  });

  it("refuses a state minted before the consent-link rule (no minter in it), changing nothing and writing no audit row", async () => {
    // Signed with the server's own key, as states were before: any reader could have minted this one.
    const now = Math.floor(Date.now() / 1000);
    const legacy = await new SignJWT({ tid: alpine.id, ru: `${runtime.url}/consent/callback` })
      .setProtectedHeader({ alg: "HS256" })
      .setJti("legacy-state-nonce-0001")
      .setAudience("crosswatch:consent-callback")
      .setIssuedAt(now)
      .setExpirationTime(now + 3600)
      .sign(new TextEncoder().encode(STATE_SECRET));
    const before = await rejections();
    const response = await callback(new URLSearchParams({ admin_consent: "True", tenant: alpine.id, state: legacy }).toString());
    assert.equal(response.statusCode, 400);
    assert.match(await response.body.text(), /Nothing was changed/);
    assert.equal((await rejections()).STATE_INVALID, (before.STATE_INVALID ?? 0) + 1);
    const state = await gql(keys.admin!, `query($t: ID!) { tenant(id: $t) { consentState } }`, { t: alpine.id });
    assert.equal(state.body.data.tenant.consentState, "PENDING");
    assert.deepEqual(await auditRows(alpine.id), []);
  });

  it("refuses a redirectUri outside the allow-list with BAD_USER_INPUT before minting, with no sandbox call", async () => {
    const calls = sandboxCalls();
    const foreign = [
      "https://evil.example/consent/callback",
      `${runtime.url}/consent/callback`, // the listener's address, not PUBLIC_URL's host
      `${EXTRA_REDIRECT}/`,
      "javascript:alert(1)",
    ];
    for (const redirectUri of foreign) {
      const direct = await gql(keys.admin!, `query($t: ID, $r: String) { consentLink(tenantId: $t, redirectUri: $r) { url } }`, { t: alpine.id, r: redirectUri });
      assert.equal(errorCode(direct), "BAD_USER_INPUT", redirectUri);
      assert.equal(direct.body.errors![0]!.extensions!.field, "redirectUri");
      assert.doesNotMatch(direct.body.errors![0]!.message, /https?:|onboarding\.partner/, "neither the argument nor the allow-list is echoed");
      const field = await gql(keys.admin!, `query($t: ID!, $r: String) { tenant(id: $t) { consentLink(redirectUri: $r) { url } } }`, { t: alpine.id, r: redirectUri });
      assert.equal(errorCode(field), "BAD_USER_INPUT", redirectUri);
      assert.doesNotMatch(direct.text + field.text, LIVE_LINK);
    }
    assert.equal(sandboxCalls(), calls, "no token or upstream call for a refused link");

    // The allowed ones: the default callback (by name or by omission) and CONSENT_REDIRECT_URIS.
    const defaultUri = new URL(
      (await gql(keys.admin!, `query($t: ID) { consentLink(tenantId: $t) { url } }`, { t: alpine.id })).body.data.consentLink.url,
    ).searchParams.get("redirect_uri")!;
    assert.match(defaultUri, /^http:\/\/localhost:\d+\/consent\/callback$/);
    for (const allowed of [defaultUri, EXTRA_REDIRECT]) {
      const result = await gql(keys.admin!, `query($t: ID, $r: String) { consentLink(tenantId: $t, redirectUri: $r) { url } }`, { t: alpine.id, r: allowed });
      assert.equal(result.body.errors, undefined, result.text);
      assert.equal(new URL(result.body.data.consentLink.url).searchParams.get("redirect_uri"), allowed);
    }
  });

  it("binds an admin's link to the admin and audits its callback under the admin, noting the customer's admin answered", async () => {
    const minted = await gql(keys.admin!, `query($t: ID!) { tenant(id: $t) { consentLink { url } } }`, { t: alpine.id });
    const link = minted.body.data.tenant.consentLink.url as string;
    const claims = decodeJwt(new URL(link).searchParams.get("state")!);
    assert.deepEqual(claims.by, { k: "API_KEY", i: adminKeyId, n: "admin" });
    assert.ok(!JSON.stringify(claims).includes(keys.admin!), "no credential in the state");

    const answer = await answerConsentPage(link, { dispatcher: browser, decision: "accept" });
    const back = new URL(answer.location);
    assert.equal(back.pathname, "/consent/callback");
    const page = await request(`${runtime.url}/consent/callback${back.search}`);
    assert.equal(page.statusCode, 200);
    assert.match(await page.body.text(), /Consent recorded/);

    const rows = await auditRows(alpine.id);
    assert.equal(rows.length, 1, JSON.stringify(rows));
    assert.deepEqual(
      { action: rows[0].action, actorKind: rows[0].actorKind, actorId: rows[0].actorId, actorName: rows[0].actorName, outcome: rows[0].outcome },
      { action: "consent.granted", actorKind: "API_KEY", actorId: adminKeyId, actorName: "admin", outcome: "SUCCESS" },
    );
    assert.equal(JSON.parse(rows[0].detail).answeredBy, ANSWERED_BY);
    const after = await gql(keys.admin!, `query($t: ID!) { tenant(id: $t) { consentState } }`, { t: alpine.id });
    assert.equal(after.body.data.tenant.consentState, "GRANTED");

    // The replay is refused and counted, not written under the tenant.
    const before = await rejections();
    const replay = await request(`${runtime.url}/consent/callback${back.search}`);
    assert.equal(replay.statusCode, 400);
    await replay.body.dump();
    assert.equal((await rejections()).STATE_REPLAYED, (before.STATE_REPLAYED ?? 0) + 1);
    assert.equal((await auditRows(alpine.id)).length, 1);
  });

  // Last: it spends this address's callback budget.
  it("answers a flood of forged callbacks with 429 after the limit, counts them by reason, logs a sample and writes no audit row", async () => {
    const before = await rejections();
    const logLinesBefore = logs.lines.length;
    const forged = new URLSearchParams({ admin_consent: "True", tenant: fabrikam.id, state: "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.forged" }).toString();
    let refused = 0;
    let limited: Awaited<ReturnType<typeof callback>> | undefined;
    for (let i = 0; i < RATE_PER_MINUTE * 3 && !limited; i++) {
      const response = await callback(forged);
      if (response.statusCode === 429) {
        limited = response;
        break;
      }
      assert.equal(response.statusCode, 400);
      await response.body.dump();
      refused += 1;
    }
    assert.ok(limited, "the flood was rate-limited");
    assert.ok(refused >= 1 && refused <= RATE_PER_MINUTE, `${refused} forged answers before the limit`);
    const retryAfter = Number(limited.headers["retry-after"]);
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${String(limited.headers["retry-after"])}`);
    assert.match(await limited.body.text(), /Too many consent answers/);
    // Still limited: a valid-looking answer is not even looked at.
    const again = await callback(forged);
    assert.equal(again.statusCode, 429);
    await again.body.dump();

    const after = await rejections();
    assert.equal(after.STATE_INVALID, (before.STATE_INVALID ?? 0) + refused);
    assert.equal(after.RATE_LIMITED, (before.RATE_LIMITED ?? 0) + 2);
    assert.deepEqual(await auditRows(fabrikam.id), [], "no audit row under a tenant the request merely named");
    const refusalLines = logs.lines.slice(logLinesBefore).filter((line) => line.includes('"consent callback refused"'));
    assert.ok(refusalLines.length < refused + 2, `${refusalLines.length} log lines for ${refused + 2} refusals: sampled`);
    for (const line of refusalLines) assert.ok(!line.includes(fabrikam.id), "the named tenant is not logged");
  });
});
