import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SandboxContext, type SandboxOptions } from "../../../src/sandbox/context.js";
import { HISTORY_DAYS } from "../../../src/sandbox/incident-generator.js";
import { CLASSIFICATIONS, DETERMINATIONS, ENTITY_TYPES, INCIDENT_STATUSES, SEVERITIES } from "../../../src/sandbox/incident-model.js";
import { defenderIncident, graphIncident } from "../../../src/sandbox/incident-serializers.js";
import { IncidentStore } from "../../../src/sandbox/incidents-store.js";
import { trimIso } from "../../../src/sandbox/timestamps.js";

const ANCHOR = Date.UTC(2026, 5, 1, 12, 0, 0);

function storeFor(options: SandboxOptions = {}): { ctx: SandboxContext; store: IncidentStore } {
  const ctx = new SandboxContext(options);
  return { ctx, store: new IncidentStore(ctx, { anchorMs: ANCHOR }) };
}

/** Everything both backends would print for a tenant, as one JSON string. */
function snapshot(store: IncidentStore, tenantId: string): string {
  return JSON.stringify(
    store.forTenant(tenantId).map((r) => [
      defenderIncident(store.view(r), { entitySerialization: "full", listItem: true }),
      graphIncident(store.view(r), { expandAlerts: true }),
    ]),
  );
}

const byName = (ctx: SandboxContext, name: string) => ctx.tenants.find((t) => t.displayName === name)!;

/** Fractional digits a printed timestamp shows. */
const digits = (iso: string) => /\.(\d+)Z$/.exec(iso)?.[1]?.length ?? 0;

/** Vocabulary of reference 1.8: determinations each classification may carry (plus Unknown/NotAvailable). */
const ALLOWED_DETERMINATIONS: Record<string, readonly string[]> = {
  Unknown: ["NotAvailable"],
  TruePositive: ["MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser", "Malware", "Phishing", "UnwantedSoftware", "Other", "Apt"],
  InformationalExpectedActivity: ["SecurityTesting", "LineOfBusinessApplication", "ConfirmedUserActivity", "Other", "SecurityPersonnel"],
  FalsePositive: ["Clean", "InsufficientData", "Other"],
};

describe("incident generation", () => {
  it("is deterministic per seed and differs between seeds", () => {
    const a = storeFor({ seed: 7 });
    const b = storeFor({ seed: 7 });
    const c = storeFor({ seed: 8 });
    for (const name of ["Contoso Ltd", "Trey Research"]) {
      const snapA = snapshot(a.store, byName(a.ctx, name).id);
      assert.equal(snapA, snapshot(b.store, byName(b.ctx, name).id), `${name}: same seed, same data`);
      assert.ok(snapA.length > 1000, "snapA.length > 1000");
    }
    // Another seed gives other tenant ids, other incident ids and other content.
    const contosoA = a.store.forTenant(byName(a.ctx, "Contoso Ltd").id);
    const contosoC = c.store.forTenant(byName(c.ctx, "Contoso Ltd").id);
    assert.equal(contosoA.length, contosoC.length, "the named count does not depend on the seed");
    assert.notDeepEqual(contosoA.map((r) => r.incidentName), contosoC.map((r) => r.incidentName));
    assert.notDeepEqual(contosoA.map((r) => r.createdTime), contosoC.map((r) => r.createdTime));
  });

  it("generates only the tenant asked for, quickly enough at 1,000 tenants x 1,000 incidents", () => {
    const { ctx, store } = storeFor({ tenantCount: 1000, incidentsPerTenant: 1000 });
    assert.equal(ctx.tenants.length, 1000);
    assert.equal(store.materialisedTenantCount, 0, "nothing is generated up front");
    const tenant = ctx.tenants[777]!;
    const incidents = store.forTenant(tenant.id);
    assert.equal(incidents.length, 1000);
    assert.equal(store.materialisedTenantCount, 1);
    assert.ok(store.isMaterialised(tenant.id), "store.isMaterialised(tenant.id)");
    assert.ok(!store.isMaterialised(ctx.tenants[776]!.id), "!store.isMaterialised(ctx.tenants[776]!.id)");
    assert.equal(new Set(incidents.map((r) => r.incidentId)).size, 1000);
    let alerts = 0;
    for (const r of incidents) alerts += store.alertsOf(r).length;
    assert.ok(alerts >= 1000 && alerts <= 5000, `alerts ${alerts}`);
    assert.equal(store.forTenant(tenant.id), incidents, "a second read reuses the generated tenant");
  });

  it("gives every tenant its own increasing id range", () => {
    const { ctx, store } = storeFor();
    const ranges = ctx.tenants
      .map((t) => store.forTenant(t.id))
      .filter((list) => list.length > 0)
      .map((list) => [list[0]!.incidentId, list[list.length - 1]!.incidentId] as const)
      .sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < ranges.length; i++) assert.ok(ranges[i]![0] > ranges[i - 1]![1], "ranges never overlap");
    for (const tenant of ctx.tenants) {
      const list = store.forTenant(tenant.id);
      assert.equal(list.length, tenant.incidentCount, tenant.displayName);
      for (let i = 1; i < list.length; i++) {
        assert.ok(list[i]!.incidentId > list[i - 1]!.incidentId, "list[i]!.incidentId > list[i - 1]!.incidentId");
        assert.ok(list[i]!.createdTime >= list[i - 1]!.createdTime, "ids increase with createdTime");
      }
    }
    assert.equal(store.forTenant(byName(ctx, "Tailspin Toys").id).length, 0);
  });

  it("produces realistic, consistent incidents", () => {
    const { ctx, store } = storeFor();
    const tenant = byName(ctx, "Adventure Works Cycles");
    const incidents = store.forTenant(tenant.id);
    const ids = new Map(incidents.map((r) => [r.incidentId, r]));
    const statuses = new Set<string>();
    const severities = new Set<string>();
    const classifications = new Set<string>();
    const entityTypes = new Set<string>();
    const precisions = new Set<number>();
    const earliest = new Date(ANCHOR - (HISTORY_DAYS + 1) * 86_400_000).toISOString();
    const anchor = new Date(ANCHOR).toISOString();
    let merged = 0;
    for (const r of incidents) {
      statuses.add(r.status);
      severities.add(r.severity);
      classifications.add(r.classification);
      assert.ok(r.createdTime <= r.lastUpdateTime, `${r.incidentId}: created ≤ last update`);
      assert.ok(r.createdTime >= earliest && r.lastUpdateTime <= anchor, `${r.incidentId}: within the last ${HISTORY_DAYS} days`);
      assert.match(r.createdTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$/, "stored fixed-width");
      assert.ok(ALLOWED_DETERMINATIONS[r.classification]!.includes(r.determination), `${r.classification}/${r.determination}`);
      if (r.assignedTo !== null) assert.ok(r.assignedTo.endsWith(`@${tenant.domain}`), r.assignedTo);
      assert.ok(r.incidentName.length > 10, "r.incidentName.length > 10");
      const view = store.view(r);
      const printed = defenderIncident(view, { entitySerialization: "sparse", listItem: true });
      assert.equal(printed.incidentUri, `https://security.microsoft.com/incidents/${r.incidentId}?tid=${tenant.id}`);
      precisions.add(digits(printed.createdTime as string));
      for (const c of view.comments) assert.ok(c.createdTime >= r.createdTime && c.createdTime <= r.lastUpdateTime, "c.createdTime >= r.createdTime && c.createdTime <= r.lastUpdateTime");
      if (r.status === "Redirected") {
        merged++;
        assert.equal(r.severity, "UnSpecified");
        assert.equal(view.alerts.length, 0);
        const target = ids.get(r.redirectIncidentId!);
        assert.ok(target, "redirects to an incident of the same tenant");
        assert.notEqual(target.status, "Redirected");
        assert.ok(target.incidentId > r.incidentId, "target.incidentId > r.incidentId");
        continue;
      }
      assert.notEqual(r.severity, "UnSpecified", "UnSpecified only on redirected incidents");
      assert.equal(r.redirectIncidentId, null);
      assert.ok(view.alerts.length >= 1 && view.alerts.length <= 5, "view.alerts.length >= 1 && view.alerts.length <= 5");
      const worst = Math.max(...view.alerts.map((a) => SEVERITIES.indexOf(a.severity)));
      assert.equal(SEVERITIES[worst], r.severity, "incident severity is its worst alert's");
      for (const alert of view.alerts) {
        assert.equal(alert.incidentId, r.incidentId);
        assert.ok(alert.lastUpdatedTime >= alert.creationTime, "alert.lastUpdatedTime >= alert.creationTime");
        assert.ok(alert.firstActivity <= alert.lastActivity && alert.lastActivity <= alert.creationTime, "alert.firstActivity <= alert.lastActivity && alert.lastActivity <= alert.creationTime");
        if (r.status === "Resolved") assert.equal(alert.status, "Resolved");
        for (const t of [alert.creationTime, alert.firstActivity, alert.lastActivity]) precisions.add(digits(trimIso(t)));
        for (const d of alert.devices) {
          assert.match(d.mdatpDeviceId, /^[0-9a-f]{40}$/);
          assert.ok(Number.isInteger(d.osBuild), "Number.isInteger(d.osBuild)");
          assert.equal(typeof d.version, "string");
        }
        for (const e of alert.entities) {
          entityTypes.add(e.entityType);
          assert.ok(e.evidenceCreationTime && e.verdict && e.remediationStatus, "e.evidenceCreationTime && e.verdict && e.remediationStatus");
        }
      }
    }
    assert.deepEqual([...statuses].sort(), [...INCIDENT_STATUSES].sort());
    assert.deepEqual([...severities].sort(), [...SEVERITIES].sort());
    assert.deepEqual([...classifications].sort(), [...CLASSIFICATIONS].sort());
    assert.ok(merged >= 2 && merged < 30, `merged ${merged}`);
    for (const type of ENTITY_TYPES) assert.ok(entityTypes.has(type), `some alert has a ${type} entity`);
    for (let p = 0; p <= 7; p++) assert.ok(precisions.has(p), `some timestamp prints ${p} fractional digits`);
    assert.ok(DETERMINATIONS.length > 10, "DETERMINATIONS.length > 10");
  });

  it("prints sparse or full entities", () => {
    const { ctx, store } = storeFor();
    const record = store.forTenant(byName(ctx, "Contoso Ltd").id).find((r) => store.alertsOf(r).some((a) => a.entities.some((e) => e.entityType === "Ip")))!;
    const sparse = defenderIncident(store.view(record), { entitySerialization: "sparse", listItem: false });
    const full = defenderIncident(store.view(record), { entitySerialization: "full", listItem: false });
    const ipOf = (incident: Record<string, unknown>) =>
      (incident.alerts as { entities: Record<string, unknown>[] }[]).flatMap((a) => a.entities).find((e) => e.entityType === "Ip")!;
    const sparseIp = ipOf(sparse);
    const fullIp = ipOf(full);
    assert.deepEqual(Object.keys(sparseIp), ["entityType", "evidenceCreationTime", "verdict", "remediationStatus", "ipAddress"]);
    assert.ok(Object.values(sparseIp).every((v) => v !== null), "Object.values(sparseIp).every((v) => v !== null)");
    assert.equal(fullIp.sha1, null);
    assert.equal(fullIp.userPrincipalName, null);
    assert.equal(fullIp.deviceId, null);
    assert.equal(fullIp.ipAddress, sparseIp.ipAddress);
    assert.ok(Object.keys(fullIp).length > 30, "Object.keys(fullIp).length > 30");
  });
});

describe("incident changes", () => {
  it("updates fields, appends comments, bumps times and resolves alerts", () => {
    const { ctx, store } = storeFor();
    const tenant = byName(ctx, "Northwind Traders");
    const record = store.forTenant(tenant.id).find((r) => r.status === "Active" && store.alertsOf(r).length > 0)!;
    const before = record.lastUpdateTime;
    const commentsBefore = store.commentsOf(record).length;
    const alertsBefore = store.alertsOf(record).map((a) => a.alertId);
    const updated = store.update(tenant.id, record.incidentId, { status: "Resolved", tags: ["x", "y"], comment: "done", classification: "TruePositive", determination: "Phishing" }, "API-App:Test")!;
    assert.ok(updated.lastUpdateTime > before, "updated.lastUpdateTime > before");
    assert.ok(updated.lastUpdateTime >= new Date(ctx.now() - 5000).toISOString().replace("Z", "0000Z"), "updated.lastUpdateTime >= new Date(ctx.now() - 5000).toISOString().replace(\"Z\", \"0000Z\")");
    assert.deepEqual(updated.tags, ["x", "y"]);
    const comments = store.commentsOf(updated);
    assert.equal(comments.length, commentsBefore + 1);
    assert.deepEqual({ ...comments.at(-1)!, createdTime: "" }, { comment: "done", createdBy: "API-App:Test", createdTime: "" });
    assert.equal(updated.lastModifiedBy, "API-App:Test");
    const alerts = store.alertsOf(updated);
    assert.deepEqual(alerts.map((a) => a.alertId), alertsBefore, "the same alerts, materialised");
    for (const alert of alerts) {
      assert.equal(alert.status, "Resolved");
      assert.ok(alert.lastUpdatedTime > updated.lastUpdateTime, "alerts are bumped just after the incident");
    }
    assert.equal(store.update(tenant.id, 1, { status: "Active" }, "x"), undefined);
    assert.equal(store.update("00000000-0000-0000-0000-000000000000", record.incidentId, { status: "Active" }, "x"), undefined);
  });

  it("applies background activity across consented tenants, generating them first", () => {
    const { ctx, store } = storeFor();
    const totalBefore = ctx.tenants.reduce((sum, t) => sum + t.incidentCount, 0);
    const started = new Date(ctx.now() - 1000).toISOString();
    const result = store.applyActivity(40);
    assert.equal(result.created + result.updated, 40);
    assert.ok(result.created > 0 && result.updated > 0, JSON.stringify(result));
    let totalAfter = 0;
    let touched = 0;
    for (const tenant of ctx.tenants) {
      const list = store.forTenant(tenant.id);
      totalAfter += list.length;
      const recent = list.filter((r) => r.lastUpdateTime >= started);
      touched += recent.length;
      if (!tenant.consent.granted) assert.equal(recent.length, 0, "never a tenant without consent");
      for (let i = 1; i < list.length; i++) assert.ok(list[i]!.incidentId > list[i - 1]!.incidentId, "list[i]!.incidentId > list[i - 1]!.incidentId");
    }
    assert.equal(totalAfter, totalBefore + result.created);
    assert.ok(touched >= result.created, "touched >= result.created");
  });
});
