import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { clientKey, FixedWindowLimiter } from "../../../src/http/consent-callback.js";

describe("consent callback rate limit", () => {
  it("allows `limit` requests per key and window, then says how long to wait; a new window starts afresh", () => {
    let now = 1_000_000;
    const limiter = new FixedWindowLimiter(3, 60_000, () => now);
    assert.deepEqual([limiter.take("a"), limiter.take("a"), limiter.take("a")], [0, 0, 0]);
    assert.equal(limiter.take("a"), 60);
    assert.equal(limiter.take("b"), 0, "each key has its own window");
    now += 45_500;
    assert.equal(limiter.take("a"), 15);
    now += 14_500;
    assert.equal(limiter.take("a"), 0, "the window ended");
  });

  it("keeps at most maxKeys windows, sweeping expired ones first", () => {
    let now = 0;
    const limiter = new FixedWindowLimiter(1, 60_000, () => now, 3);
    for (const key of ["a", "b", "c"]) limiter.take(key);
    limiter.take("d"); // full: the oldest window ("a") goes
    assert.equal(limiter.take("a"), 0, "a was dropped, so it starts a new window");
    assert.equal(limiter.take("d"), 60, "d is still counted");
    now = 60_000;
    assert.equal(limiter.take("e"), 0);
  });

  it("keys IPv4 by address and IPv6 by its /64", () => {
    assert.equal(clientKey("203.0.113.7"), "203.0.113.7");
    assert.equal(clientKey("::ffff:203.0.113.7"), "203.0.113.7");
    assert.equal(clientKey("2001:db8:0:1:aaaa::1"), "2001:db8:0:1::/64");
    assert.equal(clientKey("2001:db8:0:1:bbbb:cccc:dddd:eeee"), "2001:db8:0:1::/64");
    assert.equal(clientKey("2001:DB8::1"), "2001:db8:0:0::/64");
    assert.equal(clientKey("::1"), "0:0:0:0::/64");
  });
});
