import type { Logger } from "pino";
import type { IncidentsBackendName } from "../defender/incident.js";
import type { TenantRecord, TenantStore } from "../store/tenant-store.js";
import type { IncidentService, IncidentTarget } from "./incident-service.js";
import { failingSinceSuccess, hasData, type SyncState } from "./mirror.js";
import { isLastingCode } from "./outcome.js";

export interface SyncEngineOptions {
  service: IncidentService;
  tenants: TenantStore;
  defaultBackend: IncidentsBackendName;
  /** Tenants this replica syncs at once. Default 8 (the app passes INCIDENT_SYNC_CONCURRENCY, 32). */
  concurrency?: number;
  /** How often the engine looks for due tenants (real time). Default 1 s. */
  tickMs?: number;
  /** Longest poll interval of a quiet tenant (its interval doubles from the freshness bound per quiet sync). Default 5 min. */
  quietMaxMs?: number;
  /** Wait after a transient failure before the next try. Default: the freshness bound, at least 5 s. */
  retryMs?: number;
  /** Wait after a lasting failure (consent, role) before the next try. Default 5 min. */
  lastingRetryMs?: number;
  /** Incidents older than this leave the mirror (INCIDENT_WINDOW_DAYS). Default 90 days. */
  windowMs?: number;
  /** Change events older than this are dropped. Default 7 days. */
  changesRetentionMs?: number;
  /** How often the window and the change stream are pruned. Default 1 h. */
  pruneEveryMs?: number;
  logger?: Logger;
}

/** What the engine last saw, for metrics (`crosswatch_sync_*`). */
export interface SyncEngineStats {
  /** Registered tenants the engine considers (consented, or synced before). */
  tenants: number;
  /** Tenants due for a sync now (not counting the ones running). */
  backlog: number;
  /** Syncs running in this replica. */
  running: number;
  /** Tenants whose first load is under way (pages read so far, summed: `firstLoadPages`). */
  firstLoads: number;
  firstLoadPages: number;
  /** Tenants whose last sync failed. */
  failing: number;
  /** Seconds since the least recently synced tenant was synced (0 when none). */
  maxLagSeconds: number;
  /** Syncs this engine started, ever. */
  started: number;
  lastTickAt: Date | null;
}

const DEFAULTS = {
  concurrency: 8,
  tickMs: 1_000,
  quietMaxMs: 5 * 60_000,
  lastingRetryMs: 5 * 60_000,
  windowMs: 90 * 86_400_000,
  changesRetentionMs: 7 * 86_400_000,
  pruneEveryMs: 3_600_000,
};

/**
 * The background loop that keeps the mirror fresh. Each tick it reads the registry and every tenant's sync
 * state, picks the tenants that are due, and starts their syncs (IncidentService.sync: the tenant's lease,
 * its rate budget, page-by-page commits) up to `concurrency` at once, in this order:
 * 1. tenants a query found stale (`prioritise`);
 * 2. tenants never synced, and first loads under way (each sync reads at most INCIDENT_PAGES_PER_REFRESH
 *    pages; the next tick goes on, so a large tenant loads at its rate budget's pace);
 * 3. the rest by how overdue they are. A tenant is due one freshness interval after its last sync; each
 *    sync that finds nothing new doubles that (up to `quietMaxMs`), any change resets it.
 * Consented tenants (and tenants synced before) are synced; a failing tenant waits `retryMs`, or
 * `lastingRetryMs` after a lasting failure (consent revoked, role missing). Tenants another replica holds
 * the lease of are left to it; when it dies, its leases run out and this replica takes them.
 */
export class SyncEngine {
  private readonly service: IncidentService;
  private readonly tenants: TenantStore;
  private readonly defaultBackend: IncidentsBackendName;
  private readonly concurrency: number;
  private readonly tickMs: number;
  private readonly quietMaxMs: number;
  private readonly retryMs: number;
  private readonly lastingRetryMs: number;
  private readonly windowMs: number;
  private readonly changesRetentionMs: number;
  private readonly pruneEveryMs: number;
  private readonly logger: Logger | undefined;
  private readonly wanted = new Map<string, IncidentTarget>();
  private readonly running = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = true;
  private lastPruneAt = 0;
  private nextDelay = 0;
  private started = 0;
  private last: SyncEngineStats = { tenants: 0, backlog: 0, running: 0, firstLoads: 0, firstLoadPages: 0, failing: 0, maxLagSeconds: 0, started: 0, lastTickAt: null };

  constructor(options: SyncEngineOptions) {
    this.service = options.service;
    this.tenants = options.tenants;
    this.defaultBackend = options.defaultBackend;
    this.concurrency = Math.max(1, options.concurrency ?? DEFAULTS.concurrency);
    this.tickMs = Math.max(10, options.tickMs ?? DEFAULTS.tickMs);
    this.quietMaxMs = options.quietMaxMs ?? DEFAULTS.quietMaxMs;
    this.retryMs = options.retryMs ?? Math.max(5_000, this.service.freshnessMs);
    this.lastingRetryMs = options.lastingRetryMs ?? DEFAULTS.lastingRetryMs;
    this.windowMs = options.windowMs ?? DEFAULTS.windowMs;
    this.changesRetentionMs = options.changesRetentionMs ?? DEFAULTS.changesRetentionMs;
    this.pruneEveryMs = options.pruneEveryMs ?? DEFAULTS.pruneEveryMs;
    this.logger = options.logger?.child({ component: "sync-engine" });
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  /** Stops ticking and waits for the running tick (syncs end with the service's `close`). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.ticking;
  }

  /** A query found the tenant stale: sync it before the others, at the next tick (brought forward). */
  prioritise(target: IncidentTarget): void {
    const key = `${target.tenantId}|${target.backend}`;
    if (this.wanted.has(key) || this.running.has(key)) return;
    this.wanted.set(key, target);
    if (!this.stopped) this.schedule(0);
  }

  stats(): SyncEngineStats {
    return { ...this.last, running: this.running.size, started: this.started };
  }

  /** One pass: what is due, started up to the concurrency. Exposed for tests; the loop calls it. */
  async tick(): Promise<void> {
    const now = this.service.now();
    const records = await this.allTenants();
    const states = new Map((await this.service.mirror.allStates()).map((s) => [s.tenantId, s]));
    const due: { target: IncidentTarget; rank: number; at: number }[] = [];
    let firstLoads = 0;
    let firstLoadPages = 0;
    let failing = 0;
    let maxLag = 0;
    let considered = 0;
    for (const record of records) {
      const target: IncidentTarget = { tenantId: record.id, backend: record.backend ?? this.defaultBackend };
      const key = `${target.tenantId}|${target.backend}`;
      const state = states.get(record.id);
      const wanted = this.wanted.has(key);
      // Consented tenants, and tenants whose incidents the mirror holds; not ones that only ever failed.
      if (!wanted && record.consentState !== "GRANTED" && !hasData(state)) continue;
      considered++;
      if (state?.sweep && state.fullFetchedAt === null) {
        firstLoads++;
        firstLoadPages += state.sweep.pages;
      }
      if (state?.lastError) failing++;
      if (state?.fetchedAt) maxLag = Math.max(maxLag, now - state.fetchedAt.getTime());
      if (this.running.has(key) || this.service.remembers(target)) continue;
      if (state && state.leaseOwner !== null && state.leaseOwner !== this.service.owner && state.leaseUntil !== null && state.leaseUntil.getTime() > Date.now()) continue;
      const at = wanted ? now : this.dueAt(state, record, now);
      if (at > now) continue;
      due.push({ target, rank: wanted ? 0 : !state || state.fullFetchedAt === null ? 1 : 2, at });
    }
    due.sort((a, b) => a.rank - b.rank || a.at - b.at);
    const free = this.concurrency - this.running.size;
    for (const { target } of due.slice(0, Math.max(0, free))) this.run(target);
    this.last = {
      tenants: considered,
      backlog: Math.max(0, due.length - Math.max(0, free)),
      running: this.running.size,
      firstLoads,
      firstLoadPages,
      failing,
      maxLagSeconds: Math.round(maxLag / 1000),
      started: this.started,
      lastTickAt: new Date(now),
    };
    if (now - this.lastPruneAt >= this.pruneEveryMs) {
      this.lastPruneAt = now;
      await this.prune(now);
    }
  }

  /** When the tenant is next due (service clock). */
  private dueAt(state: SyncState | undefined, record: TenantRecord, now: number): number {
    if (!state) return record.consentState === "GRANTED" ? now : Number.POSITIVE_INFINITY;
    if (state.lastError && state.errorAt && failingSinceSuccess(state)) {
      return state.errorAt.getTime() + (isLastingCode(state.lastError.code) ? this.lastingRetryMs : this.retryMs);
    }
    if (state.fullFetchedAt === null) return state.lastAttemptAt ? state.lastAttemptAt.getTime() : now;
    if (state.fetchedAt === null) return now;
    // Never more often than the freshness bound, however short the quiet maximum.
    const fresh = this.service.freshnessMs;
    const interval = Math.min(Math.max(this.quietMaxMs, fresh), fresh * 2 ** Math.min(state.quietPolls, 10));
    return state.fetchedAt.getTime() + interval;
  }

  private run(target: IncidentTarget): void {
    const key = `${target.tenantId}|${target.backend}`;
    this.wanted.delete(key);
    this.running.add(key);
    this.started++;
    void this.service
      .sync(target)
      .done.catch((error: unknown) => this.logger?.error({ err: error, tenantId: target.tenantId }, "sync failed unexpectedly"))
      .finally(() => {
        this.running.delete(key);
        // A slot is free: look again soon rather than at the next tick (first loads go on at once).
        if (!this.stopped) this.schedule(100);
      });
  }

  private async allTenants(): Promise<TenantRecord[]> {
    const records: TenantRecord[] = [];
    for await (const items of this.tenants.pages()) records.push(...items);
    return records;
  }

  private async prune(now: number): Promise<void> {
    try {
      const dropped = await this.service.mirror.pruneWindow(now - this.windowMs);
      const events = await this.service.mirror.pruneChanges(new Date(now - this.changesRetentionMs));
      if (dropped > 0 || events > 0) this.logger?.info({ dropped, events }, "pruned the mirror's window and change stream");
    } catch (error) {
      this.logger?.warn({ err: error }, "pruning the mirror failed");
    }
  }

  private schedule(delayMs: number): void {
    if (this.timer) {
      if (delayMs >= this.nextDelay) return;
      clearTimeout(this.timer);
    }
    this.nextDelay = delayMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopped) return;
      if (this.ticking) {
        // A tick is running: look again right after it.
        void this.ticking.then(() => this.schedule(0));
        return;
      }
      this.ticking = this.tick()
        .catch((error: unknown) => this.logger?.warn({ err: error }, "sync engine tick failed"))
        .finally(() => {
          this.ticking = undefined;
          if (!this.stopped) this.schedule(this.tickMs);
        });
    }, delayMs);
    this.timer.unref();
  }
}
