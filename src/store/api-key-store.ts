import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { CALLER_ROLES, type CallerRole, type TenantScope } from "../auth/caller.js";
import { StoreError } from "./errors.js";
import { decodeSeqCursor, encodeSeqCursor, pageSize, toDate } from "./rows.js";
import type { SqlClient } from "./sql.js";
import { normaliseTenantId } from "./tenant-store.js";

/**
 * A whole API key anywhere in a text: `cwk_`, a 12-character lookup prefix, `_`, 43 characters of secret
 * (32 random bytes, base64url). Used by the leak-scanning test; the store itself parses with KEY_FORMAT.
 */
export const API_KEY_PATTERN = /cwk_[a-z0-9]{12}_[A-Za-z0-9_-]{43}/g;
const KEY_FORMAT = /^cwk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/;
const PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

export interface ApiKeyRecord {
  id: string;
  /** Public lookup prefix: recognisable in lists and logs, useless without the secret. */
  prefix: string;
  name: string;
  role: CallerRole;
  scope: TenantScope;
  createdAt: Date;
  createdBy: string;
  expiresAt: Date | null;
  revokedAt: Date | null;
  revokedBy: string | null;
  /** Last successful use, recorded at most once a minute. */
  lastUsedAt: Date | null;
}

export type ApiKeyVerification =
  | { ok: true; record: ApiKeyRecord }
  | { ok: false; reason: "MALFORMED" | "UNKNOWN" | "REVOKED" | "EXPIRED" };

export interface NewApiKey {
  name: string;
  role: CallerRole;
  scope: TenantScope;
  expiresAt?: Date | null;
  createdBy: string;
}

interface ApiKeyRow {
  id: string;
  seq: string;
  prefix: string;
  secret_hash: string;
  name: string;
  role: CallerRole;
  all_tenants: boolean;
  tenant_ids: string[];
  tenant_tags: string[];
  created_at: Date | string;
  created_by: string;
  expires_at: Date | string | null;
  revoked_at: Date | string | null;
  revoked_by: string | null;
  last_used_at: Date | string | null;
}

const COLUMNS =
  "id::text AS id, seq::text AS seq, prefix, secret_hash, name, role, all_tenants, tenant_ids, tenant_tags, " +
  "created_at, created_by, expires_at, revoked_at, revoked_by, last_used_at";
const MAX_IDS = 1000;
const MAX_TAGS = 100;
const TOUCH_INTERVAL_MS = 60_000;

/**
 * API keys of callers. Only a SHA-256 hash of each key's secret is stored (the secret is 256 random bits,
 * so a fast hash is enough: there is nothing to guess); the plaintext exists once, in `create`'s result.
 */
export class ApiKeyStore {
  /** When each key's `last_used_at` was last written by this process: one write a minute, not one a request. */
  private readonly touched = new Map<string, number>();

  constructor(private readonly db: SqlClient) {}

  async create(input: NewApiKey): Promise<{ record: ApiKeyRecord; key: string }> {
    const name = input.name.trim();
    if (name.length < 1 || name.length > 128) throw new StoreError("INVALID_INPUT", "name must be 1 to 128 characters", { field: "name" });
    if (!CALLER_ROLES.includes(input.role)) throw new StoreError("INVALID_INPUT", `role must be one of ${CALLER_ROLES.join(", ")}`, { field: "role" });
    const scope = normaliseScope(input.scope);
    const expiresAt = input.expiresAt ?? null;
    if (expiresAt && expiresAt.getTime() <= Date.now()) {
      throw new StoreError("INVALID_INPUT", "expiresAt must be in the future", { field: "expiresAt" });
    }
    const prefix = randomPrefix();
    const secret = randomBytes(32).toString("base64url");
    const rows = await this.db.query<ApiKeyRow>(
      `INSERT INTO api_keys (id, prefix, secret_hash, name, role, all_tenants, tenant_ids, tenant_tags, created_by, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
       RETURNING ${COLUMNS}`,
      [randomUUID(), prefix, hashSecret(secret), name, input.role, scope.allTenants, scope.tenantIds, scope.tenantTags, input.createdBy.slice(0, 256), expiresAt],
    );
    return { record: toRecord(rows[0]!), key: `cwk_${prefix}_${secret}` };
  }

  /** Checks a presented key: one indexed lookup by prefix, then a constant-time comparison of hashes. */
  async verify(presented: string): Promise<ApiKeyVerification> {
    const match = KEY_FORMAT.exec(presented);
    if (!match) return { ok: false, reason: "MALFORMED" };
    const [, prefix, secret] = match as unknown as [string, string, string];
    const rows = await this.db.query<ApiKeyRow>(`SELECT ${COLUMNS} FROM api_keys WHERE prefix = $1`, [prefix]);
    const row = rows[0];
    const presentedHash = Buffer.from(hashSecret(secret), "hex");
    // Compare even when the prefix is unknown, so timing does not tell known prefixes apart.
    const storedHash = Buffer.from(row?.secret_hash ?? "0".repeat(64), "hex");
    const same = timingSafeEqual(presentedHash, storedHash);
    if (!row || !same) return { ok: false, reason: "UNKNOWN" };
    const record = toRecord(row);
    if (record.revokedAt) return { ok: false, reason: "REVOKED" };
    if (record.expiresAt && record.expiresAt.getTime() <= Date.now()) return { ok: false, reason: "EXPIRED" };
    await this.touch(record);
    return { ok: true, record };
  }

  async get(id: string): Promise<ApiKeyRecord | undefined> {
    if (!isUuid(id)) return undefined;
    const rows = await this.db.query<ApiKeyRow>(`SELECT ${COLUMNS} FROM api_keys WHERE id = $1`, [id]);
    return rows[0] ? toRecord(rows[0]) : undefined;
  }

  /** Keys, newest first, revoked and expired ones included. */
  async list(first = 50, after?: string): Promise<{ items: ApiKeyRecord[]; hasNextPage: boolean; cursors: string[] }> {
    const size = pageSize(first, 500);
    const params: unknown[] = [];
    let where = "";
    if (after !== undefined) {
      params.push(decodeSeqCursor("k1", after));
      where = "WHERE seq < $1::bigint";
    }
    params.push(size + 1);
    const rows = await this.db.query<ApiKeyRow>(
      `SELECT ${COLUMNS} FROM api_keys ${where} ORDER BY seq DESC LIMIT $${params.length}`,
      params,
    );
    const page = rows.slice(0, size);
    return { items: page.map(toRecord), hasNextPage: rows.length > size, cursors: page.map((r) => encodeSeqCursor("k1", r.seq)) };
  }

  /** Revokes a key at once (every replica reads the same row). Revoking twice keeps the first time. */
  async revoke(id: string, by: string): Promise<ApiKeyRecord> {
    if (!isUuid(id)) throw new StoreError("INVALID_INPUT", "id is not an API key id", { field: "id" });
    const rows = await this.db.query<ApiKeyRow>(
      `UPDATE api_keys
       SET revoked_at = COALESCE(revoked_at, now()), revoked_by = COALESCE(revoked_by, $2)
       WHERE id = $1
       RETURNING ${COLUMNS}`,
      [id, by.slice(0, 256)],
    );
    if (!rows[0]) throw new StoreError("NOT_FOUND", `no API key ${id}`, { field: "id" });
    return toRecord(rows[0]);
  }

  /** Keys that would be accepted now: neither revoked nor expired. */
  async countActive(): Promise<number> {
    const rows = await this.db.query<{ count: number | string }>(
      "SELECT count(*)::int AS count FROM api_keys WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
    );
    return Number(rows[0]?.count ?? 0);
  }

  private async touch(record: ApiKeyRecord): Promise<void> {
    const now = Date.now();
    const last = Math.max(this.touched.get(record.id) ?? 0, record.lastUsedAt?.getTime() ?? 0);
    if (now - last < TOUCH_INTERVAL_MS) return;
    this.touched.set(record.id, now);
    await this.db.query("UPDATE api_keys SET last_used_at = now() WHERE id = $1", [record.id]);
  }
}

function normaliseScope(scope: TenantScope): TenantScope {
  const tenantIds = [...new Set(scope.tenantIds.map((id) => {
    try {
      return normaliseTenantId(id);
    } catch {
      throw new StoreError("INVALID_INPUT", `tenant id '${String(id).slice(0, 60)}' is not a GUID`, { field: "tenantIds" });
    }
  }))];
  const tenantTags = [...new Set(scope.tenantTags.map((t) => t.trim()))];
  if (tenantTags.some((t) => t.length < 1 || t.length > 64)) {
    throw new StoreError("INVALID_INPUT", "tenant tags are 1 to 64 characters", { field: "tenantTags" });
  }
  if (tenantIds.length > MAX_IDS) throw new StoreError("INVALID_INPUT", `at most ${MAX_IDS} tenant ids`, { field: "tenantIds" });
  if (tenantTags.length > MAX_TAGS) throw new StoreError("INVALID_INPUT", `at most ${MAX_TAGS} tenant tags`, { field: "tenantTags" });
  if (!scope.allTenants && tenantIds.length + tenantTags.length === 0) {
    throw new StoreError("INVALID_INPUT", "a key needs allTenants or at least one tenant id or tag", { field: "allTenants" });
  }
  return scope.allTenants ? { allTenants: true, tenantIds: [], tenantTags: [] } : { allTenants: false, tenantIds, tenantTags };
}

function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

function randomPrefix(): string {
  const bytes = randomBytes(12);
  let out = "";
  for (const byte of bytes) out += PREFIX_ALPHABET[byte % PREFIX_ALPHABET.length];
  return out;
}

function isUuid(id: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id);
}

function toRecord(row: ApiKeyRow): ApiKeyRecord {
  return {
    id: row.id,
    prefix: row.prefix,
    name: row.name,
    role: row.role,
    scope: { allTenants: row.all_tenants, tenantIds: row.tenant_ids, tenantTags: row.tenant_tags },
    createdAt: toDate(row.created_at)!,
    createdBy: row.created_by,
    expiresAt: toDate(row.expires_at),
    revokedAt: toDate(row.revoked_at),
    revokedBy: row.revoked_by,
    lastUsedAt: toDate(row.last_used_at),
  };
}
