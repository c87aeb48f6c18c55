import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import { TokenAcquisitionError } from "../auth/token-errors.js";
import { UpstreamError, type AlertsLoad, type CallOptions, type IncidentsBackendClient, type ListResult } from "../defender/backend-client.js";
import type { Incident, IncidentAlert, IncidentPatch, IncidentsBackendName } from "../defender/incident.js";
import type { IncidentPage, ParsedIncidentQuery } from "./incident-query.js";
import { failingSinceSuccess, hasData, type IncidentMirror, type MirrorCounts, type SyncState, type SyncStatePatch } from "./mirror.js";
import { deadlineExceeded, incomplete, isLastingCode, isTransientCode, toTenantError, type TenantError, type TenantOutcome } from "./outcome.js";

/** Which tenant to read, and from which backend (the tenant's override or the deployment default). */
export interface IncidentTarget {
  tenantId: string;
  backend: IncidentsBackendName;
}

/** Per-call options: how long this caller is willing to wait, and how fresh it wants the data. */
export interface LoadOptions {
  /** The operation's signal (request closed, deadline): ends this caller's wait, never a shared sync. */
  signal?: AbortSignal;
  /** Wall-clock time (`Date.now()` scale) after which this caller stops waiting. */
  deadline?: Date | number;
  /**
   * The oldest data this caller accepts, ms: a tenant synced longer ago is synced now (front of the queue)
   * and waited for, up to the deadline. Undefined: the mirror as it is (a tenant never synced is still
   * waited for, until its first page is in).
   */
  maxAgeMs?: number;
}

/** How one tenant stands for a query: its outcome, and whether its mirrored incidents may be served. */
export interface TenantLoad {
  /** Normalised (trimmed, lower case). */
  tenantId: string;
  outcome: TenantOutcome;
  /** Whether the query may show the tenant's mirrored incidents (false: none, e.g. consent revoked). */
  usable: boolean;
}

/** An incident whose alerts a query wants: its id and the version the query holds. */
export interface AlertsWanted {
  incidentId: string;
  lastUpdateTime: Date;
}

/** A tenant's sync state as queries report it. */
export type SyncPhase = "FRESH" | "STALE" | "SYNCING" | "FAILING" | "NEVER_SYNCED";

export interface IncidentServiceOptions {
  clients: Record<IncidentsBackendName, IncidentsBackendClient>;
  mirror: IncidentMirror;
  /** A tenant synced within this long is fresh: no sync for it, and the engine's poll interval. Default 30 s. */
  freshnessMs?: number;
  /** A delta asks from the watermark minus this much (clock skew, sub-millisecond times). Default 1 s. */
  overlapMs?: number;
  /** How old mirrored incidents may be and still be served, flagged, while the tenant's syncs fail transiently. Default 15 min. */
  maxStaleMs?: number;
  /** Lists a tenant in full again after this long, so incidents gone upstream leave the mirror. Default 6 h. */
  fullRefreshMs?: number;
  /** List pages one sync reads at most; a larger first load goes on at the next sync. Default 100. */
  maxPagesPerRefresh?: number;
  /** Upper bound of one sync. Default 120 s. */
  refreshTimeoutMs?: number;
  /** How long a lasting failure is given again without any call (per replica). Default 0. */
  failureMemoryMs?: number;
  /** Incidents last updated longer ago than this are not mirrored (INCIDENT_WINDOW_DAYS). Default 90 days. */
  windowMs?: number;
  /** A tenant's sync lease (one replica syncs a tenant at a time); renewed while a sync runs. Default 30 s. */
  leaseMs?: number;
  /**
   * How long a query waits for a never-synced tenant's first sync run before it answers with the pages
   * committed so far (at least the first). Default 2 s.
   */
  firstLoadWaitMs?: number;
  /** This replica's name in leases. Default a random UUID. */
  owner?: string;
  /** Told when a query served a tenant whose data is stale (the sync engine moves it up its queue). */
  onStale?: (target: IncidentTarget) => void;
  /** The clock for freshness, Unix ms. Default `Date.now`. */
  now?: () => number;
  logger?: Logger;
}

/** Counters since the service was created, for metrics. */
export interface IncidentServiceStats {
  loads: number;
  /** Loads answered from the mirror without waiting on a sync. */
  cacheHits: number;
  /** Loads that joined a sync another caller (or the engine) had started. */
  coalesced: number;
  /** Syncs that ran here (first loads, deltas, sweeps). */
  refreshes: number;
  fullRefreshes: number;
  deltaRefreshes: number;
  refreshFailures: number;
  partialLists: number;
  /** Upstream list calls the syncs made. */
  upstreamCalls: number;
  /** List pages committed to the mirror. */
  pagesCommitted: number;
  staleServed: number;
  deadlineExceeded: number;
  failuresRemembered: number;
  /** Syncs skipped because another replica held the tenant's lease. */
  leaseBusy: number;
  alertsFromCache: number;
  alertsFetched: number;
}

const DEFAULTS = {
  freshnessMs: 30_000,
  overlapMs: 1_000,
  maxStaleMs: 15 * 60_000,
  fullRefreshMs: 6 * 3_600_000,
  refreshTimeoutMs: 120_000,
  maxPagesPerRefresh: 100,
  windowMs: 90 * 86_400_000,
  leaseMs: 30_000,
  firstLoadWaitMs: 2_000,
};

/** How often a caller waiting on another replica's sync looks at the tenant's state. */
const FOREIGN_POLL_MS = 200;

interface RememberedFailure {
  until: number;
  error: TenantError;
  thrown: unknown;
}

/** How a sync went. */
export type SyncResult =
  | { ran: true; ok: true; stopped?: TenantError; changed: number }
  | { ran: true; ok: false; error: TenantError }
  | { ran: false };

/** A sync under way: settles `firstPage` when its first page is committed (or it ends), `done` when it ends. */
interface SyncFlight {
  /** Service clock. */
  startedAt: number;
  /** Real time (`performance.now`), for waits. */
  startedPerf: number;
  firstPage: Promise<void>;
  done: Promise<SyncResult>;
}

/**
 * Incidents per tenant, from the mirror (mirror.ts), kept by syncs (this class) that the sync engine
 * (sync-engine.ts) schedules in the background and that queries start when they must wait.
 *
 * A sync of a tenant, under the tenant's lease so one replica syncs it at a time:
 * - First load (no full list yet): lists from the window's start (or where the last sync stopped),
 *   oldest first, committing each page with the sweep's resume point, at most `maxPagesPerRefresh` pages;
 *   the next sync goes on from there, nothing read twice.
 * - Then deltas from the watermark (minus `overlapMs`), each page committed; every `fullRefreshMs` a full
 *   sweep follows with the pages left, marking the rows it lists; at its end rows it did not list are gone
 *   upstream and removed (with `removed` events).
 * - A failure: transient ones keep the mirror (served, flagged, up to `maxStaleMs`); others (consent
 *   revoked, role missing, tenant gone) drop the tenant's rows, so data the app may no longer read is not
 *   served. Lasting ones are remembered for `failureMemoryMs` (no call until then, in this replica) and
 *   recorded in the tenant's state for every replica.
 *
 * Loads (what a query does per tenant) never wait on upstream unless they must: a tenant never synced is
 * waited for until its first page is committed; a caller's `maxAgeMs` waits for a sync of an older tenant;
 * otherwise the mirror is served as it is and a stale tenant is handed to `onStale`.
 */
export class IncidentService {
  private readonly clients: Record<IncidentsBackendName, IncidentsBackendClient>;
  readonly mirror: IncidentMirror;
  readonly freshnessMs: number;
  private readonly overlapMs: number;
  private readonly maxStaleMs: number;
  private readonly fullRefreshMs: number;
  private readonly refreshTimeoutMs: number;
  private readonly maxPagesPerRefresh: number;
  private readonly failureMemoryMs: number;
  private readonly windowMs: number;
  private readonly leaseMs: number;
  private readonly firstLoadWaitMs: number;
  readonly owner: string;
  private readonly onStale: ((target: IncidentTarget) => void) | undefined;
  readonly now: () => number;
  private readonly logger: Logger | undefined;
  private readonly flights = new Map<string, SyncFlight>();
  private readonly failures = new Map<string, RememberedFailure>();
  private readonly failureGenerations = new Map<string, number>();
  private closed = false;
  /** Aborted by `close`: running syncs stop waiting (rate slots, Retry-After) and end with what they committed. */
  private readonly closing = new AbortController();
  private readonly counters: IncidentServiceStats = {
    loads: 0,
    cacheHits: 0,
    coalesced: 0,
    refreshes: 0,
    fullRefreshes: 0,
    deltaRefreshes: 0,
    refreshFailures: 0,
    partialLists: 0,
    upstreamCalls: 0,
    pagesCommitted: 0,
    staleServed: 0,
    deadlineExceeded: 0,
    failuresRemembered: 0,
    leaseBusy: 0,
    alertsFromCache: 0,
    alertsFetched: 0,
  };

  constructor(options: IncidentServiceOptions) {
    this.clients = options.clients;
    this.mirror = options.mirror;
    this.freshnessMs = options.freshnessMs ?? DEFAULTS.freshnessMs;
    this.overlapMs = options.overlapMs ?? DEFAULTS.overlapMs;
    this.maxStaleMs = options.maxStaleMs ?? DEFAULTS.maxStaleMs;
    this.fullRefreshMs = options.fullRefreshMs ?? DEFAULTS.fullRefreshMs;
    this.refreshTimeoutMs = options.refreshTimeoutMs ?? DEFAULTS.refreshTimeoutMs;
    this.maxPagesPerRefresh = Math.max(1, Math.floor(options.maxPagesPerRefresh ?? DEFAULTS.maxPagesPerRefresh));
    this.failureMemoryMs = Math.max(0, options.failureMemoryMs ?? 0);
    this.windowMs = options.windowMs ?? DEFAULTS.windowMs;
    this.leaseMs = options.leaseMs ?? DEFAULTS.leaseMs;
    this.firstLoadWaitMs = options.firstLoadWaitMs ?? DEFAULTS.firstLoadWaitMs;
    this.owner = options.owner ?? randomUUID();
    this.onStale = options.onStale;
    this.now = options.now ?? Date.now;
    this.logger = options.logger?.child({ component: "incident-service" });
  }

  // ---------------------------------------------------------------------------------------------------
  // Queries

  /** How a tenant stands for a query (see the class comment for when it waits). Never throws for the tenant. */
  async loadTenant(target: IncidentTarget, options: LoadOptions = {}, known?: { state: SyncState | undefined }): Promise<TenantLoad> {
    const started = performance.now();
    const tenantId = normaliseTenantId(target.tenantId);
    const elapsed = () => Math.round(performance.now() - started);
    this.counters.loads++;
    try {
      let state = known ? known.state : await this.mirror.state(tenantId);
      if (state && state.backend !== target.backend) {
        // The operator moved the tenant to the other backend: its mirror starts over.
        await this.mirror.forgetTenant(tenantId);
        state = undefined;
      }
      const remembered = this.recall(tenantId, target.backend);
      if (remembered) {
        this.counters.failuresRemembered++;
        return failedLoad(tenantId, remembered.error, elapsed());
      }
      // Never synced: nothing to serve yet, or its first sync run is still under way (no run has ended:
      // every end, complete or not, failed or not, records `lastAttemptAt`) — that run is waited for.
      const cold = !hasData(state) || (state!.fetchedAt === null && state!.lastAttemptAt === null);
      const tooOld = options.maxAgeMs !== undefined && !cold && (state!.fetchedAt === null || this.now() - state!.fetchedAt.getTime() > options.maxAgeMs);
      if (!cold && !tooOld) {
        this.counters.cacheHits++;
        // Only STALE: a first load under way is the engine's anyway, and a failing tenant waits out its back-off.
        if (this.phase(state!) === "STALE") this.onStale?.(target);
        return this.fromState(state!, { fromCache: true, durationMs: elapsed() });
      }
      if (isOver(options)) {
        this.counters.deadlineExceeded++;
        return state ? this.fromState(state, { fromCache: true, durationMs: elapsed(), error: deadlineExceeded() }) : failedLoad(tenantId, deadlineExceeded(), elapsed());
      }
      const flight = this.sync(target, options.deadline);
      const firstPageOnly = cold && !tooOld;
      // A tenant never synced: its first sync run, or — when that takes longer than `firstLoadWaitMs` — its
      // first page, so a large tenant's first query is not held up by the rest of its pages.
      const until = firstPageOnly
        ? Promise.race([flight.firstPage.then(() => sleep(Math.max(0, this.firstLoadWaitMs - (performance.now() - flight.startedPerf)))).then((): SyncResult => ({ ran: true, ok: true, changed: 0 })), flight.done])
        : flight.done;
      const waited = await this.wait(until, options, tenantId, flight.startedAt, firstPageOnly);
      if (waited === "deadline") this.counters.deadlineExceeded++;
      const after = await this.mirror.state(tenantId);
      const result = waited === "deadline" ? undefined : waited;
      if (result && result.ran && !result.ok) {
        // Transient: the mirror (if any) is still served, flagged; otherwise nothing.
        return after && hasData(after) && isTransientCode(result.error.code)
          ? this.fromState(after, { fromCache: true, durationMs: elapsed(), error: result.error })
          : failedLoad(tenantId, result.error, elapsed());
      }
      if (!after || !hasData(after)) {
        if (waited === "deadline") return failedLoad(tenantId, deadlineExceeded(), elapsed());
        return after?.lastError ? failedLoad(tenantId, after.lastError, elapsed()) : this.fromState(after ?? emptyState(tenantId, target.backend), { fromCache: false, durationMs: elapsed() });
      }
      return this.fromState(after, {
        fromCache: waited === "deadline",
        durationMs: elapsed(),
        ...(waited === "deadline" ? { error: deadlineExceeded() } : result && result.ran && result.ok && result.stopped ? { error: result.stopped } : {}),
      });
    } catch (error) {
      // Only a bug (or the database) gets here; still, one tenant never fails a query.
      return failedLoad(tenantId, toTenantError(error, { tenantId, logger: this.logger }), elapsed());
    }
  }

  /**
   * Several tenants, settled per tenant, their states read in one query (a 1,000-tenant page costs one
   * state read, not a thousand). A target's own `maxAgeMs` overrides the options'.
   */
  async loadTenants(targets: readonly (IncidentTarget & { maxAgeMs?: number | undefined })[], options: LoadOptions = {}): Promise<TenantLoad[]> {
    let states: Map<string, SyncState> | undefined;
    try {
      states = await this.mirror.states(targets.map((t) => normaliseTenantId(t.tenantId)));
    } catch {
      // Each tenant reads its own (and reports the failure) below.
    }
    return Promise.all(
      targets.map(({ maxAgeMs, ...target }) =>
        this.loadTenant(target, maxAgeMs === undefined ? options : { ...options, maxAgeMs }, states ? { state: states.get(normaliseTenantId(target.tenantId)) } : undefined),
      ),
    );
  }

  /**
   * One page over the mirrored incidents of the given (usable) tenants. Without a filter the total is the
   * tenants' mirrored counts (`loads`, from their sync states), so the page costs no count query.
   */
  page(tenantIds: readonly string[], query: ParsedIncidentQuery, loads?: readonly TenantLoad[]): Promise<IncidentPage> {
    const counted = loads && !query.filter ? new Map(loads.map((l) => [l.tenantId, l.outcome.incidentsMirrored])) : undefined;
    let knownTotal: number | undefined;
    if (counted && tenantIds.every((id) => counted.get(id) !== undefined)) knownTotal = tenantIds.reduce((sum, id) => sum + counted.get(id)!, 0);
    return this.mirror.page(tenantIds, query, knownTotal);
  }

  /** Counts by severity and status of the given tenants' mirrored incidents. */
  counts(tenantIds: readonly string[]): Promise<MirrorCounts> {
    return this.mirror.counts(tenantIds);
  }

  /** What a tenant's state says to a query: fresh, stale, syncing (first load), failing, never synced. */
  phase(state: SyncState | undefined): SyncPhase {
    if (!state || !hasData(state)) return state?.lastError ? "FAILING" : "NEVER_SYNCED";
    if (failingSinceSuccess(state)) return "FAILING";
    if (state.fullFetchedAt === null) return "SYNCING";
    return state.fetchedAt !== null && this.now() - state.fetchedAt.getTime() < this.freshnessMs ? "FRESH" : "STALE";
  }

  /**
   * One incident: from the mirror while the tenant is fresh and holds it, else from the backend (and then
   * into the mirror). Resolves undefined when it does not exist.
   *
   * @throws UpstreamError or TokenAcquisitionError from the backend
   */
  async getIncident(target: IncidentTarget, incidentId: string, options: LoadOptions = {}): Promise<Incident | undefined> {
    const tenantId = normaliseTenantId(target.tenantId);
    const id = incidentId.trim();
    const state = await this.mirror.state(tenantId);
    const mirrored = state && state.backend === target.backend;
    if (mirrored && this.phase(state) === "FRESH") {
      const held = await this.mirror.get(tenantId, id);
      if (held) {
        this.counters.cacheHits++;
        return held;
      }
    }
    this.throwRemembered(tenantId, target.backend);
    const incident = await this.client(target.backend).getIncident(tenantId, id, callOptions(options));
    if (incident && mirrored) await this.mirror.put(tenantId, target.backend, [incident], { source: "sync", listedMs: this.now(), keepAlerts: true });
    return incident;
  }

  /**
   * Writes an incident change through the backend, then puts the answer into the mirror at once (a `write`
   * event); the tenant's watermark and freshness stay as they were.
   *
   * @throws UpstreamError or TokenAcquisitionError from the backend
   */
  async updateIncident(target: IncidentTarget, incidentId: string, patch: IncidentPatch, options: LoadOptions = {}): Promise<Incident> {
    const tenantId = normaliseTenantId(target.tenantId);
    const incident = await this.client(target.backend).updateIncident(tenantId, incidentId.trim(), patch, callOptions(options));
    const state = await this.mirror.state(tenantId);
    if (state && state.backend === target.backend) {
      await this.mirror.put(tenantId, target.backend, [incident], { source: "write", listedMs: this.now(), keepAlerts: true }).catch((error: unknown) => {
        this.logger?.warn({ err: error, tenantId }, "could not write the updated incident to the mirror; the next sync brings it");
      });
    }
    return incident;
  }

  /**
   * The alerts of some of one tenant's incidents, settled per incident: from the mirror when it holds them
   * with a version at least as new as the one asked about, else read through the backend (then kept with
   * that version in the mirror). Never rejects for the tenant's failure.
   */
  async loadAlerts(target: IncidentTarget, wanted: readonly AlertsWanted[], options: LoadOptions = {}): Promise<Array<IncidentAlert[] | Error>> {
    const tenantId = normaliseTenantId(target.tenantId);
    const { backend } = target;
    const results: Array<IncidentAlert[] | Error> = new Array(wanted.length);
    const held = await this.mirror.getMany(
      tenantId,
      wanted.map((w) => w.incidentId.trim()),
    );
    const missing: number[] = [];
    wanted.forEach((w, i) => {
      const cached = held.get(w.incidentId.trim());
      if (cached && cached.backend === backend && cached.alerts !== null && cached.lastUpdateTime.getTime() >= w.lastUpdateTime.getTime()) {
        this.counters.alertsFromCache++;
        results[i] = cached.alerts;
      } else {
        missing.push(i);
      }
    });
    if (missing.length === 0) return results;

    const remembered = this.recall(tenantId, backend);
    if (remembered) {
      this.counters.failuresRemembered++;
      const error = rethrowable(remembered);
      for (const i of missing) results[i] = asError(error);
      return results;
    }

    const client = this.client(backend);
    const ids = missing.map((i) => wanted[i]!.incidentId.trim());
    const call = callOptions(options);
    const loads: AlertsLoad[] = client.loadAlerts
      ? await client.loadAlerts(tenantId, ids, call)
      : await Promise.all(
          ids.map((id) =>
            client.getIncident(tenantId, id, call).then(
              (incident): AlertsLoad => ({ ok: true, incident }),
              (error: unknown): AlertsLoad => ({ ok: false, error }),
            ),
          ),
        );
    this.counters.alertsFetched += ids.length;
    const read: Incident[] = [];
    loads.forEach((load, k) => {
      const i = missing[k]!;
      const id = ids[k]!;
      if (!load.ok) results[i] = asError(load.error);
      else if (!load.incident) results[i] = new UpstreamError("NOT_FOUND", `incident ${id} no longer exists in tenant ${tenantId}`, { tenantId, backend });
      else if (load.incident.alerts === null) {
        results[i] = new UpstreamError("UPSTREAM_BAD_RESPONSE", `the ${backend} API answered incident ${id} of tenant ${tenantId} without its alerts`, { tenantId, backend });
      } else {
        results[i] = load.incident.alerts;
        read.push(load.incident);
      }
    });
    if (read.length > 0) {
      await this.mirror.putAlerts(tenantId, read).catch((error: unknown) => this.logger?.warn({ err: error, tenantId }, "could not keep alerts in the mirror"));
    }
    return results;
  }

  /** Drops a tenant's mirror and remembered failures (tenant removed, backend changed by an operator). */
  async forget(tenantId: string): Promise<void> {
    const key = normaliseTenantId(tenantId);
    this.forgetFailures(key);
    await this.mirror.forgetTenant(key).catch((error: unknown) => this.logger?.warn({ err: error, tenantId: key }, "could not drop the tenant's mirror"));
  }

  /** Forgets the tenant's remembered lasting failures (one backend, or both), in this replica. */
  forgetFailures(tenantId: string, backend?: IncidentsBackendName): void {
    const id = normaliseTenantId(tenantId);
    for (const b of backend ? [backend] : (Object.keys(this.clients) as IncidentsBackendName[])) this.failures.delete(`${id}|${b}`);
    this.failureGenerations.set(id, (this.failureGenerations.get(id) ?? 0) + 1);
  }

  stats(): IncidentServiceStats {
    return { ...this.counters };
  }

  /** Tenants this replica is syncing right now. */
  get syncing(): number {
    return this.flights.size;
  }

  /** Stops starting syncs and waits for the running ones; then releases this replica's leases. */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort(new DOMException("the server is shutting down", "AbortError"));
    await Promise.all([...this.flights.values()].map((f) => f.done.catch(() => undefined)));
    await this.mirror.releaseAll(this.owner).catch(() => undefined);
  }

  // ---------------------------------------------------------------------------------------------------
  // Syncs

  /** Whether a lasting failure of the tenant is remembered now (the engine skips it). */
  remembers(target: IncidentTarget): boolean {
    return this.recall(normaliseTenantId(target.tenantId), target.backend) !== undefined;
  }

  /**
   * The tenant's sync: the running one (joined), else a new one. Bounded by the caller's deadline when it
   * starts one (at most `refreshTimeoutMs`), so waits (rate slots, Retry-After) that cannot fit end in time.
   */
  sync(target: IncidentTarget, callerDeadline?: Date | number): SyncFlight {
    const tenantId = normaliseTenantId(target.tenantId);
    const key = `${tenantId}|${target.backend}`;
    const running = this.flights.get(key);
    if (running) {
      this.counters.coalesced++;
      return running;
    }
    let signalFirstPage!: () => void;
    const firstPage = new Promise<void>((resolve) => (signalFirstPage = resolve));
    const deadline = Math.min(callerDeadline === undefined ? Number.POSITIVE_INFINITY : +callerDeadline, Date.now() + this.refreshTimeoutMs);
    const done = this.runSync(tenantId, target.backend, deadline, signalFirstPage)
      .catch((error: unknown): SyncResult => ({ ran: true, ok: false, error: toTenantError(error, { tenantId, logger: this.logger }) }))
      .finally(() => this.flights.delete(key));
    const flight: SyncFlight = { startedAt: this.now(), startedPerf: performance.now(), firstPage, done };
    this.flights.set(key, flight);
    return flight;
  }

  private async runSync(tenantId: string, backend: IncidentsBackendName, deadline: number, firstPage: () => void): Promise<SyncResult> {
    if (this.closed) return { ran: false };
    if (!(await this.mirror.tryLease(tenantId, backend, this.owner, this.leaseMs))) {
      this.counters.leaseBusy++;
      return { ran: false };
    }
    const renew = setInterval(() => {
      void this.mirror.tryLease(tenantId, backend, this.owner, this.leaseMs).catch(() => undefined);
    }, Math.max(50, Math.floor(this.leaseMs / 3)));
    renew.unref();
    try {
      return await this.fetchAndStore(tenantId, backend, deadline, firstPage);
    } finally {
      clearInterval(renew);
      await this.mirror.releaseLease(tenantId, this.owner).catch(() => undefined);
    }
  }

  private async fetchAndStore(tenantId: string, backend: IncidentsBackendName, deadline: number, firstPage: () => void): Promise<SyncResult> {
    const startedAt = this.now();
    const generation = this.failureGenerations.get(tenantId) ?? 0;
    const signal = AbortSignal.any([AbortSignal.timeout(this.refreshTimeoutMs), this.closing.signal]);
    const client = this.client(backend);
    let state = (await this.mirror.state(tenantId)) ?? emptyState(tenantId, backend);
    if (state.backend !== backend) {
      await this.mirror.forgetTenant(tenantId);
      state = emptyState(tenantId, backend);
    }
    const windowStart = startedAt - this.windowMs;
    let pagesLeft = this.maxPagesPerRefresh;
    let changed = 0;
    let mode: "first" | "delta" = state.fullFetchedAt === null ? "first" : "delta";
    this.counters.refreshes++;
    this.counters[mode === "first" ? "fullRefreshes" : "deltaRefreshes"]++;

    /** One list, each page committed with `pageState(resumeFrom)`. Lasting failures after some pages throw. */
    const list = async (from: number | null, pageState: (resumeFrom: Date | null) => SyncStatePatch, listedMs: number): Promise<ListResult> => {
      // The window's start goes as the deltas' filter does (`lastUpdateTime ge`: documented for the Defender
      // API; Graph documents `$filter` on lastUpdateDateTime, `ge` on it is assumed — see the README).
      const since = from === null ? windowStart : Math.max(windowStart, from);
      const listed = await client.listIncidents(tenantId, {
        updatedSince: new Date(since),
        maxPages: pagesLeft,
        signal,
        deadline,
        onPage: async (page) => {
          const put = await this.mirror.put(tenantId, backend, page.incidents, { source: "sync", listedMs, state: { ...pageState(page.resumeFrom), pagesRead: 1 } });
          changed += put.created + put.updated;
          this.counters.pagesCommitted++;
          firstPage();
        },
      });
      pagesLeft -= listed.calls;
      this.counters.upstreamCalls += listed.calls;
      if (!listed.complete) this.counters.partialLists++;
      if (listed.stoppedBy !== undefined && !isTransientCode(this.stopError(tenantId, backend, signal, listed.stoppedBy).code)) throw listed.stoppedBy;
      return listed;
    };

    try {
      let stopped: ListResult | undefined;
      if (mode === "first") {
        const sweep = state.sweep ?? { startedAt: new Date(startedAt), resumeFrom: null, pages: 0 };
        let pages = sweep.pages;
        const from = sweep.resumeFrom === null ? null : sweep.resumeFrom.getTime();
        const listed = await list(from, (resumeFrom) => ({ sweep: { startedAt: sweep.startedAt, resumeFrom: later(sweep.resumeFrom, resumeFrom), pages: ++pages } }), sweep.startedAt.getTime());
        if (listed.complete) {
          const watermark = later(state.watermark, listed.resumeFrom);
          await this.mirror.patchState(tenantId, backend, { sweep: null, fullFetchedAt: sweep.startedAt, fetchedAt: new Date(startedAt), watermark, ...success(startedAt, changed, state) });
        } else {
          stopped = listed;
          await this.mirror.patchState(tenantId, backend, { sweep: { startedAt: sweep.startedAt, resumeFrom: later(sweep.resumeFrom, listed.resumeFrom), pages }, lastAttemptAt: new Date(startedAt) });
        }
      } else {
        const from = state.watermark === null ? null : state.watermark.getTime() - this.overlapMs;
        const delta = await list(from, (resumeFrom) => ({ watermark: later(state.watermark, resumeFrom) }), startedAt);
        if (!delta.complete) {
          stopped = delta;
          await this.mirror.patchState(tenantId, backend, { lastAttemptAt: new Date(startedAt) });
        } else {
          await this.mirror.patchState(tenantId, backend, { watermark: later(state.watermark, delta.resumeFrom), fetchedAt: new Date(startedAt), ...success(startedAt, changed, state) });
          const due = state.sweep !== null || startedAt - state.fullFetchedAt!.getTime() >= this.fullRefreshMs;
          if (due && pagesLeft > 0) await this.periodicSweep(tenantId, backend, state, startedAt, list);
        }
      }
      this.failures.delete(`${tenantId}|${backend}`);
      this.logger?.debug({ tenantId, backend, mode, changed, complete: stopped === undefined }, "tenant incidents synced");
      if (!stopped) return { ran: true, ok: true, changed };
      if (stopped.stoppedBy === undefined) {
        const after = await this.mirror.state(tenantId);
        return { ran: true, ok: true, changed, stopped: incomplete(after?.incidentCount ?? 0) };
      }
      const error = this.stopError(tenantId, backend, signal, stopped.stoppedBy);
      // Shutting down mid-list (as in the catch below): the pages read stay, the next start goes on; nothing failed.
      if (this.closing.signal.aborted) return { ran: true, ok: true, changed, stopped: error };
      this.logFailure(tenantId, backend, mode, stopped.stoppedBy, error);
      // A caller's deadline is not the tenant's failure: no back-off, the engine goes on at its next look.
      if (error.code !== "DEADLINE_EXCEEDED") await this.mirror.patchState(tenantId, backend, { lastError: error, errorAt: new Date(this.now()) });
      return { ran: true, ok: true, changed, stopped: error };
    } catch (caught) {
      mode = mode === "first" ? "first" : "delta";
      const error = this.stopError(tenantId, backend, signal, caught);
      // Shutting down: what was committed stays, and the next start goes on from it; nothing failed.
      if (this.closing.signal.aborted) return { ran: true, ok: false, error };
      this.counters.refreshFailures++;
      this.logFailure(tenantId, backend, mode, caught, error);
      if (!isTransientCode(error.code)) await this.mirror.forgetTenant(tenantId).catch(() => undefined);
      // A caller's deadline (the sync ran under the query that started it) is not the tenant's failure: the
      // attempt is noted, no error, so the engine takes the tenant up again at once rather than after a back-off.
      const recorded: SyncStatePatch =
        error.code === "DEADLINE_EXCEEDED" ? { lastAttemptAt: new Date(startedAt) } : { lastError: error, errorAt: new Date(this.now()), lastAttemptAt: new Date(startedAt) };
      await this.mirror.patchState(tenantId, backend, recorded).catch(() => undefined);
      this.remember(tenantId, backend, error, caught, generation);
      return { ran: true, ok: false, error };
    }
  }

  /** The periodic full sweep after a delta: marks what it lists; at its end the unlisted rows leave. */
  private async periodicSweep(
    tenantId: string,
    backend: IncidentsBackendName,
    state: SyncState,
    startedAt: number,
    list: (from: number | null, pageState: (resumeFrom: Date | null) => SyncStatePatch, listedMs: number) => Promise<ListResult>,
  ): Promise<void> {
    const sweep = state.sweep ?? { startedAt: new Date(startedAt), resumeFrom: null, pages: 0 };
    let pages = sweep.pages;
    try {
      const from = sweep.resumeFrom === null ? null : sweep.resumeFrom.getTime();
      const listed = await list(from, (resumeFrom) => ({ sweep: { startedAt: sweep.startedAt, resumeFrom: later(sweep.resumeFrom, resumeFrom), pages: ++pages } }), sweep.startedAt.getTime());
      if (listed.complete) {
        await this.mirror.removeUnlisted(tenantId, sweep.startedAt.getTime());
        await this.mirror.patchState(tenantId, backend, { sweep: null, fullFetchedAt: sweep.startedAt });
      } else {
        await this.mirror.patchState(tenantId, backend, { sweep: { startedAt: sweep.startedAt, resumeFrom: later(sweep.resumeFrom, listed.resumeFrom), pages } });
      }
    } catch (error) {
      // The delta is in; a failure of the periodic sweep only delays it (pages kept).
      this.logger?.warn({ tenantId, backend, code: toTenantError(error).code }, "periodic full list of the tenant stopped; it goes on at the next sync");
    }
  }

  /** Settles with the flight's promise, "deadline" when the caller's signal or deadline comes first. */
  private async wait(promise: Promise<SyncResult>, options: LoadOptions, tenantId: string, flightStartedAt: number, firstPageOnly: boolean): Promise<"deadline" | SyncResult> {
    const outcome = await raceDeadline(promise, options);
    // Another replica holds the tenant: wait for its progress in the shared state instead.
    if (outcome !== "deadline" && !outcome.ran) return this.waitForeign(tenantId, options, flightStartedAt, firstPageOnly);
    return outcome;
  }

  /** Polls the tenant's state until another replica's sync got as far as this caller needs, or the deadline. */
  private async waitForeign(tenantId: string, options: LoadOptions, since: number, firstPageOnly: boolean): Promise<"deadline" | SyncResult> {
    // A first load is waited for as a local one is: until its run ends, or `firstLoadWaitMs` once a page is in.
    const firstLoadUntil = Date.now() + this.firstLoadWaitMs;
    for (;;) {
      const state = await this.mirror.state(tenantId);
      if (state) {
        const enough = firstPageOnly
          ? state.fetchedAt !== null || (hasData(state) && Date.now() >= firstLoadUntil)
          : // As recent as this caller asked (the holder's run may have started before this caller's wait).
            state.fetchedAt !== null && (options.maxAgeMs === undefined ? state.fetchedAt.getTime() >= since - this.overlapMs : this.now() - state.fetchedAt.getTime() <= options.maxAgeMs);
        if (enough) return { ran: true, ok: true, changed: 0 };
        if (state.errorAt !== null && state.errorAt.getTime() >= since && state.lastError) return { ran: true, ok: false, error: state.lastError };
        if (state.leaseOwner === null || (state.leaseUntil !== null && state.leaseUntil.getTime() < Date.now())) {
          // The holder finished without the progress we need, or died and its lease ran out: sync here.
          const outcome = await raceDeadline(this.sync({ tenantId, backend: state.backend }, options.deadline).done, options);
          if (outcome === "deadline" || outcome.ran) return outcome;
          // Another replica took the lease meanwhile: go on watching its progress.
        }
      }
      const slept = await raceDeadline(sleep(FOREIGN_POLL_MS), options);
      if (slept === "deadline") return "deadline";
    }
  }

  /** The outcome a tenant's state gives a query. */
  private fromState(state: SyncState, how: { fromCache: boolean; durationMs: number; error?: TenantError }): TenantLoad {
    const { tenantId } = state;
    const phase = this.phase(state);
    const complete = state.fullFetchedAt !== null;
    const fetchedAt = state.fetchedAt ?? state.sweep?.startedAt ?? null;
    let error = how.error;
    if (!error && phase === "FAILING") error = state.lastError ?? undefined;
    if (!error && !complete && hasData(state)) error = incomplete(state.incidentCount);
    if (error && !isTransientCode(error.code)) return failedLoad(tenantId, error, how.durationMs);
    if (error && fetchedAt !== null && this.now() - fetchedAt.getTime() > this.maxStaleMs && error.code !== "INCOMPLETE") {
      // Failing for longer than stale data may be shown.
      return failedLoad(tenantId, error, how.durationMs);
    }
    if (error && error.code !== "INCOMPLETE") this.counters.staleServed++;
    return {
      tenantId,
      usable: true,
      outcome: {
        tenantId,
        ok: error === undefined,
        fromCache: how.fromCache,
        fetchedAt,
        durationMs: how.durationMs,
        complete,
        ...(error ? { error } : {}),
        syncState: phase,
        incidentsMirrored: state.incidentCount,
      },
    };
  }

  // ---------------------------------------------------------------------------------------------------
  // Failure memory

  private recall(tenantId: string, backend: IncidentsBackendName): RememberedFailure | undefined {
    const key = `${tenantId}|${backend}`;
    const remembered = this.failures.get(key);
    if (!remembered) return undefined;
    const leftMs = remembered.until - this.now();
    if (leftMs <= 0) {
      this.failures.delete(key);
      return undefined;
    }
    return { ...remembered, error: { ...remembered.error, retryAfterSeconds: Math.ceil(leftMs / 1000) } };
  }

  private throwRemembered(tenantId: string, backend: IncidentsBackendName): void {
    const remembered = this.recall(tenantId, backend);
    if (!remembered) return;
    this.counters.failuresRemembered++;
    throw rethrowable(remembered);
  }

  private remember(tenantId: string, backend: IncidentsBackendName, error: TenantError, thrown: unknown, generation: number): void {
    if (this.failureMemoryMs <= 0 || !isLastingCode(error.code)) return;
    if ((this.failureGenerations.get(tenantId) ?? 0) !== generation) return;
    const providerLeftSeconds = thrown instanceof TokenAcquisitionError ? thrown.rememberedForSeconds : undefined;
    const { retryAfterSeconds: _countdown, ...withoutCountdown } = error;
    this.failures.set(`${tenantId}|${backend}`, {
      until: this.now() + Math.min(this.failureMemoryMs, (providerLeftSeconds ?? Number.POSITIVE_INFINITY) * 1000),
      error: providerLeftSeconds === undefined ? error : withoutCountdown,
      thrown,
    });
  }

  private client(backend: IncidentsBackendName): IncidentsBackendClient {
    const client = this.clients[backend];
    if (!client) throw new Error(`no incidents client for backend ${String(backend)}`);
    return client;
  }

  private stopError(tenantId: string, backend: IncidentsBackendName, signal: AbortSignal, caught: unknown): TenantError {
    return signal.aborted && isAbort(caught)
      ? toTenantError(new UpstreamError("UPSTREAM_TIMEOUT", `the sync did not finish within ${Math.round(this.refreshTimeoutMs / 1000)} s`, { tenantId, backend }))
      : toTenantError(caught, { tenantId, logger: this.logger });
  }

  private logFailure(tenantId: string, backend: IncidentsBackendName, mode: string, caught: unknown, error: TenantError): void {
    if (error.code === "INTERNAL" && !(caught instanceof TokenAcquisitionError)) return;
    const fields = {
      tenantId,
      backend,
      mode,
      code: error.code,
      retryAfterSeconds: error.retryAfterSeconds,
      ...(caught instanceof UpstreamError ? { httpStatus: caught.details.status, upstreamRequestId: caught.details.upstreamRequestId } : {}),
    };
    if (isTransientCode(error.code)) this.logger?.warn(fields, "tenant incidents sync failed");
    else this.logger?.info(fields, "tenant incidents sync failed");
  }
}

/** Builds the process's incident service. */
export function createIncidentService(options: IncidentServiceOptions): IncidentService {
  return new IncidentService(options);
}

// ---------------------------------------------------------------------------------------------------

function normaliseTenantId(tenantId: string): string {
  return tenantId.trim().toLowerCase();
}

function emptyState(tenantId: string, backend: IncidentsBackendName): SyncState {
  return {
    tenantId,
    backend,
    watermark: null,
    fetchedAt: null,
    fullFetchedAt: null,
    sweep: null,
    pagesRead: 0,
    incidentCount: 0,
    lastAttemptAt: null,
    lastError: null,
    errorAt: null,
    quietPolls: 0,
    leaseOwner: null,
    leaseUntil: null,
  };
}

/** The state patch of a successful sync: error cleared, quiet polls counted (reset when anything changed). */
function success(startedAt: number, changed: number, state: SyncState): SyncStatePatch {
  return { lastError: null, errorAt: null, lastAttemptAt: new Date(startedAt), quietPolls: changed > 0 ? 0 : state.quietPolls + 1 };
}

function failedLoad(tenantId: string, error: TenantError, durationMs: number): TenantLoad {
  return {
    tenantId,
    usable: false,
    outcome: { tenantId, ok: false, fromCache: false, fetchedAt: null, durationMs, complete: false, error, syncState: "FAILING", incidentsMirrored: 0 },
  };
}

function later(a: Date | null, b: Date | null): Date | null {
  if (a === null) return b;
  if (b === null) return a;
  return a.getTime() >= b.getTime() ? a : b;
}

function rethrowable(remembered: RememberedFailure): unknown {
  const { thrown } = remembered;
  return thrown instanceof TokenAcquisitionError ? thrown.rememberedFor(remembered.error.retryAfterSeconds ?? 1) : thrown;
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error("loading the incident's alerts failed", { cause: error });
}

function isOver(options: LoadOptions): boolean {
  return options.signal?.aborted === true || (options.deadline !== undefined && +options.deadline <= Date.now());
}

function isAbort(error: unknown): boolean {
  return (error instanceof Error || error instanceof DOMException) && (error.name === "AbortError" || error.name === "TimeoutError");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** Settles with the promise, or "deadline" when the caller's signal or deadline comes first. */
function raceDeadline<T>(promise: Promise<T>, options: LoadOptions): Promise<T | "deadline"> {
  const { signal } = options;
  const deadline = options.deadline === undefined ? undefined : +options.deadline;
  if (!signal && deadline === undefined) return promise;
  if (signal?.aborted) return Promise.resolve("deadline");
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    let unsubscribe: (() => void) | undefined;
    const finish = (result: T | "deadline") => {
      if (timer) clearTimeout(timer);
      unsubscribe?.();
      resolve(result);
    };
    if (signal) unsubscribe = onAbort(signal, () => finish("deadline"));
    if (deadline !== undefined) timer = setTimeout(() => finish("deadline"), Math.max(0, deadline - Date.now()));
    void promise.then(finish, () => finish("deadline"));
  });
}

/** The client options of a single-tenant call: the caller's signal, ended early by the deadline, and the deadline. */
function callOptions(options: LoadOptions): CallOptions {
  const signals: AbortSignal[] = [];
  if (options.signal) signals.push(options.signal);
  const deadline = options.deadline === undefined ? undefined : +options.deadline;
  if (deadline !== undefined) signals.push(AbortSignal.timeout(Math.max(0, deadline - Date.now())));
  const signal = signals.length <= 1 ? signals[0] : AbortSignal.any(signals);
  return { ...(signal ? { signal } : {}), ...(deadline !== undefined ? { deadline } : {}) };
}

/**
 * Callbacks per signal, behind one "abort" listener per signal: a query's signal is shared by the waits
 * of all its tenants (a thousand of them), and EventTarget warns past ten listeners.
 */
const abortCallbacks = new WeakMap<AbortSignal, Set<() => void>>();

function onAbort(signal: AbortSignal, callback: () => void): () => void {
  let callbacks = abortCallbacks.get(signal);
  if (!callbacks) {
    const set = new Set<() => void>();
    callbacks = set;
    abortCallbacks.set(signal, set);
    signal.addEventListener(
      "abort",
      () => {
        abortCallbacks.delete(signal);
        for (const fn of set) fn();
      },
      { once: true },
    );
  }
  callbacks.add(callback);
  return () => callbacks.delete(callback);
}
