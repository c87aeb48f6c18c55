import { StoreError } from "./errors.js";
import { decodeNameCursor, encodeNameCursor, GUID_PATTERN, toDate } from "./rows.js";
import type { SqlClient } from "./sql.js";

export const CONSENT_STATES = ["PENDING", "GRANTED", "DENIED", "REVOKED"] as const;
export type ConsentState = (typeof CONSENT_STATES)[number];
export type BackendOverride = "defender" | "graph";
/** Where a tenant's hunting queries run: Microsoft Graph `runHuntingQuery`, or the legacy Defender API while it answers. */
export type HuntingBackendOverride = "graph" | "defender";

/** A customer tenant as the registry keeps it. */
export interface TenantRecord {
  /** Entra tenant id, lower-case GUID. */
  id: string;
  displayName: string;
  tags: string[];
  /** Incidents backend for this tenant; null follows the deployment default. */
  backend: BackendOverride | null;
  /**
   * Hunting backend for this tenant; null (or absent, in records built by hand) follows the deployment
   * default HUNTING_BACKEND.
   */
  huntingBackend?: HuntingBackendOverride | null;
  consentState: ConsentState;
  consentedAt: Date | null;
  /** The error the admin's consent came back with (DENIED), e.g. `access_denied: AADSTS65004 …`. */
  consentError: string | null;
  lastTokenSuccessAt: Date | null;
  lastFailureAt: Date | null;
  /** Public error code of the last failed token or upstream call, e.g. CONSENT_REQUIRED. */
  lastFailureCode: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface NewTenant {
  id: string;
  displayName: string;
  tags?: string[];
  backend?: BackendOverride | null;
  huntingBackend?: HuntingBackendOverride | null;
  consentState?: ConsentState;
}

export interface TenantPatch {
  displayName?: string;
  tags?: string[];
  backend?: BackendOverride | null;
  /** null clears the override (the deployment default applies). */
  huntingBackend?: HuntingBackendOverride | null;
}

export interface TenantFilter {
  /** Tenants carrying any of these tags. */
  tags?: string[];
  consentState?: ConsentState[];
  /** Case-insensitive substring of the display name, or a prefix of the id. */
  search?: string;
  /**
   * A caller's tenant scope: only tenants whose id is listed or that carry one of the tags (an empty scope
   * matches nothing). Combined with the other filters by AND.
   */
  scope?: { tenantIds: readonly string[]; tenantTags: readonly string[] };
}

export interface TenantPage {
  items: TenantRecord[];
  /** Cursor of each item, in order. */
  cursors: string[];
  hasNextPage: boolean;
  totalCount: number;
}

const TAG = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
/** Most tags a tenant may carry. */
export const MAX_TAGS = 32;
export const MAX_PAGE_SIZE = 500;

interface TenantRow {
  id: string;
  display_name: string;
  tags: string[];
  backend: BackendOverride | null;
  hunting_backend: HuntingBackendOverride | null;
  consent_state: ConsentState;
  consented_at: Date | string | null;
  consent_error: string | null;
  last_token_success_at: Date | string | null;
  last_failure_at: Date | string | null;
  last_failure_code: string | null;
  created_at: Date | string;
  updated_at: Date | string;
}

const COLUMNS =
  "id::text AS id, display_name, tags, backend, hunting_backend, consent_state, consented_at, consent_error, " +
  "last_token_success_at, last_failure_at, last_failure_code, created_at, updated_at";

/** Validates and normalises a tenant id: a GUID, lower-cased. Throws INVALID_INPUT otherwise. */
export function normaliseTenantId(id: string): string {
  const trimmed = id.trim();
  if (!GUID_PATTERN.test(trimmed)) {
    throw new StoreError("INVALID_INPUT", `'${trimmed.slice(0, 60)}' is not an Entra tenant id (a GUID)`, { field: "id" });
  }
  return trimmed.toLowerCase();
}

function normaliseName(name: string): string {
  const trimmed = name.trim();
  if (trimmed.length < 1 || trimmed.length > 256) {
    throw new StoreError("INVALID_INPUT", "displayName must be 1 to 256 characters", { field: "displayName" });
  }
  return trimmed;
}

function normaliseTags(tags: string[]): string[] {
  return normaliseTagList(tags, MAX_TAGS, "tags");
}

/**
 * Tags as the registry writes them: trimmed, de-duplicated, at most `max`, each 1 to 64 letters, digits or
 * `. _ : -` starting with a letter or digit. INVALID_INPUT naming `field` otherwise.
 */
export function normaliseTagList(tags: readonly string[], max: number, field: string): string[] {
  const unique = [...new Set(tags.map((t) => t.trim()))];
  if (unique.length > max) throw new StoreError("INVALID_INPUT", `at most ${max} tags`, { field });
  for (const tag of unique) {
    if (!TAG.test(tag)) {
      throw new StoreError(
        "INVALID_INPUT",
        `tag '${tag.slice(0, 70)}' must be 1 to 64 letters, digits or . _ : - and start with a letter or digit`,
        { field },
      );
    }
  }
  return unique;
}

/** The WHERE clauses and parameters of a tenant filter. */
function filterClauses(filter: TenantFilter): { where: string[]; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.tags && filter.tags.length > 0) {
    params.push(normaliseTags(filter.tags));
    where.push(`tags && $${params.length}::text[]`);
  }
  if (filter.consentState && filter.consentState.length > 0) {
    params.push(filter.consentState);
    where.push(`consent_state = ANY($${params.length}::text[])`);
  }
  if (filter.search && filter.search.trim() !== "") {
    params.push(`%${escapeLike(filter.search.trim().toLowerCase())}%`);
    const like = params.length;
    params.push(`${escapeLike(filter.search.trim().toLowerCase())}%`);
    where.push(`(lower(display_name) LIKE $${like} OR id::text LIKE $${params.length})`);
  }
  if (filter.scope) {
    params.push(filter.scope.tenantIds.map(normaliseTenantId));
    const ids = params.length;
    params.push([...filter.scope.tenantTags]);
    where.push(`(id = ANY($${ids}::uuid[]) OR tags && $${params.length}::text[])`);
  }
  return { where, params };
}

/**
 * The tenant registry. Every write is one statement or one transaction, so a failed write leaves the
 * stored tenant exactly as it was.
 */
export class TenantStore {
  constructor(private readonly db: SqlClient) {}

  async register(input: NewTenant): Promise<TenantRecord> {
    const id = normaliseTenantId(input.id);
    const rows = await this.db.query<TenantRow>(
      `INSERT INTO tenants (id, display_name, tags, backend, consent_state, hunting_backend)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (id) DO NOTHING
       RETURNING ${COLUMNS}`,
      [
        id,
        normaliseName(input.displayName),
        normaliseTags(input.tags ?? []),
        input.backend ?? null,
        input.consentState ?? "PENDING",
        huntingBackendValue(input.huntingBackend),
      ],
    );
    if (rows.length === 0) throw new StoreError("ALREADY_EXISTS", `tenant ${id} is already registered`, { field: "id" });
    return toRecord(rows[0]!);
  }

  /** Registers the tenants that are not there yet and leaves the others untouched (sandbox seeding). */
  async registerMissing(inputs: NewTenant[]): Promise<number> {
    return this.db.transaction(async (tx) => {
      let added = 0;
      for (const input of inputs) {
        const rows = await tx.query(
          `INSERT INTO tenants (id, display_name, tags, backend, consent_state, hunting_backend)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING RETURNING id`,
          [
            normaliseTenantId(input.id),
            normaliseName(input.displayName),
            normaliseTags(input.tags ?? []),
            input.backend ?? null,
            input.consentState ?? "PENDING",
            huntingBackendValue(input.huntingBackend),
          ],
        );
        added += rows.length;
      }
      return added;
    });
  }

  async get(id: string): Promise<TenantRecord | undefined> {
    const rows = await this.db.query<TenantRow>(`SELECT ${COLUMNS} FROM tenants WHERE id = $1`, [normaliseTenantId(id)]);
    return rows[0] ? toRecord(rows[0]) : undefined;
  }

  /** Loads many tenants at once (DataLoader batches); unknown ids are simply absent from the map. */
  async getMany(ids: readonly string[]): Promise<Map<string, TenantRecord>> {
    const wanted = [...new Set(ids.map(normaliseTenantId))];
    if (wanted.length === 0) return new Map();
    const rows = await this.db.query<TenantRow>(`SELECT ${COLUMNS} FROM tenants WHERE id = ANY($1::uuid[])`, [wanted]);
    return new Map(rows.map((row) => [row.id, toRecord(row)]));
  }

  /** Every tenant the filter matches, in `list`'s order, `pageSize` at a time (a page per yield). */
  async *pages(filter: TenantFilter = {}, pageSize = MAX_PAGE_SIZE): AsyncGenerator<TenantRecord[]> {
    let after: string | undefined;
    for (;;) {
      const page = await this.list(filter, pageSize, after);
      yield page.items;
      if (!page.hasNextPage) return;
      after = page.cursors.at(-1);
    }
  }

  /** A page ordered by display name (case-insensitive), then id: stable while tenants are added. */
  async list(filter: TenantFilter = {}, first = 50, after?: string): Promise<TenantPage> {
    if (!Number.isInteger(first) || first < 0 || first > MAX_PAGE_SIZE) {
      throw new StoreError("INVALID_INPUT", `first must be an integer from 0 to ${MAX_PAGE_SIZE}`, { field: "first" });
    }
    const { where, params } = filterClauses(filter);
    const filterSql = where.length > 0 ? `WHERE ${where.join(" AND ")}` : "";
    const [{ count }] = (await this.db.query<{ count: number | string }>(
      `SELECT count(*)::int AS count FROM tenants ${filterSql}`,
      params,
    )) as [{ count: number | string }];

    const pageWhere = [...where];
    const pageParams = [...params];
    if (after !== undefined) {
      const [name, id] = decodeNameCursor("t1", after);
      pageParams.push(name, id);
      pageWhere.push(`(lower(display_name), id) > ($${pageParams.length - 1}, $${pageParams.length}::uuid)`);
    }
    pageParams.push(first + 1);
    const rows = await this.db.query<TenantRow>(
      `SELECT ${COLUMNS} FROM tenants
       ${pageWhere.length > 0 ? `WHERE ${pageWhere.join(" AND ")}` : ""}
       ORDER BY lower(display_name), id
       LIMIT $${pageParams.length}`,
      pageParams,
    );
    const items = rows.slice(0, first).map(toRecord);
    return {
      items,
      cursors: items.map((t) => encodeNameCursor("t1", t.displayName.toLowerCase(), t.id)),
      hasNextPage: rows.length > first,
      totalCount: Number(count),
    };
  }

  /** How many tenants match the filter (the same semantics as `list`). */
  async count(filter: TenantFilter = {}): Promise<number> {
    const { where, params } = filterClauses(filter);
    const rows = await this.db.query<{ count: number | string }>(
      `SELECT count(*)::int AS count FROM tenants ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}`,
      params,
    );
    return Number(rows[0]?.count ?? 0);
  }

  async update(id: string, patch: TenantPatch): Promise<TenantRecord> {
    const tenantId = normaliseTenantId(id);
    const sets: string[] = [];
    const params: unknown[] = [tenantId];
    if (patch.displayName !== undefined) {
      params.push(normaliseName(patch.displayName));
      sets.push(`display_name = $${params.length}`);
    }
    if (patch.tags !== undefined) {
      params.push(normaliseTags(patch.tags));
      sets.push(`tags = $${params.length}`);
    }
    if (patch.backend !== undefined) {
      params.push(patch.backend);
      sets.push(`backend = $${params.length}`);
    }
    if (patch.huntingBackend !== undefined) {
      params.push(huntingBackendValue(patch.huntingBackend));
      sets.push(`hunting_backend = $${params.length}`);
    }
    sets.push("updated_at = now()");
    const rows = await this.db.query<TenantRow>(
      `UPDATE tenants SET ${sets.join(", ")} WHERE id = $1 RETURNING ${COLUMNS}`,
      params,
    );
    if (!rows[0]) throw new StoreError("NOT_FOUND", `tenant ${tenantId} is not registered`, { field: "id" });
    return toRecord(rows[0]);
  }

  async remove(id: string): Promise<void> {
    const tenantId = normaliseTenantId(id);
    const rows = await this.db.query("DELETE FROM tenants WHERE id = $1 RETURNING id", [tenantId]);
    if (rows.length === 0) throw new StoreError("NOT_FOUND", `tenant ${tenantId} is not registered`, { field: "id" });
  }

  /**
   * Records an admin's consent answer. GRANTED registers the tenant when it is new (consent may come
   * before registration); DENIED and REVOKED require it to exist.
   */
  async recordConsent(
    id: string,
    state: Exclude<ConsentState, "PENDING">,
    details: { error?: string; displayName?: string } = {},
  ): Promise<TenantRecord> {
    const tenantId = normaliseTenantId(id);
    return this.db.transaction(async (tx) => {
      if (state === "GRANTED") {
        await tx.query(
          `INSERT INTO tenants (id, display_name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`,
          [tenantId, normaliseName(details.displayName ?? `Tenant ${tenantId}`)],
        );
      }
      const rows = await tx.query<TenantRow>(
        `UPDATE tenants
            SET consent_state = $2,
                consented_at = CASE WHEN $2 = 'GRANTED' THEN now() ELSE consented_at END,
                consent_error = $3,
                updated_at = now()
          WHERE id = $1
          RETURNING ${COLUMNS}`,
        [tenantId, state, details.error?.slice(0, 1000) ?? null],
      );
      if (!rows[0]) throw new StoreError("NOT_FOUND", `tenant ${tenantId} is not registered`, { field: "id" });
      return toRecord(rows[0]);
    });
  }

  /**
   * Records the outcome of a token acquisition or upstream call for a tenant (no error if unknown): a
   * success stamps `last_token_success_at` and clears `last_failure_code` (`last_failure_at` stays, as when
   * it last failed); a failure stamps both failure columns.
   */
  async recordTokenOutcome(id: string, outcome: { ok: true } | { ok: false; code: string }): Promise<void> {
    const db = this.db;
    const tenantId = normaliseTenantId(id);
    if (outcome.ok) {
      await db.query(
        "UPDATE tenants SET last_token_success_at = now(), last_failure_code = NULL, updated_at = now() WHERE id = $1",
        [tenantId],
      );
    } else {
      await db.query(
        "UPDATE tenants SET last_failure_at = now(), last_failure_code = $2, updated_at = now() WHERE id = $1",
        [tenantId, outcome.code],
      );
    }
  }

  /**
   * Records what a query, a get, an update or a token diagnosis found for a registered tenant, with the
   * consent drift it proves, in one transaction (no error, and no change, if the tenant is unknown):
   * - a failure stamps `last_failure_at`/`last_failure_code`; with `consentLost` a GRANTED tenant becomes
   *   REVOKED (conditionally, so of racing replicas exactly one sees `consent: "REVOKED"` and audits it);
   * - a success clears `last_failure_code` and stamps `last_token_success_at`, only when there was a failure
   *   code to clear, and a REVOKED tenant becomes GRANTED again (its token works, so consent is back).
   * `changed` says whether any row was written (a success on a clean tenant writes nothing).
   */
  async recordOutcome(
    id: string,
    outcome: { ok: true } | { ok: false; code: string; consentLost?: boolean },
  ): Promise<{ changed: boolean; consent?: "REVOKED" | "GRANTED" }> {
    const tenantId = normaliseTenantId(id);
    return this.db.transaction(async (tx) => {
      if (!outcome.ok) {
        const revoked = outcome.consentLost
          ? await tx.query(
              `UPDATE tenants SET consent_state = 'REVOKED', consent_error = $2, updated_at = now()
                WHERE id = $1 AND consent_state = 'GRANTED' RETURNING id`,
              [tenantId, `${outcome.code}: the app's token was refused after consent had been granted`],
            )
          : [];
        const rows = await tx.query(
          "UPDATE tenants SET last_failure_at = now(), last_failure_code = $2, updated_at = now() WHERE id = $1 RETURNING id",
          [tenantId, outcome.code],
        );
        return { changed: rows.length > 0, ...(revoked.length > 0 ? { consent: "REVOKED" as const } : {}) };
      }
      const restored = await tx.query(
        `UPDATE tenants SET consent_state = 'GRANTED', consent_error = NULL, updated_at = now()
          WHERE id = $1 AND consent_state = 'REVOKED' RETURNING id`,
        [tenantId],
      );
      const rows = await tx.query(
        `UPDATE tenants SET last_failure_code = NULL, last_token_success_at = now(), updated_at = now()
          WHERE id = $1 AND last_failure_code IS NOT NULL RETURNING id`,
        [tenantId],
      );
      return { changed: rows.length > 0 || restored.length > 0, ...(restored.length > 0 ? { consent: "GRANTED" as const } : {}) };
    });
  }
}

function toRecord(row: TenantRow): TenantRecord {
  return {
    id: row.id,
    displayName: row.display_name,
    tags: row.tags,
    backend: row.backend,
    huntingBackend: row.hunting_backend,
    consentState: row.consent_state,
    consentedAt: toDate(row.consented_at),
    consentError: row.consent_error,
    lastTokenSuccessAt: toDate(row.last_token_success_at),
    lastFailureAt: toDate(row.last_failure_at),
    lastFailureCode: row.last_failure_code,
    createdAt: toDate(row.created_at)!,
    updatedAt: toDate(row.updated_at)!,
  };
}

const HUNTING_BACKENDS: readonly HuntingBackendOverride[] = ["graph", "defender"];

/** A hunting backend override as stored: one of HUNTING_BACKENDS or null (the column's CHECK says the same). */
function huntingBackendValue(value: HuntingBackendOverride | null | undefined): HuntingBackendOverride | null {
  if (value === undefined || value === null) return null;
  if (!HUNTING_BACKENDS.includes(value)) {
    throw new StoreError("INVALID_INPUT", "huntingBackend must be graph or defender", { field: "huntingBackend" });
  }
  return value;
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}
