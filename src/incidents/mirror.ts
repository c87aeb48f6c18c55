import type { Incident, IncidentAlert, IncidentsBackendName } from "../defender/incident.js";
import type { SqlClient, SqlExecutor } from "../store/sql.js";
import { encodeCursor, idKey, SEVERITY_RANK, time, type FilterSpec, type IncidentPage, type ParsedIncidentQuery, type SortKey } from "./incident-query.js";
import type { TenantError } from "./outcome.js";

/**
 * The incident mirror: every synced tenant's incidents in the database that holds the registry (PGlite or
 * PostgreSQL), one row each, with the columns queries filter and sort on and the normalised incident as
 * JSONB (read only for the rows a page returns); each tenant's sync state; and the change stream.
 *
 * Rows are replaced only by a strictly newer `lastUpdateTime` (an update written through Crosswatch and the
 * list that later brings the same version change nothing twice). Every insert, change and removal writes an
 * event to `incident_changes` in the same transaction: the source for push delivery.
 */

/** One tenant's sync state (table `incident_sync`). */
export interface SyncState {
  tenantId: string;
  backend: IncidentsBackendName;
  /** Greatest `lastUpdateTime` a completed list has seen; deltas ask from here. Null: none yet. */
  watermark: Date | null;
  /** When the last completed list (first load or delta) started: the mirror is at least this recent. */
  fetchedAt: Date | null;
  /** When the last full list completed; null while the first load is under way. */
  fullFetchedAt: Date | null;
  /** A full list under way (first load or periodic): where it resumes and how many pages it has read. */
  sweep: { startedAt: Date; resumeFrom: Date | null; pages: number } | null;
  /** List pages read for the tenant, ever. */
  pagesRead: number;
  /** Incidents the mirror holds for the tenant. */
  incidentCount: number;
  lastAttemptAt: Date | null;
  /** The last sync's failure, when it failed after the last success (`errorAt`: when it was recorded). */
  lastError: TenantError | null;
  errorAt: Date | null;
  /** Syncs in a row that found nothing new (the engine polls a quiet tenant less often). */
  quietPolls: number;
  leaseOwner: string | null;
  leaseUntil: Date | null;
}

/** Whether the mirror holds anything of the tenant to serve: a completed list, or a first page at least. */
export function hasData(state: SyncState | undefined): boolean {
  return state !== undefined && (state.fetchedAt !== null || (state.sweep !== null && state.sweep.pages > 0));
}

/** Whether the tenant's last sync failed after its last success (or it never had one). */
export function failingSinceSuccess(state: SyncState): boolean {
  return state.lastError !== null && (state.fetchedAt === null || (state.errorAt !== null && state.errorAt.getTime() >= state.fetchedAt.getTime()));
}

/** What a sync writes to the state beside the incidents (undefined: unchanged). */
export interface SyncStatePatch {
  watermark?: Date | null;
  fetchedAt?: Date | null;
  fullFetchedAt?: Date | null;
  sweep?: { startedAt: Date; resumeFrom: Date | null; pages: number } | null;
  pagesRead?: number;
  lastAttemptAt?: Date | null;
  lastError?: TenantError | null;
  errorAt?: Date | null;
  quietPolls?: number;
}

/** One event of the change stream. */
export interface IncidentChange {
  seq: number;
  tenantId: string;
  incidentId: string;
  kind: "created" | "updated" | "removed";
  /** The public fields that changed (empty for created and removed). */
  changed: string[];
  lastUpdateTime: Date | null;
  source: "sync" | "write";
  at: Date;
}

export interface PutResult {
  created: number;
  updated: number;
}

/** Counts of one or more tenants' mirrored incidents. */
export interface MirrorCounts {
  total: number;
  bySeverity: Record<string, number>;
  byStatus: Record<string, number>;
}

/** Fields compared to tell what an update changed (the change stream's `changed`). */
const COMPARED: readonly (keyof Incident)[] = ["name", "severity", "status", "classification", "determination", "assignedTo", "tags", "comments", "redirectIncidentId", "description"];

export class IncidentMirror {
  constructor(private readonly db: SqlClient) {}

  // ---------------------------------------------------------------------------------------------------
  // Writes

  /**
   * Puts listed (or written) incidents of one tenant, each replacing its row only when strictly newer, and
   * records an event for each created or changed one; then `state` (when given), in one transaction. A
   * row's `listed_ms` becomes `listedMs` for every incident given, newer or not (a full sweep's mark).
   */
  async put(
    tenantId: string,
    backend: IncidentsBackendName,
    incidents: readonly Incident[],
    options: { source: "sync" | "write"; listedMs: number; state?: SyncStatePatch; keepAlerts?: boolean },
  ): Promise<PutResult> {
    return this.db.transaction(async (tx) => {
      const result = incidents.length > 0 ? await putRows(tx, tenantId, backend, incidents, options.source, options.listedMs, options.keepAlerts === true) : { created: 0, updated: 0 };
      if (options.state || result.created > 0) {
        await writeState(tx, tenantId, backend, options.state ?? {}, result.created > 0);
      }
      return result;
    });
  }

  /** Writes sync state only. */
  async patchState(tenantId: string, backend: IncidentsBackendName, patch: SyncStatePatch): Promise<void> {
    await writeState(this.db, tenantId, backend, patch, false);
  }

  /**
   * Puts an incident read with its alerts into its row, when the row holds that same version: alerts live
   * with the version they were read with (a newer read is the next sync's to bring, columns and all).
   */
  async putAlerts(tenantId: string, read: readonly Incident[]): Promise<void> {
    for (const incident of read) {
      await this.db.query(`UPDATE incidents SET body = $3::jsonb WHERE tenant_id = $1 AND incident_id = $2 AND updated_ms = $4`, [
        tenantId,
        incident.incidentId,
        JSON.stringify(incident),
        time(incident.lastUpdateTime),
      ]);
    }
  }

  /**
   * Ends a full sweep: rows of the tenant it did not list (`listed_ms` before the sweep started) are gone
   * upstream and leave the mirror, each with a `removed` event. Returns how many.
   */
  async removeUnlisted(tenantId: string, sweepStartedMs: number): Promise<number> {
    return this.db.transaction(async (tx) => {
      const gone = await tx.query<{ incident_id: string; updated_ms: string }>(
        `DELETE FROM incidents WHERE tenant_id = $1 AND listed_ms < $2 RETURNING incident_id, updated_ms`,
        [tenantId, sweepStartedMs],
      );
      if (gone.length > 0) {
        await insertChanges(
          tx,
          gone.map((g) => ({ tenantId, incidentId: g.incident_id, kind: "removed", changed: [], updatedMs: Number(g.updated_ms), source: "sync" })),
        );
        await recount(tx, tenantId);
      }
      return gone.length;
    });
  }

  /** Drops incidents last updated before `beforeMs` (outside the window), without events. Returns how many. */
  async pruneWindow(beforeMs: number): Promise<number> {
    const rows = await this.db.query<{ tenant_id: string }>(`DELETE FROM incidents WHERE updated_ms < $1 RETURNING tenant_id`, [beforeMs]);
    for (const tenantId of new Set(rows.map((r) => r.tenant_id))) await recount(this.db, tenantId);
    return rows.length;
  }

  /** Drops change events older than `before`. */
  async pruneChanges(before: Date): Promise<number> {
    const rows = await this.db.query(`DELETE FROM incident_changes WHERE at < $1 RETURNING seq`, [before]);
    return rows.length;
  }

  /**
   * Forgets a tenant entirely: its incidents, each with a `removed` event (a consumer of the change stream
   * learns they are gone), and its sync state (tenant removed, consent gone, backend changed).
   */
  async forgetTenant(tenantId: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      const gone = await tx.query<{ incident_id: string; updated_ms: string }>(`DELETE FROM incidents WHERE tenant_id = $1 RETURNING incident_id, updated_ms`, [tenantId]);
      await insertChanges(
        tx,
        gone.map((g) => ({ tenantId, incidentId: g.incident_id, kind: "removed" as const, changed: [], updatedMs: Number(g.updated_ms), source: "sync" as const })),
      );
      await tx.query(`DELETE FROM incident_sync WHERE tenant_id = $1`, [tenantId]);
    });
  }

  // ---------------------------------------------------------------------------------------------------
  // Leases

  /**
   * Takes (or renews) the tenant's sync lease for `ttlMs` when it is free, expired or already `owner`'s,
   * by the database's clock. Creates the tenant's state row when there is none.
   */
  async tryLease(tenantId: string, backend: IncidentsBackendName, owner: string, ttlMs: number): Promise<boolean> {
    await this.db.query(`INSERT INTO incident_sync (tenant_id, backend) VALUES ($1, $2) ON CONFLICT (tenant_id) DO NOTHING`, [tenantId, backend]);
    const rows = await this.db.query(
      `UPDATE incident_sync SET lease_owner = $2, lease_until = now() + make_interval(secs => $3::double precision / 1000)
        WHERE tenant_id = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < now())
        RETURNING tenant_id`,
      [tenantId, owner, ttlMs],
    );
    return rows.length > 0;
  }

  async releaseLease(tenantId: string, owner: string): Promise<void> {
    await this.db.query(`UPDATE incident_sync SET lease_owner = NULL, lease_until = NULL WHERE tenant_id = $1 AND lease_owner = $2`, [tenantId, owner]);
  }

  /** Releases every lease `owner` holds (a replica shutting down cleanly hands its tenants on at once). */
  async releaseAll(owner: string): Promise<void> {
    await this.db.query(`UPDATE incident_sync SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1`, [owner]);
  }

  // ---------------------------------------------------------------------------------------------------
  // Reads

  async state(tenantId: string): Promise<SyncState | undefined> {
    const rows = await this.db.query<StateRow>(`SELECT ${STATE_COLUMNS} FROM incident_sync WHERE tenant_id = $1`, [tenantId]);
    return rows[0] ? toState(rows[0]) : undefined;
  }

  async states(tenantIds: readonly string[]): Promise<Map<string, SyncState>> {
    if (tenantIds.length === 0) return new Map();
    const rows = await this.db.query<StateRow>(`SELECT ${STATE_COLUMNS} FROM incident_sync WHERE tenant_id = ANY($1::text[])`, [tenantIds]);
    return new Map(rows.map((r) => [r.tenant_id, toState(r)]));
  }

  async allStates(): Promise<SyncState[]> {
    return (await this.db.query<StateRow>(`SELECT ${STATE_COLUMNS} FROM incident_sync`)).map(toState);
  }

  /** One mirrored incident, or undefined. */
  async get(tenantId: string, incidentId: string): Promise<Incident | undefined> {
    const rows = await this.db.query<{ body: string }>(`SELECT body::text AS body FROM incidents WHERE tenant_id = $1 AND incident_id = $2`, [tenantId, incidentId]);
    return rows[0] ? decodeIncident(rows[0].body) : undefined;
  }

  /** Several incidents of one tenant by id (those the mirror holds). */
  async getMany(tenantId: string, incidentIds: readonly string[]): Promise<Map<string, Incident>> {
    if (incidentIds.length === 0) return new Map();
    const rows = await this.db.query<{ body: string }>(`SELECT body::text AS body FROM incidents WHERE tenant_id = $1 AND incident_id = ANY($2::text[])`, [
      tenantId,
      incidentIds,
    ]);
    const out = new Map<string, Incident>();
    for (const row of rows) {
      const incident = decodeIncident(row.body);
      out.set(incident.incidentId, incident);
    }
    return out;
  }

  /**
   * One page of a parsed query over some tenants' mirrored incidents: one indexed query for the page
   * (`first + 1` rows after the cursor's key, in the query's order), one count for `totalCount` (unless the
   * caller knows it: the tenants' counts in their sync states, for an unfiltered query), and one probe for
   * `hasPreviousPage` when there is a cursor.
   */
  async page(tenantIds: readonly string[], query: ParsedIncidentQuery, knownTotal?: number): Promise<IncidentPage> {
    const { order, first, afterKey, binding } = query;
    if (tenantIds.length === 0) return { edges: [], totalCount: 0, hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null };
    const params: unknown[] = [tenantIds];
    const where = [`tenant_id = ANY($1::text[])`, ...filterSql(query.filter?.spec, params)];
    const countParams = [...params];
    const countWhere = [...where];
    const { orderBy, after, atOrBefore } = orderSql(order.field, order.direction === "DESC", afterKey, params);
    const pageWhere = after ? [...where, after] : where;
    params.push(first + 1);
    const rowsPromise = this.db.query<{ body: string }>(
      `SELECT body::text AS body FROM incidents WHERE ${pageWhere.join(" AND ")} ORDER BY ${orderBy} LIMIT $${params.length}`,
      params,
    );
    const countPromise =
      knownTotal !== undefined
        ? Promise.resolve([{ n: String(knownTotal) }])
        : this.db.query<{ n: string }>(`SELECT count(*) AS n FROM incidents WHERE ${countWhere.join(" AND ")}`, countParams);
    const previousPromise = atOrBefore
      ? this.db.query(`SELECT 1 FROM incidents WHERE ${[...where, atOrBefore].join(" AND ")} LIMIT 1`, params.slice(0, -1))
      : Promise.resolve([]);
    const [rows, count, previous] = await Promise.all([rowsPromise, countPromise, previousPromise]);
    const incidents = rows.map((r) => decodeIncident(r.body));
    const edges = incidents.slice(0, first).map((incident) => ({ cursor: encodeCursor(incident, order, binding), incident }));
    return {
      edges,
      totalCount: Number(count[0]?.n ?? 0),
      hasNextPage: incidents.length > first,
      hasPreviousPage: previous.length > 0,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges.at(-1)?.cursor ?? null,
    };
  }

  /** Counts by severity and status over some tenants. */
  async counts(tenantIds: readonly string[]): Promise<MirrorCounts> {
    const out: MirrorCounts = { total: 0, bySeverity: {}, byStatus: {} };
    if (tenantIds.length === 0) return out;
    const rows = await this.db.query<{ severity_rank: number; status: string; n: string }>(
      `SELECT severity_rank, status, count(*) AS n FROM incidents WHERE tenant_id = ANY($1::text[]) GROUP BY severity_rank, status`,
      [tenantIds],
    );
    const severities = [...SEVERITY_RANK.entries()];
    for (const row of rows) {
      const n = Number(row.n);
      const severity = severities.find(([, rank]) => rank === Number(row.severity_rank))?.[0] ?? "UNKNOWN";
      out.total += n;
      out.bySeverity[severity] = (out.bySeverity[severity] ?? 0) + n;
      out.byStatus[row.status] = (out.byStatus[row.status] ?? 0) + n;
    }
    return out;
  }

  /** Change events after `afterSeq` (oldest first), optionally of some tenants. */
  async changes(afterSeq: number, limit: number, tenantIds?: readonly string[]): Promise<IncidentChange[]> {
    const params: unknown[] = [afterSeq, limit];
    let tenants = "";
    if (tenantIds) {
      params.push(tenantIds);
      tenants = ` AND tenant_id = ANY($3::text[])`;
    }
    const rows = await this.db.query<{ seq: string; tenant_id: string; incident_id: string; kind: IncidentChange["kind"]; changed: string[]; updated_ms: string | null; source: IncidentChange["source"]; at: Date | string }>(
      `SELECT seq, tenant_id, incident_id, kind, changed, updated_ms, source, at FROM incident_changes WHERE seq > $1${tenants} ORDER BY seq LIMIT $2`,
      params,
    );
    return rows.map((r) => ({
      seq: Number(r.seq),
      tenantId: r.tenant_id,
      incidentId: r.incident_id,
      kind: r.kind,
      changed: r.changed,
      lastUpdateTime: r.updated_ms === null ? null : new Date(Number(r.updated_ms)),
      source: r.source,
      at: new Date(r.at),
    }));
  }

  /** Rows in the mirror, for metrics. */
  async size(): Promise<number> {
    const rows = await this.db.query<{ n: string }>(`SELECT count(*) AS n FROM incidents`);
    return Number(rows[0]?.n ?? 0);
  }
}

// ---------------------------------------------------------------------------------------------------
// Rows

interface ExistingRow {
  incident_id: string;
  updated_ms: string;
  body: string;
}

async function putRows(
  tx: SqlExecutor,
  tenantId: string,
  backend: IncidentsBackendName,
  incidents: readonly Incident[],
  source: "sync" | "write",
  listedMs: number,
  keepAlerts: boolean,
): Promise<PutResult> {
  // One row per id, the newest version.
  const byId = new Map<string, Incident>();
  for (const incident of incidents) {
    const held = byId.get(incident.incidentId);
    if (!held || time(held.lastUpdateTime) < time(incident.lastUpdateTime)) byId.set(incident.incidentId, incident);
  }
  const ids = [...byId.keys()];
  const existing = new Map(
    (
      await tx.query<ExistingRow>(`SELECT incident_id, updated_ms, body::text AS body FROM incidents WHERE tenant_id = $1 AND incident_id = ANY($2::text[])`, [
        tenantId,
        ids,
      ])
    ).map((r) => [r.incident_id, r]),
  );
  const rows: unknown[] = [];
  const events: ChangeInput[] = [];
  const touched: string[] = [];
  for (const [id, incident] of byId) {
    const updatedMs = time(incident.lastUpdateTime);
    const held = existing.get(id);
    if (held && Number(held.updated_ms) >= updatedMs) {
      touched.push(id);
      continue;
    }
    let body = incident;
    let changed: string[] = [];
    if (held) {
      const before = decodeIncident(held.body);
      changed = COMPARED.filter((field) => JSON.stringify(before[field]) !== JSON.stringify(incident[field])) as string[];
      // A write's answer may lack the alerts the row holds (Graph PATCH): keep them with the version they belong to.
      if (keepAlerts && incident.alerts === null && before.alerts !== null) body = { ...incident, alerts: before.alerts };
    }
    rows.push(rowOf(tenantId, backend, body, listedMs));
    events.push({ tenantId, incidentId: id, kind: held ? "updated" : "created", changed, updatedMs, source });
  }
  if (rows.length > 0) {
    await tx.query(
      `INSERT INTO incidents (tenant_id, incident_id, id_key, backend, created_ms, updated_ms, severity_rank, status, classification, assignee, name_lc, id_lc, listed_ms, body)
       SELECT r.tenant_id, r.incident_id, r.id_key, r.backend, r.created_ms, r.updated_ms, r.severity_rank, r.status, r.classification, r.assignee, r.name_lc, r.id_lc, r.listed_ms, r.body
         FROM jsonb_to_recordset($1::jsonb) AS r(tenant_id text, incident_id text, id_key text, backend text, created_ms bigint, updated_ms bigint,
              severity_rank smallint, status text, classification text, assignee text, name_lc text, id_lc text, listed_ms bigint, body jsonb)
       ON CONFLICT (tenant_id, incident_id) DO UPDATE SET
         id_key = excluded.id_key, backend = excluded.backend, created_ms = excluded.created_ms, updated_ms = excluded.updated_ms,
         severity_rank = excluded.severity_rank, status = excluded.status, classification = excluded.classification,
         assignee = excluded.assignee, name_lc = excluded.name_lc, id_lc = excluded.id_lc, listed_ms = excluded.listed_ms, body = excluded.body
       WHERE incidents.updated_ms < excluded.updated_ms`,
      [JSON.stringify(rows)],
    );
    await insertChanges(tx, events);
  }
  if (touched.length > 0 && source === "sync") {
    await tx.query(`UPDATE incidents SET listed_ms = $3 WHERE tenant_id = $1 AND incident_id = ANY($2::text[]) AND listed_ms < $3`, [tenantId, touched, listedMs]);
  }
  const created = events.filter((e) => e.kind === "created").length;
  return { created, updated: events.length - created };
}

function rowOf(tenantId: string, backend: IncidentsBackendName, incident: Incident, listedMs: number) {
  const assignee = incident.assignedTo?.trim().toLowerCase() ?? "";
  return {
    tenant_id: tenantId,
    incident_id: incident.incidentId,
    id_key: idKey(incident.incidentId),
    backend,
    created_ms: time(incident.createdTime),
    updated_ms: time(incident.lastUpdateTime),
    severity_rank: SEVERITY_RANK.get(incident.severity) ?? 0,
    status: incident.status,
    classification: incident.classification,
    assignee: assignee === "" ? null : assignee,
    name_lc: incident.name.toLowerCase(),
    id_lc: incident.incidentId.toLowerCase(),
    listed_ms: listedMs,
    body: incident,
  };
}

interface ChangeInput {
  tenantId: string;
  incidentId: string;
  kind: IncidentChange["kind"];
  changed: string[];
  updatedMs: number | null;
  source: IncidentChange["source"];
}

async function insertChanges(tx: SqlExecutor, events: readonly ChangeInput[]): Promise<void> {
  if (events.length === 0) return;
  await tx.query(
    `INSERT INTO incident_changes (tenant_id, incident_id, kind, changed, updated_ms, source)
     SELECT e.tenant_id, e.incident_id, e.kind, ARRAY(SELECT jsonb_array_elements_text(e.changed)), e.updated_ms, e.source
       FROM jsonb_to_recordset($1::jsonb) AS e(tenant_id text, incident_id text, kind text, changed jsonb, updated_ms bigint, source text)`,
    [JSON.stringify(events.map((e) => ({ tenant_id: e.tenantId, incident_id: e.incidentId, kind: e.kind, changed: e.changed, updated_ms: e.updatedMs, source: e.source })))],
  );
}

/** The SET clause that recounts the tenant's rows (the tenant id is `$1`). */
const RECOUNT = `incident_count = (SELECT count(*) FROM incidents WHERE tenant_id = $1)`;

async function recount(tx: SqlExecutor, tenantId: string): Promise<void> {
  await tx.query(`UPDATE incident_sync SET ${RECOUNT}, updated_at = now() WHERE tenant_id = $1`, [tenantId]);
}

// ---------------------------------------------------------------------------------------------------
// Sync state

const STATE_COLUMNS = `tenant_id, backend, watermark_ms, fetched_at, full_fetched_at, sweep_started_at, sweep_resume_ms, sweep_pages, pages_read,
  incident_count, last_attempt_at, last_error, error_at, quiet_polls, lease_owner, lease_until`;

interface StateRow {
  tenant_id: string;
  backend: IncidentsBackendName;
  watermark_ms: string | null;
  fetched_at: Date | string | null;
  full_fetched_at: Date | string | null;
  sweep_started_at: Date | string | null;
  sweep_resume_ms: string | null;
  sweep_pages: number;
  pages_read: string;
  incident_count: number;
  last_attempt_at: Date | string | null;
  last_error: TenantError | string | null;
  error_at: Date | string | null;
  quiet_polls: number;
  lease_owner: string | null;
  lease_until: Date | string | null;
}

function date(value: Date | string | null): Date | null {
  return value === null ? null : new Date(value);
}

function msDate(value: string | number | null): Date | null {
  return value === null ? null : new Date(Number(value));
}

function toState(row: StateRow): SyncState {
  const sweepStarted = date(row.sweep_started_at);
  return {
    tenantId: row.tenant_id,
    backend: row.backend,
    watermark: msDate(row.watermark_ms),
    fetchedAt: date(row.fetched_at),
    fullFetchedAt: date(row.full_fetched_at),
    sweep: sweepStarted ? { startedAt: sweepStarted, resumeFrom: msDate(row.sweep_resume_ms), pages: Number(row.sweep_pages) } : null,
    pagesRead: Number(row.pages_read),
    incidentCount: Number(row.incident_count),
    lastAttemptAt: date(row.last_attempt_at),
    lastError: typeof row.last_error === "string" ? (JSON.parse(row.last_error) as TenantError) : row.last_error,
    errorAt: date(row.error_at),
    quietPolls: Number(row.quiet_polls),
    leaseOwner: row.lease_owner,
    leaseUntil: date(row.lease_until),
  };
}

/** Upserts the tenant's state row with the patch's columns (and the incident count, after a put that created rows). */
async function writeState(tx: SqlExecutor, tenantId: string, backend: IncidentsBackendName, patch: SyncStatePatch, recountRows: boolean): Promise<void> {
  const sets: string[] = ["backend = $2", "updated_at = now()"];
  const params: unknown[] = [tenantId, backend];
  const set = (column: string, value: unknown, cast = "") => {
    params.push(value);
    sets.push(`${column} = $${params.length}${cast}`);
  };
  if (patch.watermark !== undefined) set("watermark_ms", patch.watermark === null ? null : patch.watermark.getTime());
  if (patch.fetchedAt !== undefined) set("fetched_at", patch.fetchedAt);
  if (patch.fullFetchedAt !== undefined) set("full_fetched_at", patch.fullFetchedAt);
  if (patch.sweep !== undefined) {
    set("sweep_started_at", patch.sweep?.startedAt ?? null);
    set("sweep_resume_ms", patch.sweep?.resumeFrom ? patch.sweep.resumeFrom.getTime() : null);
    set("sweep_pages", patch.sweep?.pages ?? 0);
  }
  if (patch.pagesRead !== undefined) {
    params.push(patch.pagesRead);
    sets.push(`pages_read = incident_sync.pages_read + $${params.length}`);
  }
  if (patch.lastAttemptAt !== undefined) set("last_attempt_at", patch.lastAttemptAt);
  if (patch.lastError !== undefined) set("last_error", patch.lastError === null ? null : JSON.stringify(patch.lastError), "::jsonb");
  if (patch.errorAt !== undefined) set("error_at", patch.errorAt);
  if (patch.quietPolls !== undefined) set("quiet_polls", patch.quietPolls);
  if (recountRows) sets.push(RECOUNT);
  // Row first, then the patch: an upsert's DO UPDATE does not run when the INSERT inserts, which would drop
  // the patch (and the count) of a tenant without a state row (a first put, or right after forgetTenant).
  await tx.query(`INSERT INTO incident_sync (tenant_id, backend) VALUES ($1, $2) ON CONFLICT (tenant_id) DO NOTHING`, [tenantId, backend]);
  await tx.query(`UPDATE incident_sync SET ${sets.join(", ")} WHERE tenant_id = $1`, params);
}

// ---------------------------------------------------------------------------------------------------
// Query SQL

function filterSql(spec: FilterSpec | undefined, params: unknown[]): string[] {
  if (!spec) return [];
  const where: string[] = [];
  const add = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  if (spec.severities) where.push(`severity_rank = ANY(${add(spec.severities.map((s) => SEVERITY_RANK.get(s) ?? -1))}::smallint[])`);
  if (spec.statuses) where.push(`status = ANY(${add(spec.statuses)}::text[])`);
  if (spec.classifications) where.push(`classification = ANY(${add(spec.classifications)}::text[])`);
  if (spec.assignee !== undefined) where.push(`assignee = ${add(spec.assignee)}`);
  if (spec.unassigned) where.push(`assignee IS NULL`);
  if (spec.createdAfter !== undefined) where.push(`created_ms >= ${add(spec.createdAfter)}`);
  if (spec.createdBefore !== undefined) where.push(`created_ms < ${add(spec.createdBefore)}`);
  if (spec.updatedAfter !== undefined) where.push(`updated_ms >= ${add(spec.updatedAfter)}`);
  if (spec.updatedBefore !== undefined) where.push(`updated_ms < ${add(spec.updatedBefore)}`);
  if (spec.search !== undefined) {
    const p = add(spec.search);
    // A substring of the name (strpos: no pattern is built from the caller's text) or the whole id.
    where.push(`(strpos(name_lc, ${p}) > 0 OR id_lc = ${p})`);
  }
  return where;
}

/**
 * The ORDER BY of a query's order, and the keyset conditions for "after the cursor" and "at or before it".
 * Ties go by tenant id then `id_key` ascending whatever the direction; SEVERITY's second key is
 * `updated_ms` newest first. Each condition leads with a range on the first column, so the index bounds the scan.
 */
function orderSql(field: ParsedIncidentQuery["order"]["field"], desc: boolean, key: SortKey | undefined, params: unknown[]): { orderBy: string; after?: string; atOrBefore?: string } {
  const column = field === "CREATED_TIME" ? "created_ms" : field === "SEVERITY" ? "severity_rank" : "updated_ms";
  const dir = desc ? "DESC" : "ASC";
  const orderBy = field === "SEVERITY" ? `severity_rank ${dir}, updated_ms DESC, tenant_id, id_key` : `${column} ${dir}, tenant_id, id_key`;
  if (!key) return { orderBy };
  const add = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  const p = add(key.primary);
  const t = add(key.tenantId);
  const k = add(idKey(key.incidentId));
  const beyond = desc ? "<" : ">";
  const before = desc ? ">" : "<";
  if (field !== "SEVERITY") {
    return {
      orderBy,
      after: `(${column} ${beyond}= ${p} AND (${column} ${beyond} ${p} OR (tenant_id, id_key) > (${t}, ${k})))`,
      atOrBefore: `(${column} ${before}= ${p} AND (${column} ${before} ${p} OR (tenant_id, id_key) <= (${t}, ${k})))`,
    };
  }
  const s = add(key.secondary);
  return {
    orderBy,
    after: `(severity_rank ${beyond}= ${p} AND (severity_rank ${beyond} ${p} OR updated_ms < ${s} OR (updated_ms = ${s} AND (tenant_id, id_key) > (${t}, ${k}))))`,
    atOrBefore: `(severity_rank ${before}= ${p} AND (severity_rank ${before} ${p} OR updated_ms > ${s} OR (updated_ms = ${s} AND (tenant_id, id_key) <= (${t}, ${k}))))`,
  };
}

// ---------------------------------------------------------------------------------------------------
// Bodies

/** Keys whose string values are timestamps, anywhere in an incident (comment, alert, device). */
const DATE_KEYS = new Set(["createdTime", "lastUpdateTime", "resolvedTime", "firstActivity", "lastActivity", "firstSeen"]);
const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** An incident from its JSON body, Dates restored. */
export function decodeIncident(text: string): Incident {
  return JSON.parse(text, (key, raw: unknown) => (DATE_KEYS.has(key) && typeof raw === "string" && ISO_TIMESTAMP.test(raw) ? new Date(raw) : raw)) as Incident;
}

export type { IncidentAlert };
