/**
 * The one internal incident model both emulated backends serialise (reference sections 1.4–1.8 and
 * 2.3–2.6). Enum values are kept in the legacy API's PascalCase spelling; Graph's lowerCamel values are
 * derived. Every timestamp is a fixed-width 7-digit UTC string (see timestamps.ts).
 */

export const INCIDENT_STATUSES = ["Active", "InProgress", "Resolved", "Redirected"] as const;
export type IncidentStatus = (typeof INCIDENT_STATUSES)[number];

/** Lowest first, so the index orders severities. `UnSpecified` appears only on redirected incidents. */
export const SEVERITIES = ["UnSpecified", "Informational", "Low", "Medium", "High"] as const;
export type Severity = (typeof SEVERITIES)[number];
export type AlertSeverity = Exclude<Severity, "UnSpecified">;

export const CLASSIFICATIONS = ["Unknown", "FalsePositive", "TruePositive", "InformationalExpectedActivity"] as const;
export type Classification = (typeof CLASSIFICATIONS)[number];

/**
 * Determinations in the spelling the sandbox prints on the legacy API: the list page's read vocabulary
 * plus the api-incident resource page's names for the write-side values (`CompromisedUser`,
 * `ConfirmedUserActivity`, `InsufficientData`; unconfirmed which spelling the live API prints). Graph prints
 * each as its `alertDetermination` member (`graphDetermination`): `NotAvailable` as `unknown`,
 * `CompromisedUser` as `compromisedAccount`, `Clean` as `notMalicious`, and so on.
 */
export const DETERMINATIONS = [
  "NotAvailable",
  "Apt",
  "Malware",
  "SecurityPersonnel",
  "SecurityTesting",
  "UnwantedSoftware",
  "Other",
  "MultiStagedAttack",
  "CompromisedUser",
  "Phishing",
  "MaliciousUserActivity",
  "Clean",
  "InsufficientData",
  "ConfirmedUserActivity",
  "LineOfBusinessApplication",
] as const;
export type Determination = (typeof DETERMINATIONS)[number];

/**
 * Every spelling any Microsoft page uses for a determination (reference 1.8 and 2.3), lower-cased, mapped
 * to the stored value. Which ones the live service accepts is unconfirmed, so the sandbox accepts all.
 */
const DETERMINATION_ALIASES: Record<string, Determination> = {
  unknown: "NotAvailable",
  compromisedaccount: "CompromisedUser",
  confirmedactivity: "ConfirmedUserActivity",
  noenoughdatatovalidate: "InsufficientData",
  notenoughdatatovalidate: "InsufficientData",
  notmalicious: "Clean",
};

export const ALERT_STATUSES = ["New", "InProgress", "Resolved"] as const;
export type AlertStatus = (typeof ALERT_STATUSES)[number];

export interface IncidentComment {
  comment: string;
  createdBy: string;
  createdTime: string;
}

/** A device as an alert references it (legacy `alerts[].devices[]`, Graph `deviceEvidence`). */
export interface DeviceRecord {
  mdatpDeviceId: string;
  aadDeviceId: string | null;
  deviceDnsName: string;
  osPlatform: string;
  version: string;
  osProcessor: string;
  osBuild: number;
  healthStatus: string;
  riskScore: string;
  rbacGroupName: string | null;
  rbacGroupId: number;
  firstSeen: string;
  tags: string[];
  defenderAvStatus: string;
  onboardingStatus: string;
  vmMetadata: { vmId: string; cloudProvider: string; resourceId: string; subscriptionId: string } | null;
  ipAddress: string;
}

export const ENTITY_TYPES = [
  "User",
  "Ip",
  "Url",
  "File",
  "Process",
  "Mailbox",
  "MailMessage",
  "MailCluster",
  "Registry",
  "SecurityGroup",
] as const;
export type EntityType = (typeof ENTITY_TYPES)[number];

/**
 * An entity with only the fields that apply set; serialisers add nulls for the rest in `full` mode.
 * Field names are the legacy API's.
 */
export interface EntityRecord {
  entityType: EntityType;
  evidenceCreationTime: string;
  verdict: "Suspicious" | "Malicious" | "NoThreatsFound" | "Unknown";
  remediationStatus: "None" | "Remediated" | "Prevented" | "Blocked" | "NotFound";
  [field: string]: string | number | null | undefined;
}

export interface AlertRecord {
  alertId: string;
  providerAlertId: string;
  incidentId: number;
  serviceSource: string;
  creationTime: string;
  lastUpdatedTime: string;
  resolvedTime: string | null;
  firstActivity: string;
  lastActivity: string;
  title: string;
  description: string;
  recommendedActions: string;
  category: string;
  status: AlertStatus;
  severity: AlertSeverity;
  investigationId: number | null;
  investigationState: string;
  classification: Classification | null;
  determination: Determination | null;
  detectionSource: string;
  detectorId: string;
  assignedTo: string | null;
  actorName: string | null;
  threatFamilyName: string | null;
  mitreTechniques: string[];
  devices: DeviceRecord[];
  entities: EntityRecord[];
}

/**
 * One incident. Alerts are derived lazily from (`plan`, `alertSeed`) until the incident is first
 * changed, when they are materialised into `alerts`: keeps a 1,000 × 1,000 sandbox small in memory.
 */
export interface IncidentRecord {
  tenantId: string;
  incidentId: number;
  redirectIncidentId: number | null;
  incidentName: string;
  createdTime: string;
  lastUpdateTime: string;
  assignedTo: string | null;
  classification: Classification;
  determination: Determination;
  status: IncidentStatus;
  severity: Severity;
  tags: string[];
  systemTags: string[];
  /** Materialised once the incident changes; until then derived from `seededComments` and `alertSeed`. */
  comments?: IncidentComment[];
  /** How many comments the generated incident has (derived lazily, like its alerts). */
  seededComments: number;
  /** Graph-only fields. */
  description: string | null;
  summary: string | null;
  resolvingComment: string | null;
  lastModifiedBy: string;
  /** Alert template index per alert (empty for redirected incidents). */
  plan: number[];
  /** Alerts spread over several users/endpoints (the "multiple …" incident names). */
  spread: boolean;
  alertSeed: number;
  alerts?: AlertRecord[];
}

/** An incident with its derived parts, what serialisers print. */
export interface IncidentView {
  record: IncidentRecord;
  alerts: readonly AlertRecord[];
  comments: readonly IncidentComment[];
}

/** Finds a member of a PascalCase vocabulary by any letter case. */
function findMember<T extends string>(members: readonly T[], value: string): T | undefined {
  const lower = value.toLowerCase();
  return members.find((m) => m.toLowerCase() === lower);
}

/** Parses an incident status in any letter case (`Active`, `inProgress`, …). */
export function parseStatus(value: string): IncidentStatus | undefined {
  return findMember(INCIDENT_STATUSES, value);
}

/** Accepts `unknown` (Graph) for `UnSpecified` too. */
export function parseSeverity(value: string): Severity | undefined {
  if (value.toLowerCase() === "unknown") return "UnSpecified";
  return findMember(SEVERITIES, value);
}

/** Parses a classification in any letter case. */
export function parseClassification(value: string): Classification | undefined {
  return findMember(CLASSIFICATIONS, value);
}

/** Parses a determination in any spelling of reference 1.8 / 2.3, any letter case, to the stored value. */
export function parseDetermination(value: string): Determination | undefined {
  return findMember(DETERMINATIONS, value) ?? DETERMINATION_ALIASES[value.toLowerCase()];
}

/** Every determination spelling accepted on input, for error messages. */
export function acceptedDeterminationSpellings(): string[] {
  return [
    ...DETERMINATIONS,
    "CompromisedAccount",
    "ConfirmedActivity",
    "NoEnoughDataToValidate",
    "NotEnoughDataToValidate",
    "NotMalicious",
  ];
}

/** `InProgress` → `inProgress`: Graph's spelling of a PascalCase enum member. */
export function lowerCamel(value: string): string {
  return value.length === 0 ? value : value[0]!.toLowerCase() + value.slice(1);
}

/** Graph spelling of a stored enum value. */
export function graphStatus(status: IncidentStatus): string {
  return lowerCamel(status);
}

/** Graph severity; `UnSpecified` becomes `unknown`. */
export function graphSeverity(severity: Severity): string {
  return severity === "UnSpecified" ? "unknown" : lowerCamel(severity);
}

/** Graph classification; a null (alert-level) classification prints as `unknown`. */
export function graphClassification(classification: Classification | null): string {
  return classification === null ? "unknown" : lowerCamel(classification);
}

/** Graph determination; `NotAvailable` and null print as `unknown`. */
export function graphDetermination(determination: Determination | null): GraphDetermination {
  return determination === null ? "unknown" : GRAPH_DETERMINATION_OF[determination];
}

// ---------------------------------------------------------------------------------------------------
// Microsoft Graph's published enum types (reference 2.3, 2.4 and "Corrections"; the members as generated
// into the Graph SDKs). Graph validates a PATCH against them: a value outside its type is a 400, whatever
// other Microsoft pages call it. Members after `unknownFutureValue` are evolvable: Graph sends them only to
// a caller asking `Prefer: include-unknown-enum-members` (Crosswatch always does).

/** `microsoft.graph.security.incidentStatus`. */
export const GRAPH_INCIDENT_STATUSES = ["active", "resolved", "inProgress", "redirected", "unknownFutureValue", "awaitingAction"] as const;
/** `microsoft.graph.security.alertSeverity`. */
export const GRAPH_SEVERITIES = ["unknown", "informational", "low", "medium", "high", "unknownFutureValue"] as const;
/** `microsoft.graph.security.alertClassification`. */
export const GRAPH_CLASSIFICATIONS = ["unknown", "falsePositive", "truePositive", "informationalExpectedActivity", "unknownFutureValue"] as const;
/** `microsoft.graph.security.alertDetermination`: `compromisedAccount`, never the resource page's `compromisedUser`. */
export const GRAPH_DETERMINATIONS = [
  "unknown",
  "apt",
  "malware",
  "securityPersonnel",
  "securityTesting",
  "unwantedSoftware",
  "other",
  "multiStagedAttack",
  "compromisedAccount",
  "phishing",
  "maliciousUserActivity",
  "notMalicious",
  "notEnoughDataToValidate",
  "confirmedActivity",
  "lineOfBusinessApplication",
  "unknownFutureValue",
] as const;
export type GraphDetermination = (typeof GRAPH_DETERMINATIONS)[number];
/** `microsoft.graph.security.alertStatus`. */
export const GRAPH_ALERT_STATUSES = ["unknown", "new", "inProgress", "resolved", "unknownFutureValue"] as const;

/**
 * Each stored (legacy-spelled) determination as Graph's type names it. The four the api-incident page
 * spells differently are where the two vocabularies part: `CompromisedUser` is `compromisedAccount`,
 * `Clean` `notMalicious`, `InsufficientData` `notEnoughDataToValidate`, `ConfirmedUserActivity`
 * `confirmedActivity`.
 */
const GRAPH_DETERMINATION_OF: Record<Determination, GraphDetermination> = {
  NotAvailable: "unknown",
  Apt: "apt",
  Malware: "malware",
  SecurityPersonnel: "securityPersonnel",
  SecurityTesting: "securityTesting",
  UnwantedSoftware: "unwantedSoftware",
  Other: "other",
  MultiStagedAttack: "multiStagedAttack",
  CompromisedUser: "compromisedAccount",
  Phishing: "phishing",
  MaliciousUserActivity: "maliciousUserActivity",
  Clean: "notMalicious",
  InsufficientData: "notEnoughDataToValidate",
  ConfirmedUserActivity: "confirmedActivity",
  LineOfBusinessApplication: "lineOfBusinessApplication",
};

/** A member of a Graph enum type in any letter case, never the `unknownFutureValue` sentinel (Graph: "do not use"). */
function graphMember<T extends string>(members: readonly T[], value: string): T | undefined {
  const lower = value.toLowerCase();
  return members.find((m) => m !== "unknownFutureValue" && m.toLowerCase() === lower);
}

/** A Graph PATCH `determination`: a member of `alertDetermination` only, to the stored value. */
export function parseGraphDetermination(value: string): Determination | undefined {
  const member = graphMember(GRAPH_DETERMINATIONS, value);
  if (member === undefined) return undefined;
  return (Object.keys(GRAPH_DETERMINATION_OF) as Determination[]).find((d) => GRAPH_DETERMINATION_OF[d] === member);
}

/** A Graph PATCH `classification`: a member of `alertClassification` only. */
export function parseGraphClassification(value: string): Classification | undefined {
  const member = graphMember(GRAPH_CLASSIFICATIONS, value);
  return member === undefined ? undefined : parseClassification(member);
}

/** A Graph PATCH `severity`: a member of `alertSeverity` only (`unknown`, never the legacy `UnSpecified`). */
export function parseGraphSeverity(value: string): Severity | undefined {
  const member = graphMember(GRAPH_SEVERITIES, value);
  return member === undefined ? undefined : parseSeverity(member);
}

/**
 * A Graph PATCH `status`: a member of `incidentStatus` the sandbox can hold (`awaitingAction` is set by the
 * service, never by a caller).
 */
export function parseGraphStatus(value: string): IncidentStatus | undefined {
  const member = graphMember(GRAPH_INCIDENT_STATUSES, value);
  return member === undefined ? undefined : parseStatus(member);
}

/** Graph's `serviceSource` enum member for a legacy service source. */
export function graphServiceSource(legacy: string): string {
  return GRAPH_SERVICE_SOURCES[legacy] ?? "unknown";
}

/** Graph's `detectionSource` enum member for a legacy detection source. */
export function graphDetectionSource(legacy: string): string {
  return GRAPH_DETECTION_SOURCES[legacy] ?? "unknown";
}

const GRAPH_SERVICE_SOURCES: Record<string, string> = {
  MicrosoftDefenderATP: "microsoftDefenderForEndpoint",
  MicrosoftDefenderForEndpoint: "microsoftDefenderForEndpoint",
  MicrosoftCloudAppSecurity: "microsoftDefenderForCloudApps",
  OfficeATP: "microsoftDefenderForOffice365",
  MicrosoftDefenderForOffice365: "microsoftDefenderForOffice365",
  AADIdentityProtection: "azureAdIdentityProtection",
  MicrosoftDefenderForIdentity: "microsoftDefenderForIdentity",
  AzureATP: "microsoftDefenderForIdentity",
  MicrosoftDefenderForCloud: "microsoftDefenderForCloud",
  DataLossPrevention: "dataLossPrevention",
  Microsoft365Defender: "microsoft365Defender",
};

const GRAPH_DETECTION_SOURCES: Record<string, string> = {
  WindowsDefenderAtp: "microsoftDefenderForEndpoint",
  WindowsDefenderAv: "antivirus",
  WindowsDefenderSmartScreen: "smartScreen",
  CustomerTI: "customTi",
  OfficeATP: "microsoftDefenderForOffice365",
  AutomatedInvestigation: "automatedInvestigation",
  ThreatExperts: "microsoftThreatExperts",
  CustomDetection: "customDetection",
  AzureATP: "microsoftDefenderForIdentity",
  MCAS: "cloudAppSecurity",
  MTP: "microsoft365Defender",
  AAD: "azureAdIdentityProtection",
  DefenderForDatabases: "microsoftDefenderForDatabases",
  MicrosoftDataLossPrevention: "microsoftDataLossPrevention",
};

/** The portal link both backends carry (`incidentUri` / `incidentWebUrl`). */
export function incidentWebUrl(incidentId: number, tenantId: string): string {
  return `https://security.microsoft.com/incidents/${incidentId}?tid=${tenantId}`;
}

/** The portal link of an alert (Graph `alertWebUrl`). */
export function alertWebUrl(alertId: string, tenantId: string): string {
  return `https://security.microsoft.com/alerts/${alertId}?tid=${tenantId}`;
}
