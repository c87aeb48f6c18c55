import type { SqlClient } from "./sql.js";

/**
 * Forward-only migrations, the same SQL on PGlite and PostgreSQL. Append; never edit one that shipped.
 * Applied under an advisory lock so replicas starting together migrate once.
 */
export const MIGRATIONS: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: "tenants",
    sql: `
      CREATE TABLE tenants (
        id uuid PRIMARY KEY,
        display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 256),
        tags text[] NOT NULL DEFAULT '{}',
        backend text NULL CHECK (backend IN ('defender', 'graph')),
        consent_state text NOT NULL DEFAULT 'PENDING'
          CHECK (consent_state IN ('PENDING', 'GRANTED', 'DENIED', 'REVOKED')),
        consented_at timestamptz NULL,
        consent_error text NULL,
        last_token_success_at timestamptz NULL,
        last_failure_at timestamptz NULL,
        last_failure_code text NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX tenants_name_idx ON tenants (lower(display_name), id);
      CREATE INDEX tenants_tags_idx ON tenants USING gin (tags);
    `,
  },
  {
    version: 2,
    name: "consent_nonces",
    sql: `
      CREATE TABLE consent_nonces (
        nonce text PRIMARY KEY,
        used_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL
      );
      CREATE INDEX consent_nonces_expiry_idx ON consent_nonces (expires_at);
    `,
  },
  {
    version: 3,
    name: "api_keys_and_audit",
    sql: `
      CREATE TABLE api_keys (
        id uuid PRIMARY KEY,
        seq bigserial NOT NULL UNIQUE,
        prefix text NOT NULL UNIQUE,
        secret_hash text NOT NULL,
        name text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
        role text NOT NULL CHECK (role IN ('READER', 'RESPONDER', 'ADMIN')),
        all_tenants boolean NOT NULL DEFAULT false,
        tenant_ids text[] NOT NULL DEFAULT '{}',
        tenant_tags text[] NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL DEFAULT now(),
        created_by text NOT NULL,
        expires_at timestamptz NULL,
        revoked_at timestamptz NULL,
        revoked_by text NULL,
        last_used_at timestamptz NULL
      );
      CREATE TABLE audit_events (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT clock_timestamp(),
        actor_kind text NOT NULL,
        actor_id text NOT NULL,
        actor_name text NOT NULL,
        action text NOT NULL,
        tenant_id text NULL,
        target text NULL,
        outcome text NOT NULL,
        detail jsonb NOT NULL DEFAULT '{}',
        request_id text NULL
      );
      CREATE INDEX audit_events_tenant_idx ON audit_events (tenant_id, id DESC);
      CREATE INDEX audit_events_at_idx ON audit_events (at)
    `,
  },
  {
    version: 4,
    name: "deployment_mode",
    // One row, written by the first server that opens the store: sandbox or azure, for good (store/deployment.ts).
    sql: `
      CREATE TABLE deployment (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        mode text NOT NULL CHECK (mode IN ('sandbox', 'azure')),
        first_seen_at timestamptz NOT NULL DEFAULT now()
      )
    `,
  },
  {
    version: 5,
    name: "hunting",
    // A tenant's hunting backend (null: HUNTING_BACKEND), and the partner's saved hunts: one name per deployment,
    // compared case-insensitively. The creator is kept as the audit log keeps an actor (kind, id, name).
    sql: `
      ALTER TABLE tenants ADD COLUMN hunting_backend text NULL CHECK (hunting_backend IN ('graph', 'defender'));
      CREATE TABLE saved_hunts (
        id uuid PRIMARY KEY,
        name text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
        query text NOT NULL CHECK (length(query) BETWEEN 1 AND 10000),
        tenant_tags text[] NOT NULL DEFAULT '{}',
        created_by_kind text NOT NULL,
        created_by_id text NOT NULL,
        created_by_name text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE UNIQUE INDEX saved_hunts_name_idx ON saved_hunts (lower(name))
    `,
  },
  {
    version: 6,
    name: "incident_mirror",
    // The incident mirror (src/incidents/mirror.ts): one row per incident with the columns queries filter and
    // sort on, the normalised incident as JSONB; each tenant's sync state (watermark, resumable sweep, last
    // error, lease); and the change stream. Ids and tenant ids sort by code unit (COLLATE "C"), as the
    // cursors do. Times are epoch milliseconds, so a cursor's key compares exactly.
    sql: `
      CREATE TABLE incidents (
        tenant_id text COLLATE "C" NOT NULL,
        incident_id text COLLATE "C" NOT NULL,
        id_key text COLLATE "C" NOT NULL,
        backend text NOT NULL,
        created_ms bigint NOT NULL,
        updated_ms bigint NOT NULL,
        severity_rank smallint NOT NULL,
        status text NOT NULL,
        classification text NOT NULL,
        assignee text NULL,
        name_lc text NOT NULL,
        id_lc text NOT NULL,
        listed_ms bigint NOT NULL,
        body jsonb NOT NULL,
        PRIMARY KEY (tenant_id, incident_id)
      );
      CREATE INDEX incidents_updated_idx ON incidents (updated_ms DESC, tenant_id, id_key);
      CREATE INDEX incidents_created_idx ON incidents (created_ms DESC, tenant_id, id_key);
      CREATE INDEX incidents_severity_idx ON incidents (severity_rank DESC, updated_ms DESC, tenant_id, id_key);
      CREATE INDEX incidents_severity_asc_idx ON incidents (severity_rank ASC, updated_ms DESC, tenant_id, id_key);
      CREATE INDEX incidents_tenant_updated_idx ON incidents (tenant_id, updated_ms DESC, id_key);
      CREATE TABLE incident_sync (
        tenant_id text COLLATE "C" PRIMARY KEY,
        backend text NOT NULL CHECK (backend IN ('graph', 'defender')),
        watermark_ms bigint NULL,
        fetched_at timestamptz NULL,
        full_fetched_at timestamptz NULL,
        sweep_started_at timestamptz NULL,
        sweep_resume_ms bigint NULL,
        sweep_pages integer NOT NULL DEFAULT 0,
        pages_read bigint NOT NULL DEFAULT 0,
        incident_count integer NOT NULL DEFAULT 0,
        last_attempt_at timestamptz NULL,
        last_error jsonb NULL,
        error_at timestamptz NULL,
        quiet_polls integer NOT NULL DEFAULT 0,
        lease_owner text NULL,
        lease_until timestamptz NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE incident_changes (
        seq bigserial PRIMARY KEY,
        tenant_id text COLLATE "C" NOT NULL,
        incident_id text COLLATE "C" NOT NULL,
        kind text NOT NULL CHECK (kind IN ('created', 'updated', 'removed')),
        changed text[] NOT NULL DEFAULT '{}',
        updated_ms bigint NULL,
        source text NOT NULL CHECK (source IN ('sync', 'write')),
        at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX incident_changes_tenant_idx ON incident_changes (tenant_id, seq);
      CREATE INDEX incident_changes_at_idx ON incident_changes (at)
    `,
  },
];

/** Arbitrary constant naming Crosswatch's migration lock. */
const MIGRATION_LOCK = 0x43_57_01;

export async function migrate(db: SqlClient): Promise<number[]> {
  return db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await tx.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         version integer PRIMARY KEY,
         name text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const applied = new Set(
      (await tx.query<{ version: number }>("SELECT version FROM schema_migrations")).map((r) => r.version),
    );
    const done: number[] = [];
    for (const migration of MIGRATIONS) {
      if (applied.has(migration.version)) continue;
      for (const statement of splitStatements(migration.sql)) await tx.query(statement);
      await tx.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [migration.version, migration.name]);
      done.push(migration.version);
    }
    return done;
  });
}

/** Our migrations hold no semicolons inside statements, so splitting on `;` is safe for them. */
function splitStatements(sql: string): string[] {
  return sql
    .split(";")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
