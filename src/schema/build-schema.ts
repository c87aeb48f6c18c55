import "reflect-metadata";
import { buildSubgraphSchema, printSubgraphSchema } from "@apollo/subgraph";
import type { GraphQLResolverMap } from "@apollo/subgraph/dist/schema-helper/resolverMap.js";
import { printSchemaWithDirectives } from "@graphql-tools/utils";
import {
  GraphQLError,
  isUnionType,
  OperationTypeNode,
  parse,
  printSchema,
  type GraphQLFieldResolver,
  type GraphQLResolveInfo,
  type GraphQLSchema,
  type ValidationRule,
} from "graphql";
import { buildSchema, createResolversMap, type ContainerType } from "type-graphql";
import { badInput } from "../errors.js";
import { CallersResolver } from "../resolvers/callers.resolver.js";
import { HuntingResolver } from "../resolvers/hunting.resolver.js";
import { representationProblem } from "../resolvers/entity-references.js";
import { ConsentResolver, TenantErrorConsentResolver } from "../resolvers/consent.resolver.js";
import { IncidentsResolver, TenantIncidentsResolver } from "../resolvers/incidents.resolver.js";
import { ServerInfoResolver } from "../resolvers/server-info.resolver.js";
import { TenantsResolver } from "../resolvers/tenants.resolver.js";
import { SavedHuntsResolver } from "../resolvers/saved-hunts.resolver.js";
import { TokenHuntingResolver, TokensResolver } from "../resolvers/tokens.resolver.js";

/** The resolver classes of the public schema, in one place for the schema build and the SDL printer. */
export const RESOLVERS = [
  ServerInfoResolver,
  TenantsResolver,
  ConsentResolver,
  TenantErrorConsentResolver,
  TokensResolver,
  TokenHuntingResolver,
  IncidentsResolver,
  TenantIncidentsResolver,
  CallersResolver,
  HuntingResolver,
  SavedHuntsResolver,
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

/** Checks on the federation fields that depend on the deployment rather than on the schema. */
export interface SubgraphOptions<TContext = any> {
  /**
   * Runs before `_service { sdl }` answers and throws to refuse the caller: the SDL describes the whole
   * schema, as introspection does. Unset: every caller may read it.
   */
  authorizeService?: (context: TContext) => void;
}

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
  options: SubgraphOptions = {},
): Promise<GraphQLSchema> {
  const schema = await buildTypeGraphQLSchema(container);
  // type-graphql keeps `@Directive('@key(...)')` in the AST nodes, which printSchema drops; printing with
  // directives and re-building through @apollo/subgraph is the documented type-graphql federation recipe.
  const resolvers = createResolversMap(schema) as GraphQLResolverMap<unknown>;
  for (const [typeName, reference] of Object.entries(references)) {
    resolvers[typeName] = { ...(resolvers[typeName] as object), ...reference } as GraphQLResolverMap<unknown>[string];
  }
  const subgraph = buildSubgraphSchema({
    typeDefs: parse(`${FEDERATION_LINK}\n\n${printSchemaWithDirectives(schema)}`),
    resolvers,
  });
  guardFederationFields(subgraph, options);
  return subgraph;
}

/**
 * Wraps the resolvers @apollo/subgraph installs for `_service` and `_entities`. `_service` asks
 * `authorizeService` first. `_entities` refuses, as BAD_USER_INPUT for that entity only, a representation
 * that is not an object or whose `__typename` is missing or not one of the `_Entity` types: @apollo/subgraph
 * would throw a plain Error for it (an internal error) or hand graphql-js an object it cannot type. The
 * valid representations of the same call still resolve, as one batch.
 */
function guardFederationFields(schema: GraphQLSchema, options: SubgraphOptions): void {
  const fields = schema.getQueryType()?.getFields();
  const service = fields?._service;
  const authorize = options.authorizeService;
  if (service?.resolve && authorize) {
    const resolve = service.resolve;
    service.resolve = (source, args, context, info) => {
      authorize(context);
      return resolve(source, args, context, info);
    };
  }
  const entities = fields?._entities;
  const entityUnion = schema.getType("_Entity");
  if (entities?.resolve && isUnionType(entityUnion)) {
    const entityTypes = new Set(entityUnion.getTypes().map((type) => type.name));
    const resolve: GraphQLFieldResolver<unknown, unknown> = entities.resolve;
    entities.resolve = async (source, args: { representations: unknown[] }, context, info) => {
      const problems = args.representations.map((representation) => representationProblem(representation, entityTypes));
      const valid = args.representations.filter((_, i) => problems[i] === undefined);
      const resolved = valid.length > 0 ? ((await resolve(source, { ...args, representations: valid }, context, info)) as unknown[]) : [];
      let next = 0;
      // An Error as a list item fails that item alone, at its own path (`_entities.3`).
      return problems.map((problem, i) => (problem === undefined ? resolved[next++] : badInput(`representations[${i}] ${problem}`, "representations")));
    };
  }
}

/**
 * Refuses subscription operations at validation (GRAPHQL_VALIDATION_FAILED, HTTP 400). The schema has no
 * Subscription type: graphql-js validates such an operation's fields against nothing and fails it only at
 * execution, as an internal error.
 */
export const noSubscriptionsRule: ValidationRule = (context) => ({
  OperationDefinition(node) {
    if (node.operation === OperationTypeNode.SUBSCRIPTION && !context.getSchema().getSubscriptionType()) {
      context.reportError(
        new GraphQLError("subscriptions are not supported: Crosswatch answers queries and mutations over HTTP POST /graphql", { nodes: node }),
      );
    }
  },
});

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
