import type {
  Classification,
  Determination,
  Incident,
  IncidentAlert,
  IncidentDevice,
  IncidentEntity,
  IncidentPatch,
  IncidentStatus,
} from "./incident.js";
import {
  expectObject,
  integer,
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
 * Legacy Microsoft 365 Defender API (`/api/incidents`, reference 1.4–1.8) ↔ normalised `Incident`.
 * Tolerant of the shapes seen in captures: sparse or null-filled entities, `mdatpDeviceId`, `UnSpecified`,
 * 0–7 fractional digits, trimmed records; see mapping.ts for what fails a page instead.
 */

/** One page of a list answer. */
export type DefenderIncidentPage = IncidentPage;

/** Maps a list answer: `{ value: [...], "@odata.nextLink"? }`. @throws ShapeError */
export function mapDefenderIncidentPage(body: unknown, tenantId: string): DefenderIncidentPage {
  return mapIncidentPage(body, tenantId, mapDefenderIncident);
}

/**
 * Maps one incident (a list item, or a GET/PATCH `$entity` body whose fields sit next to
 * `@odata.context`).
 *
 * An incident needs an id and a time. When `createdTime`/`lastUpdateTime` are missing (trimmed records)
 * they are taken from each other and then from the alerts' times, so a record is still placed on the
 * timeline; with no time anywhere it is a shape error.
 *
 * @throws ShapeError
 */
export function mapDefenderIncident(raw: unknown, tenantId: string, path = "$"): Incident {
  const o = expectObject(raw, path);
  const id = integer(o, "incidentId") ?? text(o, "incidentId");
  if (id === null) throw new ShapeError(`${path}.incidentId`, "missing or not a number");
  const alerts = objects(o, "alerts", path).map((a, i) => mapDefenderAlert(a, `${path}.alerts[${i}]`));
  const present = (dates: (Date | null)[]) => dates.filter((d): d is Date => d !== null).map(Number);
  const created = present(alerts.map((a) => a.createdTime));
  const touched = present(alerts.flatMap((a) => [a.createdTime, a.lastUpdateTime, a.lastActivity, a.resolvedTime]));
  const earliest = created.length > 0 ? new Date(Math.min(...created)) : null;
  const latest = touched.length > 0 ? new Date(Math.max(...touched)) : null;
  const createdTime = time(o, "createdTime") ?? earliest ?? time(o, "lastUpdateTime");
  const lastUpdateTime = time(o, "lastUpdateTime") ?? latest ?? createdTime;
  if (createdTime === null || lastUpdateTime === null) throw new ShapeError(`${path}.createdTime`, "the incident has no readable createdTime, lastUpdateTime or alert time");
  const redirect = integer(o, "redirectIncidentId");
  return {
    tenantId,
    incidentId: String(id),
    backend: "defender",
    name: text(o, "incidentName") ?? "",
    severity: readSeverity(o.severity),
    status: readStatus(o.status),
    classification: readClassification(o.classification),
    determination: readDetermination(o.determination),
    assignedTo: readAssignee(o, "assignedTo"),
    createdTime,
    lastUpdateTime,
    tags: strings(o, "tags", path),
    systemTags: [],
    description: text(o, "description"),
    comments: objects(o, "comments", path).flatMap((c) => readComment(c) ?? []),
    alerts,
    incidentUri: text(o, "incidentUri"),
    redirectIncidentId: redirect === null ? null : String(redirect),
  };
}

function mapDefenderAlert(o: JsonObject, path: string): IncidentAlert {
  const alertId = text(o, "alertId");
  if (alertId === null) throw new ShapeError(`${path}.alertId`, "missing");
  return {
    alertId,
    title: text(o, "title"),
    description: text(o, "description"),
    severity: readSeverity(o.severity),
    status: text(o, "status"),
    category: text(o, "category"),
    serviceSource: text(o, "serviceSource"),
    detectionSource: text(o, "detectionSource"),
    mitreTechniques: strings(o, "mitreTechniques", path),
    createdTime: time(o, "creationTime"),
    // The alert's key really is `lastUpdatedTime` (the incident's is `lastUpdateTime`).
    lastUpdateTime: time(o, "lastUpdatedTime") ?? time(o, "lastUpdateTime"),
    resolvedTime: time(o, "resolvedTime"),
    firstActivity: time(o, "firstActivity"),
    lastActivity: time(o, "lastActivity"),
    devices: objects(o, "devices", path).map(mapDefenderDevice),
    entities: objects(o, "entities", path).map(mapDefenderEntity),
  };
}

function mapDefenderDevice(o: JsonObject): IncidentDevice {
  return {
    // Real answers say `mdatpDeviceId`; the docs' table says `deviceId`.
    deviceId: text(o, "mdatpDeviceId") ?? text(o, "deviceId"),
    aadDeviceId: text(o, "aadDeviceId"),
    dnsName: text(o, "deviceDnsName"),
    osPlatform: text(o, "osPlatform"),
    osBuild: integer(o, "osBuild"),
    riskScore: text(o, "riskScore"),
    healthStatus: text(o, "healthStatus"),
    firstSeen: time(o, "firstSeen"),
  };
}

/** Canonical spellings of `entityType` (the docs say `MailBox`, real answers `Mailbox`). */
const ENTITY_TYPES = ["User", "Ip", "Url", "File", "Process", "Mailbox", "MailMessage", "MailCluster", "Registry", "SecurityGroup"];
const ENTITY_TYPE_BY_KEY = new Map(ENTITY_TYPES.map((t) => [t.toLowerCase(), t]));
const ENTITY_SKIP = new Set(["entityType", "verdict", "remediationStatus"]);

/** The field a person identifies an entity by, per type; first non-empty wins. */
const DISPLAY_FIELDS: Record<string, readonly string[]> = {
  User: ["userPrincipalName", "accountName", "aadUserId", "userSid"],
  Ip: ["ipAddress"],
  Url: ["url"],
  File: ["fileName", "filePath", "sha256", "sha1"],
  Process: ["processCommandLine", "fileName", "processId"],
  Mailbox: ["mailboxAddress", "mailboxDisplayName"],
  MailMessage: ["subject", "internetMessageId", "sender"],
  MailCluster: ["clusterByValue", "clusterBy"],
  Registry: ["registryKey", "registryValue"],
  SecurityGroup: ["securityGroupName", "securityGroupId"],
};

/** Entity types are normalised to the legacy vocabulary; the Graph mapper maps evidence types onto it. */
export function canonicalEntityType(value: string | null): string {
  if (value === null) return "Unknown";
  return ENTITY_TYPE_BY_KEY.get(value.toLowerCase()) ?? value;
}

export function entityDisplayValue(type: string, read: (field: string) => string | null): string | null {
  for (const field of DISPLAY_FIELDS[type] ?? []) {
    const value = read(field);
    if (value !== null) return value;
  }
  return null;
}

function mapDefenderEntity(o: JsonObject): IncidentEntity {
  const type = canonicalEntityType(text(o, "entityType"));
  return {
    type,
    verdict: text(o, "verdict"),
    remediationStatus: text(o, "remediationStatus"),
    displayValue: entityDisplayValue(type, (field) => text(o, field)),
    properties: scalarProperties(o, ENTITY_SKIP),
  };
}

// ---------------------------------------------------------------------------------------------------
// PATCH (reference 1.10): PascalCase enums, `tags` replaces, `comment` (singular) appends.

/** Statuses the legacy update writes (reference 1.10). */
export const DEFENDER_STATUS: Readonly<Record<NonNullable<IncidentPatch["status"]>, string>> = {
  ACTIVE: "Active",
  IN_PROGRESS: "InProgress",
  RESOLVED: "Resolved",
  REDIRECTED: "Redirected",
};

/**
 * Classifications in the legacy spelling. The update writes only TruePositive, InformationalExpectedActivity
 * and FalsePositive (update-rules.ts refuses UNKNOWN before any call); `Unknown` completes the table.
 */
export const DEFENDER_CLASSIFICATION: Readonly<Record<Classification, string>> = {
  UNKNOWN: "Unknown",
  FALSE_POSITIVE: "FalsePositive",
  TRUE_POSITIVE: "TruePositive",
  INFORMATIONAL_EXPECTED_ACTIVITY: "InformationalExpectedActivity",
};

/**
 * The update page's write vocabulary (reference 1.8, corrected April 2024) where it names a value
 * (`CompromisedAccount`, `ConfirmedActivity`, `Clean`, `NoEnoughDataToValidate`); the read vocabulary for
 * the rest. Only the TruePositive determinations are ever sent (update-rules.ts: the update accepts a
 * determination only with classification TruePositive); the other entries complete the table.
 */
export const DEFENDER_DETERMINATION: Readonly<Record<Determination, string>> = {
  UNKNOWN: "NotAvailable",
  NOT_AVAILABLE: "NotAvailable",
  APT: "Apt",
  MALWARE: "Malware",
  SECURITY_PERSONNEL: "SecurityPersonnel",
  SECURITY_TESTING: "SecurityTesting",
  UNWANTED_SOFTWARE: "UnwantedSoftware",
  OTHER: "Other",
  MULTI_STAGED_ATTACK: "MultiStagedAttack",
  COMPROMISED_ACCOUNT: "CompromisedAccount",
  PHISHING: "Phishing",
  MALICIOUS_USER_ACTIVITY: "MaliciousUserActivity",
  NOT_MALICIOUS: "Clean",
  NOT_ENOUGH_DATA_TO_VALIDATE: "NoEnoughDataToValidate",
  CONFIRMED_USER_ACTIVITY: "ConfirmedActivity",
  LINE_OF_BUSINESS_APPLICATION: "LineOfBusinessApplication",
};

/**
 * The legacy PATCH body for a patch: only the fields it changes, names case-sensitive as documented.
 * Unassigning sends `""`, as observed clients do. Call `patchProblem` and `backendUpdateProblem` first.
 */
export function toDefenderPatchBody(patch: IncidentPatch): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (patch.status !== undefined) body.status = DEFENDER_STATUS[patch.status as Exclude<IncidentStatus, "UNKNOWN" | "AWAITING_ACTION">];
  if (patch.assignedTo !== undefined) body.assignedTo = patch.assignedTo === null ? "" : patch.assignedTo;
  if (patch.classification !== undefined) body.classification = DEFENDER_CLASSIFICATION[patch.classification];
  if (patch.determination !== undefined) body.determination = DEFENDER_DETERMINATION[patch.determination];
  if (patch.tags !== undefined) body.tags = [...patch.tags];
  if (patch.comment !== undefined) body.comment = patch.comment;
  return body;
}
