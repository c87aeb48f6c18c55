import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../../src/config.js";
import {
  ConsentLinkDocument,
  IncidentDetailDocument,
  IncidentQueueDocument,
  RegisterTenantDocument,
  ServerInfoDocument,
  TenantConsentStatusDocument,
  TenantRegistryDocument,
  TokenDiagnosticsDocument,
  UpdateIncidentDocument,
} from "../../src/generated/graphql.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import { execute } from "../helpers/typed-graphql.js";

const NEW_TENANT = "3c9d2e1f-7a6b-4c5d-9e8f-0a1b2c3d4e5f";

/**
 * The example operations of operations/, as partners use them: through the generated TypedDocumentNodes,
 * so a change to the schema or to an operation that breaks a partner breaks this file's type-check too.
 */
describe("example operations through their generated typed documents", () => {
  let runtime: Runtime;

  before(async () => {
    runtime = await startRuntime(loadConfig({ PORT: "0", LOG_LEVEL: "silent", DATA_DIR: "memory://" }));
  });
  after(async () => {
    await runtime.close();
  });

  it("ServerInfo says what the instance runs against", async () => {
    const { data, errors } = await execute(runtime.url, ServerInfoDocument);
    assert.equal(errors, undefined);
    assert.equal(data?.serverInfo.mode, "SANDBOX");
    assert.equal(data?.serverInfo.authorityHost, runtime.sandbox!.url);
  });

  it("onboards a tenant: RegisterTenant, ConsentLink, TenantConsentStatus, TenantRegistry", async () => {
    const registered = await execute(runtime.url, RegisterTenantDocument, {
      input: { id: NEW_TENANT, displayName: "Margie's Travel", tags: ["smb", "new"] },
    });
    assert.equal(registered.errors, undefined);
    const tenant = registered.data!.registerTenant;
    assert.equal(tenant.id, NEW_TENANT);
    assert.equal(tenant.consentState, "PENDING");
    assert.deepEqual(tenant.tags, ["smb", "new"]);
    const consentLink = tenant.consentLink;
    assert.ok(consentLink, "the registering admin gets the tenant's consent link");
    const link = new URL(consentLink.url);
    assert.equal(link.origin + link.pathname, `${runtime.sandbox!.url}/${NEW_TENANT}/v2.0/adminconsent`);
    assert.ok(consentLink.expiresAt && Date.parse(consentLink.expiresAt) > Date.now());
    assert.ok(consentLink.permissions.some((p) => p.role === "Incident.ReadWrite.All"));

    const fresh = await execute(runtime.url, ConsentLinkDocument, { tenantId: NEW_TENANT });
    assert.equal(fresh.data?.consentLink.flow, "ADMIN_CONSENT");
    assert.equal(fresh.data?.consentLink.tenantId, NEW_TENANT);
    const legacy = await execute(runtime.url, ConsentLinkDocument, { flow: "LEGACY_V1" });
    assert.equal(legacy.data?.consentLink.expiresAt, null);

    const status = await execute(runtime.url, TenantConsentStatusDocument, { id: NEW_TENANT });
    assert.equal(status.errors, undefined);
    assert.equal(status.data?.tenant?.consentState, "PENDING");
    assert.equal(status.data?.tenant?.token.ok, false);
    assert.equal(status.data?.tenant?.token.canRead, false);

    const pending = await execute(runtime.url, TenantRegistryDocument, { filter: { consentState: ["PENDING"] }, first: 50 });
    assert.deepEqual(pending.data?.tenants.edges.map((e) => e.node.displayName).sort(), ["Alpine Ski House", "Margie's Travel"]);
  });

  it("TokenDiagnostics explains a working token and a failing one, and never returns the token", async () => {
    const contoso = runtime.sandbox!.tenants.find((t) => t.displayName === "Contoso Ltd")!;
    const result = await execute(runtime.url, TokenDiagnosticsDocument, { tenantIds: [contoso.id, NEW_TENANT] });
    assert.equal(result.errors, undefined);
    const [ok, failing] = result.data!.tokenDiagnostics;
    assert.equal(ok?.tenantId, contoso.id);
    assert.equal(ok?.ok, true);
    assert.equal(ok?.tid, contoso.id);
    assert.equal(ok?.audience, "https://api.security.microsoft.com");
    assert.deepEqual(ok?.roles, ["Incident.ReadWrite.All", "AdvancedHunting.Read.All"]);
    assert.equal(ok?.canUpdate, true);
    assert.equal(ok?.error, null);
    assert.equal(failing?.ok, false);
    assert.equal(failing?.error?.code, "TENANT_NOT_FOUND");
    assert.ok(failing?.error?.hint);
    assert.doesNotMatch(JSON.stringify(result.data), /eyJ[\w-]+\.eyJ/, "no JWT in the answer");
  });

  it("IncidentQueue pages across tenants; IncidentDetail and UpdateIncident act on one of them", async () => {
    const [contoso, fabrikam] = runtime.sandbox!.tenants;
    const queue = await execute(runtime.url, IncidentQueueDocument, {
      tenantIds: [contoso!.id, fabrikam!.id],
      orderBy: { field: "LAST_UPDATE_TIME", direction: "DESC" },
      first: 5,
    });
    assert.equal(queue.errors, undefined);
    const incidents = queue.data!.incidents;
    assert.equal(incidents.edges.length, 5);
    assert.equal(incidents.pageInfo.hasNextPage, true);
    assert.deepEqual(incidents.tenantOutcomes.map((o) => [o.tenantId, o.ok]), [[contoso!.id, true], [fabrikam!.id, true]]);
    const times = incidents.edges.map((e) => Date.parse(e.node.lastUpdateTime));
    assert.deepEqual(times, [...times].sort((a, b) => b - a));

    const next = await execute(runtime.url, IncidentQueueDocument, {
      tenantIds: [contoso!.id, fabrikam!.id],
      first: 5,
      after: incidents.pageInfo.endCursor,
    });
    const seen = new Set(incidents.edges.map((e) => `${e.node.tenantId}/${e.node.incidentId}`));
    for (const edge of next.data!.incidents.edges) assert.ok(!seen.has(`${edge.node.tenantId}/${edge.node.incidentId}`));

    const first = incidents.edges[0]!.node;
    const detail = await execute(runtime.url, IncidentDetailDocument, { tenantId: first.tenantId, incidentId: first.incidentId });
    assert.equal(detail.errors, undefined);
    assert.equal(detail.data?.incident?.incidentName, first.incidentName);
    assert.ok(Array.isArray(detail.data?.incident?.alerts));

    const updated = await execute(runtime.url, UpdateIncidentDocument, {
      tenantId: first.tenantId,
      incidentId: first.incidentId,
      input: { assignedTo: "analyst@partner.example", comment: "Taken by the typed-operations test" },
    });
    assert.equal(updated.errors, undefined);
    assert.equal(updated.data?.updateIncident.assignedTo, "analyst@partner.example");
    assert.ok(updated.data?.updateIncident.comments.some((c) => c.comment === "Taken by the typed-operations test"));
  });
});
