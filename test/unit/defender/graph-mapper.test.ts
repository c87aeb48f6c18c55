import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mapDefenderIncident } from "../../../src/defender/defender-mapper.js";
import { mapGraphIncident, mapGraphIncidentPage, toGraphPatchRequests } from "../../../src/defender/graph-mapper.js";
import type { Incident } from "../../../src/defender/incident.js";
import { ShapeError } from "../../../src/defender/mapping.js";
import { SandboxContext } from "../../../src/sandbox/context.js";
import { defenderIncident, graphIncident } from "../../../src/sandbox/incident-serializers.js";
import { IncidentStore } from "../../../src/sandbox/incidents-store.js";
import { loadCaptured } from "../../helpers/captured-fixtures.js";

const TENANT = "22222222-2222-2222-2222-222222222222";

describe("Graph mapper: captured bodies (demisto, 2024)", () => {
  it("maps the list: string ids, lowerCamel enums, customTags/systemTags, alerts not loaded", () => {
    const page = mapGraphIncidentPage(loadCaptured("graph-incidents-list.demisto.json"), TENANT);
    assert.equal(page.nextLink, undefined);
    assert.equal(page.incidents.length, 2);
    const [first, second] = page.incidents;
    assert.deepEqual(first, {
      tenantId: TENANT, // the body's own tenantId ("") is not trusted
      incidentId: "12345",
      backend: "graph",
      name: "DLP policy (Custom policy) matched for email with subject (Splunk Report: High Or Critical Priority Host With Malware - 15 min) involving one user",
      severity: "MEDIUM",
      status: "ACTIVE",
      classification: "UNKNOWN",
      determination: "NOT_AVAILABLE",
      assignedTo: null,
      createdTime: new Date("2024-03-26T13:34:15.043Z"),
      lastUpdateTime: new Date("2024-03-26T13:35:45.230Z"),
      tags: [],
      systemTags: [],
      description: null,
      comments: [],
      alerts: null, // listed without $expand=alerts: not loaded, which is not "none"
      incidentUri: "https://security.microsoft.com/incidents/",
      redirectIncidentId: null,
    } satisfies Incident);
    assert.equal(second!.incidentId, "12346");
    assert.equal(second!.status, "RESOLVED");
    assert.equal(second!.severity, "INFORMATIONAL");
    assert.equal(second!.lastUpdateTime.toISOString(), "2024-03-26T13:31:46.506Z");
  });

  it("maps a GET $entity body", () => {
    const i = mapGraphIncident(loadCaptured("graph-incident-get.demisto.json"), TENANT);
    assert.equal(i.incidentId, "12345");
    assert.equal(i.alerts, null, "no alerts key: not loaded");
    assert.equal(i.name, "Exfiltration incident involving multiple users");
    assert.equal(i.createdTime.toISOString(), "2024-02-07T09:22:33.690Z");
    assert.equal(i.incidentUri, "https://security.microsoft.com/incidents/123-123");
    assert.equal(i.tenantId, TENANT);
  });

  it("maps a PATCH answer: redirected, redirect id a string, truePositive", () => {
    const i = mapGraphIncident(loadCaptured("graph-incident-patch.demisto.json"), TENANT);
    assert.equal(i.status, "REDIRECTED");
    assert.equal(i.redirectIncidentId, "1234");
    assert.equal(i.classification, "TRUE_POSITIVE");
    assert.equal(i.determination, "NOT_AVAILABLE");
    assert.equal(i.assignedTo, "Cortex XSOAR MS Graph Dev");
  });
});

describe("Graph mapper: tolerance", () => {
  const minimal = { id: "9", createdDateTime: "2024-05-01T10:00:00.1234567Z" };

  it("maps unknownFutureValue and unknown members to UNKNOWN, awaitingAction to AWAITING_ACTION", () => {
    const i = mapGraphIncident({ ...minimal, status: "awaitingAction", severity: "unknownFutureValue", classification: "unknownFutureValue", determination: "unknownFutureValue" }, TENANT);
    assert.equal(i.status, "AWAITING_ACTION");
    assert.equal(i.severity, "UNKNOWN");
    assert.equal(i.classification, "UNKNOWN");
    assert.equal(i.determination, "UNKNOWN");
    assert.equal(mapGraphIncident({ ...minimal, status: "unknownFutureValue" }, TENANT).status, "UNKNOWN");
    assert.equal(i.lastUpdateTime.toISOString(), "2024-05-01T10:00:00.123Z");
  });

  it("reads Graph determinations onto the shared vocabulary", () => {
    const det = (value: string) => mapGraphIncident({ ...minimal, determination: value }, TENANT).determination;
    assert.equal(det("compromisedUser"), "COMPROMISED_ACCOUNT");
    assert.equal(det("clean"), "NOT_MALICIOUS");
    assert.equal(det("notMalicious"), "NOT_MALICIOUS");
    assert.equal(det("insufficientData"), "NOT_ENOUGH_DATA_TO_VALIDATE");
    assert.equal(det("notEnoughDataToValidate"), "NOT_ENOUGH_DATA_TO_VALIDATE");
    assert.equal(det("confirmedUserActivity"), "CONFIRMED_USER_ACTIVITY");
    assert.equal(det("lineOfBusinessApplication"), "LINE_OF_BUSINESS_APPLICATION");
  });

  it("reads `tags` when a body has no customTags, and Graph comments", () => {
    const i = mapGraphIncident(
      { ...minimal, tags: ["legacy-name"], comments: [{ comment: "hi", createdByDisplayName: "API-App:X", createdDateTime: "2024-05-01T10:01:00Z" }] },
      TENANT,
    );
    assert.deepEqual(i.tags, ["legacy-name"]);
    assert.deepEqual(i.comments, [{ comment: "hi", createdBy: "API-App:X", createdTime: new Date("2024-05-01T10:01:00Z") }]);
  });

  it("maps evidence: devices from deviceEvidence, entity types from @odata.type", () => {
    const i = mapGraphIncident(
      {
        ...minimal,
        alerts: [
          {
            id: "da1",
            severity: "high",
            evidence: [
              { "@odata.type": "#microsoft.graph.security.deviceEvidence", mdeDeviceId: "abc", azureAdDeviceId: null, deviceDnsName: "pc1.contoso.local", osBuild: 22631, firstSeenDateTime: "2023-01-01T00:00:00Z", riskScore: "high" },
              { "@odata.type": "#microsoft.graph.security.userEvidence", verdict: "suspicious", remediationStatus: "none", userAccount: { accountName: "ana", userPrincipalName: "ana@contoso.com", domainName: null } },
              { "@odata.type": "#microsoft.graph.security.cloudApplicationEvidence", displayName: "Dropbox", appId: 12 },
              { createdDateTime: "2024-05-01T10:00:00Z" },
            ],
          },
        ],
      },
      TENANT,
    );
    const alert = i.alerts![0]!;
    assert.equal(alert.severity, "HIGH");
    assert.deepEqual(alert.devices, [
      { deviceId: "abc", aadDeviceId: null, dnsName: "pc1.contoso.local", osPlatform: null, osBuild: 22631, riskScore: "High", healthStatus: null, firstSeen: new Date("2023-01-01T00:00:00Z") },
    ]);
    const [user, app, bare] = alert.entities;
    assert.deepEqual(user, {
      type: "User",
      verdict: "Suspicious",
      remediationStatus: "None",
      displayValue: "ana@contoso.com",
      properties: { "userAccount.accountName": "ana", "userAccount.userPrincipalName": "ana@contoso.com" },
    });
    assert.equal(app!.type, "CloudApplication");
    assert.equal(app!.displayValue, "Dropbox");
    assert.equal(app!.properties.appId, "12");
    assert.equal(bare!.type, "Evidence");
  });

  it("tells alerts not loaded (no key) from none (an expanded empty list)", () => {
    const minimal = { id: "9", createdDateTime: "2024-01-01T00:00:00Z" };
    assert.equal(mapGraphIncident(minimal, TENANT).alerts, null);
    assert.deepEqual(mapGraphIncident({ ...minimal, alerts: [] }, TENANT).alerts, []);
  });

  it("fails on what cannot be mapped", () => {
    assert.throws(() => mapGraphIncidentPage({ value: null }, TENANT), ShapeError);
    assert.throws(() => mapGraphIncidentPage({ value: [], "@odata.nextLink": 5 }, TENANT), ShapeError);
    assert.throws(() => mapGraphIncident({ createdDateTime: "2024-01-01T00:00:00Z" }, TENANT), /\.id/);
    assert.throws(() => mapGraphIncident({ id: "1", createdDateTime: "not a date" }, TENANT), /createdDateTime/);
    assert.throws(() => mapGraphIncident({ ...minimal, alerts: [{ id: "a", evidence: ["x"] }] }, TENANT), /evidence\[0\]/);
    assert.throws(() => mapGraphIncident({ ...minimal, customTags: [{}] }, TENANT), /customTags\[0\]/);
  });
});

describe("both mappers read one sandbox incident the same", () => {
  it("agrees field for field on generated incidents (devices, evidence, comments, enums)", () => {
    const ctx = new SandboxContext({ tenantCount: 4 });
    const store = new IncidentStore(ctx);
    const tenant = ctx.tenants.find((t) => t.displayName === "Contoso Ltd")!;
    const records = store.forTenant(tenant.id);
    assert.ok(records.length > 50);
    let entities = 0;
    for (const record of records) {
      const view = store.view(record);
      const legacy = mapDefenderIncident(defenderIncident(view, { entitySerialization: record.incidentId % 2 === 0 ? "full" : "sparse", listItem: true }), tenant.id);
      const graph = mapGraphIncident(graphIncident(view, { expandAlerts: true }), tenant.id);
      const comparable = (i: Incident) => ({
        ...i,
        backend: undefined,
        systemTags: undefined,
        description: undefined,
        alerts: i.alerts!.map((a) => ({
          ...a,
          serviceSource: undefined,
          detectionSource: undefined,
          entities: a.entities.map((e) => ({ type: e.type, displayValue: e.displayValue, verdict: e.verdict, remediationStatus: e.remediationStatus })),
        })),
      });
      assert.deepEqual(comparable(graph), comparable(legacy), `incident ${record.incidentId}`);
      entities += legacy.alerts!.reduce((n, a) => n + a.entities.length, 0);
    }
    assert.ok(entities > 100, "the sample has entities to compare");
  });
});

describe("Graph PATCH requests", () => {
  it("uses lowerCamel enums and customTags; the comment goes to its own POST", () => {
    assert.deepEqual(
      toGraphPatchRequests({
        status: "IN_PROGRESS",
        assignedTo: "ana@contoso.com",
        classification: "TRUE_POSITIVE",
        determination: "COMPROMISED_ACCOUNT",
        tags: ["p1"],
        comment: "escalated",
      }),
      {
        body: { status: "inProgress", assignedTo: "ana@contoso.com", classification: "truePositive", determination: "compromisedAccount", customTags: ["p1"] },
        comment: { "@odata.type": "microsoft.graph.security.alertComment", comment: "escalated" },
      },
    );
  });

  it("comment only: no PATCH body; unassign: null", () => {
    assert.deepEqual(toGraphPatchRequests({ comment: "note" }).body, undefined);
    assert.deepEqual(toGraphPatchRequests({ assignedTo: "" }).body, { assignedTo: null });
    assert.deepEqual(toGraphPatchRequests({ determination: "NOT_AVAILABLE", classification: "INFORMATIONAL_EXPECTED_ACTIVITY" }).body, {
      determination: "unknown",
      classification: "informationalExpectedActivity",
    });
    assert.deepEqual(toGraphPatchRequests({ determination: "NOT_MALICIOUS" }).body, { determination: "notMalicious" });
    assert.deepEqual(toGraphPatchRequests({ determination: "NOT_ENOUGH_DATA_TO_VALIDATE" }).body, { determination: "notEnoughDataToValidate" });
    assert.deepEqual(toGraphPatchRequests({ determination: "CONFIRMED_USER_ACTIVITY" }).body, { determination: "confirmedActivity" });
    assert.equal(toGraphPatchRequests({ status: "RESOLVED" }).comment, undefined);
  });
});
