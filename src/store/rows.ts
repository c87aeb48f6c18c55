import { StoreError } from "./errors.js";

/** A timestamp column as a Date (PGlite and pg hand them back differently). */
export function toDate(value: Date | string | null): Date | null {
  if (value === null) return null;
  return value instanceof Date ? value : new Date(value);
}

/** The largest PostgreSQL `bigint`: a decoded cursor beyond it would fail in SQL, not as bad input. */
const MAX_BIGINT = 9_223_372_036_854_775_807n;

/**
 * Opaque keyset cursors over a `bigserial` sequence column, newest first: `after` means "older than".
 * The kind tag keeps a cursor of one listing from being accepted by another.
 */
export function encodeSeqCursor(kind: string, seq: string | number): string {
  return Buffer.from(JSON.stringify([kind, String(seq)])).toString("base64url");
}

/** The sequence value of a cursor, refused as INVALID_INPUT unless it is a `bigint` this server could have issued. */
export function decodeSeqCursor(kind: string, cursor: string): string {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    if (Array.isArray(value) && value.length === 2 && value[0] === kind && typeof value[1] === "string" && /^\d{1,19}$/.test(value[1]) && BigInt(value[1]) <= MAX_BIGINT) {
      return value[1];
    }
  } catch {
    // fall through
  }
  throw new StoreError("INVALID_INPUT", "after is not a cursor this server issued", { field: "after" });
}

/** A GUID, any case: tenant ids, saved hunt ids. */
export const GUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Opaque keyset cursors over listings ordered by a lower-cased name, then a GUID id (tenants, saved hunts).
 * The kind tag keeps a cursor of one listing from being accepted by another.
 */
export function encodeNameCursor(kind: string, name: string, id: string): string {
  return Buffer.from(JSON.stringify([kind, name, id])).toString("base64url");
}

/** The name and id of a cursor, refused as INVALID_INPUT unless this server could have issued it for `kind`. */
export function decodeNameCursor(kind: string, cursor: string): [string, string] {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    if (Array.isArray(value) && value.length === 3 && value[0] === kind && typeof value[1] === "string" && typeof value[2] === "string" && GUID_PATTERN.test(value[2])) {
      return [value[1], value[2]];
    }
  } catch {
    // fall through
  }
  throw new StoreError("INVALID_INPUT", "after is not a cursor this server issued", { field: "after" });
}

/** Validates a page size. */
export function pageSize(first: number, max: number): number {
  if (!Number.isInteger(first) || first < 1 || first > max) {
    throw new StoreError("INVALID_INPUT", `first must be an integer from 1 to ${max}`, { field: "first" });
  }
  return first;
}
