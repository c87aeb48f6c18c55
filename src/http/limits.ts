import type { ApolloServerPlugin } from "@apollo/server";
import { maxAliasesRule } from "@escape.tech/graphql-armor-max-aliases";
import { maxDepthRule } from "@escape.tech/graphql-armor-max-depth";
import { maxDirectivesRule } from "@escape.tech/graphql-armor-max-directives";
import {
  getNamedType,
  getNullableType,
  GraphQLError,
  isCompositeType,
  isListType,
  isObjectType,
  isInterfaceType,
  Kind,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLCompositeType,
  type GraphQLField,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from "graphql";
import { getArgumentValues } from "graphql/execution/values.js";
import type { Config } from "../config.js";
import { ErrorCode } from "../errors.js";
import type { GraphQLContext } from "../resolvers/context.js";

/**
 * Weights of the cost estimate. Every selected field costs `field` times how many times it will be resolved
 * (the product of the page sizes above it); a field that reaches tenants (a token request and an incident
 * fetch each, at worst) adds `tenantFanOut` per tenant it spans.
 */
export const COST_WEIGHTS = {
  field: 1,
  tenantFanOut: 20,
  /** Assumed length of a list without `first`: an incident's alerts, an alert's entities, comments. */
  defaultListSize: 10,
} as const;

/** Fields that reach one tenant's token or incidents per parent object. */
const PER_PARENT_TENANT_FIELDS = new Set(["Tenant.incidents", "Tenant.incidentSummary", "Tenant.token", "Query.incident", "Mutation.updateIncident"]);

export interface CostInput {
  schema: GraphQLSchema;
  document: DocumentNode;
  operationName?: string | null | undefined;
  variables: Record<string, unknown>;
  /** How many tenants an `incidents` without `tenantIds` spans for this caller. */
  visibleTenants: number;
}

/**
 * Estimates what an operation costs before it runs, with its variables:
 * - each field: `field` × the multiplicity of its parent;
 * - a list field multiplies its sub-selection by its size: `first` when it has that argument (the
 *   argument's default when omitted), `representations.length` for `_entities`, else `defaultListSize`;
 *   the lists inside a connection (`edges`) take the connection's `first`;
 * - `Query.incidents` adds `tenantFanOut` × its tenants (`tenantIds.length`, else every tenant visible to
 *   the caller), `Query.tokenDiagnostics` × `tenantIds.length`; `Tenant.incidents`, `Tenant.incidentSummary`,
 *   `Tenant.token`, `Query.incident` and `Mutation.updateIncident` one fan-out per parent object.
 * Fragments are followed (a cycle, which validation refuses anyway, is cut); `@skip`/`@include` are ignored.
 * Monotonic: more tenants, larger pages or more fields never cost less.
 */
export function estimateCost(input: CostInput): number {
  const operation = pickOperation(input.document, input.operationName);
  if (!operation) return 0;
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of input.document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  const root =
    operation.operation === "query"
      ? input.schema.getQueryType()
      : operation.operation === "mutation"
        ? input.schema.getMutationType()
        : input.schema.getSubscriptionType();
  if (!root) return 0;

  const walk = (
    selectionSet: SelectionSetNode,
    parent: GraphQLCompositeType,
    multiplicity: number,
    connectionSize: number | undefined,
    visiting: Set<string>,
  ): number => {
    let cost = 0;
    for (const selection of selectionSet.selections) {
      if (selection.kind === Kind.INLINE_FRAGMENT) {
        const typed = selection.typeCondition ? input.schema.getType(selection.typeCondition.name.value) : parent;
        const next = typed && isCompositeType(typed) ? typed : parent;
        cost += walk(selection.selectionSet, next, multiplicity, connectionSize, visiting);
        continue;
      }
      if (selection.kind === Kind.FRAGMENT_SPREAD) {
        const name = selection.name.value;
        const fragment = fragments.get(name);
        if (!fragment || visiting.has(name)) continue;
        const typed = input.schema.getType(fragment.typeCondition.name.value);
        visiting.add(name);
        cost += walk(fragment.selectionSet, typed && isCompositeType(typed) ? typed : parent, multiplicity, connectionSize, visiting);
        visiting.delete(name);
        continue;
      }
      const name = selection.name.value;
      if (name === "__typename") continue;
      const field = isObjectType(parent) || isInterfaceType(parent) ? parent.getFields()[name] : undefined;
      cost += COST_WEIGHTS.field * multiplicity;
      if (!field) continue;
      const args = argumentValues(field, selection, input.variables);
      cost += COST_WEIGHTS.tenantFanOut * multiplicity * tenantsReached(`${parent.name}.${name}`, args, input.visibleTenants);
      if (!selection.selectionSet) continue;
      const type = getNullableType(field.type);
      const first = typeof args.first === "number" ? Math.max(0, args.first) : undefined;
      let size = 1;
      if (isListType(type)) {
        if (name === "_entities" && Array.isArray(args.representations)) size = args.representations.length;
        else size = first ?? connectionSize ?? COST_WEIGHTS.defaultListSize;
      }
      const named = getNamedType(field.type);
      if (!isCompositeType(named)) continue;
      // A connection's `first` sizes the lists directly inside it (edges), not the connection itself.
      cost += walk(selection.selectionSet, named, multiplicity * size, isListType(type) ? undefined : first, visiting);
    }
    return cost;
  };
  return walk(operation.selectionSet, root, 1, undefined, new Set());
}

function tenantsReached(coordinate: string, args: Record<string, unknown>, visibleTenants: number): number {
  if (coordinate === "Query.incidents") return Array.isArray(args.tenantIds) ? args.tenantIds.length : visibleTenants;
  if (coordinate === "Query.tokenDiagnostics") return Array.isArray(args.tenantIds) ? args.tenantIds.length : 0;
  return PER_PARENT_TENANT_FIELDS.has(coordinate) ? 1 : 0;
}

function argumentValues(field: GraphQLField<unknown, unknown>, node: Parameters<typeof getArgumentValues>[1], variables: Record<string, unknown>): Record<string, unknown> {
  try {
    return getArgumentValues(field, node, variables);
  } catch {
    // Invalid arguments are refused by execution with a proper error; cost them as given-nothing.
    return {};
  }
}

function pickOperation(document: DocumentNode, operationName: string | null | undefined): OperationDefinitionNode | undefined {
  const operations = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  if (operationName) return operations.find((o) => o.name?.value === operationName);
  return operations.length === 1 ? operations[0] : undefined;
}

/** Whether the operation has `incidents` without `tenantIds` anywhere (only then is the tenant count needed). */
function spansVisibleTenants(document: DocumentNode): boolean {
  let found = false;
  const visit = (selectionSet: SelectionSetNode | undefined) => {
    for (const selection of selectionSet?.selections ?? []) {
      if (selection.kind === Kind.FIELD) {
        if (selection.name.value === "incidents" && !selection.arguments?.some((a) => a.name.value === "tenantIds")) found = true;
        visit(selection.selectionSet);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) visit(selection.selectionSet);
    }
  };
  for (const definition of document.definitions) {
    if (definition.kind === Kind.OPERATION_DEFINITION || definition.kind === Kind.FRAGMENT_DEFINITION) visit(definition.selectionSet);
  }
  return found;
}

export interface QueryLimitsOptions {
  limits: Config["limits"];
  /** How many tenants an `incidents` without tenantIds would span for this request's caller. */
  visibleTenantCount(context: GraphQLContext): Promise<number>;
}

/**
 * The operation limits: depth, aliases and directives as validation rules (graphql-armor), tokens through
 * the parser (`parseOptions.maxTokens`), and the cost estimate in a plugin, where the variables and the
 * caller are known. All run before any resolver, so a refused operation costs no upstream call.
 */
export function createQueryLimits(options: QueryLimitsOptions): {
  validationRules: ValidationRule[];
  parseOptions: { maxTokens: number };
  plugin: ApolloServerPlugin<GraphQLContext>;
} {
  const { limits } = options;
  // graphql-armor throws its refusal out of validation by default (Apollo would answer 500) and prefixes it
  // "Syntax Error"; report it as a validation error instead, so it is a 400 GRAPHQL_VALIDATION_FAILED.
  const report = {
    propagateOnRejection: false,
    exposeLimits: true,
    onReject: [(context: ValidationContext | null, error: GraphQLError) => context?.reportError(new GraphQLError(error.message.replace(/^Syntax Error: /, "")))],
  };
  const validationRules = [
    maxDepthRule({ n: limits.maxDepth, ignoreIntrospection: true, flattenFragments: true, ...report }),
    maxAliasesRule({ n: limits.maxAliases, ...report }),
    maxDirectivesRule({ n: limits.maxDirectives, ...report }),
  ] as unknown as ValidationRule[];
  return {
    validationRules,
    parseOptions: { maxTokens: limits.maxTokens },
    plugin: {
      async requestDidStart() {
        return {
          async didResolveOperation({ request, document, schema, contextValue, operationName }) {
            const visibleTenants = spansVisibleTenants(document) ? await options.visibleTenantCount(contextValue) : 0;
            const cost = estimateCost({ schema, document, operationName, variables: request.variables ?? {}, visibleTenants });
            if (cost > limits.maxCost) {
              throw new GraphQLError(
                `Operation cost ${cost} exceeds the limit of ${limits.maxCost}: ask for fewer tenants, smaller pages or fewer fields`,
                { extensions: { code: ErrorCode.COST_LIMIT_EXCEEDED, cost, maxCost: limits.maxCost, http: { status: 400 } } },
              );
            }
          },
        };
      },
    },
  };
}
