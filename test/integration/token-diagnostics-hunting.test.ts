import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { postGraphQL } from "../helpers/graphql.js";

const INCIDENT_ROLES = { defender: ["Incident.ReadWrite.All"], graph: ["SecurityIncident.ReadWrite.All"] };
const HUNT = { defender: ["AdvancedHunting.Read.All"], graph: ["ThreatHunting.Read.All"] };

const HUNTING = `query($ids: [ID!]!, $backend: IncidentsBackend) {
  tokenDiagnostics(tenantIds: $ids, backend: $backend) {
    tenantId backend canRead claimsReadable canHunt huntingAccess huntingBackend missingRolesForHunting requiredRoles { role enables }
  }
}`;

/**
 * Token diagnostics learn hunting (HUNTING_ENABLED, on by default in the sandbox): canHunt from the token of
 * each tenant's hunting backend, the hunting role among the required roles of that backend, and null where
 * nothing can tell (opaque tokens, hunting off).
 */
describe("token diagnostics: canHunt", () => {
  let runtime: Runtime;
  let tenants: SandboxTenant[];
  const named = (name: string) => tenants.find((t) => t.displayName === name)!;
  const gql = async (query: string, variables?: Record<string, unknown>) => {
    const result = await postGraphQL(runtime.url, query, variables);
    assert.equal(result.body.errors, undefined, result.text);
    return result.body.data;
  };
  const diagnose = async (tenantId: string, backend?: "GRAPH" | "DEFENDER") =>
    (await gql(HUNTING, { ids: [tenantId], ...(backend ? { backend } : {}) })).tokenDiagnostics[0];
  const huntTokenRequests = (tenantId: string) => runtime.sandbox!.context.counterSnapshot().byTenant[tenantId]?.["token"] ?? 0;

  /** Sets a tenant's granted roles through the sandbox's control API (before any token of it is issued). */
  const grant = async (tenant: SandboxTenant, roles: { defender: string[]; graph: string[] }) => {
    const response = await request(`${runtime.sandbox!.url}/_sandbox/tenants/${tenant.id}/grant-consent`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(roles),
      dispatcher: runtime.app.dispatcher,
    });
    assert.equal(response.statusCode, 200);
    await response.body.dump();
  };

  before(async () => {
    runtime = await startRuntime(loadConfig({ PORT: "0", LOG_LEVEL: "silent", DATA_DIR: "memory://" }));
    tenants = runtime.sandbox!.tenants;
    // Explicit roles, whatever the sandbox seeds: Contoso with the hunting roles of both resources, Litware (the
    // sandbox's tenant without them) with its incident roles only.
    await grant(named("Contoso Ltd"), { defender: [...INCIDENT_ROLES.defender, ...HUNT.defender], graph: [...INCIDENT_ROLES.graph, ...HUNT.graph] });
    await grant(named("Litware, Inc."), INCIDENT_ROLES);
  });
  after(async () => {
    await runtime?.close();
  });

  it("a tenant whose Graph token carries ThreatHunting.Read.All can hunt, judged from its Graph token", async () => {
    const d = await diagnose(named("Contoso Ltd").id);
    assert.equal(d.backend, "DEFENDER", "incidents on Defender (the default) ...");
    assert.equal(d.huntingBackend, "GRAPH", "... hunts on Graph (HUNTING_BACKEND's default)");
    assert.equal(d.canHunt, true);
    assert.equal(d.huntingAccess, "ALLOWED");
    assert.deepEqual(d.missingRolesForHunting, []);
    // The hunting role lives on another resource than the token diagnosed: not among its required roles.
    assert.ok(!d.requiredRoles.some((r: { enables: string[] }) => r.enables.includes("HUNT")));
  });

  it("the sandbox's tenant without the hunting role: canHunt false, the role named as missing, reading unaffected", async () => {
    const litware = named("Litware, Inc.");
    const d = await diagnose(litware.id);
    assert.equal(d.canRead, true);
    assert.equal(d.canHunt, false);
    assert.equal(d.huntingAccess, "DENIED");
    assert.deepEqual(d.missingRolesForHunting, ["ThreatHunting.Read.All"]);
    // Diagnosed on Graph, the hunting backend itself: the hunting role is a required role of that token.
    const graph = await diagnose(litware.id, "GRAPH");
    assert.deepEqual(graph.requiredRoles, [
      { role: "SecurityIncident.Read.All", enables: ["READ"] },
      { role: "SecurityIncident.ReadWrite.All", enables: ["READ", "UPDATE"] },
      { role: "ThreatHunting.Read.All", enables: ["HUNT"] },
    ]);
    assert.equal(graph.canHunt, false);
    assert.deepEqual(graph.missingRolesForHunting, ["ThreatHunting.Read.All"]);
  });

  it("follows the tenant's hunting backend: set to DEFENDER, judged by AdvancedHunting.Read.All on the Defender token", async () => {
    const litware = named("Litware, Inc.");
    const contoso = named("Contoso Ltd");
    const updated = await gql(`mutation($t: ID!) { updateTenant(id: $t, input: { huntingBackend: DEFENDER }) { huntingBackend backend } }`, { t: contoso.id });
    assert.deepEqual(updated.updateTenant, { huntingBackend: "DEFENDER", backend: null });
    await gql(`mutation($t: ID!) { updateTenant(id: $t, input: { huntingBackend: DEFENDER }) { huntingBackend } }`, { t: litware.id });

    const ok = await diagnose(contoso.id);
    assert.equal(ok.huntingBackend, "DEFENDER");
    assert.equal(ok.canHunt, true);
    assert.deepEqual(
      ok.requiredRoles.find((r: { enables: string[] }) => r.enables.includes("HUNT")),
      { role: "AdvancedHunting.Read.All", enables: ["HUNT"] },
      "the same resource now: the hunting role joins the Defender token's required roles",
    );
    const lacking = await diagnose(litware.id);
    assert.equal(lacking.canHunt, false);
    assert.deepEqual(lacking.missingRolesForHunting, ["AdvancedHunting.Read.All"]);

    const audit = await gql(`{ auditEvents(filter: { action: "tenant.update" }, first: 5) { edges { node { tenantId detail } } } }`);
    const events = audit.auditEvents.edges.map((e: { node: { tenantId: string; detail: unknown } }) => e.node);
    assert.ok(events.some((e: { tenantId: string; detail: unknown }) => e.tenantId === contoso.id && JSON.stringify(e.detail).includes("huntingBackend")));

    const cleared = await gql(`mutation($t: ID!) { updateTenant(id: $t, input: { huntingBackend: null }) { huntingBackend } }`, { t: contoso.id });
    assert.equal(cleared.updateTenant.huntingBackend, null);
    assert.equal((await gql(`query($t: ID!) { tenant(id: $t) { huntingBackend token { huntingBackend canHunt } } }`, { t: contoso.id })).tenant.token.huntingBackend, "GRAPH");
  });

  it("asks for the hunting token only when a hunting field is selected", async () => {
    const trey = named("Trey Research");
    runtime.sandbox!.context.resetCounters();
    await gql(`query($ids: [ID!]!) { tokenDiagnostics(tenantIds: $ids) { canRead } }`, { ids: [trey.id] });
    const withoutHunting = huntTokenRequests(trey.id);
    await gql(`query($ids: [ID!]!) { tokenDiagnostics(tenantIds: $ids) { canRead canHunt missingRolesForHunting huntingAccess } }`, { ids: [trey.id] });
    assert.equal(huntTokenRequests(trey.id) - withoutHunting, 1, "one Graph token for three hunting fields");
  });

  it("canHunt is null for an opaque token: its roles cannot be read", async () => {
    const woodgrove = named("Woodgrove Bank");
    const response = await request(`${runtime.sandbox!.url}/_sandbox/tenants/${woodgrove.id}/token-format`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ opaque: true }),
      dispatcher: runtime.app.dispatcher,
    });
    assert.equal(response.statusCode, 200);
    await response.body.dump();
    const d = await diagnose(woodgrove.id, "GRAPH");
    assert.equal(d.claimsReadable, false);
    assert.equal(d.canHunt, null);
    assert.equal(d.huntingAccess, "UNKNOWN");
    assert.deepEqual(d.missingRolesForHunting, []);
  });
});

describe("token diagnostics with HUNTING_ENABLED=false", () => {
  let runtime: Runtime;
  before(async () => {
    runtime = await startRuntime(loadConfig({ PORT: "0", LOG_LEVEL: "silent", DATA_DIR: "memory://", HUNTING_ENABLED: "false", SANDBOX_TENANTS: "13" }));
  });
  after(async () => {
    await runtime?.close();
  });

  it("judges no hunting and lists no hunting role, in diagnostics and consent links", async () => {
    const contoso = runtime.sandbox!.tenants.find((t) => t.displayName === "Contoso Ltd")!;
    const result = await postGraphQL(runtime.url, HUNTING, { ids: [contoso.id], backend: "GRAPH" });
    assert.equal(result.body.errors, undefined, result.text);
    const d = result.body.data.tokenDiagnostics[0];
    assert.equal(d.canHunt, null);
    assert.equal(d.huntingAccess, null);
    assert.equal(d.huntingBackend, null);
    assert.deepEqual(d.missingRolesForHunting, []);
    assert.ok(!d.requiredRoles.some((r: { enables: string[] }) => r.enables.includes("HUNT")));
    const link = await postGraphQL(runtime.url, `query($t: ID) { consentLink(tenantId: $t, backend: GRAPH) { permissions { role } } }`, { t: contoso.id });
    assert.deepEqual(link.body.data.consentLink.permissions, [{ role: "SecurityIncident.ReadWrite.All" }]);
  });
});
