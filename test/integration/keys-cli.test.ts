import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { createApp } from "../../src/app.js";
import { ConfigError, loadConfig } from "../../src/config.js";
import { API_KEY_PATTERN } from "../../src/store/api-key-store.js";
import { openStore } from "../../src/store/store.js";

const run = promisify(execFile);

/**
 * `npm run keys` as an operator runs it, against an embedded data directory, and the production start-up
 * rule it exists for: with an Azure app configured and no Entra caller settings, the server starts only
 * once an active key exists.
 */
describe("keys CLI and production start-up", () => {
  let dir: string;
  const keys = async (...args: string[]) => {
    try {
      const { stdout, stderr } = await run(process.execPath, ["--import", "tsx", "scripts/keys.ts", ...args], {
        env: { ...process.env, DATA_DIR: dir, DATABASE_URL: "", LOG_LEVEL: "silent" },
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };
  const production = () =>
    loadConfig({
      PORT: "0",
      LOG_LEVEL: "silent",
      DATA_DIR: dir,
      AZURE_CLIENT_ID: "00001111-aaaa-2222-bbbb-3333cccc4444",
      AZURE_CLIENT_SECRET: "not-used-before-a-request",
    });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "crosswatch-keys-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses to start in production without caller authentication", async () => {
    await assert.rejects(createApp(production()), (error: unknown) => error instanceof ConfigError && /caller authentication/.test(error.message));
  });

  it("creates a key shown once, lists it without its secret, revokes it", async () => {
    const created = await keys("create", "--name", "bootstrap admin", "--role", "ADMIN", "--all-tenants", "--expires-days", "30");
    assert.equal(created.code, 0, created.stderr);
    const key = created.stdout.match(new RegExp(API_KEY_PATTERN.source))?.[0];
    assert.ok(key, "the key is printed");
    assert.match(created.stdout, /only time the key is shown/);
    const id = /created API key ([0-9a-f-]{36})/.exec(created.stdout)![1]!;

    const listed = await keys("list");
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`${id}\\tcwk_[a-z0-9]{12}_…\\tbootstrap admin\\tADMIN\\tall tenants\\tactive`));
    assert.ok(!listed.stdout.includes(key.slice(17)), "no secret in the listing");

    // With an active key the production server starts (and closes) on the same store.
    const app = await createApp(production());
    await app.close();

    const revoked = await keys("revoke", id);
    assert.equal(revoked.code, 0, revoked.stderr);
    const store = await openStore({ dataDir: dir });
    try {
      assert.deepEqual(await store.apiKeys.verify(key), { ok: false, reason: "REVOKED" });
      const audit = await store.audit.list({}, 10);
      assert.deepEqual(audit.items.map((e) => [e.action, e.actor.kind, e.outcome]), [
        ["key.revoke", "CLI", "SUCCESS"],
        ["key.create", "CLI", "SUCCESS"],
      ]);
      assert.ok(!JSON.stringify(audit.items).includes(key.slice(17)), "no key in the audit log");
    } finally {
      await store.close();
    }
    await assert.rejects(createApp(production()), ConfigError, "no active key left: refused again");
  });

  it("answers bad arguments with exit code 2 and the usage", async () => {
    for (const args of [[], ["frob"], ["create", "--name", "x"], ["create", "--name", "x", "--role", "ROOT", "--all-tenants"], ["create", "--name", "x", "--role", "READER"], ["create", "--bogus"], ["revoke"]]) {
      const result = await keys(...args);
      assert.equal(result.code, 2, args.join(" "));
      assert.match(result.stderr, /usage:/);
    }
    const unknown = await keys("revoke", "00000000-0000-4000-8000-000000000000");
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no API key/);
    assert.doesNotMatch(unknown.stderr, /\n\s+at /, "no stack trace");
  });
});
