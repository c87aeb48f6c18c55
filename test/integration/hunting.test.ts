import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { loadConfig } from "../../src/config.js";
import { createDispatcher } from "../../src/http/dispatcher.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { HuntDocument } from "../../src/generated/graphql.js";
import { postGraphQL, type GraphQLResponse } from "../helpers/graphql.js";
import { captureLogger } from "../helpers/log-capture.js";
import { execute } from "../helpers/typed-graphql.js";

const HUNT = `query($q: String!, $ids: [ID!], $first: Int, $after: String, $timespan: String) {
  huntingQuery(query: $q, tenantIds: $ids, first: $first, after: $after, timespan: $timespan) {
    columns { name type }
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node }
    tenantOutcomes { tenantId ok backend rowCount truncated durationMs error { code message hint retryAfterSeconds } }
  }
}`;
/** A marker that must never reach a log line (it is only ever inside the query text). */
const MARKER = "hunt-marker-90417";
const ROW_LIMIT = 4;

/**
 * Issue 15, huntingQuery: server and sandbox over real HTTP, Graph and legacy tenants in one hunt. Per-tenant
 * failures (syntax error, throttling, missing role, retired legacy API) fail no query; columns are the union;
 * truncation at the row cap is reported; a reader scoped to one tenant asking for another gets
 * TENANT_FORBIDDEN with no upstream call; the query text is never logged.
 */
describe("huntingQuery", () => {
  let runtime: Runtime;
  let browser: ReturnType<typeof createDispatcher>;
  const logs = captureLogger("debug");
  let gql: (query: string, variables?: Record<string, unknown>, headers?: Record<string, string>) => Promise<GraphQLResponse<any>>;
  const named = (name: string): SandboxTenant => runtime.sandbox!.tenants.find((t) => t.displayName === name)!;
  const control = async (method: "PUT" | "POST" | "DELETE" | "GET", path: string, body?: unknown) => {
    const response = await request(`${runtime.sandbox!.url}/_sandbox${path}`, {
      method,
      dispatcher: browser,
      ...(body !== undefined ? { headers: { "content-type": "application/json" }, body: JSON.stringify(body) } : {}),
    });
    const text = await response.body.text();
    assert.equal(response.statusCode, 200, text);
    return JSON.parse(text) as any;
  };
  const huntCalls = async (tenant: SandboxTenant) => {
    const counters = await control("GET", "/counters");
    const mine = counters.byTenant[tenant.id] ?? {};
    return (mine["graph.hunt"] ?? 0) + (mine["defender.hunt"] ?? 0);
  };
  const hunt = async (variables: Record<string, unknown>, headers: Record<string, string> = {}) => {
    const result = await gql(HUNT, variables, headers);
    assert.equal(result.body.errors, undefined, result.text);
    const data = result.body.data.huntingQuery;
    const outcome = (tenant: SandboxTenant) => data.tenantOutcomes.find((o: { tenantId: string }) => o.tenantId === tenant.id);
    return { data, outcome };
  };

  before(async () => {
    runtime = await startRuntime(
      loadConfig({ PORT: "0", LOG_LEVEL: "debug", DATA_DIR: "memory://", HUNTING_ROW_LIMIT: String(ROW_LIMIT) }),
      { logger: logs.logger },
    );
    browser = createDispatcher({ trustedCaPem: [runtime.sandbox!.caCertPem], connectTimeoutMs: 5000, connectionsPerOrigin: 4 });
    gql = (query, variables, headers = {}) => postGraphQL(runtime.url, query, variables, headers);
    // The services' row cap, made small: the client knows the same limit (HUNTING_ROW_LIMIT).
    await control("PUT", "/hunting", { rowLimit: ROW_LIMIT });
    // The tenants hunted in grant the hunting roles (Litware keeps its incident roles only: hunting answers 403).
    for (const name of ["Contoso Ltd", "Fabrikam, Inc.", "Northwind Traders", "Woodgrove Bank"]) {
      await control("POST", `/tenants/${named(name).id}/grant-consent`, {
        defender: ["Incident.ReadWrite.All", "AdvancedHunting.Read.All"],
        graph: ["SecurityIncident.ReadWrite.All", "ThreatHunting.Read.All"],
      });
    }
    // Fabrikam hunts on the legacy Defender API; everyone else on the default, Graph.
    const switched = await gql(`mutation($id: ID!) { updateTenant(id: $id, input: { huntingBackend: DEFENDER }) { id huntingBackend } }`, {
      id: named("Fabrikam, Inc.").id,
    });
    assert.equal(switched.body.errors, undefined, switched.text);
  });
  after(async () => {
    await browser.close();
    await runtime.close();
  });

  it("merges Graph and legacy tenants into one table, reports truncation at the row cap, and pages over the merged rows", async () => {
    const contoso = named("Contoso Ltd");
    const fabrikam = named("Fabrikam, Inc.");
    const query = `AlertInfo | where Title !has '${MARKER}' | project Timestamp, Title, Severity`;
    const { data, outcome } = await hunt({ q: query, ids: [contoso.id, fabrikam.id], first: 3 });
    assert.deepEqual(data.columns, [
      { name: "tenantId", type: "String" },
      { name: "Timestamp", type: "DateTime" },
      { name: "Title", type: "String" },
      { name: "Severity", type: "String" },
    ]);
    for (const [tenant, backend] of [
      [contoso, "GRAPH"],
      [fabrikam, "DEFENDER"],
    ] as const) {
      const o = outcome(tenant);
      assert.equal(o.ok, true, JSON.stringify(o));
      assert.equal(o.backend, backend);
      assert.equal(o.rowCount, ROW_LIMIT, "cut at the sandbox's row cap");
      assert.equal(o.truncated, true);
      assert.equal(o.error, null);
    }
    assert.equal(data.totalCount, 2 * ROW_LIMIT);
    assert.equal(data.edges.length, 3);
    assert.equal(Object.keys(data.edges[0].node)[0], "tenantId");
    assert.equal(data.pageInfo.hasNextPage, true);

    // The rest, after the cursor: the hunt runs again, the rows line up.
    const rest = await hunt({ q: query, ids: [contoso.id, fabrikam.id], first: 100, after: data.pageInfo.endCursor });
    assert.equal(rest.data.edges.length, 2 * ROW_LIMIT - 3);
    const tenants = [...data.edges, ...rest.data.edges].map((e: { node: { tenantId: string } }) => e.node.tenantId);
    assert.deepEqual(tenants, [...tenants].sort(), "tenant order");
    assert.equal(rest.data.pageInfo.hasNextPage, false);

    // A cursor of another query is refused before any call.
    const before = await huntCalls(contoso);
    const refused = await gql(HUNT, { q: `${query} | take 1`, ids: [contoso.id], after: data.pageInfo.endCursor });
    assert.equal(refused.body.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", refused.text);
    assert.equal(await huntCalls(contoso), before);
  });

  it("reports a syntax error as the tenant's BAD_REQUEST with the service's message, on both backends, without failing the query", async () => {
    const contoso = named("Contoso Ltd");
    const fabrikam = named("Fabrikam, Inc.");
    const { data, outcome } = await hunt({ q: `AlertInfo | wher Title has '${MARKER}'`, ids: [contoso.id, fabrikam.id] });
    for (const tenant of [contoso, fabrikam]) {
      const o = outcome(tenant);
      assert.equal(o.ok, false);
      assert.equal(o.error.code, "BAD_REQUEST", JSON.stringify(o));
      assert.match(o.error.message, /could not be parsed/i, "the service's own message");
    }
    assert.equal(data.totalCount, 0);
    assert.deepEqual(data.columns, [{ name: "tenantId", type: "String" }]);
    // The query written into the document rather than sent as a variable: the same answer (and no log of it).
    const literal = await gql(
      `{ huntingQuery(query: "AlertInfo | wher Title has '${MARKER}'", tenantIds: ["${contoso.id}"]) { tenantOutcomes { error { code } } } }`,
    );
    assert.equal(literal.body.data.huntingQuery.tenantOutcomes[0].error.code, "BAD_REQUEST", literal.text);
  });

  it("reports MISSING_ROLE naming the hunting permission, and THROTTLED with retryAfterSeconds, beside a tenant that answers", async () => {
    const litware = named("Litware, Inc.");
    const woodgrove = named("Woodgrove Bank");
    const contoso = named("Contoso Ltd");
    await control("PUT", `/faults/${woodgrove.id}`, { kind: "throttle", endpoints: ["hunting"], retryAfterSeconds: 7 });
    try {
      const { outcome } = await hunt({ q: "AlertInfo | take 1", ids: [litware.id, woodgrove.id, contoso.id] });
      assert.equal(outcome(contoso).ok, true);
      const missing = outcome(litware);
      assert.equal(missing.error.code, "MISSING_ROLE", JSON.stringify(missing));
      assert.match(missing.error.message, /ThreatHunting\.Read\.All/);
      assert.match(missing.error.hint, /ThreatHunting\.Read\.All/);
      const throttled = outcome(woodgrove);
      assert.equal(throttled.error.code, "THROTTLED", JSON.stringify(throttled));
      assert.equal(throttled.error.retryAfterSeconds, 7);
    } finally {
      await control("DELETE", `/faults/${woodgrove.id}`);
    }
  });

  it("reports a retired legacy API as HUNTING_BACKEND_RETIRED with the switch to Graph as hint", async () => {
    const fabrikam = named("Fabrikam, Inc.");
    await control("PUT", "/hunting", { legacyRetired: true });
    try {
      const { outcome } = await hunt({ q: "AlertInfo | take 1", ids: [fabrikam.id] });
      const o = outcome(fabrikam);
      assert.equal(o.error.code, "HUNTING_BACKEND_RETIRED", JSON.stringify(o));
      assert.match(o.error.hint, /GRAPH/);
    } finally {
      await control("PUT", "/hunting", { legacyRetired: false });
    }
  });

  it("gives a reader scoped to one tenant TENANT_FORBIDDEN for another, with no hunt upstream", async () => {
    const contoso = named("Contoso Ltd");
    const northwind = named("Northwind Traders");
    const { key } = await runtime.app.store.apiKeys.create({
      name: "hunting reader",
      role: "READER",
      scope: { allTenants: false, tenantIds: [contoso.id], tenantTags: [] },
      createdBy: "test",
    });
    await control("POST", "/counters/reset");
    const { outcome } = await hunt({ q: "AlertInfo | take 2", ids: [contoso.id, northwind.id] }, { authorization: `Bearer ${key}` });
    assert.equal(outcome(contoso).ok, true, "a READER may hunt in its tenant");
    assert.equal(outcome(northwind).error.code, "TENANT_FORBIDDEN");
    assert.equal(await huntCalls(northwind), 0);
    assert.equal(await huntCalls(contoso), 1);
  });

  it("answers operations/hunt.graphql through its generated typed document", async () => {
    const contoso = named("Contoso Ltd");
    const result = await execute(runtime.url, HuntDocument, { query: "AlertInfo | summarize count() by Severity", tenantIds: [contoso.id], first: 10 });
    assert.equal(result.errors, undefined, JSON.stringify(result.errors));
    const hunt = result.data!.huntingQuery;
    assert.deepEqual(
      hunt.columns.map((c) => c.name),
      ["tenantId", "Severity", "count_"],
    );
    assert.equal(hunt.tenantOutcomes[0]!.ok, true);
    assert.ok(hunt.edges.every((e) => (e.node as Record<string, unknown>).tenantId === contoso.id));
  });

  it("refuses bad arguments before any upstream call", async () => {
    const contoso = named("Contoso Ltd");
    await control("POST", "/counters/reset");
    for (const variables of [
      { q: "   ", ids: [contoso.id] },
      { q: "x".repeat(10_001), ids: [contoso.id] },
      { q: "AlertInfo", ids: [contoso.id], timespan: "P31D" },
      { q: "AlertInfo", ids: [contoso.id], first: 1001 },
    ]) {
      const result = await gql(HUNT, variables);
      assert.equal(result.body.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", result.text);
    }
    assert.equal((await control("GET", "/counters")).total, 0);
  });

  it("never logs the query text", () => {
    assert.ok(logs.lines.some((l) => l.includes("hunt ran")), "hunts are logged");
    for (const line of logs.lines) assert.ok(!line.includes(MARKER), `query text in the log: ${line.slice(0, 300)}`);
  });
});
