import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { buildSchema, parse } from "graphql";
import { COST_WEIGHTS, estimateCost } from "../../../src/http/limits.js";

const schema = buildSchema(readFileSync(new URL("../../../schema.graphql", import.meta.url), "utf8"));
const ids = (n: number) => Array.from({ length: n }, (_, i) => `${String(i).padStart(8, "0")}-0000-4000-8000-000000000000`);
const cost = (query: string, variables: Record<string, unknown> = {}, visibleTenants = 0, operationName?: string) =>
  estimateCost({ schema, document: parse(query), variables, visibleTenants, operationName });

/** A typical dashboard page: 50 incidents with their alerts, across the given tenants. */
const QUEUE = `query($ids: [ID!], $first: Int) {
  incidents(tenantIds: $ids, first: $first) {
    totalCount
    edges { cursor node { tenantId incidentId incidentName severity status createdTime lastUpdateTime assignedTo alerts { title severity } } }
    tenantOutcomes { tenantId ok error { code } }
  }
}`;

describe("estimateCost", () => {
  it("counts tenant fan-out: the same page costs more over 1,000 tenants than over one, and fits the default limit", () => {
    const one = cost(QUEUE, { ids: ids(1), first: 50 });
    const thousand = cost(QUEUE, { ids: ids(1000), first: 50 });
    assert.equal(thousand - one, 999 * COST_WEIGHTS.tenantFanOut);
    assert.ok(thousand < 50_000, `1,000 tenants cost ${thousand}`);
    assert.ok(one < 2_000, `one tenant costs ${one}`);
    // Without tenantIds the query spans every tenant the caller may see.
    assert.equal(cost(QUEUE, { first: 50 }, 1000), thousand);
  });

  it("multiplies by page sizes: first from variables or literals, the argument's default when omitted", () => {
    const literal = cost(`{ incidents(tenantIds: ["${ids(1)[0]}"], first: 10) { edges { node { incidentId } } } }`);
    const variable = cost(`query($n: Int) { incidents(tenantIds: ["${ids(1)[0]}"], first: $n) { edges { node { incidentId } } } }`, { n: 10 });
    assert.equal(literal, variable);
    // incidents: 1 + one tenant's fan-out; edges: 1; each of its 10 items: node 1 + incidentId 1
    assert.equal(literal, 1 + COST_WEIGHTS.tenantFanOut + 1 + 10 * 2);
    const bigger = cost(`{ incidents(tenantIds: ["${ids(1)[0]}"], first: 100) { edges { node { incidentId } } } }`);
    assert.ok(bigger > literal);
    const defaulted = cost(`{ incidents(tenantIds: ["${ids(1)[0]}"]) { edges { node { incidentId } } } }`);
    assert.ok(defaulted >= literal, "the schema default page size applies");
  });

  it("refuses the nested all-tenants, all-incidents, all-entities query under the default limit", () => {
    const nested = cost(
      "{ tenants(first: 100) { edges { node { id incidents(first: 100) { edges { node { incidentId alerts { title entities { entityType } } } } } } } } }",
    );
    assert.ok(nested > 50_000, `nested costs ${nested}`);
  });

  it("follows named and inline fragments, cuts fragment cycles, and ignores __typename", () => {
    const plain = cost(`{ incidents(tenantIds: ["${ids(1)[0]}"], first: 5) { edges { node { incidentId severity } } } }`);
    const fragments = cost(
      `query { incidents(tenantIds: ["${ids(1)[0]}"], first: 5) { __typename edges { node { ...Row } } } } fragment Row on Incident { incidentId ... on Incident { severity } }`,
    );
    assert.equal(fragments, plain);
    const cyclic = cost("{ tenants { ...A } } fragment A on TenantConnection { totalCount ...B } fragment B on TenantConnection { ...A }");
    assert.ok(Number.isFinite(cyclic));
  });

  it("counts tenant fan-out of nested tenant fields, token diagnostics and single-incident operations", () => {
    const tokens = cost("query($ids: [ID!]!) { tokenDiagnostics(tenantIds: $ids) { ok } }", { ids: ids(10) });
    assert.equal(tokens, 1 + 10 * COST_WEIGHTS.tenantFanOut + COST_WEIGHTS.defaultListSize);
    const nestedTokens = cost("{ tenants(first: 20) { edges { node { token { ok } } } } }");
    // tenants 1, edges 1, then per each of 20 edges: node, token (+ its tenant's fan-out), ok
    assert.equal(nestedTokens, 1 + 1 + 20 * (1 + 1 + COST_WEIGHTS.tenantFanOut + 1));
    const single = cost(`{ incident(tenantId: "${ids(1)[0]}", incidentId: "1") { incidentId } }`);
    assert.equal(single, 1 + COST_WEIGHTS.tenantFanOut + 1);
    const named = cost("query A { viewer { id } } query B { tenants { totalCount } }", {}, 0, "A");
    assert.equal(named, 2);
  });

  it("is monotonic in tenants and page size", () => {
    let previous = -1;
    for (const n of [1, 2, 10, 100, 1000]) {
      const next = cost(QUEUE, { ids: ids(n), first: 50 });
      assert.ok(next > previous);
      previous = next;
    }
    assert.ok(cost(QUEUE, { ids: ids(5), first: 51 }) > cost(QUEUE, { ids: ids(5), first: 50 }));
  });
});
