import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { StoreError } from "../../src/store/errors.js";
import { openStore, type Store } from "../../src/store/store.js";

export interface TestStoreEngine {
  name: "pglite" | "postgres";
  /** Opens a store; for PostgreSQL in a schema of its own so parallel test files never meet. */
  open(): Promise<Store>;
  /** Opens the same database again (a restart), then `dispose()` drops what `open` created. */
  reopen(): Promise<Store>;
  dispose(): Promise<void>;
}

/** PGlite in a temporary directory always; PostgreSQL too when TEST_DATABASE_URL is set. */
export function storeEngines(): TestStoreEngine[] {
  const engines: TestStoreEngine[] = [pgliteEngine()];
  const url = process.env.TEST_DATABASE_URL;
  if (url) engines.push(postgresEngine(url));
  return engines;
}

function pgliteEngine(): TestStoreEngine {
  let dir: string | undefined;
  return {
    name: "pglite",
    async open() {
      const { mkdtemp } = await import("node:fs/promises");
      const { tmpdir } = await import("node:os");
      const { join } = await import("node:path");
      dir = await mkdtemp(join(tmpdir(), "crosswatch-store-"));
      return openStore({ dataDir: dir });
    },
    async reopen() {
      return openStore({ dataDir: dir });
    },
    async dispose() {
      if (!dir) return;
      const { rm } = await import("node:fs/promises");
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function postgresEngine(baseUrl: string): TestStoreEngine {
  const schema = `cw_test_${randomBytes(6).toString("hex")}`;
  const withSchema = () => {
    const url = new URL(baseUrl);
    url.searchParams.set("options", `-c search_path=${schema}`);
    return url.toString();
  };
  return {
    name: "postgres",
    async open() {
      const admin = new pg.Client({ connectionString: baseUrl });
      await admin.connect();
      await admin.query(`CREATE SCHEMA ${schema}`);
      await admin.end();
      return openStore({ databaseUrl: withSchema() });
    },
    async reopen() {
      return openStore({ databaseUrl: withSchema() });
    },
    async dispose() {
      const admin = new pg.Client({ connectionString: baseUrl });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.end();
    },
  };
}

/** An `assert.rejects` check: a StoreError with this code (and field, when given). */
export function isStoreError(code: string, field?: string) {
  return (error: unknown) => {
    assert.ok(error instanceof StoreError, `expected StoreError, got ${String(error)}`);
    assert.equal(error.code, code);
    if (field) assert.equal(error.details.field, field);
    return true;
  };
}
