import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createConfidentialClient } from "../../src/auth/msal-client.js";
import { UndiciNetworkClient } from "../../src/auth/network-client.js";
import { diagnoseToken, INCIDENT_ROLES } from "../../src/auth/token-diagnostics.js";
import { TOKEN_ERROR_HINTS } from "../../src/auth/token-errors.js";
import { MsalTokenProvider, type TokenProvider } from "../../src/auth/token-provider.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { captureLogger } from "../helpers/log-capture.js";
import { startTestSandbox, type TestSandbox } from "../helpers/sandbox.js";

describe("token diagnostics against the sandbox", () => {
  let t: TestSandbox;
  let provider: TokenProvider;
  const tenant = (domain: string): SandboxTenant => {
    const found = t.sandbox.tenants.find((x) => x.domain === `${domain}.onmicrosoft.com`);
    assert.ok(found, domain);
    return found;
  };

  before(async () => {
    t = await startTestSandbox();
    const { logger } = captureLogger("warn");
    const client = await createConfidentialClient({
      credential: { kind: "secret", clientId: t.sandbox.clientId, clientSecret: t.sandbox.clientSecret },
      authorityHost: t.sandbox.url,
      networkClient: new UndiciNetworkClient(t.dispatcher),
      logger,
    });
    provider = new MsalTokenProvider({ client, authorityHost: t.sandbox.url, logger });
  });
  after(async () => {
    await t?.close();
  });

  it("a normal tenant is ok: roles, read and update, nothing missing", async () => {
    const contoso = tenant("contoso");
    const diagnosis = await diagnoseToken(provider, contoso.id, "defender");
    assert.equal(diagnosis.ok, true);
    assert.equal(diagnosis.tenantId, contoso.id);
    assert.equal(diagnosis.backend, "defender");
    assert.deepEqual(diagnosis.grantedRoles, ["Incident.ReadWrite.All"]);
    assert.equal(diagnosis.canRead, true);
    assert.equal(diagnosis.canUpdate, true);
    assert.deepEqual(diagnosis.missingRoles, { read: [], update: [] });
    assert.deepEqual(diagnosis.requiredRoles, INCIDENT_ROLES.defender);
    assert.equal(diagnosis.claims?.tid, contoso.id);
    assert.equal(diagnosis.fromCache, false);
    assert.ok(diagnosis.expiresAt instanceof Date && diagnosis.expiresAt.getTime() > Date.now());
    assert.equal(diagnosis.error, undefined);
    assert.equal((await diagnoseToken(provider, contoso.id, "defender")).fromCache, true);
  });

  it("Coho Winery (consented without incident roles) → MISSING_ROLE, naming the roles for reading and updating", async () => {
    const coho = tenant("cohowinery");
    const defender = await diagnoseToken(provider, coho.id, "defender");
    assert.equal(defender.ok, false);
    assert.deepEqual(defender.grantedRoles, ["AdvancedHunting.Read.All"]);
    assert.equal(defender.canRead, false);
    assert.equal(defender.canUpdate, false);
    assert.deepEqual(defender.missingRoles, { read: ["Incident.Read.All", "Incident.ReadWrite.All"], update: ["Incident.ReadWrite.All"] });
    assert.equal(defender.error?.code, "MISSING_ROLE");
    assert.equal(defender.error?.hint, TOKEN_ERROR_HINTS.MISSING_ROLE);
    assert.match(defender.error?.message ?? "", /Incident\.Read\.All or Incident\.ReadWrite\.All/);
    assert.ok(defender.claims, "the token itself was fine");

    const graph = await diagnoseToken(provider, coho.id, "graph");
    assert.equal(graph.ok, false);
    assert.deepEqual(graph.grantedRoles, []);
    assert.deepEqual(graph.missingRoles?.update, ["SecurityIncident.ReadWrite.All"]);
    assert.match(graph.error?.message ?? "", /no roles/);
  });

  it("a read-only grant → ok, can read, cannot update, with the role updates need", async () => {
    const trey = tenant("treyresearch");
    const response = await t.call("POST", `/_sandbox/tenants/${trey.id}/grant-consent`, { json: { defender: ["Incident.Read.All"] } });
    assert.equal(response.status, 200, response.text);
    const diagnosis = await diagnoseToken(provider, trey.id, "defender");
    assert.equal(diagnosis.ok, true);
    assert.equal(diagnosis.canRead, true);
    assert.equal(diagnosis.canUpdate, false);
    assert.deepEqual(diagnosis.missingRoles, { read: [], update: ["Incident.ReadWrite.All"] });
    assert.equal(diagnosis.error, undefined);
  });

  it("Alpine Ski House (not consented) → CONSENT_REQUIRED with the consent hint", async () => {
    const alpine = tenant("alpineskihouse");
    const diagnosis = await diagnoseToken(provider, alpine.id, "defender");
    assert.equal(diagnosis.ok, false);
    assert.equal(diagnosis.error?.code, "CONSENT_REQUIRED");
    assert.match(diagnosis.error?.hint ?? "", /Global Administrator has not consented.*consent link/);
    assert.match(diagnosis.error?.message ?? "", /AADSTS700016/);
    assert.equal(diagnosis.claims, undefined);
    assert.equal(diagnosis.missingRoles, undefined, "unknown without a token");
    assert.deepEqual(diagnosis.grantedRoles, []);
    assert.deepEqual(diagnosis.requiredRoles, INCIDENT_ROLES.defender);
  });

  it("Proseware (Graph only): Defender → RESOURCE_NOT_PROVISIONED, the Graph backend is ok", async () => {
    const proseware = tenant("proseware");
    const defender = await diagnoseToken(provider, proseware.id, "defender");
    assert.equal(defender.error?.code, "RESOURCE_NOT_PROVISIONED");
    const graph = await diagnoseToken(provider, proseware.id, "graph");
    assert.equal(graph.ok, true);
    assert.deepEqual(graph.grantedRoles, ["SecurityIncident.ReadWrite.All"]);
    assert.equal(graph.canUpdate, true);
    assert.equal(graph.claims?.aud, "https://graph.microsoft.com");
    assert.deepEqual(graph.requiredRoles.map((r) => r.role), ["SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All"]);
  });

  it("a throttled tenant → THROTTLED with retryAfterSeconds", async () => {
    const litware = tenant("litwareinc");
    t.sandbox.context.setFault(litware.id, { kind: "throttle", retryAfterSeconds: 9, endpoints: ["token"], times: 1 });
    const diagnosis = await diagnoseToken(provider, litware.id, "graph");
    assert.equal(diagnosis.ok, false);
    assert.deepEqual(
      { code: diagnosis.error?.code, retryAfterSeconds: diagnosis.error?.retryAfterSeconds },
      { code: "THROTTLED", retryAfterSeconds: 9 },
    );
  });
});
