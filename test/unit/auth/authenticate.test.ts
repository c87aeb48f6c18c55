import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createAuthenticator } from "../../../src/auth/authenticate.js";
import { ANONYMOUS_CALLER, type Caller } from "../../../src/auth/caller.js";
import { CallerAuthError, type EntraCallerVerifier } from "../../../src/auth/caller-jwt.js";
import type { ApiKeyStore, ApiKeyVerification } from "../../../src/store/api-key-store.js";

const KEY = `cwk_${"a".repeat(12)}_${"b".repeat(43)}`;
const entraCaller: Caller = { kind: "ENTRA", id: "oid-1", name: "Ana", grants: [] };

function setup(options: { anonymous?: boolean; entra?: boolean; verification?: ApiKeyVerification } = {}) {
  const seen = { keys: [] as string[], tokens: [] as string[] };
  const apiKeys = {
    async verify(key: string) {
      seen.keys.push(key);
      return (
        options.verification ?? {
          ok: true,
          record: { id: "k1", name: "integration", role: "READER", scope: { allTenants: true, tenantIds: [], tenantTags: [] } },
        }
      );
    },
  } as unknown as ApiKeyStore;
  const entra: EntraCallerVerifier = {
    async verify(token) {
      seen.tokens.push(token);
      return entraCaller;
    },
  };
  const auth = createAuthenticator({ apiKeys, entra: options.entra === false ? undefined : entra, anonymous: options.anonymous ?? false });
  return { auth, seen };
}

const refused = (pattern: RegExp) => (error: unknown) => error instanceof CallerAuthError && error.code === "UNAUTHENTICATED" && pattern.test(error.message);

describe("authenticate", () => {
  it("routes keys to the key store and other bearer tokens to the Entra verifier, never the other way", async () => {
    const { auth, seen } = setup();
    const byKey = await auth.authenticate({ authorization: `Bearer ${KEY}` });
    assert.deepEqual([byKey.kind, byKey.name, byKey.grants[0]?.role], ["API_KEY", "integration", "READER"]);
    assert.equal((await auth.authenticate({ "x-api-key": KEY })).kind, "API_KEY");
    assert.equal(await auth.authenticate({ authorization: "bearer eyJ.x.y" }), entraCaller);
    assert.deepEqual(seen, { keys: [KEY, KEY], tokens: ["eyJ.x.y"] });
  });

  it("lets nobody in without credentials unless anonymous calls are allowed", async () => {
    await assert.rejects(setup().auth.authenticate({}), refused(/authentication required/));
    assert.equal(await setup({ anonymous: true }).auth.authenticate({}), ANONYMOUS_CALLER);
  });

  it("checks credentials that are sent even when anonymous calls are allowed", async () => {
    const { auth } = setup({ anonymous: true, verification: { ok: false, reason: "REVOKED" } });
    await assert.rejects(auth.authenticate({ authorization: `Bearer ${KEY}` }), refused(/revoked/));
  });

  it("refuses malformed and doubled headers, and bearer tokens when no Entra callers are configured", async () => {
    const { auth } = setup();
    await assert.rejects(auth.authenticate({ authorization: `Basic ${KEY}` }), refused(/Bearer/));
    await assert.rejects(auth.authenticate({ authorization: `Bearer ${KEY}`, "x-api-key": KEY }), refused(/one credential/));
    await assert.rejects(auth.authenticate({ "x-api-key": [KEY, KEY] }), refused(/one X-API-Key/));
    await assert.rejects(setup({ entra: false }).auth.authenticate({ authorization: "Bearer eyJ.x.y" }), refused(/not configured/));
    for (const reason of ["MALFORMED", "UNKNOWN", "EXPIRED"] as const) {
      await assert.rejects(setup({ verification: { ok: false, reason } }).auth.authenticate({ "x-api-key": KEY }), (error: unknown) => {
        assert.ok(error instanceof CallerAuthError);
        assert.ok(!error.message.includes(KEY));
        return true;
      });
    }
  });
});
