import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { postGraphQL } from "../helpers/graphql.js";
import { captureLogger } from "../helpers/log-capture.js";

/** The sandbox's opaque tokens: `EwA` and a long base64url run (no dots), like Microsoft's. */
const OPAQUE_TOKEN = /EwA[A-Za-z0-9_-]{100,}/;

const DIAGNOSTICS = `query($ids: [ID!]!) {
  tokenDiagnostics(tenantIds: $ids) {
    tenantId ok claimsReadable readAccess updateAccess tid audience issuer appId version roles
    missingRoles missingRolesForUpdate canRead canUpdate issuedAt expiresAt
    error { code message }
  }
}`;

/**
 * Microsoft warns that access tokens for its services may not be readable JWTs. A tenant whose tokens are
 * opaque (the sandbox's `token-format` knob) is served all the same: the API call decides, and token
 * diagnostics say the claims are unreadable and judge reading by whether the call was allowed.
 */
describe("opaque access tokens", () => {
  let runtime: Runtime;
  let readable: SandboxTenant;
  let roleless: SandboxTenant;
  const logs = captureLogger("trace");
  const responses: string[] = [];

  const gql = async (query: string, variables?: Record<string, unknown>) => {
    const result = await postGraphQL(runtime.url, query, variables);
    responses.push(`${JSON.stringify(result.headers)}\n${result.text}`);
    assert.equal(result.status, 200, result.text);
    assert.equal(result.body.errors, undefined, result.text);
    return result.body.data;
  };
  const control = async (method: string, path: string, body?: unknown) => {
    const response = await request(`${runtime.sandbox!.url}/_sandbox${path}`, {
      method: method as "PUT",
      headers: { "content-type": "application/json" },
      body: body === undefined ? null : JSON.stringify(body),
      dispatcher: runtime.app.dispatcher,
    });
    assert.equal(response.statusCode, 200);
    return response.body.json() as Promise<any>;
  };

  before(async () => {
    // No background sync engine: each tenant is first listed by the query that names it, after the set-up below,
    // and that query waits for the tenant's whole first sync (not only its first page), however slow the machine.
    runtime = await startRuntime(loadConfig({ PORT: "0", LOG_LEVEL: "trace", DATA_DIR: "memory://", INCIDENT_SYNC: "false", INCIDENT_FIRST_LOAD_WAIT_MS: "60000" }), {
      logger: logs.logger,
    });
    const defenderTenants = runtime.sandbox!.tenants.filter((t) => t.resources.defender && t.consent.granted && t.incidentCount > 0);
    [readable, roleless] = defenderTenants as [SandboxTenant, SandboxTenant];
    for (const tenant of [readable, roleless]) {
      assert.deepEqual(await control("PUT", `/tenants/${tenant.id}/token-format`, { opaque: true }), { tenantId: tenant.id, opaque: true });
    }
    // Consented, but without an incident role: the API refuses, and nothing in the token could have said so.
    await control("POST", `/tenants/${roleless.id}/grant-consent`, { defender: ["AdvancedHunting.Read.All"] });
  });
  after(async () => {
    await runtime?.close();
  });

  it("the sandbox issues a token that is not a JWT and still accepts it", async () => {
    const token = await runtime.sandbox!.mintAccessToken({ tenantId: readable.id, resource: "defender" });
    assert.match(token, OPAQUE_TOKEN);
    assert.ok(!token.includes("."), "no JWS segments");
    const response = await request(`${runtime.sandbox!.url}/api/incidents?$top=1`, { headers: { authorization: `Bearer ${token}` }, dispatcher: runtime.app.dispatcher });
    assert.equal(response.statusCode, 200);
    await response.body.dump();
    const forged = await request(`${runtime.sandbox!.url}/api/incidents?$top=1`, { headers: { authorization: `Bearer EwA${"x".repeat(200)}` }, dispatcher: runtime.app.dispatcher });
    assert.equal(forged.statusCode, 401);
    await forged.body.dump();
  });

  it("a tenant with opaque tokens lists its incidents", async () => {
    const data = await gql(`query($ids: [ID!]) { incidents(tenantIds: $ids, first: 5) { totalCount tenantOutcomes { tenantId ok error { code message } } } }`, {
      ids: [readable.id],
    });
    assert.deepEqual(data.incidents.tenantOutcomes, [{ tenantId: readable.id, ok: true, error: null }]);
    assert.equal(data.incidents.totalCount, runtime.sandbox!.incidents.forTenant(readable.id).length);
  });

  it("token diagnostics: claims unreadable, not a failure; reading judged by the incidents call", async () => {
    const data = await gql(DIAGNOSTICS, { ids: [readable.id] });
    const [d] = data.tokenDiagnostics;
    assert.equal(d.ok, true);
    assert.equal(d.claimsReadable, false);
    assert.equal(d.readAccess, "ALLOWED");
    assert.equal(d.canRead, true);
    assert.equal(d.updateAccess, "UNKNOWN");
    assert.deepEqual([d.tid, d.audience, d.issuer, d.appId, d.version, d.issuedAt], [null, null, null, null, null, null]);
    assert.deepEqual(d.roles, []);
    assert.deepEqual(d.missingRoles, []);
    assert.ok(d.expiresAt, "the expiry comes from the token answer");
    assert.equal(d.error, null);
  });

  it("an update is not refused for unreadable claims: the API decides", async () => {
    const incident = runtime.sandbox!.incidents.forTenant(readable.id)[0]!;
    const before = runtime.sandbox!.context.counterSnapshot().byTenant[readable.id]?.["defender.patch"] ?? 0;
    const data = await gql(`mutation($t: ID!, $i: ID!) { updateIncident(tenantId: $t, incidentId: $i, input: { assignedTo: "opaque@contoso.example" }) { assignedTo } }`, {
      t: readable.id,
      i: String(incident.incidentId),
    });
    assert.equal(data.updateIncident.assignedTo, "opaque@contoso.example");
    assert.equal(runtime.sandbox!.context.counterSnapshot().byTenant[readable.id]?.["defender.patch"], before + 1);
  });

  it("a tenant whose API refuses the opaque token: MISSING_ROLE, judged by the call", async () => {
    const listed = await gql(`query($ids: [ID!]) { incidents(tenantIds: $ids) { tenantOutcomes { ok error { code } } } }`, { ids: [roleless.id] });
    assert.deepEqual(listed.incidents.tenantOutcomes, [{ ok: false, error: { code: "MISSING_ROLE" } }]);
    const [d] = (await gql(DIAGNOSTICS, { ids: [roleless.id] })).tokenDiagnostics;
    assert.equal(d.claimsReadable, false);
    assert.equal(d.ok, false);
    assert.equal(d.readAccess, "DENIED");
    assert.equal(d.canRead, false);
    assert.deepEqual(d.missingRoles, ["Incident.Read.All", "Incident.ReadWrite.All"]);
    assert.equal(d.error.code, "MISSING_ROLE");
    assert.match(d.error.message, /claims are unreadable/);
  });

  it("no token appears in any response or log line", () => {
    assert.ok(logs.lines.length > 0 && responses.length > 0);
    for (const line of logs.lines) assert.ok(!OPAQUE_TOKEN.test(line), `a token in the log: ${line.slice(0, 120)}`);
    for (const text of responses) assert.ok(!OPAQUE_TOKEN.test(text), "a token in a response");
    // The server did use opaque tokens: acquired from the sandbox's token endpoint, logged without claims.
    assert.ok(logs.lines.some((line) => line.includes('"claimsReadable":false')), "no token without readable claims was acquired");
  });
});
