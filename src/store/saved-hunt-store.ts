import { randomUUID } from "node:crypto";
import type { CallerKind } from "../auth/caller.js";
import { StoreError } from "./errors.js";
import { decodeNameCursor, encodeNameCursor, GUID_PATTERN, pageSize, toDate } from "./rows.js";
import type { SqlClient } from "./sql.js";
import { normaliseTagList } from "./tenant-store.js";

/** Longest hunt name, in UTF-16 code units (the table's CHECK says the same). */
export const MAX_HUNT_NAME_LENGTH = 128;
/** Longest hunt query, in UTF-16 code units (the table's CHECK says the same). */
export const MAX_HUNT_QUERY_LENGTH = 10_000;
/** Most tenant tags a saved hunt may narrow to (as many as a tag filter takes). */
export const MAX_HUNT_TAGS = 100;
export const MAX_HUNT_PAGE_SIZE = 200;

/** Who saved a hunt, as the audit log names an actor. */
export interface HuntAuthor {
  kind: CallerKind;
  id: string;
  name: string;
}

/**
 * A KQL query the partner keeps under a name, to run again across customers. Partner-wide: one library per
 * deployment, not per caller. The query text is data, never logged or audited.
 */
export interface SavedHuntRecord {
  id: string;
  name: string;
  query: string;
  /** Tenants carrying any of these tags; [] means every tenant the caller running it may read. */
  tenantTags: string[];
  createdBy: HuntAuthor;
  createdAt: Date;
  updatedAt: Date;
}

export interface NewSavedHunt {
  name: string;
  query: string;
  tenantTags?: readonly string[];
  createdBy: HuntAuthor;
}

export interface SavedHuntPage {
  items: SavedHuntRecord[];
  cursors: string[];
  hasNextPage: boolean;
  totalCount: number;
}

interface SavedHuntRow {
  id: string;
  name: string;
  query: string;
  tenant_tags: string[];
  created_by_kind: CallerKind;
  created_by_id: string;
  created_by_name: string;
  created_at: Date | string;
  updated_at: Date | string;
}

const COLUMNS = "id::text AS id, name, query, tenant_tags, created_by_kind, created_by_id, created_by_name, created_at, updated_at";

/** A hunt's name: trimmed, 1 to MAX_HUNT_NAME_LENGTH characters, no control characters. */
export function normaliseHuntName(name: string): string {
  const trimmed = name.trim();
  if (trimmed.length < 1 || trimmed.length > MAX_HUNT_NAME_LENGTH) {
    throw new StoreError("INVALID_INPUT", `name must be 1 to ${MAX_HUNT_NAME_LENGTH} characters`, { field: "name" });
  }
  if (/[\u0000-\u001f\u007f]/.test(trimmed)) throw new StoreError("INVALID_INPUT", "name must not hold control characters", { field: "name" });
  return trimmed;
}

/** A hunt's query: not blank, at most MAX_HUNT_QUERY_LENGTH characters, kept exactly as given otherwise. */
export function checkHuntQuery(query: string): string {
  if (query.trim().length === 0 || query.length > MAX_HUNT_QUERY_LENGTH) {
    throw new StoreError("INVALID_INPUT", `query must be 1 to ${MAX_HUNT_QUERY_LENGTH} characters and not blank`, { field: "query" });
  }
  return query;
}

/** A hunt's tenant tags, as the registry's tags (same pattern), at most MAX_HUNT_TAGS. */
export function normaliseHuntTags(tags: readonly string[]): string[] {
  return normaliseTagList(tags, MAX_HUNT_TAGS, "tenantTags");
}

/**
 * Saved hunts. Names are unique per deployment, case-insensitively: saving under an existing name replaces
 * that hunt's query and tags (its id, creator and creation time stay), in one statement.
 */
export class SavedHuntStore {
  constructor(private readonly db: SqlClient) {}

  /** Saves a hunt, or replaces the one of the same name; `replaced` says which. */
  async save(input: NewSavedHunt): Promise<{ record: SavedHuntRecord; replaced: boolean }> {
    const name = normaliseHuntName(input.name);
    const query = checkHuntQuery(input.query);
    const tags = normaliseHuntTags(input.tenantTags ?? []);
    const rows = await this.db.query<SavedHuntRow & { replaced: boolean }>(
      `INSERT INTO saved_hunts (id, name, query, tenant_tags, created_by_kind, created_by_id, created_by_name)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT ((lower(name))) DO UPDATE
         SET name = EXCLUDED.name, query = EXCLUDED.query, tenant_tags = EXCLUDED.tenant_tags, updated_at = now()
       RETURNING ${COLUMNS}, (created_at <> updated_at) AS replaced`,
      [randomUUID(), name, query, tags, input.createdBy.kind, input.createdBy.id.slice(0, 256), input.createdBy.name.slice(0, 256)],
    );
    const row = rows[0]!;
    return { record: toRecord(row), replaced: row.replaced === true };
  }

  /** A hunt by id; undefined when there is none (and for a malformed id, which no hunt has). */
  async get(id: string): Promise<SavedHuntRecord | undefined> {
    if (!GUID_PATTERN.test(id.trim())) return undefined;
    const rows = await this.db.query<SavedHuntRow>(`SELECT ${COLUMNS} FROM saved_hunts WHERE id = $1`, [id.trim().toLowerCase()]);
    return rows[0] ? toRecord(rows[0]) : undefined;
  }

  /** A page ordered by name (case-insensitive), then id. */
  async list(first = 50, after?: string): Promise<SavedHuntPage> {
    const size = pageSize(first, MAX_HUNT_PAGE_SIZE);
    const params: unknown[] = [];
    let where = "";
    if (after !== undefined) {
      const [name, id] = decodeNameCursor("h1", after);
      params.push(name, id);
      where = "WHERE (lower(name), id) > ($1, $2::uuid)";
    }
    params.push(size + 1);
    const rows = await this.db.query<SavedHuntRow>(
      `SELECT ${COLUMNS} FROM saved_hunts ${where} ORDER BY lower(name), id LIMIT $${params.length}`,
      params,
    );
    const [{ count }] = (await this.db.query<{ count: number | string }>("SELECT count(*)::int AS count FROM saved_hunts")) as [
      { count: number | string },
    ];
    const items = rows.slice(0, size).map(toRecord);
    return {
      items,
      cursors: items.map((h) => encodeNameCursor("h1", h.name.toLowerCase(), h.id)),
      hasNextPage: rows.length > size,
      totalCount: Number(count),
    };
  }

  /** Deletes a hunt; NOT_FOUND when there is none. Returns what was deleted (its name, for the audit log). */
  async remove(id: string): Promise<SavedHuntRecord> {
    if (!GUID_PATTERN.test(id.trim())) throw new StoreError("NOT_FOUND", "no saved hunt has this id", { field: "id" });
    const rows = await this.db.query<SavedHuntRow>(`DELETE FROM saved_hunts WHERE id = $1 RETURNING ${COLUMNS}`, [id.trim().toLowerCase()]);
    if (!rows[0]) throw new StoreError("NOT_FOUND", "no saved hunt has this id", { field: "id" });
    return toRecord(rows[0]);
  }
}

function toRecord(row: SavedHuntRow): SavedHuntRecord {
  return {
    id: row.id,
    name: row.name,
    query: row.query,
    tenantTags: row.tenant_tags,
    createdBy: { kind: row.created_by_kind, id: row.created_by_id, name: row.created_by_name },
    createdAt: toDate(row.created_at)!,
    updatedAt: toDate(row.updated_at)!,
  };
}
