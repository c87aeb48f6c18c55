import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeJwt, SignJWT } from "jose";
import { ConsentLinks, ConsentStateError } from "../../../src/auth/consent.js";

const KEY = new TextEncoder().encode("unit-test-consent-state-key-0123456789");
const TENANT = "12345678-90ab-4cde-8f01-23456789abcd";
const DEFAULT_REDIRECT = "http://localhost:4000/consent/callback";
const links = new ConsentLinks({
  authorityHost: "https://login.example",
  clientId: "00001111-aaaa-2222-bbbb-3333cccc4444",
  defaultBackend: "defender",
  defaultRedirectUri: () => DEFAULT_REDIRECT,
  extraRedirectUris: ["https://portal.partner.example/consent/return"],
  stateKey: KEY,
  stateTtlSeconds: 600,
});
const MINTER = { kind: "API_KEY" as const, id: "5d0c8a8e-key-id", name: "onboarding admin" };

describe("consent link states", () => {
  it("binds the minting caller into the signed state and gives it back on verify", async () => {
    const link = await links.create({ flow: "ADMIN_CONSENT", tenantId: TENANT, minter: MINTER });
    const state = new URL(link.url).searchParams.get("state")!;
    assert.deepEqual(decodeJwt(state).by, { k: "API_KEY", i: MINTER.id, n: MINTER.name });
    const verified = await links.verify(state, TENANT);
    assert.deepEqual(verified.minter, MINTER);
    assert.equal(verified.tenantId, TENANT);
    assert.equal(verified.redirectUri, DEFAULT_REDIRECT);
  });

  it("mints only for allow-listed redirect URIs, compared exactly", async () => {
    assert.equal(links.isAllowedRedirectUri(DEFAULT_REDIRECT), true);
    assert.equal(links.isAllowedRedirectUri("https://portal.partner.example/consent/return"), true);
    assert.equal(links.isAllowedRedirectUri("https://portal.partner.example/consent/return/"), false);
    assert.equal(links.isAllowedRedirectUri("https://evil.example/consent/callback"), false);
    await assert.rejects(links.create({ flow: "ADMIN_CONSENT", tenantId: TENANT, redirectUri: "https://evil.example/cb", minter: MINTER }));
    const ok = await links.create({ flow: "ADMIN_CONSENT", redirectUri: "https://portal.partner.example/consent/return", minter: MINTER });
    assert.equal(new URL(ok.url).searchParams.get("redirect_uri"), "https://portal.partner.example/consent/return");
  });

  it("refuses a state signed with our key but without a minter (or with a made-up caller kind)", async () => {
    const now = Math.floor(Date.now() / 1000);
    const sign = (payload: Record<string, unknown>) =>
      new SignJWT(payload)
        .setProtectedHeader({ alg: "HS256" })
        .setJti("nonce-1")
        .setAudience("crosswatch:consent-callback")
        .setIssuedAt(now)
        .setExpirationTime(now + 60)
        .sign(KEY);
    for (const payload of [
      { tid: TENANT, ru: DEFAULT_REDIRECT },
      { tid: TENANT, ru: DEFAULT_REDIRECT, by: { k: "ROOT", i: "x", n: "y" } },
      { tid: TENANT, ru: DEFAULT_REDIRECT, by: "admin" },
    ]) {
      await assert.rejects(links.verify(await sign(payload), TENANT), (error: unknown) => {
        assert.ok(error instanceof ConsentStateError);
        assert.equal(error.code, "STATE_INVALID");
        return true;
      });
    }
  });

  it("asks a v2 link for the .default of the tenant's backend only, default INCIDENTS_BACKEND; a v1 link names none", async () => {
    const scopeOf = (url: string) => new URL(url).searchParams.get("scope");
    const byDefault = await links.create({ flow: "ADMIN_CONSENT", tenantId: TENANT, minter: MINTER });
    assert.equal(scopeOf(byDefault.url), "https://api.security.microsoft.com/.default");
    assert.equal(byDefault.backend, "defender");
    assert.deepEqual(byDefault.permissions.map((p) => p.role), ["Incident.ReadWrite.All"]);
    const graph = await links.create({ flow: "ADMIN_CONSENT", tenantId: TENANT, backend: "graph", minter: MINTER });
    assert.equal(scopeOf(graph.url), "https://graph.microsoft.com/.default");
    assert.deepEqual(graph.permissions.map((p) => p.role), ["SecurityIncident.ReadWrite.All"]);
    const v1 = await links.create({ flow: "LEGACY_V1", backend: "graph", minter: MINTER });
    assert.equal(scopeOf(v1.url), null);
    assert.equal(v1.backend, null);
    assert.equal(v1.permissions.length, 2, "v1 consent covers every permission the app requires");
  });
});

describe("consent links with hunting (HUNTING_ENABLED)", () => {
  const hunting = new ConsentLinks({
    authorityHost: "https://login.example",
    clientId: "00001111-aaaa-2222-bbbb-3333cccc4444",
    defaultBackend: "defender",
    defaultRedirectUri: () => DEFAULT_REDIRECT,
    stateKey: KEY,
    stateTtlSeconds: 600,
    hunting: { defaultBackend: "graph" },
  });
  const scopeOf = (url: string) => new URL(url).searchParams.get("scope");
  const roles = (link: { permissions: { role: string }[] }) => link.permissions.map((p) => p.role);

  it("lists the hunting role of the tenant's hunting backend when the link asks for that resource, without adding a resource", async () => {
    const graph = await hunting.create({ flow: "ADMIN_CONSENT", tenantId: TENANT, backend: "graph", minter: MINTER });
    assert.equal(scopeOf(graph.url), "https://graph.microsoft.com/.default", "still the one resource's .default");
    assert.deepEqual(roles(graph), ["SecurityIncident.ReadWrite.All", "ThreatHunting.Read.All"]);
    assert.deepEqual(graph.permissions[1], {
      resource: "Microsoft Graph",
      role: "ThreatHunting.Read.All",
      description: "Run hunting queries (Microsoft Graph runHuntingQuery)",
    });
    const legacy = await hunting.create({ flow: "ADMIN_CONSENT", tenantId: TENANT, backend: "defender", huntingBackend: "defender", minter: MINTER });
    assert.equal(scopeOf(legacy.url), "https://api.security.microsoft.com/.default");
    assert.deepEqual(roles(legacy), ["Incident.ReadWrite.All", "AdvancedHunting.Read.All"]);
  });

  it("never names a second resource for a tenant that hunts elsewhere (AADSTS650052): that needs its own link", async () => {
    // Incidents on Defender (the default), hunts on Graph (the hunting default): the Defender link lists no hunting role.
    const incidents = await hunting.create({ flow: "ADMIN_CONSENT", tenantId: TENANT, minter: MINTER });
    assert.equal(scopeOf(incidents.url), "https://api.security.microsoft.com/.default");
    assert.deepEqual(roles(incidents), ["Incident.ReadWrite.All"]);
    // Incidents on Graph, hunts on the legacy Defender API: the Graph link has no hunting role either ...
    const graphIncidents = await hunting.create({ flow: "ADMIN_CONSENT", tenantId: TENANT, backend: "graph", huntingBackend: "defender", minter: MINTER });
    assert.equal(scopeOf(graphIncidents.url), "https://graph.microsoft.com/.default");
    assert.deepEqual(roles(graphIncidents), ["SecurityIncident.ReadWrite.All"]);
    // ... and the second link, naming the hunting resource, lists it.
    const second = await hunting.create({ flow: "ADMIN_CONSENT", tenantId: TENANT, backend: "defender", huntingBackend: "defender", minter: MINTER });
    assert.deepEqual(roles(second), ["Incident.ReadWrite.All", "AdvancedHunting.Read.All"]);
  });

  it("lists both hunting roles in a v1 link, and none with hunting off", async () => {
    const v1 = await hunting.create({ flow: "LEGACY_V1", minter: MINTER });
    assert.deepEqual(roles(v1), ["Incident.ReadWrite.All", "SecurityIncident.ReadWrite.All", "AdvancedHunting.Read.All", "ThreatHunting.Read.All"]);
    const off = await links.create({ flow: "ADMIN_CONSENT", tenantId: TENANT, backend: "graph", huntingBackend: "graph", minter: MINTER });
    assert.deepEqual(roles(off), ["SecurityIncident.ReadWrite.All"]);
  });
});
