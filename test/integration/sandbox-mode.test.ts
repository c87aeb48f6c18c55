import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { createApp } from "../../src/app.js";
import { ConfigError, loadConfig } from "../../src/config.js";
import { startRuntime } from "../../src/runtime.js";
import { openStore, type StoreOptions } from "../../src/store/store.js";
import { postGraphQL } from "../helpers/graphql.js";

const SECRET = "Zq8Q~production-secret-456";
const REAL_TENANT = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const PARTNER = "11112222-3333-4444-5555-666677778888";

/** What an operator's environment holds, minus the Azure app when `azure` is false (a secret that did not load). */
const env = (store: Record<string, string>, azure: boolean, extra: Record<string, string> = {}) =>
  loadConfig({
    PORT: "0",
    LOG_LEVEL: "silent",
    SANDBOX_TENANTS: "3",
    ...store,
    ...(azure
      ? {
          AZURE_CLIENT_ID: "00001111-aaaa-2222-bbbb-3333cccc4444",
          AZURE_CLIENT_SECRET: SECRET,
          AUTH_ENTRA_AUDIENCE: "api://crosswatch",
          AUTH_ENTRA_TENANTS: PARTNER,
        }
      : {}),
    ...extra,
  });

/** A ConfigError matching `pattern`, naming no secret and no connection string. */
const refused = (pattern: RegExp, ...unsaid: string[]) => (error: unknown) => {
  assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
  assert.match(error.message, pattern);
  for (const value of [SECRET, ...unsaid]) assert.ok(!error.message.includes(value), "no value echoed");
  return true;
};

/** Tenants and recorded mode of a store, read after every server on it has closed. */
async function inspect(options: StoreOptions) {
  const store = await openStore(options);
  try {
    const tenants = await store.tenants.list({}, 100);
    return { ids: tenants.items.map((t) => t.id).sort(), mode: (await store.deployment.get())?.mode };
  } finally {
    await store.close();
  }
}

/**
 * Sandbox mode is chosen, never fallen into (issue 12, item 5): with AZURE_CLIENT_ID missing, a store that has
 * run in Azure mode, or an external database without SANDBOX=true, stops the start before any sandbox tenant is
 * registered or any port is opened; a sandbox store keeps working across restarts and never serves Azure.
 */
describe("sandbox mode on embedded storage (DATA_DIR)", () => {
  let production: string;
  let sandboxDir: string;

  let root: string;

  before(async () => {
    // One PGlite initdb (seconds), copied: each copy is a new, empty store in a directory of its own.
    root = await mkdtemp(join(tmpdir(), "crosswatch-mode-"));
    const template = join(root, "template");
    await (await openStore({ dataDir: template })).close();
    production = join(root, "production");
    sandboxDir = join(root, "sandbox");
    await cp(template, production, { recursive: true });
    await cp(template, sandboxDir, { recursive: true });
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("refuses the sandbox on a store that has run in Azure mode, and seeds nothing into it", async () => {
    const app = await createApp(env({ DATA_DIR: production }, true));
    await app.store.tenants.register({ id: REAL_TENANT, displayName: "Real customer" });
    await app.close();

    // AZURE_CLIENT_ID did not load: the same store, now in sandbox mode. (SANDBOX=true is refused the same
    // way: see the DATABASE_URL case below and test/unit/store/deployment.test.ts.)
    await assert.rejects(startRuntime(env({ DATA_DIR: production }, false)), refused(/AZURE_CLIENT_ID is unset, but the store .* has run in Azure mode/));
    assert.deepEqual(await inspect({ dataDir: production }), { ids: [REAL_TENANT], mode: "azure" });
  });

  it("keeps a sandbox store working across restarts, and never opens it in Azure mode", async () => {
    const first = await startRuntime(env({ DATA_DIR: sandboxDir }, false));
    const seeded = first.sandbox!.tenants.map((t) => t.id).sort();
    const renamed = seeded[0]!;
    const rename = await postGraphQL(first.url, `mutation { updateTenant(id: "${renamed}", input: { displayName: "Renamed" }) { displayName } }`);
    assert.equal(rename.body.data?.updateTenant.displayName, "Renamed", JSON.stringify(rename.body.errors));
    await first.close();

    const second = await startRuntime(env({ DATA_DIR: sandboxDir }, false));
    const listed = await postGraphQL(second.url, `{ tenant(id: "${renamed}") { displayName } tenants { totalCount } }`);
    assert.equal(listed.body.data?.tenant.displayName, "Renamed", "what a user changed survives the restart");
    assert.equal(listed.body.data?.tenants.totalCount, seeded.length);
    await second.close();

    await assert.rejects(createApp(env({ DATA_DIR: sandboxDir }, true)), refused(/has run in sandbox mode since .*store of its own/));
    assert.deepEqual(await inspect({ dataDir: sandboxDir }), { ids: seeded, mode: "sandbox" });
  });
});

const DATABASE_URL = process.env.TEST_DATABASE_URL;

describe("sandbox mode on DATABASE_URL", { skip: DATABASE_URL ? false : "needs TEST_DATABASE_URL (set by .ci/run)" }, () => {
  const schemas: string[] = [];
  /** A connection string to a schema of its own on the test PostgreSQL. */
  const freshDatabase = async () => {
    const schema = `cw_mode_${randomBytes(5).toString("hex")}`;
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    await admin.end();
    schemas.push(schema);
    const url = new URL(DATABASE_URL!);
    url.searchParams.set("options", `-c search_path=${schema}`);
    return url.toString();
  };

  after(async () => {
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  });

  it("refuses the sandbox on an external database unless SANDBOX=true, and then starts it", async () => {
    const databaseUrl = await freshDatabase();
    await assert.rejects(startRuntime(env({ DATABASE_URL: databaseUrl }, false)), refused(/DATABASE_URL is set but AZURE_CLIENT_ID is not.*SANDBOX=true/, databaseUrl));
    // Refused before the sandbox started or anything touched the database: not even the migrations ran.
    const admin = new pg.Client({ connectionString: databaseUrl });
    await admin.connect();
    const tables = await admin.query("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()");
    await admin.end();
    assert.equal(tables.rowCount, 0);

    const runtime = await startRuntime(env({ DATABASE_URL: databaseUrl }, false, { SANDBOX: "true" }));
    const seeded = runtime.sandbox!.tenants.map((t) => t.id).sort();
    const result = await postGraphQL(runtime.url, "{ tenants { totalCount } }");
    assert.equal(result.body.data?.tenants.totalCount, seeded.length);
    await runtime.close();
    assert.deepEqual(await inspect({ databaseUrl }), { ids: seeded, mode: "sandbox" });
  });

  it("never seeds sandbox tenants into a database that holds production tenants, even with SANDBOX=true", async () => {
    const databaseUrl = await freshDatabase();
    const app = await createApp(env({ DATABASE_URL: databaseUrl }, true));
    await app.store.tenants.register({ id: REAL_TENANT, displayName: "Real customer" });
    await app.close();

    await assert.rejects(startRuntime(env({ DATABASE_URL: databaseUrl }, false, { SANDBOX: "true" })), refused(/has run in Azure mode/, databaseUrl));
    assert.deepEqual(await inspect({ databaseUrl }), { ids: [REAL_TENANT], mode: "azure" });
  });
});
