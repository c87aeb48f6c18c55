import { PGlite } from "@electric-sql/pglite";
import pg from "pg";

/** The little SQL surface the store needs, the same on embedded PGlite and on PostgreSQL. */
export interface SqlExecutor {
  query<Row extends object = Record<string, unknown>>(text: string, params?: unknown[]): Promise<Row[]>;
}

export interface SqlClient extends SqlExecutor {
  /** Runs `work` in one transaction; rolls back if it throws, so a failed write changes nothing. */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Whether the database answers (readiness). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
  readonly engine: "pglite" | "postgres";
}

/**
 * Embedded PostgreSQL (PGlite, WASM) in a data directory, or in memory when `dataDir` is undefined.
 * One connection, so statements are serialised by PGlite itself; opening a fresh directory runs initdb
 * (a few seconds), reopening one takes under a second.
 */
export async function openPglite(dataDir: string | undefined): Promise<SqlClient> {
  const db = dataDir ? new PGlite(dataDir) : new PGlite();
  await db.waitReady;
  const executor = (runner: Pick<PGlite, "query">): SqlExecutor => ({
    async query<Row extends object>(text: string, params: unknown[] = []) {
      return (await runner.query<Row>(text, params)).rows;
    },
  });
  return {
    engine: "pglite",
    ...executor(db),
    transaction: (work) => db.transaction((tx) => work(executor(tx))),
    async ping() {
      try {
        await db.query("select 1");
        return true;
      } catch {
        return false;
      }
    },
    close: () => db.close(),
  };
}

/** PostgreSQL through a `pg` pool (DATABASE_URL). Transactions check out one client for their duration. */
export async function openPostgres(connectionString: string, poolSize = 10): Promise<SqlClient> {
  const pool = new pg.Pool({ connectionString, max: poolSize, connectionTimeoutMillis: 5_000 });
  // A broken idle client must not crash the process; the pool replaces it on next use.
  pool.on("error", () => undefined);
  const client = await pool.connect();
  client.release();
  return {
    engine: "postgres",
    async query<Row extends object>(text: string, params: unknown[] = []) {
      return (await pool.query<Row & pg.QueryResultRow>(text, params)).rows;
    },
    async transaction(work) {
      const conn = await pool.connect();
      try {
        await conn.query("BEGIN");
        const result = await work({
          async query<Row extends object>(text: string, params: unknown[] = []) {
            return (await conn.query<Row & pg.QueryResultRow>(text, params)).rows;
          },
        });
        await conn.query("COMMIT");
        return result;
      } catch (error) {
        await conn.query("ROLLBACK").catch(() => undefined);
        throw error;
      } finally {
        conn.release();
      }
    },
    async ping() {
      try {
        await pool.query("select 1");
        return true;
      } catch {
        return false;
      }
    },
    close: () => pool.end(),
  };
}
