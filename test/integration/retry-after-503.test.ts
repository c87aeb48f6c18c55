import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import type { TokenProvider } from "../../src/auth/token-provider.js";
import { UpstreamError } from "../../src/defender/backend-client.js";
import { createIncidentsClients } from "../../src/defender/clients.js";
import type { RetryPolicy } from "../../src/defender/http.js";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { postGraphQL } from "../helpers/graphql.js";

/**
 * 503 with Retry-After (Graph documents it on 503 as on 429): a read waits as asked and is sent once more;
 * a wait past the deadline is UPSTREAM_UNAVAILABLE with retryAfterSeconds at once, and no busy retry loop.
 * Checked with the sandbox's counters and the answers' fields, never with the clock.
 */
describe("503 with Retry-After", () => {
  let runtime: Runtime;
  let tenants: SandboxTenant[];

  before(async () => {
    // No background sync engine: the counters see only these calls, and a tenant is first synced by the query that names it.
    runtime = await startRuntime(loadConfig({ PORT: "0", LOG_LEVEL: "silent", DATA_DIR: "memory://", OPERATION_TIMEOUT_MS: "5000", INCIDENT_SYNC: "false" }));
    tenants = runtime.sandbox!.tenants.filter((t) => t.resources.defender && t.resources.graph && t.consent.granted && t.incidentCount > 0);
    assert.ok(tenants.length >= 3);
  });
  after(async () => {
    await runtime?.close();
  });
  beforeEach(() => {
    runtime.sandbox!.context.clearFaults();
    runtime.sandbox!.context.resetCounters(true);
  });

  const counted = (tenant: SandboxTenant, endpoint: string) =>
    (runtime.sandbox!.context.counterSnapshot().byTenant[tenant.id] as Record<string, number> | undefined)?.[endpoint] ?? 0;

  /**
   * Clients over the runtime's sandbox. By default with one attempt for ordinary failures, so that a retry
   * can only come from a Retry-After wait, not from the back-off.
   */
  function clients(retry: Partial<RetryPolicy> = { maxAttempts: 1 }) {
    const sandbox = runtime.sandbox!;
    const tokens: TokenProvider = {
      getToken: async (tenantId, resource) => ({
        accessToken: await sandbox.mintAccessToken({ tenantId, resource }),
        expiresOn: new Date(Date.now() + 3_600_000),
        fromCache: false,
        claims: undefined,
        fingerprint: "test",
      }),
      invalidate: () => undefined,
      forgetFailures: () => undefined,
      stats: () => ({ requests: 0, cacheHits: 0, coalesced: 0, acquisitions: 0, tokensIssued: 0, failures: 0, backoffRefusals: 0, cachedTokens: 0 }),
    };
    return createIncidentsClients({
      dispatcher: runtime.app.dispatcher,
      tokenProvider: tokens,
      defenderApiBase: sandbox.url,
      graphApiBase: `${sandbox.url}/v1.0`,
      retry,
    });
  }

  it("Retry-After: 1, then success: one retry after the wait, and the read succeeds", async () => {
    const [tenant] = tenants;
    const incident = runtime.sandbox!.incidents.forTenant(tenant!.id)[0]!;
    for (const endpoint of ["defender.get", "graph.get"] as const) {
      runtime.sandbox!.context.setFault(tenant!.id, { kind: "server-error", status: 503, retryAfterSeconds: 1, endpoints: [endpoint], times: 1 });
    }
    const { defender, graph } = clients();
    // Each read its own generous deadline: the 1 s wait must fit it however slowly a loaded machine gets there.
    const deadline = () => Date.now() + 30_000;
    assert.equal((await defender.getIncident(tenant!.id, String(incident.incidentId), { deadline: deadline() }))?.incidentId, String(incident.incidentId));
    assert.equal((await graph.getIncident(tenant!.id, String(incident.incidentId), { deadline: deadline() }))?.incidentId, String(incident.incidentId));
    // Each: the 503, then the retry (maxAttempts 1 proves it was the Retry-After path, not the back-off).
    assert.equal(counted(tenant!, "defender.get"), 2);
    assert.equal(counted(tenant!, "graph.get"), 2);
  });

  it("a plain 503 (no Retry-After) is still an ordinary 5xx: here, with one attempt, not retried", async () => {
    const [tenant] = tenants;
    const incident = runtime.sandbox!.incidents.forTenant(tenant!.id)[0]!;
    runtime.sandbox!.context.setFault(tenant!.id, { kind: "server-error", status: 503, endpoints: ["defender.get"], times: 1 });
    const error = await clients()
      .defender.getIncident(tenant!.id, String(incident.incidentId), { deadline: Date.now() + 10_000 })
      .catch((e: unknown) => e);
    assert.ok(error instanceof UpstreamError && error.code === "UPSTREAM_UNAVAILABLE", String(error));
    assert.equal(error.retryAfterSeconds, undefined);
    assert.equal(counted(tenant!, "defender.get"), 1);
  });

  it("Retry-After past the deadline: UPSTREAM_UNAVAILABLE with retryAfterSeconds at once, one call, no retries", async () => {
    const [, tenant] = tenants;
    runtime.sandbox!.context.setFault(tenant!.id, { kind: "server-error", status: 503, retryAfterSeconds: 120, endpoints: ["defender.list", "graph.list"] });
    // The default retry policy: an ordinary 5xx would be sent three times.
    const { defender, graph } = clients({});
    for (const client of [defender, graph]) {
      const error = await client.listIncidents(tenant!.id, { deadline: Date.now() + 10_000 }).catch((e: unknown) => e);
      assert.ok(error instanceof UpstreamError, String(error));
      assert.equal(error.code, "UPSTREAM_UNAVAILABLE");
      assert.equal(error.retryAfterSeconds, 120);
      assert.equal(error.details.status, 503);
    }
    // Default retry policy (3 attempts for a 5xx): the Retry-After made it one call each.
    assert.equal(counted(tenant!, "defender.list"), 1);
    assert.equal(counted(tenant!, "graph.list"), 1);
  });

  it("on a write: never re-sent, and the Retry-After is carried", async () => {
    const [, , tenant] = tenants;
    const incident = runtime.sandbox!.incidents.forTenant(tenant!.id)[0]!;
    runtime.sandbox!.context.setFault(tenant!.id, { kind: "server-error", status: 503, retryAfterSeconds: 1, endpoints: ["defender.patch"], times: 1 });
    const error = await clients()
      .defender.updateIncident(tenant!.id, String(incident.incidentId), { assignedTo: "analyst@contoso.example" }, { deadline: Date.now() + 10_000 })
      .catch((e: unknown) => e);
    assert.ok(error instanceof UpstreamError && error.code === "UPSTREAM_UNAVAILABLE", String(error));
    assert.equal(error.retryAfterSeconds, 1);
    assert.equal(counted(tenant!, "defender.patch"), 1);
  });

  it("the tenant's outcome carries retryAfterSeconds, after one call", async () => {
    const [, tenant] = tenants;
    runtime.sandbox!.context.setFault(tenant!.id, { kind: "server-error", status: 503, retryAfterSeconds: 90, endpoints: ["defender.list", "graph.list"] });
    const result = await postGraphQL(runtime.url, `query($ids: [ID!]) { incidents(tenantIds: $ids) { tenantOutcomes { tenantId ok error { code retryAfterSeconds } } } }`, {
      ids: [tenant!.id],
    });
    assert.equal(result.status, 200, result.text);
    const [outcome] = result.body.data.incidents.tenantOutcomes;
    assert.equal(outcome.ok, false);
    assert.deepEqual(outcome.error, { code: "UPSTREAM_UNAVAILABLE", retryAfterSeconds: 90 });
    assert.equal(counted(tenant!, "defender.list") + counted(tenant!, "graph.list"), 1);
  });
});
