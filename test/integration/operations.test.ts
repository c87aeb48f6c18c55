import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import { postGraphQL } from "../helpers/graphql.js";
import { captureLogger } from "../helpers/log-capture.js";

/** What operators see: metrics, readiness, one log line per operation, and a graceful stop. */
describe("operations: /metrics, /readyz, operation logs, graceful shutdown", () => {
  let runtime: Runtime;
  const logs = captureLogger("info");
  let contosoId: string;

  before(async () => {
    runtime = await startRuntime(loadConfig({ PORT: "0", LOG_LEVEL: "info", DATA_DIR: "memory://" }), { logger: logs.logger });
    contosoId = runtime.sandbox!.tenants.find((t) => t.displayName === "Contoso Ltd")!.id;
  });
  after(async () => {
    await runtime.close();
  });

  it("exposes Prometheus metrics: GraphQL latency, per-tenant upstream calls, tokens, cache", async () => {
    await postGraphQL(runtime.url, "query Queue($ids: [ID!]) { incidents(tenantIds: $ids, first: 5) { totalCount } }", { ids: [contosoId] });
    await postGraphQL(runtime.url, "query Queue($ids: [ID!]) { incidents(tenantIds: $ids, first: 5) { totalCount } }", { ids: [contosoId] });
    // On the metrics listener of its own (METRICS_PORT; a free one when PORT=0), not beside /graphql.
    assert.ok(runtime.app.metricsUrl, "a metrics listener");
    const response = await request(runtime.app.metricsUrl);
    assert.equal(response.statusCode, 200);
    assert.match(String(response.headers["content-type"]), /^text\/plain/);
    const text = await response.body.text();
    const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? Number.NaN);
    assert.ok(value(/crosswatch_graphql_request_duration_seconds_count\{operation="query",outcome="ok"\} (\d+)/) >= 2);
    const lists = value(new RegExp(`crosswatch_upstream_calls_total\\{tenant="${contosoId}",backend="defender",operation="list",status="2xx"\\} (\\d+)`));
    assert.equal(lists, runtime.sandbox!.context.counterSnapshot().byTenant[contosoId]?.["defender.list"], "one series per tenant, matching the sandbox's count");
    assert.ok(value(/crosswatch_tokens_issued_total (\d+)/) >= 1);
    assert.ok(value(/crosswatch_incident_cache_hits_total (\d+)/) >= 1);
    assert.equal(value(/crosswatch_tenant_loads_total\{result="cache",code=""\} (\d+)/), 1);
    assert.match(text, /crosswatch_incident_data_age_seconds_bucket/);
    assert.match(text, /process_resident_memory_bytes/);
  });

  it("logs one line per operation with request id, caller, tenant count and duration, and no query text", async () => {
    const result = await postGraphQL(runtime.url, "query Queue($ids: [ID!]) { incidents(tenantIds: $ids, first: 5) { totalCount } }", { ids: [contosoId] }, { "x-request-id": "op-log-1" });
    assert.equal(result.status, 200);
    const line = logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.requestId === "op-log-1" && l.msg === "graphql operation");
    assert.ok(line, "an operation line");
    assert.equal(line.caller, "ANONYMOUS:anonymous");
    assert.equal(line.operationName, "Queue");
    assert.equal(line.operationType, "query");
    assert.equal(line.tenants, 1);
    assert.equal(typeof line.durationMs, "number");
    assert.ok(!JSON.stringify(line).includes("totalCount"), "no query text");
    assert.ok(!JSON.stringify(line).includes(contosoId), "no variables");
  });

  it("is ready while the store answers", async () => {
    const response = await request(`${runtime.url}/readyz`);
    assert.equal(response.statusCode, 200);
    assert.deepEqual(await response.body.json(), { status: "ready", checks: { store: true } });
  });

  it("drains an operation in flight on close, then refuses new connections", async () => {
    await request(`${runtime.sandbox!.url}/_sandbox/latency`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ fixedMs: 1500 }),
      dispatcher: runtime.app.dispatcher,
    });
    const fabrikam = runtime.sandbox!.tenants.find((t) => t.displayName === "Fabrikam, Inc.")!.id;
    const calls = () => Object.values(runtime.sandbox!.context.counterSnapshot().byTenant[fabrikam] ?? {}).reduce((sum, n) => sum + (n ?? 0), 0);
    const before = calls();
    const inFlight = postGraphQL(runtime.url, "query($ids: [ID!]) { incidents(tenantIds: $ids, first: 1) { totalCount tenantOutcomes { ok } } }", { ids: [fabrikam] });
    // Close once the operation is in flight: the sandbox has received its first upstream call (held by the
    // latency), rather than after a guessed while that a loaded machine may not have reached the server in.
    while (calls() === before) await new Promise((resolve) => setImmediate(resolve));
    const url = runtime.url;
    const closing = runtime.app.close();
    const answered = await inFlight;
    assert.equal(answered.status, 200);
    assert.equal(answered.body.data.incidents.tenantOutcomes[0].ok, true, "the slow tenant's answer arrived during shutdown");
    await closing;
    await assert.rejects(request(`${url}/healthz`), /ECONNREFUSED|closed|other side/i);
  });
});
