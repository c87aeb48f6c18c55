import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Logger } from "pino";
import type { AppDependencies } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { postGraphQL, type GraphQLResponse } from "../helpers/graphql.js";

const PAGE = `query($first: Int, $after: String, $filter: IncidentFilter, $orderBy: IncidentOrder, $tenantIds: [ID!], $maxAgeSeconds: Int) {
  incidents(first: $first, after: $after, filter: $filter, orderBy: $orderBy, tenantIds: $tenantIds, maxAgeSeconds: $maxAgeSeconds) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { tenantId incidentId severity status lastUpdateTime createdTime assignedTo backend } }
    tenantOutcomes { tenantId ok fromCache fetchedAt durationMs syncState error { code hint retryAfterSeconds consentLink { url } } }
  }
}`;

/**
 * The mirror's freshness bound, and the `maxAgeSeconds` of the queries that want fresh data. The incident
 * service reads an injected clock that only the test moves (`age`), so whether a query finds a tenant fresh
 * never depends on how long the machine took between two queries.
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
    /** The incident service's clock: still unless the test ages the mirror. */
    let incidentNowMs = Date.now();
    /**
     * Makes every synced tenant stale (older than FRESHNESS_SECONDS), so the next query with
     * `maxAgeSeconds: FRESHNESS_SECONDS` syncs each one and waits for it; a query without it is served the mirror.
     */
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
          // The query path alone: no background sync, so every call counted is one a query caused (a tenant
          // syncs when a query must wait for it: never synced, or older than the query's maxAgeSeconds).
          INCIDENT_SYNC: "false",
          // The first query waits for every tenant's whole first sync run (up to the deadline), however
          // loaded the machine: the paging test compares the complete mirror with the sandbox.
          INCIDENT_FIRST_LOAD_WAIT_MS: String(OPERATION_TIMEOUT_MS),
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
      const warm = await gql(PAGE, { first: 1, maxAgeSeconds: FRESHNESS_SECONDS });
      assert.ok(warm.body.data.incidents.tenantOutcomes.filter((o: any) => o.ok).every((o: any) => o.fromCache && o.syncState === "FRESH"));
      assert.equal(listCalls(), 0, "warm query made no list call");

      const contoso = named("Contoso Ltd");
      const changed = runtime.sandbox!.incidents.update(contoso.id, runtime.sandbox!.incidents.forTenant(contoso.id)[5]!.incidentId, { assignedTo: "night.shift@contoso.onmicrosoft.com" }, "test");
      assert.ok(changed);
      age();
      runtime.sandbox!.context.resetCounters();
      // Stale, but the caller set no maxAgeSeconds: the mirror as it is, without a call or a wait.
      const served = await gql(PAGE, { first: 3, filter: { assignedTo: "night.shift@contoso.onmicrosoft.com" } });
      assert.equal(served.body.errors, undefined);
      assert.equal(served.body.data.incidents.edges.length, 0, "the change is not in the mirror yet");
      for (const t of readable()) {
        const outcome = served.body.data.incidents.tenantOutcomes.find((o: any) => o.tenantId === t.id);
        assert.deepEqual([outcome.ok, outcome.fromCache, outcome.syncState], [true, true, "STALE"], t.displayName);
      }
      assert.equal(listCalls(), 0, "a stale tenant is served without a list call");

      const refreshed = await gql(PAGE, { first: 3, filter: { assignedTo: "night.shift@contoso.onmicrosoft.com" }, maxAgeSeconds: FRESHNESS_SECONDS });
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
        `query($ids: [ID!], $maxAgeSeconds: Int) {
          incidents(tenantIds: $ids, first: 5, maxAgeSeconds: $maxAgeSeconds) { totalCount }
          tenants(first: 100) { edges { node { id incidentSummary { total } incidents(first: 1, maxAgeSeconds: $maxAgeSeconds) { totalCount } } } }
        }`,
        { ids, maxAgeSeconds: FRESHNESS_SECONDS },
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
        // Every tenant stale and a maxAgeSeconds below their age: the query syncs every tenant, so the victim's fault is met.
        age();
        runtime.sandbox!.context.setFault(victim.id, { kind, endpoints: ["incidents"], retryAfterSeconds: 30 });
        try {
          // A hang never answers: that the query answers at all, with the victim's timeout code below, shows the
          // deadline ended the wait (no wall-clock assertion: a loaded machine stretches every duration).
          const result = await gql(PAGE, { first: 20, maxAgeSeconds: FRESHNESS_SECONDS });
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

describe("a query that comes while a tenant's first sync run is under way", () => {
  let runtime: Runtime;

  before(async () => {
    runtime = await startRuntime(
      loadConfig({
        PORT: "0",
        LOG_LEVEL: "silent",
        DATA_DIR: "memory://",
        INCIDENTS_BACKEND: "defender",
        // Only the queries sync; a cold query waits for the whole first run (up to the deadline).
        INCIDENT_SYNC: "false",
        INCIDENT_FIRST_LOAD_WAIT_MS: "20000",
        OPERATION_TIMEOUT_MS: "20000",
      }),
    );
  });
  after(async () => {
    await runtime?.close();
  });

  it("joins that run and waits for it, even once its first page is in the mirror: one list in all, the tenant complete", async () => {
    const aw = runtime.sandbox!.tenants.find((t) => t.displayName === "Adventure Works Cycles")!;
    const count = runtime.sandbox!.incidents.forTenant(aw.id).length;
    assert.ok(count > 200, "several pages");
    // Every page of the tenant's list is slow, so the run is still going when the second query comes.
    runtime.sandbox!.context.setFault(aw.id, { kind: "slow-body", endpoints: ["defender.list"], durationMs: 400 });
    const query = () => postGraphQL(runtime.url, PAGE, { tenantIds: [aw.id], first: 1 });
    const first = query();
    // The first page is committed, the run goes on (polled, with a cap).
    for (let i = 0; ; i++) {
      assert.ok(i < 2_000, "the first page never arrived");
      const state = await runtime.app.incidents.mirror.state(aw.id);
      if (state?.sweep && state.sweep.pages >= 1) {
        assert.equal(state.fetchedAt, null, "the first run had already ended: the test proves nothing");
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const second = await query();
    for (const result of [second, await first]) {
      assert.equal(result.body.errors, undefined, JSON.stringify(result.body.errors));
      const connection = result.body.data.incidents;
      assert.deepEqual(
        connection.tenantOutcomes.map((o: any) => [o.ok, o.syncState, o.error]),
        [[true, "FRESH", null]],
        JSON.stringify(connection.tenantOutcomes),
      );
      assert.equal(connection.totalCount, count);
    }
    const lists = runtime.sandbox!.context.counterSnapshot().byTenant[aw.id]?.["defender.list"] ?? 0;
    assert.equal(lists, Math.floor(count / 100) + 1, "one run: pages of 100, and one more that says the list has ended");
  });
});
