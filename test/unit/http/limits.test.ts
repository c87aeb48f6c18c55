import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { buildSchema, getIntrospectionQuery, Kind, parse, type DocumentNode, type OperationDefinitionNode } from "graphql";
import { COST_WEIGHTS, estimateCost } from "../../../src/http/limits.js";

const root = new URL("../../../", import.meta.url);
const schema = buildSchema(readFileSync(new URL("schema.graphql", root), "utf8"));
const DEFAULT_MAX_COST = 50_000;
const { field: F, tenantFanOut: T, defaultListSize: L } = COST_WEIGHTS;
const ids = (n: number) => Array.from({ length: n }, (_, i) => `${String(i).padStart(8, "0")}-0000-4000-8000-000000000000`);
const TENANT = ids(1)[0]!;
const cost = (query: string, variables: Record<string, unknown> = {}, visibleTenants = 0, operationName?: string) =>
  estimateCost({ schema, document: parse(query), variables, visibleTenants, operationName });

/** A typical dashboard page: incidents with their usual fields and alerts, across the given tenants. */
const PAGE = `query($ids: [ID!], $first: Int) {
  incidents(tenantIds: $ids, first: $first) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { tenantId incidentId incidentName severity status createdTime lastUpdateTime alerts { title severity } } }
  }
}`;
/** Every tenant (a page of 100), each with 100 incidents, each with its alerts and their entities. */
const NESTED =
  "{ tenants(first: 100) { edges { node { incidents(first: 100) { edges { node { alerts { entities { type } } } } } } } } }";

function operationsOf(document: DocumentNode): { name: string; document: DocumentNode }[] {
  const fragments = document.definitions.filter((d) => d.kind === Kind.FRAGMENT_DEFINITION);
  return document.definitions
    .filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION)
    .map((operation, i) => ({
      name: operation.name?.value ?? `#${i + 1}`,
      document: { ...document, definitions: [operation, ...fragments] },
    }));
}

describe("estimateCost", () => {
  it("counts tenant fan-out: a 50-incident page over 1,000 tenants costs more than over one, and both fit the default limit", () => {
    const one = cost(PAGE, { ids: ids(1), first: 50 });
    const hundred = cost(PAGE, { ids: ids(100), first: 50 });
    const thousand = cost(PAGE, { ids: ids(1000), first: 50 });
    // incidents, totalCount, pageInfo + 2, edges; 50 × (cursor, node, 7 fields, alerts + 10 × 2); one tenant
    assert.equal(one, 6 * F + 50 * (10 * F + L * 2 * F) + T);
    assert.deepEqual([one, hundred, thousand], [1_526, 3_506, 21_506]);
    assert.equal(thousand - one, 999 * T);
    assert.ok(thousand < DEFAULT_MAX_COST / 2, `1,000 tenants cost ${thousand}`);
    // Without tenantIds the query spans every tenant the caller may see; with tenantTags only, too.
    assert.equal(cost(PAGE, { first: 50 }, 1000), thousand);
    assert.equal(cost(PAGE, { ids: null, first: 50 }, 1000), thousand);
    const tagged = `{ incidents(tenantTags: ["eu"], first: 50) { edges { node { incidentId } } } }`;
    assert.equal(cost(tagged, {}, 1000) - cost(tagged, {}, 1), 999 * T);
    // An empty tenantIds spans no tenant.
    assert.equal(cost(PAGE, { ids: [], first: 50 }), one - T);
  });

  it("counts huntingQuery's tenant fan-out like incidents: its tenantIds, or every visible tenant", () => {
    const hunt = `query($ids: [ID!], $tags: [String!]) {
      huntingQuery(query: "AlertInfo | take 10", tenantIds: $ids, tenantTags: $tags, first: 10) {
        totalCount
        edges { cursor node }
        tenantOutcomes { tenantId ok }
      }
    }`;
    const one = cost(hunt, { ids: ids(1) });
    const thousand = cost(hunt, { ids: ids(1000) });
    assert.equal(thousand - one, 999 * T);
    // Without tenantIds it spans every tenant the caller may see; tenantTags alone do not bound it.
    assert.equal(cost(hunt, {}, 1000), thousand);
    assert.equal(cost(hunt, { tags: ["eu"] }, 1000) - cost(hunt, { tags: ["eu"] }, 1), 999 * T);
    // huntingQuery + its tenant, totalCount, edges; 10 × (cursor, node); tenantOutcomes; 10 × 2 fields
    assert.equal(one, F + T + F + F + 10 * 2 * F + F + L * 2 * F);
    assert.ok(thousand < DEFAULT_MAX_COST / 2, `1,000 tenants cost ${thousand}`);
  });

  it("refuses the nested all-tenants × 100 incidents × alerts × entities query under the default limit", () => {
    const nested = cost(NESTED);
    // tenants, edges; 100 × (node, incidents + its tenant, edges; 100 × (node, alerts; 10 × (entities; 10 × type)))
    assert.equal(nested, 2 * F + 100 * (3 * F + T + 100 * (2 * F + L * (F + L * F))));
    assert.equal(nested, 1_122_302);
    assert.ok(nested > 20 * DEFAULT_MAX_COST);
  });

  it("multiplies by page sizes: first from variables or literals, the variable's or the argument's default when omitted", () => {
    const literal = cost(`{ incidents(tenantIds: ["${TENANT}"], first: 10) { edges { node { incidentId } } } }`);
    const variable = cost(`query($n: Int) { incidents(tenantIds: ["${TENANT}"], first: $n) { edges { node { incidentId } } } }`, { n: 10 });
    assert.equal(literal, variable);
    // incidents: 1 + one tenant's fan-out; edges: 1; each of its 10 items: node 1 + incidentId 1
    assert.equal(literal, F + T + F + 10 * 2 * F);
    const page = (first: string) => cost(`{ incidents(tenantIds: ["${TENANT}"]${first}) { edges { node { incidentId } } } }`);
    assert.ok(page(", first: 100") > literal);
    // `first` omitted or null: the schema's default (50).
    assert.equal(page(""), page(", first: 50"));
    assert.equal(page(", first: null"), page(", first: 50"));
    // A variable's own default applies when the variable is not sent.
    const defaulted = `query($n: Int = 500) { incidents(tenantIds: ["${TENANT}"], first: $n) { edges { node { incidentId } } } }`;
    assert.equal(cost(defaulted), page(", first: 500"));
    assert.equal(cost(defaulted, { n: 5 }), page(", first: 5"));
  });

  it("reads tenantIds from literals and variables alike, a single value as a one-item list", () => {
    const q = (arg: string) => `query($ids: [ID!]) { incidents(tenantIds: ${arg}, first: 1) { totalCount } }`;
    const literal = cost(q(`["${ids(3).join('", "')}"]`));
    assert.equal(cost(q("$ids"), { ids: ids(3) }), literal);
    assert.equal(literal, 2 * F + 3 * T);
    // Input coercion turns one ID into a list of one, as execution will.
    assert.equal(cost(q("$ids"), { ids: TENANT }, 1000), 2 * F + T);
  });

  it("follows named and inline fragments, ignores __typename, and costs a fragment spread twice twice", () => {
    const plain = cost(`{ incidents(tenantIds: ["${TENANT}"], first: 5) { edges { node { incidentId severity } } } }`);
    const fragments = cost(
      `query { incidents(tenantIds: ["${TENANT}"], first: 5) { __typename ...Page } }
       fragment Page on IncidentConnection { edges { node { ...Row } } }
       fragment Row on Incident { incidentId ... on Incident { severity } ... { __typename } }`,
    );
    assert.equal(fragments, plain);
    const twice = cost(`{ serverInfo { ...Info ...Info } } fragment Info on ServerInfo { mode }`);
    assert.equal(twice, 3 * F);
  });

  it("estimates fragment bombs in linear time and cuts fragment cycles", () => {
    const levels = 60;
    let fragments = "";
    for (let i = 0; i < levels; i++) fragments += ` fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`;
    fragments += ` fragment F${levels} on Query { serverInfo { mode } }`;
    // Estimated without walking 2^60 spreads: a walk would never return (no wall-clock bound, which load stretches).
    const bomb = cost(`{ ...F0 }${fragments}`);
    assert.ok(bomb > DEFAULT_MAX_COST, `the bomb costs ${bomb}`);
    assert.ok(bomb <= Number.MAX_SAFE_INTEGER);
    const cyclic = cost("{ tenants { ...A } } fragment A on TenantConnection { totalCount ...B } fragment B on TenantConnection { ...A }");
    assert.equal(cyclic, 2 * F);
  });

  it("counts tenant fan-out of nested tenant fields, token diagnostics and single-incident operations", () => {
    const tokens = cost("query($ids: [ID!]!) { tokenDiagnostics(tenantIds: $ids) { ok } }", { ids: ids(10) });
    assert.equal(tokens, F + 10 * T + L * F);
    const nestedTokens = cost("{ tenants(first: 20) { edges { node { token { ok } } } } }");
    // tenants 1, edges 1, then per each of 20 edges: node, token (+ its tenant's fan-out), ok
    assert.equal(nestedTokens, 2 * F + 20 * (3 * F + T));
    const summaries = cost("{ tenants(first: 20) { edges { node { incidentSummary { total } incidents(first: 1) { totalCount } } } } }");
    assert.equal(summaries, 2 * F + 20 * (F + 2 * (2 * F + T)));
    const single = cost(`{ incident(tenantId: "${TENANT}", incidentId: "1") { incidentId } }`);
    assert.equal(single, 2 * F + T);
    const update = cost(`mutation { updateIncident(tenantId: "${TENANT}", incidentId: "1", input: { status: RESOLVED }) { status } }`);
    assert.equal(update, 2 * F + T);
    const named = cost("query A { viewer { id } } query B { tenants { totalCount } }", {}, 0, "A");
    assert.equal(named, 2 * F);
    assert.equal(cost("query A { viewer { id } } query B { viewer { id } }"), 0, "no operation chosen: nothing to estimate");
  });

  it("counts unknown fields and introspection one per field: GraphiQL's introspection query stays cheap", () => {
    assert.equal(cost("{ nope { deeper { deepest } } }"), 3 * F);
    const introspection = cost(
      getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true }),
    );
    assert.ok(introspection < 1_000, `introspection costs ${introspection}`);
  });

  it("is monotonic in tenants, visible tenants and page size", () => {
    let previous = -1;
    for (const n of [0, 1, 2, 10, 100, 1000]) {
      const next = cost(PAGE, { ids: ids(n), first: 50 });
      assert.ok(next > previous);
      assert.equal(cost(PAGE, { first: 50 }, n), next);
      previous = next;
    }
    assert.ok(cost(PAGE, { ids: ids(5), first: 51 }) > cost(PAGE, { ids: ids(5), first: 50 }));
  });

  it("keeps every operation in operations/ and every README example far below the default limit, at 1,000 tenants", () => {
    const documents: { label: string; document: DocumentNode }[] = [];
    for (const file of readdirSync(new URL("operations/", root)).filter((f) => f.endsWith(".graphql"))) {
      documents.push({ label: file, document: parse(readFileSync(new URL(`operations/${file}`, root), "utf8")) });
    }
    const readme = readFileSync(new URL("README.md", root), "utf8");
    for (const [, block] of readme.matchAll(/```graphql\n([\s\S]*?)```/g)) {
      // Some README blocks are several documents or SDL; each operation of those that parse counts.
      for (const part of block!.split(/\n(?=\{|query|mutation)/)) {
        try {
          documents.push({ label: `README: ${part.slice(0, 40)}`, document: parse(part) });
        } catch {
          // not an executable document (SDL)
        }
      }
    }
    const variables = { tenantIds: ids(1000), first: 50 };
    let checked = 0;
    for (const { label, document } of documents) {
      for (const operation of operationsOf(document)) {
        if (!operation.document.definitions.some((d) => d.kind === Kind.OPERATION_DEFINITION && d.selectionSet.selections.length > 0)) continue;
        const estimate = estimateCost({ schema, document: operation.document, variables, visibleTenants: 1000 });
        assert.ok(estimate > 0 && estimate < 0.7 * DEFAULT_MAX_COST, `${label} ${operation.name}: ${estimate}`);
        checked++;
      }
    }
    assert.ok(checked >= 15, `checked ${checked} operations`);
  });
});

describe("estimateCost over a federation subgraph's _entities", () => {
  const subgraph = buildSchema(`
    scalar _Any
    union _Entity = Tenant
    type Query { _entities(representations: [_Any!]!): [_Entity]! }
    type Tenant { id: ID! displayName: String! incidents(first: Int = 50): IncidentConnection! }
    type IncidentConnection { totalCount: Int! }
  `);
  const entities = (n: number, selection: string) =>
    estimateCost({
      schema: subgraph,
      document: parse(`query($r: [_Any!]!) { _entities(representations: $r) { ... on Tenant { ${selection} } } }`),
      variables: { r: Array.from({ length: n }, (_, i) => ({ __typename: "Tenant", id: String(i) })) },
      visibleTenants: 0,
    });

  it("multiplies by the number of representations, tenant fan-out included", () => {
    assert.equal(entities(7, "id displayName"), F + 7 * 2 * F);
    assert.equal(entities(7, "incidents { totalCount }"), F + 7 * (2 * F + T));
    assert.ok(entities(700, "incidents { totalCount }") > entities(7, "incidents { totalCount }"));
  });

  it("adds one tenant fan-out per distinct tenant of its Incident representations", () => {
    const schema = buildSchema(`
      scalar _Any
      union _Entity = Incident
      type Query { _entities(representations: [_Any!]!): [_Entity]! }
      type Incident { incidentId: ID! }
    `);
    const costOf = (representations: unknown[]) =>
      estimateCost({
        schema,
        document: parse(`query($r: [_Any!]!) { _entities(representations: $r) { ... on Incident { incidentId } } }`),
        variables: { r: representations },
        visibleTenants: 0,
      });
    const incident = (tenantId: string, i: number) => ({ __typename: "Incident", tenantId, incidentId: String(i) });
    assert.equal(costOf([incident("a", 1), incident("a", 2)]), F + 2 * F + T);
    assert.equal(costOf([incident("a", 1), incident("b", 2), incident("B", 3)]), F + 3 * F + 2 * T);
    assert.equal(costOf(Array.from({ length: 1000 }, (_, i) => incident(`t${i}`, i))), F + 1000 * F + 1000 * T);
  });
});
