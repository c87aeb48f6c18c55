import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { summarizeIncidents } from "../../../src/incidents/summary.js";
import { makeIncident } from "../../helpers/incident-factory.js";

const TENANT = "0b9c3c7e-5b8e-4a43-9e0e-1f2a3b4c5d6e";

describe("summarizeIncidents", () => {
  it("counts by severity and by status, zeros included", () => {
    const incidents = [
      makeIncident({ tenantId: TENANT, incidentId: "1", severity: "HIGH", status: "ACTIVE", lastUpdateTime: new Date("2026-02-01T00:00:00Z") }),
      makeIncident({ tenantId: TENANT, incidentId: "2", severity: "HIGH", status: "RESOLVED" }),
      makeIncident({ tenantId: TENANT, incidentId: "3", severity: "LOW", status: "REDIRECTED", redirectIncidentId: "1" }),
    ];
    const summary = summarizeIncidents(incidents);
    assert.deepEqual(summary, {
      total: 3,
      bySeverity: { UNKNOWN: 0, INFORMATIONAL: 0, LOW: 1, MEDIUM: 0, HIGH: 2 },
      byStatus: { ACTIVE: 1, IN_PROGRESS: 0, RESOLVED: 1, REDIRECTED: 1, AWAITING_ACTION: 0, UNKNOWN: 0 },
      lastUpdateTime: new Date("2026-02-01T00:00:00Z"),
    });
    summary.bySeverity.HIGH = 99;
    assert.equal(summarizeIncidents(incidents).bySeverity.HIGH, 2, "memoised, but callers get copies");
  });

  it("summarises no incidents", () => {
    const summary = summarizeIncidents([]);
    assert.equal(summary.total, 0);
    assert.equal(summary.lastUpdateTime, null);
    assert.ok(Object.values(summary.byStatus).every((n) => n === 0));
  });
});
