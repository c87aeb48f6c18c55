import { INCIDENT_STATUSES, SEVERITIES, type Incident, type IncidentStatus, type Severity } from "../defender/incident.js";

/** Counts of one tenant's incidents (`Tenant.incidentSummary`). Every severity and status has a count, 0 included. */
export interface IncidentSummary {
  total: number;
  bySeverity: Record<Severity, number>;
  byStatus: Record<IncidentStatus, number>;
  /** The newest `lastUpdateTime`; null without incidents. */
  lastUpdateTime: Date | null;
}

/** Summaries per incidents array: the service replaces the array whenever a tenant's incidents change. */
const summaries = new WeakMap<readonly Incident[], IncidentSummary>();

/**
 * Counts a tenant's incidents by severity and by status. Redirected (merged) incidents count under
 * REDIRECTED like any other status. Memoised per array; callers get their own copy.
 */
export function summarizeIncidents(incidents: readonly Incident[]): IncidentSummary {
  let summary = summaries.get(incidents);
  if (!summary) {
    const bySeverity = Object.fromEntries(SEVERITIES.map((s) => [s, 0])) as Record<Severity, number>;
    const byStatus = Object.fromEntries(INCIDENT_STATUSES.map((s) => [s, 0])) as Record<IncidentStatus, number>;
    let latest = Number.NEGATIVE_INFINITY;
    for (const incident of incidents) {
      bySeverity[incident.severity in bySeverity ? incident.severity : "UNKNOWN"]++;
      byStatus[incident.status in byStatus ? incident.status : "UNKNOWN"]++;
      const updated = incident.lastUpdateTime.getTime();
      if (updated > latest) latest = updated;
    }
    summary = { total: incidents.length, bySeverity, byStatus, lastUpdateTime: Number.isFinite(latest) ? new Date(latest) : null };
    summaries.set(incidents, summary);
  }
  return {
    total: summary.total,
    bySeverity: { ...summary.bySeverity },
    byStatus: { ...summary.byStatus },
    lastUpdateTime: summary.lastUpdateTime ? new Date(summary.lastUpdateTime) : null,
  };
}
