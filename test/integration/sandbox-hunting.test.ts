import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DEFAULT_RATE_LIMITS, LEGACY_HUNTING_RETIREMENT_MS } from "../../src/sandbox/context.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { startTestSandbox, type RawResponse, type TestSandbox } from "../helpers/sandbox.js";

/**
 * Both emulated hunting APIs over real HTTPS (contract: notes/HUNTING-CONTRACT.md): Graph
 * `POST /v1.0/security/runHuntingQuery` and legacy `POST /api/advancedhunting/run`, with tokens the sandbox
 * signs for each tenant's granted roles (`huntingRoles: true`: Litware has incident roles only).
 */

const DAY = 86_400_000;
const GRAPH = "/v1.0/security/runHuntingQuery";
const LEGACY = "/api/advancedhunting/run";

let t: TestSandbox;

function tenant(name: string): SandboxTenant {
  const found = t.sandbox.tenants.find((x) => x.displayName === name);
  if (!found) throw new Error(`no tenant ${name}`);
  return found;
}

async function hunt(api: "graph" | "defender", name: string, body: unknown): Promise<RawResponse> {
  const token = await t.sandbox.mintAccessToken({ tenantId: tenant(name).id, resource: api });
  return t.call("POST", api === "graph" ? GRAPH : LEGACY, { token, json: body });
}

function counts(name: string): Record<string, number> {
  return (t.sandbox.context.counterSnapshot().byTenant[tenant(name).id] ?? {}) as Record<string, number>;
}

function assertGraphError(response: RawResponse, status: number, code: string, message: RegExp): void {
  assert.equal(response.status, status, response.text);
  assert.deepEqual(Object.keys(response.json), ["error"]);
  assert.deepEqual(Object.keys(response.json.error), ["code", "message", "innerError"]);
  assert.deepEqual(Object.keys(response.json.error.innerError), ["date", "request-id", "client-request-id"]);
  assert.equal(response.json.error.code, code);
  assert.match(response.json.error.message, message);
}

function assertDefenderError(response: RawResponse, status: number, code: string, message: RegExp): void {
  assert.equal(response.status, status, response.text);
  assert.deepEqual(Object.keys(response.json), ["error"]);
  assert.deepEqual(Object.keys(response.json.error), ["code", "message", "target"]);
  assert.equal(response.json.error.code, code);
  assert.match(response.json.error.message, message);
}

/** How many alerts of a tenant the store has created at or after `since`. */
function alertsSince(name: string, since: number): number {
  const store = t.sandbox.incidents;
  let n = 0;
  for (const incident of store.forTenant(tenant(name).id)) for (const alert of store.alertsOf(incident)) if (Date.parse(alert.creationTime) >= since) n++;
  return n;
}

describe("sandbox hunting APIs", () => {
  before(async () => {
    t = await startTestSandbox({ huntingRoles: true });
  });
  after(async () => {
    await t.close();
  });

  it("Graph answers huntingQueryResults: @odata.context, schema {name,type}, results keyed by the schema", async () => {
    const response = await hunt("graph", "Contoso Ltd", { Query: "AlertInfo | where Severity == 'High' or Severity == 'Medium' | project Timestamp, AlertId, Title, Severity | take 5" });
    assert.equal(response.status, 200, response.text);
    assert.deepEqual(Object.keys(response.json), ["@odata.context", "schema", "results"]);
    assert.equal(response.json["@odata.context"], "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.security.huntingQueryResults");
    assert.deepEqual(response.json.schema, [
      { name: "Timestamp", type: "DateTime" },
      { name: "AlertId", type: "String" },
      { name: "Title", type: "String" },
      { name: "Severity", type: "String" },
    ]);
    assert.equal(response.json.results.length, 5);
    for (const row of response.json.results) {
      assert.deepEqual(Object.keys(row), ["Timestamp", "AlertId", "Title", "Severity"]);
      assert.match(row.Timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$/);
      assert.ok(["High", "Medium"].includes(row.Severity));
    }
  });

  it("legacy answers {Stats, Schema {Name,Type}, Results} and counts match the tenant's alerts in its 30 days", async () => {
    const before = Date.now();
    const response = await hunt("defender", "Contoso Ltd", { Query: "AlertInfo | summarize count()" });
    const afterCall = Date.now();
    assert.equal(response.status, 200, response.text);
    assert.deepEqual(Object.keys(response.json), ["Stats", "Schema", "Results"]);
    assert.deepEqual(Object.keys(response.json.Stats), ["ExecutionTime", "resource_usage", "dataset_statistics"]);
    assert.deepEqual(response.json.Schema, [{ Name: "count_", Type: "Int64" }]);
    const counted = response.json.Results[0].count_ as number;
    // The window is 30 days before the call; the store's own count brackets it without relying on timing.
    assert.ok(counted <= alertsSince("Contoso Ltd", before - 30 * DAY) && counted >= alertsSince("Contoso Ltd", afterCall - 30 * DAY), String(counted));
    assert.ok(alertsSince("Contoso Ltd", 0) > counted, "older alerts exist and are outside the window");
  });

  it("every table answers with its realistic columns", async () => {
    const expected: Record<string, string[]> = {
      AlertEvidence: ["AlertId", "EntityType", "EvidenceRole", "DeviceId", "DeviceName", "AccountName", "AccountUpn", "FileName", "SHA256", "RemoteIP", "RemoteUrl"],
      DeviceInfo: ["DeviceId", "DeviceName", "OSPlatform", "OSVersion", "PublicIP"],
      EmailEvents: ["NetworkMessageId", "SenderFromAddress", "RecipientEmailAddress", "Subject", "DeliveryAction", "ThreatTypes"],
    };
    for (const [table, columns] of Object.entries(expected)) {
      const response = await hunt("graph", "Adventure Works Cycles", { Query: `${table} | take 1`, Timespan: "P90D" });
      assert.equal(response.status, 200, response.text);
      const names = response.json.schema.map((c: { name: string }) => c.name);
      assert.equal(names[0], "Timestamp");
      for (const c of columns) assert.ok(names.includes(c), `${table}.${c}`);
      assert.equal(response.json.results.length, 1, table);
    }
    const machines = await hunt("graph", "Adventure Works Cycles", { Query: "AlertEvidence | where EntityType == 'Machine' | summarize dcount(DeviceId)", Timespan: "P90D" });
    assert.ok(machines.json.results[0].dcount_DeviceId > 0);
  });

  it("Graph honours Timespan as a bound on Timestamp", async () => {
    const before = Date.now();
    const response = await hunt("graph", "Contoso Ltd", { Query: "AlertInfo | top 1 by Timestamp asc", Timespan: "P2D" });
    assert.equal(response.status, 200, response.text);
    for (const row of response.json.results) assert.ok(Date.parse(row.Timestamp) >= before - 2 * DAY, row.Timestamp);
    const wide = await hunt("graph", "Contoso Ltd", { Query: "AlertInfo | top 1 by Timestamp asc", Timespan: "P90D" });
    assert.ok(Date.parse(wide.json.results[0].Timestamp) < before - 30 * DAY, "90 days reach past the default 30");
    assertGraphError(await hunt("graph", "Contoso Ltd", { Query: "AlertInfo", Timespan: "seven days" }), 400, "BadRequest", /Timespan/);
  });

  it("a query outside the subset is a 400 in each service's shape naming the token and position", async () => {
    const query = "AlertInfo\n| join kind=inner AlertEvidence on AlertId";
    assertGraphError(await hunt("graph", "Fabrikam, Inc.", { Query: query }), 400, "BadRequest", /^Query could not be parsed at 'join' on line \[2,3\]$/);
    assertDefenderError(await hunt("defender", "Fabrikam, Inc.", { Query: query }), 400, "BadRequest", /^Query could not be parsed at 'join' on line \[2,3\]$/);
    assertGraphError(await hunt("graph", "Fabrikam, Inc.", { Query: "AlertInfo | where Nope == 1" }), 400, "BadRequest", /Failed to resolve scalar expression named 'Nope'/);
    assertDefenderError(await hunt("defender", "Fabrikam, Inc.", { query: "AlertInfo" }), 400, "InvalidRequestBody", /'Query'/);
  });

  it("a token without the hunting role gets 403 on both (Litware: incident roles only), and is counted", async () => {
    const before = counts("Litware, Inc.");
    const graph = await hunt("graph", "Litware, Inc.", { Query: "AlertInfo | take 1" });
    assertGraphError(graph, 403, "Forbidden", /ThreatHunting\.Read\.All/);
    assertDefenderError(await hunt("defender", "Litware, Inc.", { Query: "AlertInfo | take 1" }), 403, "Forbidden", /AdvancedHunting\.Read\.All/);
    const incidents = await t.call("GET", "/api/incidents?$top=1", { token: await t.sandbox.mintAccessToken({ tenantId: tenant("Litware, Inc.").id, resource: "defender" }) });
    assert.equal(incidents.status, 200, "Litware still reads incidents");
    const now = counts("Litware, Inc.");
    assert.equal((now["graph.hunt"] ?? 0) - (before["graph.hunt"] ?? 0), 1);
    assert.equal((now["defender.hunt"] ?? 0) - (before["defender.hunt"] ?? 0), 1);
  });

  it("over the hunting quota: 429 with Retry-After, per API, and incidents calls are not charged", async () => {
    const set = await t.call("PUT", "/_sandbox/hunting", { json: { rateLimits: { graph: [{ limit: 2, windowSeconds: 60 }], defender: [{ limit: 2, windowSeconds: 60 }] } } });
    assert.equal(set.status, 200, set.text);
    try {
      for (const api of ["graph", "defender"] as const) {
        for (let i = 0; i < 2; i++) assert.equal((await hunt(api, "Northwind Traders", { Query: "DeviceInfo | take 1" })).status, 200);
        const refused = await hunt(api, "Northwind Traders", { Query: "DeviceInfo | take 1" });
        if (api === "graph") assertGraphError(refused, 429, "TooManyRequests", /quota/);
        else assertDefenderError(refused, 429, "TooManyRequests", /quota/);
        assert.ok(Number(refused.headers["retry-after"]) >= 1);
      }
      const incidents = await t.call("GET", "/v1.0/security/incidents?$top=1", { token: await t.sandbox.mintAccessToken({ tenantId: tenant("Northwind Traders").id, resource: "graph" }) });
      assert.equal(incidents.status, 200);
      assert.equal(counts("Northwind Traders").throttled, 2);
    } finally {
      await t.call("PUT", "/_sandbox/hunting", { json: { rateLimits: { graph: DEFAULT_RATE_LIMITS["graph.hunt"], defender: DEFAULT_RATE_LIMITS["defender.hunt"] } } });
    }
  });

  it("faults: `hunting` targets both hunting calls, `incidents` (the default) none of them; GET is 405", async () => {
    const id = tenant("Lamna Healthcare").id;
    assert.equal((await t.call("PUT", `/_sandbox/faults/${id}`, { json: { kind: "server-error", status: 504 } })).status, 200);
    try {
      assert.equal((await hunt("graph", "Lamna Healthcare", { Query: "AlertInfo | take 1" })).status, 200, "an incidents fault leaves hunting alone");
    } finally {
      await t.call("DELETE", `/_sandbox/faults/${id}`);
    }
    await t.call("PUT", `/_sandbox/faults/${id}`, { json: { kind: "server-error", status: 504, endpoints: ["hunting"], times: 2 } });
    assertGraphError(await hunt("graph", "Lamna Healthcare", { Query: "AlertInfo | take 1" }), 504, "InternalServerError", /error/);
    assertDefenderError(await hunt("defender", "Lamna Healthcare", { Query: "AlertInfo | take 1" }), 504, "InternalServerError", /error/);
    assert.equal((await hunt("graph", "Lamna Healthcare", { Query: "AlertInfo | take 1" })).status, 200, "the fault was used up");
    const token = await t.sandbox.mintAccessToken({ tenantId: id, resource: "graph" });
    assertGraphError(await t.call("GET", GRAPH, { token }), 405, "Request_BadRequest", /GET/);
  });

  it("results are cut at huntingRowLimit: exactly that many rows", async () => {
    assert.equal((await t.call("PUT", "/_sandbox/hunting", { json: { rowLimit: 3 } })).json.rowLimit, 3);
    try {
      const graph = await hunt("graph", "Woodgrove Bank", { Query: "AlertEvidence" });
      assert.equal(graph.json.results.length, 3);
      const legacy = await hunt("defender", "Woodgrove Bank", { Query: "AlertEvidence | project AlertId" });
      assert.equal(legacy.json.Results.length, 3);
      const small = await hunt("graph", "Woodgrove Bank", { Query: "AlertEvidence | take 2" });
      assert.equal(small.json.results.length, 2);
    } finally {
      await t.call("PUT", "/_sandbox/hunting", { json: { rowLimit: 100_000 } });
    }
  });

  it("legacy hunting answers 410 when retired (knob, then the clock past 2027-02-01); Graph keeps answering", async () => {
    assert.equal((await t.call("PUT", "/_sandbox/hunting", { json: { legacyRetired: true } })).json.legacyRetired, true);
    const retired = await hunt("defender", "Wide World Importers", { Query: "AlertInfo | take 1" });
    assertDefenderError(retired, 410, "Gone", /retired.*runHuntingQuery/);
    assert.equal((await hunt("graph", "Wide World Importers", { Query: "AlertInfo | take 1" })).status, 200);
    await t.call("PUT", "/_sandbox/hunting", { json: { legacyRetired: false } });
    assert.equal((await hunt("defender", "Wide World Importers", { Query: "AlertInfo | take 1" })).status, 200);
    // Last in this file: the clock moves past the retirement date (tokens are minted on the same clock).
    const ctx = t.sandbox.context;
    ctx.advanceClock(Math.max(0, LEGACY_HUNTING_RETIREMENT_MS - ctx.now()) + 1000);
    assertDefenderError(await hunt("defender", "Wide World Importers", { Query: "AlertInfo | take 1" }), 410, "Gone", /retired/);
    assert.equal((await t.call("GET", "/_sandbox/hunting")).json.legacyRetired, true);
  });
});
