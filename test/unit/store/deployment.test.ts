import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { ConfigError, loadConfig } from "../../../src/config.js";
import { enterDeploymentMode } from "../../../src/deployment-mode.js";
import type { Store } from "../../../src/store/store.js";
import { storeEngines } from "../../helpers/store.js";

const TENANT = "00000001-aaaa-4bbb-8ccc-dddddddddddd";
const SECRET = "Zq8Q~azure-secret-value-789";
const azure = loadConfig({ AZURE_CLIENT_ID: "00001111-aaaa-2222-bbbb-3333cccc4444", AZURE_CLIENT_SECRET: SECRET });
const sandbox = loadConfig({});
const chosenSandbox = loadConfig({ SANDBOX: "true" });

/** The ConfigError check: message matches, and names no secret. */
const refused = (pattern: RegExp) => (error: unknown) => {
  assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
  assert.match(error.message, pattern);
  assert.ok(!error.message.includes(SECRET));
  return true;
};

for (const engine of storeEngines()) {
  describe(`deployment mode on ${engine.name}`, () => {
    let store: Store;

    before(async () => {
      store = await engine.open();
    });
    after(async () => {
      await store.close();
      await engine.dispose();
    });
    beforeEach(async () => {
      await store.db.query("DELETE FROM deployment");
      await store.db.query("DELETE FROM tenants");
      await store.db.query("DELETE FROM api_keys");
    });

    it("records the first mode of an empty store, once, with the time it was first seen", async () => {
      assert.equal(await store.deployment.get(), undefined);
      const first = await store.deployment.enter("azure", { adopt: false });
      assert.equal(first.kind, "recorded");
      const record = await store.deployment.get();
      assert.equal(record?.mode, "azure");
      assert.ok(record!.firstSeenAt instanceof Date && !Number.isNaN(record!.firstSeenAt.getTime()));
      assert.deepEqual(await store.deployment.enter("azure", { adopt: false }), { kind: "same", record });
      // Once azure, always azure: adopting does not change a recorded mode.
      assert.deepEqual(await store.deployment.enter("sandbox", { adopt: true }), { kind: "other-mode", record });
      assert.equal((await store.deployment.get())?.mode, "azure");
      // One row, whatever is tried.
      await assert.rejects(store.db.query("INSERT INTO deployment (singleton, mode) VALUES (false, 'sandbox')"));
      assert.equal((await store.db.query("SELECT 1 FROM deployment")).length, 1);
    });

    it("records nothing for the sandbox on a store holding tenants or keys but no mode, unless adopted", async () => {
      await store.tenants.register({ id: TENANT, displayName: "Real customer" });
      assert.deepEqual(await store.deployment.enter("sandbox", { adopt: false }), { kind: "unrecorded-data" });
      assert.equal(await store.deployment.get(), undefined);
      await store.db.query("DELETE FROM tenants");
      await store.apiKeys.create({ name: "ops", role: "ADMIN", scope: { allTenants: true, tenantIds: [], tenantTags: [] }, createdBy: "test" });
      assert.deepEqual(await store.deployment.enter("sandbox", { adopt: false }), { kind: "unrecorded-data" });
      assert.equal((await store.deployment.enter("sandbox", { adopt: true })).kind, "recorded");
      assert.equal((await store.deployment.get())?.mode, "sandbox");
    });

    it("records one mode when two replicas enter together", async () => {
      const entries = await Promise.all([store.deployment.enter("azure", { adopt: true }), store.deployment.enter("azure", { adopt: true })]);
      assert.deepEqual(entries.map((e) => e.kind).sort(), ["recorded", "same"]);
    });

    describe("enterDeploymentMode", () => {
      it("refuses the sandbox on a store that has run in Azure mode, even with SANDBOX=true", async () => {
        await enterDeploymentMode(azure, store.deployment);
        await assert.rejects(enterDeploymentMode(sandbox, store.deployment), refused(/AZURE_CLIENT_ID is unset, but the store .* has run in Azure mode since \d{4}-\d\d-\d\d/));
        await assert.rejects(enterDeploymentMode(chosenSandbox, store.deployment), refused(/has run in Azure mode/));
        assert.equal((await store.deployment.get())?.mode, "azure");
      });

      it("refuses Azure mode on a sandbox store: its keys may have been made by anonymous callers", async () => {
        await enterDeploymentMode(sandbox, store.deployment);
        await enterDeploymentMode(sandbox, store.deployment);
        await assert.rejects(enterDeploymentMode(azure, store.deployment), refused(/has run in sandbox mode since .*store of its own/));
      });

      it("opens a store holding data but no mode to Azure, and to the sandbox only with SANDBOX=true", async () => {
        await store.tenants.register({ id: TENANT, displayName: "Real customer" });
        await assert.rejects(enterDeploymentMode(sandbox, store.deployment), refused(/holds tenants or API keys but no recorded mode.*SANDBOX=true/));
        assert.equal(await store.deployment.get(), undefined);
        await enterDeploymentMode(chosenSandbox, store.deployment);
        assert.equal((await store.deployment.get())?.mode, "sandbox");
        await store.db.query("DELETE FROM deployment");
        await enterDeploymentMode(azure, store.deployment);
        assert.equal((await store.deployment.get())?.mode, "azure");
      });

      it("refuses a hand-built sandbox config on DATABASE_URL without SANDBOX=true, recording nothing", async () => {
        const onPostgres = { ...sandbox, store: { ...sandbox.store, databaseUrl: "postgres://127.0.0.1:1/none" } };
        await assert.rejects(enterDeploymentMode(onPostgres, store.deployment), refused(/DATABASE_URL is set .*SANDBOX=true/));
        assert.equal(await store.deployment.get(), undefined);
      });
    });
  });
}
