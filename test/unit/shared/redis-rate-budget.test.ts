import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Redis } from "ioredis";
import { UpstreamError } from "../../../src/defender/backend-client.js";
import { RedisRateBudget } from "../../../src/shared/redis-state.js";

describe("RedisRateBudget without Redis", () => {
  it("falls back to this replica's own windows instead of failing the tenant", async () => {
    // Never connected, offline queue off: every command fails at once, as while Redis is away.
    const redis = new Redis("redis://127.0.0.1:9", { lazyConnect: true, enableOfflineQueue: false });
    const budget = new RedisRateBudget(redis, { limits: { "defender.list": [{ limit: 2, windowSeconds: 60 }] } });
    for (let i = 0; i < 2; i++) (await budget.acquire("tenant-a", "defender.list", { deadline: Date.now() + 200 })).release();
    await assert.rejects(budget.acquire("tenant-a", "defender.list", { deadline: Date.now() + 200 }), (error: unknown) => {
      assert.ok(error instanceof UpstreamError);
      assert.equal(error.code, "THROTTLED");
      return true;
    });
    assert.equal(budget.stats().granted, 2);
    redis.disconnect();
  });
});
