import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { composeServices } from "@apollo/composition";
import { ApolloGateway, LocalGraphQLDataSource, RemoteGraphQLDataSource } from "@apollo/gateway";
import { ApolloServer } from "@apollo/server";
import { startStandaloneServer } from "@apollo/server/standalone";
import { buildSubgraphSchema } from "@apollo/subgraph";
import { parse } from "graphql";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import { postGraphQL } from "../helpers/graphql.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * A second subgraph of a partner's own: contracts that point at Crosswatch tenants, a contract tier on
 * Tenant and a ticket number on Incident, both added through the entity keys Crosswatch declares.
 */
const CONTRACTS_SDL = parse(`
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key", "@shareable"])

  type Query {
    contracts: [Contract!]!
    contractPage: ContractConnection!
  }

  type ContractConnection {
    contracts: [Contract!]!
    pageInfo: PageInfo!
  }

  # The same Relay type as Crosswatch's: composes because both say @shareable.
  type PageInfo @shareable {
    hasNextPage: Boolean!
    hasPreviousPage: Boolean!
    startCursor: String
    endCursor: String
  }

  type Contract {
    number: String!
    tenant: Tenant!
  }

  type Tenant @key(fields: "id") {
    id: ID!
    contractTier: String!
  }

  type Incident @key(fields: "tenantId incidentId") {
    tenantId: ID!
    incidentId: ID!
    ticketNumber: String!
  }
`);

function createContractsSubgraph(tenantIds: string[]) {
  const tier = (id: string) => (tenantIds.indexOf(id) === 0 ? "PLATINUM" : "STANDARD");
  const schema = buildSubgraphSchema({
    typeDefs: CONTRACTS_SDL,
    resolvers: {
      Query: {
        contracts: () => tenantIds.map((id, i) => ({ number: `C-${1000 + i}`, tenant: { id, contractTier: tier(id) } })),
        contractPage: () => ({
          contracts: tenantIds.map((id, i) => ({ number: `C-${1000 + i}`, tenant: { id, contractTier: tier(id) } })),
          pageInfo: { hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null },
        }),
      },
      Tenant: {
        __resolveReference: (ref: { id: string }) => ({ id: ref.id, contractTier: tier(ref.id) }),
      },
      Incident: {
        __resolveReference: (ref: { tenantId: string; incidentId: string }) => ({
          ...ref,
          ticketNumber: `TCK-${ref.tenantId.slice(0, 4)}-${ref.incidentId}`,
        }),
      },
    },
  });
  return { schema, tier };
}

describe("Crosswatch as a Federation 2 subgraph in a supergraph (@apollo/composition + @apollo/gateway)", () => {
  let runtime: Runtime;
  let contracts: ReturnType<typeof createContractsSubgraph>;
  let gatewayServer: ApolloServer;
  let gatewayUrl: string;
  let tenantIds: string[];
  /** Every `getMany` the tenant registry answers: the tenant loader's batches. */
  const registryBatches: string[][] = [];

  before(async () => {
    runtime = await startRuntime(loadConfig({ PORT: "0", LOG_LEVEL: "silent", DATA_DIR: "memory://" }));
    const tenants = runtime.app.store.tenants;
    const getMany = tenants.getMany.bind(tenants);
    tenants.getMany = async (ids) => {
      registryBatches.push([...ids]);
      return getMany(ids);
    };
    tenantIds = runtime.sandbox!.tenants.slice(0, 3).map((t) => t.id);
    contracts = createContractsSubgraph(tenantIds);

    // What Rover or a router reads from a running subgraph.
    const service = await postGraphQL(runtime.url, "{ _service { sdl } }");
    assert.equal(service.body.errors, undefined);
    const composed = composeServices([
      { name: "crosswatch", url: `${runtime.url}/graphql`, typeDefs: parse(service.body.data._service.sdl) },
      { name: "contracts", url: "http://127.0.0.1:9/unused-local-subgraph", typeDefs: CONTRACTS_SDL },
    ]);
    if (composed.errors) assert.fail(`composition failed: ${composed.errors.map((e) => e.message).join("; ")}`);

    const gateway = new ApolloGateway({
      supergraphSdl: composed.supergraphSdl,
      logger: silent,
      buildService: ({ name, url }) =>
        name === "contracts" ? new LocalGraphQLDataSource(contracts.schema) : new RemoteGraphQLDataSource({ url: url! }),
    });
    gatewayServer = new ApolloServer({ gateway, logger: silent });
    ({ url: gatewayUrl } = await startStandaloneServer(gatewayServer, { listen: { host: "127.0.0.1", port: 0 } }));
    gatewayUrl = gatewayUrl.replace(/\/$/, "");
  });
  after(async () => {
    await gatewayServer?.stop();
    await runtime?.close();
  });

  const viaGateway = async (query: string) => {
    const response = await fetch(gatewayUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query }),
    });
    return (await response.json()) as { data?: any; errors?: unknown[] };
  };

  it("composes beside a subgraph with its own PageInfo (both @shareable)", async () => {
    const result = await viaGateway("{ contractPage { pageInfo { hasNextPage } contracts { number } } tenants(first: 1) { pageInfo { hasNextPage } } }");
    assert.equal(result.errors, undefined, JSON.stringify(result.errors));
    assert.equal(result.data.contractPage.pageInfo.hasNextPage, false);
    assert.equal(result.data.tenants.pageInfo.hasNextPage, true);
  });

  it("answers _service { sdl } with Federation 2 and both entity keys", async () => {
    const { body } = await postGraphQL(runtime.url, "{ _service { sdl } }");
    const sdl: string = body.data._service.sdl;
    assert.match(sdl, /@link\(url: "https:\/\/specs\.apollo\.dev\/federation\/v2\.3", import: \["@key", "@shareable"\]\)/);
    assert.match(sdl, /type PageInfo\s+@shareable/);
    assert.match(sdl, /type Tenant\s+@key\(fields: "id"\)/);
    assert.match(sdl, /type Incident\s+@key\(fields: "tenantId incidentId"\)/);
  });

  it("resolves Tenant entities through the request's tenant loader: one registry batch, unknown tenants TENANT_FORBIDDEN, malformed keys null", async () => {
    const representations = [
      ...tenantIds.map((id) => ({ __typename: "Tenant", id: id.toUpperCase() })),
      { __typename: "Tenant", id: "00000000-0000-4000-8000-000000000000" },
      { __typename: "Tenant", id: "not-a-tenant-id" },
    ];
    registryBatches.length = 0;
    const { body } = await postGraphQL(
      runtime.url,
      "query($r: [_Any!]!) { _entities(representations: $r) { ... on Tenant { id displayName consentState } } }",
      { r: representations },
    );
    // An unknown tenant gets the answer a tenant outside the caller's scope gets, for that entity only.
    assert.deepEqual(
      body.errors?.map((e) => [e.path, e.extensions?.code]),
      [[["_entities", tenantIds.length], "TENANT_FORBIDDEN"]],
    );
    assert.deepEqual(
      body.data._entities.map((e: { id: string } | null) => e?.id ?? null),
      [...tenantIds, null, null],
    );
    assert.equal(body.data._entities[0].consentState, "GRANTED");
    assert.equal(registryBatches.length, 1, "all representations of one _entities call load in one batch");
    assert.equal(registryBatches[0]!.length, 4);
  });

  it("resolves Incident entities through the request's incidents loader; unknown incidents null, unknown tenants TENANT_FORBIDDEN", async () => {
    const tenant = runtime.sandbox!.tenants[0]!;
    const [first, second] = runtime.sandbox!.incidents.forTenant(tenant.id);
    const representations = [
      { __typename: "Incident", tenantId: tenant.id, incidentId: String(first!.incidentId) },
      { __typename: "Incident", tenantId: tenant.id, incidentId: String(second!.incidentId) },
      { __typename: "Incident", tenantId: tenant.id, incidentId: "999999999" },
      { __typename: "Incident", tenantId: "00000000-0000-4000-8000-000000000000", incidentId: "1" },
    ];
    runtime.sandbox!.context.resetCounters();
    const { body } = await postGraphQL(
      runtime.url,
      "query($r: [_Any!]!) { _entities(representations: $r) { ... on Incident { tenantId incidentId incidentName } } }",
      { r: representations },
    );
    assert.deepEqual(body.errors?.map((e) => [e.path, e.extensions?.code]), [[["_entities", 3], "TENANT_FORBIDDEN"]]);
    const entities = body.data._entities;
    assert.equal(entities[0].incidentId, String(first!.incidentId));
    assert.equal(entities[0].incidentName, first!.incidentName);
    assert.equal(entities[1].incidentId, String(second!.incidentId));
    assert.equal(entities[2], null);
    assert.equal(entities[3], null);
    // One load of the tenant serves both incidents: at most one listing (its pages), not one per incident.
    const pages = Math.ceil(runtime.sandbox!.incidents.forTenant(tenant.id).length / 100) + 1;
    const lists = runtime.sandbox!.context.counterSnapshot().byTenant[tenant.id]?.["defender.list"] ?? 0;
    assert.ok(lists <= pages, `one listing of the tenant for both incidents (list calls: ${lists})`);
  });

  it("crosses from Crosswatch into the other subgraph: tenants with their contract tier", async () => {
    const result = await viaGateway(`{ tenants(first: 3) { edges { node { id displayName consentState contractTier } } } }`);
    assert.equal(result.errors, undefined);
    const nodes = result.data.tenants.edges.map((e: { node: any }) => e.node);
    assert.equal(nodes.length, 3);
    for (const node of nodes) {
      assert.ok(node.displayName);
      assert.equal(node.contractTier, contracts.tier(node.id));
    }
  });

  it("crosses from the other subgraph into Crosswatch: contracts with their tenant's registry fields, batched", async () => {
    registryBatches.length = 0;
    const result = await viaGateway(`{ contracts { number tenant { id displayName consentState contractTier } } }`);
    assert.equal(result.errors, undefined);
    const expected = runtime.sandbox!.tenants.slice(0, 3);
    assert.deepEqual(
      result.data.contracts.map((c: any) => [c.number, c.tenant.displayName, c.tenant.contractTier]),
      expected.map((t, i) => [`C-${1000 + i}`, t.displayName, i === 0 ? "PLATINUM" : "STANDARD"]),
    );
    assert.deepEqual(registryBatches, [tenantIds], "the three tenants come from one registry query");
  });

  it("adds the other subgraph's ticket number to Crosswatch's incidents", async () => {
    const result = await viaGateway(
      `{ incidents(tenantIds: ["${tenantIds[0]}"], first: 3) { edges { node { tenantId incidentId incidentName ticketNumber } } } }`,
    );
    assert.equal(result.errors, undefined);
    const nodes = result.data.incidents.edges.map((e: { node: any }) => e.node);
    assert.equal(nodes.length, 3);
    for (const node of nodes) {
      assert.ok(node.incidentName);
      assert.equal(node.ticketNumber, `TCK-${node.tenantId.slice(0, 4)}-${node.incidentId}`);
    }
  });
});
