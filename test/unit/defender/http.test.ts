import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MockAgent } from "undici";
import type { AccessToken, TokenProvider } from "../../../src/auth/token-provider.js";
import { UpstreamError, type UpstreamErrorCode } from "../../../src/defender/backend-client.js";
import { DefenderIncidentsClient } from "../../../src/defender/defender-client.js";
import { GraphIncidentsClient } from "../../../src/defender/graph-client.js";
import { excerpt, IncidentsHttp, parseRetryAfter } from "../../../src/defender/http.js";
import { InProcessRateBudget } from "../../../src/defender/rate-budget.js";

/** Transport edge cases the sandbox does not produce, over undici's MockAgent. */

const TENANT = "33333333-3333-3333-3333-333333333333";
const TOKEN = "eyJhbGciOiJub25lIn0.eyJ0aWQiOiIzMzMzIn0.secret-signature-part";
const DEFENDER = "https://api.security.example";
const GRAPH = "https://graph.example/v1.0";

function fakeTokens(): TokenProvider & { invalidated: number } {
  const provider = {
    invalidated: 0,
    getToken: async (): Promise<AccessToken> => ({ accessToken: TOKEN, expiresOn: new Date(Date.now() + 3_600_000), fromCache: true, claims: {} as AccessToken["claims"], fingerprint: "f" }),
    invalidate: () => void provider.invalidated++,
    forgetFailures: () => undefined,
    stats: () => ({ requests: 0, cacheHits: 0, coalesced: 0, acquisitions: 0, tokensIssued: 0, failures: 0, backoffRefusals: 0, cachedTokens: 0 }),
  };
  return provider;
}

function mock() {
  const agent = new MockAgent();
  agent.disableNetConnect();
  return agent;
}

function http(agent: MockAgent, options: Partial<ConstructorParameters<typeof IncidentsHttp>[0]> = {}) {
  return new IncidentsHttp({
    backend: "defender",
    resource: "defender",
    dispatcher: agent,
    tokenProvider: fakeTokens(),
    budget: new InProcessRateBudget(),
    retry: { baseDelayMs: 1, maxDelayMs: 5 },
    ...options,
  });
}

/** Matches a path and query parameters in any order (MockAgent also tries a sorted, encoded form). */
const query =
  (path: string, ...params: string[]) =>
  (p: string): boolean => {
    const [base, search = ""] = decodeURIComponent(p).split("?");
    const parts = search.split("&");
    return base === path && params.every((x) => parts.includes(x));
  };

const call = (method: "GET" | "PATCH" = "GET", path = "/api/incidents/1") => ({
  tenantId: TENANT,
  method,
  url: `${DEFENDER}${path}`,
  bucket: method === "GET" ? ("defender.get" as const) : ("defender.patch" as const),
  operation: method === "GET" ? "get" : "update",
  ...(method === "PATCH" ? { body: { status: "Resolved" } } : {}),
  deadline: Date.now() + 5_000,
});

async function failure(promise: Promise<unknown>, code: UpstreamErrorCode): Promise<UpstreamError> {
  const error = await promise.then(
    () => assert.fail(`expected ${code}`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof UpstreamError, String(error));
  assert.equal(error.code, code, error.message);
  return error;
}

describe("IncidentsHttp", () => {
  it("refuses an answer larger than the limit, declared or streamed", async () => {
    const agent = mock();
    const pool = agent.get(DEFENDER);
    pool.intercept({ path: "/api/incidents/1" }).reply(200, JSON.stringify({ big: "x".repeat(5_000) }), { headers: { "content-length": "5012" } });
    pool.intercept({ path: "/api/incidents/1" }).reply(200, JSON.stringify({ big: "x".repeat(5_000) }));
    const h = http(agent, { maxResponseBytes: 1_000 });
    await failure(h.send(call()), "UPSTREAM_BAD_RESPONSE");
    await failure(h.send(call()), "UPSTREAM_BAD_RESPONSE");
  });

  it("does not follow redirects (the token would go along)", async () => {
    const agent = mock();
    agent.get(DEFENDER).intercept({ path: "/api/incidents/1" }).reply(302, "", { headers: { location: "https://elsewhere.example/" } });
    await failure(http(agent).send(call()), "UPSTREAM_BAD_RESPONSE");
  });

  it("keeps a short, token-free excerpt and the upstream request id of an error", async () => {
    const agent = mock();
    agent
      .get(DEFENDER)
      .intercept({ path: "/api/incidents/1" })
      .reply(400, JSON.stringify({ error: { code: "InvalidInput", message: `bad header Bearer ${TOKEN} ${"y".repeat(400)}`, target: "c0ffee00-0000-4000-8000-000000000000" } }));
    const error = await failure(http(agent).send(call()), "BAD_REQUEST");
    assert.equal(error.details.status, 400);
    assert.equal(error.details.upstreamRequestId, "c0ffee00-0000-4000-8000-000000000000");
    assert.ok(error.details.bodyExcerpt!.length <= 200);
    assert.ok(!error.details.bodyExcerpt!.includes("secret-signature-part"), error.details.bodyExcerpt);
    assert.ok(!error.message.includes(TOKEN));
    assert.match(error.message, /InvalidInput/);
  });

  it("retries a write whose connection could not be opened, never one that was sent", async () => {
    const agent = mock();
    const pool = agent.get(DEFENDER);
    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    pool.intercept({ path: "/api/incidents/1", method: "PATCH" }).replyWithError(refused);
    pool.intercept({ path: "/api/incidents/1", method: "PATCH" }).reply(200, "{}");
    const answer = await http(agent).send(call("PATCH"));
    assert.equal(answer.attempts, 2);

    const reset = Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" });
    pool.intercept({ path: "/api/incidents/1", method: "PATCH" }).replyWithError(reset);
    await failure(http(agent).send(call("PATCH")), "UPSTREAM_UNAVAILABLE");
  });

  it("does not retry a 429 on a write, and reads the wait from Retry-After or the message", async () => {
    const agent = mock();
    const pool = agent.get(DEFENDER);
    pool.intercept({ path: "/api/incidents/1", method: "PATCH" }).reply(429, "{}", { headers: { "retry-after": "7" } });
    const write = await failure(http(agent).send(call("PATCH")), "THROTTLED");
    assert.equal(write.retryAfterSeconds, 7);
    pool
      .intercept({ path: "/api/incidents/1" })
      .reply(429, JSON.stringify({ error: { code: "TooManyRequests", message: "API calls quota exceeded! Next call is allowed in 42 seconds." } }));
    const read = await failure(http(agent).send(call()), "THROTTLED");
    assert.equal(read.retryAfterSeconds, 42);
  });

  it("parses Retry-After as seconds or an HTTP date", () => {
    const now = Date.parse("2024-01-01T00:00:00Z");
    assert.equal(parseRetryAfter("12", now), 12_000);
    assert.equal(parseRetryAfter("Mon, 01 Jan 2024 00:00:30 GMT", now), 30_000);
    assert.equal(parseRetryAfter(["5"], now), 5_000);
    assert.equal(parseRetryAfter(undefined, now), undefined);
    assert.equal(parseRetryAfter("soon", now), undefined);
  });

  it("scrubs tokens from excerpts", () => {
    assert.equal(excerpt(""), undefined);
    assert.equal(excerpt(`{"a":"${TOKEN}"}`, TOKEN), '{"a":"[token]"}');
    assert.equal(excerpt("authorization: Bearer abc.def.ghi"), "authorization: Bearer [token]");
    assert.equal(excerpt("x eyJabc.eyJdef.sig y"), "x [jwt] y");
  });
});

describe("next links", () => {
  it("Defender: a refused $orderby falls back to offset paging (next links followed), and is not asked again", async () => {
    const agent = mock();
    const pool = agent.get(DEFENDER);
    const item = (id: number) => ({ incidentId: id, createdTime: "2024-01-01T00:00:00Z", lastUpdateTime: "2024-01-01T00:00:00Z" });
    const refused = JSON.stringify({ error: { code: "ODataError", message: "The query parameter '$orderby' is not supported." } });
    pool.intercept({ path: (p) => query("/api/incidents", "$top=2")(p) && decodeURIComponent(p.replace(/\+/g, " ")).includes("$orderby=lastUpdateTime asc") }).reply(400, refused);
    pool.intercept({ path: (p) => query("/api/incidents", "$top=2")(p) && !p.includes("orderby") }).reply(200, JSON.stringify({ value: [item(1), item(2)], "@odata.nextLink": `${DEFENDER}/api/incidents?page=2` }));
    pool.intercept({ path: "/api/incidents?page=2" }).reply(200, JSON.stringify({ value: [item(2), item(3)] }));
    const client = new DefenderIncidentsClient({ baseUrl: DEFENDER, dispatcher: agent, tokenProvider: fakeTokens(), pageSize: 2 });
    const result = await client.listIncidents(TENANT);
    assert.deepEqual(result.incidents.map((i) => i.incidentId).sort(), ["1", "2", "3"]);
    assert.equal(result.paging, "offset");
    assert.equal(result.complete, true);
    // The second list goes straight to offset paging: an $orderby request would find no interceptor.
    pool.intercept({ path: (p) => query("/api/incidents", "$top=2")(p) && !p.includes("orderby") }).reply(200, JSON.stringify({ value: [item(4)] }));
    const again = await client.listIncidents(TENANT);
    assert.deepEqual(again.incidents.map((i) => i.incidentId), ["4"]);
  });

  it("Graph: an unordered answer pages by next link, refusing one to another origin, and a loop", async () => {
    const agent = mock();
    const pool = agent.get("https://graph.example");
    const item = (id: string, t: string) => ({ id, createdDateTime: t, lastUpdateDateTime: t });
    const unordered = [item("2", "2024-01-02T00:00:00Z"), item("1", "2024-01-01T00:00:00Z")];
    pool.intercept({ path: query("/v1.0/security/incidents", "$top=2") }).reply(200, JSON.stringify({ value: unordered, "@odata.nextLink": "https://evil.example/v1.0/security/incidents?$skip=2" }));
    const client = new GraphIncidentsClient({ baseUrl: GRAPH, dispatcher: agent, tokenProvider: fakeTokens(), pageSize: 2 });
    const stopped = await client.listIncidents(TENANT);
    assert.equal(stopped.complete, false, "the page read is kept");
    assert.equal(stopped.incidents.length, 2);
    assert.ok(stopped.stoppedBy instanceof UpstreamError && stopped.stoppedBy.code === "UPSTREAM_BAD_RESPONSE");
    assert.match((stopped.stoppedBy as Error).message, /another origin/);

    pool.intercept({ path: query("/v1.0/security/incidents", "$top=2") }).reply(200, JSON.stringify({ value: unordered, "@odata.nextLink": `${GRAPH}/security/incidents?$skip=2` }));
    pool.intercept({ path: "/v1.0/security/incidents?$skip=2" }).reply(200, JSON.stringify({ value: [item("3", "2024-01-03T00:00:00Z")], "@odata.nextLink": `${GRAPH}/security/incidents?$skip=2` }));
    const looped = await client.listIncidents(TENANT);
    assert.match((looped.stoppedBy as Error).message, /page already read/);
  });

  it("a malformed item fails the tenant with UPSTREAM_BAD_RESPONSE", async () => {
    const agent = mock();
    agent
      .get("https://graph.example")
      .intercept({ path: query("/v1.0/security/incidents", "$top=50") })
      .reply(200, JSON.stringify({ value: [{ id: "1", createdDateTime: "2024-01-01T00:00:00Z" }, { displayName: "no id" }] }), { headers: { "request-id": "rid-1" } });
    const client = new GraphIncidentsClient({ baseUrl: GRAPH, dispatcher: agent, tokenProvider: fakeTokens() });
    const error = await failure(client.listIncidents(TENANT), "UPSTREAM_BAD_RESPONSE");
    assert.equal(error.details.upstreamRequestId, "rid-1");
    assert.match(error.message, /\$\.value\[1\]\.id/);
  });
});

describe("Graph update read-back", () => {
  const incident = { id: "7", displayName: "x", status: "resolved", createdDateTime: "2024-01-01T00:00:00Z", lastUpdateDateTime: "2024-01-02T00:00:00Z" };

  it("answers with the PATCH result when reading the incident back fails", async () => {
    const agent = mock();
    const pool = agent.get("https://graph.example");
    pool.intercept({ path: "/v1.0/security/incidents/7", method: "PATCH" }).reply(200, JSON.stringify(incident));
    pool.intercept({ path: query("/v1.0/security/incidents/7", "$expand=alerts") }).reply(503, "{}").times(3);
    const client = new GraphIncidentsClient({ baseUrl: GRAPH, dispatcher: agent, tokenProvider: fakeTokens(), retry: { baseDelayMs: 1 } });
    const updated = await client.updateIncident(TENANT, "7", { status: "RESOLVED" });
    assert.equal(updated.status, "RESOLVED");
    assert.equal(updated.alerts, null, "the PATCH answer carries no alerts: not loaded (the alerts field reads them when selected)");
  });

  it("a comment-only update whose read-back fails says the comment was added", async () => {
    const agent = mock();
    const pool = agent.get("https://graph.example");
    pool.intercept({ path: "/v1.0/security/incidents/7/comments", method: "POST" }).reply(200, JSON.stringify({ value: [] }));
    pool.intercept({ path: query("/v1.0/security/incidents/7", "$expand=alerts") }).reply(403, "{}");
    const client = new GraphIncidentsClient({ baseUrl: GRAPH, dispatcher: agent, tokenProvider: fakeTokens() });
    const error = await failure(client.updateIncident(TENANT, "7", { comment: "hello" }), "MISSING_ROLE");
    assert.match(error.message, /the comment was added/);
  });
});
