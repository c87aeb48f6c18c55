import { UpstreamError } from "./backend-client.js";
import type { IncidentsBackendName } from "./incident.js";

/**
 * Client-side rate budgets for the incident APIs. Microsoft counts calls per application and tenant
 * (reference 1.3, 1.9, 1.10, 2.5); a partner polling 1,000 tenants must stay under those quotas rather
 * than discover them through 429s, and must not open thousands of sockets at once. Hence two limits:
 * a sliding-window budget per (tenant, bucket) — and per (tenant, shared quota), such as the Defender API
 * as a whole — that waits for a slot when the wait fits the caller's deadline, and one process-wide cap on
 * calls in flight.
 */

/**
 * The quotas Microsoft documents, one bucket each. Graph publishes one number for all its security calls.
 * Advanced hunting has limits of its own, apart from the incidents': `defender.hunt` (the legacy
 * `/api/advancedhunting/run`) and `graph.hunt` (Graph `runHuntingQuery`).
 */
export const RATE_BUCKETS = ["defender.list", "defender.get", "defender.patch", "graph", "defender.hunt", "graph.hunt"] as const;
export type RateBucket = (typeof RATE_BUCKETS)[number];

/**
 * Quotas several buckets share: the Defender incidents API as a whole allows 50 calls a minute and 1,500 an
 * hour per app and tenant besides each method's own (api-incident; reference, "Corrections").
 */
export const SHARED_QUOTAS = ["defender.api"] as const;
export type SharedQuota = (typeof SHARED_QUOTAS)[number];
/** Something with its own sliding windows: a method's bucket or a quota buckets share. */
export type RateQuota = RateBucket | SharedQuota;

/** The windows a call of each bucket takes a slot in, all at once: its own, then any shared one. */
export const QUOTAS_OF: Record<RateBucket, readonly RateQuota[]> = {
  "defender.list": ["defender.list", "defender.api"],
  "defender.get": ["defender.get", "defender.api"],
  "defender.patch": ["defender.patch", "defender.api"],
  graph: ["graph"],
  // Hunting quotas are the hunting API's own, not the incidents API's (reference 1.12).
  "defender.hunt": ["defender.hunt"],
  "graph.hunt": ["graph.hunt"],
};

/** At most `limit` calls within any `windowSeconds` sliding window. */
export interface RateRule {
  limit: number;
  windowSeconds: number;
}

export type RateLimits = Record<RateQuota, readonly RateRule[]>;

/**
 * Reference 1.3 (list 50/min, 1,500/h), 1.9 (get 100/min, 1,500/h), 1.10 (patch 50/min, 1,500/h), the
 * Defender API as a whole (50/min, 1,500/h: "Corrections"), 2.5 (Graph 150/min).
 */
export const DEFAULT_RATE_LIMITS: RateLimits = {
  "defender.list": [
    { limit: 50, windowSeconds: 60 },
    { limit: 1500, windowSeconds: 3600 },
  ],
  "defender.get": [
    { limit: 100, windowSeconds: 60 },
    { limit: 1500, windowSeconds: 3600 },
  ],
  "defender.patch": [
    { limit: 50, windowSeconds: 60 },
    { limit: 1500, windowSeconds: 3600 },
  ],
  "defender.api": [
    { limit: 50, windowSeconds: 60 },
    { limit: 1500, windowSeconds: 3600 },
  ],
  graph: [{ limit: 150, windowSeconds: 60 }],
  // Legacy advanced hunting: 45 calls a minute and 1,500 an hour per tenant (reference 1.12; "at least 45",
  // varying with tenant size, so the floor is the budget).
  "defender.hunt": [
    { limit: 45, windowSeconds: 60 },
    { limit: 1500, windowSeconds: 3600 },
  ],
  // Graph runHuntingQuery: ASSUMED. Graph publishes no call count for hunting, only CPU per tenant in
  // 15-minute cycles (429 when spent). The legacy API's numbers, as a conservative call budget that keeps
  // a polling partner from exhausting a customer's CPU cycle by call volume alone; the 429s of a CPU
  // quota are reported as THROTTLED with Retry-After. Override with `limits` (HUNTING_GRAPH_CALLS_PER_MINUTE).
  "graph.hunt": [
    { limit: 45, windowSeconds: 60 },
    { limit: 1500, windowSeconds: 3600 },
  ],
};

export interface AcquireOptions {
  /** The operation's cancellation; aborting ends the wait with the signal's reason. */
  signal?: AbortSignal;
  /** Epoch ms by which the call must have been sent; a wait beyond it is refused up front. */
  deadline: number;
  /**
   * A follow-up of work already under way (a list's next page, a retry): it goes ahead of first calls in
   * the concurrency queue, so tenants finish one after another instead of all together at the end.
   */
  continuation?: boolean;
}

/** One granted call: holds a concurrency slot until released (after the response body is read). */
export interface RatePermit {
  /** Ends the call: frees its concurrency slot and counts it from now in the rate windows. Idempotent. */
  release(): void;
}

export interface RateBudgetStats {
  /** Permits currently held (upstream calls in flight). */
  inFlight: number;
  /** Callers waiting for a concurrency slot. */
  queued: number;
  /** Permits granted since creation. */
  granted: number;
  /** Acquisitions that had to wait for a rate slot. */
  waited: number;
  /** Acquisitions refused because the wait would pass the deadline. */
  refused: number;
}

/**
 * Where upstream calls ask for permission. In-process today (`InProcessRateBudget`); a Redis-backed
 * implementation can replace it when several replicas share one app registration's quotas.
 */
export interface RateBudget {
  /**
   * Waits for a rate slot of `(tenantId, bucket)` — one in every window of the bucket and of the quotas it
   * shares (`QUOTAS_OF`), taken together or not at all — and then for a concurrency slot.
   *
   * @throws UpstreamError THROTTLED (with `retryAfterSeconds`) when the rate slot would come after the
   *   deadline — nothing is sent; UPSTREAM_TIMEOUT when the concurrency slot does not come in time; the
   *   signal's reason when it aborts
   */
  acquire(tenantId: string, bucket: RateBucket, options: AcquireOptions): Promise<RatePermit>;
  /**
   * The upstream answered 429: no call of `(tenantId, bucket)` — nor of any bucket sharing a quota with it,
   * as the answer does not say which quota ran out — before `retryAfterMs` from now.
   */
  throttled(tenantId: string, bucket: RateBucket, retryAfterMs: number): void;
  stats(): RateBudgetStats;
}

export interface InProcessRateBudgetOptions {
  /** Per-bucket (and shared-quota) rules; one given here replaces its defaults. */
  limits?: Partial<RateLimits>;
  /** Upstream calls in flight across all tenants. Default 64. */
  maxConcurrent?: number;
  /**
   * Added to every window, for what stamping calls with their answer time (the latest the server can
   * have counted them at) does not cover: clock granularity and a server that counts late. Default 1,000 ms.
   */
  safetyMarginMs?: number;
  /** Clock, epoch ms. */
  now?: () => number;
}

/**
 * A call counted against a bucket's windows (and the shared ones: the same object sits in each log); `at`
 * moves to the send time once the concurrency slot is granted and to the answer time on release, so the
 * budget never counts a call earlier than the server did.
 */
interface Stamp {
  at: number;
}

interface QuotaState {
  /** Ascending by `at`. */
  log: Stamp[];
  /** No call before this (after a 429). */
  blockedUntil: number;
}

interface Waiter {
  grant: () => void;
}

/**
 * The in-process `RateBudget`: a sliding log per (tenant, quota) — the granularity Microsoft documents
 * (app + tenant), and the same algorithm the sandbox enforces — plus a FIFO semaphore. A call takes a slot
 * in its bucket's windows and in the shared ones in one synchronous step, so no window is ever charged
 * for a call another refused. State grows with the tenants polled and is pruned as windows pass; nothing
 * runs in the background.
 */
export class InProcessRateBudget implements RateBudget {
  private readonly limits: RateLimits;
  private readonly maxConcurrent: number;
  private readonly marginMs: number;
  private readonly now: () => number;
  private readonly quotas = new Map<string, QuotaState>();
  private inFlight = 0;
  private readonly queue: Waiter[] = [];
  /** Follow-up calls waiting for a slot: served before `queue`. */
  private readonly continuations: Waiter[] = [];
  private readonly counters = { granted: 0, waited: 0, refused: 0 };

  constructor(options: InProcessRateBudgetOptions = {}) {
    this.limits = { ...DEFAULT_RATE_LIMITS, ...options.limits };
    for (const quota of [...RATE_BUCKETS, ...SHARED_QUOTAS]) {
      for (const rule of this.limits[quota]) {
        if (!Number.isInteger(rule.limit) || rule.limit < 1 || !(rule.windowSeconds > 0)) {
          throw new RangeError(`invalid rate rule for ${quota}: ${JSON.stringify(rule)}`);
        }
      }
    }
    this.maxConcurrent = options.maxConcurrent ?? 64;
    if (!Number.isInteger(this.maxConcurrent) || this.maxConcurrent < 1) throw new RangeError("maxConcurrent must be a positive integer");
    this.marginMs = options.safetyMarginMs ?? 1_000;
    this.now = options.now ?? Date.now;
  }

  async acquire(tenantId: string, bucket: RateBucket, options: AcquireOptions): Promise<RatePermit> {
    const keys = QUOTAS_OF[bucket].map((quota) => quotaKey(tenantId, quota));
    let waited = false;
    let stamp: Stamp;
    for (;;) {
      options.signal?.throwIfAborted();
      const now = this.now();
      const states = keys.map((key) => this.state(key, now));
      const waitMs = Math.max(...states.map((state, i) => this.waitFor(state, QUOTAS_OF[bucket][i]!, now)));
      if (waitMs <= 0) {
        // Every window had room: take a slot in all of them before anything else can run.
        stamp = { at: now };
        for (const state of states) state.log.push(stamp);
        break;
      }
      if (now + waitMs > options.deadline) {
        this.counters.refused++;
        throw new UpstreamError(
          "THROTTLED",
          `the ${bucket} rate budget of tenant ${tenantId} has no slot before the deadline (next in ${Math.ceil(waitMs / 1000)} s)`,
          { tenantId, backend: backendOf(bucket), retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) },
        );
      }
      if (!waited) this.counters.waited++;
      waited = true;
      await sleep(waitMs, options.signal);
    }

    try {
      await this.takeSlot(options);
    } catch (error) {
      // Never sent: give the rate slot back, in every window it was taken in.
      for (const key of keys) {
        const state = this.quotas.get(key);
        if (state) state.log = state.log.filter((s) => s !== stamp);
      }
      if (error instanceof SlotTimeout) {
        throw new UpstreamError("UPSTREAM_TIMEOUT", `no free upstream connection slot before the deadline (${this.maxConcurrent} calls in flight)`, {
          tenantId,
          backend: backendOf(bucket),
        });
      }
      throw error;
    }
    // Stamp with the send time: waiting for the slot must not make the call look older than it is.
    this.restamp(keys, stamp);
    this.counters.granted++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        // And again with the answer's time, the latest the server can have counted it at: requests
        // queue in the connection pool and travel, so the send time can be well before the arrival.
        this.restamp(keys, stamp);
        this.releaseSlot();
      },
    };
  }

  /** Moves a call's stamp to now (never earlier), keeping every log it is in ascending. */
  private restamp(keys: readonly string[], stamp: Stamp): void {
    const now = this.now();
    if (now <= stamp.at) return;
    stamp.at = now;
    for (const key of keys) this.quotas.get(key)?.log.sort((a, b) => a.at - b.at);
  }

  throttled(tenantId: string, bucket: RateBucket, retryAfterMs: number): void {
    const now = this.now();
    for (const quota of QUOTAS_OF[bucket]) {
      const state = this.state(quotaKey(tenantId, quota), now);
      state.blockedUntil = Math.max(state.blockedUntil, now + Math.max(0, retryAfterMs));
    }
  }

  stats(): RateBudgetStats {
    return { inFlight: this.inFlight, queued: this.queue.length + this.continuations.length, ...this.counters };
  }

  /** How long until a call may take a slot in this quota's windows, 0 when it may now. */
  private waitFor(state: QuotaState, quota: RateQuota, now: number): number {
    let wait = state.blockedUntil - now;
    for (const rule of this.limits[quota]) {
      const windowMs = rule.windowSeconds * 1000 + this.marginMs;
      let inWindow = 0;
      let firstIndex = state.log.length;
      for (let i = state.log.length - 1; i >= 0 && state.log[i]!.at > now - windowMs; i--) {
        inWindow++;
        firstIndex = i;
      }
      if (inWindow >= rule.limit) {
        // Free once the call that makes the window full leaves it.
        const oldestThatMatters = state.log[firstIndex + (inWindow - rule.limit)]!;
        wait = Math.max(wait, oldestThatMatters.at + windowMs - now);
      }
    }
    return wait;
  }

  /** The quota's state with calls older than its longest window dropped. */
  private state(key: string, now: number): QuotaState {
    let state = this.quotas.get(key);
    if (!state) {
      state = { log: [], blockedUntil: 0 };
      this.quotas.set(key, state);
      return state;
    }
    const quota = key.slice(key.indexOf("|") + 1) as RateQuota;
    const longest = Math.max(...this.limits[quota].map((r) => r.windowSeconds)) * 1000 + this.marginMs;
    let drop = 0;
    while (drop < state.log.length && state.log[drop]!.at <= now - longest) drop++;
    if (drop > 0) state.log.splice(0, drop);
    return state;
  }

  private takeSlot(options: AcquireOptions): Promise<void> {
    if (this.inFlight < this.maxConcurrent && this.queue.length === 0 && this.continuations.length === 0) {
      this.inFlight++;
      return Promise.resolve();
    }
    const queue = options.continuation ? this.continuations : this.queue;
    return new Promise<void>((resolve, reject) => {
      const signal = options.signal;
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        const index = queue.indexOf(waiter);
        if (index >= 0) queue.splice(index, 1);
      };
      const waiter: Waiter = {
        grant: () => {
          cleanup();
          resolve();
        },
      };
      const onAbort = () => {
        cleanup();
        reject(signal!.reason);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new SlotTimeout());
      }, Math.max(0, options.deadline - this.now()));
      signal?.addEventListener("abort", onAbort, { once: true });
      queue.push(waiter);
    });
  }

  private releaseSlot(): void {
    const next = this.continuations.shift() ?? this.queue.shift();
    // The slot passes straight to the next waiter; inFlight stays the same.
    if (next) next.grant();
    else this.inFlight--;
  }
}

class SlotTimeout extends Error {}

function quotaKey(tenantId: string, quota: RateQuota): string {
  return `${tenantId.toLowerCase()}|${quota}`;
}

/** The backend a bucket belongs to, for errors. */
export function backendOf(bucket: RateBucket): IncidentsBackendName {
  return bucket === "graph" || bucket === "graph.hunt" ? "graph" : "defender";
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
