import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import type { Store } from "../../../src/store/store.js";
import { isStoreError, storeEngines } from "../../helpers/store.js";

const ID = (n: number) => `${String(n).padStart(8, "0")}-aaaa-4bbb-8ccc-dddddddddddd`;

for (const engine of storeEngines()) {
  describe(`tenant store on ${engine.name}`, () => {
    let store: Store;

    before(async () => {
      store = await engine.open();
    });
    after(async () => {
      await store.close();
      await engine.dispose();
    });
    beforeEach(async () => {
      await store.db.query("DELETE FROM tenants");
    });

    it("registers a tenant, normalising its id, name and tags", async () => {
      const created = await store.tenants.register({
        id: ID(1).toUpperCase(),
        displayName: "  Contoso Ltd ",
        tags: ["eu", "enterprise", "eu"],
      });
      assert.equal(created.id, ID(1));
      assert.equal(created.displayName, "Contoso Ltd");
      assert.deepEqual(created.tags, ["eu", "enterprise"]);
      assert.equal(created.consentState, "PENDING");
      assert.equal(created.backend, null);
      assert.ok(created.createdAt instanceof Date);
      assert.deepEqual(await store.tenants.get(ID(1)), created);
    });

    it("refuses malformed ids, names and tags with INVALID_INPUT", async () => {
      await assert.rejects(store.tenants.register({ id: "contoso.onmicrosoft.com", displayName: "x" }), isStoreError("INVALID_INPUT", "id"));
      await assert.rejects(store.tenants.register({ id: ID(2), displayName: "   " }), isStoreError("INVALID_INPUT", "displayName"));
      await assert.rejects(store.tenants.register({ id: ID(2), displayName: "x".repeat(257) }), isStoreError("INVALID_INPUT", "displayName"));
      await assert.rejects(store.tenants.register({ id: ID(2), displayName: "ok", tags: ["has space"] }), isStoreError("INVALID_INPUT", "tags"));
      await assert.rejects(store.tenants.get("'; DROP TABLE tenants; --"), isStoreError("INVALID_INPUT", "id"));
      assert.equal((await store.tenants.list()).totalCount, 0);
    });

    it("refuses a duplicate with ALREADY_EXISTS and keeps the original", async () => {
      await store.tenants.register({ id: ID(3), displayName: "Original" });
      await assert.rejects(store.tenants.register({ id: ID(3), displayName: "Impostor" }), isStoreError("ALREADY_EXISTS"));
      assert.equal((await store.tenants.get(ID(3)))?.displayName, "Original");
    });

    it("updates only the given fields and answers NOT_FOUND for unknown tenants", async () => {
      await store.tenants.register({ id: ID(4), displayName: "Fabrikam", tags: ["na"] });
      const updated = await store.tenants.update(ID(4), { backend: "graph" });
      assert.equal(updated.backend, "graph");
      assert.equal(updated.displayName, "Fabrikam");
      assert.deepEqual(updated.tags, ["na"]);
      assert.ok(updated.updatedAt >= updated.createdAt);
      const cleared = await store.tenants.update(ID(4), { backend: null, tags: [] });
      assert.equal(cleared.backend, null);
      assert.deepEqual(cleared.tags, []);
      await assert.rejects(store.tenants.update(ID(5), { displayName: "x" }), isStoreError("NOT_FOUND"));
    });

    it("keeps a hunting backend override apart from the incidents backend, and clears it with null", async () => {
      const created = await store.tenants.register({ id: ID(60), displayName: "Hunter", huntingBackend: "defender" });
      assert.equal(created.huntingBackend, "defender");
      assert.equal(created.backend, null);
      const graph = await store.tenants.update(ID(60), { huntingBackend: "graph", backend: "defender" });
      assert.equal(graph.huntingBackend, "graph");
      assert.equal(graph.backend, "defender");
      const untouched = await store.tenants.update(ID(60), { displayName: "Renamed" });
      assert.equal(untouched.huntingBackend, "graph", "a patch without huntingBackend keeps it");
      const cleared = await store.tenants.update(ID(60), { huntingBackend: null });
      assert.equal(cleared.huntingBackend, null);
      assert.equal(cleared.backend, "defender");
      await assert.rejects(store.tenants.update(ID(60), { huntingBackend: "splunk" as never }), isStoreError("INVALID_INPUT", "huntingBackend"));
      assert.equal((await store.tenants.get(ID(60)))?.huntingBackend, null);
      assert.equal((await store.tenants.registerMissing([{ id: ID(61), displayName: "Seeded", huntingBackend: "defender" }])), 1);
      assert.equal((await store.tenants.get(ID(61)))?.huntingBackend, "defender");
    });

    it("a failed update changes nothing", async () => {
      await store.tenants.register({ id: ID(6), displayName: "Northwind", tags: ["smb"] });
      await assert.rejects(store.tenants.update(ID(6), { displayName: "Renamed", tags: ["bad tag!"] }), isStoreError("INVALID_INPUT"));
      const kept = await store.tenants.get(ID(6));
      assert.equal(kept?.displayName, "Northwind");
      assert.deepEqual(kept?.tags, ["smb"]);
    });

    it("removes tenants and answers NOT_FOUND the second time", async () => {
      await store.tenants.register({ id: ID(7), displayName: "Litware" });
      await store.tenants.remove(ID(7));
      assert.equal(await store.tenants.get(ID(7)), undefined);
      await assert.rejects(store.tenants.remove(ID(7)), isStoreError("NOT_FOUND"));
    });

    it("pages by name then id with opaque cursors, filters by tags, consent state and search", async () => {
      const names = ["delta", "Alpha", "charlie", "bravo", "echo", "Alpha"];
      for (const [i, name] of names.entries()) {
        await store.tenants.register({ id: ID(10 + i), displayName: name, tags: i % 2 === 0 ? ["even"] : ["odd"] });
      }
      const seen: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await store.tenants.list({}, 2, after);
        assert.equal(page.totalCount, 6);
        seen.push(...page.items.map((t) => `${t.displayName}/${t.id.slice(0, 8)}`));
        if (!page.hasNextPage) break;
        after = page.cursors.at(-1);
      }
      assert.deepEqual(seen, [
        `Alpha/${ID(11).slice(0, 8)}`,
        `Alpha/${ID(15).slice(0, 8)}`,
        `bravo/${ID(13).slice(0, 8)}`,
        `charlie/${ID(12).slice(0, 8)}`,
        `delta/${ID(10).slice(0, 8)}`,
        `echo/${ID(14).slice(0, 8)}`,
      ]);
      const odd = await store.tenants.list({ tags: ["odd"] }, 10);
      assert.deepEqual(odd.items.map((t) => t.displayName), ["Alpha", "Alpha", "bravo"]);
      assert.equal(odd.totalCount, 3);
      const search = await store.tenants.list({ search: "HAR" }, 10);
      assert.deepEqual(search.items.map((t) => t.displayName), ["charlie"]);
      const byIdPrefix = await store.tenants.list({ search: ID(14).slice(0, 8) }, 10);
      assert.deepEqual(byIdPrefix.items.map((t) => t.id), [ID(14)]);
      const likeChars = await store.tenants.list({ search: "%" }, 10);
      assert.equal(likeChars.totalCount, 0);
      await store.tenants.recordConsent(ID(10), "GRANTED");
      const granted = await store.tenants.list({ consentState: ["GRANTED"] }, 10);
      assert.deepEqual(granted.items.map((t) => t.id), [ID(10)]);
    });

    it("refuses forged cursors and page sizes out of range", async () => {
      await assert.rejects(store.tenants.list({}, 10, "not-a-cursor"), isStoreError("INVALID_INPUT", "after"));
      const forged = Buffer.from(JSON.stringify(["t1", "x", "1 OR 1=1"])).toString("base64url");
      await assert.rejects(store.tenants.list({}, 10, forged), isStoreError("INVALID_INPUT", "after"));
      await assert.rejects(store.tenants.list({}, 501), isStoreError("INVALID_INPUT", "first"));
      await assert.rejects(store.tenants.list({}, -1), isStoreError("INVALID_INPUT", "first"));
    });

    it("records consent: GRANTED registers a new tenant, DENIED keeps the error, unknown DENIED is NOT_FOUND", async () => {
      const granted = await store.tenants.recordConsent(ID(20), "GRANTED");
      assert.equal(granted.consentState, "GRANTED");
      assert.ok(granted.consentedAt instanceof Date);
      assert.equal(granted.displayName, `Tenant ${ID(20)}`);
      await store.tenants.register({ id: ID(21), displayName: "Trey" });
      const denied = await store.tenants.recordConsent(ID(21), "DENIED", { error: "access_denied: AADSTS65004" });
      assert.equal(denied.consentState, "DENIED");
      assert.equal(denied.consentError, "access_denied: AADSTS65004");
      assert.equal(denied.consentedAt, null);
      await assert.rejects(store.tenants.recordConsent(ID(22), "DENIED"), isStoreError("NOT_FOUND"));
      assert.equal(await store.tenants.get(ID(22)), undefined);
    });

    it("records token outcomes", async () => {
      await store.tenants.register({ id: ID(30), displayName: "Woodgrove" });
      await store.tenants.recordTokenOutcome(ID(30), { ok: false, code: "CONSENT_REQUIRED" });
      let t = await store.tenants.get(ID(30));
      assert.equal(t?.lastFailureCode, "CONSENT_REQUIRED");
      assert.ok(t?.lastFailureAt instanceof Date);
      await store.tenants.recordTokenOutcome(ID(30), { ok: true });
      t = await store.tenants.get(ID(30));
      assert.ok(t?.lastTokenSuccessAt instanceof Date);
      assert.equal(t?.lastFailureCode, null, "a success clears the failure code");
      assert.ok(t?.lastFailureAt instanceof Date, "and keeps when it last failed");
    });

    it("records outcomes with consent drift: GRANTED → REVOKED on lost consent, back on success; a clean success writes nothing", async () => {
      await store.tenants.register({ id: ID(31), displayName: "Drift", consentState: "GRANTED" });
      const clean = await store.tenants.recordOutcome(ID(31), { ok: true });
      assert.deepEqual(clean, { changed: false });
      const role = await store.tenants.recordOutcome(ID(31), { ok: false, code: "MISSING_ROLE" });
      assert.deepEqual(role, { changed: true });
      assert.equal((await store.tenants.get(ID(31)))?.consentState, "GRANTED");
      const lost = await store.tenants.recordOutcome(ID(31), { ok: false, code: "CONSENT_REQUIRED", consentLost: true });
      assert.deepEqual(lost, { changed: true, consent: "REVOKED" });
      const again = await store.tenants.recordOutcome(ID(31), { ok: false, code: "CONSENT_REQUIRED", consentLost: true });
      assert.deepEqual(again, { changed: true }, "revoked once");
      let t = await store.tenants.get(ID(31));
      assert.equal(t?.consentState, "REVOKED");
      assert.equal(t?.lastFailureCode, "CONSENT_REQUIRED");
      const back = await store.tenants.recordOutcome(ID(31), { ok: true });
      assert.deepEqual(back, { changed: true, consent: "GRANTED" });
      t = await store.tenants.get(ID(31));
      assert.equal(t?.consentState, "GRANTED");
      assert.equal(t?.consentError, null);
      assert.equal(t?.lastFailureCode, null);
      assert.deepEqual(await store.tenants.recordOutcome(ID(99), { ok: false, code: "THROTTLED" }), { changed: false }, "unknown tenant: no error");
    });

    it("registers missing tenants only, loads many at once", async () => {
      await store.tenants.register({ id: ID(40), displayName: "Kept name" });
      const added = await store.tenants.registerMissing([
        { id: ID(40), displayName: "Other name" },
        { id: ID(41), displayName: "New", tags: ["generated"] },
      ]);
      assert.equal(added, 1);
      const many = await store.tenants.getMany([ID(40), ID(41), ID(42)]);
      assert.equal(many.size, 2);
      assert.equal(many.get(ID(40))?.displayName, "Kept name");
    });

    it("keeps every tenant across a restart", async () => {
      await store.tenants.register({ id: ID(50), displayName: "Durable", tags: ["x"] });
      await store.tenants.recordConsent(ID(50), "GRANTED");
      await store.close();
      store = await engine.reopen();
      const kept = await store.tenants.get(ID(50));
      assert.equal(kept?.displayName, "Durable");
      assert.equal(kept?.consentState, "GRANTED");
      const migrations = await store.db.query<{ version: number }>("SELECT version FROM schema_migrations");
      assert.deepEqual(migrations.map((m) => m.version).sort(), [1, 2, 3, 4, 5, 6]);
    });
  });
}
