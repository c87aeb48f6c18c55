/**
 * The normalised incident: one shape for the Defender API (`/api/incidents`) and Microsoft Graph security
 * incidents, whatever backend a tenant is read from. Enum values are the public (GraphQL) spellings;
 * the mappers translate both ways (reference 1.4–1.8, 2.3–2.6). Unknown upstream values map to UNKNOWN
 * rather than failing a whole tenant.
 */
export type IncidentsBackendName = "defender" | "graph";

export const SEVERITIES = ["UNKNOWN", "INFORMATIONAL", "LOW", "MEDIUM", "HIGH"] as const;
export type Severity = (typeof SEVERITIES)[number];

export const INCIDENT_STATUSES = ["ACTIVE", "IN_PROGRESS", "RESOLVED", "REDIRECTED", "AWAITING_ACTION", "UNKNOWN"] as const;
export type IncidentStatus = (typeof INCIDENT_STATUSES)[number];

export const CLASSIFICATIONS = ["UNKNOWN", "FALSE_POSITIVE", "TRUE_POSITIVE", "INFORMATIONAL_EXPECTED_ACTIVITY"] as const;
export type Classification = (typeof CLASSIFICATIONS)[number];

/** Union of the legacy read/write vocabularies and Graph's (reference 1.8 and 2.3). */
export const DETERMINATIONS = [
  "UNKNOWN",
  "NOT_AVAILABLE",
  "APT",
  "MALWARE",
  "SECURITY_PERSONNEL",
  "SECURITY_TESTING",
  "UNWANTED_SOFTWARE",
  "OTHER",
  "MULTI_STAGED_ATTACK",
  "COMPROMISED_ACCOUNT",
  "PHISHING",
  "MALICIOUS_USER_ACTIVITY",
  "NOT_MALICIOUS",
  "NOT_ENOUGH_DATA_TO_VALIDATE",
  "CONFIRMED_USER_ACTIVITY",
  "LINE_OF_BUSINESS_APPLICATION",
] as const;
export type Determination = (typeof DETERMINATIONS)[number];

export interface IncidentComment {
  comment: string;
  createdBy: string | null;
  createdTime: Date | null;
}

export interface IncidentDevice {
  deviceId: string | null;
  aadDeviceId: string | null;
  dnsName: string | null;
  osPlatform: string | null;
  osBuild: number | null;
  riskScore: string | null;
  healthStatus: string | null;
  firstSeen: Date | null;
}

/** An alert entity or Graph evidence item, flattened; `type` is the legacy `entityType` or Graph `@odata.type` short name. */
export interface IncidentEntity {
  type: string;
  verdict: string | null;
  remediationStatus: string | null;
  /** The identifying value a person reads: UPN, IP, URL, file name, mailbox address… */
  displayValue: string | null;
  /** Every other scalar field, as strings, for detail views. */
  properties: Record<string, string>;
}

export interface IncidentAlert {
  alertId: string;
  title: string | null;
  description: string | null;
  severity: Severity;
  status: string | null;
  category: string | null;
  serviceSource: string | null;
  detectionSource: string | null;
  mitreTechniques: string[];
  createdTime: Date | null;
  lastUpdateTime: Date | null;
  resolvedTime: Date | null;
  firstActivity: Date | null;
  lastActivity: Date | null;
  devices: IncidentDevice[];
  entities: IncidentEntity[];
}

export interface Incident {
  tenantId: string;
  /** Legacy numeric `incidentId` or Graph string `id`, as a string. */
  incidentId: string;
  backend: IncidentsBackendName;
  name: string;
  severity: Severity;
  status: IncidentStatus;
  classification: Classification;
  determination: Determination;
  assignedTo: string | null;
  createdTime: Date;
  lastUpdateTime: Date;
  tags: string[];
  systemTags: string[];
  description: string | null;
  comments: IncidentComment[];
  /**
   * The incident's alerts; `[]` when it has none, `null` when they were NOT LOADED. The Defender API
   * always carries them inline. Graph lists incidents without `$expand=alerts` (the expanded list fails
   * with 500 on large tenants: reference, "Corrections"), so a listed Graph incident has `null` until a
   * query selects its alerts and `IncidentService.loadAlerts` fetches them (one single-incident
   * `$expand=alerts` get each) and caches them with the incident — until a newer `lastUpdateTime`
   * replaces it.
   */
  alerts: IncidentAlert[] | null;
  incidentUri: string | null;
  /** The incident this one was merged into (status REDIRECTED). */
  redirectIncidentId: string | null;
}

/** What `updateIncident` may change; omitted fields keep their values. */
export interface IncidentPatch {
  status?: Exclude<IncidentStatus, "UNKNOWN" | "AWAITING_ACTION">;
  /** Empty string or null unassigns. */
  assignedTo?: string | null;
  classification?: Classification;
  determination?: Determination;
  /** Replaces the tags. */
  tags?: string[];
  /** Appended as a new comment. */
  comment?: string;
}
