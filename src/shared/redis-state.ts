import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import type { Logger } from "pino";
import { UpstreamError } from "../defender/backend-client.js";
import {
  backendOf,
  DEFAULT_RATE_LIMITS,
  InProcessRateBudget,
  QUOTAS_OF,
  type AcquireOptions,
  type RateBucket,
  type RateBudget,
  type RateBudgetStats,
  type RateLimits,
  type RatePermit,
} from "../defender/rate-budget.js";
import { decodeCacheEntry, encodeCacheEntry, type IncidentCache, type TenantIncidentsEntry } from "../incidents/incident-cache.js";
import type { RefreshCoordinator } from "../incidents/incident-service.js";

/**
 * State that several replicas share through Redis, because Microsoft counts per app and tenant, not per
 * replica: the per-tenant rate windows (and Retry-After blocks), the lock that lets one replica refresh a
 * tenant at a time, and the incident cache that lock's holder fills for all of them.
 */
export async function connectRedis(url: string, logger: Logger): Promise<Redis> {
  const redis = new Redis(url, {
    lazyConnect: true,
    // Commands issued in one tick go out as one pipeline: 1,000 tenants' cache reads are one round trip.
    enableAutoPipelining: true,
    maxRetriesPerRequest: 2,
    // While Redis is away, commands fail at once (and callers fall back) rather than queue behind a reconnect.
    enableOfflineQueue: false,
    connectTimeout: 5_000,
  });
  redis.on("error", (error: Error) => logger.warn({ err: { message: error.message } }, "redis connection error"));
  await redis.connect();
  return redis;
}

/**
 * Reserves one call in every window of a (tenant, bucket) and of the quotas it shares (the Defender API as
 * a whole), all or none in one script, on the Redis server's clock so replicas with skewed clocks agree; or
 * answers how many ms to wait. A Retry-After block set by `throttled` answers with its remaining time.
 * KEYS: per quota its window set then its block key. ARGV: member, safety margin ms, then per quota the
 * number of rules followed by limit, window ms, ….
 */
const RESERVE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local margin = tonumber(ARGV[2])
local wait = 0
local longest = {}
local a = 3
for q = 1, #KEYS / 2 do
  local set = KEYS[2 * q - 1]
  local blocked = redis.call('PTTL', KEYS[2 * q])
  if blocked > wait then wait = blocked end
  local rules = tonumber(ARGV[a])
  a = a + 1
  longest[q] = 0
  for r = 1, rules do
    local limit = tonumber(ARGV[a])
    local window = tonumber(ARGV[a + 1]) + margin
    a = a + 2
    if window > longest[q] then longest[q] = window end
    local count = redis.call('ZCOUNT', set, now - window, '+inf')
    if count >= limit then
      local oldest = redis.call('ZRANGEBYSCORE', set, now - window, '+inf', 'WITHSCORES', 'LIMIT', count - limit, 1)
      local w = tonumber(oldest[2]) + window - now + 1
      if w > wait then wait = w end
    end
  end
end
if wait > 0 then return wait end
for q = 1, #KEYS / 2 do
  local set = KEYS[2 * q - 1]
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now - longest[q])
  redis.call('ZADD', set, now, ARGV[1])
  if longest[q] > 0 then redis.call('PEXPIRE', set, longest[q]) end
end
return 0
`;

/** Deletes a lock only when it is still ours (it may have expired and been taken by another replica). */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * The rate budget of all replicas together: a call is sent only when every window of its (tenant,
 * bucket) and of the quotas the bucket shares has room across the fleet; then the process's own concurrency cap applies. A wait that does not
 * fit the caller's deadline is THROTTLED up front, as in-process. Calls are counted when reserved (not
 * when answered, as in-process), so the windows carry a safety margin of their own.
 */
export class RedisRateBudget implements RateBudget {
  private readonly local: InProcessRateBudget;
  private readonly limits: RateLimits;
  private readonly counters = { waited: 0, refused: 0 };

  constructor(
    private readonly redis: Redis,
    options: { prefix?: string; limits?: Partial<RateLimits>; maxConcurrent?: number; safetyMarginMs?: number; logger?: Logger } = {},
  ) {
    this.prefix = options.prefix ?? "cw";
    this.limits = { ...DEFAULT_RATE_LIMITS, ...options.limits };
    this.margin = options.safetyMarginMs ?? 1_000;
    this.logger = options.logger;
    // The process's own budget stays in front: its concurrency cap, and the same windows for this replica
    // alone (never tighter than the fleet's), which alone still hold while Redis is unreachable.
    this.local = new InProcessRateBudget({ limits: this.limits, ...(options.maxConcurrent ? { maxConcurrent: options.maxConcurrent } : {}) });
  }

  private readonly prefix: string;
  private readonly margin: number;
  private readonly logger: Logger | undefined;
  private lastRedisWarning = 0;

  async acquire(tenantId: string, bucket: RateBucket, options: AcquireOptions): Promise<RatePermit> {
    const member = randomUUID();
    const quotas = QUOTAS_OF[bucket];
    const keys = quotas.flatMap((quota) => [this.key("rate", tenantId, quota), this.key("block", tenantId, quota)]);
    const args: (string | number)[] = [member, this.margin];
    for (const quota of quotas) {
      args.push(this.limits[quota].length);
      for (const rule of this.limits[quota]) args.push(rule.limit, rule.windowSeconds * 1000);
    }
    let reserved = false;
    let waited = false;
    for (;;) {
      if (options.signal?.aborted) throw options.signal.reason;
      let waitMs: number;
      try {
        waitMs = Number(await this.redis.eval(RESERVE, keys.length, ...keys, ...args));
      } catch (error) {
        // Redis is unreachable: this replica's own windows still hold; the fleet's resume with Redis.
        if (Date.now() - this.lastRedisWarning > 60_000) {
          this.lastRedisWarning = Date.now();
          this.logger?.warn({ err: { message: (error as Error).message } }, "shared rate budget unavailable: using this replica's own");
        }
        break;
      }
      if (waitMs <= 0) {
        reserved = true;
        break;
      }
      if (Date.now() + waitMs > options.deadline) {
        this.counters.refused++;
        throw new UpstreamError(
          "THROTTLED",
          `the ${bucket} rate budget of tenant ${tenantId} (shared by every replica) has no slot before the deadline (next in ${Math.ceil(waitMs / 1000)} s)`,
          { tenantId, backend: backendOf(bucket), retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) },
        );
      }
      if (!waited) this.counters.waited++;
      waited = true;
      await sleep(Math.min(waitMs, 1_000), undefined, options.signal ? { signal: options.signal } : {});
    }
    try {
      return await this.local.acquire(tenantId, bucket, options);
    } catch (error) {
      // Reserved in the fleet's windows but never sent (this replica's own cap or deadline): give it back.
      if (reserved) {
        const sets = quotas.map((quota) => this.key("rate", tenantId, quota));
        void Promise.all(sets.map((set) => this.redis.zrem(set, member))).catch(() => undefined);
      }
      throw error;
    }
  }

  throttled(tenantId: string, bucket: RateBucket, retryAfterMs: number): void {
    // Every replica waits out a 429's Retry-After, not just the one that got it, in every quota the
    // bucket takes part in (the answer does not say which of them ran out).
    this.local.throttled(tenantId, bucket, retryAfterMs);
    for (const quota of QUOTAS_OF[bucket]) {
      void this.redis.set(this.key("block", tenantId, quota), "1", "PX", Math.max(1, Math.round(retryAfterMs))).catch(() => undefined);
    }
  }

  stats(): RateBudgetStats {
    const local = this.local.stats();
    return { ...local, waited: local.waited + this.counters.waited, refused: local.refused + this.counters.refused };
  }

  private key(kind: string, tenantId: string, bucket: string): string {
    return `${this.prefix}:${kind}:{${tenantId}}:${bucket}`;
  }
}

/**
 * One replica refreshes a tenant at a time: the others wait for the lock to go (the holder has then
 * written the shared cache) and read what it fetched. The lock expires by itself if its holder dies.
 */
export class RedisRefreshCoordinator implements RefreshCoordinator {
  constructor(
    private readonly redis: Redis,
    private readonly options: { prefix?: string; pollMs?: number } = {},
  ) {}

  async exclusive<T>(key: string, ttlMs: number, deadline: number, run: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    const lock = `${this.options.prefix ?? "cw"}:refresh:{${key}}`;
    const token = randomUUID();
    const acquired = await this.redis.set(lock, token, "PX", Math.max(1_000, Math.round(ttlMs)), "NX");
    if (acquired === "OK") {
      try {
        return { ran: true, value: await run() };
      } finally {
        await this.redis.eval(RELEASE, 1, lock, token).catch(() => undefined);
      }
    }
    const pollMs = this.options.pollMs ?? 50;
    while (Date.now() < deadline && (await this.redis.exists(lock)) === 1) {
      await sleep(Math.min(pollMs, Math.max(1, deadline - Date.now())));
    }
    return { ran: false };
  }
}

/**
 * The incident cache in Redis, shared by every replica. Entries are large (a tenant's incidents), so each
 * has a small version key beside it and a replica keeps the last entry it decoded: a warm read costs one
 * tiny GET per tenant (pipelined) and no decoding unless another replica wrote since.
 */
export class RedisIncidentCache implements IncidentCache {
  private readonly decoded = new Map<string, { version: string; entry: TenantIncidentsEntry }>();

  constructor(
    private readonly redis: Redis,
    private readonly options: { prefix?: string; ttlMs?: number } = {},
  ) {}

  async get(tenantId: string): Promise<TenantIncidentsEntry | undefined> {
    const version = await this.redis.get(this.key(tenantId, "v"));
    if (version === null) {
      this.decoded.delete(tenantId);
      return undefined;
    }
    const known = this.decoded.get(tenantId);
    if (known && known.version === version) return known.entry;
    // Both in one transaction: the version read is the version of the data read.
    const replies = await this.redis.multi().get(this.key(tenantId, "data")).get(this.key(tenantId, "v")).exec();
    const text = replies?.[0]?.[1] as string | null | undefined;
    const current = replies?.[1]?.[1] as string | null | undefined;
    if (text === null || text === undefined) return undefined;
    const entry = decodeCacheEntry(text);
    if (current) this.decoded.set(tenantId, { version: current, entry });
    return entry;
  }

  async set(tenantId: string, entry: TenantIncidentsEntry): Promise<void> {
    const version = randomUUID();
    const ttl = this.options.ttlMs ?? 24 * 3_600_000;
    await this.redis.multi().set(this.key(tenantId, "data"), encodeCacheEntry(entry), "PX", ttl).set(this.key(tenantId, "v"), version, "PX", ttl).exec();
    this.decoded.set(tenantId, { version, entry });
  }

  async delete(tenantId: string): Promise<void> {
    this.decoded.delete(tenantId);
    await this.redis.del(this.key(tenantId, "data"), this.key(tenantId, "v"));
  }

  private key(tenantId: string, part: string): string {
    return `${this.options.prefix ?? "cw"}:incidents:{${tenantId}}:${part}`;
  }
}
