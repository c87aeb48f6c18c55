import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { request } from "undici";
import { loadConfig } from "../../src/config.js";
import { createDispatcher } from "../../src/http/dispatcher.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { postGraphQL, type GraphQLResponse } from "../helpers/graphql.js";

/**
 * Graph tenants whose `$expand=alerts` list fails (elastic/integrations#18144): Crosswatch lists without
 * it and reads an incident's alerts only when a query selects them, one single-incident read each, batched
 * per tenant and cached with the incident. Server and sandbox over real HTTP; upstream economy checked with
 * the sandbox's counters.
 */

const PAGE = `query($tenantIds: [ID!], $first: Int, $after: String) {
  incidents(tenantIds: $tenantIds, first: $first, after: $after) {
    pageInfo { endCursor }
    edges { node { tenantId incidentId backend } }
    tenantOutcomes { tenantId ok error { code } }
  }
}`;

const WITH_ALERTS = `query($tenantIds: [ID!], $first: Int, $after: String) {
  incidents(tenantIds: $tenantIds, first: $first, after: $after) {
    edges { node { tenantId incidentId alerts { alertId title severity entities { type } } } }
    tenantOutcomes { tenantId ok error { code } }
  }
}`;

let runtime: Runtime;
let gql: (query: string, variables?: Record<string, unknown>) => Promise<GraphQLResponse<any>>;
const named = (name: string): SandboxTenant => runtime.sandbox!.tenants.find((t) => t.displayName === name)!;
const counted = (tenant: SandboxTenant, endpoint: string): number =>
  (runtime.sandbox!.context.counterSnapshot().byTenant[tenant.id] as Record<string, number> | undefined)?.[endpoint] ?? 0;

before(async () => {
  runtime = await startRuntime(
    loadConfig({
      PORT: "0",
      LOG_LEVEL: "silent",
      DATA_DIR: "memory://",
      INCIDENTS_BACKEND: "graph",
      // Nothing turns stale during the test, and no background sync runs: every call counted is one the
      // queries caused (a tenant syncs when a query must wait for it: here, its first load).
      INCIDENT_FRESHNESS_SECONDS: "600",
      INCIDENT_SYNC: "false",
      OPERATION_TIMEOUT_MS: "20000",
      // A cold query waits for the tenant's whole first sync run (six pages), however loaded the machine.
      INCIDENT_FIRST_LOAD_WAIT_MS: "20000",
    }),
  );
  gql = (query, variables) => postGraphQL(runtime.url, query, variables);
  // Both tenants are "large": their expanded list answers 500.
  runtime.sandbox!.context.setGraphExpandFailsAbove(named("Adventure Works Cycles").id, 100);
  runtime.sandbox!.context.setGraphExpandFailsAbove(named("Contoso Ltd").id, 100);
});

after(async () => {
  await runtime?.close();
});

beforeEach(() => {
  runtime.sandbox!.context.resetCounters();
  runtime.sandbox!.context.clearFaults();
});

describe("a Graph tenant whose $expand=alerts list fails", () => {
  it("the expanded list Crosswatch used to send answers 500 there", async () => {
    const aw = named("Adventure Works Cycles");
    const dispatcher = createDispatcher({ trustedCaPem: [runtime.sandbox!.caCertPem], connectTimeoutMs: 5_000, connectionsPerOrigin: 2 });
    try {
      const token = await runtime.sandbox!.mintAccessToken({ tenantId: aw.id, resource: "graph" });
      const expanded = await request(`${runtime.sandbox!.url}/v1.0/security/incidents?$top=50&$expand=alerts`, { dispatcher, headers: { authorization: `Bearer ${token}` } });
      await expanded.body.dump();
      assert.equal(expanded.statusCode, 500);
    } finally {
      await dispatcher.close();
    }
  });

  it("loads its incidents (listed without $expand), and a query without alerts reads none", async () => {
    const aw = named("Adventure Works Cycles");
    const result = await gql(PAGE, { tenantIds: [aw.id], first: 20 });
    assert.equal(result.body.errors, undefined, JSON.stringify(result.body.errors));
    const connection = result.body.data.incidents;
    assert.deepEqual(connection.tenantOutcomes, [{ tenantId: aw.id, ok: true, error: null }]);
    assert.equal(connection.edges.length, 20);
    assert.ok(connection.edges.every((e: any) => e.node.backend === "GRAPH"));
    assert.equal(counted(aw, "graph.list"), 6, "300 incidents, six pages of 50, none failed");
    assert.equal(counted(aw, "graph.get"), 0, "no alerts selected: no alert calls");
  });

  it("reads the alerts of a page with one incident read each, then none for the same query again", async () => {
    const aw = named("Adventure Works Cycles");
    await gql(PAGE, { tenantIds: [aw.id], first: 1 }); // the tenant is listed (and cached)
    runtime.sandbox!.context.resetCounters();

    const first = await gql(WITH_ALERTS, { tenantIds: [aw.id], first: 25 });
    assert.equal(first.body.errors, undefined, JSON.stringify(first.body.errors));
    const edges = first.body.data.incidents.edges;
    assert.equal(edges.length, 25);
    const store = runtime.sandbox!.incidents;
    for (const { node } of edges) {
      const record = store.get(aw.id, Number(node.incidentId))!;
      assert.deepEqual(
        node.alerts.map((a: any) => a.alertId),
        store.alertsOf(record).map((a) => a.alertId),
        `alerts of incident ${node.incidentId}`,
      );
    }
    assert.ok(edges.some((e: any) => e.node.alerts.length > 0));
    assert.equal(counted(aw, "graph.get"), 25, "exactly one incident read per incident of the page");
    assert.equal(counted(aw, "graph.list"), 0);

    runtime.sandbox!.context.resetCounters();
    const again = await gql(WITH_ALERTS, { tenantIds: [aw.id], first: 25 });
    assert.equal(again.body.errors, undefined);
    assert.deepEqual(again.body.data, first.body.data);
    assert.equal(runtime.sandbox!.context.counterSnapshot().total, 0, "cached with the incidents: no call at all");

    // The single-incident query finds the alerts cached too; an incident whose alerts were never read costs one read.
    const cached = edges[0].node.incidentId;
    const one = await gql(`query($t: ID!, $i: ID!) { incident(tenantId: $t, incidentId: $i) { incidentId alerts { alertId } } }`, { t: aw.id, i: cached });
    assert.equal(one.body.errors, undefined, JSON.stringify(one.body.errors));
    assert.equal(one.body.data.incident.alerts.length, edges[0].node.alerts.length);
    assert.equal(counted(aw, "graph.get"), 0);
    const unread = [...store.forTenant(aw.id)].find((r) => !edges.some((e: any) => e.node.incidentId === String(r.incidentId)))!;
    const other = await gql(`query($t: ID!, $i: ID!) { incident(tenantId: $t, incidentId: $i) { alerts { alertId } } }`, { t: aw.id, i: String(unread.incidentId) });
    assert.equal(other.body.errors, undefined, JSON.stringify(other.body.errors));
    assert.equal(other.body.data.incident.alerts.length, store.alertsOf(unread).length);
    assert.equal(counted(aw, "graph.get"), 1);
  });

  it("an update's read-back keeps $expand=alerts on the one incident: its alerts then cost no call", async () => {
    const aw = named("Adventure Works Cycles");
    await gql(WITH_ALERTS, { tenantIds: [aw.id], first: 5 }); // the first page's alerts are cached
    const store = runtime.sandbox!.incidents;
    const target = [...store.forTenant(aw.id)].find((r) => r.status === "Active" && r.redirectIncidentId === null)!;
    runtime.sandbox!.context.resetCounters();
    const updated = await gql(
      `mutation($t: ID!, $i: ID!) { updateIncident(tenantId: $t, incidentId: $i, input: { assignedTo: "alerts@partner.example" }) { incidentId alerts { alertId } } }`,
      { t: aw.id, i: String(target.incidentId) },
    );
    assert.equal(updated.body.errors, undefined, JSON.stringify(updated.body.errors));
    assert.equal(updated.body.data.updateIncident.alerts.length, store.alertsOf(target).length);
    assert.equal(counted(aw, "graph.patch"), 1);
    assert.equal(counted(aw, "graph.get"), 1, "the read-back, alerts included; nothing else");

    // Now the newest incident, first in the default order, cached with its alerts.
    runtime.sandbox!.context.resetCounters();
    const page = await gql(WITH_ALERTS, { tenantIds: [aw.id], first: 5 });
    assert.equal(page.body.errors, undefined, JSON.stringify(page.body.errors));
    assert.equal(page.body.data.incidents.edges[0].node.incidentId, String(target.incidentId));
    assert.equal(counted(aw, "graph.get"), 0);
  });

  it("a failed read nulls that incident's alerts alone, with its code; the others and the page stand", async () => {
    const contoso = named("Contoso Ltd");
    await gql(PAGE, { tenantIds: [contoso.id], first: 1 });
    runtime.sandbox!.context.resetCounters();
    // A body fault is not retried: exactly one incident read fails.
    runtime.sandbox!.context.setFault(contoso.id, { kind: "malformed-json", endpoints: ["graph.get"], times: 1 });
    const result = await gql(WITH_ALERTS, { tenantIds: [contoso.id], first: 10 });
    const edges = result.body.data.incidents.edges;
    assert.equal(edges.length, 10);
    assert.deepEqual(result.body.data.incidents.tenantOutcomes, [{ tenantId: contoso.id, ok: true, error: null }]);
    const failed = edges.filter((e: any) => e.node.alerts === null);
    assert.equal(failed.length, 1, JSON.stringify(result.body.errors));
    assert.equal(result.body.errors?.length, 1);
    const [error] = result.body.errors!;
    assert.equal(error!.extensions?.code, "UPSTREAM_BAD_RESPONSE");
    assert.deepEqual(error!.path, ["incidents", "edges", edges.indexOf(failed[0]), "node", "alerts"]);
    assert.equal(counted(contoso, "graph.get"), 10);

    // The failure is not cached: the next query reads that incident again, and only that one.
    runtime.sandbox!.context.resetCounters();
    const again = await gql(WITH_ALERTS, { tenantIds: [contoso.id], first: 10 });
    assert.equal(again.body.errors, undefined, JSON.stringify(again.body.errors));
    assert.ok(again.body.data.incidents.edges.every((e: any) => Array.isArray(e.node.alerts)));
    assert.equal(counted(contoso, "graph.get"), 1);
  });
});
