import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  DEFENDER_CLASSIFICATION,
  DEFENDER_DETERMINATION,
  DEFENDER_STATUS,
  mapDefenderIncident,
  mapDefenderIncidentPage,
  toDefenderPatchBody,
} from "../../src/defender/defender-mapper.js";
import {
  GRAPH_CLASSIFICATION,
  GRAPH_DETERMINATION,
  GRAPH_STATUS,
  mapGraphIncident,
  mapGraphIncidentPage,
  toGraphPatchRequests,
} from "../../src/defender/graph-mapper.js";
import { DETERMINATIONS, type IncidentAlert } from "../../src/defender/incident.js";
import { readClassification, readDetermination, readSeverity, readStatus } from "../../src/defender/mapping.js";
import { backendUpdateProblem, DEFENDER_TRUE_POSITIVE_DETERMINATIONS, DEFENDER_WRITABLE_CLASSIFICATIONS } from "../../src/defender/update-rules.js";
import { GRAPH_FILTER_SCHEMA } from "../../src/sandbox/graph-api.js";
import {
  GRAPH_ALERT_STATUSES,
  GRAPH_CLASSIFICATIONS,
  GRAPH_DETERMINATIONS,
  GRAPH_INCIDENT_STATUSES,
  GRAPH_SEVERITIES,
  type IncidentRecord,
} from "../../src/sandbox/incident-model.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { jsonType, loadCaptured } from "../helpers/captured-fixtures.js";
import { startTestSandbox, type RawResponse, type TestSandbox } from "../helpers/sandbox.js";

/**
 * Conformance (issue 13, "Done when" 1): the real captured responses (test/fixtures/captured, sources in the
 * README there) pass through both clients' mappers without loss, and the sandbox's answers have their shape
 * key for key and JSON type for JSON type, enum for enum.
 *
 * The published vocabularies are written out below, once, from the reference (2.3, 2.4 and "Corrections"
 * for Graph — the types as generated into the Graph SDKs; 1.4–1.8 for the Defender API), and imported from
 * neither side: the sandbox imports nothing from the server, so the client's tables and the sandbox's lists
 * are each held against this copy, and either drifting fails here.
 */

// --- Microsoft Graph: microsoft.graph.security.* enum types -------------------------------------------------
const GRAPH = {
  incidentStatus: ["active", "resolved", "inProgress", "redirected", "unknownFutureValue", "awaitingAction"],
  alertSeverity: ["unknown", "informational", "low", "medium", "high", "unknownFutureValue"],
  alertClassification: ["unknown", "falsePositive", "truePositive", "informationalExpectedActivity", "unknownFutureValue"],
  alertDetermination: [
    "unknown", "apt", "malware", "securityPersonnel", "securityTesting", "unwantedSoftware", "other", "multiStagedAttack",
    "compromisedAccount", "phishing", "maliciousUserActivity", "notMalicious", "notEnoughDataToValidate", "confirmedActivity",
    "lineOfBusinessApplication", "unknownFutureValue",
  ],
  alertStatus: ["unknown", "new", "inProgress", "resolved", "unknownFutureValue"],
  serviceSource: [
    "unknown", "microsoftDefenderForEndpoint", "microsoftDefenderForIdentity", "microsoftDefenderForCloudApps",
    "microsoftDefenderForOffice365", "microsoft365Defender", "azureAdIdentityProtection", "microsoftAppGovernance",
    "dataLossPrevention", "unknownFutureValue", "microsoftDefenderForCloud", "microsoftSentinel",
  ],
  detectionSource: [
    "unknown", "microsoftDefenderForEndpoint", "antivirus", "smartScreen", "customTi", "microsoftDefenderForOffice365",
    "automatedInvestigation", "microsoftThreatExperts", "customDetection", "microsoftDefenderForIdentity", "cloudAppSecurity",
    "microsoft365Defender", "azureAdIdentityProtection", "manual", "microsoftDataLossPrevention", "appGovernancePolicy",
    "appGovernanceDetection", "unknownFutureValue", "microsoftDefenderForCloud", "microsoftDefenderForIoT",
    "microsoftDefenderForServers", "microsoftDefenderForStorage", "microsoftDefenderForDNS", "microsoftDefenderForDatabases",
    "microsoftDefenderForContainers", "microsoftDefenderForNetwork", "microsoftDefenderForAppService",
    "microsoftDefenderForKeyVault", "microsoftDefenderForResourceManager", "microsoftDefenderForApiManagement",
    "microsoftSentinel", "nrtAlerts", "scheduledAlerts", "microsoftDefenderThreatIntelligenceAnalytics", "builtInMl",
  ],
  evidenceVerdict: ["unknown", "suspicious", "malicious", "noThreatsFound", "unknownFutureValue"],
  evidenceRemediationStatus: ["none", "remediated", "prevented", "blocked", "notFound", "unknownFutureValue"],
  deviceHealthStatus: ["active", "inactive", "impairedCommunication", "noSensorData", "noSensorDataImpairedCommunication", "unknown", "unknownFutureValue"],
  deviceRiskScore: ["none", "informational", "low", "medium", "high", "unknownFutureValue"],
} as const;

// --- Defender API (/api/incidents): the documented closed vocabularies (reference 1.4, 1.5, 1.8) -------------
const DEFENDER = {
  status: ["Active", "InProgress", "Resolved", "Redirected"],
  severity: ["UnSpecified", "Informational", "Low", "Medium", "High"],
  classification: ["Unknown", "FalsePositive", "TruePositive", "InformationalExpectedActivity"],
  /** Every spelling of 1.8: the list page's read side, the update page's write side, the resource page's names. */
  determination: [
    "NotAvailable", "Apt", "Malware", "SecurityPersonnel", "SecurityTesting", "UnwantedSoftware", "Other", "MultiStagedAttack",
    "MaliciousUserActivity", "CompromisedAccount", "Phishing", "LineOfBusinessApplication", "ConfirmedActivity", "Clean",
    "NoEnoughDataToValidate", "CompromisedUser", "ConfirmedUserActivity", "InsufficientData",
  ],
  alertStatus: ["New", "InProgress", "Resolved"],
  alertSeverity: ["Informational", "Low", "Medium", "High"],
  investigationState: [
    "Unknown", "Terminated", "SuccessfullyRemediated", "Benign", "Failed", "PartiallyRemediated", "Running", "PendingApproval",
    "PendingResource", "PartiallyInvestigated", "TerminatedByUser", "TerminatedBySystem", "Queued", "InnerFailure",
    "PreexistingAlert", "UnsupportedOs", "UnsupportedAlertType", "SuppressedAlert",
  ],
  /** The update page's write side (1.8, corrected April 2024): what a PATCH may carry. */
  writeClassification: ["TruePositive", "InformationalExpectedActivity", "FalsePositive"],
  writeTruePositiveDetermination: ["MultiStagedAttack", "MaliciousUserActivity", "CompromisedAccount", "Malware", "Phishing", "UnwantedSoftware", "Other"],
} as const;

/** Keys the sandbox prints that a capture lacks, because real responses gained them since (reference 1.4, 1.5, 2.3). */
const NEWER_KEYS: Record<string, readonly string[]> = {
  "defender.incident": ["incidentUri"],
  "defender.alert": ["providerAlertId"],
  "graph.incident": ["summary", "resolvingComment"],
};

// --- shape comparison ------------------------------------------------------------------------------------------

interface PathShape {
  /** JSON types seen, null excluded. */
  types: Set<string>;
  /** Union of the keys of the objects seen here. */
  keys: Set<string>;
  /** Each object's own key list, to catch one that lacks a key the others have. */
  keyLists: string[][];
}

/**
 * Every path of a JSON value with what was seen there: `$.value[].alerts[].entities[User]` (entities and
 * evidence are told apart by type, since each type has its own keys).
 */
function shapes(value: unknown, path = "$", into = new Map<string, PathShape>()): Map<string, PathShape> {
  let at = into.get(path);
  if (!at) into.set(path, (at = { types: new Set(), keys: new Set(), keyLists: [] }));
  if (value === null || value === undefined) return into;
  at.types.add(jsonType(value));
  if (Array.isArray(value)) {
    for (const item of value) {
      const kind = typeof item === "object" && item !== null ? ((item as Record<string, unknown>).entityType ?? (item as Record<string, unknown>)["@odata.type"]) : undefined;
      shapes(item, `${path}[${typeof kind === "string" ? kind : ""}]`, into);
    }
  } else if (typeof value === "object") {
    const keys = Object.keys(value);
    at.keyLists.push(keys);
    for (const key of keys) {
      at.keys.add(key);
      shapes((value as Record<string, unknown>)[key], `${path}.${key}`, into);
    }
  }
  return into;
}

/**
 * The sandbox's answer against a capture, path by path: the same keys on every object (less `newer` keys
 * the sandbox may add at a path; with `subset`, for captures trimmed upstream, the capture's keys must only
 * be among the sandbox's), and the same JSON types wherever both print a non-null value. A path the capture
 * fills and the sandbox never does (an empty list where the capture has items) fails: the sample must
 * cover what the capture shows.
 */
function assertSameShape(
  captured: unknown,
  sandbox: unknown,
  options: {
    newer?: (path: string) => readonly string[];
    subset?: (path: string) => boolean;
    only?: (path: string) => boolean;
    /** More sandbox bodies of the same kind (list items for a single incident), for the types only. */
    typeSamples?: readonly unknown[];
  } = {},
): void {
  const want = shapes(captured);
  const got = shapes(sandbox);
  const typed = shapes(sandbox);
  for (const sample of options.typeSamples ?? []) shapes(sample, "$", typed);
  for (const [path, c] of want) {
    if (options.only && !options.only(path)) continue;
    if (c.types.size === 0) continue; // the capture only ever shows null (or nothing) here: no shape to hold to
    const t = typed.get(path);
    assert.ok(t && t.types.size > 0, `${path}: the capture has values here, the sandbox's sample none`);
    assert.deepEqual([...t.types].sort(), [...c.types].sort(), `${path}: JSON types`);
    if (!c.types.has("object")) continue;
    const s = got.get(path);
    assert.ok(s, `${path}: missing in the sandbox's answer`);
    const newer = new Set(options.newer?.(path) ?? []);
    const sandboxKeys = [...s.keys].filter((k) => !newer.has(k)).sort();
    if (options.subset?.(path)) {
      for (const key of c.keys) assert.ok(s.keys.has(key), `${path}: the sandbox never prints ${key}`);
    } else {
      assert.deepEqual(sandboxKeys, [...c.keys].sort(), `${path}: keys`);
      for (const list of s.keyLists) {
        const missing = [...c.keys].filter((k) => !list.includes(k));
        assert.deepEqual(missing, [], `${path}: an object of the sandbox lacks keys`);
      }
    }
  }
}

/**
 * Which NEWER_KEYS list applies at a path of a Defender or Graph body. A list envelope may also carry
 * `@odata.nextLink` (the captures are single pages; reference 2.2).
 */
function newerKeys(backend: "defender" | "graph"): (path: string) => readonly string[] {
  return (path) => {
    if (path === "$") return ["@odata.nextLink", ...(NEWER_KEYS[`${backend}.incident`] ?? [])];
    if (/^\$(\.value\[\])?$/.test(path)) return NEWER_KEYS[`${backend}.incident`] ?? [];
    if (/^\$(\.value\[\])?\.alerts\[\]$/.test(path)) return NEWER_KEYS[`${backend}.alert`] ?? [];
    return [];
  };
}

// --- value checks for "without loss" -----------------------------------------------------------------------------

/** A service timestamp truncated to milliseconds, as the mapper keeps it. */
function millis(raw: string): string {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(raw);
  assert.ok(m, `timestamp ${raw}`);
  return `${m[1]}.${((m[2] ?? "") + "000").slice(0, 3)}Z`;
}

const norm = (value: string) => value.toLowerCase().replace(/[^a-z0-9]/g, "");

/** A public enum value read from a raw one: the same member, letter case and underscores aside. */
function assertEnum(field: string, raw: unknown, mapped: string, aliases: Record<string, string> = {}): void {
  assert.equal(typeof raw, "string", field);
  const key = norm(raw as string);
  assert.equal(norm(mapped), aliases[key] ?? key, `${field}: ${String(raw)} read as ${mapped}`);
}

type Check = (raw: unknown, mapped: any) => void;
const same =
  (field: string): Check =>
  (raw, mapped) =>
    assert.deepEqual(mapped[field], raw, field);
const asTime =
  (field: string): Check =>
  (raw, mapped) =>
    assert.equal(raw === null ? null : (mapped[field] as Date | null)?.toISOString(), raw === null ? null : millis(raw as string), field);
const asEnum =
  (field: string, aliases?: Record<string, string>): Check =>
  (raw, mapped) =>
    assertEnum(field, raw, mapped[field], aliases);
const asText =
  (field: string): Check =>
  (raw, mapped) =>
    assert.equal(mapped[field], raw === null || raw === "" ? null : String(raw), field);

/** Every key of a captured object is either carried (and checked) or named as not carried: a new key fails. */
function assertCarried(label: string, raw: Record<string, unknown>, mapped: unknown, carried: Record<string, Check>, notCarried: readonly string[]): void {
  for (const [key, value] of Object.entries(raw)) {
    if (notCarried.includes(key)) continue;
    const check = carried[key];
    assert.ok(check, `${label}: captured key ${key} is neither mapped nor named as not carried`);
    check(value, mapped);
  }
}

const SEVERITY_ALIASES = { unspecified: "unknown" };
const DETERMINATION_ALIASES = { unknown: "notavailable" };

const DEFENDER_INCIDENT: Record<string, Check> = {
  incidentId: (raw, m) => assert.equal(m.incidentId, String(raw)),
  incidentUri: asText("incidentUri"),
  redirectIncidentId: (raw, m) => assert.equal(m.redirectIncidentId, raw === null ? null : String(raw)),
  incidentName: (raw, m) => assert.equal(m.name, raw),
  createdTime: asTime("createdTime"),
  lastUpdateTime: asTime("lastUpdateTime"),
  assignedTo: (raw, m) => assert.equal(m.assignedTo, raw === null || raw === "Unassigned" ? null : raw),
  classification: asEnum("classification"),
  determination: asEnum("determination", DETERMINATION_ALIASES),
  status: asEnum("status"),
  severity: asEnum("severity", SEVERITY_ALIASES),
  tags: same("tags"),
  comments: (raw, m) => assert.deepEqual(m.comments.map((c: { comment: string }) => c.comment), (raw as { comment: string }[]).map((c) => c.comment)),
  alerts: (raw, m) => {
    assert.equal(m.alerts.length, (raw as unknown[]).length);
    (raw as Record<string, unknown>[]).forEach((alert, i) => assertCarried(`alert ${i}`, alert, m.alerts[i], DEFENDER_ALERT, DEFENDER_ALERT_NOT_CARRIED));
  },
};
/** `entities` at incident level is always `[]` in list items; the rest has no field in the public model. */
const DEFENDER_INCIDENT_NOT_CARRIED = ["@odata.context", "entities"];

const DEFENDER_ALERT: Record<string, Check> = {
  alertId: same("alertId"),
  title: asText("title"),
  description: asText("description"),
  category: asText("category"),
  status: asText("status"),
  severity: asEnum("severity"),
  serviceSource: asText("serviceSource"),
  detectionSource: asText("detectionSource"),
  mitreTechniques: same("mitreTechniques"),
  creationTime: asTime("createdTime"),
  lastUpdatedTime: asTime("lastUpdateTime"),
  resolvedTime: asTime("resolvedTime"),
  firstActivity: asTime("firstActivity"),
  lastActivity: asTime("lastActivity"),
  devices: (raw, m: IncidentAlert) => {
    assert.equal(m.devices.length, (raw as unknown[]).length);
    (raw as Record<string, unknown>[]).forEach((device, i) => assertCarried(`device ${i}`, device, m.devices[i], DEFENDER_DEVICE, DEFENDER_DEVICE_NOT_CARRIED));
  },
  entities: (raw, m: IncidentAlert) => {
    assert.equal(m.entities.length, (raw as unknown[]).length);
    (raw as Record<string, unknown>[]).forEach((entity, i) => {
      const mapped = m.entities[i]!;
      for (const [key, value] of Object.entries(entity)) {
        if (key === "entityType") assert.equal(norm(mapped.type), norm(String(value)));
        else if (key === "verdict" || key === "remediationStatus") assert.equal(mapped[key], value);
        else if (value !== null) assert.equal(mapped.properties[key], String(value), `entity ${i}.${key}`);
      }
    });
  },
};
/** Alert fields the public model does not carry (alert-level verdicts, investigation, actor). */
const DEFENDER_ALERT_NOT_CARRIED = [
  "providerAlertId", "incidentId", "investigationId", "investigationState", "classification", "determination", "detectorId",
  "assignedTo", "actorName", "threatFamilyName",
];

const DEFENDER_DEVICE: Record<string, Check> = {
  mdatpDeviceId: (raw, m) => assert.equal(m.deviceId, raw),
  aadDeviceId: asText("aadDeviceId"),
  deviceDnsName: (raw, m) => assert.equal(m.dnsName, raw),
  osPlatform: asText("osPlatform"),
  osBuild: same("osBuild"),
  healthStatus: asText("healthStatus"),
  riskScore: asText("riskScore"),
  firstSeen: asTime("firstSeen"),
};
const DEFENDER_DEVICE_NOT_CARRIED = ["version", "osProcessor", "rbacGroupName", "rbacGroupId", "tags", "defenderAvStatus", "onboardingStatus", "vmMetadata"];

const GRAPH_INCIDENT: Record<string, Check> = {
  id: (raw, m) => assert.equal(m.incidentId, raw),
  status: asEnum("status"),
  incidentWebUrl: asText("incidentUri"),
  redirectIncidentId: same("redirectIncidentId"),
  displayName: (raw, m) => assert.equal(m.name, raw),
  createdDateTime: asTime("createdTime"),
  lastUpdateDateTime: asTime("lastUpdateTime"),
  assignedTo: same("assignedTo"),
  classification: asEnum("classification"),
  determination: asEnum("determination", DETERMINATION_ALIASES),
  severity: asEnum("severity"),
  customTags: same("tags"),
  systemTags: same("systemTags"),
  description: asText("description"),
  comments: (raw, m) => assert.deepEqual(m.comments.map((c: { comment: string }) => c.comment), (raw as { comment: string }[]).map((c) => c.comment)),
};
/** `tenantId` is the tenant asked for (captures hold placeholders); `lastModifiedBy` has no public field. */
const GRAPH_INCIDENT_NOT_CARRIED = ["@odata.context", "tenantId", "lastModifiedBy"];

// --- the sandbox ---------------------------------------------------------------------------------------------

let t: TestSandbox;
let tenant: SandboxTenant;
const tokens: Record<"defender" | "graph", string> = { defender: "", graph: "" };
const call = (resource: "defender" | "graph", method: string, path: string, json?: unknown): Promise<RawResponse> =>
  t.call(method, path, { token: tokens[resource], ...(json !== undefined ? { json } : {}) });

/** A sandbox incident whose alerts have devices and entities, the kinds the captures show. */
function richIncident(): IncidentRecord {
  const found = t.sandbox.incidents.forTenant(tenant.id).find((r) => {
    const view = t.sandbox.incidents.view(r);
    return r.status === "Active" && view.alerts.some((a) => a.devices.length > 0) && view.alerts.some((a) => a.entities.length > 0);
  });
  assert.ok(found, "the sample has an incident with devices and entities");
  return found;
}

before(async () => {
  t = await startTestSandbox({ incidentsPerTenant: 60 });
  tenant = t.sandbox.tenants.find((x) => x.consent.granted && x.resources.defender && x.resources.graph)!;
  tokens.defender = await t.sandbox.mintAccessToken({ tenantId: tenant.id, resource: "defender" });
  tokens.graph = await t.sandbox.mintAccessToken({ tenantId: tenant.id, resource: "graph" });
});

after(async () => {
  await t.close();
});

describe("captured bodies through the client mappers, without loss", () => {
  it("Defender list, PATCH answer and trimmed record: every captured key carried, or named as not carried", () => {
    const list = loadCaptured("defender-incidents-list.demisto.json");
    const page = mapDefenderIncidentPage(list, "t");
    assert.equal(page.incidents.length, list.value.length);
    list.value.forEach((raw: Record<string, unknown>, i: number) => assertCarried(`list item ${i}`, raw, page.incidents[i], DEFENDER_INCIDENT, DEFENDER_INCIDENT_NOT_CARRIED));

    const patched = loadCaptured("defender-incident-patch.demisto.json");
    assertCarried("PATCH answer", patched, mapDefenderIncident(patched, "t"), DEFENDER_INCIDENT, DEFENDER_INCIDENT_NOT_CARRIED);

    // Trimmed upstream (README): its incident `status: "New"` is no documented incident status and reads
    // UNKNOWN; every other key is carried.
    const trimmed = loadCaptured("defender-incident-entities.demisto.json");
    const mapped = mapDefenderIncident(trimmed, "t");
    assert.equal(mapped.status, "UNKNOWN");
    assertCarried("trimmed record", trimmed, mapped, DEFENDER_INCIDENT, [...DEFENDER_INCIDENT_NOT_CARRIED, "status"]);
  });

  it("Graph list, get and PATCH answers: every captured key carried, or named as not carried", () => {
    const list = loadCaptured("graph-incidents-list.demisto.json");
    const page = mapGraphIncidentPage(list, "t");
    assert.equal(page.incidents.length, list.value.length);
    list.value.forEach((raw: Record<string, unknown>, i: number) => assertCarried(`list item ${i}`, raw, page.incidents[i], GRAPH_INCIDENT, GRAPH_INCIDENT_NOT_CARRIED));
    for (const name of ["graph-incident-get.demisto.json", "graph-incident-patch.demisto.json"]) {
      const body = loadCaptured(name);
      assertCarried(name, body, mapGraphIncident(body, "t"), GRAPH_INCIDENT, GRAPH_INCIDENT_NOT_CARRIED);
    }
  });
});

describe("the sandbox's answers have the captured shape, key for key", () => {
  it("Defender list", async () => {
    const response = await call("defender", "GET", "/api/incidents?$top=60");
    assert.equal(response.status, 200, response.text);
    assertSameShape(loadCaptured("defender-incidents-list.demisto.json"), response.json, { newer: newerKeys("defender") });
    mapDefenderIncidentPage(response.json, tenant.id);
  });

  it("Defender PATCH answer (the stand-in for GET by id too)", async () => {
    const record = richIncident();
    const patched = await call("defender", "PATCH", `/api/incidents/${record.incidentId}`, { tags: ["test1", "test2"], assignedTo: "analyst@contoso.onmicrosoft.com" });
    assert.equal(patched.status, 200, patched.text);
    const list = await call("defender", "GET", "/api/incidents?$top=60");
    assertSameShape(loadCaptured("defender-incident-patch.demisto.json"), patched.json, { newer: newerKeys("defender"), typeSamples: list.json.value });
    const got = await call("defender", "GET", `/api/incidents/${record.incidentId}`);
    assert.deepEqual(Object.keys(got.json), Object.keys(patched.json), "GET by id answers the same $entity shape");
    mapDefenderIncident(patched.json, tenant.id);
  });

  it("Defender entities: the trimmed capture's keys, per entity type, are among the sandbox's", async () => {
    const response = await call("defender", "GET", "/api/incidents?$top=60");
    const captured = loadCaptured("defender-incident-entities.demisto.json");
    assertSameShape({ value: [captured] }, response.json, { only: (p) => p.includes(".entities["), subset: () => true });
  });

  it("Graph list, get and PATCH answers", async () => {
    const list = await call("graph", "GET", "/v1.0/security/incidents?$top=50");
    assert.equal(list.status, 200, list.text);
    assertSameShape(loadCaptured("graph-incidents-list.demisto.json"), list.json, { newer: newerKeys("graph") });
    mapGraphIncidentPage(list.json, tenant.id);

    const record = richIncident();
    const got = await call("graph", "GET", `/v1.0/security/incidents/${record.incidentId}`);
    assert.equal(got.status, 200, got.text);
    assertSameShape(loadCaptured("graph-incident-get.demisto.json"), got.json, { newer: newerKeys("graph"), typeSamples: list.json.value });

    const patched = await call("graph", "PATCH", `/v1.0/security/incidents/${record.incidentId}`, { classification: "truePositive", assignedTo: "Cortex XSOAR MS Graph Dev" });
    assert.equal(patched.status, 200, patched.text);
    assertSameShape(loadCaptured("graph-incident-patch.demisto.json"), patched.json, { newer: newerKeys("graph"), typeSamples: list.json.value });
    mapGraphIncident(patched.json, tenant.id);
  });
});

describe("enum for enum", () => {
  const members = (values: readonly string[]) => new Set(values);
  const assertIn = (set: readonly string[], value: unknown, label: string) =>
    assert.ok(typeof value === "string" && set.includes(value), `${label}: ${JSON.stringify(value)} is not in the published set`);
  /** An incident's own Graph enums (its alerts are checked where the answer carries them). */
  const assertGraphIncidentVocabulary = (i: any, label = "") => {
    assertIn(GRAPH.incidentStatus, i.status, `${label}status`);
    assertIn(GRAPH.alertSeverity, i.severity, `${label}severity`);
    assertIn(GRAPH.alertClassification, i.classification, `${label}classification`);
    assertIn(GRAPH.alertDetermination, i.determination, `${label}determination`);
  };
  /** A Defender incident's enums and its inline alerts'. */
  const assertDefenderVocabulary = (i: any) => {
    assertIn(DEFENDER.status, i.status, "status");
    assertIn(DEFENDER.severity, i.severity, "severity");
    assertIn(DEFENDER.classification, i.classification, "classification");
    assertIn(DEFENDER.determination, i.determination, "determination");
    for (const a of i.alerts) {
      assertIn(DEFENDER.alertStatus, a.status, "alert status");
      assertIn(DEFENDER.alertSeverity, a.severity, "alert severity");
      assertIn(DEFENDER.investigationState, a.investigationState, "investigationState");
      if (a.classification !== null) assertIn(DEFENDER.classification, a.classification, "alert classification");
      if (a.determination !== null) assertIn(DEFENDER.determination, a.determination, "alert determination");
    }
  };

  it("the captures use the published vocabularies (a check of the lists above)", () => {
    for (const name of ["graph-incidents-list.demisto.json", "graph-incident-get.demisto.json", "graph-incident-patch.demisto.json"]) {
      const body = loadCaptured(name);
      for (const i of body.value ?? [body]) {
        assertGraphIncidentVocabulary(i, `${name} `);
      }
    }
    const defender = [...loadCaptured("defender-incidents-list.demisto.json").value, loadCaptured("defender-incident-patch.demisto.json")];
    for (const i of defender) assertDefenderVocabulary(i);
  });

  it("the sandbox's Graph vocabularies are the published types, in its model and its $filter", () => {
    assert.deepEqual(members(GRAPH_INCIDENT_STATUSES), members(GRAPH.incidentStatus));
    assert.deepEqual(members(GRAPH_SEVERITIES), members(GRAPH.alertSeverity));
    assert.deepEqual(members(GRAPH_CLASSIFICATIONS), members(GRAPH.alertClassification));
    assert.deepEqual(members(GRAPH_DETERMINATIONS), members(GRAPH.alertDetermination));
    assert.deepEqual(members(GRAPH_ALERT_STATUSES), members(GRAPH.alertStatus));
    const filter = GRAPH_FILTER_SCHEMA.properties;
    for (const [property, published] of [
      ["status", GRAPH.incidentStatus],
      ["severity", GRAPH.alertSeverity],
      ["classification", GRAPH.alertClassification],
      ["determination", GRAPH.alertDetermination],
    ] as const) {
      const spec = filter[property]!;
      assert.equal(spec.kind, "enum");
      assert.deepEqual(members((spec as { members: readonly string[] }).members), members(published), `$filter ${property}`);
      assert.equal(Object.keys((spec as { aliases?: object }).aliases ?? {}).length, 0, `$filter ${property}: no other spellings`);
    }
  });

  it("every enum value the sandbox emits is published: Graph incidents, alerts and evidence; Defender incidents and alerts", async () => {
    // The four determinations the resource page spells differently, on incidents the first page shows.
    const newest = [...t.sandbox.incidents.forTenant(tenant.id)].reverse().filter((r) => r.redirectIncidentId === null);
    const stored = [["FalsePositive", "Clean"], ["FalsePositive", "InsufficientData"], ["InformationalExpectedActivity", "ConfirmedUserActivity"], ["TruePositive", "CompromisedUser"]] as const;
    stored.forEach(([classification, determination], i) => t.sandbox.incidents.update(tenant.id, newest[i]!.incidentId, { classification, determination }, "Test"));
    const graph = await call("graph", "GET", "/v1.0/security/incidents?$top=50&$expand=alerts");
    assert.equal(graph.status, 200, graph.text);
    const seen = { determinations: new Set<string>(), evidence: 0 };
    for (const i of graph.json.value) {
      assertGraphIncidentVocabulary(i);
      seen.determinations.add(i.determination);
      for (const a of i.alerts) {
        assertIn(GRAPH.alertStatus, a.status, "alert status");
        assertIn(GRAPH.alertSeverity, a.severity, "alert severity");
        assertIn(GRAPH.alertClassification, a.classification, "alert classification");
        assertIn(GRAPH.alertDetermination, a.determination, "alert determination");
        assertIn(GRAPH.serviceSource, a.serviceSource, "serviceSource");
        assertIn(GRAPH.detectionSource, a.detectionSource, "detectionSource");
        for (const e of a.evidence) {
          seen.evidence++;
          assertIn(GRAPH.evidenceVerdict, e.verdict, "verdict");
          assertIn(GRAPH.evidenceRemediationStatus, e.remediationStatus, "remediationStatus");
          if (e["@odata.type"] === "#microsoft.graph.security.deviceEvidence") {
            assertIn(GRAPH.deviceHealthStatus, e.healthStatus, "healthStatus");
            assertIn(GRAPH.deviceRiskScore, e.riskScore, "riskScore");
          }
        }
      }
    }
    assert.ok(seen.evidence > 0, "the sample has evidence");
    // … printed in the type's spelling.
    for (const d of ["compromisedAccount", "notMalicious", "notEnoughDataToValidate", "confirmedActivity"]) {
      assert.ok(seen.determinations.has(d), `the sample prints ${d}`);
    }
    for (const incident of mapGraphIncidentPage(graph.json, tenant.id).incidents) {
      assert.notEqual(incident.status, "UNKNOWN");
      assert.notEqual(incident.determination, "UNKNOWN");
    }

    const defender = await call("defender", "GET", "/api/incidents?$top=60");
    for (const i of defender.json.value) assertDefenderVocabulary(i);
    for (const incident of mapDefenderIncidentPage(defender.json, tenant.id).incidents) {
      assert.notEqual(incident.status, "UNKNOWN");
      assert.notEqual(incident.determination, "UNKNOWN");
    }
  });

  it("the Graph client writes only published members, and reads each member back to the value it writes", () => {
    for (const value of Object.values(GRAPH_STATUS)) assertIn(GRAPH.incidentStatus, value, "client status");
    for (const value of Object.values(GRAPH_CLASSIFICATION)) assertIn(GRAPH.alertClassification, value, "client classification");
    for (const value of Object.values(GRAPH_DETERMINATION)) assertIn(GRAPH.alertDetermination, value, "client determination");
    for (const member of GRAPH.alertDetermination.filter((m) => m !== "unknownFutureValue")) {
      assert.equal(GRAPH_DETERMINATION[readDetermination(member)], member, `determination ${member} round-trips`);
    }
    for (const member of GRAPH.alertClassification.filter((m) => m !== "unknownFutureValue")) {
      assert.equal(GRAPH_CLASSIFICATION[readClassification(member)], member, `classification ${member} round-trips`);
    }
    for (const member of ["active", "resolved", "inProgress", "redirected"] as const) {
      assert.equal(GRAPH_STATUS[readStatus(member) as keyof typeof GRAPH_STATUS], member, `status ${member} round-trips`);
    }
    assert.equal(readStatus("awaitingAction"), "AWAITING_ACTION");
    for (const member of GRAPH.alertSeverity.filter((m) => m !== "unknownFutureValue" && m !== "unknown")) assert.notEqual(readSeverity(member), "UNKNOWN", member);
  });

  it("the Defender client writes only the update page's vocabulary", () => {
    for (const value of Object.values(DEFENDER_STATUS)) assertIn(DEFENDER.status, value, "client status");
    for (const c of DEFENDER_WRITABLE_CLASSIFICATIONS) assertIn(DEFENDER.writeClassification, DEFENDER_CLASSIFICATION[c], "client classification");
    for (const d of DEFENDER_TRUE_POSITIVE_DETERMINATIONS) assertIn(DEFENDER.writeTruePositiveDetermination, DEFENDER_DETERMINATION[d], "client determination");
    // And nothing else gets through the rule.
    for (const d of DETERMINATIONS) {
      const allowed = backendUpdateProblem("defender", { classification: "TRUE_POSITIVE", determination: d }) === undefined;
      assert.equal(allowed, DEFENDER_TRUE_POSITIVE_DETERMINATIONS.includes(d), d);
    }
  });

  it("the sandbox accepts every update each client lets through", async () => {
    const record = richIncident();
    for (const determination of DETERMINATIONS) {
      const patch = { classification: "TRUE_POSITIVE" as const, determination };
      if (backendUpdateProblem("graph", patch) === undefined) {
        const response = await call("graph", "PATCH", `/v1.0/security/incidents/${record.incidentId}`, toGraphPatchRequests(patch).body);
        assert.equal(response.status, 200, `graph ${determination}: ${response.text}`);
        assert.equal(mapGraphIncident(response.json, tenant.id).determination, determination === "UNKNOWN" ? "NOT_AVAILABLE" : determination);
      }
      if (backendUpdateProblem("defender", patch) === undefined) {
        const response = await call("defender", "PATCH", `/api/incidents/${record.incidentId}`, toDefenderPatchBody(patch));
        assert.equal(response.status, 200, `defender ${determination}: ${response.text}`);
        assert.equal(mapDefenderIncident(response.json, tenant.id).determination, determination);
      }
    }
  });
});
