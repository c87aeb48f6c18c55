import { canonicalEntityType, entityDisplayValue } from "./defender-mapper.js";
import type {
  Classification,
  Determination,
  Incident,
  IncidentAlert,
  IncidentComment,
  IncidentDevice,
  IncidentEntity,
  IncidentPatch,
  IncidentStatus,
} from "./incident.js";
import {
  expectObject,
  integer,
  isObject,
  objects,
  readAssignee,
  readClassification,
  readComment,
  readDetermination,
  readSeverity,
  readStatus,
  scalarProperties,
  ShapeError,
  strings,
  text,
  time,
  type JsonObject, mapIncidentPage, type IncidentPage } from "./mapping.js";

/**
 * Microsoft Graph security incidents (`/security/incidents`, reference 2.3–2.6) ↔ normalised `Incident`.
 * lowerCamel enums, `customTags` + `systemTags`, alerts only with `$expand=alerts`, polymorphic
 * `evidence[]` mapped onto the legacy device/entity vocabulary so a tenant reads the same on both backends.
 */

/** One page of a list answer. */
export type GraphIncidentPage = IncidentPage;

/** Maps a list answer: `{ value: [...], "@odata.nextLink"? }`. @throws ShapeError */
export function mapGraphIncidentPage(body: unknown, tenantId: string): GraphIncidentPage {
  return mapIncidentPage(body, tenantId, mapGraphIncident);
}

/**
 * Maps one incident (list item or `$entity` body). `tenantId` is the tenant asked for: the body's own
 * `tenantId` is not trusted (captures hold "" and placeholders there). Without `$expand=alerts` the
 * body has no `alerts` key and the incident's alerts are NOT LOADED (`null`), which is not the same as
 * none (`[]`, an expanded incident without alerts). Times missing fall back to each other; none at all is
 * a shape error.
 *
 * @throws ShapeError
 */
export function mapGraphIncident(raw: unknown, tenantId: string, path = "$"): Incident {
  const o = expectObject(raw, path);
  const id = text(o, "id");
  if (id === null) throw new ShapeError(`${path}.id`, "missing");
  const createdTime = time(o, "createdDateTime") ?? time(o, "lastUpdateDateTime");
  const lastUpdateTime = time(o, "lastUpdateDateTime") ?? createdTime;
  if (createdTime === null || lastUpdateTime === null) throw new ShapeError(`${path}.createdDateTime`, "the incident has no readable createdDateTime or lastUpdateDateTime");
  // The resource definition says `customTags`; one of Microsoft's own samples prints `tags`.
  const tags = o.customTags !== undefined ? strings(o, "customTags", path) : strings(o, "tags", path);
  return {
    tenantId,
    incidentId: id,
    backend: "graph",
    name: text(o, "displayName") ?? "",
    severity: readSeverity(o.severity),
    status: readStatus(o.status),
    classification: readClassification(o.classification),
    determination: readDetermination(o.determination),
    assignedTo: readAssignee(o, "assignedTo"),
    createdTime,
    lastUpdateTime,
    tags,
    systemTags: strings(o, "systemTags", path),
    description: text(o, "description"),
    comments: mapGraphComments(o, path),
    alerts: o.alerts === undefined ? null : objects(o, "alerts", path).map((a, i) => mapGraphAlert(a, `${path}.alerts[${i}]`)),
    incidentUri: text(o, "incidentWebUrl"),
    redirectIncidentId: text(o, "redirectIncidentId"),
  };
}

/** `comments` of an incident, or `value` of the POST …/comments answer. */
export function mapGraphComments(o: JsonObject, path: string, key = "comments"): IncidentComment[] {
  return objects(o, key, path).flatMap((c) => readComment(c) ?? []);
}

function mapGraphAlert(o: JsonObject, path: string): IncidentAlert {
  const alertId = text(o, "id");
  if (alertId === null) throw new ShapeError(`${path}.id`, "missing");
  const devices: IncidentDevice[] = [];
  const entities: IncidentEntity[] = [];
  for (const item of objects(o, "evidence", path)) {
    const type = evidenceType(item);
    if (type === "deviceEvidence") devices.push(mapDeviceEvidence(item));
    else entities.push(mapEvidence(item, type));
  }
  return {
    alertId,
    title: text(o, "title"),
    description: text(o, "description"),
    severity: readSeverity(o.severity),
    status: enumText(o, "status"),
    category: text(o, "category"),
    serviceSource: enumText(o, "serviceSource"),
    detectionSource: enumText(o, "detectionSource"),
    mitreTechniques: strings(o, "mitreTechniques", path),
    createdTime: time(o, "createdDateTime"),
    lastUpdateTime: time(o, "lastUpdateDateTime"),
    resolvedTime: time(o, "resolvedDateTime"),
    firstActivity: time(o, "firstActivityDateTime"),
    lastActivity: time(o, "lastActivityDateTime"),
    devices,
    entities,
  };
}

/**
 * A Graph enum member kept as free text (alert status, sources, verdict, device health): printed the
 * legacy way, first letter upper-cased (`inProgress` → `InProgress`, `suspicious` → `Suspicious`), so the
 * values a tenant shows do not depend on its backend where the two vocabularies agree.
 */
function enumText(o: JsonObject, key: string): string | null {
  const value = text(o, key);
  return value === null ? null : value[0]!.toUpperCase() + value.slice(1);
}

/** `#microsoft.graph.security.userEvidence` → `userEvidence`; no type → `evidence`. */
function evidenceType(o: JsonObject): string {
  const odataType = text(o, "@odata.type");
  if (odataType === null) return "evidence";
  return odataType.slice(odataType.lastIndexOf(".") + 1).replace(/^#/, "");
}

function mapDeviceEvidence(o: JsonObject): IncidentDevice {
  return {
    deviceId: text(o, "mdeDeviceId"),
    aadDeviceId: text(o, "azureAdDeviceId"),
    dnsName: text(o, "deviceDnsName"),
    osPlatform: text(o, "osPlatform"),
    osBuild: integer(o, "osBuild"),
    riskScore: enumText(o, "riskScore"),
    healthStatus: enumText(o, "healthStatus"),
    firstSeen: time(o, "firstSeenDateTime"),
  };
}

/** Graph evidence types onto legacy entity types; others keep their name without `Evidence`. */
const ENTITY_TYPE_OF_EVIDENCE: Record<string, string> = {
  userEvidence: "User",
  ipEvidence: "Ip",
  urlEvidence: "Url",
  fileEvidence: "File",
  processEvidence: "Process",
  mailboxEvidence: "Mailbox",
  analyzedMessageEvidence: "MailMessage",
  mailClusterEvidence: "MailCluster",
  registryValueEvidence: "Registry",
  registryKeyEvidence: "Registry",
  securityGroupEvidence: "SecurityGroup",
};

/** Where each legacy field lives in the evidence item (dotted: inside a nested object). */
const EVIDENCE_FIELDS: Record<string, Record<string, string>> = {
  User: { userPrincipalName: "userAccount.userPrincipalName", accountName: "userAccount.accountName", aadUserId: "userAccount.azureAdUserId", userSid: "userAccount.userSid" },
  File: { fileName: "fileDetails.fileName", filePath: "fileDetails.filePath", sha256: "fileDetails.sha256", sha1: "fileDetails.sha1" },
  Process: { fileName: "imageFile.fileName" },
  Mailbox: { mailboxAddress: "primaryAddress", mailboxDisplayName: "displayName" },
  MailMessage: { sender: "p1Sender.emailAddress" },
  SecurityGroup: { securityGroupName: "displayName" },
};

const EVIDENCE_SKIP = new Set(["verdict", "remediationStatus"]);

function mapEvidence(o: JsonObject, evidence: string): IncidentEntity {
  const type = ENTITY_TYPE_OF_EVIDENCE[evidence] ?? canonicalEntityType(fallbackTypeName(evidence));
  const read = (field: string): string | null => {
    const at = EVIDENCE_FIELDS[type]?.[field] ?? field;
    const dot = at.indexOf(".");
    if (dot < 0) return text(o, at);
    const parent = o[at.slice(0, dot)];
    return isObject(parent) ? text(parent, at.slice(dot + 1)) : null;
  };
  return {
    type,
    verdict: enumText(o, "verdict"),
    remediationStatus: enumText(o, "remediationStatus"),
    displayValue: entityDisplayValue(type, read) ?? text(o, "displayName"),
    properties: scalarProperties(o, EVIDENCE_SKIP),
  };
}

/** `cloudApplicationEvidence` → `CloudApplication`. */
function fallbackTypeName(evidence: string): string {
  const bare = evidence.replace(/Evidence$/, "") || evidence;
  return bare[0]!.toUpperCase() + bare.slice(1);
}

// ---------------------------------------------------------------------------------------------------
// PATCH (reference 2.5): lowerCamel enums, `customTags` replaces; comments are a separate POST.

/** Graph's `incidentStatus` members a patch writes (reference 2.3). */
export const GRAPH_STATUS: Readonly<Record<Exclude<IncidentStatus, "UNKNOWN" | "AWAITING_ACTION">, string>> = {
  ACTIVE: "active",
  IN_PROGRESS: "inProgress",
  RESOLVED: "resolved",
  REDIRECTED: "redirected",
};

/** Graph's `alertClassification` members (reference 2.3 and "Corrections"). */
export const GRAPH_CLASSIFICATION: Readonly<Record<Classification, string>> = {
  UNKNOWN: "unknown",
  FALSE_POSITIVE: "falsePositive",
  TRUE_POSITIVE: "truePositive",
  INFORMATIONAL_EXPECTED_ACTIVITY: "informationalExpectedActivity",
};

/**
 * Graph's `microsoft.graph.security.alertDetermination` members, as generated into the Graph SDKs
 * (reference 2.3, corrected 2026-11-29): Graph validates a PATCH against this type, so the resource page's
 * prose names (`compromisedUser`, `clean`, `insufficientData`, `confirmedUserActivity`) are refused with
 * 400 and never sent. "Nothing determined" is `unknown`; UNKNOWN itself is refused before any call
 * (update-rules.ts), its entry here only completes the table.
 */
export const GRAPH_DETERMINATION: Readonly<Record<Determination, string>> = {
  UNKNOWN: "unknown",
  NOT_AVAILABLE: "unknown",
  APT: "apt",
  MALWARE: "malware",
  SECURITY_PERSONNEL: "securityPersonnel",
  SECURITY_TESTING: "securityTesting",
  UNWANTED_SOFTWARE: "unwantedSoftware",
  OTHER: "other",
  MULTI_STAGED_ATTACK: "multiStagedAttack",
  COMPROMISED_ACCOUNT: "compromisedAccount",
  PHISHING: "phishing",
  MALICIOUS_USER_ACTIVITY: "maliciousUserActivity",
  NOT_MALICIOUS: "notMalicious",
  NOT_ENOUGH_DATA_TO_VALIDATE: "notEnoughDataToValidate",
  CONFIRMED_USER_ACTIVITY: "confirmedActivity",
  LINE_OF_BUSINESS_APPLICATION: "lineOfBusinessApplication",
};

/** What a patch becomes on Graph: a PATCH body (when any field changes) and a comment to POST. */
export interface GraphPatchRequests {
  /** Undefined when only a comment is added. */
  body: Record<string, unknown> | undefined;
  /** Body of `POST /security/incidents/{id}/comments`, when the patch adds a comment. */
  comment: Record<string, unknown> | undefined;
}

/** Splits a patch into Graph's PATCH body and comment POST. Call `patchProblem` and `backendUpdateProblem` first. */
export function toGraphPatchRequests(patch: IncidentPatch): GraphPatchRequests {
  const body: Record<string, unknown> = {};
  if (patch.status !== undefined) body.status = GRAPH_STATUS[patch.status as Exclude<IncidentStatus, "UNKNOWN" | "AWAITING_ACTION">];
  if (patch.assignedTo !== undefined) body.assignedTo = patch.assignedTo === "" ? null : patch.assignedTo;
  if (patch.classification !== undefined) body.classification = GRAPH_CLASSIFICATION[patch.classification];
  if (patch.determination !== undefined) body.determination = GRAPH_DETERMINATION[patch.determination];
  if (patch.tags !== undefined) body.customTags = [...patch.tags];
  return {
    body: Object.keys(body).length > 0 ? body : undefined,
    comment: patch.comment !== undefined ? { "@odata.type": "microsoft.graph.security.alertComment", comment: patch.comment } : undefined,
  };
}
