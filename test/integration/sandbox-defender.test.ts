import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { request } from "undici";
import type { SandboxContext } from "../../src/sandbox/context.js";
import type { IncidentRecord } from "../../src/sandbox/incident-model.js";
import type { IncidentStore } from "../../src/sandbox/incidents-store.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { trimIso } from "../../src/sandbox/timestamps.js";
import { insertAfter, jsonType, loadCaptured, PRINTED_TIMESTAMP } from "../helpers/captured-fixtures.js";
import { startTestSandbox, type RawResponse, type TestSandbox } from "../helpers/sandbox.js";

/**
 * The emulated legacy Defender incidents API over real HTTPS: shape against the captured responses,
 * OData, paging, PATCH, errors, rate limits and every fault kind.
 */

const LIST_CONTEXT = "https://api.security.microsoft.com/api/$metadata#Incidents";
const ODATA_CONTENT_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8";
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let t: TestSandbox;
let ctx: SandboxContext;
let store: IncidentStore;
const tokens = new Map<string, string>();

function tenant(name: string): SandboxTenant {
  const found = t.sandbox.tenants.find((x) => x.displayName === name);
  if (!found) throw new Error(`no tenant ${name}`);
  return found;
}

/** A Defender token for a named tenant with its granted roles, cached per test file. */
async function token(name: string): Promise<string> {
  let cached = tokens.get(name);
  if (!cached) {
    cached = await t.sandbox.mintAccessToken({ tenantId: tenant(name).id, resource: "defender" });
    tokens.set(name, cached);
  }
  return cached;
}

async function list(name: string, query = ""): Promise<RawResponse> {
  return t.call("GET", `/api/incidents${query}`, { token: await token(name) });
}

/** All of a tenant's incidents that match, straight from the store, newest first. */
function expected(name: string, keep: (r: IncidentRecord) => boolean): number[] {
  return [...store.forTenant(tenant(name).id)].filter(keep).reverse().map((r) => r.incidentId);
}

function idsOf(response: RawResponse): number[] {
  assert.equal(response.status, 200, response.text);
  return response.json.value.map((i: { incidentId: number }) => i.incidentId);
}

function assertDefenderError(response: RawResponse, status: number, code: string, message?: RegExp): void {
  assert.equal(response.status, status, response.text);
  assert.deepEqual(Object.keys(response.json), ["error"]);
  assert.deepEqual(Object.keys(response.json.error), ["code", "message", "target"]);
  assert.equal(response.json.error.code, code);
  assert.match(response.json.error.target, GUID);
  if (message) assert.match(response.json.error.message, message);
}

before(async () => {
  t = await startTestSandbox({ rateLimits: { "defender.get": [{ limit: 3, windowSeconds: 60 }] } });
  ctx = t.sandbox.context;
  store = t.sandbox.incidents;
});

after(async () => {
  await t.close();
});

beforeEach(() => {
  ctx.resetCounters(true);
  ctx.clearFaults();
});

describe("shape", () => {
  const listFixture = loadCaptured("defender-incidents-list.demisto.json");
  const patchFixture = loadCaptured("defender-incident-patch.demisto.json");
  const fixtureIncident = listFixture.value[2];
  const fixtureAlert = fixtureIncident.alerts[0];
  const fixtureDevice = fixtureAlert.devices[0];

  it("lists incidents with the captured keys, order and value types", async () => {
    const response = await list("Adventure Works Cycles");
    assert.equal(response.status, 200);
    assert.equal(response.headers["content-type"], ODATA_CONTENT_TYPE);
    assert.equal(response.headers["odata-version"], "4.0");
    assert.deepEqual(Object.keys(response.json), ["@odata.context", "value"]);
    assert.equal(response.json["@odata.context"], LIST_CONTEXT);
    assert.equal(response.json.value.length, 100, "default $top");

    // Real responses since 2021 add incidentUri after incidentId and providerAlertId after alertId.
    const incidentKeys = insertAfter(Object.keys(fixtureIncident), "incidentId", "incidentUri");
    const alertKeys = insertAfter(Object.keys(fixtureAlert), "alertId", "providerAlertId");
    const deviceKeys = Object.keys(fixtureDevice);
    let alerts = 0;
    let devices = 0;
    for (const incident of response.json.value) {
      assert.deepEqual(Object.keys(incident), incidentKeys);
      assert.deepEqual(incident.entities, [], "list items carry an empty incident-level entities array");
      for (const key of ["incidentId", "incidentName", "createdTime", "lastUpdateTime", "classification", "determination", "status", "severity", "tags", "comments", "alerts"]) {
        assert.equal(jsonType(incident[key]), jsonType(fixtureIncident[key]), key);
      }
      assert.ok(["null", "number"].includes(jsonType(incident.redirectIncidentId)), "[\"null\", \"number\"].includes(jsonType(incident.redirectIncidentId))");
      assert.ok(["null", "string"].includes(jsonType(incident.assignedTo)), "[\"null\", \"string\"].includes(jsonType(incident.assignedTo))");
      assert.match(incident.createdTime, PRINTED_TIMESTAMP);
      assert.match(incident.lastUpdateTime, PRINTED_TIMESTAMP);
      assert.match(incident.severity, /^(UnSpecified|Informational|Low|Medium|High)$/);
      assert.match(incident.status, /^(Active|InProgress|Resolved|Redirected)$/);
      for (const comment of incident.comments) {
        assert.deepEqual(Object.keys(comment), ["comment", "createdBy", "createdTime"]);
        assert.match(comment.createdTime, PRINTED_TIMESTAMP);
      }
      for (const alert of incident.alerts) {
        alerts++;
        assert.deepEqual(Object.keys(alert), alertKeys);
        for (const key of ["alertId", "incidentId", "serviceSource", "creationTime", "lastUpdatedTime", "title", "description", "category", "status", "severity", "investigationState", "detectionSource", "detectorId", "mitreTechniques", "devices", "entities"]) {
          assert.equal(jsonType(alert[key]), jsonType(fixtureAlert[key]), `alert.${key}`);
        }
        assert.equal(alert.incidentId, incident.incidentId);
        assert.match(alert.lastUpdatedTime, PRINTED_TIMESTAMP);
        for (const device of alert.devices) {
          devices++;
          assert.deepEqual(Object.keys(device), deviceKeys);
          for (const key of deviceKeys) {
            if (device[key] !== null && fixtureDevice[key] !== null) assert.equal(jsonType(device[key]), jsonType(fixtureDevice[key]), `device.${key}`);
          }
          assert.match(device.mdatpDeviceId, /^[0-9a-f]{40}$/);
        }
        for (const entity of alert.entities) {
          assert.ok(["entityType", "evidenceCreationTime", "verdict", "remediationStatus"].every((k) => k in entity), "[\"entityType\", \"evidenceCreationTime\", \"verdict\", \"remediationStatus\"].every((k) => k in entity)");
          assert.ok(Object.values(entity).every((v) => v !== null), "sparse entities omit nulls");
        }
      }
    }
    assert.ok(alerts >= 100 && devices > 0, "alerts >= 100 && devices > 0");
    const counters = ctx.counterSnapshot();
    assert.equal(counters.byTenant[tenant("Adventure Works Cycles").id]?.["defender.list"], 1);
    assert.equal(counters.total, 1);
  });

  it("returns newest first by createdTime", async () => {
    const ids = idsOf(await list("Contoso Ltd", "?$top=100"));
    assert.deepEqual(ids, expected("Contoso Ltd", () => true).slice(0, 100));
  });

  it("gets one incident in $entity form, without the incident-level entities", async () => {
    const record = store.forTenant(tenant("Contoso Ltd").id).find((r) => r.status !== "Redirected")!;
    const response = await t.call("GET", `/api/incidents/${record.incidentId}`, { token: await token("Contoso Ltd") });
    assert.equal(response.status, 200);
    assert.equal(response.headers["content-type"], ODATA_CONTENT_TYPE);
    assert.deepEqual(Object.keys(response.json), insertAfter(Object.keys(patchFixture), "incidentId", "incidentUri"));
    assert.equal(response.json["@odata.context"], `${LIST_CONTEXT}/$entity`);
    assert.equal(response.json.incidentId, record.incidentId);
    assert.equal(response.json.incidentUri, `https://security.microsoft.com/incidents/${record.incidentId}?tid=${tenant("Contoso Ltd").id}`);
    assert.equal(response.json.createdTime, trimIso(record.createdTime));
  });

  it("prints merged incidents like the capture: Redirected, UnSpecified, no alerts, an existing target", async () => {
    const records = store.forTenant(tenant("Adventure Works Cycles").id);
    const merged = records.find((r) => r.status === "Redirected")!;
    assert.ok(merged, "the seed has merged incidents");
    const response = await t.call("GET", `/api/incidents/${merged.incidentId}`, { token: await token("Adventure Works Cycles") });
    assert.equal(response.json.status, "Redirected");
    assert.equal(response.json.severity, "UnSpecified");
    assert.deepEqual(response.json.alerts, []);
    assert.equal(typeof response.json.redirectIncidentId, "number");
    const target = await t.call("GET", `/api/incidents/${response.json.redirectIncidentId}`, { token: await token("Adventure Works Cycles") });
    assert.equal(target.status, 200);
    assert.notEqual(target.json.status, "Redirected");
  });

  it("answers 404 ResourceNotFound for an unknown id and 400 for a non-numeric one", async () => {
    const token_ = await token("Contoso Ltd");
    assertDefenderError(await t.call("GET", "/api/incidents/1", { token: token_ }), 404, "ResourceNotFound", /Incident 1 was not found/);
    assertDefenderError(await t.call("GET", "/api/incidents/abc", { token: token_ }), 400, "BadRequest", /not valid/);
    // Another tenant's incident is not found either: ids are per tenant.
    const other = store.forTenant(tenant("Fabrikam, Inc.").id)[0]!;
    assertDefenderError(await t.call("GET", `/api/incidents/${other.incidentId}`, { token: token_ }), 404, "ResourceNotFound");
    assert.equal(ctx.counterSnapshot().byEndpoint["defender.get"], 3);
  });

  it("prints full entities when configured", async () => {
    ctx.options.entitySerialization = "full";
    try {
      const response = await list("Contoso Ltd", "?$top=20");
      const entities = response.json.value.flatMap((i: any) => i.alerts.flatMap((a: any) => a.entities));
      assert.ok(entities.length > 0, "entities.length > 0");
      for (const entity of entities) {
        for (const key of ["sha1", "fileName", "ipAddress", "url", "userPrincipalName", "mailboxAddress", "registryKey", "deviceId"]) assert.ok(key in entity, key);
      }
      assert.ok(entities.some((e: any) => e.sha1 === null), "entities.some((e: any) => e.sha1 === null)");
    } finally {
      ctx.options.entitySerialization = "sparse";
    }
  });

  it("returns an empty list for a tenant without incidents", async () => {
    const response = await list("Tailspin Toys");
    assert.deepEqual(response.json, { "@odata.context": LIST_CONTEXT, value: [] });
  });
});

describe("paging", () => {
  it("collects every incident of the 300-incident tenant exactly once with $skip", async () => {
    const seen: number[] = [];
    for (let skip = 0; ; skip += 100) {
      const page = idsOf(await list("Adventure Works Cycles", `?$top=100&$skip=${skip}`));
      assert.equal(page.length <= 100, true);
      seen.push(...page);
      if (page.length < 100) break;
    }
    assert.equal(seen.length, 300);
    assert.equal(new Set(seen).size, 300);
    assert.deepEqual(seen, expected("Adventure Works Cycles", () => true));
    assert.equal(ctx.counterSnapshot().byEndpoint["defender.list"], 4, "3 full pages and an empty one");
  });

  it("limits $top to 100 and accepts 0", async () => {
    assert.equal(idsOf(await list("Adventure Works Cycles", "?$top=100")).length, 100);
    assert.equal(idsOf(await list("Adventure Works Cycles", "?$top=7&$skip=295")).length, 5);
    assert.deepEqual(idsOf(await list("Adventure Works Cycles", "?$top=0")), []);
    assertDefenderError(await list("Adventure Works Cycles", "?$top=101"), 400, "BadRequest", /maximum page size of 100/);
    assertDefenderError(await list("Adventure Works Cycles", "?$top=-1"), 400, "ODataError", /non-negative integer/);
    assertDefenderError(await list("Adventure Works Cycles", "?$skip=x"), 400, "ODataError", /non-negative integer/);
  });

  it("emits @odata.nextLink on full pages only when configured", async () => {
    const plain = await list("Adventure Works Cycles", "?$top=100");
    assert.equal(plain.json["@odata.nextLink"], undefined);
    ctx.options.defenderNextLink = true;
    try {
      const seen: number[] = [];
      let path: string | undefined = "/api/incidents?$filter=status+ne+'Redirected'&$top=50";
      let calls = 0;
      while (path) {
        const response = await t.call("GET", path, { token: await token("Adventure Works Cycles") });
        calls++;
        seen.push(...idsOf(response));
        const next: string | undefined = response.json["@odata.nextLink"];
        if (next) {
          assert.ok(next.startsWith(`${t.sandbox.url}/api/incidents?`), next);
          assert.deepEqual(Object.keys(response.json), ["@odata.context", "value", "@odata.nextLink"]);
        }
        path = next?.slice(t.sandbox.url.length);
      }
      const want = expected("Adventure Works Cycles", (r) => r.status !== "Redirected");
      assert.deepEqual(seen, want);
      assert.equal(calls, Math.floor(want.length / 50) + 1);
    } finally {
      ctx.options.defenderNextLink = false;
    }
  });

  it("uses the configured default page size", async () => {
    ctx.options.defenderDefaultTop = 30;
    try {
      assert.equal(idsOf(await list("Adventure Works Cycles")).length, 30);
    } finally {
      ctx.options.defenderDefaultTop = 100;
    }
  });
});

describe("$filter", () => {
  const NAME = "Northwind Traders"; // 95 incidents: one page holds any result
  let records: IncidentRecord[];
  let pivot: IncidentRecord;

  before(() => {
    records = [...store.forTenant(tenant(NAME).id)];
    // A pivot whose time has 7 significant digits, to test the full precision.
    pivot = records.find((r) => /\.\d{6}[1-9]Z$/.test(r.lastUpdateTime) && r.status !== "Redirected")!;
    assert.ok(pivot, "pivot");
  });

  const q = (filter: string) => list(NAME, `?$top=100&$filter=${encodeURIComponent(filter)}`);

  it("compares lastUpdateTime and createdTime with every operator", async () => {
    const at = trimIso(pivot.lastUpdateTime);
    const cases: [string, (r: IncidentRecord) => boolean][] = [
      [`lastUpdateTime eq ${at}`, (r) => r.lastUpdateTime === pivot.lastUpdateTime],
      [`lastUpdateTime ne ${at}`, (r) => r.lastUpdateTime !== pivot.lastUpdateTime],
      [`lastUpdateTime gt ${at}`, (r) => r.lastUpdateTime > pivot.lastUpdateTime],
      [`lastUpdateTime ge ${at}`, (r) => r.lastUpdateTime >= pivot.lastUpdateTime],
      [`lastUpdateTime lt ${at}`, (r) => r.lastUpdateTime < pivot.lastUpdateTime],
      [`lastUpdateTime le ${at}`, (r) => r.lastUpdateTime <= pivot.lastUpdateTime],
      [`createdTime ge ${trimIso(pivot.createdTime)}`, (r) => r.createdTime >= pivot.createdTime],
      [`createdTime lt ${trimIso(pivot.createdTime)}`, (r) => r.createdTime < pivot.createdTime],
    ];
    for (const [filter, keep] of cases) {
      const want = expected(NAME, keep);
      assert.deepEqual(idsOf(await q(filter)), want, filter);
    }
    assert.deepEqual(idsOf(await q(`lastUpdateTime eq ${at}`)), [pivot.incidentId]);
  });

  it("takes datetimes with 0 to 7 fractional digits", async () => {
    const fixed = pivot.lastUpdateTime; // 2026-…T…:…:…. 7 digits Z
    for (let digits = 0; digits <= 7; digits++) {
      const literal = digits === 0 ? `${fixed.slice(0, 19)}Z` : `${fixed.slice(0, 20 + digits)}Z`;
      const bound = `${fixed.slice(0, 19)}.${fixed.slice(20, 20 + digits).padEnd(7, "0")}Z`;
      assert.deepEqual(idsOf(await q(`lastUpdateTime ge ${literal}`)), expected(NAME, (r) => r.lastUpdateTime >= bound), literal);
    }
  });

  it("filters on status and assignedTo, including null", async () => {
    for (const status of ["Active", "InProgress", "Resolved", "Redirected"]) {
      const want = expected(NAME, (r) => r.status === status);
      assert.ok(want.length > 0 || status === "Redirected", "want.length > 0 || status === \"Redirected\"");
      assert.deepEqual(idsOf(await q(`status eq '${status}'`)), want, status);
    }
    const assignee = records.find((r) => r.assignedTo)!.assignedTo!;
    assert.deepEqual(idsOf(await q(`assignedTo eq '${assignee}'`)), expected(NAME, (r) => r.assignedTo === assignee));
    assert.deepEqual(idsOf(await q("assignedTo eq null")), expected(NAME, (r) => r.assignedTo === null));
    assert.deepEqual(idsOf(await q("assignedTo ne null")), expected(NAME, (r) => r.assignedTo !== null));
  });

  it("combines clauses with and, or, not and parentheses", async () => {
    const since = trimIso(records[40]!.createdTime);
    const sinceFixed = records[40]!.createdTime;
    assert.deepEqual(
      idsOf(await q(`(status eq 'Active' or status eq 'InProgress') and createdTime ge ${since}`)),
      expected(NAME, (r) => (r.status === "Active" || r.status === "InProgress") && r.createdTime >= sinceFixed),
    );
    assert.deepEqual(
      idsOf(await q(`status eq 'Active' or status eq 'InProgress' and createdTime ge ${since}`)),
      expected(NAME, (r) => r.status === "Active" || (r.status === "InProgress" && r.createdTime >= sinceFixed)),
    );
    assert.deepEqual(idsOf(await q("not (status eq 'Resolved')")), expected(NAME, (r) => r.status !== "Resolved"));
    assert.deepEqual(idsOf(await q("not status eq 'Resolved' and assignedTo ne null")), expected(NAME, (r) => r.status !== "Resolved" && r.assignedTo !== null));
  });

  it("accepts + and %20 as spaces, and quoted or datetime'…' datetimes", async () => {
    const at = trimIso(pivot.lastUpdateTime);
    const want = expected(NAME, (r) => r.lastUpdateTime >= pivot.lastUpdateTime && r.status !== "Redirected");
    for (const query of [
      `?$filter=lastUpdateTime+ge+${at}+and+status+ne+'Redirected'`,
      `?$filter=lastUpdateTime%20ge%20${at}%20and%20status%20ne%20'Redirected'`,
      `?$filter=lastUpdateTime ge '${at}' and status ne 'Redirected'`.replace(/ /g, "%20"),
      `?$filter=lastUpdateTime+ge+datetime'${at}'+and+status+ne+'Redirected'`,
    ]) {
      assert.deepEqual(idsOf(await list(NAME, query)), want, query);
    }
  });

  it("rejects other properties, bad syntax and unsupported options with a helpful 400", async () => {
    assertDefenderError(await q("severity eq 'High'"), 400, "ODataError", /'severity'.*lastUpdateTime, createdTime, status, assignedTo/);
    assertDefenderError(await q("incidentName eq 'x'"), 400, "ODataError", /incidentName/);
    assertDefenderError(await q("status eq"), 400, "ODataError", /Expression expected/);
    assertDefenderError(await q("(status eq 'Active'"), 400, "ODataError", /'\)' expected/);
    assertDefenderError(await q("status eq Active"), 400, "ODataError", /single quotes/);
    assertDefenderError(await q("status eq 'New'"), 400, "ODataError", /not a valid enumeration/);
    assertDefenderError(await q("createdTime gt yesterday"), 400, "ODataError", /incompatible|not a valid/);
    assertDefenderError(await q("createdTime gt 2024-01-01T00:00:00"), 400, "ODataError", /time zone/);
    assertDefenderError(await q("startswith(assignedTo,'a')"), 400, "ODataError", /function 'startswith'/);
    assertDefenderError(await list(NAME, "?$filter="), 400, "ODataError", /must not be empty/);
    for (const option of ["$count=true", "$expand=alerts", "$select=incidentId", "$search=x"]) {
      assertDefenderError(await list(NAME, `?${option}`), 400, "ODataError", /is not supported/);
    }
    // $orderby is undocumented for this API: applied by default, refused with the knob (defenderOrderBy).
    assertDefenderError(await list(NAME, "?$orderby=severity"), 400, "ODataError", /cannot be used in \$orderby/);
    ctx.options.defenderOrderBy = "reject";
    try {
      assertDefenderError(await list(NAME, "?$orderby=createdTime"), 400, "ODataError", /is not supported/);
    } finally {
      ctx.options.defenderOrderBy = "honour";
    }
    assertDefenderError(await list(NAME, "?$top=1&$top=2"), 400, "ODataError", /more than once/);
    assert.equal(idsOf(await list(NAME, "?tid=anything&$top=1")).length, 1, "parameters without $ are ignored");
  });

  it("lets a poller see exactly the incidents changed since its last high-water mark", async () => {
    const name = "Contoso Ltd";
    const mark = trimIso([...store.forTenant(tenant(name).id)].reduce((max, r) => (r.lastUpdateTime > max ? r.lastUpdateTime : max), ""));
    assert.deepEqual(idsOf(await list(name, `?$filter=lastUpdateTime+gt+${mark}`)), []);
    // Background activity until Contoso is touched (it is one of a dozen consented tenants).
    for (let i = 0; i < 20 && store.forTenant(tenant(name).id).every((r) => trimIso(r.lastUpdateTime) <= mark); i++) store.applyActivity(10);
    const changed = expected(name, (r) => trimIso(r.lastUpdateTime) > mark);
    assert.ok(changed.length > 0, "changed.length > 0");
    assert.deepEqual(idsOf(await list(name, `?$filter=lastUpdateTime+gt+${mark}`)), changed);
  });
});

describe("PATCH", () => {
  const NAME = "Contoso Ltd";
  let target: IncidentRecord;
  const patch = async (body: unknown, id: number | string = target.incidentId, headers?: Record<string, string>) =>
    t.call("PATCH", `/api/incidents/${id}`, {
      token: await token(NAME),
      ...(typeof body === "string" ? { body, headers: { "content-type": "application/json", ...headers } } : { json: body }),
    });

  before(() => {
    target = store.forTenant(tenant(NAME).id).find((r) => r.status === "Active" && r.assignedTo === null)!;
  });

  it("updates the documented fields and answers the full incident in $entity form", async () => {
    const before = await t.call("GET", `/api/incidents/${target.incidentId}`, { token: await token(NAME) });
    const response = await patch({
      status: "InProgress",
      assignedTo: "soc.lead@contoso.onmicrosoft.com",
      classification: "TruePositive",
      determination: "MultiStagedAttack",
      tags: ["Escalated", "VIP"],
      comment: "Investigating with the customer.",
    });
    assert.equal(response.status, 200, response.text);
    const patchFixture = loadCaptured("defender-incident-patch.demisto.json");
    assert.deepEqual(Object.keys(response.json), insertAfter(Object.keys(patchFixture), "incidentId", "incidentUri"));
    assert.equal(response.json["@odata.context"], `${LIST_CONTEXT}/$entity`);
    assert.equal(response.json.status, "InProgress");
    assert.equal(response.json.assignedTo, "soc.lead@contoso.onmicrosoft.com");
    assert.equal(response.json.classification, "TruePositive");
    assert.equal(response.json.determination, "MultiStagedAttack");
    assert.deepEqual(response.json.tags, ["Escalated", "VIP"]);
    const last = response.json.comments.at(-1);
    assert.equal(response.json.comments.length, before.json.comments.length + 1);
    assert.equal(last.comment, "Investigating with the customer.");
    assert.equal(last.createdBy, `API-App:${ctx.app.displayName}`);
    assert.ok(new Date(response.json.lastUpdateTime) > new Date(before.json.lastUpdateTime), "new Date(response.json.lastUpdateTime) > new Date(before.json.lastUpdateTime)");
    assert.equal(last.createdTime, response.json.lastUpdateTime);
    for (const alert of response.json.alerts) assert.ok(alert.lastUpdatedTime >= response.json.lastUpdateTime.slice(0, 19), "alert.lastUpdatedTime >= response.json.lastUpdateTime.slice(0, 19)");

    // Tags replace, an empty assignedTo unassigns, resolving resolves the alerts.
    const second = await patch({ tags: ["Closed"], assignedTo: "", status: "Resolved" });
    assert.deepEqual(second.json.tags, ["Closed"]);
    assert.equal(second.json.assignedTo, null);
    assert.ok(second.json.alerts.every((a: { status: string; resolvedTime: string | null }) => a.status === "Resolved" && a.resolvedTime !== null), "second.json.alerts.every((a: { status: string; resolvedTime: string | null }) => a.status === \"Resolved\" && a.resolvedTime !== null)");
    assert.equal(second.json.comments.length, response.json.comments.length, "no comment, no new comment");

    // The change is visible to a poller and through Microsoft Graph.
    const since = await list(NAME, `?$filter=lastUpdateTime+ge+${response.json.lastUpdateTime}`);
    assert.ok(idsOf(since).includes(target.incidentId), "idsOf(since).includes(target.incidentId)");
    const graphToken = await t.sandbox.mintAccessToken({ tenantId: tenant(NAME).id, resource: "graph" });
    const graph = await t.call("GET", `/v1.0/security/incidents/${target.incidentId}`, { token: graphToken });
    assert.equal(graph.status, 200);
    assert.equal(graph.json.status, "resolved");
    assert.equal(graph.json.assignedTo, null);
    assert.equal(graph.json.classification, "truePositive");
    assert.equal(graph.json.determination, "multiStagedAttack");
    assert.deepEqual(graph.json.customTags, ["Closed"]);
    assert.equal(graph.json.lastModifiedBy, `API-App:${ctx.app.displayName}`);
    assert.equal(graph.json.lastUpdateDateTime, second.json.lastUpdateTime);
    assert.equal(graph.json.comments.at(-1).comment, "Investigating with the customer.");
    const counters = ctx.counterSnapshot().byTenant[tenant(NAME).id]!;
    assert.equal(counters["defender.patch"], 2);
    assert.equal(counters["graph.get"], 1);
  });

  it("accepts the writable classifications, and TruePositive's determinations in every documented spelling", async () => {
    for (const classification of ["TruePositive", "InformationalExpectedActivity", "FalsePositive", "truePositive"]) {
      const response = await patch({ classification });
      assert.equal(response.status, 200, `${classification}: ${response.text}`);
      assert.equal(response.json.classification.toLowerCase(), classification.toLowerCase());
    }
    // The update page's names and the api-incident page's (unconfirmed which the live service takes: both).
    const spellings: Record<string, string> = {
      MultiStagedAttack: "MultiStagedAttack", MaliciousUserActivity: "MaliciousUserActivity", CompromisedAccount: "CompromisedUser",
      CompromisedUser: "CompromisedUser", Malware: "Malware", Phishing: "Phishing", UnwantedSoftware: "UnwantedSoftware", Other: "Other",
    };
    for (const [sent, printed] of Object.entries(spellings)) {
      const response = await patch({ classification: "TruePositive", determination: sent });
      assert.equal(response.status, 200, `${sent}: ${response.text}`);
      assert.equal(response.json.classification, "TruePositive");
      assert.equal(response.json.determination, printed, sent);
    }
  });

  it("refuses a determination without classification TruePositive, and classification Unknown, like the update page", async () => {
    const before = { ...store.get(tenant(NAME).id, target.incidentId)! };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ classification: "Unknown" }, /'Unknown' is not a classification an update can set/],
      [{ determination: "Malware" }, /only together with classification 'TruePositive'/],
      [{ classification: "FalsePositive", determination: "Clean" }, /only together with classification 'TruePositive'/],
      [{ classification: "InformationalExpectedActivity", determination: "SecurityTesting" }, /only together with classification 'TruePositive'/],
      [{ classification: "TruePositive", determination: "Clean" }, /'Clean' is not a determination of classification 'TruePositive'.*CompromisedAccount/],
      [{ classification: "TruePositive", determination: "NotAvailable" }, /'NotAvailable' is not a determination/],
      [{ classification: "TruePositive", determination: "Apt", status: "Resolved" }, /'Apt' is not a determination/],
    ];
    for (const [body, message] of cases) assertDefenderError(await patch(body), 400, "InvalidInput", message);
    const after = store.get(tenant(NAME).id, target.incidentId)!;
    assert.deepEqual(
      [after.classification, after.determination, after.status, after.lastUpdateTime],
      [before.classification, before.determination, before.status, before.lastUpdateTime],
      "a refused PATCH changes nothing",
    );
    assert.equal(ctx.counterSnapshot().byEndpoint["defender.patch"], cases.length, "each refusal was a call");
  });

  it("can enforce the page's per-classification lists instead (defenderDeterminationRule: byClassification)", async () => {
    ctx.options.defenderDeterminationRule = "byClassification";
    try {
      let response = await patch({ classification: "FalsePositive", determination: "NoEnoughDataToValidate" });
      assert.equal(response.status, 200, response.text);
      assert.equal(response.json.determination, "InsufficientData");
      response = await patch({ classification: "InformationalExpectedActivity", determination: "ConfirmedActivity" });
      assert.equal(response.status, 200, response.text);
      assert.equal(response.json.determination, "ConfirmedUserActivity");
      // Without a classification in the body, the incident's current one decides.
      response = await patch({ determination: "SecurityTesting" });
      assert.equal(response.status, 200, response.text);
      assert.equal(response.json.determination, "SecurityTesting");
      assertDefenderError(await patch({ determination: "Malware" }), 400, "InvalidInput", /'Malware' is not a determination of classification 'InformationalExpectedActivity'/);
      assertDefenderError(await patch({ classification: "FalsePositive", determination: "Phishing" }), 400, "InvalidInput", /Clean, NoEnoughDataToValidate, Other/);
      assertDefenderError(await patch({ classification: "Unknown" }), 400, "InvalidInput");
    } finally {
      ctx.options.defenderDeterminationRule = "truePositiveOnly";
    }
  });

  it("rejects bad bodies with InvalidRequestBody or InvalidInput", async () => {
    assertDefenderError(await patch({ Status: "Active" }), 400, "InvalidRequestBody", /case-sensitive; did you mean 'status'/);
    assertDefenderError(await patch({ severity: "High" }), 400, "InvalidRequestBody", /Unknown property 'severity'/);
    assertDefenderError(await patch({ tags: "x" }), 400, "InvalidRequestBody", /'tags' must be an array of strings/);
    assertDefenderError(await patch({ tags: [1] }), 400, "InvalidRequestBody", /array of strings/);
    assertDefenderError(await patch({ status: 1 }), 400, "InvalidRequestBody", /'status' must be a string/);
    assertDefenderError(await patch({ assignedTo: 5 }), 400, "InvalidRequestBody", /string or null/);
    assertDefenderError(await patch({ status: "Closed" }), 400, "InvalidInput", /'Closed' is not a valid status.*Active, InProgress, Resolved, Redirected/);
    assertDefenderError(await patch({ classification: "Maybe" }), 400, "InvalidInput", /classification/);
    assertDefenderError(await patch({ determination: "Aliens" }), 400, "InvalidInput", /determination.*CompromisedAccount/);
    assertDefenderError(await patch({ comment: "  " }), 400, "InvalidInput", /must not be empty/);
    assertDefenderError(await patch({}), 400, "InvalidRequestBody", /no property to update/);
    assertDefenderError(await patch([]), 400, "InvalidRequestBody", /JSON object/);
    assertDefenderError(await patch("{not json"), 400, "InvalidRequestBody", /not valid JSON/);
    assertDefenderError(await patch(""), 400, "InvalidRequestBody", /empty/);
    assertDefenderError(await patch('{"status":"Active"}', target.incidentId, { "content-type": "text/plain" }), 415, "InvalidRequestBody", /application\/json/);
    assertDefenderError(await patch({ status: "Active" }, 1), 404, "ResourceNotFound");
    assertDefenderError(await patch({ status: "Active" }, "x1"), 400, "BadRequest");
    const unchanged = store.get(tenant(NAME).id, target.incidentId)!;
    assert.notEqual(unchanged.status, "Closed");
    assert.equal(ctx.counterSnapshot().byEndpoint["defender.patch"], 17, "every call is counted");
  });

  it("never leaks Fastify's own error body", async () => {
    const huge = JSON.stringify({ comment: "x".repeat(1_200_000) });
    const response = await patch(huge);
    assert.equal(response.status, 413);
    assertDefenderError(response, 413, "InvalidRequestBody");
    assert.equal(response.json.statusCode, undefined);
    assertDefenderError(await t.call("DELETE", `/api/incidents/${target.incidentId}`, { token: await token(NAME) }), 405, "MethodNotAllowed");
    assertDefenderError(await t.call("GET", "/api/machines", { token: await token(NAME) }), 404, "ResourceNotFound");
  });
});

describe("authentication and roles", () => {
  const NAME = "Contoso Ltd";

  it("answers 401 Unauthorized for missing, malformed, expired and foreign tokens", async () => {
    const id = tenant(NAME).id;
    const expired = await t.sandbox.mintAccessToken({ tenantId: id, resource: "defender", lifetimeSeconds: -900 });
    const graphToken = await t.sandbox.mintAccessToken({ tenantId: id, resource: "graph" });
    const cases: [Record<string, string>, RegExp][] = [
      [{}, /missing/],
      [{ authorization: "Basic abc" }, /not a Bearer/],
      [{ authorization: "Bearer not.a.jwt" }, /invalid/],
      [{ authorization: `Bearer ${expired}` }, /expired/],
      [{ authorization: `Bearer ${graphToken}` }, /audience/],
    ];
    for (const [headers, message] of cases) {
      assertDefenderError(await t.call("GET", "/api/incidents", { headers }), 401, "Unauthorized", message);
    }
    const notConsented = await t.sandbox.mintAccessToken({ tenantId: tenant("Alpine Ski House").id, resource: "defender", roles: ["Incident.Read.All"] });
    assertDefenderError(await t.call("GET", "/api/incidents", { token: notConsented }), 401, "Unauthorized");
    const counters = ctx.counterSnapshot();
    assert.equal(counters.byEndpoint["defender.list"], 6, "refused calls are counted too");
    assert.equal(counters.byTenant[id]?.["defender.list"], 2, "under the tenant the token claims");
    assert.equal(counters.byTenant.unauthenticated?.["defender.list"], 3);
  });

  it("answers 403 Forbidden without an incident role, and for PATCH with a read-only role", async () => {
    const coho = await t.sandbox.mintAccessToken({ tenantId: tenant("Coho Winery").id, resource: "defender" });
    assertDefenderError(await t.call("GET", "/api/incidents", { token: coho }), 403, "Forbidden", /Incident\.Read\.All, Incident\.ReadWrite\.All.*AdvancedHunting\.Read\.All/);
    const none = await t.sandbox.mintAccessToken({ tenantId: tenant(NAME).id, resource: "defender", roles: [] });
    assertDefenderError(await t.call("GET", "/api/incidents", { token: none }), 403, "Forbidden", /no roles/);
    const readOnly = await t.sandbox.mintAccessToken({ tenantId: tenant(NAME).id, resource: "defender", roles: ["Incident.Read.All"] });
    const id = store.forTenant(tenant(NAME).id)[0]!.incidentId;
    assert.equal((await t.call("GET", `/api/incidents/${id}`, { token: readOnly })).status, 200);
    assertDefenderError(await t.call("PATCH", `/api/incidents/${id}`, { token: readOnly, json: { status: "Active" } }), 403, "Forbidden", /Incident\.ReadWrite\.All/);
    const proseware = await t.sandbox.mintAccessToken({ tenantId: tenant("Proseware, Inc.").id, resource: "defender" });
    assertDefenderError(await t.call("GET", "/api/incidents", { token: proseware }), 403, "Forbidden");
  });
});

describe("rate limits", () => {
  it("throttles per app and tenant with 429, Retry-After and the Defender body; rejected calls use no quota", async () => {
    const name = "Trey Research";
    const id = store.forTenant(tenant(name).id)[0]!.incidentId;
    const get = async () => t.call("GET", `/api/incidents/${id}`, { token: await token(name) });
    for (let i = 0; i < 3; i++) assert.equal((await get()).status, 200);
    const throttled = await get();
    assertDefenderError(throttled, 429, "TooManyRequests", /Maximum allowed 3 per 1 minute\(s\)/);
    const retryAfter = Number(throttled.headers["retry-after"]);
    assert.ok(retryAfter >= 1 && retryAfter <= 60, String(retryAfter));
    // Another tenant has its own quota.
    const other = store.forTenant(tenant("Litware, Inc.").id)[0]!.incidentId;
    assert.equal((await t.call("GET", `/api/incidents/${other}`, { token: await token("Litware, Inc.") })).status, 200);

    ctx.advanceClock(30_000);
    for (let i = 0; i < 3; i++) assert.equal((await get()).status, 429);
    ctx.advanceClock(31_000);
    // The first three left the window; had the rejected ones counted, this would still be throttled.
    assert.equal((await get()).status, 200);

    const counters = ctx.counterSnapshot();
    assert.equal(counters.byTenant[tenant(name).id]?.["defender.get"], 8);
    assert.equal(counters.byTenant[tenant(name).id]?.throttled, 4);
    assert.equal(counters.throttled, 4);
  });
});

describe("faults", () => {
  const NAME = "Trey Research";
  const path = "/api/incidents?$top=5";

  async function raw(headersTimeout?: number) {
    return request(`${t.sandbox.url}${path}`, {
      dispatcher: t.dispatcher,
      headers: { authorization: `Bearer ${await token(NAME)}` },
      ...(headersTimeout ? { headersTimeout } : {}),
    });
  }

  it("throttle: 429 with Retry-After until the fault is used up", async () => {
    ctx.setFault(tenant(NAME).id, { kind: "throttle", retryAfterSeconds: 7, times: 2 });
    for (let i = 0; i < 2; i++) {
      const response = await list(NAME, "?$top=5");
      assertDefenderError(response, 429, "TooManyRequests");
      assert.equal(response.headers["retry-after"], "7");
    }
    assert.equal((await list(NAME, "?$top=5")).status, 200, "times: 2 clears it");
    const counters = ctx.counterSnapshot().byTenant[tenant(NAME).id]!;
    assert.equal(counters["defender.list"], 3);
    assert.equal(counters.throttled, 2);
  });

  it("server-error: 503 by default, or the status asked for", async () => {
    ctx.setFault(tenant(NAME).id, { kind: "server-error", times: 1 });
    assertDefenderError(await list(NAME), 503, "ServiceUnavailable");
    ctx.setFault(tenant(NAME).id, { kind: "server-error", status: 502, times: 1 });
    assertDefenderError(await list(NAME), 502, "InternalServerError");
    assert.equal((await list(NAME)).status, 200);
  });

  it("hang: no headers ever arrive; the client's headersTimeout fires", async () => {
    ctx.setFault(tenant(NAME).id, { kind: "hang", times: 1 });
    await assert.rejects(raw(300), (error: Error & { code?: string }) => error.code === "UND_ERR_HEADERS_TIMEOUT");
    assert.equal((await list(NAME)).status, 200);
  });

  it("slow-body: headers at once, the body over the duration", async () => {
    ctx.setFault(tenant(NAME).id, { kind: "slow-body", durationMs: 800, times: 1 });
    const started = Date.now();
    const response = await raw();
    assert.equal(response.statusCode, 200);
    const text = await response.body.text();
    assert.ok(Date.now() - started >= 600, `took ${Date.now() - started} ms`);
    assert.equal(JSON.parse(text).value.length, 5);
  });

  it("malformed-json and truncated-json: 200 with a body that does not parse", async () => {
    for (const kind of ["malformed-json", "truncated-json"] as const) {
      ctx.setFault(tenant(NAME).id, { kind, times: 1 });
      const response = await list(NAME, "?$top=5");
      assert.equal(response.status, 200);
      assert.ok(response.text.length > 0, "response.text.length > 0");
      assert.throws(() => JSON.parse(response.text), SyntaxError, kind);
      assert.equal(response.json, undefined);
    }
    assert.equal((await list(NAME, "?$top=5")).json.value.length, 5);
  });

  it("reset: the connection drops without a response", async () => {
    ctx.setFault(tenant(NAME).id, { kind: "reset", times: 1 });
    await assert.rejects(raw(), (error: Error & { code?: string }) => /UND_ERR_SOCKET|ECONNRESET/.test(String(error.code)));
    assert.equal((await list(NAME)).status, 200);
  });

  it("only hits the endpoints and tenant it names", async () => {
    ctx.setFault(tenant(NAME).id, { kind: "server-error", endpoints: ["graph"] });
    assert.equal((await list(NAME)).status, 200);
    ctx.setFault(tenant(NAME).id, { kind: "server-error", endpoints: ["defender.get"] });
    assert.equal((await list(NAME)).status, 200);
    assert.equal((await list("Litware, Inc.")).status, 200);
    ctx.setFault("*", { kind: "server-error", endpoints: ["defender.list"], times: 1 });
    assert.equal((await list("Litware, Inc.")).status, 503);
  });
});
