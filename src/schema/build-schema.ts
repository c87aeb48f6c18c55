import "reflect-metadata";
import { buildSubgraphSchema, printSubgraphSchema } from "@apollo/subgraph";
import type { GraphQLResolverMap } from "@apollo/subgraph/dist/schema-helper/resolverMap.js";
import { printSchemaWithDirectives } from "@graphql-tools/utils";
import { parse, printSchema, type GraphQLResolveInfo, type GraphQLSchema } from "graphql";
import { buildSchema, createResolversMap, type ContainerType } from "type-graphql";
import { CallersResolver } from "../resolvers/callers.resolver.js";
import { ConsentResolver } from "../resolvers/consent.resolver.js";
import { IncidentsResolver, TenantIncidentsResolver } from "../resolvers/incidents.resolver.js";
import { ServerInfoResolver } from "../resolvers/server-info.resolver.js";
import { TenantsResolver } from "../resolvers/tenants.resolver.js";
import { TokensResolver } from "../resolvers/tokens.resolver.js";

/** The resolver classes of the public schema, in one place for the schema build and the SDL printer. */
export const RESOLVERS = [
  ServerInfoResolver,
  TenantsResolver,
  ConsentResolver,
  TokensResolver,
  IncidentsResolver,
  TenantIncidentsResolver,
  CallersResolver,
] as const;

/**
 * The Federation 2 spec this subgraph links. v2.3 is understood by every Apollo Router and
 * @apollo/gateway release of the last years; only `@key` is imported, because Crosswatch owns all of its
 * fields and extends no other subgraph's types.
 */
export const FEDERATION_LINK = 'extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key", "@shareable"])';

/**
 * How `_entities` turns a representation (`{ __typename, ...key fields }`) into an object, by entity type
 * name. Types that are not in the schema (yet) are ignored.
 */
export type EntityReferenceResolvers<TContext = any> = Record<
  string,
  { __resolveReference(reference: any, context: TContext, info: GraphQLResolveInfo): unknown }
>;

/** Instances are never called while printing, so every class gets a bare prototype instance. */
const PRINT_ONLY_CONTAINER: ContainerType = {
  get: (someClass: new (...args: never[]) => unknown) => Object.create(someClass.prototype) as unknown,
};

async function buildTypeGraphQLSchema(container: ContainerType): Promise<GraphQLSchema> {
  return buildSchema({
    resolvers: [...RESOLVERS],
    container,
    validate: false,
  });
}

/**
 * Builds the executable schema: the type-graphql classes as an Apollo Federation 2 subgraph, so it also
 * answers `_service { sdl }` and `_entities` (with `references` for the entity types). Resolver instances
 * come from `container`, so process-wide services are injected once by the app instead of being imported
 * as module singletons.
 */
export async function buildCrosswatchSchema(
  container: ContainerType,
  references: EntityReferenceResolvers = {},
): Promise<GraphQLSchema> {
  const schema = await buildTypeGraphQLSchema(container);
  // type-graphql keeps `@Directive('@key(...)')` in the AST nodes, which printSchema drops; printing with
  // directives and re-building through @apollo/subgraph is the documented type-graphql federation recipe.
  const resolvers = createResolversMap(schema) as GraphQLResolverMap<unknown>;
  for (const [typeName, reference] of Object.entries(references)) {
    resolvers[typeName] = { ...(resolvers[typeName] as object), ...reference } as GraphQLResolverMap<unknown>[string];
  }
  return buildSubgraphSchema({
    typeDefs: parse(`${FEDERATION_LINK}\n\n${printSchemaWithDirectives(schema)}`),
    resolvers,
  });
}

/**
 * The SDL of the public schema, as committed in schema.graphql: what clients (and codegen) see, without
 * federation's directives and `_service`/`_entities`. A supergraph reads the subgraph SDL from the running
 * server instead (`_service { sdl }`, see {@link printCrosswatchSubgraphSchema}).
 */
export async function printCrosswatchSchema(): Promise<string> {
  return `${printSchema(await buildTypeGraphQLSchema(PRINT_ONLY_CONTAINER))}\n`;
}

/** The subgraph SDL with `@link` and `@key`, exactly what `_service { sdl }` answers. */
export async function printCrosswatchSubgraphSchema(): Promise<string> {
  return printSubgraphSchema(await buildCrosswatchSchema(PRINT_ONLY_CONTAINER));
}
