import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mapDefenderIncident, mapDefenderIncidentPage, toDefenderPatchBody } from "../../../src/defender/defender-mapper.js";
import { parseUpstreamTime, patchProblem, ShapeError } from "../../../src/defender/mapping.js";
import { loadCaptured } from "../../helpers/captured-fixtures.js";

const TENANT = "11111111-1111-1111-1111-111111111111";

describe("Defender mapper: captured list (demisto, 2021)", () => {
  const page = mapDefenderIncidentPage(loadCaptured("defender-incidents-list.demisto.json"), TENANT);
  const byId = new Map(page.incidents.map((i) => [i.incidentId, i]));

  it("maps all ten incidents, no next link", () => {
    assert.equal(page.incidents.length, 10);
    assert.equal(page.nextLink, undefined);
    assert.deepEqual(
      page.incidents.map((i) => i.incidentId),
      ["264", "243", "263", "262", "261", "257", "258", "259", "260", "256"],
    );
    for (const incident of page.incidents) {
      assert.equal(incident.tenantId, TENANT);
      assert.equal(incident.backend, "defender");
      assert.equal(incident.classification, "UNKNOWN");
      assert.equal(incident.determination, "NOT_AVAILABLE");
      assert.deepEqual(incident.systemTags, []);
    }
  });

  it("maps an MCAS incident field by field, 7- and 2-digit fractions", () => {
    const i = byId.get("264")!;
    assert.equal(i.name, "Impossible travel activity involving one user");
    assert.equal(i.severity, "MEDIUM");
    assert.equal(i.status, "RESOLVED");
    assert.equal(i.assignedTo, "assignedTo");
    assert.equal(i.createdTime.toISOString(), "2021-04-05T15:40:25.686Z");
    assert.equal(i.lastUpdateTime.toISOString(), "2021-04-15T16:16:35.920Z");
    assert.equal(i.redirectIncidentId, null);
    assert.equal(i.incidentUri, null);
    assert.equal(i.description, null);
    assert.deepEqual(i.tags, []);
    assert.deepEqual(i.comments, []);
    assert.equal(i.alerts!.length, 1);
    const a = i.alerts![0]!;
    assert.equal(a.alertId, "alertId");
    assert.equal(a.title, "Impossible travel activity");
    assert.equal(a.severity, "MEDIUM");
    assert.equal(a.status, "Resolved");
    assert.equal(a.category, "InitialAccess");
    assert.equal(a.serviceSource, "MicrosoftCloudAppSecurity");
    assert.equal(a.detectionSource, "MCAS");
    assert.equal(a.createdTime?.toISOString(), "2021-04-05T15:40:24.189Z");
    // The alert's key is lastUpdatedTime (with a d).
    assert.equal(a.lastUpdateTime?.toISOString(), "2021-04-15T16:16:35.920Z");
    assert.equal(a.resolvedTime?.toISOString(), "2021-04-15T16:16:22.590Z");
    assert.equal(a.firstActivity?.toISOString(), "2021-04-05T06:56:06.833Z");
    assert.equal(a.lastActivity?.toISOString(), "2021-04-05T15:34:25.736Z");
    assert.deepEqual(a.devices, []);
    assert.deepEqual(a.entities, []);
  });

  it("maps MDE devices from mdatpDeviceId, osBuild as a number", () => {
    const i = byId.get("262")!;
    assert.equal(i.severity, "INFORMATIONAL");
    assert.equal(i.alerts!.length, 12);
    const device = i.alerts![0]!.devices[0]!;
    assert.deepEqual(device, {
      deviceId: "mdatpDeviceId",
      aadDeviceId: null,
      dnsName: "deviceDnsName",
      osPlatform: "Windows10",
      osBuild: 18363,
      riskScore: "Informational",
      healthStatus: "Active",
      firstSeen: new Date("2020-02-20T14:44:11.462Z"),
    });
    assert.equal(i.alerts![0]!.detectionSource, "AutomatedInvestigation");
  });

  it("maps redirected incidents: UnSpecified severity is UNKNOWN, the redirect id a string", () => {
    for (const id of ["258", "259", "260"]) {
      const i = byId.get(id)!;
      assert.equal(i.status, "REDIRECTED");
      assert.equal(i.severity, "UNKNOWN");
      assert.equal(i.redirectIncidentId, "261");
      assert.deepEqual(i.alerts, []);
    }
  });

  it("keeps tags", () => {
    assert.deepEqual(byId.get("263")!.tags, ["tag1", "tag2"]);
  });
});

describe("Defender mapper: captured PATCH answer ($entity)", () => {
  const i = mapDefenderIncident(loadCaptured("defender-incident-patch.demisto.json"), TENANT);

  it("maps the flat entity next to @odata.context", () => {
    assert.equal(i.incidentId, "263");
    assert.equal(i.status, "ACTIVE");
    assert.equal(i.severity, "INFORMATIONAL");
    assert.deepEqual(i.tags, ["test1", "test2"]);
    assert.equal(i.lastUpdateTime.toISOString(), "2021-04-27T08:30:46.746Z");
    assert.equal(i.alerts!.length, 12);
    assert.ok(i.alerts!.every((a) => a.status === "Resolved"));
    assert.equal(i.alerts![0]!.lastUpdateTime?.toISOString(), "2021-04-27T08:30:46.820Z");
  });

  it("reads the literal 'Unassigned' as nobody", () => {
    assert.equal(i.assignedTo, null);
  });
});

describe("Defender mapper: captured trimmed record with entities", () => {
  const i = mapDefenderIncident(loadCaptured("defender-incident-entities.demisto.json"), TENANT);

  it("tolerates missing keys: times from the alerts, unknown status", () => {
    assert.equal(i.incidentId, "336");
    assert.equal(i.status, "UNKNOWN"); // "New" is an alert status, not an incident one
    assert.equal(i.severity, "MEDIUM");
    assert.equal(i.classification, "UNKNOWN");
    assert.equal(i.determination, "UNKNOWN");
    assert.equal(i.redirectIncidentId, null);
    assert.equal(i.assignedTo, null);
    assert.equal(i.createdTime.toISOString(), "2026-04-30T00:19:48.170Z");
    assert.equal(i.lastUpdateTime.toISOString(), "2026-04-30T00:19:48.170Z");
    const a = i.alerts![0]!;
    assert.equal(a.alertId, "dc3ad2104b-aa8f-3dbe-420f-0af3fe224e02");
    assert.equal(a.serviceSource, "MicrosoftDefenderForCloud");
    assert.equal(a.detectionSource, "DefenderForDatabases");
    assert.equal(a.lastUpdateTime, null);
    assert.equal(a.resolvedTime, null);
    assert.deepEqual(a.mitreTechniques, []);
  });

  it("maps sparse entities with a display value and the rest as properties", () => {
    const [ip, user] = i.alerts![0]!.entities;
    assert.deepEqual(ip, { type: "Ip", verdict: "Suspicious", remediationStatus: null, displayValue: "192.0.2.1", properties: { ipAddress: "192.0.2.1" } });
    assert.equal(user!.type, "User");
    assert.equal(user!.displayValue, "username@domain");
    assert.deepEqual(user!.properties, {
      aadUserId: "aaaaaaaa-0000-1111-2222-bbbbbbbbbbbb",
      accountName: "username",
      domainName: "CONTOSO.LOCAL",
      userPrincipalName: "username@domain",
      userSid: "S-1-9-9999999999-9999999999-9999999999-9999-2607",
    });
  });
});

describe("Defender mapper: tolerance and shape errors", () => {
  const minimal = { incidentId: 7, createdTime: "2024-01-01T00:00:00Z" };

  it("reads full-null entities (doc style) and the docs' MailBox spelling", () => {
    const i = mapDefenderIncident(
      {
        ...minimal,
        alerts: [
          {
            alertId: "a1",
            entities: [
              { entityType: "MailBox", mailboxAddress: "ceo@contoso.com", mailboxDisplayName: "CEO", sha1: null, ipAddress: null, processId: null },
              { entityType: "Process", processId: 4242, processCommandLine: "powershell -enc AAAA", fileName: "powershell.exe" },
              { entityType: "SomethingNew", foo: "bar" },
            ],
          },
        ],
      },
      TENANT,
    );
    const [mailbox, process, other] = i.alerts![0]!.entities;
    assert.equal(mailbox!.type, "Mailbox");
    assert.equal(mailbox!.displayValue, "ceo@contoso.com");
    assert.deepEqual(Object.keys(mailbox!.properties).sort(), ["mailboxAddress", "mailboxDisplayName"]);
    assert.equal(process!.displayValue, "powershell -enc AAAA");
    assert.equal(process!.properties.processId, "4242");
    assert.deepEqual(other, { type: "SomethingNew", verdict: null, remediationStatus: null, displayValue: null, properties: { foo: "bar" } });
  });

  it("maps nulls and unknown enum members to UNKNOWN / null / []", () => {
    const i = mapDefenderIncident(
      { ...minimal, severity: "Critical", status: null, classification: "Weird", determination: "unknownFutureValue", tags: null, comments: null, alerts: null, assignedTo: "" },
      TENANT,
    );
    assert.equal(i.severity, "UNKNOWN");
    assert.equal(i.status, "UNKNOWN");
    assert.equal(i.classification, "UNKNOWN");
    assert.equal(i.determination, "UNKNOWN");
    assert.deepEqual(i.tags, []);
    assert.deepEqual(i.alerts, []);
    assert.equal(i.assignedTo, null);
    assert.equal(i.lastUpdateTime.toISOString(), "2024-01-01T00:00:00.000Z");
    assert.equal(i.name, "");
  });

  it("reads every documented determination spelling", () => {
    const det = (value: string) => mapDefenderIncident({ ...minimal, determination: value }, TENANT).determination;
    assert.equal(det("CompromisedUser"), "COMPROMISED_ACCOUNT");
    assert.equal(det("CompromisedAccount"), "COMPROMISED_ACCOUNT");
    assert.equal(det("Clean"), "NOT_MALICIOUS");
    assert.equal(det("InsufficientData"), "NOT_ENOUGH_DATA_TO_VALIDATE");
    assert.equal(det("NoEnoughDataToValidate"), "NOT_ENOUGH_DATA_TO_VALIDATE");
    assert.equal(det("ConfirmedActivity"), "CONFIRMED_USER_ACTIVITY");
    assert.equal(det("Apt"), "APT");
    assert.equal(det("MultiStagedAttack"), "MULTI_STAGED_ATTACK");
  });

  it("reads comments", () => {
    const i = mapDefenderIncident({ ...minimal, comments: [{ comment: "looked at it", createdBy: "ana@contoso.com", createdTime: "2024-01-02T03:04:05.1234567Z" }] }, TENANT);
    assert.deepEqual(i.comments, [{ comment: "looked at it", createdBy: "ana@contoso.com", createdTime: new Date("2024-01-02T03:04:05.123Z") }]);
  });

  it("fails on what cannot be mapped honestly", () => {
    assert.throws(() => mapDefenderIncidentPage({ value: {} }, TENANT), ShapeError);
    assert.throws(() => mapDefenderIncidentPage([], TENANT), ShapeError);
    assert.throws(() => mapDefenderIncidentPage({ value: [42] }, TENANT), /\$\.value\[0\]/);
    assert.throws(() => mapDefenderIncident({ createdTime: "2024-01-01T00:00:00Z" }, TENANT), /incidentId/);
    assert.throws(() => mapDefenderIncident({ incidentId: 1 }, TENANT), /createdTime/);
    assert.throws(() => mapDefenderIncident({ ...minimal, alerts: "nope" }, TENANT), ShapeError);
    assert.throws(() => mapDefenderIncident({ ...minimal, alerts: [{ title: "no id" }] }, TENANT), /alertId/);
  });
});

describe("upstream timestamps", () => {
  it("parses 0 to 7 fractional digits and offsets, truncating to ms", () => {
    assert.equal(parseUpstreamTime("2021-03-18T12:05:31Z")?.toISOString(), "2021-03-18T12:05:31.000Z");
    assert.equal(parseUpstreamTime("2021-03-18T12:05:31.9Z")?.toISOString(), "2021-03-18T12:05:31.900Z");
    assert.equal(parseUpstreamTime("2021-03-18T12:05:31.92Z")?.toISOString(), "2021-03-18T12:05:31.920Z");
    assert.equal(parseUpstreamTime("2021-03-18T12:05:31.6866667Z")?.toISOString(), "2021-03-18T12:05:31.686Z");
    assert.equal(parseUpstreamTime("2021-03-18T12:05:31.9999999Z")?.toISOString(), "2021-03-18T12:05:31.999Z");
    assert.equal(parseUpstreamTime("2021-03-18T14:05:31+02:00")?.toISOString(), "2021-03-18T12:05:31.000Z");
    assert.equal(parseUpstreamTime("2021-02-30T00:00:00Z"), undefined);
    assert.equal(parseUpstreamTime("yesterday"), undefined);
    assert.equal(parseUpstreamTime("2021-03-18T12:05:31"), undefined);
  });
});

describe("Defender PATCH body", () => {
  it("uses PascalCase enums, tags and the singular comment", () => {
    assert.deepEqual(
      toDefenderPatchBody({
        status: "IN_PROGRESS",
        assignedTo: "ana@contoso.com",
        classification: "TRUE_POSITIVE",
        determination: "MULTI_STAGED_ATTACK",
        tags: ["ransomware", "p1"],
        comment: "escalated",
      }),
      {
        status: "InProgress",
        assignedTo: "ana@contoso.com",
        classification: "TruePositive",
        determination: "MultiStagedAttack",
        tags: ["ransomware", "p1"],
        comment: "escalated",
      },
    );
  });

  it("sends only what changes; unassigning sends an empty string", () => {
    assert.deepEqual(toDefenderPatchBody({ assignedTo: null }), { assignedTo: "" });
    assert.deepEqual(toDefenderPatchBody({ status: "RESOLVED", classification: "INFORMATIONAL_EXPECTED_ACTIVITY", determination: "CONFIRMED_USER_ACTIVITY" }), {
      status: "Resolved",
      classification: "InformationalExpectedActivity",
      determination: "ConfirmedActivity",
    });
    assert.deepEqual(toDefenderPatchBody({ determination: "NOT_MALICIOUS" }), { determination: "Clean" });
    assert.deepEqual(toDefenderPatchBody({ determination: "NOT_ENOUGH_DATA_TO_VALIDATE" }), { determination: "NoEnoughDataToValidate" });
    assert.deepEqual(toDefenderPatchBody({ tags: [] }), { tags: [] });
  });

  it("finds patches that must not be sent", () => {
    assert.match(patchProblem({})!, /nothing/);
    assert.match(patchProblem({ comment: "  " })!, /comment/);
    assert.match(patchProblem({ tags: ["ok", ""] })!, /tags/);
    assert.equal(patchProblem({ tags: [] }), undefined);
    assert.equal(patchProblem({ assignedTo: null }), undefined);
  });
});
