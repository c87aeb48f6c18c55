import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SlidingWindowLimiter } from "../../../src/sandbox/rate-limit.js";

describe("SlidingWindowLimiter", () => {
  const rules = [
    { limit: 3, windowSeconds: 60 },
    { limit: 5, windowSeconds: 3600 },
  ];

  it("allows up to the limit in a window, then answers with the seconds until the oldest call leaves it", () => {
    const limiter = new SlidingWindowLimiter();
    const t0 = 1_000_000;
    assert.deepEqual(limiter.take("k", rules, t0), { ok: true });
    assert.deepEqual(limiter.take("k", rules, t0 + 10_000), { ok: true });
    assert.deepEqual(limiter.take("k", rules, t0 + 20_000), { ok: true });
    const refused = limiter.take("k", rules, t0 + 30_000);
    assert.equal(refused.ok, false);
    assert.ok(!refused.ok && refused.retryAfterSeconds === 30 && refused.rule.limit === 3);
  });

  it("does not charge refused calls, so waiting Retry-After is enough", () => {
    const limiter = new SlidingWindowLimiter();
    const t0 = 5_000_000;
    for (let i = 0; i < 3; i++) limiter.take("k", rules, t0);
    for (let i = 0; i < 10; i++) assert.equal(limiter.take("k", rules, t0 + 1000).ok, false);
    assert.equal(limiter.take("k", rules, t0 + 60_001).ok, true);
  });

  it("applies the longer window too, and keys are independent", () => {
    const limiter = new SlidingWindowLimiter();
    let t = 9_000_000;
    for (let i = 0; i < 5; i++) {
      assert.equal(limiter.take("a", rules, t).ok, true);
      t += 61_000;
    }
    const refused = limiter.take("a", rules, t);
    assert.ok(!refused.ok && refused.rule.windowSeconds === 3600);
    assert.equal(limiter.take("b", rules, t).ok, true);
    limiter.reset();
    assert.equal(limiter.take("a", rules, t).ok, true);
  });

  it("takeAll charges every key or none, and answers the longest wait", () => {
    const limiter = new SlidingWindowLimiter();
    const t0 = 20_000_000;
    const method = { key: "list", rules: [{ limit: 1, windowSeconds: 60 }] };
    const api = { key: "api", rules: [{ limit: 3, windowSeconds: 60 }] };
    assert.equal(limiter.takeAll([method, api], t0).ok, true);
    // Refused by the method's key: the shared one is not charged.
    const refused = limiter.takeAll([method, api], t0 + 10_000);
    assert.ok(!refused.ok && refused.rule.limit === 1 && refused.retryAfterSeconds === 50);
    assert.equal(limiter.takeAll([{ key: "get", rules: [] }, api], t0 + 10_000).ok, true);
    assert.equal(limiter.takeAll([{ key: "patch", rules: [] }, api], t0 + 20_000).ok, true);
    const full = limiter.takeAll([{ key: "get", rules: [] }, api], t0 + 30_000);
    assert.ok(!full.ok && full.rule.limit === 3 && full.retryAfterSeconds === 30);
    // Both refuse: the longer wait wins.
    const other = new SlidingWindowLimiter();
    const one = [{ limit: 1, windowSeconds: 60 }];
    other.take("api", one, t0);
    other.take("list", one, t0 + 30_000);
    const both = other.takeAll([{ key: "list", rules: one }, { key: "api", rules: one }], t0 + 40_000);
    assert.ok(!both.ok && both.retryAfterSeconds === 50, JSON.stringify(both));
  });
});
