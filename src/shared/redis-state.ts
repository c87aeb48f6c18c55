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
