import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MockAgent } from "undici";
import type { AccessToken, TokenProvider } from "../../../src/auth/token-provider.js";
import { UpstreamError, type UpstreamErrorCode } from "../../../src/defender/backend-client.js";
import { InProcessRateBudget } from "../../../src/defender/rate-budget.js";
import { HuntingClient, type HuntingBackendName } from "../../../src/hunting/hunting-client.js";
import { toHuntingTenantError } from "../../../src/hunting/hunting-errors.js";

/** The hunting client over undici's MockAgent: both backends' shapes, truncation, and every error mapping. */

const TENANT = "44444444-4444-4444-4444-444444444444";
const DEFENDER = "https://api.security.example";
const GRAPH = "https://graph.example/v1.0";
const QUERY = "AlertInfo | where Title has 'secret-marker-7731' | take 3";

const tokens: TokenProvider = {
  getToken: async (): Promise<AccessToken> => ({ accessToken: "tok", expiresOn: new Date(Date.now() + 3_600_000), fromCache: true, claims: {} as AccessToken["claims"], fingerprint: "f" }),
  invalidate: () => undefined,
  forgetFailures: () => undefined,
  stats: () => ({ requests: 0, cacheHits: 0, coalesced: 0, acquisitions: 0, tokensIssued: 0, failures: 0, backoffRefusals: 0, cachedTokens: 0 }),
};

function setup(rowLimit?: number) {
  const agent = new MockAgent();
  agent.disableNetConnect();
  const client = new HuntingClient({
    dispatcher: agent,
    tokenProvider: tokens,
    budget: new InProcessRateBudget(),
    defenderApiBase: DEFENDER,
    graphApiBase: GRAPH,
    ...(rowLimit ? { rowLimit } : {}),
    retry: { baseDelayMs: 1, maxDelayMs: 2 },
  });
  return { agent, client };
}

function intercept(agent: MockAgent, backend: HuntingBackendName) {
  return backend === "graph"
    ? agent.get("https://graph.example").intercept({ path: "/v1.0/security/runHuntingQuery", method: "POST" })
    : agent.get(DEFENDER).intercept({ path: "/api/advancedhunting/run", method: "POST" });
}

async function failure(promise: Promise<unknown>, code: UpstreamErrorCode): Promise<UpstreamError> {
  const error = await promise.then(
    () => assert.fail(`expected ${code}`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof UpstreamError, String(error));
  assert.equal(error.code, code, error.message);
  return error;
}

describe("HuntingClient", () => {
  it("maps Graph's {schema, results} and sends Query and Timespan", async () => {
    const { agent, client } = setup();
    let body: unknown;
    intercept(agent, "graph").reply(200, (options) => {
      body = JSON.parse(String(options.body));
      return {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.security.huntingQueryResults",
        schema: [
          { name: "Timestamp", type: "DateTime" },
          { name: "Title", type: "String" },
        ],
        results: [{ Timestamp: "2026-11-29T10:00:00Z", Title: "a" }],
      };
    });
    const answer = await client.run(TENANT, "graph", QUERY, { timespan: "P1D" });
    assert.deepEqual(body, { Query: QUERY, Timespan: "P1D" });
    assert.deepEqual(answer.columns, [
      { name: "Timestamp", type: "DateTime" },
      { name: "Title", type: "String" },
    ]);
    assert.equal(answer.rows.length, 1);
    assert.equal(answer.truncated, false);
    assert.equal(answer.backend, "graph");
  });

  it("maps the legacy {Stats, Schema, Results}, sends only Query, and reports truncation at the row limit", async () => {
    const { agent, client } = setup(2);
    let body: unknown;
    intercept(agent, "defender").reply(200, (options) => {
      body = JSON.parse(String(options.body));
      return { Stats: { ExecutionTime: 0.1 }, Schema: [{ Name: "DeviceName", Type: "String" }], Results: [{ DeviceName: "a" }, { DeviceName: "b" }] };
    });
    const answer = await client.run(TENANT, "defender", QUERY, { timespan: "P1D" });
    assert.deepEqual(body, { Query: QUERY });
    assert.deepEqual(answer.columns, [{ name: "DeviceName", type: "String" }]);
    assert.equal(answer.truncated, true, "2 rows at a limit of 2");
    intercept(agent, "defender").reply(200, { Schema: [{ Name: "X", Type: "Int32" }], Results: [{ X: 1 }] });
    assert.equal((await client.run(TENANT, "defender", QUERY)).truncated, false);
  });

  it("400 → BAD_REQUEST carrying the service's syntax error", async () => {
    const { agent, client } = setup();
    intercept(agent, "graph").reply(400, { error: { code: "BadRequest", message: "Query could not be parsed at 'wher' on line [1,12]", innerError: {} } });
    const error = await failure(client.run(TENANT, "graph", QUERY), "BAD_REQUEST");
    assert.match(error.message, /Query could not be parsed at 'wher' on line \[1,12\]/);
    assert.equal(error.details.bodyExcerpt, undefined, "no body kept on the error");
    const tenantError = toHuntingTenantError(error, "graph");
    assert.equal(tenantError.code, "BAD_REQUEST");
    assert.match(tenantError.message, /could not be parsed/);
  });

  it("403 → MISSING_ROLE naming the hunting permission of each backend", async () => {
    const { agent, client } = setup();
    intercept(agent, "graph").reply(403, { error: { code: "Forbidden", message: "Missing application roles." } });
    const graph = await failure(client.run(TENANT, "graph", QUERY), "MISSING_ROLE");
    assert.match(graph.message, /ThreatHunting\.Read\.All/);
    assert.match(toHuntingTenantError(graph, "graph").hint, /ThreatHunting\.Read\.All/);
    intercept(agent, "defender").reply(403, { error: { code: "Forbidden", message: "no" } });
    const legacy = await failure(client.run(TENANT, "defender", QUERY), "MISSING_ROLE");
    assert.match(toHuntingTenantError(legacy, "defender").hint, /AdvancedHunting\.Read\.All/);
  });

  it("429 → THROTTLED with Retry-After's seconds, reported at once (not waited for)", async () => {
    const { agent, client } = setup();
    intercept(agent, "graph").reply(429, { error: { code: "TooManyRequests", message: "quota" } }, { headers: { "retry-after": "42" } });
    const error = await failure(client.run(TENANT, "graph", QUERY, { deadline: Date.now() + 120_000 }), "THROTTLED");
    assert.equal(error.retryAfterSeconds, 42);
    assert.equal(toHuntingTenantError(error, "graph").retryAfterSeconds, 42);
  });

  it("410, or a 400 saying so, from the legacy API → HUNTING_BACKEND_RETIRED with the switch to Graph as hint", async () => {
    const { agent, client } = setup();
    intercept(agent, "defender").reply(410, { error: { code: "Gone", message: "This API is retired; use Microsoft Graph runHuntingQuery" } });
    const gone = await failure(client.run(TENANT, "defender", QUERY), "HUNTING_BACKEND_RETIRED");
    assert.match(toHuntingTenantError(gone, "defender").hint, /GRAPH/);
    intercept(agent, "defender").reply(400, { error: { code: "BadRequest", message: "The advanced hunting API was retired on 2027-02-01." } });
    await failure(client.run(TENANT, "defender", QUERY), "HUNTING_BACKEND_RETIRED");
    // A plain syntax error from the legacy API stays BAD_REQUEST.
    intercept(agent, "defender").reply(400, { error: { code: "BadRequest", message: "Syntax error" } });
    await failure(client.run(TENANT, "defender", QUERY), "BAD_REQUEST");
  });

  it("a hunt past the deadline → UPSTREAM_TIMEOUT; a body that is no hunting result → UPSTREAM_BAD_RESPONSE", async () => {
    const { agent, client } = setup();
    intercept(agent, "graph").reply(200, { schema: [] }).delay(2_000);
    await failure(client.run(TENANT, "graph", QUERY, { deadline: Date.now() + 100 }), "UPSTREAM_TIMEOUT");
    intercept(agent, "graph").reply(200, { value: [] });
    await failure(client.run(TENANT, "graph", QUERY), "UPSTREAM_BAD_RESPONSE");
  });

  it("never puts the query text into an error", async () => {
    const { agent, client } = setup();
    for (const status of [400, 403, 429, 500]) {
      intercept(agent, "graph").reply(status, { error: { code: "X", message: "failed" } }, { headers: { "retry-after": "1" } });
      const error = await client.run(TENANT, "graph", QUERY).catch((e: unknown) => e as Error);
      assert.ok(error instanceof Error);
      assert.ok(!JSON.stringify({ message: error.message, details: (error as UpstreamError).details }).includes("secret-marker-7731"));
    }
  });
});
