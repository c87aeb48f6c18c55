import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Caller } from "../../../src/auth/caller.js";
import type { TokenProvider } from "../../../src/auth/token-provider.js";
import { UpstreamError } from "../../../src/defender/backend-client.js";
import type { IncidentAlert } from "../../../src/defender/incident.js";
import type { AlertsWanted, IncidentService, IncidentTarget } from "../../../src/incidents/incident-service.js";
import { createLoaders, TenantForbiddenError } from "../../../src/loaders/loaders.js";
import type { TenantRecord, TenantStore } from "../../../src/store/tenant-store.js";

const A = "0b9c3c7e-5b8e-4a43-9e0e-1f2a3b4c5d6e";
const B = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
const HIDDEN = "11111111-2222-4333-8444-555555555555";
const AT = new Date("2026-05-01T12:00:00Z");

function record(id: string): TenantRecord {
  return { id, displayName: id, tags: [], backend: "graph" } as unknown as TenantRecord;
}

/** The loader over fakes: a registry of A, B and HIDDEN, a caller who may read A and B, a service that records batches. */
function setup() {
  const batches: { target: IncidentTarget; ids: string[] }[] = [];
  const tenants = {
    async getMany(ids: readonly string[]) {
      return new Map(ids.filter((id) => [A, B, HIDDEN].includes(id)).map((id) => [id, record(id)]));
    },
  } as unknown as TenantStore;
  const incidents = {
    async loadAlerts(target: IncidentTarget, wanted: readonly AlertsWanted[]) {
      batches.push({ target, ids: wanted.map((w) => w.incidentId) });
      return wanted.map((w) =>
        w.incidentId === "bad"
          ? new UpstreamError("THROTTLED", "no slot", { tenantId: target.tenantId, backend: "graph", retryAfterSeconds: 5 })
          : [{ alertId: `${target.tenantId}/${w.incidentId}` } as IncidentAlert],
      );
    },
  } as unknown as IncidentService;
  const caller: Caller = {
    kind: "API_KEY",
    id: "k",
    name: "k",
    grants: [{ role: "READER", scope: { allTenants: false, tenantIds: [A, B], tenantTags: [] } }],
  };
  const loaders = createLoaders({ tokenProvider: {} as TokenProvider, tenants, incidents }, caller);
  const key = (tenantId: string, incidentId: string) => ({ tenantId, backend: "graph" as const, incidentId, lastUpdateTime: AT });
  return { loaders, batches, key };
}

describe("alerts loader", () => {
  it("batches one service call per tenant for a page's incidents, each key settled alone", async () => {
    const { loaders, batches, key } = setup();
    const results = await Promise.allSettled([
      loaders.alerts.load(key(A, "1")),
      loaders.alerts.load(key(B, "7")),
      loaders.alerts.load(key(A, "2")),
      loaders.alerts.load(key(A, "bad")),
      loaders.alerts.load(key(A, "1")), // the same incident twice: one read
    ]);
    assert.deepEqual(
      batches.map((b) => [b.target.tenantId, b.ids]),
      [
        [A, ["1", "2", "bad"]],
        [B, ["7"]],
      ],
    );
    assert.deepEqual((results[0] as PromiseFulfilledResult<IncidentAlert[]>).value, [{ alertId: `${A}/1` }]);
    assert.deepEqual((results[1] as PromiseFulfilledResult<IncidentAlert[]>).value, [{ alertId: `${B}/7` }]);
    assert.equal(results[3]!.status, "rejected");
    assert.equal(((results[3] as PromiseRejectedResult).reason as UpstreamError).code, "THROTTLED");
    assert.equal(results[4]!.status, "fulfilled");
    assert.ok(loaders.tenantsTouched.has(A) && loaders.tenantsTouched.has(B));

    // Within the request, asking again costs nothing.
    await loaders.alerts.load(key(B, "7"));
    assert.equal(batches.length, 2);
  });

  it("refuses a tenant outside the caller's scope without asking the service", async () => {
    const { loaders, batches, key } = setup();
    await assert.rejects(loaders.alerts.load(key(HIDDEN, "1")), TenantForbiddenError);
    assert.equal(batches.length, 0);
  });
});
