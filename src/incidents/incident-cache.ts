import type { Incident, IncidentsBackendName } from "../defender/incident.js";

/**
 * What the cache holds for one tenant: every incident seen for it, and how far the incremental refresh
 * has got.
 *
 * Entries are values: whoever writes one builds a new entry (and a new `incidents` array) rather than
 * changing one in place, so readers — and the query's memoised sort orders, keyed by the array's
 * identity — never see an entry change under them. `IncidentService` freezes the arrays it writes.
 * Everything in an entry is plain data (strings, numbers, arrays, Dates), so an implementation on Redis
 * or PostgreSQL can store `encodeCacheEntry`'s JSON and get the same entry back from `decodeCacheEntry`.
 */
export interface TenantIncidentsEntry {
  /** The backend the incidents came from; an entry of another backend is never merged into. */
  backend: IncidentsBackendName;
  /** The tenant's incidents, one per `incidentId`, in no particular order. */
  incidents: readonly Incident[];
  /** The greatest `lastUpdateTime` the list sweeps have seen; null while the tenant has no incident. */
  watermark: Date | null;
  /** When the refresh that produced this entry started: the data is at least this recent. */
  fetchedAt: Date;
  /**
   * When the last full (non-incremental) list started. Deltas cannot see incidents that disappear
   * upstream (retention), so the service lists everything again after a while.
   */
  fullFetchedAt?: Date;
  /**
   * A full list under way across several refreshes (bounded pages per refresh, or stopped by a failure):
   * a large tenant's first load, or the periodic full list. Lists page oldest-first by `lastUpdateTime`,
   * so a sweep goes on from `resumeFrom` without reading anything twice. While a first load is under way
   * (`fullFetchedAt` undefined) `incidents` holds those read so far and the entry is never fresh.
   */
  sweep?: TenantSweep;
}

export interface TenantSweep {
  /** When the sweep's first page was asked for; `fullFetchedAt` once it completes. */
  startedAt: Date;
  /** Every incident updated before this has been listed by the sweep; null: start from the beginning. */
  resumeFrom: Date | null;
  /**
   * Periodic sweeps (the entry was complete before): ids the sweep has listed, so that at its end held
   * incidents it did not list (gone upstream) are dropped. Absent on a first load: everything held was listed.
   */
  listedIds?: string[];
}

/**
 * Per-tenant incident storage behind `IncidentService`. Asynchronous so that it can live in Redis or
 * PostgreSQL; keys are normalised tenant ids (lower case). Implementations may lose entries at any time
 * (eviction, restart): the service then lists the tenant in full again.
 */
export interface IncidentCache {
  get(tenantId: string): Promise<TenantIncidentsEntry | undefined>;
  set(tenantId: string, entry: TenantIncidentsEntry): Promise<void>;
  delete(tenantId: string): Promise<void>;
}

/**
 * The in-process cache: a Map of entries, held by reference (entries are immutable by contract, see
 * `TenantIncidentsEntry`). Lives as long as the process; nothing expires on its own — freshness is the
 * service's decision, and a tenant removed from the registry should be `delete`d.
 */
export class MemoryIncidentCache implements IncidentCache {
  private readonly entries = new Map<string, TenantIncidentsEntry>();

  async get(tenantId: string): Promise<TenantIncidentsEntry | undefined> {
    return this.entries.get(tenantId);
  }

  async set(tenantId: string, entry: TenantIncidentsEntry): Promise<void> {
    this.entries.set(tenantId, entry);
  }

  async delete(tenantId: string): Promise<void> {
    this.entries.delete(tenantId);
  }

  /** Tenants held, for metrics. */
  get size(): number {
    return this.entries.size;
  }
}

/** Keys whose string values are timestamps, anywhere in an entry (incident, comment, alert, device). */
const DATE_KEYS = new Set([
  "watermark",
  "fetchedAt",
  "fullFetchedAt",
  "startedAt",
  "resumeFrom",
  "createdTime",
  "lastUpdateTime",
  "resolvedTime",
  "firstActivity",
  "lastActivity",
  "firstSeen",
]);
const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** The JSON form of an entry, for caches outside the process. Dates become ISO-8601 strings. */
export function encodeCacheEntry(entry: TenantIncidentsEntry): string {
  return JSON.stringify(entry);
}

/**
 * The entry `encodeCacheEntry` wrote, with its Dates restored.
 *
 * @throws SyntaxError for text that is not JSON, TypeError for JSON that is not an entry
 */
export function decodeCacheEntry(text: string): TenantIncidentsEntry {
  const value: unknown = JSON.parse(text, (key, raw: unknown) =>
    DATE_KEYS.has(key) && typeof raw === "string" && ISO_TIMESTAMP.test(raw) ? new Date(raw) : raw,
  );
  if (
    typeof value !== "object" ||
    value === null ||
    !Array.isArray((value as TenantIncidentsEntry).incidents) ||
    !((value as TenantIncidentsEntry).fetchedAt instanceof Date)
  ) {
    throw new TypeError("not an incident cache entry");
  }
  return value as TenantIncidentsEntry;
}
