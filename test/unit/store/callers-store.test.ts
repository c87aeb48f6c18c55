import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import type { TenantScope } from "../../../src/auth/caller.js";
import { API_KEY_PATTERN } from "../../../src/store/api-key-store.js";
import type { Store } from "../../../src/store/store.js";
import { isStoreError, storeEngines } from "../../helpers/store.js";

const ID = (n: number) => `${String(n).padStart(8, "0")}-aaaa-4bbb-8ccc-dddddddddddd`;
const ALL: TenantScope = { allTenants: true, tenantIds: [], tenantTags: [] };
const actor = { kind: "API_KEY" as const, id: "k1", name: "admin key" };

for (const engine of storeEngines()) {
  describe(`API keys, audit log and scoped listing on ${engine.name}`, () => {
    let store: Store;

    before(async () => {
      store = await engine.open();
    });
    after(async () => {
      await store.close();
      await engine.dispose();
    });
    beforeEach(async () => {
      await store.db.query("DELETE FROM api_keys");
      await store.db.query("DELETE FROM audit_events");
      await store.db.query("DELETE FROM tenants");
    });

    describe("API keys", () => {
      it("creates a key that verifies, and stores only a hash of its secret", async () => {
        const { record, key } = await store.apiKeys.create({ name: " integration ", role: "RESPONDER", scope: { allTenants: false, tenantIds: [ID(1).toUpperCase()], tenantTags: ["eu", "eu"] }, createdBy: "test" });
        assert.match(key, new RegExp(`^${API_KEY_PATTERN.source}$`));
        assert.equal(record.name, "integration");
        assert.deepEqual(record.scope, { allTenants: false, tenantIds: [ID(1)], tenantTags: ["eu"] });
        const verified = await store.apiKeys.verify(key);
        assert.ok(verified.ok);
        assert.equal(verified.record.id, record.id);
        assert.equal(verified.record.role, "RESPONDER");
        const rows = await store.db.query<Record<string, unknown>>("SELECT * FROM api_keys");
        const stored = JSON.stringify(rows);
        assert.ok(!stored.includes(key.slice(17)), "the secret is not stored");
        assert.ok(!stored.includes(key), "the key is not stored");
        assert.match(String(rows[0]!.secret_hash), /^[0-9a-f]{64}$/);
      });

      it("refuses a wrong secret with a known prefix, a malformed key, a revoked and an expired one", async () => {
        const { record, key } = await store.apiKeys.create({ name: "k", role: "READER", scope: ALL, createdBy: "test" });
        const flipped = key.slice(0, -1) + (key.endsWith("A") ? "B" : "A");
        assert.deepEqual(await store.apiKeys.verify(flipped), { ok: false, reason: "UNKNOWN" });
        assert.deepEqual(await store.apiKeys.verify(`cwk_${"z".repeat(12)}_${key.slice(17)}`), { ok: false, reason: "UNKNOWN" });
        assert.deepEqual(await store.apiKeys.verify("cwk_short"), { ok: false, reason: "MALFORMED" });
        assert.deepEqual(await store.apiKeys.verify(`${key} `), { ok: false, reason: "MALFORMED" });

        const first = await store.apiKeys.revoke(record.id, "admin");
        const second = await store.apiKeys.revoke(record.id, "someone else");
        assert.deepEqual(second.revokedAt, first.revokedAt, "revoking twice keeps the first time");
        assert.equal(second.revokedBy, "admin");
        assert.deepEqual(await store.apiKeys.verify(key), { ok: false, reason: "REVOKED" });

        const expiring = await store.apiKeys.create({ name: "e", role: "READER", scope: ALL, expiresAt: new Date(Date.now() + 60_000), createdBy: "test" });
        assert.ok((await store.apiKeys.verify(expiring.key)).ok);
        await store.db.query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", [expiring.record.id]);
        assert.deepEqual(await store.apiKeys.verify(expiring.key), { ok: false, reason: "EXPIRED" });
        assert.equal(await store.apiKeys.countActive(), 0);
        await assert.rejects(store.apiKeys.revoke(ID(9), "admin"), isStoreError("NOT_FOUND", "id"));
      });

      it("records the last use at most once a minute", async () => {
        const { record, key } = await store.apiKeys.create({ name: "k", role: "READER", scope: ALL, createdBy: "test" });
        assert.equal(record.lastUsedAt, null);
        await store.apiKeys.verify(key);
        const firstUse = (await store.apiKeys.get(record.id))!.lastUsedAt;
        assert.ok(firstUse);
        await store.db.query("UPDATE api_keys SET last_used_at = '2020-01-01T00:00:00Z' WHERE id = $1", [record.id]);
        await store.apiKeys.verify(key);
        assert.equal((await store.apiKeys.get(record.id))!.lastUsedAt!.toISOString(), "2020-01-01T00:00:00.000Z", "no second write within the minute");
      });

      it("validates its input, naming the field", async () => {
        const create = (patch: Record<string, unknown>) =>
          store.apiKeys.create({ name: "k", role: "READER", scope: ALL, createdBy: "test", ...patch } as Parameters<Store["apiKeys"]["create"]>[0]);
        await assert.rejects(create({ name: "  " }), isStoreError("INVALID_INPUT", "name"));
        await assert.rejects(create({ name: "x".repeat(129) }), isStoreError("INVALID_INPUT", "name"));
        await assert.rejects(create({ role: "ROOT" }), isStoreError("INVALID_INPUT", "role"));
        await assert.rejects(create({ scope: { allTenants: false, tenantIds: [], tenantTags: [] } }), isStoreError("INVALID_INPUT", "allTenants"));
        await assert.rejects(create({ scope: { allTenants: false, tenantIds: ["contoso.com"], tenantTags: [] } }), isStoreError("INVALID_INPUT", "tenantIds"));
        await assert.rejects(create({ expiresAt: new Date(Date.now() - 1000) }), isStoreError("INVALID_INPUT", "expiresAt"));
        assert.equal(await store.apiKeys.countActive(), 0, "nothing stored by a refused create");
      });

      it("lists newest first with cursors, revoked keys included", async () => {
        const ids: string[] = [];
        for (let i = 0; i < 5; i++) ids.push((await store.apiKeys.create({ name: `k${i}`, role: "READER", scope: ALL, createdBy: "test" })).record.id);
        await store.apiKeys.revoke(ids[0]!, "admin");
        const first = await store.apiKeys.list(3);
        assert.deepEqual(first.items.map((k) => k.name), ["k4", "k3", "k2"]);
        assert.equal(first.hasNextPage, true);
        const rest = await store.apiKeys.list(3, first.cursors.at(-1));
        assert.deepEqual(rest.items.map((k) => k.name), ["k1", "k0"]);
        assert.equal(rest.hasNextPage, false);
        assert.ok(rest.items[1]!.revokedAt);
        assert.equal(await store.apiKeys.countActive(), 4);
        await assert.rejects(store.apiKeys.list(3, "forged"), isStoreError("INVALID_INPUT", "after"));
      });

      it("refuses a cursor beyond bigint as INVALID_INPUT before any SQL, and accepts the largest bigint", async () => {
        await store.apiKeys.create({ name: "k", role: "READER", scope: ALL, createdBy: "test" });
        const cursor = (kind: string, seq: string) => Buffer.from(JSON.stringify([kind, seq])).toString("base64url");
        for (const seq of ["9223372036854775808", "9999999999999999999"]) {
          await assert.rejects(store.apiKeys.list(3, cursor("k1", seq)), isStoreError("INVALID_INPUT", "after"));
          await assert.rejects(store.audit.list({}, 3, cursor("a1", seq)), isStoreError("INVALID_INPUT", "after"));
        }
        assert.equal((await store.apiKeys.list(3, cursor("k1", "9223372036854775807"))).items.length, 1);
        assert.equal((await store.audit.list({}, 3, cursor("a1", "9223372036854775807"))).items.length, 0);
      });
    });

    describe("audit log", () => {
      it("records events and lists them newest first, filtered and paged", async () => {
        await store.audit.record({ actor, action: "tenant.register", tenantId: ID(1), outcome: "SUCCESS", detail: { displayName: "Contoso" }, requestId: "r1" });
        await store.audit.record({ actor, action: "incident.update", tenantId: ID(1), target: "42", outcome: "FORBIDDEN", requestId: "r2" });
        await store.audit.record({ actor: { kind: "CLI", id: "cli:ops", name: "ops" }, action: "key.create", target: "k9", outcome: "SUCCESS" });
        const all = await store.audit.list();
        assert.deepEqual(all.items.map((e) => e.action), ["key.create", "incident.update", "tenant.register"]);
        assert.deepEqual(all.items[2]!.detail, { displayName: "Contoso" });
        assert.equal(all.items[1]!.requestId, "r2");
        assert.ok(all.items[0]!.at instanceof Date);

        assert.deepEqual((await store.audit.list({ tenantId: ID(1).toUpperCase() })).items.map((e) => e.action), ["incident.update", "tenant.register"]);
        assert.deepEqual((await store.audit.list({ outcome: "FORBIDDEN" })).items.map((e) => e.target), ["42"]);
        assert.deepEqual((await store.audit.list({ actorId: "cli:ops" })).items.map((e) => e.action), ["key.create"]);
        assert.equal((await store.audit.list({ since: new Date(Date.now() + 60_000) })).items.length, 0);

        const page = await store.audit.list({}, 2);
        assert.equal(page.hasNextPage, true);
        const next = await store.audit.list({}, 2, page.cursors.at(-1));
        assert.deepEqual(next.items.map((e) => e.action), ["tenant.register"]);
        await assert.rejects(store.audit.list({}, 2, "forged"), isStoreError("INVALID_INPUT", "after"));
        await assert.rejects(store.audit.list({}, 0), isStoreError("INVALID_INPUT", "first"));
      });
    });

    describe("tenants by scope", () => {
      it("lists and counts only the tenants a scope covers, by id or by tag", async () => {
        await store.tenants.register({ id: ID(1), displayName: "Contoso", tags: ["eu"] });
        await store.tenants.register({ id: ID(2), displayName: "Fabrikam", tags: ["na"] });
        await store.tenants.register({ id: ID(3), displayName: "Northwind", tags: ["na", "smb"] });
        const names = async (scope: { tenantIds: string[]; tenantTags: string[] }, extra = {}) =>
          (await store.tenants.list({ scope, ...extra })).items.map((t) => t.displayName);
        assert.deepEqual(await names({ tenantIds: [ID(1)], tenantTags: [] }), ["Contoso"]);
        assert.deepEqual(await names({ tenantIds: [], tenantTags: ["na"] }), ["Fabrikam", "Northwind"]);
        assert.deepEqual(await names({ tenantIds: [ID(1)], tenantTags: ["smb"] }), ["Contoso", "Northwind"]);
        assert.deepEqual(await names({ tenantIds: [], tenantTags: [] }), [], "an empty scope matches nothing");
        assert.deepEqual(await names({ tenantIds: [], tenantTags: ["na"] }, { tags: ["smb"] }), ["Northwind"], "AND with the other filters");
        assert.equal((await store.tenants.list({ scope: { tenantIds: [], tenantTags: ["na"] } })).totalCount, 2);
        assert.equal(await store.tenants.count({ scope: { tenantIds: [ID(1)], tenantTags: ["na"] } }), 3);
        assert.equal(await store.tenants.count({ scope: { tenantIds: [ID(2)], tenantTags: [] } }), 1);
        assert.equal(await store.tenants.count(), 3);
      });
    });
  });
}
