import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ANONYMOUS_CALLER, highestRole, permits, permitsEverywhere, readableScope, type Caller, type Grant } from "../../../src/auth/caller.js";

const A = "aaaaaaaa-0000-4000-8000-000000000001";
const B = "bbbbbbbb-0000-4000-8000-000000000002";
const grant = (role: Grant["role"], scope: Partial<Grant["scope"]>): Grant => ({
  role,
  scope: { allTenants: false, tenantIds: [], tenantTags: [], ...scope },
});
const caller = (...grants: Grant[]): Caller => ({ kind: "API_KEY", id: "k", name: "k", grants });

describe("caller access", () => {
  const euTenant = { id: A, tags: ["eu"] };
  const naTenant = { id: B, tags: ["na"] };

  it("allows an action only when one grant both ranks high enough and covers the tenant", () => {
    const mixed = caller(grant("ADMIN", { tenantTags: ["eu"] }), grant("READER", { allTenants: true }));
    assert.equal(permits(mixed, "manage", euTenant), true);
    assert.equal(permits(mixed, "read", naTenant), true);
    assert.equal(permits(mixed, "update", naTenant), false, "admin over eu + reader over all is not responder over na");
    assert.equal(permits(mixed, "manage", naTenant), false);
    assert.equal(permitsEverywhere(mixed, "ADMIN"), false);
    assert.equal(permitsEverywhere(mixed, "READER"), true);
  });

  it("matches tenant ids case-insensitively and tags exactly", () => {
    const byId = caller(grant("RESPONDER", { tenantIds: [A] }));
    assert.equal(permits(byId, "update", { id: A.toUpperCase(), tags: [] }), true);
    assert.equal(permits(byId, "read", naTenant), false);
    const byTag = caller(grant("READER", { tenantTags: ["eu"] }));
    assert.equal(permits(byTag, "read", euTenant), true);
    assert.equal(permits(byTag, "read", { id: B, tags: ["EU"] }), false);
  });

  it("ranks roles READER < RESPONDER < ADMIN", () => {
    const responder = caller(grant("RESPONDER", { allTenants: true }));
    assert.equal(permits(responder, "read", euTenant), true);
    assert.equal(permits(responder, "update", euTenant), true);
    assert.equal(permits(responder, "manage", euTenant), false);
    assert.equal(highestRole(caller(grant("READER", { allTenants: true }), grant("ADMIN", { tenantIds: [A] }))), "ADMIN");
    assert.equal(highestRole(caller()), undefined);
    assert.equal(permits(caller(), "read", euTenant), false, "no grant, no access");
  });

  it("derives the readable scope for listings: everything, or the union of ids and tags", () => {
    assert.equal(readableScope(ANONYMOUS_CALLER), undefined);
    assert.deepEqual(readableScope(caller(grant("READER", { tenantIds: [A] }), grant("ADMIN", { tenantTags: ["eu", "na"] }))), {
      tenantIds: [A],
      tenantTags: ["eu", "na"],
    });
    assert.deepEqual(readableScope(caller()), { tenantIds: [], tenantTags: [] });
  });
});
