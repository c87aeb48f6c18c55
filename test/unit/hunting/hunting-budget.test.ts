import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { UpstreamError } from "../../../src/defender/backend-client.js";
import { backendOf, DEFAULT_RATE_LIMITS, InProcessRateBudget, QUOTAS_OF } from "../../../src/defender/rate-budget.js";

const TENANT = "55555555-5555-5555-5555-555555555555";

describe("hunting rate buckets", () => {
  it("budget legacy hunting at 45 a minute and 1,500 an hour, Graph hunting at an assumed same, apart from incidents", () => {
    assert.deepEqual(DEFAULT_RATE_LIMITS["defender.hunt"], [
      { limit: 45, windowSeconds: 60 },
      { limit: 1500, windowSeconds: 3600 },
    ]);
    assert.deepEqual(QUOTAS_OF["defender.hunt"], ["defender.hunt"], "not the incidents API's shared quota");
    assert.deepEqual(QUOTAS_OF["graph.hunt"], ["graph.hunt"]);
    assert.equal(backendOf("graph.hunt"), "graph");
    assert.equal(backendOf("defender.hunt"), "defender");
  });

  it("a spent hunting bucket refuses hunts with THROTTLED and leaves the tenant's incident calls alone", async () => {
    const now = 1_000_000;
    const budget = new InProcessRateBudget({ now: () => now, limits: { "defender.hunt": [{ limit: 2, windowSeconds: 60 }] } });
    const deadline = now + 1_000;
    for (let i = 0; i < 2; i++) (await budget.acquire(TENANT, "defender.hunt", { deadline })).release();
    await assert.rejects(budget.acquire(TENANT, "defender.hunt", { deadline }), (e: unknown) => e instanceof UpstreamError && e.code === "THROTTLED" && e.details.backend === "defender");
    (await budget.acquire(TENANT, "defender.list", { deadline })).release();
    // A 429 on Graph hunting holds Graph hunting only.
    budget.throttled(TENANT, "graph.hunt", 30_000);
    await assert.rejects(budget.acquire(TENANT, "graph.hunt", { deadline }), (e: unknown) => e instanceof UpstreamError && e.retryAfterSeconds === 30 && e.details.backend === "graph");
    (await budget.acquire(TENANT, "graph", { deadline })).release();
  });
});
