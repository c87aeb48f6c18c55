import "reflect-metadata";
import { printSchema, type GraphQLSchema } from "graphql";
import { buildSchema, type ContainerType } from "type-graphql";
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
] as const;

/**
 * Builds the executable schema. Resolver instances come from `container`, so process-wide services are
 * injected once by the app instead of being imported as module singletons.
 */
export async function buildCrosswatchSchema(container: ContainerType): Promise<GraphQLSchema> {
  return buildSchema({
    resolvers: [...RESOLVERS],
    container,
    validate: false,
  });
}

/**
 * The SDL of the public schema, as committed in schema.graphql. Resolver instances are never called
 * while printing, so every class gets a bare prototype instance.
 */
export async function printCrosswatchSchema(): Promise<string> {
  const schema = await buildCrosswatchSchema({
    get: (someClass: new (...args: never[]) => unknown) => Object.create(someClass.prototype) as unknown,
  });
  return `${printSchema(schema)}\n`;
}
