import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { UpstreamError } from "../../../src/defender/backend-client.js";
import { InProcessRateBudget, type RatePermit } from "../../../src/defender/rate-budget.js";

const A = "aaaaaaaa-0000-0000-0000-000000000001";
const B = "bbbbbbbb-0000-0000-0000-000000000002";

/** A hand-driven clock: `acquire` sleeps on real timers, so tests keep waits short and read this clock. */
function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe("InProcessRateBudget", () => {
  it("grants up to the limit per (tenant, bucket), then refuses a wait past the deadline with THROTTLED", async () => {
    const c = clock();
    const budget = new InProcessRateBudget({ limits: { "defender.list": [{ limit: 3, windowSeconds: 60 }] }, safetyMarginMs: 0, now: c.now });
    const deadline = c.now() + 10_000;
    for (let i = 0; i < 3; i++) (await budget.acquire(A, "defender.list", { deadline })).release();
    const error = await budget.acquire(A, "defender.list", { deadline }).then(
      () => assert.fail("expected THROTTLED"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof UpstreamError);
    assert.equal(error.code, "THROTTLED");
    assert.equal(error.retryAfterSeconds, 60);
    assert.equal(error.details.tenantId, A);
    assert.equal(error.details.backend, "defender");
    // Other tenants and other buckets have their own budgets.
    (await budget.acquire(B, "defender.list", { deadline })).release();
    (await budget.acquire(A, "defender.get", { deadline })).release();
    // The window slides.
    c.advance(60_001);
    (await budget.acquire(A, "defender.list", { deadline: c.now() + 1 })).release();
    assert.deepEqual({ ...budget.stats(), inFlight: 0 }, { inFlight: 0, queued: 0, granted: 6, waited: 0, refused: 1 });
  });

  it("applies every rule of a bucket (per minute and per hour)", async () => {
    const c = clock();
    const budget = new InProcessRateBudget({
      limits: { "defender.patch": [{ limit: 5, windowSeconds: 60 }, { limit: 6, windowSeconds: 3600 }] },
      safetyMarginMs: 0,
      now: c.now,
    });
    for (let i = 0; i < 5; i++) (await budget.acquire(A, "defender.patch", { deadline: c.now() + 1 })).release();
    c.advance(61_000);
    (await budget.acquire(A, "defender.patch", { deadline: c.now() + 1 })).release();
    c.advance(61_000);
    const error = (await budget.acquire(A, "defender.patch", { deadline: c.now() + 1 }).catch((e: unknown) => e)) as UpstreamError;
    assert.equal(error.code, "THROTTLED");
    // The hour frees when the first call is an hour old: 3600 s - 122 s after it.
    assert.equal(error.retryAfterSeconds, 3600 - 122);
  });

  it("waits for a slot when it fits the deadline", async () => {
    const budget = new InProcessRateBudget({ limits: { graph: [{ limit: 2, windowSeconds: 0.2 }] }, safetyMarginMs: 0 });
    const started = Date.now();
    const deadline = started + 5_000;
    for (let i = 0; i < 6; i++) (await budget.acquire(A, "graph", { deadline })).release();
    const elapsed = Date.now() - started;
    // Six calls at two per 200 ms: calls 3 and 5 each wait for a window to pass (4 and 6 follow at once).
    assert.ok(elapsed >= 390, `elapsed ${elapsed}`);
    // At least calls 3 and 5 wait; on a loaded machine a slow event loop can make one more call wait.
    const waited = budget.stats().waited;
    assert.ok(waited >= 2 && waited <= 4, `waited ${waited}`);
    assert.equal(budget.stats().refused, 0);
  });

  it("never lets more than the limit through within any window under concurrency", async () => {
    const budget = new InProcessRateBudget({ limits: { "defender.get": [{ limit: 5, windowSeconds: 0.25 }] }, safetyMarginMs: 0 });
    const sent: number[] = [];
    const deadline = Date.now() + 5_000;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        const permit = await budget.acquire(A, "defender.get", { deadline });
        sent.push(Date.now());
        permit.release();
      }),
    );
    sent.sort((a, b) => a - b);
    for (let i = 5; i < sent.length; i++) assert.ok(sent[i]! - sent[i - 5]! >= 245, `calls ${i - 5} and ${i} are ${sent[i]! - sent[i - 5]!} ms apart`);
  });

  it("holds a bucket after a 429 (throttled) and refuses when the hold passes the deadline", async () => {
    const c = clock();
    const budget = new InProcessRateBudget({ now: c.now });
    budget.throttled(A, "graph", 30_000);
    const error = (await budget.acquire(A, "graph", { deadline: c.now() + 10_000 }).catch((e: unknown) => e)) as UpstreamError;
    assert.equal(error.code, "THROTTLED");
    assert.equal(error.details.backend, "graph");
    assert.equal(error.retryAfterSeconds, 30);
    (await budget.acquire(B, "graph", { deadline: c.now() + 1 })).release();
    c.advance(30_000);
    (await budget.acquire(A, "graph", { deadline: c.now() + 1 })).release();
  });

  it("caps calls in flight across tenants, FIFO; a waiter past its deadline gets UPSTREAM_TIMEOUT and its rate slot back", async () => {
    const budget = new InProcessRateBudget({ maxConcurrent: 2, limits: { "defender.get": [{ limit: 3, windowSeconds: 60 }] } });
    const far = Date.now() + 10_000;
    const p1 = await budget.acquire(A, "defender.get", { deadline: far });
    const p2 = await budget.acquire(B, "defender.get", { deadline: far });
    assert.equal(budget.stats().inFlight, 2);
    const order: string[] = [];
    const third = budget.acquire(A, "defender.get", { deadline: far }).then((p) => (order.push("third"), p));
    const fourth = budget.acquire(B, "defender.get", { deadline: far }).then((p) => (order.push("fourth"), p));
    const late = await budget.acquire(A, "defender.get", { deadline: Date.now() + 50 }).catch((e: unknown) => e);
    assert.ok(late instanceof UpstreamError && late.code === "UPSTREAM_TIMEOUT", String(late));
    assert.equal(budget.stats().queued, 2);
    p1.release();
    p1.release(); // idempotent
    const p3: RatePermit = await third;
    p2.release();
    const p4: RatePermit = await fourth;
    assert.deepEqual(order, ["third", "fourth"]);
    assert.equal(budget.stats().inFlight, 2);
    p3.release();
    p4.release();
    assert.equal(budget.stats().inFlight, 0);
    // The timed-out waiter's rate slot was returned: A has used 2 of 3.
    (await budget.acquire(A, "defender.get", { deadline: Date.now() + 1 })).release();
  });

  it("serves follow-up calls (next pages, retries) before first calls when slots are short", async () => {
    const budget = new InProcessRateBudget({ maxConcurrent: 1 });
    const held = await budget.acquire("t0", "defender.list", { deadline: Date.now() + 5_000 });
    const order: string[] = [];
    const wait = (tenant: string, continuation: boolean) =>
      budget.acquire(tenant, "defender.list", { deadline: Date.now() + 5_000, continuation }).then((permit) => {
        order.push(tenant);
        permit.release();
      });
    const waiting = [wait("first-a", false), wait("first-b", false), wait("next-page-c", true), wait("next-page-d", true)];
    assert.equal(budget.stats().queued, 4);
    held.release();
    await Promise.all(waiting);
    assert.deepEqual(order, ["next-page-c", "next-page-d", "first-a", "first-b"]);
  });

  it("ends a wait when the signal aborts, with the signal's reason", async () => {
    const budget = new InProcessRateBudget({ limits: { graph: [{ limit: 1, windowSeconds: 60 }] } });
    (await budget.acquire(A, "graph", { deadline: Date.now() + 1_000 })).release();
    const controller = new AbortController();
    const waiting = budget.acquire(A, "graph", { deadline: Date.now() + 120_000, signal: controller.signal });
    const reason = new Error("client went away");
    setTimeout(() => controller.abort(reason), 20);
    await assert.rejects(waiting, (e) => e === reason);
  });

  it("counts list, get and update together against the Defender API's overall quota", async () => {
    const c = clock();
    const budget = new InProcessRateBudget({ limits: { "defender.api": [{ limit: 4, windowSeconds: 60 }] }, safetyMarginMs: 0, now: c.now });
    const deadline = c.now() + 10_000;
    // Each method is far below its own limit (50, 100, 50 a minute); together they fill the API's window.
    for (const bucket of ["defender.list", "defender.get", "defender.patch", "defender.list"] as const) {
      (await budget.acquire(A, bucket, { deadline })).release();
    }
    for (const bucket of ["defender.get", "defender.patch", "defender.list"] as const) {
      const error = (await budget.acquire(A, bucket, { deadline }).catch((e: unknown) => e)) as UpstreamError;
      assert.ok(error instanceof UpstreamError, `${bucket} was granted past the API-wide quota`);
      assert.equal(error.code, "THROTTLED");
      assert.equal(error.retryAfterSeconds, 60);
    }
    // Per app and tenant: another tenant, and Graph, are untouched.
    (await budget.acquire(B, "defender.get", { deadline })).release();
    (await budget.acquire(A, "graph", { deadline })).release();
    c.advance(60_001);
    (await budget.acquire(A, "defender.patch", { deadline: c.now() + 1 })).release();
    assert.equal(budget.stats().refused, 3);
  });

  it("charges no window for a call another window refused, nor for one that never got a connection slot", async () => {
    const c = clock();
    const budget = new InProcessRateBudget({
      limits: { "defender.list": [{ limit: 1, windowSeconds: 60 }], "defender.api": [{ limit: 3, windowSeconds: 60 }] },
      safetyMarginMs: 0,
      maxConcurrent: 1,
      now: c.now,
    });
    const deadline = c.now() + 10_000;
    (await budget.acquire(A, "defender.list", { deadline })).release();
    // Refused by the list window: must not have taken an API-wide slot.
    assert.equal(((await budget.acquire(A, "defender.list", { deadline }).catch((e: unknown) => e)) as UpstreamError).code, "THROTTLED");
    const held = await budget.acquire(A, "defender.get", { deadline });
    // Gets a rate slot in both windows, then times out waiting for the one connection slot: gives both back.
    const late = await budget.acquire(A, "defender.patch", { deadline: c.now() + 30 }).catch((e: unknown) => e);
    assert.ok(late instanceof UpstreamError && late.code === "UPSTREAM_TIMEOUT", String(late));
    held.release();
    // 2 of 3 API-wide slots used (list, get): the third is still there.
    (await budget.acquire(A, "defender.patch", { deadline })).release();
    const full = (await budget.acquire(A, "defender.get", { deadline }).catch((e: unknown) => e)) as UpstreamError;
    assert.equal(full.code, "THROTTLED");
  });

  it("holds every Defender method after a Defender 429 (it does not say which quota ran out), not Graph", async () => {
    const c = clock();
    const budget = new InProcessRateBudget({ now: c.now });
    budget.throttled(A, "defender.list", 20_000);
    for (const bucket of ["defender.list", "defender.get", "defender.patch"] as const) {
      const error = (await budget.acquire(A, bucket, { deadline: c.now() + 5_000 }).catch((e: unknown) => e)) as UpstreamError;
      assert.equal(error.code, "THROTTLED", bucket);
      assert.equal(error.retryAfterSeconds, 20);
    }
    (await budget.acquire(A, "graph", { deadline: c.now() + 1 })).release();
    c.advance(20_000);
    (await budget.acquire(A, "defender.get", { deadline: c.now() + 1 })).release();
  });

  it("rejects invalid configuration", () => {
    assert.throws(() => new InProcessRateBudget({ limits: { graph: [{ limit: 0, windowSeconds: 60 }] } }), RangeError);
    assert.throws(() => new InProcessRateBudget({ maxConcurrent: 0 }), RangeError);
    assert.throws(() => new InProcessRateBudget({ limits: { "defender.api": [{ limit: 1, windowSeconds: 0 }] } }), RangeError);
  });
});
