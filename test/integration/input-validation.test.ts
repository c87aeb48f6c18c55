import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import { postGraphQL, type GraphQLResponse } from "../helpers/graphql.js";
import { captureLogger } from "../helpers/log-capture.js";

const INCIDENTS = `query($first: Int, $after: String, $filter: IncidentFilter, $orderBy: IncidentOrder, $tenantIds: [ID!], $tenantTags: [String!], $maxAgeSeconds: Int) {
  incidents(first: $first, after: $after, filter: $filter, orderBy: $orderBy, tenantIds: $tenantIds, tenantTags: $tenantTags, maxAgeSeconds: $maxAgeSeconds) {
    totalCount
    pageInfo { endCursor }
    tenantOutcomes { tenantId ok }
  }
}`;

const TENANT_INCIDENTS = `query($first: Int, $after: String, $filter: IncidentFilter, $maxAgeSeconds: Int) {
  tenants(first: 3) { edges { node { id incidents(first: $first, after: $after, filter: $filter, maxAgeSeconds: $maxAgeSeconds) { totalCount pageInfo { endCursor } } } } }
}`;

/**
 * Refused arguments cost nothing upstream: every argument of every field that reaches tenants is checked
 * before the registry is asked for the tenants, before any token request and before any incident list.
 * A fresh server (cold token cache, no tenant synced yet, and no background sync engine: INCIDENT_SYNC off,
 * so every call the sandbox counts is one a query caused; a query waits for a tenant's whole first sync)
 * answers each bad argument with BAD_USER_INPUT naming the field, and the sandbox's token and list
 * counters stay at zero. The last tests show that a valid query does call upstream (a tenant never synced,
 * or `maxAgeSeconds: 0` on one synced before), so the zeros mean something.
 */
describe("argument validation before any tenant load, token or upstream call", () => {
  let runtime: Runtime;
  const logs = captureLogger("trace");
  /** Registry reads that load tenants for a query (`list` and `getMany`), counted around the store. */
  const registry = { loads: 0 };

  const upstream = () => {
    const c = runtime.sandbox!.context.counterSnapshot().byEndpoint;
    return { token: c.token ?? 0, list: (c["defender.list"] ?? 0) + (c["graph.list"] ?? 0), total: runtime.sandbox!.context.counterSnapshot().total };
  };
  const gql = (query: string, variables?: Record<string, unknown>) => postGraphQL(runtime.url, query, variables);

  /** Asserts BAD_USER_INPUT on `field`, no 500, and no upstream call (and, unless `registryAllowed`, no registry load). */
  const refuse = async (
    label: string,
    query: string,
    variables: Record<string, unknown> | undefined,
    field: string,
    options: { registryAllowed?: boolean } = {},
  ): Promise<GraphQLResponse> => {
    const before = { ...upstream(), loads: registry.loads };
    const result = await gql(query, variables);
    assert.notEqual(result.status, 500, `${label}: ${result.text.slice(0, 300)}`);
    const error = result.body.errors?.[0];
    assert.equal(error?.extensions?.code, "BAD_USER_INPUT", `${label}: ${result.text.slice(0, 300)}`);
    assert.equal(error?.extensions?.field, field, `${label}: ${result.text.slice(0, 300)}`);
    const now = upstream();
    assert.equal(now.token, before.token, `${label}: no token request`);
    assert.equal(now.list, before.list, `${label}: no incident list call`);
    assert.equal(now.total, before.total, `${label}: no upstream call at all`);
    if (!options.registryAllowed) assert.equal(registry.loads, before.loads, `${label}: no tenant loaded from the registry`);
    return result;
  };

  before(async () => {
    runtime = await startRuntime(
      loadConfig({ PORT: "0", LOG_LEVEL: "trace", DATA_DIR: "memory://", INCIDENT_SYNC: "false", INCIDENT_FIRST_LOAD_WAIT_MS: "60000", SANDBOX_INCIDENTS: "30" }),
      { logger: logs.logger },
    );
    const tenants = runtime.app.store.tenants;
    const list = tenants.list.bind(tenants);
    const getMany = tenants.getMany.bind(tenants);
    tenants.list = (...args) => {
      registry.loads++;
      return list(...args);
    };
    tenants.getMany = (...args) => {
      registry.loads++;
      return getMany(...args);
    };
  });
  after(async () => {
    await runtime.close();
  });

  const tenantId = () => runtime.sandbox!.tenants.find((t) => t.resources.defender && t.consent.granted)!.id;

  it("starts cold: nothing has called upstream yet", () => {
    assert.deepEqual(upstream(), { token: 0, list: 0, total: 0 });
  });

  it("incidents: page size, malformed and foreign cursors, assignee filters, tenant lists, maxAgeSeconds", async () => {
    const tenantsCursor = (await gql("{ tenants(first: 1) { pageInfo { endCursor } } }")).body.data.tenants.pageInfo.endCursor;
    assert.ok(tenantsCursor);
    assert.ok(registry.loads > 0, "registry loads are counted");
    const cases: [string, Record<string, unknown>, string][] = [
      ["first -1", { first: -1 }, "first"],
      ["first 501", { first: 501 }, "first"],
      ["first 501 with tenantIds", { first: 501, tenantIds: [tenantId()] }, "first"],
      ["malformed cursor", { after: "not-a-cursor" }, "after"],
      ["a cursor of another field (tenants)", { after: tenantsCursor }, "after"],
      ["a cursor far too long", { after: "A".repeat(5000) }, "after"],
      ["assignedTo with unassigned", { filter: { assignedTo: "analyst@partner.example", unassigned: true } }, "filter.unassigned"],
      ["blank assignedTo", { filter: { assignedTo: "   " } }, "filter.assignedTo"],
      ["empty assignedTo", { filter: { assignedTo: "" }, tenantIds: [tenantId()] }, "filter.assignedTo"],
      ["assignedTo too long", { filter: { assignedTo: "a".repeat(257) } }, "filter.assignedTo"],
      ["search too long", { filter: { search: "a".repeat(201) } }, "filter.search"],
      ["a malformed tenant id", { tenantIds: [tenantId(), "contoso"] }, "tenantIds"],
      ["too many tenant ids", { tenantIds: Array.from({ length: 1001 }, () => tenantId()) }, "tenantIds"],
      ["too many tenant tags", { tenantTags: Array.from({ length: 101 }, (_, i) => `t${i}`) }, "tenantTags"],
      ["a tenant tag too long", { tenantTags: ["x".repeat(65)] }, "tenantTags"],
      ["maxAgeSeconds -1", { maxAgeSeconds: -1 }, "maxAgeSeconds"],
      ["maxAgeSeconds past a day", { maxAgeSeconds: 86_401, tenantIds: [tenantId()] }, "maxAgeSeconds"],
    ];
    for (const [label, variables, field] of cases) await refuse(label, INCIDENTS, variables, field);
    assert.deepEqual(upstream(), { token: 0, list: 0, total: 0 });
  });

  it("Tenant.incidents: the same checks, before the tenant's incidents are loaded", async () => {
    for (const [label, variables, field] of [
      ["first 501", { first: 501 }, "first"],
      ["first -1", { first: -1 }, "first"],
      ["malformed cursor", { after: "%%%" }, "after"],
      ["blank assignedTo", { filter: { assignedTo: "" } }, "filter.assignedTo"],
      ["search too long", { filter: { search: "b".repeat(201) } }, "filter.search"],
      ["maxAgeSeconds -1", { maxAgeSeconds: -1 }, "maxAgeSeconds"],
      ["maxAgeSeconds past a day", { maxAgeSeconds: 86_401 }, "maxAgeSeconds"],
    ] as const) {
      // The parent `tenants` field reads the registry by design; its `incidents` go no further.
      await refuse(label, TENANT_INCIDENTS, variables, field, { registryAllowed: true });
    }
    assert.deepEqual(upstream(), { token: 0, list: 0, total: 0 });
  });

  it("incident and updateIncident: ids and every input field, before the tenant is looked up", async () => {
    const t = tenantId();
    await refuse("incident id", `query($t: ID!, $i: ID!) { incident(tenantId: $t, incidentId: $i) { status } }`, { t, i: "1; DROP" }, "incidentId");
    await refuse("incident id too long", `query($t: ID!, $i: ID!) { incident(tenantId: $t, incidentId: $i) { status } }`, { t, i: "9".repeat(100_000) }, "incidentId");
    await refuse("tenant id", `query($t: ID!) { incident(tenantId: $t, incidentId: "1") { status } }`, { t: "not-a-tenant" }, "id");
    const update = `mutation($t: ID!, $input: UpdateIncidentInput!) { updateIncident(tenantId: $t, incidentId: "1", input: $input) { status } }`;
    await refuse("comment too long", update, { t, input: { comment: "c".repeat(4001) } }, "comment");
    await refuse("blank comment", update, { t, input: { comment: "  " } }, "comment");
    await refuse("assignedTo too long", update, { t, input: { assignedTo: "a".repeat(257) } }, "assignedTo");
    await refuse("a tag too long", update, { t, input: { tags: ["t".repeat(129)] } }, "tags");
    await refuse("nothing to change", update, { t, input: {} }, "input");
    assert.deepEqual(upstream(), { token: 0, list: 0, total: 0 });
  });

  it("a 40,000-character search is BAD_USER_INPUT, not a 500, and never reaches the log", async () => {
    const marker = `needle-${randomUUID()}`;
    const search = `${marker}${"(".repeat(40_000 - marker.length)}`;
    const byVariable = await refuse("search variable", INCIDENTS, { filter: { search } }, "filter.search");
    assert.match(byVariable.body.errors![0]!.message, /at most 200 characters/);
    assert.ok(!byVariable.text.includes(marker), "the answer does not repeat the text");
    await refuse("search literal", `{ incidents(filter: { search: ${JSON.stringify(search)} }) { totalCount } }`, undefined, "filter.search");
    await refuse("search in Tenant.incidents", TENANT_INCIDENTS, { filter: { search } }, "filter.search", { registryAllowed: true });
    await refuse("tenants search", "query($s: String) { tenants(filter: { search: $s }) { totalCount } }", { s: search }, "filter.search");
    assert.deepEqual(upstream(), { token: 0, list: 0, total: 0 });
    assert.ok(logs.lines.some((l) => l.includes('"graphql operation"') && l.includes("BAD_USER_INPUT")), "the operations were logged");
    assert.ok(!logs.lines.some((l) => l.includes(marker) || l.includes("((((((((((")), "no log line holds the search text");
  });

  it("every other string argument is bounded, naming the field and the limit", async () => {
    const t = tenantId();
    const long = (n: number) => "x".repeat(n);
    const cases: [string, string, Record<string, unknown>, string][] = [
      ["registerTenant displayName", "mutation($n: String!) { registerTenant(input: { id: \"00000000-0000-4000-8000-00000000abcd\", displayName: $n }) { id } }", { n: long(257) }, "displayName"],
      ["registerTenant tags", "mutation($tags: [String!]) { registerTenant(input: { id: \"00000000-0000-4000-8000-00000000abcd\", displayName: \"n\", tags: $tags }) { id } }", { tags: [long(65)] }, "tags"],
      ["updateTenant displayName", "mutation($id: ID!, $n: String) { updateTenant(id: $id, input: { displayName: $n }) { id } }", { id: t, n: long(257) }, "displayName"],
      ["tenants tags", "query($tags: [String!]) { tenants(filter: { tags: $tags }) { totalCount } }", { tags: [long(65)] }, "filter.tags"],
      ["tenants after", "query($a: String) { tenants(after: $a) { totalCount } }", { a: long(1025) }, "after"],
      ["createApiKey name", "mutation($n: String!) { createApiKey(input: { name: $n, role: READER, allTenants: true }) { key } }", { n: long(129) }, "name"],
      ["createApiKey tenantTags", "mutation($tags: [String!]) { createApiKey(input: { name: \"k\", role: READER, tenantTags: $tags }) { key } }", { tags: [long(65)] }, "tenantTags"],
      ["revokeApiKey id", "mutation($id: ID!) { revokeApiKey(id: $id) { id } }", { id: long(65) }, "id"],
      ["apiKeys after", "query($a: String) { apiKeys(after: $a) { edges { cursor } } }", { a: long(1025) }, "after"],
      ["auditEvents actorId", "query($s: String) { auditEvents(filter: { actorId: $s }) { edges { cursor } } }", { s: long(257) }, "filter.actorId"],
      ["auditEvents after", "query($a: String) { auditEvents(after: $a) { edges { cursor } } }", { a: long(1025) }, "after"],
    ];
    for (const [label, query, variables, field] of cases) {
      const result = await refuse(label, query, variables, field);
      assert.match(result.body.errors![0]!.message, /at most \d+/, label);
    }
    assert.deepEqual(upstream(), { token: 0, list: 0, total: 0 });
  });

  it("a valid query does call upstream (the tenant was never synced), and a cursor is only good for its own query", async () => {
    const t = tenantId();
    // maxAgeSeconds 0: once the tenant is synced, every load of it that gets past the arguments syncs it again.
    const mine = { tenantIds: [t], first: 2, filter: { severity: ["HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNKNOWN"] }, maxAgeSeconds: 0 };
    const first = await gql(INCIDENTS, mine);
    assert.equal(first.body.errors, undefined, first.text.slice(0, 300));
    const cold = upstream();
    assert.ok(cold.token >= 1 && cold.list >= 1, `the first valid query fetched: ${JSON.stringify(cold)}`);
    const cursor = first.body.data.incidents.pageInfo.endCursor;
    assert.ok(cursor);

    // Foreign cursors, refused before the (maxAgeSeconds 0, so upstream-bound) load: another filter, other tenants, another field.
    await refuse("cursor of another filter", INCIDENTS, { ...mine, filter: { severity: ["HIGH"] }, after: cursor }, "after");
    await refuse("cursor of other tenants", INCIDENTS, { ...mine, tenantIds: undefined, after: cursor }, "after");
    await refuse("cursor of another order", INCIDENTS, { ...mine, orderBy: { field: "CREATED_TIME", direction: "DESC" }, after: cursor }, "after");
    await refuse("cursor of another field", TENANT_INCIDENTS, { first: 2, filter: mine.filter, after: cursor, maxAgeSeconds: 0 }, "after", { registryAllowed: true });

    // Its own query takes it, and (maxAgeSeconds 0) that load goes upstream: the zeros above were not for want of a sync.
    const before = upstream();
    const next = await gql(INCIDENTS, { ...mine, after: cursor });
    assert.equal(next.body.errors, undefined, next.text.slice(0, 300));
    assert.ok(upstream().list > before.list, "the accepted page (maxAgeSeconds 0) synced the tenant again");
  });
});
