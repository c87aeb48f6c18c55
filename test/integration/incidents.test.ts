import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Logger } from "pino";
import type { AppDependencies } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { postGraphQL, type GraphQLResponse } from "../helpers/graphql.js";

const PAGE = `query($first: Int, $after: String, $filter: IncidentFilter, $orderBy: IncidentOrder, $tenantIds: [ID!]) {
  incidents(first: $first, after: $after, filter: $filter, orderBy: $orderBy, tenantIds: $tenantIds) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { tenantId incidentId severity status lastUpdateTime createdTime assignedTo backend } }
    tenantOutcomes { tenantId ok fromCache fetchedAt durationMs error { code hint retryAfterSeconds consentLink { url } } }
  }
}`;

/**
 * The incident cache's freshness bound. The cache reads an injected clock that only the test moves (`age`),
 * so whether a query finds the cache fresh never depends on how long the machine took between two queries.
 */
const FRESHNESS_SECONDS = 2;
/**
 * The operation deadline. Only the `hang` fault waits for it; every other query must merely finish within it,
 * so it is generous for a loaded machine (the first query loads all 13 tenants). It stays below the throttle
 * fault's Retry-After (30 s), so a throttled tenant is refused at once rather than waited for.
 */
const OPERATION_TIMEOUT_MS = 10_000;

const SEVERITY_RANK: Record<string, number> = { UNKNOWN: 0, INFORMATIONAL: 1, LOW: 2, MEDIUM: 3, HIGH: 4 };
const SANDBOX_SEVERITY: Record<string, string> = {
  UnSpecified: "UNKNOWN",
  Informational: "INFORMATIONAL",
  Low: "LOW",
  Medium: "MEDIUM",
  High: "HIGH",
};

/**
 * `incidents(tenantIds:)` end to end: server and sandbox over real HTTP, checked against the sandbox's own
 * data and call counters. The same suite runs with each backend as the deployment default.
 */
for (const backend of ["defender", "graph"] as const) {
  describe(`incidents across tenants (default backend ${backend})`, () => {
    let runtime: Runtime;
    let gql: (query: string, variables?: Record<string, unknown>) => Promise<GraphQLResponse<any>>;
    let tenants: SandboxTenant[];
    const named = (name: string) => tenants.find((t) => t.displayName === name)!;
    /** The incident cache's clock: still unless the test ages the cache. */
    let incidentNowMs = Date.now();
    /** Makes every cached tenant stale, so the next query refreshes each one (no waiting). */
    const age = () => {
      incidentNowMs += FRESHNESS_SECONDS * 1000 + 1000;
    };
    /** Tenants whose incidents the app may read. */
    const readable = () => tenants.filter((t) => t.displayName !== "Alpine Ski House" && t.displayName !== "Coho Winery");
    /** List calls for the readable tenants (the failing ones' lasting failures are remembered, see failure-memory.test.ts). */
    const listCalls = () => {
      const c = runtime.sandbox!.context.counterSnapshot();
      return readable().reduce((sum, t) => sum + (c.byTenant[t.id]?.["defender.list"] ?? 0) + (c.byTenant[t.id]?.["graph.list"] ?? 0), 0);
    };

    before(async () => {
      const deps: { logger?: Logger } & Pick<AppDependencies, "incidentClock"> = { incidentClock: () => incidentNowMs };
      runtime = await startRuntime(
        loadConfig({
          PORT: "0",
          LOG_LEVEL: "silent",
          DATA_DIR: "memory://",
          INCIDENTS_BACKEND: backend,
          INCIDENT_FRESHNESS_SECONDS: String(FRESHNESS_SECONDS),
          OPERATION_TIMEOUT_MS: String(OPERATION_TIMEOUT_MS),
        }),
        // startRuntime hands its dependencies to createApp, which takes the incident clock.
        deps,
      );
      tenants = runtime.sandbox!.tenants;
      gql = (query, variables) => postGraphQL(runtime.url, query, variables);
    });
    after(async () => {
      await runtime.close();
    });

    it("pages through every readable incident exactly once, in order, matching totalCount and the sandbox", async () => {
      const seen: any[] = [];
      let cursor: string | null = null;
      let total = -1;
      for (let page = 0; page < 50; page++) {
        const result = await gql(PAGE, { first: 137, after: cursor });
        assert.equal(result.body.errors, undefined, JSON.stringify(result.body.errors));
        const connection = result.body.data.incidents;
        total = connection.totalCount;
        seen.push(...connection.edges.map((e: any) => e.node));
        if (!connection.pageInfo.hasNextPage) break;
        cursor = connection.pageInfo.endCursor;
      }
      const expected = new Set<string>();
      for (const t of readable()) {
        for (const record of runtime.sandbox!.incidents.forTenant(t.id)) expected.add(`${t.id}/${record.incidentId}`);
      }
      const keys = seen.map((n) => `${n.tenantId}/${n.incidentId}`);
      assert.equal(new Set(keys).size, keys.length, "no incident twice");
      assert.equal(keys.length, total);
      assert.deepEqual(new Set(keys), expected);
      for (let i = 1; i < seen.length; i++) {
        assert.ok(Date.parse(seen[i - 1].lastUpdateTime) >= Date.parse(seen[i].lastUpdateTime), `order at ${i}`);
      }
      const proseware = seen.find((n) => n.tenantId === named("Proseware, Inc.").id);
      assert.equal(proseware.backend, "GRAPH", "the Graph-only tenant is read through Graph");
      assert.ok(seen.some((n) => n.backend === backend.toUpperCase()));
    });

    it("explains the unconsented and role-less tenants while the others return data", async () => {
      const result = await gql(PAGE, { first: 5 });
      const outcomes = new Map(result.body.data.incidents.tenantOutcomes.map((o: any) => [o.tenantId, o]));
      assert.equal(outcomes.size, tenants.length);
      const alpine: any = outcomes.get(named("Alpine Ski House").id);
      assert.equal(alpine.ok, false);
      assert.equal(alpine.error.code, "CONSENT_REQUIRED");
      assert.match(alpine.error.consentLink.url, /adminconsent/);
      const coho: any = outcomes.get(named("Coho Winery").id);
      assert.equal(coho.error.code, "MISSING_ROLE");
      assert.ok(coho.error.consentLink);
      for (const t of readable()) assert.equal((outcomes.get(t.id) as any).ok, true, t.displayName);
    });

    it("makes no upstream call within the freshness bound, then one delta per tenant that shows changes", async () => {
      await gql(PAGE, { first: 1 });
      runtime.sandbox!.context.resetCounters();
      const warm = await gql(PAGE, { first: 1 });
      assert.ok(warm.body.data.incidents.tenantOutcomes.filter((o: any) => o.ok).every((o: any) => o.fromCache));
      assert.equal(listCalls(), 0, "warm query made no list call");

      const contoso = named("Contoso Ltd");
      const changed = runtime.sandbox!.incidents.update(contoso.id, runtime.sandbox!.incidents.forTenant(contoso.id)[5]!.incidentId, { assignedTo: "night.shift@contoso.onmicrosoft.com" }, "test");
      assert.ok(changed);
      age();
      runtime.sandbox!.context.resetCounters();
      const refreshed = await gql(PAGE, { first: 3, filter: { assignedTo: "night.shift@contoso.onmicrosoft.com" } });
      assert.equal(refreshed.body.errors, undefined);
      const edges = refreshed.body.data.incidents.edges;
      assert.equal(edges.length, 1);
      assert.equal(edges[0].node.incidentId, String(changed.incidentId));
      const counters = runtime.sandbox!.context.counterSnapshot();
      for (const t of readable()) {
        const c = counters.byTenant[t.id] ?? {};
        const lists = (c["defender.list"] ?? 0) + (c["graph.list"] ?? 0);
        assert.equal(lists, 1, `one delta call for ${t.displayName}`);
      }
    });

    it("orders by severity and created time, and filters by severity like the sandbox's data", async () => {
      const high = await gql(PAGE, { first: 500, filter: { severity: ["HIGH"] }, orderBy: { field: "CREATED_TIME", direction: "ASC" } });
      const nodes = high.body.data.incidents.edges.map((e: any) => e.node);
      let expectedHigh = 0;
      for (const t of readable()) {
        expectedHigh += runtime.sandbox!.incidents.forTenant(t.id).filter((r) => SANDBOX_SEVERITY[r.severity] === "HIGH").length;
      }
      assert.equal(high.body.data.incidents.totalCount, expectedHigh);
      assert.ok(nodes.every((n: any) => n.severity === "HIGH"));
      for (let i = 1; i < nodes.length; i++) assert.ok(Date.parse(nodes[i - 1].createdTime) <= Date.parse(nodes[i].createdTime));

      const bySeverity = await gql(PAGE, { first: 300, orderBy: { field: "SEVERITY", direction: "DESC" } });
      const ranks = bySeverity.body.data.incidents.edges.map((e: any) => SEVERITY_RANK[e.node.severity]);
      for (let i = 1; i < ranks.length; i++) assert.ok(ranks[i - 1] >= ranks[i]);
    });

    it("shares one fetch per tenant between tenants { incidents } and incidents(tenantIds:) in one query", async () => {
      age();
      runtime.sandbox!.context.resetCounters();
      const ids = [named("Trey Research").id, named("Litware, Inc.").id];
      const result = await gql(
        `query($ids: [ID!]) {
          incidents(tenantIds: $ids, first: 5) { totalCount }
          tenants(first: 100) { edges { node { id incidentSummary { total } incidents(first: 1) { totalCount } } } }
        }`,
        { ids },
      );
      assert.equal(result.body.errors, undefined, JSON.stringify(result.body.errors));
      const counters = runtime.sandbox!.context.counterSnapshot();
      for (const id of ids) {
        const c = counters.byTenant[id] ?? {};
        assert.equal((c["defender.list"] ?? 0) + (c["graph.list"] ?? 0), 1);
      }
      const trey = result.body.data.tenants.edges.find((e: any) => e.node.id === ids[0]).node;
      assert.equal(trey.incidentSummary.total, runtime.sandbox!.incidents.forTenant(ids[0]!).length);
      assert.equal(trey.incidents.totalCount, trey.incidentSummary.total);
    });

    // A different tenant per fault: a throttled tenant rightly stays refused for its Retry-After.
    for (const [kind, codes, victimName] of [
      ["throttle", ["THROTTLED"], "Wide World Importers"],
      ["server-error", ["UPSTREAM_UNAVAILABLE"], "Lamna Healthcare"],
      ["malformed-json", ["UPSTREAM_BAD_RESPONSE"], "Woodgrove Bank"],
      ["truncated-json", ["UPSTREAM_BAD_RESPONSE"], "Fabrikam, Inc."],
      ["hang", ["UPSTREAM_TIMEOUT", "DEADLINE_EXCEEDED"], "Adventure Works Cycles"],
    ] as const) {
      it(`keeps a ${kind} fault inside its tenant and answers within the deadline`, async () => {
        const victim = named(victimName);
        // Stale caches: the query goes upstream for every tenant, so the victim's fault is met.
        age();
        runtime.sandbox!.context.setFault(victim.id, { kind, endpoints: ["incidents"], retryAfterSeconds: 30 });
        try {
          // A hang never answers: that the query answers at all, with the victim's timeout code below, shows the
          // deadline ended the wait (no wall-clock assertion: a loaded machine stretches every duration).
          const result = await gql(PAGE, { first: 20 });
          assert.equal(result.body.errors, undefined);
          const outcomes = result.body.data.incidents.tenantOutcomes;
          const failed = outcomes.find((o: any) => o.tenantId === victim.id);
          assert.equal(failed.ok, false);
          assert.ok((codes as readonly string[]).includes(failed.error.code), `${kind} gave ${failed.error.code}`);
          assert.ok(!JSON.stringify(failed).includes(runtime.sandbox!.url), "no upstream URL in the outcome");
          const earlierVictims = ["Wide World Importers", "Lamna Healthcare", "Woodgrove Bank", "Fabrikam, Inc.", "Adventure Works Cycles"];
          for (const t of readable().filter((x) => !earlierVictims.includes(x.displayName))) {
            assert.equal(outcomes.find((o: any) => o.tenantId === t.id).ok, true, t.displayName);
          }
          assert.ok(result.body.data.incidents.edges.length > 0);
        } finally {
          runtime.sandbox!.context.clearFaults();
        }
      });
    }

    it("updates an incident through the tenant's backend and shows it afterwards", async () => {
      const tenant = named("Northwind Traders");
      const record = runtime.sandbox!.incidents.forTenant(tenant.id).find((r) => r.status === "Active")!;
      const result = await gql(
        `mutation($t: ID!, $i: ID!) {
          updateIncident(tenantId: $t, incidentId: $i, input: { status: IN_PROGRESS, assignedTo: "analyst@partner.example", comment: "Looking into it", tags: ["triage"] }) {
            incidentId status assignedTo tags comments { comment }
          }
        }`,
        { t: tenant.id, i: String(record.incidentId) },
      );
      assert.equal(result.body.errors, undefined, JSON.stringify(result.body.errors));
      const updated = result.body.data.updateIncident;
      assert.equal(updated.status, "IN_PROGRESS");
      assert.equal(updated.assignedTo, "analyst@partner.example");
      assert.deepEqual(updated.tags, ["triage"]);
      assert.ok(updated.comments.some((c: any) => c.comment === "Looking into it"));
      const upstream = runtime.sandbox!.incidents.get(tenant.id, record.incidentId)!;
      assert.equal(upstream.status, "InProgress");
      assert.equal(upstream.assignedTo, "analyst@partner.example");
      const read = await gql(`query($t: ID!, $i: ID!) { incident(tenantId: $t, incidentId: $i) { status assignedTo } }`, {
        t: tenant.id,
        i: String(record.incidentId),
      });
      assert.deepEqual(read.body.data.incident, { status: "IN_PROGRESS", assignedTo: "analyst@partner.example" });
    });

    it("refuses updates without the ReadWrite role, and bad input, with codes", async () => {
      const coho = named("Coho Winery");
      const id = runtime.sandbox!.incidents.forTenant(coho.id)[0]!.incidentId;
      const refused = await gql(`mutation { updateIncident(tenantId: "${coho.id}", incidentId: "${id}", input: { status: RESOLVED }) { status } }`);
      assert.equal(refused.body.errors?.[0]?.extensions?.code, "MISSING_ROLE");
      const contoso = named("Contoso Ltd");
      const empty = await gql(`mutation { updateIncident(tenantId: "${contoso.id}", incidentId: "1", input: {}) { status } }`);
      assert.equal(empty.body.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");
      const missing = await gql(`mutation { updateIncident(tenantId: "${contoso.id}", incidentId: "999999999", input: { status: RESOLVED }) { status } }`);
      assert.equal(missing.body.errors?.[0]?.extensions?.code, "NOT_FOUND");
      assert.equal((await gql(`{ incident(tenantId: "${contoso.id}", incidentId: "999999999") { status } }`)).body.data.incident, null);
    });

    it("refuses out-of-range pages, forged cursors and malformed tenant ids with BAD_USER_INPUT; unknown tenants are that tenant's TENANT_FORBIDDEN", async () => {
      for (const variables of [
        { first: 501 },
        { first: -1 },
        { first: 10, after: "not-a-cursor" },
        { first: 10, tenantIds: ["contoso"] },
      ]) {
        const result = await gql(PAGE, variables);
        assert.equal(result.body.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", JSON.stringify(variables));
      }
      const bySeverity = await gql(PAGE, { first: 1, orderBy: { field: "SEVERITY", direction: "DESC" } });
      const cursor = bySeverity.body.data.incidents.pageInfo.endCursor;
      const mixed = await gql(PAGE, { first: 1, after: cursor });
      assert.equal(mixed.body.errors?.[0]?.extensions?.code, "BAD_USER_INPUT", "a cursor of another order is refused");
      const unknown = "00000000-0000-4000-8000-000000000001";
      const partly = await gql(PAGE, { first: 5, tenantIds: [named("Contoso Ltd").id, unknown] });
      assert.equal(partly.body.errors, undefined);
      const outcomes = partly.body.data.incidents.tenantOutcomes;
      assert.deepEqual(outcomes.map((o: any) => [o.tenantId, o.ok, o.error?.code ?? null]), [
        [named("Contoso Ltd").id, true, null],
        [unknown, false, "TENANT_FORBIDDEN"],
      ]);
      assert.equal(partly.body.data.incidents.edges.length, 5, "the known tenant's incidents still arrive");
    });
  });
}
