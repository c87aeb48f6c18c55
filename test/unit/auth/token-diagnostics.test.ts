import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { TokenClaims } from "../../../src/auth/token-claims.js";
import { diagnoseToken, type AccessVerdict } from "../../../src/auth/token-diagnostics.js";
import type { AccessToken, TokenProvider } from "../../../src/auth/token-provider.js";

const TENANT = "0b9c3c7e-5b8e-4a43-9e0e-1f2a3b4c5d6e";

function provider(claims: TokenClaims | undefined): TokenProvider {
  const token: AccessToken = { accessToken: "EwBwA8opaque", expiresOn: new Date(Date.now() + 3_600_000), fromCache: false, claims, fingerprint: "abc" };
  return {
    getToken: async () => token,
    invalidate: () => undefined,
    forgetFailures: () => undefined,
    stats: () => ({ requests: 0, cacheHits: 0, coalesced: 0, acquisitions: 0, tokensIssued: 0, failures: 0, backoffRefusals: 0, cachedTokens: 0 }),
  };
}

const readable = (roles: string[]): TokenClaims => ({
  tid: TENANT,
  aud: "https://api.security.microsoft.com",
  iss: `https://sts.windows.net/${TENANT}/`,
  appId: "5c1e7d2a-9b3f-4c6e-8a1d-0f2b4c6d8e10",
  roles,
  ver: "1.0",
  iat: 1,
  nbf: 1,
  exp: 2,
  idtyp: "app",
  oid: "33333333-3333-3333-3333-333333333333",
});

describe("diagnoseToken with a token whose claims cannot be read", () => {
  it("does not fail the tenant: claims unreadable, roles and access unknown without a probe", async () => {
    const d = await diagnoseToken(provider(undefined), TENANT, "defender");
    assert.equal(d.ok, true);
    assert.equal(d.claimsReadable, false);
    assert.equal(d.claims, undefined);
    assert.deepEqual(d.grantedRoles, []);
    assert.deepEqual(d.access, { read: "unknown", update: "unknown" });
    assert.deepEqual(d.missingRoles, { read: [], update: [] });
    assert.equal(d.canRead, false);
    assert.equal(d.error, undefined);
  });

  it("judges reading by the probe call: allowed", async () => {
    let probes = 0;
    const d = await diagnoseToken(provider(undefined), TENANT, "graph", { probe: async () => (probes++, "allowed") });
    assert.equal(probes, 1);
    assert.equal(d.ok, true);
    assert.equal(d.canRead, true);
    assert.deepEqual(d.access, { read: "allowed", update: "unknown" });
    assert.equal(d.error, undefined);
  });

  it("judges reading by the probe call: a refusal is MISSING_ROLE with the roles that would allow it", async () => {
    const d = await diagnoseToken(provider(undefined), TENANT, "defender", { probe: async (): Promise<AccessVerdict> => "denied" });
    assert.equal(d.ok, false);
    assert.equal(d.claimsReadable, false);
    assert.deepEqual(d.access, { read: "denied", update: "denied" });
    assert.deepEqual(d.missingRoles, { read: ["Incident.Read.All", "Incident.ReadWrite.All"], update: ["Incident.ReadWrite.All"] });
    assert.equal(d.error?.code, "MISSING_ROLE");
    assert.match(d.error!.message, /claims are unreadable/);
    assert.ok(!d.error!.message.includes("EwBwA8opaque"));
  });

  it("a probe that fails says nothing: unknown, not a failure", async () => {
    const d = await diagnoseToken(provider(undefined), TENANT, "defender", {
      probe: async () => {
        throw new Error("upstream unavailable");
      },
    });
    assert.equal(d.ok, true);
    assert.deepEqual(d.access, { read: "unknown", update: "unknown" });
  });

  it("never probes a readable token: its roles decide", async () => {
    let probes = 0;
    const d = await diagnoseToken(provider(readable(["Incident.Read.All"])), TENANT, "defender", { probe: async () => (probes++, "denied") });
    assert.equal(probes, 0);
    assert.equal(d.claimsReadable, true);
    assert.equal(d.ok, true);
    assert.deepEqual(d.access, { read: "allowed", update: "denied" });
    assert.deepEqual(d.missingRoles, { read: [], update: ["Incident.ReadWrite.All"] });
  });
});

describe("hunting verdicts", () => {
  it("judges hunting from the hunting backend's token: allowed, denied with the role, null when unreadable, false without a token", async () => {
    const { diagnoseHunting, HUNTING_ROLES } = await import("../../../src/auth/token-diagnostics.js");
    assert.deepEqual(HUNTING_ROLES, { graph: "ThreatHunting.Read.All", defender: "AdvancedHunting.Read.All" });
    const allowed = await diagnoseHunting(provider(readable(["ThreatHunting.Read.All"])), TENANT, "graph");
    assert.deepEqual(allowed, { backend: "graph", access: "allowed", canHunt: true, missingRoles: [] });
    const denied = await diagnoseHunting(provider(readable(["SecurityIncident.ReadWrite.All"])), TENANT, "graph");
    assert.deepEqual(denied, { backend: "graph", access: "denied", canHunt: false, missingRoles: ["ThreatHunting.Read.All"] });
    const legacy = await diagnoseHunting(provider(readable(["Incident.ReadWrite.All", "ThreatHunting.Read.All"])), TENANT, "defender");
    assert.deepEqual(legacy.missingRoles, ["AdvancedHunting.Read.All"], "each backend's own role");
    const opaque = await diagnoseHunting(provider(undefined), TENANT, "graph");
    assert.deepEqual(opaque, { backend: "graph", access: "unknown", canHunt: null, missingRoles: [] });
    const failing: TokenProvider = { ...provider(undefined), getToken: async () => Promise.reject(new Error("AADSTS7000215: Invalid client secret provided.")) };
    const none = await diagnoseHunting(failing, TENANT, "graph");
    assert.equal(none.canHunt, false);
    assert.equal(none.access, "unknown");
    assert.ok(none.errorCode);
  });

  it("reuses a diagnosis of the same backend instead of asking for another token", async () => {
    const { diagnoseHunting } = await import("../../../src/auth/token-diagnostics.js");
    let requests = 0;
    const counting: TokenProvider = { ...provider(readable(["SecurityIncident.Read.All", "ThreatHunting.Read.All"])) };
    const getToken = counting.getToken;
    counting.getToken = (...args) => (requests++, getToken(...args));
    const diagnosis = await diagnoseToken(counting, TENANT, "graph");
    assert.equal(requests, 1);
    assert.equal((await diagnoseHunting(counting, TENANT, "graph", { reuse: diagnosis })).canHunt, true);
    assert.equal(requests, 1, "same resource: no second token");
    const opaqueDiagnosis = await diagnoseToken(provider(undefined), TENANT, "graph");
    assert.equal((await diagnoseHunting(counting, TENANT, "graph", { reuse: opaqueDiagnosis })).canHunt, null);
    await diagnoseHunting(counting, TENANT, "defender", { reuse: diagnosis });
    assert.equal(requests, 2, "another resource: its own token");
  });
});
