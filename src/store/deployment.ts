import type { SqlClient, SqlExecutor } from "./sql.js";

export type DeploymentMode = "sandbox" | "azure";

/** The mode a store was first opened in by a server, and when. Written once, never changed. */
export interface DeploymentRecord {
  mode: DeploymentMode;
  firstSeenAt: Date;
}

/**
 * What opening the store in a mode found:
 * - `recorded`: the store had no mode and now has this one (a new store, or one `adopt` allowed);
 * - `same`: the store was already recorded in this mode;
 * - `other-mode`: the store belongs to the other mode: refuse;
 * - `unrecorded-data`: no mode recorded, but tenants or API keys exist (a store from before modes were
 *   recorded, or one filled by a tool): nothing says it is not production, and `adopt` was not given.
 */
export type DeploymentEntry =
  | { kind: "recorded"; record: DeploymentRecord }
  | { kind: "same"; record: DeploymentRecord }
  | { kind: "other-mode"; record: DeploymentRecord }
  | { kind: "unrecorded-data" };

/** Arbitrary constant naming the lock under which replicas starting together record the mode once. */
const DEPLOYMENT_LOCK = 0x43_57_02;

/**
 * The store's one-row record of whether it serves the sandbox or Azure. A store never changes mode: the
 * sandbox makes anonymous callers admins and registers emulated tenants, so a sandbox store's keys and
 * tenants must never reach production, and a production store must never be opened to anonymous admins.
 */
export class DeploymentStore {
  constructor(private readonly db: SqlClient) {}

  async get(): Promise<DeploymentRecord | undefined> {
    return read(this.db);
  }

  /**
   * Opens the store in `mode`: records it when none is recorded and the store is empty (or `adopt` says a
   * store holding data but no mode may take this one), and says what it found. Serialised across replicas.
   */
  async enter(mode: DeploymentMode, options: { adopt: boolean }): Promise<DeploymentEntry> {
    return this.db.transaction(async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock($1)", [DEPLOYMENT_LOCK]);
      const record = await read(tx);
      if (record) return { kind: record.mode === mode ? "same" : "other-mode", record };
      if (!options.adopt) {
        const [held] = await tx.query<{ held: boolean }>(
          "SELECT EXISTS (SELECT 1 FROM tenants) OR EXISTS (SELECT 1 FROM api_keys) AS held",
        );
        if (held?.held) return { kind: "unrecorded-data" };
      }
      await tx.query("INSERT INTO deployment (singleton, mode) VALUES (true, $1)", [mode]);
      return { kind: "recorded", record: (await read(tx))! };
    });
  }
}

async function read(db: SqlExecutor): Promise<DeploymentRecord | undefined> {
  const [row] = await db.query<{ mode: DeploymentMode; first_seen_at: Date | string }>(
    "SELECT mode, first_seen_at FROM deployment WHERE singleton",
  );
  return row ? { mode: row.mode, firstSeenAt: new Date(row.first_seen_at) } : undefined;
}
