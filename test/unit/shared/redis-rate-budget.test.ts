import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
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

const REDIS_URL = process.env.TEST_REDIS_URL;

describe("RedisRateBudget on Redis", { skip: REDIS_URL ? false : "needs TEST_REDIS_URL" }, () => {
  let redis: Redis;
  /** Each test its own key prefix, so windows from other runs or tests never count. */
  const prefix = () => `cwtest-${Math.random().toString(36).slice(2)}`;
  const deadline = () => Date.now() + 200;
  const code = (promise: Promise<unknown>) =>
    promise.then(
      () => "granted",
      (e: unknown) => (e instanceof UpstreamError ? e.code : String(e)),
    );

  before(async () => {
    redis = new Redis(REDIS_URL!, { lazyConnect: true });
    await redis.connect();
  });
  after(() => redis.disconnect());

  it("counts list, get and update of replicas together against the Defender API's overall quota", async () => {
    const options = { prefix: prefix(), limits: { "defender.api": [{ limit: 3, windowSeconds: 60 }] } };
    // Two replicas: each has its own local windows; only Redis sees both.
    const one = new RedisRateBudget(redis, options);
    const two = new RedisRateBudget(redis, options);
    (await one.acquire("tenant-a", "defender.list", { deadline: deadline() })).release();
    (await two.acquire("tenant-a", "defender.get", { deadline: deadline() })).release();
    (await one.acquire("tenant-a", "defender.patch", { deadline: deadline() })).release();
    assert.equal(await code(two.acquire("tenant-a", "defender.list", { deadline: deadline() })), "THROTTLED");
    assert.equal(await code(one.acquire("tenant-a", "defender.get", { deadline: deadline() })), "THROTTLED");
    assert.equal(await code(two.acquire("tenant-b", "defender.get", { deadline: deadline() })), "granted");
    assert.equal(await code(one.acquire("tenant-a", "graph", { deadline: deadline() })), "granted");
  });

  it("takes the method's and the API's windows together or not at all", async () => {
    const options = { prefix: prefix(), limits: { "defender.list": [{ limit: 1, windowSeconds: 60 }], "defender.api": [{ limit: 2, windowSeconds: 60 }] } };
    const one = new RedisRateBudget(redis, options);
    const two = new RedisRateBudget(redis, options);
    (await one.acquire("tenant-a", "defender.list", { deadline: deadline() })).release();
    // Refused by the list window (on the other replica): no API-wide slot may be taken by it.
    assert.equal(await code(two.acquire("tenant-a", "defender.list", { deadline: deadline() })), "THROTTLED");
    assert.equal(await code(two.acquire("tenant-a", "defender.get", { deadline: deadline() })), "granted");
    assert.equal(await code(one.acquire("tenant-a", "defender.patch", { deadline: deadline() })), "THROTTLED");
  });

  it("gives the fleet's slot back when this replica cannot send the call", async () => {
    const options = { prefix: prefix(), limits: { "defender.api": [{ limit: 2, windowSeconds: 60 }] } };
    const one = new RedisRateBudget(redis, { ...options, maxConcurrent: 1 });
    const two = new RedisRateBudget(redis, options);
    const held = await one.acquire("tenant-a", "defender.get", { deadline: Date.now() + 5_000 });
    // Reserved in Redis, then no connection slot on this replica before the deadline: UPSTREAM_TIMEOUT.
    assert.equal(await code(one.acquire("tenant-a", "defender.list", { deadline: Date.now() + 50 })), "UPSTREAM_TIMEOUT");
    held.release();
    // The give-back is sent without waiting for it; a round trip later it has landed.
    await redis.ping();
    assert.equal(await code(two.acquire("tenant-a", "defender.patch", { deadline: deadline() })), "granted");
    assert.equal(await code(two.acquire("tenant-a", "defender.list", { deadline: deadline() })), "THROTTLED");
  });

  it("a Defender 429 seen by one replica holds every Defender method on the others", async () => {
    const options = { prefix: prefix() };
    const one = new RedisRateBudget(redis, options);
    const two = new RedisRateBudget(redis, options);
    one.throttled("tenant-a", "defender.list", 30_000);
    await redis.ping();
    assert.equal(await code(two.acquire("tenant-a", "defender.get", { deadline: deadline() })), "THROTTLED");
    assert.equal(await code(two.acquire("tenant-a", "graph", { deadline: deadline() })), "granted");
  });
});

describe("RedisRateBudget without Redis, overall quota", () => {
  it("still counts the Defender methods together in this replica's own windows", async () => {
    const redis = new Redis("redis://127.0.0.1:9", { lazyConnect: true, enableOfflineQueue: false });
    const budget = new RedisRateBudget(redis, { limits: { "defender.api": [{ limit: 2, windowSeconds: 60 }] } });
    (await budget.acquire("tenant-a", "defender.list", { deadline: Date.now() + 200 })).release();
    (await budget.acquire("tenant-a", "defender.get", { deadline: Date.now() + 200 })).release();
    await assert.rejects(budget.acquire("tenant-a", "defender.patch", { deadline: Date.now() + 200 }), { code: "THROTTLED" });
    redis.disconnect();
  });
});
