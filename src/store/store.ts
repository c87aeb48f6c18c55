import { mkdir } from "node:fs/promises";
import { migrate } from "./migrations.js";
import { openPglite, openPostgres, type SqlClient } from "./sql.js";
import { ApiKeyStore } from "./api-key-store.js";
import { AuditLog } from "./audit-log.js";
import { ConsentNonceStore } from "./consent-nonces.js";
import { DeploymentStore } from "./deployment.js";
import { SavedHuntStore } from "./saved-hunt-store.js";
import { TenantStore } from "./tenant-store.js";

export interface StoreOptions {
  /** PostgreSQL connection string; when unset, embedded PGlite is used. */
  databaseUrl?: string | undefined;
  /** PGlite data directory; undefined with no databaseUrl means in memory (tests). */
  dataDir?: string | undefined;
}

/** Everything persistent, behind one handle that app and tests open once and close once. */
export interface Store {
  db: SqlClient;
  tenants: TenantStore;
  consentNonces: ConsentNonceStore;
  /** Callers' API keys (hashed). */
  apiKeys: ApiKeyStore;
  /** Who did what to which tenant, and how it ended. */
  audit: AuditLog;
  /** Whether the store serves the sandbox or Azure, recorded once by the first server that opens it. */
  deployment: DeploymentStore;
  /** The partner's saved hunting queries (one library per deployment). */
  savedHunts: SavedHuntStore;
  close(): Promise<void>;
}

/** Opens the database (PostgreSQL when a URL is given, else PGlite), migrates it, and builds the stores. */
export async function openStore(options: StoreOptions): Promise<Store> {
  let db: SqlClient;
  if (options.databaseUrl) {
    db = await openPostgres(options.databaseUrl);
  } else {
    if (options.dataDir) await mkdir(options.dataDir, { recursive: true });
    db = await openPglite(options.dataDir);
  }
  try {
    await migrate(db);
  } catch (error) {
    await db.close();
    throw error;
  }
  return {
    db,
    tenants: new TenantStore(db),
    consentNonces: new ConsentNonceStore(db),
    apiKeys: new ApiKeyStore(db),
    audit: new AuditLog(db),
    deployment: new DeploymentStore(db),
    savedHunts: new SavedHuntStore(db),
    close: () => db.close(),
  };
}
