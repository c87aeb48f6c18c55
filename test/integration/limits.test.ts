import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { ApolloServer } from "@apollo/server";
import type { Config } from "../../src/config.js";
import { formatError } from "../../src/errors.js";
import { COST_WEIGHTS, createQueryLimits } from "../../src/http/limits.js";
import type { GraphQLContext } from "../../src/resolvers/context.js";

/**
 * The limits on a tiny Apollo server (not the app): each hostile operation is refused with its code and a
 * message naming the limit, before any resolver runs (counted), and the caller's tenant count is asked for
 * only when the cost needs it.
 */
describe("operation limits on an Apollo server", () => {
  const limits: Config["limits"] = {
    maxDepth: 6,
    maxAliases: 3,
    maxDirectives: 3,
    maxTokens: 1_000,
    maxCost: 2_000,
    bodyLimitBytes: 1024 * 1024,
    introspection: true,
    federationTracing: false,
  };
  const typeDefs = `#graphql
    type Query {
      incidents(tenantIds: [ID!], tenantTags: [String!], first: Int = 50): IncidentConnection!
      folder: Folder!
      serverInfo: ServerInfo!
      _entities(representations: [_Any!]!): [_Entity]!
    }
    scalar _Any
    union _Entity = Incident
    type IncidentConnection { totalCount: Int! edges: [IncidentEdge!]! }
    type IncidentEdge { node: Incident! }
    type Incident { incidentId: ID! severity: String! alerts: [Alert!]! }
    type Alert { title: String }
    type Folder { name: String! child: Folder }
    type ServerInfo { mode: String! version: String! }
  `;
  let resolverCalls = 0;
  let tenantCountCalls = 0;
  let visibleTenants = 10;
  const contextValue = { requestId: "limits-test" } as unknown as GraphQLContext;
  const folder = (depth: number): unknown => ({ name: `f${depth}`, child: () => (depth < 20 ? folder(depth + 1) : null) });
  const resolvers = {
    Query: {
      incidents: () => {
        resolverCalls++;
        return { totalCount: 1, edges: [{ node: { incidentId: "1", severity: "HIGH", alerts: [{ title: "t" }] } }] };
      },
      folder: () => {
        resolverCalls++;
        return folder(0);
      },
      serverInfo: () => {
        resolverCalls++;
        return { mode: "SANDBOX", version: "test" };
      },
      _entities: (_: unknown, args: { representations: unknown[] }) => {
        resolverCalls++;
        return args.representations.map(() => null);
      },
    },
    _Entity: { __resolveType: () => "Incident" },
  };
  let server: ApolloServer<GraphQLContext>;

  before(async () => {
    const queryLimits = createQueryLimits({
      limits,
      async visibleTenantCount(context) {
        // Apollo hands plugins a shallow copy of the request's context.
        assert.equal(context.requestId, contextValue.requestId, "asked with the request's context");
        tenantCountCalls++;
        return visibleTenants;
      },
    });
    server = new ApolloServer<GraphQLContext>({
      typeDefs,
      resolvers,
      formatError,
      includeStacktraceInErrorResponses: false,
      parseOptions: queryLimits.parseOptions,
      validationRules: queryLimits.validationRules,
      plugins: [queryLimits.plugin],
    });
    await server.start();
  });
  after(async () => {
    await server.stop();
  });
  beforeEach(() => {
    resolverCalls = 0;
    tenantCountCalls = 0;
    visibleTenants = 10;
  });

  const run = async (query: string, variables?: Record<string, unknown>) => {
    const response = await server.executeOperation({ query, ...(variables ? { variables } : {}) }, { contextValue });
    assert.equal(response.body.kind, "single");
    const result = response.body.kind === "single" ? response.body.singleResult : {};
    return { status: response.http.status, data: result.data, errors: result.errors ?? [] };
  };
  /** Runs a query that must be refused with `code` (and no data, no resolver call); returns its first error. */
  const refuse = async (query: string, code: string, variables?: Record<string, unknown>) => {
    const result = await run(query, variables);
    assert.equal(result.status, 400, JSON.stringify(result.errors));
    assert.equal(result.data, undefined);
    assert.equal(result.errors[0]?.extensions?.code, code, JSON.stringify(result.errors));
    for (const error of result.errors) {
      assert.doesNotMatch(error.message, /Maximum call stack|Syntax Error: Query|Did you mean/);
      assert.equal(error.extensions?.stacktrace, undefined);
      assert.equal(error.extensions?.http, undefined);
    }
    assert.equal(resolverCalls, 0, "no resolver ran");
    return result.errors[0]!;
  };

  it("answers a fine query, without asking for the tenant count when nothing needs it", async () => {
    const result = await run("{ serverInfo { mode } folder { name child { name } } }");
    assert.deepEqual(result.errors, []);
    assert.deepEqual(JSON.parse(JSON.stringify(result.data)), { serverInfo: { mode: "SANDBOX" }, folder: { name: "f0", child: { name: "f1" } } });
    assert.equal(resolverCalls, 2);
    const listed = await run('{ incidents(tenantIds: ["a", "b"], first: 5) { totalCount edges { node { incidentId } } } }');
    assert.deepEqual(listed.errors, []);
    assert.equal(tenantCountCalls, 0, "tenantIds given: no count");
    const spanning = await run("{ incidents(first: 5) { totalCount } }");
    assert.deepEqual(spanning.errors, []);
    assert.equal(tenantCountCalls, 1, "no tenantIds: the caller's tenants are counted, once");
    assert.equal(resolverCalls, 4);
  });

  it("refuses a query deeper than the limit, with or without fragments", async () => {
    const deep = "{ folder { child { child { child { child { child { child { name } } } } } } } }";
    assert.equal((await refuse(deep, "GRAPHQL_VALIDATION_FAILED")).message, "Query depth 8 exceeds the limit of 6");
    const viaFragments = "{ folder { ...A } } fragment A on Folder { child { child { ...B } } } fragment B on Folder { child { child { child { child { name } } } } }";
    assert.equal((await refuse(viaFragments, "GRAPHQL_VALIDATION_FAILED")).message, "Query depth 8 exceeds the limit of 6");
    // At the limit: fine (fragment spreads are no level of their own).
    const atLimit = await run("{ folder { ...A } } fragment A on Folder { child { child { child { child { name } } } } }");
    assert.deepEqual(atLimit.errors, []);
  });

  it("refuses too many aliases; __typename aliases do not count", async () => {
    const aliases = "{ a: serverInfo { mode } b: serverInfo { mode } c: serverInfo { mode } d: serverInfo { mode } }";
    assert.equal((await refuse(aliases, "GRAPHQL_VALIDATION_FAILED")).message, "Query has 4 aliases, more than the limit of 3");
    const typenames = "{ a: serverInfo { t1: __typename t2: __typename t3: __typename t4: __typename } b: folder { name } c: folder { name } }";
    const result = await run(typenames);
    assert.deepEqual(result.errors, []);
  });

  it("refuses too many directives", async () => {
    const directives = "{ serverInfo @include(if: true) @include(if: true) { mode @skip(if: false) version @skip(if: false) } }";
    assert.equal((await refuse(directives, "GRAPHQL_VALIDATION_FAILED")).message, "Query has 4 directives, more than the limit of 3");
  });

  it("refuses a document with too many tokens while parsing", async () => {
    const fields = Array.from({ length: 1_000 }, () => "mode").join(" ");
    const error = await refuse(`{ serverInfo { ${fields} } }`, "GRAPHQL_PARSE_FAILED");
    // graphql-js's own wording ("more that"), hence the loose match.
    assert.match(error.message, /^Syntax Error: Document contains more tha. 1000 tokens/);
  });

  it("refuses a costly operation with its cost, counting the caller's tenants only when incidents spans them", async () => {
    visibleTenants = 1000;
    const spanning = "{ incidents(first: 5) { totalCount } }";
    const error = await refuse(spanning, "COST_LIMIT_EXCEEDED");
    const expected = 2 + 1000 * COST_WEIGHTS.tenantFanOut;
    assert.deepEqual(error.extensions, { code: "COST_LIMIT_EXCEEDED", cost: expected, maxCost: limits.maxCost });
    assert.equal(error.message, `Operation cost ${expected} exceeds the limit of 2000: ask for fewer tenants, smaller pages or fewer fields`);
    assert.equal(tenantCountCalls, 1);

    // The same through listed tenants: no count needed, one tenant fine, 100 too many.
    const listed = "query($ids: [ID!]) { incidents(tenantIds: $ids, first: 5) { totalCount } }";
    const ids = (n: number) => Array.from({ length: n }, (_, i) => `t${i}`);
    assert.equal((await refuse(listed, "COST_LIMIT_EXCEEDED", { ids: ids(100) })).extensions?.cost, 2 + 100 * COST_WEIGHTS.tenantFanOut);
    assert.equal(tenantCountCalls, 1);
    const one = await run(listed, { ids: ids(1) });
    assert.deepEqual(one.errors, []);
    assert.equal(resolverCalls, 1);

    // Page sizes multiply: 500 incidents × alerts of 10.
    resolverCalls = 0;
    await refuse('{ incidents(tenantIds: ["t"], first: 500) { edges { node { incidentId alerts { title } } } } }', "COST_LIMIT_EXCEEDED");
  });

  it("refuses circular fragments cleanly (graphql's NoFragmentCycles), not with a stack overflow", async () => {
    const selfSpread = "{ folder { ...A } } fragment A on Folder { name child { ...A } }";
    assert.match((await refuse(selfSpread, "GRAPHQL_VALIDATION_FAILED")).message, /^Cannot spread fragment "A" within itself\.$/);
    const cycle = "{ folder { ...A } } fragment A on Folder { child { ...B } } fragment B on Folder { name child { ...A } }";
    assert.match((await refuse(cycle, "GRAPHQL_VALIDATION_FAILED")).message, /^Cannot spread fragment "A" within itself via "B"\.$/);
    const aliasedCycle = "{ folder { ...A } } fragment A on Folder { x: child { ...B } } fragment B on Folder { y: child @include(if: true) { ...A } }";
    await refuse(aliasedCycle, "GRAPHQL_VALIDATION_FAILED");
    assert.equal(tenantCountCalls, 0);
  });

  it("refuses a fragment bomb for its cost, quickly", async () => {
    const levels = 40;
    let fragments = "";
    for (let i = 0; i < levels; i++) fragments += ` fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`;
    // 2^40 spreads: without memoised fragments this would never finish.
    await refuse(`{ ...F0 }${fragments} fragment F${levels} on Query { serverInfo { mode } }`, "COST_LIMIT_EXCEEDED");
  });

  it("costs _entities by its Incident representations' tenants and caps them like incidents(tenantIds:)", async () => {
    const query = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Incident { incidentId } } }";
    const incidents = (tenants: number, perTenant: number) =>
      Array.from({ length: tenants * perTenant }, (_, i) => ({ __typename: "Incident", tenantId: `T${i % tenants}`, incidentId: String(i) }));
    // 50 incidents of one tenant: one tenant's fan-out.
    const fine = await run(query, { r: incidents(1, 50) });
    assert.deepEqual(fine.errors, []);
    assert.equal(resolverCalls, 1);
    // 100 tenants' incidents reach 100 tenants: over the 2,000 of this server.
    resolverCalls = 0;
    const costly = await refuse(query, "COST_LIMIT_EXCEEDED", { r: incidents(100, 1) });
    assert.equal(costly.extensions?.cost, COST_WEIGHTS.field + 100 * COST_WEIGHTS.field + 100 * COST_WEIGHTS.tenantFanOut);
    // Tenant ids differing only in case are one tenant.
    const sameTenant = Array.from({ length: 60 }, (_, i) => ({ __typename: "Incident", tenantId: i % 2 ? "abc" : "ABC", incidentId: String(i) }));
    assert.deepEqual((await run(query, { r: sameTenant })).errors, []);
    // Beyond 1,000 tenants or 5,000 representations: refused as bad input, whatever the cost limit.
    resolverCalls = 0;
    const wide = await refuse(query, "BAD_USER_INPUT", { r: incidents(1001, 1) });
    assert.match(wide.message, /at most 1000 tenants/);
    await refuse(query, "BAD_USER_INPUT", { r: Array.from({ length: 5001 }, () => ({ __typename: "Tenant", id: "x" })) });
  });

  it("leaves nested introspection to graphql's MaxIntrospectionDepthRule (the depth limit ignores __schema)", async () => {
    const nested = "{ __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }";
    assert.match((await refuse(nested, "GRAPHQL_VALIDATION_FAILED")).message, /introspection depth/i);
    const shallow = await run("{ __schema { queryType { name fields { name type { name ofType { name ofType { name ofType { name } } } } } } } }");
    assert.deepEqual(shallow.errors, []);
  });
});
