import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { CallerAuthError, createEntraCallerVerifier, type EntraCallerVerifier } from "../../src/auth/caller-jwt.js";
import { DEFAULT_ROLE_MAP } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { SANDBOX_CALLER_AUDIENCE, SANDBOX_PARTNER_TENANT_ID } from "../../src/sandbox/tokens.js";
import { startTestSandbox, type TestSandbox } from "../helpers/sandbox.js";

/**
 * The Entra caller verifier against the sandbox's emulated Entra ID: key set cached across requests, clock
 * tolerance, claims, role mapping, and an unreachable key set. (The hostile tokens go through HTTP in
 * callers.test.ts.)
 */
describe("Entra ID caller tokens", () => {
  let t: TestSandbox;
  let verifier: EntraCallerVerifier;
  const logger = createLogger("silent");
  const mint = async (body: Record<string, unknown> = {}) => {
    const response = await request(`${t.sandbox.url}/_sandbox/caller-tokens`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      dispatcher: t.dispatcher,
    });
    assert.equal(response.statusCode, 200);
    return ((await response.body.json()) as { accessToken: string }).accessToken;
  };
  const refusedWith = (code: string, pattern: RegExp) => (error: unknown) => {
    assert.ok(error instanceof CallerAuthError, String(error));
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  };
  const config = (overrides: Record<string, unknown> = {}) => ({
    audiences: [SANDBOX_CALLER_AUDIENCE],
    tenants: [SANDBOX_PARTNER_TENANT_ID],
    roleMap: DEFAULT_ROLE_MAP,
    clockToleranceSeconds: 30,
    ...overrides,
  });

  before(async () => {
    t = await startTestSandbox();
    verifier = createEntraCallerVerifier({ config: config(), authorityHost: t.sandbox.url, dispatcher: t.dispatcher, logger });
  });
  after(async () => {
    await t.close();
  });

  it("maps app roles to grants, and names the caller from its claims", async () => {
    const caller = await verifier.verify(await mint({ roles: ["Crosswatch.Reader", "Crosswatch.Responder", "Unrelated"], name: "Ana Analyst", oid: "oid-ana" }));
    assert.deepEqual(
      { kind: caller.kind, id: caller.id, name: caller.name, roles: caller.grants.map((g) => g.role) },
      { kind: "ENTRA", id: "oid-ana", name: "Ana Analyst", roles: ["READER", "RESPONDER"] },
    );
    const eu = createEntraCallerVerifier({
      config: config({ roleMap: { "EU.Readers": { role: "READER", scope: { allTenants: false, tenantIds: [], tenantTags: ["eu"] } } } }),
      authorityHost: t.sandbox.url,
      dispatcher: t.dispatcher,
      logger,
    });
    assert.deepEqual((await eu.verify(await mint({ roles: ["EU.Readers"] }))).grants[0]!.scope.tenantTags, ["eu"]);
    await assert.rejects(eu.verify(await mint({ roles: ["Crosswatch.Admin"] })), refusedWith("FORBIDDEN", /no Crosswatch app role/));
  });

  it("fetches the key set once for many tokens", async () => {
    t.sandbox.context.resetCounters();
    const fresh = createEntraCallerVerifier({ config: config(), authorityHost: t.sandbox.url, dispatcher: t.dispatcher, logger });
    const tokens = await Promise.all(Array.from({ length: 10 }, (_, i) => mint({ oid: `oid-${i}` })));
    for (let round = 0; round < 5; round++) await Promise.all(tokens.map((token) => fresh.verify(token)));
    assert.equal(t.sandbox.context.counterSnapshot().byEndpoint.jwks, 1);
  });

  it("allows clock skew within the tolerance and not beyond", async () => {
    assert.ok(await verifier.verify(await mint({ expiresInSeconds: -10 })));
    assert.ok(await verifier.verify(await mint({ notBeforeInSeconds: 10 })));
    await assert.rejects(verifier.verify(await mint({ expiresInSeconds: -45 })), refusedWith("UNAUTHENTICATED", /token expired/));
    await assert.rejects(verifier.verify(await mint({ notBeforeInSeconds: 45 })), refusedWith("UNAUTHENTICATED", /not yet valid/));
  });

  it("requires the claims every Entra access token carries", async () => {
    for (const claim of ["tid", "exp", "nbf", "iat"]) {
      await assert.rejects(verifier.verify(await mint({ omitClaims: [claim] })), refusedWith("UNAUTHENTICATED", new RegExp(`missing: ${claim}`)), claim);
    }
    await assert.rejects(verifier.verify(await mint({ omitClaims: ["oid", "sub"] })), refusedWith("UNAUTHENTICATED", /missing: oid/));
  });

  it("accepts the v1 issuer of an allowed tenant, and refuses an allowed tenant's tid under another tenant's issuer", async () => {
    assert.ok(await verifier.verify(await mint({ version: 1 })));
    const other = "0b7e4c1d-2f3a-4b5c-8d6e-7f8091a2b3c4";
    const twoTenants = createEntraCallerVerifier({ config: config({ tenants: [SANDBOX_PARTNER_TENANT_ID, other] }), authorityHost: t.sandbox.url, dispatcher: t.dispatcher, logger });
    await assert.rejects(
      twoTenants.verify(await mint({ issuer: `${t.sandbox.url}/${other}/v2.0` })),
      refusedWith("UNAUTHENTICATED", /tenant not allowed/),
    );
  });

  it("says AUTH_UNAVAILABLE when the key set cannot be fetched", async () => {
    const token = await mint();
    const unreachable = createEntraCallerVerifier({ config: config(), authorityHost: "https://127.0.0.1:9", dispatcher: t.dispatcher, logger });
    await assert.rejects(unreachable.verify(token), refusedWith("AUTH_UNAVAILABLE", /signing keys/));
  });
});
