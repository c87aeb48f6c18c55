import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NAMED_TENANT_COUNT, grantedRoles, seedTenants } from "../../../src/sandbox/tenants.js";

const requiredRoles = { defender: ["Incident.ReadWrite.All"], graph: ["SecurityIncident.ReadWrite.All"] };
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("seedTenants", () => {
  const now = Date.UTC(2026, 10, 1);
  const tenants = seedTenants({ seed: 42, tenantCount: NAMED_TENANT_COUNT, requiredRoles, now });

  it("seeds about a dozen named customers with unique GUIDs and domains", () => {
    assert.ok(NAMED_TENANT_COUNT >= 12);
    assert.equal(new Set(tenants.map((t) => t.id)).size, tenants.length);
    assert.equal(new Set(tenants.map((t) => t.domain)).size, tenants.length);
    for (const t of tenants) {
      assert.match(t.id, GUID);
      assert.match(t.domain, /^[a-z0-9]+\.onmicrosoft\.com$/);
      assert.ok(t.incidentCount >= 0 && t.incidentCount <= 300);
    }
    assert.ok(tenants.some((t) => t.incidentCount === 0));
    assert.ok(tenants.some((t) => t.incidentCount === 300));
  });

  it("includes one unconsented tenant, one without the incident role and one reachable through Graph only", () => {
    const unconsented = tenants.filter((t) => !t.consent.granted);
    assert.equal(unconsented.length, 1);
    assert.deepEqual(grantedRoles(unconsented[0]!, "defender"), []);

    const noRole = tenants.filter((t) => t.consent.granted && t.resources.defender && !grantedRoles(t, "defender").some((r) => r.startsWith("Incident.")));
    assert.equal(noRole.length, 1);
    assert.deepEqual(grantedRoles(noRole[0]!, "defender"), ["AdvancedHunting.Read.All"]);

    const graphOnly = tenants.filter((t) => !t.resources.defender);
    assert.equal(graphOnly.length, 1);
    assert.deepEqual(grantedRoles(graphOnly[0]!, "graph"), ["SecurityIncident.ReadWrite.All"]);
    assert.deepEqual(grantedRoles(graphOnly[0]!, "defender"), []);
  });

  it("is deterministic for a seed and differs between seeds", () => {
    const again = seedTenants({ seed: 42, tenantCount: NAMED_TENANT_COUNT, requiredRoles, now });
    assert.deepEqual(again.map((t) => t.id), tenants.map((t) => t.id));
    const other = seedTenants({ seed: 7, tenantCount: NAMED_TENANT_COUNT, requiredRoles, now });
    assert.notDeepEqual(other.map((t) => t.id), tenants.map((t) => t.id));
    assert.deepEqual(other.map((t) => t.displayName), tenants.map((t) => t.displayName));
  });

  it("scales to 1,000 tenants with generated customers and an incident override", () => {
    const many = seedTenants({ seed: 1, tenantCount: 1000, incidentsPerTenant: 1000, requiredRoles, now });
    assert.equal(many.length, 1000);
    assert.equal(new Set(many.map((t) => t.id)).size, 1000);
    assert.equal(many[999]!.displayName, "Customer 1000");
    assert.ok(many[999]!.tags.includes("generated"));
    assert.ok(many.every((t) => t.incidentCount === 1000));
  });
});
