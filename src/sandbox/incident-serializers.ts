import {
  alertWebUrl,
  graphClassification,
  graphDetectionSource,
  graphDetermination,
  graphServiceSource,
  graphSeverity,
  graphStatus,
  incidentWebUrl,
  lowerCamel,
  type AlertRecord,
  type DeviceRecord,
  type EntityRecord,
  type IncidentComment,
  type IncidentRecord,
  type IncidentView,
} from "./incident-model.js";
import { trimIso } from "./timestamps.js";

/**
 * Turns the internal incident model into each backend's JSON, key for key in the order the captured
 * responses show (test/fixtures/captured, copied from shared/fixtures/captured), timestamps trimmed to their significant digits.
 */

export type EntitySerialization = "sparse" | "full";

/** Entity fields in print order. `doc` fields are listed (null) in `full` mode; the others only when set. */
const ENTITY_FIELDS: readonly { name: string; doc: boolean; time?: boolean }[] = [
  { name: "entityType", doc: true },
  { name: "evidenceCreationTime", doc: false, time: true },
  { name: "verdict", doc: false },
  { name: "remediationStatus", doc: false },
  { name: "sha1", doc: true },
  { name: "sha256", doc: true },
  { name: "fileName", doc: true },
  { name: "filePath", doc: true },
  { name: "processId", doc: true },
  { name: "processCommandLine", doc: true },
  { name: "processCreationTime", doc: true, time: true },
  { name: "parentProcessId", doc: true },
  { name: "parentProcessCreationTime", doc: true, time: true },
  { name: "ipAddress", doc: true },
  { name: "url", doc: true },
  { name: "accountName", doc: true },
  { name: "domainName", doc: true },
  { name: "userSid", doc: true },
  { name: "aadUserId", doc: true },
  { name: "userPrincipalName", doc: true },
  { name: "mailboxDisplayName", doc: true },
  { name: "mailboxAddress", doc: true },
  { name: "clusterBy", doc: true },
  { name: "clusterByValue", doc: false },
  { name: "emailCount", doc: false },
  { name: "sender", doc: true },
  { name: "recipient", doc: true },
  { name: "subject", doc: true },
  { name: "deliveryAction", doc: true },
  { name: "internetMessageId", doc: false },
  { name: "securityGroupId", doc: true },
  { name: "securityGroupName", doc: true },
  { name: "registryHive", doc: true },
  { name: "registryKey", doc: true },
  { name: "registryValueType", doc: true },
  { name: "registryValue", doc: true },
  { name: "deviceId", doc: true },
];

// ---------------------------------------------------------------------------------------------------
// Legacy Defender API (reference 1.4–1.7)

/**
 * One incident as the legacy API prints it. List items carry an incident-level `entities: []` after
 * `alerts`; single-entity bodies (GET by id, PATCH) do not — both as captured.
 */
export function defenderIncident(
  view: IncidentView,
  options: { entitySerialization: EntitySerialization; listItem: boolean },
): Record<string, unknown> {
  const { record, alerts, comments } = view;
  const body: Record<string, unknown> = {
    incidentId: record.incidentId,
    incidentUri: incidentWebUrl(record.incidentId, record.tenantId),
    redirectIncidentId: record.redirectIncidentId,
    incidentName: record.incidentName,
    createdTime: trimIso(record.createdTime),
    lastUpdateTime: trimIso(record.lastUpdateTime),
    assignedTo: record.assignedTo,
    classification: record.classification,
    determination: record.determination,
    status: record.status,
    severity: record.severity,
    tags: [...record.tags],
    comments: comments.map(defenderComment),
    alerts: alerts.map((a) => defenderAlert(a, options.entitySerialization)),
  };
  if (options.listItem) body.entities = [];
  return body;
}

/** A legacy comment: `{comment, createdBy, createdTime}`. */
export function defenderComment(comment: IncidentComment): Record<string, unknown> {
  return { comment: comment.comment, createdBy: comment.createdBy, createdTime: trimIso(comment.createdTime) };
}

/** A legacy alert in the captured key order (note `lastUpdatedTime`, with a d). */
export function defenderAlert(alert: AlertRecord, mode: EntitySerialization): Record<string, unknown> {
  return {
    alertId: alert.alertId,
    providerAlertId: alert.providerAlertId,
    incidentId: alert.incidentId,
    serviceSource: alert.serviceSource,
    creationTime: trimIso(alert.creationTime),
    lastUpdatedTime: trimIso(alert.lastUpdatedTime),
    resolvedTime: alert.resolvedTime === null ? null : trimIso(alert.resolvedTime),
    firstActivity: trimIso(alert.firstActivity),
    lastActivity: trimIso(alert.lastActivity),
    title: alert.title,
    description: alert.description,
    category: alert.category,
    status: alert.status,
    severity: alert.severity,
    investigationId: alert.investigationId,
    investigationState: alert.investigationState,
    classification: alert.classification,
    determination: alert.determination,
    detectionSource: alert.detectionSource,
    detectorId: alert.detectorId,
    assignedTo: alert.assignedTo,
    actorName: alert.actorName,
    threatFamilyName: alert.threatFamilyName,
    mitreTechniques: [...alert.mitreTechniques],
    devices: alert.devices.map(defenderDevice),
    entities: alert.entities.map((e) => defenderEntity(e, mode)),
  };
}

/** A legacy device in the captured key order (`mdatpDeviceId`, `osBuild` a number, `version` a string). */
export function defenderDevice(device: DeviceRecord): Record<string, unknown> {
  return {
    mdatpDeviceId: device.mdatpDeviceId,
    aadDeviceId: device.aadDeviceId,
    deviceDnsName: device.deviceDnsName,
    osPlatform: device.osPlatform,
    version: device.version,
    osProcessor: device.osProcessor,
    osBuild: device.osBuild,
    healthStatus: device.healthStatus,
    riskScore: device.riskScore,
    rbacGroupName: device.rbacGroupName,
    firstSeen: trimIso(device.firstSeen),
    tags: [...device.tags],
    defenderAvStatus: device.defenderAvStatus,
    onboardingStatus: device.onboardingStatus,
    vmMetadata: device.vmMetadata ? { ...device.vmMetadata } : null,
  };
}

/** `sparse` omits fields without a value (2023+ captures); `full` lists every documented field (docs). */
export function defenderEntity(entity: EntityRecord, mode: EntitySerialization): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of ENTITY_FIELDS) {
    const value = entity[field.name];
    if (value === undefined || value === null) {
      if (mode === "full" && field.doc) out[field.name] = null;
      continue;
    }
    out[field.name] = field.time && typeof value === "string" ? trimIso(value) : value;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Microsoft Graph (reference 2.3–2.4)

/** Graph incident properties in print order; `summary` and `resolvingComment` come after the captured set. */
export const GRAPH_INCIDENT_PROPERTIES = [
  "id",
  "tenantId",
  "status",
  "incidentWebUrl",
  "redirectIncidentId",
  "displayName",
  "createdDateTime",
  "lastUpdateDateTime",
  "assignedTo",
  "classification",
  "determination",
  "severity",
  "customTags",
  "systemTags",
  "description",
  "lastModifiedBy",
  "comments",
  "summary",
  "resolvingComment",
] as const;

/**
 * One incident as Graph prints it, optionally narrowed by `$select` and with `alerts` when expanded.
 */
export function graphIncident(
  view: IncidentView,
  options: { expandAlerts?: boolean; select?: ReadonlySet<string> | undefined } = {},
): Record<string, unknown> {
  const { record, comments } = view;
  const all: Record<(typeof GRAPH_INCIDENT_PROPERTIES)[number], unknown> = {
    id: String(record.incidentId),
    tenantId: record.tenantId,
    status: graphStatus(record.status),
    incidentWebUrl: incidentWebUrl(record.incidentId, record.tenantId),
    redirectIncidentId: record.redirectIncidentId === null ? null : String(record.redirectIncidentId),
    displayName: record.incidentName,
    createdDateTime: trimIso(record.createdTime),
    lastUpdateDateTime: trimIso(record.lastUpdateTime),
    assignedTo: record.assignedTo,
    classification: graphClassification(record.classification),
    determination: graphDetermination(record.determination),
    severity: graphSeverity(record.severity),
    customTags: [...record.tags],
    systemTags: [...record.systemTags],
    description: record.description,
    lastModifiedBy: record.lastModifiedBy,
    comments: comments.map(graphComment),
    summary: record.summary,
    resolvingComment: record.resolvingComment,
  };
  const out: Record<string, unknown> = {};
  for (const key of GRAPH_INCIDENT_PROPERTIES) {
    if (!options.select || options.select.has(key)) out[key] = all[key];
  }
  if (options.expandAlerts) out.alerts = view.alerts.map((a) => graphAlert(a, record));
  return out;
}

/** Graph's `alertComment`. */
export function graphComment(comment: IncidentComment): Record<string, unknown> {
  return { comment: comment.comment, createdByDisplayName: comment.createdBy, createdDateTime: trimIso(comment.createdTime) };
}

/** A Graph `alert` (v2) as `$expand=alerts` prints it, in the documented sample's key order. */
export function graphAlert(alert: AlertRecord, incident: Pick<IncidentRecord, "tenantId" | "incidentId">): Record<string, unknown> {
  return {
    id: alert.alertId,
    providerAlertId: alert.providerAlertId,
    incidentId: String(alert.incidentId),
    status: lowerCamel(alert.status),
    severity: lowerCamel(alert.severity),
    classification: graphClassification(alert.classification),
    determination: graphDetermination(alert.determination),
    serviceSource: graphServiceSource(alert.serviceSource),
    detectionSource: graphDetectionSource(alert.detectionSource),
    detectorId: alert.detectorId,
    tenantId: incident.tenantId,
    title: alert.title,
    description: alert.description,
    recommendedActions: alert.recommendedActions,
    category: alert.category,
    assignedTo: alert.assignedTo,
    alertWebUrl: alertWebUrl(alert.alertId, incident.tenantId),
    incidentWebUrl: incidentWebUrl(incident.incidentId, incident.tenantId),
    actorDisplayName: alert.actorName,
    threatDisplayName: alert.threatFamilyName,
    threatFamilyName: alert.threatFamilyName,
    mitreTechniques: [...alert.mitreTechniques],
    createdDateTime: trimIso(alert.creationTime),
    lastUpdateDateTime: trimIso(alert.lastUpdatedTime),
    resolvedDateTime: alert.resolvedTime === null ? null : trimIso(alert.resolvedTime),
    firstActivityDateTime: trimIso(alert.firstActivity),
    lastActivityDateTime: trimIso(alert.lastActivity),
    comments: [],
    evidence: [
      ...alert.devices.map((d) => graphDeviceEvidence(d, alert.creationTime)),
      ...alert.entities.map(graphEvidence),
    ],
  };
}

function evidenceBase(type: string, createdTime: string, verdict: string, remediationStatus: string, roles: string[] = []): Record<string, unknown> {
  return {
    "@odata.type": `#microsoft.graph.security.${type}`,
    createdDateTime: trimIso(createdTime),
    verdict: lowerCamel(verdict),
    remediationStatus: lowerCamel(remediationStatus),
    remediationStatusDetails: null,
    roles,
    detailedRoles: [],
    tags: [],
  };
}

function graphDeviceEvidence(device: DeviceRecord, createdTime: string): Record<string, unknown> {
  return {
    ...evidenceBase("deviceEvidence", createdTime, "Suspicious", "None", ["compromised"]),
    firstSeenDateTime: trimIso(device.firstSeen),
    mdeDeviceId: device.mdatpDeviceId,
    azureAdDeviceId: device.aadDeviceId,
    deviceDnsName: device.deviceDnsName,
    osPlatform: device.osPlatform,
    osBuild: device.osBuild,
    version: device.version,
    healthStatus: lowerCamel(device.healthStatus),
    riskScore: lowerCamel(device.riskScore),
    rbacGroupId: device.rbacGroupId,
    rbacGroupName: device.rbacGroupName,
    onboardingStatus: lowerCamel(device.onboardingStatus),
    defenderAvStatus: lowerCamel(device.defenderAvStatus),
    ipInterfaces: [device.ipAddress],
    loggedOnUsers: [],
    vmMetadata: device.vmMetadata ? { ...device.vmMetadata, cloudProvider: lowerCamel(device.vmMetadata.cloudProvider) } : null,
  };
}

function str(entity: EntityRecord, field: string): string | null {
  const value = entity[field];
  return value === undefined || value === null ? null : String(value);
}

function num(entity: EntityRecord, field: string): number | null {
  const value = entity[field];
  return typeof value === "number" ? value : null;
}

function userAccount(entity: EntityRecord): Record<string, unknown> {
  return {
    accountName: str(entity, "accountName"),
    domainName: str(entity, "domainName"),
    userSid: str(entity, "userSid"),
    azureAdUserId: str(entity, "aadUserId"),
    userPrincipalName: str(entity, "userPrincipalName"),
    displayName: str(entity, "mailboxDisplayName"),
  };
}

function fileDetails(entity: EntityRecord): Record<string, unknown> {
  return {
    sha1: str(entity, "sha1"),
    sha256: str(entity, "sha256"),
    fileName: str(entity, "fileName"),
    filePath: str(entity, "filePath"),
    fileSize: null,
    filePublisher: null,
    signer: null,
    issuer: null,
  };
}

/** The polymorphic Graph evidence for a legacy entity (`@odata.type` per entity type). */
export function graphEvidence(entity: EntityRecord): Record<string, unknown> {
  const t = entity.evidenceCreationTime;
  const base = (type: string) => evidenceBase(type, t, entity.verdict, entity.remediationStatus);
  switch (entity.entityType) {
    case "User":
      return { ...base("userEvidence"), userAccount: userAccount(entity) };
    case "Ip":
      return { ...base("ipEvidence"), ipAddress: str(entity, "ipAddress"), countryLetterCode: null };
    case "Url":
      return { ...base("urlEvidence"), url: str(entity, "url") };
    case "File":
      return { ...base("fileEvidence"), detectionStatus: "detected", mdeDeviceId: str(entity, "deviceId"), fileDetails: fileDetails(entity) };
    case "Process": {
      const created = str(entity, "processCreationTime");
      const parentCreated = str(entity, "parentProcessCreationTime");
      return {
        ...base("processEvidence"),
        processId: num(entity, "processId"),
        parentProcessId: num(entity, "parentProcessId"),
        processCommandLine: str(entity, "processCommandLine"),
        processCreationDateTime: created === null ? null : trimIso(created),
        parentProcessCreationDateTime: parentCreated === null ? null : trimIso(parentCreated),
        detectionStatus: "detected",
        mdeDeviceId: str(entity, "deviceId"),
        imageFile: fileDetails(entity),
        parentProcessImageFile: null,
        userAccount: userAccount(entity),
      };
    }
    case "Mailbox":
      return { ...base("mailboxEvidence"), primaryAddress: str(entity, "mailboxAddress"), displayName: str(entity, "mailboxDisplayName"), userAccount: userAccount(entity) };
    case "MailMessage":
      return {
        ...base("analyzedMessageEvidence"),
        internetMessageId: str(entity, "internetMessageId"),
        subject: str(entity, "subject"),
        recipientEmailAddress: str(entity, "recipient"),
        p1Sender: { emailAddress: str(entity, "sender"), displayName: null, domainName: str(entity, "sender")?.split("@")[1] ?? null },
        deliveryAction: lowerCamel(str(entity, "deliveryAction") ?? "Unknown"),
      };
    case "MailCluster":
      return { ...base("mailClusterEvidence"), clusterBy: str(entity, "clusterBy"), clusterByValue: str(entity, "clusterByValue"), emailCount: num(entity, "emailCount"), query: null, urn: null };
    case "Registry":
      return {
        ...base("registryValueEvidence"),
        registryHive: str(entity, "registryHive"),
        registryKey: str(entity, "registryKey"),
        registryValueType: str(entity, "registryValueType"),
        registryValue: str(entity, "registryValue"),
        registryValueName: null,
        mdeDeviceId: str(entity, "deviceId"),
      };
    case "SecurityGroup":
      return { ...base("securityGroupEvidence"), securityGroupId: str(entity, "securityGroupId"), displayName: str(entity, "securityGroupName") };
  }
}
