import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import { TokenAcquisitionError } from "../auth/token-errors.js";
import { UpstreamError, type AlertsLoad, type CallOptions, type IncidentsBackendClient, type ListResult } from "../defender/backend-client.js";
import type { Incident, IncidentAlert, IncidentPatch, IncidentsBackendName } from "../defender/incident.js";
import type { IncidentCache, TenantIncidentsEntry, TenantSweep } from "./incident-cache.js";
import { deadlineExceeded, incomplete, isLastingCode, isTransientCode, toTenantError, type TenantError, type TenantOutcome } from "./outcome.js";

/** Which tenant to read, and from which backend (the tenant's override or the deployment default). */
export interface IncidentTarget {
  tenantId: string;
  backend: IncidentsBackendName;
}

/** Per-call options: how long this caller is willing to wait. */
export interface LoadOptions {
  /** The operation's signal (request closed, deadline): ends this caller's wait, never a shared refresh. */
  signal?: AbortSignal;
  /** Wall-clock time (`Date.now()` scale) after which this caller stops waiting. */
  deadline?: Date | number;
}

/** One tenant's incidents and how they were had. */
export interface TenantIncidents {
  /** Normalised (trimmed, lower case). */
  tenantId: string;
  /** Immutable; the same array as long as the tenant's cached incidents do not change. */
  incidents: readonly Incident[];
  outcome: TenantOutcome;
}

/** An incident whose alerts a query wants: its id and the version the query holds. */
export interface AlertsWanted {
  incidentId: string;
  lastUpdateTime: Date;
}

export interface IncidentServiceOptions {
  clients: Record<IncidentsBackendName, IncidentsBackendClient>;
  cache: IncidentCache;
  /** A tenant's incidents younger than this are served without any upstream call. Default 30 s. */
  freshnessMs?: number;
  /**
   * A delta asks for incidents updated since the watermark minus this much, so updates stamped just
   * before the newest one seen (clock skew between upstream replicas, sub-millisecond timestamps the
   * Date cut off) are not missed. Re-fetched incidents are merged idempotently. Default 1 s.
   */
  overlapMs?: number;
  /**
   * How old cached incidents may be and still be served, flagged, when a refresh fails transiently.
   * Default 15 minutes.
   */
  maxStaleMs?: number;
  /** Lists a tenant in full again after this long, so incidents gone upstream leave the cache. Default 6 h. */
  fullRefreshMs?: number;
  /**
   * List pages one refresh reads at most (delta and full list together). A tenant with more — a large
   * tenant's first load — is read across several refreshes (queries), each going on where the last one
   * stopped; meanwhile its outcome says `complete: false` and INCOMPLETE. Default 100 (5,000 Graph or
   * 10,000 Defender incidents); the rate budget and the deadline may stop a refresh sooner, with the
   * pages read kept all the same.
   */
  maxPagesPerRefresh?: number;
  /** Upper bound of one shared refresh (it has no caller's signal). Default 120 s. */
  refreshTimeoutMs?: number;
  /**
   * How long a tenant's lasting failure (`isLastingCode`: no consent, role missing, tenant unknown, …) is
   * given again without any token request or upstream call. In-process, per replica. Default 0: not at
   * all (the app passes TENANT_FAILURE_MEMORY_SECONDS).
   */
  failureMemoryMs?: number;
  /** Who may refresh a tenant right now, across replicas (Redis); default: this process alone decides. */
  coordinator?: RefreshCoordinator;
  /** The clock for freshness, Unix ms. Default `Date.now`. */
  now?: () => number;
  logger?: Logger;
}

/** Counters since the service was created, for metrics. */
export interface IncidentServiceStats {
  /** `loadTenant` calls. */
  loads: number;
  /** Loads and gets answered from a fresh cache without any upstream call. */
  cacheHits: number;
  /** Loads that joined a refresh another caller had started. */
  coalesced: number;
  /** Refreshes that went upstream (full + delta). */
  refreshes: number;
  fullRefreshes: number;
  deltaRefreshes: number;
  /** Refreshes that failed. */
  refreshFailures: number;
  /** Lists that stopped early (page bound or a failure after some pages) and kept what they read. */
  partialLists: number;
  /** Upstream calls (pages) the refreshes made. */
  upstreamCalls: number;
  /** Loads answered with older cached incidents after a failure. */
  staleServed: number;
  /** Loads whose wait the caller's signal or deadline ended. */
  deadlineExceeded: number;
  /** Loads and gets answered with a remembered lasting failure, without any call. */
  failuresRemembered: number;
  /** Incidents whose alerts `loadAlerts` answered from the cache. */
  alertsFromCache: number;
  /** Incidents `loadAlerts` read upstream for their alerts (one call each, retries aside). */
  alertsFetched: number;
}

const DEFAULTS = {
  freshnessMs: 30_000,
  overlapMs: 1_000,
  maxStaleMs: 15 * 60_000,
  fullRefreshMs: 6 * 3_600_000,
  refreshTimeoutMs: 120_000,
  maxPagesPerRefresh: 100,
};

/**
 * Lets one replica at a time refresh a tenant. `exclusive` runs `run` when this replica holds the tenant's
 * refresh; otherwise it waits until the holder is done (or the deadline) and says it did not run.
 */
export interface RefreshCoordinator {
  exclusive<T>(key: string, ttlMs: number, deadline: number, run: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }>;
}

/** A single process: every refresh may run (the in-process single flight already coalesces). */
const LOCAL_COORDINATOR: RefreshCoordinator = {
  async exclusive(_key, _ttlMs, _deadline, run) {
    return { ran: true, value: await run() };
  },
};

/** A lasting failure given again until `until` (service clock). */
interface RememberedFailure {
  until: number;
  /** The public error as first answered. */
  error: TenantError;
  /** What the refresh threw, for `getIncident` to throw again. */
  thrown: unknown;
}

/**
 * How a refresh went. `ok` with `stopped`: the list stopped early (pages used up, or a transient failure
 * after some pages); the entry holds what was read, and `stopped` is what the caller is told.
 */
type RefreshResult = { ok: true; entry: TenantIncidentsEntry; fromCache: boolean; stopped?: TenantError } | { ok: false; error: TenantError };

const DEADLINE: RefreshResult = { ok: false, error: deadlineExceeded() };

/**
 * Incidents per tenant, with a per-tenant cache refreshed incrementally.
 *
 * - Fresh (`fetchedAt` within `freshnessMs`): served from the cache, no upstream call.
 * - Otherwise one refresh of at most `maxPagesPerRefresh` pages (lists page by watermark, oldest first:
 *   see watermark-paging.ts): a full list the first time and after a backend change — a large tenant's
 *   taking several refreshes, each going on where the last stopped (`entry.sweep`), its outcome
 *   `complete: false` until done; else a delta (`updatedSince = watermark - overlapMs`), followed every
 *   `fullRefreshMs` by a full list swept with the pages the delta left, merged into the cached incidents by id. An
 *   incident is replaced only by a version with a later `lastUpdateTime`, so overlap re-fetches change
 *   nothing (and keep the cached array, hence the query's memoised sort orders). Redirected (merged)
 *   incidents are kept like any other, with status REDIRECTED and `redirectIncidentId`.
 * - Single flight: concurrent loads of one tenant share one refresh. A caller's signal or deadline ends
 *   its own wait; the refresh goes on — to the deadline of the caller that started it, at most
 *   `refreshTimeoutMs` — and fills the cache for the next.
 *
 * Failure policy (never thrown; the outcome says what happened):
 * - A transient failure (throttling, outage, timeout, unreadable answer, deadline, internal error) with
 *   cached incidents at most `maxStaleMs` old serves them: `ok: false, fromCache: true`, `fetchedAt` their
 *   age and `error` the failure. A dashboard keeps showing the tenant, marked stale.
 * - Otherwise — no usable cache, or a failure that will not pass by itself (consent revoked, role
 *   missing, tenant gone, app credential refused, …) — no incidents: `ok: false, fetchedAt: null`. After a
 *   non-transient failure the tenant's cache entry is deleted, so data the app may no longer read is not
 *   served later and the next success lists the tenant in full.
 * - A lasting failure (`isLastingCode`) is remembered for `failureMemoryMs`: until then loads (and gets)
 *   of that tenant and backend answer it again — same code, message and hint, `retryAfterSeconds` the time
 *   left — with no token request and no upstream call. `forgetFailures` (consent granted, a re-check, an
 *   operator's change) and a fresh cache entry (another replica's refresh) end it at once.
 */
export class IncidentService {
  private readonly clients: Record<IncidentsBackendName, IncidentsBackendClient>;
  private readonly cache: IncidentCache;
  private readonly freshnessMs: number;
  private readonly overlapMs: number;
  private readonly maxStaleMs: number;
  private readonly fullRefreshMs: number;
  private readonly refreshTimeoutMs: number;
  private readonly maxPagesPerRefresh: number;
  private readonly failureMemoryMs: number;
  private readonly coordinator: RefreshCoordinator;
  private readonly now: () => number;
  private readonly logger: Logger | undefined;
  /** Running refreshes by `${tenantId}|${backend}`. */
  private readonly flights = new Map<string, Promise<RefreshResult>>();
  /** Tails of each tenant's chain of cache read-modify-writes. */
  private readonly locks = new Map<string, Promise<void>>();
  /** Remembered lasting failures by `${tenantId}|${backend}`. */
  private readonly failures = new Map<string, RememberedFailure>();
  /** Bumped per tenant by `forgetFailures`, so a refresh that started before cannot remember its failure. */
  private readonly failureGenerations = new Map<string, number>();
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
    staleServed: 0,
    deadlineExceeded: 0,
    failuresRemembered: 0,
    alertsFromCache: 0,
    alertsFetched: 0,
  };

  constructor(options: IncidentServiceOptions) {
    this.clients = options.clients;
    this.cache = options.cache;
    this.freshnessMs = options.freshnessMs ?? DEFAULTS.freshnessMs;
    this.overlapMs = options.overlapMs ?? DEFAULTS.overlapMs;
    this.maxStaleMs = options.maxStaleMs ?? DEFAULTS.maxStaleMs;
    this.fullRefreshMs = options.fullRefreshMs ?? DEFAULTS.fullRefreshMs;
    this.refreshTimeoutMs = options.refreshTimeoutMs ?? DEFAULTS.refreshTimeoutMs;
    this.maxPagesPerRefresh = Math.max(1, Math.floor(options.maxPagesPerRefresh ?? DEFAULTS.maxPagesPerRefresh));
    this.failureMemoryMs = Math.max(0, options.failureMemoryMs ?? 0);
    this.coordinator = options.coordinator ?? LOCAL_COORDINATOR;
    this.now = options.now ?? Date.now;
    this.logger = options.logger?.child({ component: "incident-service" });
  }

  /**
   * A tenant's incidents: from the cache while fresh, else after one (shared) refresh. Never throws for
   * the tenant's failure; see the class comment for what a failure returns.
   */
  async loadTenant(target: IncidentTarget, options: LoadOptions = {}): Promise<TenantIncidents> {
    const started = performance.now();
    const tenantId = normaliseTenantId(target.tenantId);
    const elapsed = () => Math.round(performance.now() - started);
    this.counters.loads++;
    let usable: TenantIncidentsEntry | undefined;
    try {
      const entry = await this.readCache(tenantId);
      usable = entry && entry.backend === target.backend ? entry : undefined;
      if (usable && this.isFresh(usable)) {
        this.counters.cacheHits++;
        this.failures.delete(`${tenantId}|${target.backend}`);
        return succeeded(tenantId, usable, true, elapsed());
      }
      const remembered = this.recall(tenantId, target.backend);
      if (remembered) {
        this.counters.failuresRemembered++;
        return this.failed(tenantId, remembered.error, usable, elapsed());
      }
      const result = isOver(options) ? DEADLINE : await this.wait(this.refresh(tenantId, target.backend, options.deadline), options);
      if (result.ok) return succeeded(tenantId, result.entry, result.fromCache, elapsed(), result.stopped);
      if (result === DEADLINE) this.counters.deadlineExceeded++;
      return this.failed(tenantId, result.error, usable, elapsed());
    } catch (error) {
      // Only a bug gets here (the refresh settles every failure); still, one tenant never fails a query.
      return this.failed(tenantId, toTenantError(error, { tenantId, logger: this.logger }), usable, elapsed());
    }
  }

  /** Several tenants, all at once (the clients hold the rate budget and concurrency cap), settled per tenant. */
  loadTenants(targets: readonly IncidentTarget[], options: LoadOptions = {}): Promise<TenantIncidents[]> {
    return Promise.all(targets.map((target) => this.loadTenant(target, options)));
  }

  /**
   * One incident: from the tenant's cache while it is fresh and holds it, else from the backend (and then
   * put into the cache when it is newer than the cached copy). Resolves undefined when it does not exist.
   *
   * @throws UpstreamError or TokenAcquisitionError from the backend; the signal's reason when the
   *   signal or the deadline ends the call
   */
  async getIncident(target: IncidentTarget, incidentId: string, options: LoadOptions = {}): Promise<Incident | undefined> {
    const tenantId = normaliseTenantId(target.tenantId);
    const id = incidentId.trim();
    const entry = await this.readCache(tenantId);
    if (entry && entry.backend === target.backend && this.isFresh(entry)) {
      const cached = indexOf(entry.incidents).get(id);
      if (cached) {
        this.counters.cacheHits++;
        return cached;
      }
    }
    const remembered = this.recall(tenantId, target.backend);
    if (remembered) {
      this.counters.failuresRemembered++;
      const { thrown } = remembered;
      throw thrown instanceof TokenAcquisitionError ? thrown.rememberedFor(remembered.error.retryAfterSeconds ?? 1) : thrown;
    }
    const incident = await this.client(target.backend).getIncident(tenantId, id, callOptions(options));
    if (incident) await this.upsert(tenantId, target.backend, incident);
    return incident;
  }

  /**
   * Writes an incident change through the backend, then puts the incident it answers into the tenant's
   * cache. The cache's `fetchedAt` and watermark stay as they were: one written incident says nothing
   * about the tenant's others, so neither freshness nor the delta's starting point moves.
   *
   * @throws UpstreamError or TokenAcquisitionError from the backend; the signal's reason when the
   *   signal or the deadline ends the call
   */
  async updateIncident(target: IncidentTarget, incidentId: string, patch: IncidentPatch, options: LoadOptions = {}): Promise<Incident> {
    const tenantId = normaliseTenantId(target.tenantId);
    const incident = await this.client(target.backend).updateIncident(tenantId, incidentId.trim(), patch, callOptions(options));
    await this.upsert(tenantId, target.backend, incident);
    return incident;
  }

  /**
   * The alerts of some of one tenant's incidents (those a query selects `alerts` of while its incident
   * carries `alerts: null`), settled per incident in the order asked: the alerts, or the Error for that
   * incident alone. Never rejects for the tenant's failure.
   *
   * - An incident the cache holds with its alerts, in a version at least as new as the one asked about,
   *   costs no call.
   * - The others are read through the backend (`loadAlerts`: Graph reads each incident with
   *   `$expand=alerts`, a few at a time, within the tenant's rate budget and the caller's deadline) and put
   *   back into the tenant's cached incidents, unless the cache holds a newer version, so the next query
   *   costs no call. The alerts live with the incident: a list that brings a later `lastUpdateTime`
   *   replaces the incident, alerts `null` again, and they are read again when next asked for. (This
   *   assumes, as for the Defender API's inline alerts, that an incident's `lastUpdateTime` moves when
   *   its alerts change: unconfirmed upstream.)
   * - An incident gone upstream is NOT_FOUND for that incident; a remembered lasting failure of the
   *   tenant is given again without any call.
   */
  async loadAlerts(target: IncidentTarget, wanted: readonly AlertsWanted[], options: LoadOptions = {}): Promise<Array<IncidentAlert[] | Error>> {
    const tenantId = normaliseTenantId(target.tenantId);
    const { backend } = target;
    const results: Array<IncidentAlert[] | Error> = new Array(wanted.length);
    const entry = await this.readCache(tenantId);
    const held = entry && entry.backend === backend ? indexOf(entry.incidents) : undefined;
    const missing: number[] = [];
    wanted.forEach((w, i) => {
      const cached = held?.get(w.incidentId.trim());
      if (cached && cached.alerts !== null && cached.lastUpdateTime.getTime() >= w.lastUpdateTime.getTime()) {
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
      const { thrown } = remembered;
      const error = thrown instanceof TokenAcquisitionError ? thrown.rememberedFor(remembered.error.retryAfterSeconds ?? 1) : thrown;
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
    if (read.length > 0) await this.putRead(tenantId, backend, read);
    return results;
  }

  /** Drops a tenant's cached incidents and remembered failures (tenant removed, backend changed by an operator). */
  async forget(tenantId: string): Promise<void> {
    const key = normaliseTenantId(tenantId);
    this.forgetFailures(key);
    await this.withLock(key, () => this.deleteCache(key));
  }

  /**
   * Forgets the tenant's remembered lasting failures (one backend, or both), so its next load asks the
   * token provider and the backend again: after a consent, a re-check, or an operator's change. This
   * replica only; other replicas forget when their memory runs out (or their cache turns fresh).
   */
  forgetFailures(tenantId: string, backend?: IncidentsBackendName): void {
    const id = normaliseTenantId(tenantId);
    for (const b of backend ? [backend] : (Object.keys(this.clients) as IncidentsBackendName[])) this.failures.delete(`${id}|${b}`);
    this.failureGenerations.set(id, (this.failureGenerations.get(id) ?? 0) + 1);
  }

  stats(): IncidentServiceStats {
    return { ...this.counters };
  }

  // -------------------------------------------------------------------------------------------------

  /** Fresh: complete (no first load under way) and fetched within `freshnessMs`. */
  private isFresh(entry: TenantIncidentsEntry): boolean {
    return isComplete(entry) && this.now() - entry.fetchedAt.getTime() < this.freshnessMs;
  }

  /** The tenant's remembered lasting failure, its `retryAfterSeconds` the time left; undefined when none or over. */
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

  /**
   * Remembers a refresh's lasting failure, unless the memory is off or the tenant's failures were forgotten
   * since the refresh started. A failure the token provider gave from its own memory is remembered no
   * longer than the provider still does.
   */
  private remember(tenantId: string, backend: IncidentsBackendName, error: TenantError, thrown: unknown, generation: number): void {
    if (this.failureMemoryMs <= 0 || !isLastingCode(error.code)) return;
    if ((this.failureGenerations.get(tenantId) ?? 0) !== generation) return;
    const providerLeftSeconds = thrown instanceof TokenAcquisitionError ? thrown.rememberedForSeconds : undefined;
    // The provider's countdown is recomputed at each answer; the rest is the error as first answered.
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

  /**
   * The refresh of a tenant, shared by every caller that needs it while it runs. It runs to the deadline
   * of the caller that started it (at most `refreshTimeoutMs`), so the client can decide whether a wait
   * (Retry-After, back-off, a rate slot) still fits and answer THROTTLED or UPSTREAM_UNAVAILABLE in time
   * rather than waiting past everyone's deadline; callers that join later share that bound.
   */
  private refresh(tenantId: string, backend: IncidentsBackendName, callerDeadline: Date | number | undefined): Promise<RefreshResult> {
    const key = `${tenantId}|${backend}`;
    const running = this.flights.get(key);
    if (running) {
      this.counters.coalesced++;
      return running;
    }
    const flight = this.runRefresh(tenantId, backend, callerDeadline === undefined ? undefined : +callerDeadline).finally(() => this.flights.delete(key));
    this.flights.set(key, flight);
    return flight;
  }

  /**
   * One refresh, by this replica or — when another holds the tenant's refresh — by that one: then the
   * result is what it wrote to the shared cache. Settles every failure into the result; never rejects.
   */
  private async runRefresh(tenantId: string, backend: IncidentsBackendName, callerDeadline: number | undefined): Promise<RefreshResult> {
    const deadline = Math.min(callerDeadline ?? Number.POSITIVE_INFINITY, Date.now() + this.refreshTimeoutMs);
    for (;;) {
      const attempt = await this.coordinator
        .exclusive(`${tenantId}|${backend}`, this.refreshTimeoutMs, deadline, () => this.fetchAndStore(tenantId, backend, deadline))
        .catch((error: unknown) => {
          // The coordinator (Redis) is down: refresh anyway rather than fail the tenant.
          this.logger?.warn({ err: error, tenantId }, "refresh coordination failed; refreshing without it");
          return undefined;
        });
      if (attempt === undefined) return this.fetchAndStore(tenantId, backend, deadline);
      if (attempt.ran) return attempt.value;
      const latest = await this.readCache(tenantId);
      if (latest && latest.backend === backend && this.isFresh(latest)) {
        this.counters.coalesced++;
        return { ok: true, entry: latest, fromCache: true };
      }
      // The other replica's refresh failed (or is still running at our deadline): try ourselves, in time.
      if (Date.now() >= deadline) return { ok: false, error: deadlineExceeded() };
    }
  }

  /**
   * One refresh of a tenant: at most `maxPagesPerRefresh` pages, every page read kept.
   *
   * - No complete list yet (first load, or one under way): the sweep goes on from its `resumeFrom`.
   * - Otherwise a delta from the watermark; then, when it completed and a full list is due or under way
   *   (the periodic one, so incidents gone upstream leave the cache), the sweep with the pages left.
   *
   * A list that stops early (pages used up, or a transient failure after some pages) keeps what it read
   * and where it got: the next refresh goes on from there, so a large tenant's first load finishes across
   * several queries and never starts over. The answer then carries the stop as its error (INCOMPLETE, or
   * the failure). A lasting failure, even after some pages, drops the tenant's cache as before.
   */
  private async fetchAndStore(tenantId: string, backend: IncidentsBackendName, deadline: number): Promise<RefreshResult> {
    const startedAt = this.now();
    const generation = this.failureGenerations.get(tenantId) ?? 0;
    // No caller's signal: a caller leaving must not cancel what the others wait for.
    const signal = AbortSignal.timeout(this.refreshTimeoutMs);
    let mode: "full" | "delta" = "full";
    const client = this.client(backend);
    const list = async (from: Date | null, maxPages: number): Promise<ListResult> => {
      const updatedSince = from === null ? undefined : new Date(from.getTime() - this.overlapMs);
      const listed = await client.listIncidents(tenantId, { ...(updatedSince ? { updatedSince } : {}), maxPages, signal, deadline });
      this.counters.upstreamCalls += listed.calls;
      if (!listed.complete) this.counters.partialLists++;
      // A lasting failure after some pages ends the refresh like one on the first page.
      if (listed.stoppedBy !== undefined && !isTransientCode(this.stopError(tenantId, backend, signal, listed.stoppedBy).code)) throw listed.stoppedBy;
      return listed;
    };
    try {
      // Another refresh may have finished between the caller's cache read and this one starting.
      const current = await this.readCache(tenantId);
      const base = current && current.backend === backend ? current : undefined;
      if (base && this.isFresh(base)) {
        this.counters.cacheHits++;
        return { ok: true, entry: base, fromCache: true };
      }
      mode = base && isComplete(base) ? "delta" : "full";
      this.counters.refreshes++;
      this.counters[mode === "full" ? "fullRefreshes" : "deltaRefreshes"]++;

      let delta: ListResult | undefined;
      let swept: ListResult | undefined;
      let sweep: TenantSweep | undefined;
      if (mode === "full") {
        sweep = base?.sweep ?? { startedAt: new Date(startedAt), resumeFrom: null };
        swept = await list(sweep.resumeFrom, this.maxPagesPerRefresh);
      } else {
        delta = await list(base!.watermark, this.maxPagesPerRefresh);
        const due = base!.sweep !== undefined || startedAt - base!.fullFetchedAt!.getTime() >= this.fullRefreshMs;
        const left = this.maxPagesPerRefresh - delta.calls;
        if (delta.complete && due && left > 0) {
          sweep = base!.sweep ?? { startedAt: new Date(startedAt), resumeFrom: null, listedIds: [] };
          // The delta is in; a failure of the periodic sweep only delays it (logged, pages kept).
          swept = await list(sweep.resumeFrom, left).catch((error: unknown) => {
            this.logger?.warn({ tenantId, backend, code: this.stopError(tenantId, backend, signal, error).code }, "periodic full list of the tenant stopped; it goes on at the next refresh");
            return undefined;
          });
        }
      }

      const entry = await this.withLock(tenantId, async () => {
        // Re-read: an update may have put a newer incident in meanwhile.
        const latest = await this.readCache(tenantId);
        let next = latest && latest.backend === backend ? latest : base;
        if (delta) next = applyDelta(next!, delta, startedAt);
        if (swept && sweep) next = applySweep(next, backend, sweep, swept, startedAt);
        await this.writeCache(tenantId, next!);
        return next!;
      });
      this.logger?.debug(
        {
          tenantId,
          backend,
          mode,
          calls: (delta?.calls ?? 0) + (swept?.calls ?? 0),
          received: (delta?.incidents.length ?? 0) + (swept?.incidents.length ?? 0),
          held: entry.incidents.length,
          complete: isComplete(entry),
          sweeping: entry.sweep !== undefined,
        },
        "tenant incidents refreshed",
      );
      this.failures.delete(`${tenantId}|${backend}`);
      // What the caller is told: the data is current unless the delta (or a first load) stopped early.
      const stopped = mode === "delta" ? delta! : swept!;
      if (stopped.complete) return { ok: true, entry, fromCache: false };
      const error = stopped.stoppedBy === undefined ? incomplete(entry.incidents.length) : this.stopError(tenantId, backend, signal, stopped.stoppedBy);
      if (stopped.stoppedBy !== undefined) this.logFailure(tenantId, backend, mode, stopped.stoppedBy, error);
      return { ok: true, entry, fromCache: false, stopped: error };
    } catch (caught) {
      this.counters.refreshFailures++;
      const error = this.stopError(tenantId, backend, signal, caught);
      this.logFailure(tenantId, backend, mode, caught, error);
      if (!isTransientCode(error.code)) {
        await this.withLock(tenantId, () => this.deleteCache(tenantId));
      }
      this.remember(tenantId, backend, error, caught, generation);
      return { ok: false, error };
    }
  }

  /** The public error of what stopped a refresh: the refresh's own time limit, or what was thrown. */
  private stopError(tenantId: string, backend: IncidentsBackendName, signal: AbortSignal, caught: unknown): TenantError {
    return signal.aborted && isAbort(caught)
      ? toTenantError(new UpstreamError("UPSTREAM_TIMEOUT", `the refresh did not finish within ${Math.round(this.refreshTimeoutMs / 1000)} s`, { tenantId, backend }))
      : toTenantError(caught, { tenantId, logger: this.logger });
  }

  /** Settles with the refresh, or with DEADLINE when the caller's signal or deadline comes first. */
  private wait(refresh: Promise<RefreshResult>, options: LoadOptions): Promise<RefreshResult> {
    const { signal } = options;
    const deadline = options.deadline === undefined ? undefined : +options.deadline;
    if (!signal && deadline === undefined) return refresh;
    if (signal?.aborted) return Promise.resolve(DEADLINE);
    return new Promise<RefreshResult>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let unsubscribe: (() => void) | undefined;
      const finish = (result: RefreshResult) => {
        if (timer) clearTimeout(timer);
        unsubscribe?.();
        resolve(result);
      };
      if (signal) unsubscribe = onAbort(signal, () => finish(DEADLINE));
      if (deadline !== undefined) timer = setTimeout(() => finish(DEADLINE), Math.max(0, deadline - Date.now()));
      void refresh.then(finish);
    });
  }

  private failed(tenantId: string, error: TenantError, stale: TenantIncidentsEntry | undefined, durationMs: number): TenantIncidents {
    if (stale && isTransientCode(error.code) && this.now() - stale.fetchedAt.getTime() <= this.maxStaleMs) {
      this.counters.staleServed++;
      return {
        tenantId,
        incidents: stale.incidents,
        outcome: { tenantId, ok: false, fromCache: true, fetchedAt: stale.fetchedAt, durationMs, complete: isComplete(stale), error },
      };
    }
    return { tenantId, incidents: [], outcome: { tenantId, ok: false, fromCache: false, fetchedAt: null, durationMs, complete: false, error } };
  }

  /** Puts one incident into the tenant's cached incidents, unless the cached copy is newer. */
  private async upsert(tenantId: string, backend: IncidentsBackendName, incident: Incident): Promise<void> {
    await this.withLock(tenantId, async () => {
      const entry = await this.readCache(tenantId);
      if (!entry || entry.backend !== backend) return;
      const cached = indexOf(entry.incidents).get(incident.incidentId);
      if (cached && cached.lastUpdateTime.getTime() > incident.lastUpdateTime.getTime()) return;
      const incidents = cached ? entry.incidents.map((i) => (i === cached ? incident : i)) : [...entry.incidents, incident];
      await this.writeCache(tenantId, { ...entry, incidents: Object.freeze(incidents) });
    });
  }

  /**
   * Puts incidents read with their alerts back into the tenant's cached incidents, in one write: each
   * replaces the cached version unless that is newer. Incidents the cache no longer holds are not added
   * (the next list decides what the tenant has).
   */
  private async putRead(tenantId: string, backend: IncidentsBackendName, read: readonly Incident[]): Promise<void> {
    await this.withLock(tenantId, async () => {
      const entry = await this.readCache(tenantId);
      if (!entry || entry.backend !== backend) return;
      const held = indexOf(entry.incidents);
      const replace = new Map<string, Incident>();
      for (const incident of read) {
        const cached = held.get(incident.incidentId);
        if (cached && cached.lastUpdateTime.getTime() <= incident.lastUpdateTime.getTime()) replace.set(incident.incidentId, incident);
      }
      if (replace.size === 0) return;
      await this.writeCache(tenantId, { ...entry, incidents: Object.freeze(entry.incidents.map((i) => replace.get(i.incidentId) ?? i)) });
    });
  }

  /** Runs `fn` after every earlier read-modify-write of the tenant's cache entry has finished. */
  private async withLock<T>(tenantId: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(tenantId) ?? Promise.resolve();
    const run = previous.then(fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(tenantId, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(tenantId) === tail) this.locks.delete(tenantId);
    }
  }

  /** A cache that cannot be read is treated as empty: the tenant is listed in full. */
  private async readCache(tenantId: string): Promise<TenantIncidentsEntry | undefined> {
    try {
      return await this.cache.get(tenantId);
    } catch (error) {
      this.logger?.warn({ err: error, tenantId }, "incident cache read failed; treating the tenant as uncached");
      return undefined;
    }
  }

  /** A cache that cannot be written costs the next load a refresh; the data at hand is still returned. */
  private async writeCache(tenantId: string, entry: TenantIncidentsEntry): Promise<void> {
    try {
      await this.cache.set(tenantId, entry);
    } catch (error) {
      this.logger?.warn({ err: error, tenantId }, "incident cache write failed");
    }
  }

  private async deleteCache(tenantId: string): Promise<void> {
    try {
      await this.cache.delete(tenantId);
    } catch (error) {
      this.logger?.warn({ err: error, tenantId }, "incident cache delete failed");
    }
  }

  /**
   * Backend trouble is a warning; a tenant's own state (consent, roles) is information, as the token
   * provider already logged token failures; Crosswatch's own errors were logged by `toTenantError`.
   */
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
    if (isTransientCode(error.code)) this.logger?.warn(fields, "tenant incidents refresh failed");
    else this.logger?.info(fields, "tenant incidents refresh failed");
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

function succeeded(tenantId: string, entry: TenantIncidentsEntry, fromCache: boolean, durationMs: number, stopped?: TenantError): TenantIncidents {
  const complete = isComplete(entry);
  const error = stopped ?? (complete ? undefined : incomplete(entry.incidents.length));
  return {
    tenantId,
    incidents: entry.incidents,
    outcome: { tenantId, ok: error === undefined, fromCache, fetchedAt: entry.fetchedAt, durationMs, complete, ...(error ? { error } : {}) },
  };
}

/** Whether the entry holds all of the tenant's incidents: a full list has completed (no first load under way). */
function isComplete(entry: TenantIncidentsEntry): boolean {
  return entry.fullFetchedAt !== undefined;
}

/** A settled failure as the Error a DataLoader key rejects with. */
function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error("loading the incident's alerts failed", { cause: error });
}

function isOver(options: LoadOptions): boolean {
  return options.signal?.aborted === true || (options.deadline !== undefined && +options.deadline <= Date.now());
}

function isAbort(error: unknown): boolean {
  return (error instanceof Error || error instanceof DOMException) && (error.name === "AbortError" || error.name === "TimeoutError");
}

/**
 * The client options of a single-tenant call: the caller's signal, ended early by the deadline, and the
 * deadline itself (so the client can tell whether a back-off still fits).
 */
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

/** Calls `callback` when `signal` aborts; returns the unsubscribe. */
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

const indexes = new WeakMap<readonly Incident[], Map<string, Incident>>();

/** Incidents by id, memoised per (immutable) array. */
function indexOf(incidents: readonly Incident[]): Map<string, Incident> {
  let index = indexes.get(incidents);
  if (!index) {
    index = new Map(incidents.map((i) => [i.incidentId, i]));
    indexes.set(incidents, index);
  }
  return index;
}

function maxUpdate(incidents: readonly Incident[], start: number | null): number | null {
  let max = start;
  for (const incident of incidents) {
    const t = incident.lastUpdateTime.getTime();
    if (!Number.isNaN(t) && (max === null || t > max)) max = t;
  }
  return max;
}

/** Whether `candidate` should replace `held`: it is strictly newer. */
function newer(candidate: Incident, held: Incident | undefined): boolean {
  return !held || candidate.lastUpdateTime.getTime() > held.lastUpdateTime.getTime();
}

/** `listed` merged by id into `held` (a strictly newer version wins); the old array when nothing is newer. */
function mergeIncidents(held: readonly Incident[], listed: readonly Incident[]): readonly Incident[] {
  const next = new Map(indexOf(held));
  let changed = false;
  for (const incident of listed) {
    if (newer(incident, next.get(incident.incidentId))) {
      next.set(incident.incidentId, incident);
      changed = true;
    }
  }
  return changed ? Object.freeze([...next.values()]) : held;
}

function later(a: Date | null, b: Date | null): Date | null {
  if (a === null) return b;
  if (b === null) return a;
  return a.getTime() >= b.getTime() ? a : b;
}

/**
 * The entry after a delta: the listed incidents merged in. Complete: the watermark moves to the newest
 * listed and the entry is fetched now. Stopped early: the watermark moves only to where the list got
 * (`resumeFrom`: everything before it was listed), and `fetchedAt` stays, so the next refresh goes on.
 */
function applyDelta(into: TenantIncidentsEntry, listed: ListResult, startedAt: number): TenantIncidentsEntry {
  const newest = maxUpdate(listed.incidents, null);
  return {
    ...into,
    incidents: mergeIncidents(into.incidents, listed.incidents),
    watermark: later(into.watermark, listed.complete ? (newest === null ? null : new Date(newest)) : listed.resumeFrom),
    fetchedAt: listed.complete ? new Date(startedAt) : into.fetchedAt,
  };
}

/**
 * The entry after a sweep's share of pages. The listed incidents are merged in (an incident the cache
 * holds in a newer version, an update written during the list, keeps that version).
 * - Stopped early: the sweep remembers where it got (and, periodic, which ids it listed).
 * - Complete, first load: the entry is complete, fetched now.
 * - Complete, periodic: held incidents the sweep did not list are gone upstream and leave the cache;
 *   `fetchedAt` is the delta's (run just before).
 */
function applySweep(
  into: TenantIncidentsEntry | undefined,
  backend: IncidentsBackendName,
  sweep: TenantSweep,
  listed: ListResult,
  startedAt: number,
): TenantIncidentsEntry {
  const periodic = into !== undefined && isComplete(into);
  let incidents = mergeIncidents(into?.incidents ?? [], listed.incidents);
  const newest = maxUpdate(listed.incidents, null);
  const watermark = later(into?.watermark ?? null, newest === null ? null : new Date(newest));
  if (!listed.complete) {
    const next: TenantSweep = { startedAt: sweep.startedAt, resumeFrom: later(sweep.resumeFrom, listed.resumeFrom) };
    if (periodic) next.listedIds = [...new Set([...(sweep.listedIds ?? []), ...listed.incidents.map((i) => i.incidentId)])];
    return {
      backend,
      incidents,
      watermark,
      fetchedAt: periodic ? into.fetchedAt : (into?.fetchedAt ?? sweep.startedAt),
      ...(periodic ? { fullFetchedAt: into.fullFetchedAt! } : {}),
      sweep: next,
    };
  }
  if (periodic) {
    const kept = new Set([...(sweep.listedIds ?? []), ...listed.incidents.map((i) => i.incidentId)]);
    if (incidents.some((i) => !kept.has(i.incidentId))) incidents = Object.freeze(incidents.filter((i) => kept.has(i.incidentId)));
  }
  return {
    backend,
    incidents,
    watermark,
    fetchedAt: periodic ? into.fetchedAt : new Date(startedAt),
    fullFetchedAt: sweep.startedAt,
  };
}
