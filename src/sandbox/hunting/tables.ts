import { createHash } from "node:crypto";
import type { AlertRecord, DeviceRecord, EntityRecord } from "../incident-model.js";
import type { IncidentStore } from "../incidents-store.js";
import { KqlDateTime, type Column, type ColumnType, type Row, type Table } from "./kql.js";

/**
 * The advanced-hunting tables the sandbox serves, derived from each tenant's incidents: one AlertInfo row
 * per alert, AlertEvidence rows per alert entity and device, one DeviceInfo row per device seen in an
 * alert, one EmailEvents row per mail message entity. Column names and types are a subset of Microsoft's
 * advanced hunting schema (AlertInfo, AlertEvidence, DeviceInfo, EmailEvents reference pages); values are
 * deterministic (the same seed gives the same rows).
 */

const col = (name: string, type: ColumnType): Column => ({ name, type });

export const HUNTING_SCHEMAS: Record<string, Column[]> = {
  AlertInfo: [
    col("Timestamp", "DateTime"),
    col("AlertId", "String"),
    col("Title", "String"),
    col("Category", "String"),
    col("Severity", "String"),
    col("ServiceSource", "String"),
    col("DetectionSource", "String"),
    col("AttackTechniques", "String"),
  ],
  AlertEvidence: [
    col("Timestamp", "DateTime"),
    col("AlertId", "String"),
    col("Title", "String"),
    col("Categories", "String"),
    col("AttackTechniques", "String"),
    col("ServiceSource", "String"),
    col("DetectionSource", "String"),
    col("EntityType", "String"),
    col("EvidenceRole", "String"),
    col("EvidenceDirection", "String"),
    col("SHA1", "String"),
    col("SHA256", "String"),
    col("FileName", "String"),
    col("FolderPath", "String"),
    col("ProcessCommandLine", "String"),
    col("RemoteIP", "String"),
    col("RemoteUrl", "String"),
    col("AccountName", "String"),
    col("AccountDomain", "String"),
    col("AccountSid", "String"),
    col("AccountObjectId", "String"),
    col("AccountUpn", "String"),
    col("DeviceId", "String"),
    col("DeviceName", "String"),
    col("LocalIP", "String"),
    col("NetworkMessageId", "String"),
    col("EmailSubject", "String"),
    col("RegistryKey", "String"),
    col("RegistryValueName", "String"),
    col("RegistryValueData", "String"),
    col("AdditionalFields", "String"),
    col("Severity", "String"),
  ],
  DeviceInfo: [
    col("Timestamp", "DateTime"),
    col("DeviceId", "String"),
    col("DeviceName", "String"),
    col("ClientVersion", "String"),
    col("PublicIP", "String"),
    col("OSArchitecture", "String"),
    col("OSPlatform", "String"),
    col("OSBuild", "Int64"),
    col("OSVersion", "String"),
    col("IsAzureADJoined", "Boolean"),
    col("AadDeviceId", "String"),
    col("MachineGroup", "String"),
    col("OnboardingStatus", "String"),
    col("SensorHealthState", "String"),
    col("DeviceCategory", "String"),
    col("DeviceType", "String"),
    col("MergedToDeviceId", "String"),
    col("ReportId", "Int64"),
  ],
  EmailEvents: [
    col("Timestamp", "DateTime"),
    col("NetworkMessageId", "String"),
    col("InternetMessageId", "String"),
    col("SenderMailFromAddress", "String"),
    col("SenderFromAddress", "String"),
    col("SenderFromDomain", "String"),
    col("SenderIPv4", "String"),
    col("RecipientEmailAddress", "String"),
    col("RecipientObjectId", "String"),
    col("Subject", "String"),
    col("EmailClusterId", "Int64"),
    col("EmailDirection", "String"),
    col("DeliveryAction", "String"),
    col("DeliveryLocation", "String"),
    col("ThreatTypes", "String"),
    col("DetectionMethods", "String"),
    col("AttachmentCount", "Int32"),
    col("UrlCount", "Int32"),
    col("ReportId", "String"),
  ],
};

/** The hunting name of a legacy entity type (AlertEvidence.EntityType). */
const EVIDENCE_TYPE: Record<string, string> = {
  User: "User",
  Ip: "Ip",
  Url: "Url",
  File: "File",
  Process: "Process",
  Mailbox: "Mailbox",
  MailMessage: "MailMessage",
  MailCluster: "MailCluster",
  Registry: "RegistryValue",
  SecurityGroup: "SecurityGroup",
};

/** A stable hex digest, for ids derived from other ids (same input, same id, in every run). */
function digest(...parts: string[]): string {
  return createHash("sha256").update(parts.join("|")).digest("hex");
}

function guidFrom(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

function time(text: string): KqlDateTime {
  return new KqlDateTime(Date.parse(text), text);
}

function str(value: string | number | null | undefined): string {
  return value === null || value === undefined ? "" : String(value);
}

function emptyRow(columns: readonly Column[]): Row {
  const row: Row = {};
  for (const c of columns) row[c.name] = c.type === "String" ? "" : null;
  return row;
}

function deviceEvidence(alert: AlertRecord, device: DeviceRecord, base: Row): Row {
  return {
    ...base,
    EntityType: "Machine",
    EvidenceRole: "Impacted",
    DeviceId: device.mdatpDeviceId,
    DeviceName: device.deviceDnsName,
    LocalIP: device.ipAddress,
    AdditionalFields: JSON.stringify({ OSFamily: device.osPlatform.startsWith("Windows") ? "Windows" : device.osPlatform, HealthStatus: device.healthStatus, RiskScore: device.riskScore, AlertSeverity: alert.severity }),
  };
}

function entityEvidence(entity: EntityRecord, base: Row, alert: AlertRecord, tenantId: string): Row {
  const row: Row = { ...base, EntityType: EVIDENCE_TYPE[entity.entityType] ?? entity.entityType, EvidenceRole: entity.verdict === "Malicious" || entity.entityType === "Process" || entity.entityType === "File" ? "Impacted" : "Related" };
  const device = alert.devices[0];
  switch (entity.entityType) {
    case "User":
      Object.assign(row, { AccountName: str(entity.accountName), AccountDomain: str(entity.domainName), AccountSid: str(entity.userSid), AccountObjectId: str(entity.aadUserId), AccountUpn: str(entity.userPrincipalName) });
      break;
    case "Ip":
      Object.assign(row, { RemoteIP: str(entity.ipAddress), EvidenceDirection: "Source" });
      break;
    case "Url":
      row.RemoteUrl = str(entity.url);
      break;
    case "File":
    case "Process": {
      const path = str(entity.filePath);
      Object.assign(row, {
        SHA1: str(entity.sha1),
        SHA256: str(entity.sha256),
        FileName: str(entity.fileName),
        FolderPath: path === "" ? "" : `${path}\\${str(entity.fileName)}`,
        ProcessCommandLine: str(entity.processCommandLine),
        AccountName: str(entity.accountName),
        AccountDomain: str(entity.domainName),
        AccountSid: str(entity.userSid),
        DeviceId: str(entity.deviceId),
        DeviceName: device ? device.deviceDnsName : "",
      });
      break;
    }
    case "Mailbox":
      Object.assign(row, { AccountUpn: str(entity.userPrincipalName), AccountObjectId: str(entity.aadUserId), AccountName: str(entity.mailboxDisplayName) });
      break;
    case "MailMessage":
      Object.assign(row, { NetworkMessageId: messageId(tenantId, entity), EmailSubject: str(entity.subject), AccountUpn: str(entity.recipient) });
      break;
    case "Registry":
      Object.assign(row, { RegistryKey: `${str(entity.registryHive)}\\${str(entity.registryKey)}`, RegistryValueName: str(entity.registryValueName), RegistryValueData: str(entity.registryValue) });
      break;
    default:
      break;
  }
  return row;
}

/** The NetworkMessageId of a mail message entity: a GUID derived from its internet message id. */
function messageId(tenantId: string, entity: EntityRecord): string {
  return guidFrom(digest(tenantId, str(entity.internetMessageId)));
}

function emailEvent(tenantId: string, entity: EntityRecord, alert: AlertRecord): Row {
  const sender = str(entity.sender);
  const delivery = str(entity.deliveryAction);
  const h = digest(tenantId, "mail", str(entity.internetMessageId));
  return {
    Timestamp: time(str(entity.evidenceCreationTime) || alert.creationTime),
    NetworkMessageId: messageId(tenantId, entity),
    InternetMessageId: str(entity.internetMessageId),
    SenderMailFromAddress: sender,
    SenderFromAddress: sender,
    SenderFromDomain: sender.split("@")[1] ?? "",
    SenderIPv4: `198.51.100.${(parseInt(h.slice(0, 2), 16) % 253) + 1}`,
    RecipientEmailAddress: str(entity.recipient),
    RecipientObjectId: guidFrom(digest(tenantId, "recipient", str(entity.recipient))),
    Subject: str(entity.subject),
    EmailClusterId: parseInt(h.slice(2, 12), 16),
    EmailDirection: "Inbound",
    DeliveryAction: delivery,
    DeliveryLocation: delivery === "Delivered" ? "Inbox/folder" : delivery === "Junked" ? "Junk folder" : delivery === "Blocked" ? "Dropped" : "Quarantine",
    ThreatTypes: alert.category === "InitialAccess" || /phish/i.test(alert.title) ? "Phish" : alert.category === "Malware" || alert.threatFamilyName ? "Malware" : "",
    DetectionMethods: JSON.stringify({ Phish: ["URL detonation reputation"] }),
    AttachmentCount: parseInt(h.slice(12, 13), 16) % 3,
    UrlCount: parseInt(h.slice(13, 14), 16) % 5,
    ReportId: `${messageId(tenantId, entity)}-${parseInt(h.slice(14, 20), 16)}`,
  };
}

function deviceInfo(tenantId: string, device: DeviceRecord, seen: string): Row {
  const h = digest(tenantId, "device", device.mdatpDeviceId);
  const server = device.deviceDnsName.startsWith("srv-");
  return {
    Timestamp: time(seen),
    DeviceId: device.mdatpDeviceId,
    DeviceName: device.deviceDnsName,
    ClientVersion: `10.8${parseInt(h.slice(0, 2), 16) % 10}${parseInt(h.slice(2, 3), 16) % 10}.${device.osBuild}.1000`,
    PublicIP: `203.0.113.${(parseInt(h.slice(3, 5), 16) % 253) + 1}`,
    OSArchitecture: device.osProcessor === "x64" ? "64-bit" : "32-bit",
    OSPlatform: device.osPlatform,
    OSBuild: device.osBuild,
    OSVersion: device.version,
    IsAzureADJoined: device.aadDeviceId !== null,
    AadDeviceId: device.aadDeviceId ?? "",
    MachineGroup: device.rbacGroupName ?? "UnassignedGroup",
    OnboardingStatus: device.onboardingStatus,
    SensorHealthState: device.healthStatus,
    DeviceCategory: "Endpoint",
    DeviceType: server ? "Server" : "Workstation",
    MergedToDeviceId: "",
    ReportId: parseInt(h.slice(5, 13), 16),
  };
}

/** Builds every table of one tenant from its incidents (and their derived alerts). */
export function buildTenantTables(store: IncidentStore, tenantId: string): Map<string, Table> {
  const alertInfo: Row[] = [];
  const evidence: Row[] = [];
  const email: Row[] = [];
  const devices = new Map<string, { device: DeviceRecord; seen: string }>();
  const evidenceColumns = HUNTING_SCHEMAS.AlertEvidence!;
  for (const incident of store.forTenant(tenantId)) {
    for (const alert of store.alertsOf(incident)) {
      const techniques = JSON.stringify(alert.mitreTechniques);
      alertInfo.push({
        Timestamp: time(alert.creationTime),
        AlertId: alert.alertId,
        Title: alert.title,
        Category: alert.category,
        Severity: alert.severity,
        ServiceSource: alert.serviceSource,
        DetectionSource: alert.detectionSource,
        AttackTechniques: techniques,
      });
      const base: Row = {
        ...emptyRow(evidenceColumns),
        Timestamp: time(alert.creationTime),
        AlertId: alert.alertId,
        Title: alert.title,
        Categories: JSON.stringify([alert.category]),
        AttackTechniques: techniques,
        ServiceSource: alert.serviceSource,
        DetectionSource: alert.detectionSource,
        Severity: alert.severity,
      };
      for (const device of alert.devices) {
        evidence.push(deviceEvidence(alert, device, base));
        const known = devices.get(device.mdatpDeviceId);
        if (!known || known.seen < alert.lastUpdatedTime) devices.set(device.mdatpDeviceId, { device, seen: alert.lastUpdatedTime });
      }
      for (const entity of alert.entities) {
        evidence.push(entityEvidence(entity, base, alert, tenantId));
        if (entity.entityType === "MailMessage") email.push(emailEvent(tenantId, entity, alert));
      }
    }
  }
  const deviceRows = [...devices.values()].map(({ device, seen }) => deviceInfo(tenantId, device, seen));
  const byTime = (a: Row, b: Row) => (a.Timestamp as KqlDateTime).ms - (b.Timestamp as KqlDateTime).ms;
  return new Map<string, Table>([
    ["AlertInfo", { schema: HUNTING_SCHEMAS.AlertInfo!, rows: alertInfo.sort(byTime) }],
    ["AlertEvidence", { schema: evidenceColumns, rows: evidence.sort(byTime) }],
    ["DeviceInfo", { schema: HUNTING_SCHEMAS.DeviceInfo!, rows: deviceRows.sort(byTime) }],
    ["EmailEvents", { schema: HUNTING_SCHEMAS.EmailEvents!, rows: email.sort(byTime) }],
  ]);
}

/**
 * Per-tenant tables, built on a tenant's first hunt and kept until its incident count changes (a new
 * incident adds alerts; edits to existing incidents change nothing the tables show). One tenant's tables
 * hold some thousands of rows (1,000 incidents), so only the `capacity` most recently hunted tenants are
 * kept: a hunt over 1,000 tenants rebuilds, it does not hold them all.
 */
export class HuntingTables {
  private readonly cache = new Map<string, { incidentCount: number; tables: Map<string, Table> }>();

  constructor(
    private readonly store: IncidentStore,
    private readonly capacity = 64,
  ) {}

  /** The tenant's table of that name (names are case-sensitive, as in KQL), or undefined. */
  table(tenantId: string, name: string): Table | undefined {
    const count = this.store.forTenant(tenantId).length;
    let entry = this.cache.get(tenantId);
    if (!entry || entry.incidentCount !== count) {
      entry = { incidentCount: count, tables: buildTenantTables(this.store, tenantId) };
    }
    // Most recently used last; the oldest goes past capacity.
    this.cache.delete(tenantId);
    this.cache.set(tenantId, entry);
    if (this.cache.size > this.capacity) this.cache.delete(this.cache.keys().next().value!);
    return entry.tables.get(name);
  }
}

