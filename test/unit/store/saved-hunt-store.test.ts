import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { MAX_HUNT_NAME_LENGTH, MAX_HUNT_QUERY_LENGTH, MAX_HUNT_TAGS } from "../../../src/store/saved-hunt-store.js";
import type { Store } from "../../../src/store/store.js";
import { isStoreError, storeEngines } from "../../helpers/store.js";

const ADMIN = { kind: "API_KEY" as const, id: "11111111-2222-4333-8444-555555555555", name: "admin key" };
const QUERY = "AlertInfo | where Severity == 'High' | take 10";

for (const engine of storeEngines()) {
  describe(`saved hunt store on ${engine.name}`, () => {
    let store: Store;

    before(async () => {
      store = await engine.open();
    });
    after(async () => {
      await store.close();
      await engine.dispose();
    });
    beforeEach(async () => {
      await store.db.query("DELETE FROM saved_hunts");
    });

    it("saves a hunt with its creator, tags normalised, and reads it back by id", async () => {
      const { record, replaced } = await store.savedHunts.save({ name: "  High alerts ", query: QUERY, tenantTags: ["eu", "eu", " na "], createdBy: ADMIN });
      assert.equal(replaced, false);
      assert.equal(record.name, "High alerts");
      assert.equal(record.query, QUERY, "the query is kept exactly");
      assert.deepEqual(record.tenantTags, ["eu", "na"]);
      assert.deepEqual(record.createdBy, ADMIN);
      assert.ok(record.createdAt instanceof Date);
      assert.deepEqual(await store.savedHunts.get(record.id), record);
      assert.equal(await store.savedHunts.get("not-a-uuid"), undefined);
      assert.equal(await store.savedHunts.get("00000000-0000-4000-8000-000000000000"), undefined);
    });

    it("replaces the hunt of the same name (case-insensitive), keeping its id, creator and creation time", async () => {
      const first = await store.savedHunts.save({ name: "Phishing", query: QUERY, tenantTags: ["eu"], createdBy: ADMIN });
      const other = { kind: "ENTRA" as const, id: "oid-2", name: "Second admin" };
      const second = await store.savedHunts.save({ name: "PHISHING", query: "EmailEvents | take 5", createdBy: other });
      assert.equal(second.replaced, true);
      assert.equal(second.record.id, first.record.id);
      assert.equal(second.record.name, "PHISHING");
      assert.equal(second.record.query, "EmailEvents | take 5");
      assert.deepEqual(second.record.tenantTags, []);
      assert.deepEqual(second.record.createdBy, ADMIN, "the creator stays");
      assert.equal(second.record.createdAt.getTime(), first.record.createdAt.getTime());
      assert.ok(second.record.updatedAt > second.record.createdAt);
      assert.equal((await store.savedHunts.list()).totalCount, 1);
    });

    it("refuses bad names, queries and tags with INVALID_INPUT and writes nothing", async () => {
      const bad = [
        [{ name: "   " }, "name"],
        [{ name: "x".repeat(MAX_HUNT_NAME_LENGTH + 1) }, "name"],
        [{ name: "line\nbreak" }, "name"],
        [{ query: "  \n " }, "query"],
        [{ query: "x".repeat(MAX_HUNT_QUERY_LENGTH + 1) }, "query"],
        [{ tenantTags: ["has space"] }, "tenantTags"],
        [{ tenantTags: Array.from({ length: MAX_HUNT_TAGS + 1 }, (_, i) => `t${i}`) }, "tenantTags"],
      ] as const;
      for (const [patch, field] of bad) {
        await assert.rejects(store.savedHunts.save({ name: "ok", query: QUERY, createdBy: ADMIN, ...patch }), isStoreError("INVALID_INPUT", field));
      }
      assert.equal((await store.savedHunts.list()).totalCount, 0);
      // The bounds themselves are allowed.
      const edge = await store.savedHunts.save({ name: "n".repeat(MAX_HUNT_NAME_LENGTH), query: "q".repeat(MAX_HUNT_QUERY_LENGTH), createdBy: ADMIN });
      assert.equal(edge.record.query.length, MAX_HUNT_QUERY_LENGTH);
    });

    it("lists by name in pages with opaque cursors, and refuses a forged cursor", async () => {
      for (const name of ["delta", "Alpha", "charlie", "Bravo", "echo"]) await store.savedHunts.save({ name, query: QUERY, createdBy: ADMIN });
      const first = await store.savedHunts.list(2);
      assert.deepEqual(first.items.map((h) => h.name), ["Alpha", "Bravo"]);
      assert.equal(first.hasNextPage, true);
      assert.equal(first.totalCount, 5);
      const second = await store.savedHunts.list(2, first.cursors.at(-1));
      assert.deepEqual(second.items.map((h) => h.name), ["charlie", "delta"]);
      const last = await store.savedHunts.list(2, second.cursors.at(-1));
      assert.deepEqual(last.items.map((h) => h.name), ["echo"]);
      assert.equal(last.hasNextPage, false);
      await assert.rejects(store.savedHunts.list(2, "bm9wZQ"), isStoreError("INVALID_INPUT", "after"));
      await assert.rejects(store.savedHunts.list(0), isStoreError("INVALID_INPUT", "first"));
    });

    it("deletes a hunt and answers NOT_FOUND the second time", async () => {
      const { record } = await store.savedHunts.save({ name: "Gone soon", query: QUERY, createdBy: ADMIN });
      const removed = await store.savedHunts.remove(record.id);
      assert.equal(removed.name, "Gone soon");
      assert.equal(await store.savedHunts.get(record.id), undefined);
      await assert.rejects(store.savedHunts.remove(record.id), isStoreError("NOT_FOUND", "id"));
      await assert.rejects(store.savedHunts.remove("'; DROP TABLE saved_hunts; --"), isStoreError("NOT_FOUND", "id"));
    });

    it("keeps saved hunts across a restart", async () => {
      const { record } = await store.savedHunts.save({ name: "Durable hunt", query: QUERY, tenantTags: ["eu"], createdBy: ADMIN });
      await store.close();
      store = await engine.reopen();
      assert.deepEqual(await store.savedHunts.get(record.id), record);
    });
  });
}
