import type { ApolloServerPlugin } from "@apollo/server";
import { maxAliasesRule } from "@escape.tech/graphql-armor-max-aliases";
import { maxDepthRule } from "@escape.tech/graphql-armor-max-depth";
import { maxDirectivesRule } from "@escape.tech/graphql-armor-max-directives";
import {
  getArgumentValues,
  getNamedType,
  getNullableType,
  getOperationAST,
  getVariableValues,
  GraphQLError,
  isCompositeType,
  isInterfaceType,
  isListType,
  isObjectType,
  Kind,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLCompositeType,
  type GraphQLField,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from "graphql";
import type { Config } from "../config.js";
import { ErrorCode } from "../errors.js";
import type { GraphQLContext } from "../resolvers/context.js";

/**
 * Weights of the cost estimate ({@link estimateCost}).
 *
 * Chosen so that the queries clients really send fit the default `LIMIT_MAX_COST` of 50,000 with room to
 * spare, and the ones that multiply fan-out do not: a 50-incident page (id, name, severity, status, times,
 * `alerts { title severity }`) costs 1,526 over one tenant, 3,506 over 100 and 21,506 over 1,000 (the most
 * one query may span); `tenants(first: 100) { edges { node { incidents(first: 100) { edges { node {
 * alerts { entities { type } } } } } } } }` costs 1,122,302.
 */
export const COST_WEIGHTS = {
  /** What one field costs each time it resolves. */
  field: 1,
  /**
   * What each tenant a field reaches adds: at worst one token request and one upstream incident fetch, which
   * dwarf resolving a field. 20 lets one query span the 1,000 tenants it may (20,000) with a page of
   * incidents on top, and makes per-tenant fields inside a tenant list expensive.
   */
  tenantFanOut: 20,
  /** Assumed length of a list without `first`: an incident's alerts, comments or tags, an alert's entities. */
  defaultListSize: 10,
} as const;

/** Fields that reach one tenant's token or incidents, once per parent object. */
const ONE_TENANT_FIELDS = new Set([
  "Tenant.incidents",
  "Tenant.incidentSummary",
  "Tenant.token",
  "Query.incident",
  "Mutation.updateIncident",
]);

/** The lists of a connection that its `first` sizes; its other lists (`tenantOutcomes`) are plain lists. */
const CONNECTION_PAGES = new Set(["edges", "nodes"]);

/**
 * An operation's cost split by what is known without asking the store: `fixed` from the document and
 * variables, plus `perVisibleTenant` for every tenant an `incidents` without `tenantIds` would span.
 * The total is linear in the visible tenants, so the plugin asks the store only when `perVisibleTenant > 0`.
 */
interface CostParts {
  fixed: number;
  perVisibleTenant: number;
}

/** The widest `_entities` field of an operation: its representations, and the tenants its Incidents reach. */
interface EntitiesReach {
  representations: number;
  tenants: number;
}

/**
 * The most tenants one `_entities` call may reach through its Incident representations: the same cap as
 * `incidents(tenantIds:)`, so a router cannot fan out wider than a query could.
 */
export const MAX_ENTITY_TENANTS = 1000;
/** The most representations one `_entities` call may carry. */
export const MAX_ENTITY_REPRESENTATIONS = 5000;

export interface CostInput {
  schema: GraphQLSchema;
  document: DocumentNode;
  /** Which operation of the document; may be omitted when the document has only one. */
  operationName?: string | null | undefined;
  /** The request's variables, as sent (they are coerced here, defaults included). */
  variables: Record<string, unknown>;
  /** How many tenants an `incidents` without `tenantIds` spans for this caller. */
  visibleTenants: number;
}

/**
 * Estimates what an operation costs before it runs, with its variables. The model, kept simple and
 * monotonic (more tenants, larger pages or more fields never cost less):
 *
 * - every selected field costs `field` × its multiplicity: how many times it resolves, the product of the
 *   list sizes above it (`__typename` is free);
 * - a list multiplies its sub-selection by its size: its `first` argument (from a literal or a variable,
 *   else the argument's default in the schema), for `_entities` the number of `representations`, else
 *   `defaultListSize` (also for per-tenant lists such as `tokenDiagnostics` and `tenantOutcomes`, whose
 *   per-tenant work `tenantFanOut` already counts);
 * - a connection (a field with `first` that returns an object) multiplies its `edges` by its `first`; its
 *   other fields (`totalCount`, `pageInfo`, `tenantOutcomes` as a plain list) count as usual;
 * - every tenant a field reaches adds `tenantFanOut` × the field's multiplicity: `Query.incidents` and
 *   `Query.huntingQuery` span their `tenantIds` (with `tenantTags` only narrowing them) or, without them,
 *   every tenant the caller may see (`visibleTenants`); `Query.tokenDiagnostics` its `tenantIds`; `Tenant.incidents`,
 *   `Tenant.incidentSummary`, `Tenant.token`, `Query.incident` and `Mutation.updateIncident` one tenant;
 * - `_entities` stands for the queries a router makes on its behalf: every distinct tenant among its Incident
 *   representations adds `tenantFanOut` (as `incident(tenantId:)` would), and its Tenant representations'
 *   per-tenant fields count through the multiplication by the number of representations; the plugin also
 *   caps it like `incidents(tenantIds:)` ({@link MAX_ENTITY_TENANTS}, {@link MAX_ENTITY_REPRESENTATIONS});
 * - named and inline fragments are followed (a fragment spread twice counts twice; a cycle, which
 *   validation refuses anyway, is cut); `@skip`/`@include` are ignored (everything counts as selected);
 * - a field the schema does not know, and introspection (`__schema`, `__type` and everything below them),
 *   cost `field` per selected field with no list multiplication: introspection answers from memory, never
 *   reaches a tenant, and graphql-js's MaxIntrospectionDepthRule already bounds its nesting; costed with
 *   list sizes, GraphiQL's own introspection query would come to about 50,000.
 *
 * Each fragment is costed once per page context and scaled, so a document that spreads fragments
 * exponentially often costs linear time to estimate (and is refused for its cost, not hung on).
 *
 * @returns the estimate, at most `Number.MAX_SAFE_INTEGER`; 0 when the document has no such operation.
 */
export function estimateCost(input: CostInput): number {
  const operation = getOperationAST(input.document, input.operationName ?? undefined);
  if (!operation) return 0;
  const { parts } = operationCost(input.schema, input.document, operation, input.variables);
  return totalCost(parts, input.visibleTenants);
}

function totalCost(parts: CostParts, visibleTenants: number): number {
  const total = parts.fixed + parts.perVisibleTenant * Math.max(0, visibleTenants);
  return Number.isFinite(total) ? Math.min(total, Number.MAX_SAFE_INTEGER) : Number.MAX_SAFE_INTEGER;
}

function operationCost(
  schema: GraphQLSchema,
  document: DocumentNode,
  operation: OperationDefinitionNode,
  rawVariables: Record<string, unknown>,
): { parts: CostParts; entities: EntitiesReach } {
  const root =
    operation.operation === "query"
      ? schema.getQueryType()
      : operation.operation === "mutation"
        ? schema.getMutationType()
        : schema.getSubscriptionType();
  // Coerced as execution will see them: variable defaults apply, a single value becomes a one-item list.
  // Variables execution will refuse are costed as sent.
  const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], rawVariables, { maxErrors: 1 });
  const variables = coerced.coerced ?? rawVariables;
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  const walker = new CostWalker(schema, fragments, variables);
  const parts = walker.selectionSet(operation.selectionSet, root ?? undefined, undefined);
  return { parts, entities: walker.entities };
}

/**
 * Costs selection sets at multiplicity 1; a field's sub-selection is scaled by its list size. The cost is
 * linear in multiplicity, so scaling after the fact equals multiplying on the way down.
 */
class CostWalker {
  /** Fragment cost at multiplicity 1, by fragment name and the page size its `edges` would take. */
  private readonly memo = new Map<string, CostParts>();
  private readonly active = new Set<string>();
  /** Filled while walking; fragments are walked once, and what they reach counts once, as a maximum. */
  readonly entities: EntitiesReach = { representations: 0, tenants: 0 };

  constructor(
    private readonly schema: GraphQLSchema,
    private readonly fragments: ReadonlyMap<string, FragmentDefinitionNode>,
    private readonly variables: Record<string, unknown>,
  ) {}

  /**
   * @param parent the type the selections are on; undefined below a field the schema does not describe
   * @param pageSize the `first` of the connection this selection set is on, which sizes its `edges`
   */
  selectionSet(selectionSet: SelectionSetNode, parent: GraphQLCompositeType | undefined, pageSize: number | undefined): CostParts {
    const cost: CostParts = { fixed: 0, perVisibleTenant: 0 };
    const add = (part: CostParts) => {
      cost.fixed += part.fixed;
      cost.perVisibleTenant += part.perVisibleTenant;
    };
    for (const selection of selectionSet.selections) {
      if (selection.kind === Kind.FIELD) {
        add(this.field(selection, parent, pageSize));
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const typed = selection.typeCondition ? this.compositeType(selection.typeCondition.name.value) : parent;
        add(this.selectionSet(selection.selectionSet, typed, pageSize));
      } else {
        add(this.fragmentSpread(selection.name.value, pageSize));
      }
    }
    return cost;
  }

  private fragmentSpread(name: string, pageSize: number | undefined): CostParts {
    const fragment = this.fragments.get(name);
    if (!fragment || this.active.has(name)) return { fixed: 0, perVisibleTenant: 0 };
    const key = `${name}\u0000${pageSize ?? ""}`;
    const known = this.memo.get(key);
    if (known) return known;
    this.active.add(name);
    // Its type condition only (not where it is spread), so one cost per name and page size holds.
    const cost = this.selectionSet(fragment.selectionSet, this.compositeType(fragment.typeCondition.name.value), pageSize);
    this.active.delete(name);
    this.memo.set(key, cost);
    return cost;
  }

  private field(node: FieldNode, parent: GraphQLCompositeType | undefined, pageSize: number | undefined): CostParts {
    const name = node.name.value;
    if (name === "__typename") return { fixed: 0, perVisibleTenant: 0 };
    const field = parent && (isObjectType(parent) || isInterfaceType(parent)) ? parent.getFields()[name] : undefined;
    if (!parent || !field) {
      // Unknown to the schema (validation refuses it) or introspection: one per field, no fan-out.
      const below = node.selectionSet ? this.selectionSet(node.selectionSet, undefined, undefined) : { fixed: 0, perVisibleTenant: 0 };
      return { fixed: COST_WEIGHTS.field + below.fixed, perVisibleTenant: below.perVisibleTenant };
    }
    const coordinate = `${parent.name}.${name}`;
    const args = this.argumentValues(field, node);
    const cost: CostParts = { fixed: COST_WEIGHTS.field, perVisibleTenant: 0 };
    const tenants = tenantsReached(coordinate, args);
    if (name === "_entities" && Array.isArray(args.representations)) {
      // Each Incident representation reaches its tenant, like `incident(tenantId:)` does.
      const reached = incidentRepresentationTenants(args.representations);
      cost.fixed += COST_WEIGHTS.tenantFanOut * reached;
      this.entities.tenants = Math.max(this.entities.tenants, reached);
      this.entities.representations = Math.max(this.entities.representations, args.representations.length);
    }
    if (tenants === "visible") cost.perVisibleTenant += COST_WEIGHTS.tenantFanOut;
    else cost.fixed += COST_WEIGHTS.tenantFanOut * tenants;
    if (!node.selectionSet) return cost;
    const named = getNamedType(field.type);
    if (!isCompositeType(named)) return cost;
    const type = getNullableType(field.type);
    const first = typeof args.first === "number" ? Math.max(0, args.first) : numericDefault(field, "first");
    let size = 1;
    let innerPageSize: number | undefined;
    if (isListType(type)) {
      if (name === "_entities" && Array.isArray(args.representations)) size = args.representations.length;
      else size = first ?? (CONNECTION_PAGES.has(name) ? pageSize : undefined) ?? COST_WEIGHTS.defaultListSize;
    } else {
      innerPageSize = first;
    }
    const below = this.selectionSet(node.selectionSet, named, innerPageSize);
    cost.fixed += size * below.fixed;
    cost.perVisibleTenant += size * below.perVisibleTenant;
    return cost;
  }

  /** Undefined for introspection's own types: introspection is costed untyped, like unknown fields. */
  private compositeType(name: string): GraphQLCompositeType | undefined {
    if (name.startsWith("__")) return undefined;
    const type = this.schema.getType(name);
    return type && isCompositeType(type) ? type : undefined;
  }

  private argumentValues(field: GraphQLField<unknown, unknown>, node: FieldNode): Record<string, unknown> {
    try {
      return getArgumentValues(field, node, this.variables);
    } catch {
      // Arguments execution will refuse (missing, mistyped): costed as if absent.
      return {};
    }
  }
}

/** How many tenants a field reaches per parent object; "visible" for every tenant the caller may see. */
function tenantsReached(coordinate: string, args: Record<string, unknown>): number | "visible" {
  if (coordinate === "Query.incidents" || coordinate === "Query.huntingQuery") return Array.isArray(args.tenantIds) ? args.tenantIds.length : "visible";
  // A saved hunt spans its tags within the caller's scope: at most every tenant the caller may see.
  if (coordinate === "Query.runSavedHunt") return "visible";
  if (coordinate === "Query.tokenDiagnostics") return Array.isArray(args.tenantIds) ? args.tenantIds.length : 0;
  return ONE_TENANT_FIELDS.has(coordinate) ? 1 : 0;
}

/** BAD_USER_INPUT about `representations`, answered before execution with HTTP 400. */
function refusedInput(message: string): GraphQLError {
  return new GraphQLError(message, {
    extensions: { code: ErrorCode.BAD_USER_INPUT, field: "representations", http: { status: 400 } },
  });
}

/** Distinct tenant ids among a representation list's Incident entities (case-insensitive, as ids are). */
function incidentRepresentationTenants(representations: readonly unknown[]): number {
  const tenants = new Set<string>();
  for (const representation of representations) {
    if (representation === null || typeof representation !== "object") continue;
    const { __typename, tenantId } = representation as Record<string, unknown>;
    if (__typename === "Incident") tenants.add(String(tenantId).toLowerCase());
  }
  return tenants.size;
}

function numericDefault(field: GraphQLField<unknown, unknown>, argument: string): number | undefined {
  const value = field.args.find((a) => a.name === argument)?.defaultValue;
  return typeof value === "number" ? Math.max(0, value) : undefined;
}

export interface QueryLimitsOptions {
  limits: Config["limits"];
  /** How many tenants an `incidents` without tenantIds would span for this request's caller. */
  visibleTenantCount(context: GraphQLContext): Promise<number>;
}

/** graphql-armor's "… limit of N exceeded, found M." (with `exposeLimits`), reworded per limit. */
const ARMOR_REFUSAL = /limit of (\d+) exceeded, found (-?\d+)/;

/**
 * graphql-armor options that report a refusal as a validation error of the request. By default armor
 * throws out of `validate` (Apollo would answer 500) with a "Syntax Error: " prefix; reported through the
 * context it becomes a 400 GRAPHQL_VALIDATION_FAILED like any other validation error. Armor's messages
 * carry the numbers only (no field names, no suggestions).
 */
function reportAs(describe: (found: number, limit: number) => string) {
  return {
    exposeLimits: true,
    propagateOnRejection: false,
    onReject: [
      (context: ValidationContext | null, error: GraphQLError) => {
        const match = ARMOR_REFUSAL.exec(error.message);
        const message = match ? describe(Number(match[2]), Number(match[1])) : error.message.replace(/^Syntax Error: /, "");
        context?.reportError(new GraphQLError(message));
      },
    ],
  };
}

/**
 * The operation limits, all checked before any resolver runs, so a refused operation costs no store or
 * upstream call:
 * - `parseOptions.maxTokens` for the parser (Apollo answers GRAPHQL_PARSE_FAILED);
 * - depth, aliases and directives as graphql-armor validation rules (GRAPHQL_VALIDATION_FAILED, naming the
 *   limit). Depth ignores `__schema` (GraphiQL's introspection query is deeper than any real one and is
 *   bounded by graphql-js's MaxIntrospectionDepthRule) and does not count fragment spreads as levels;
 *   `__typename` aliases do not count. The rules memoise fragments, so fragment cycles (refused by
 *   graphql-js's NoFragmentCyclesRule) cannot recurse without end;
 * - the cost estimate ({@link estimateCost}) in a plugin, where the variables and the caller are known
 *   (COST_LIMIT_EXCEEDED, HTTP 400, with `cost` and `maxCost`). The caller's tenant count is asked for
 *   only when an `incidents` without `tenantIds` needs it; if that count fails, the operation fails.
 */
export function createQueryLimits(options: QueryLimitsOptions): {
  validationRules: ValidationRule[];
  parseOptions: { maxTokens: number };
  plugin: ApolloServerPlugin<GraphQLContext>;
} {
  const { limits } = options;
  // Armor's rules return a visitor class rather than an ASTVisitor-typed object: same shape at run time.
  const validationRules = [
    maxDepthRule({
      n: limits.maxDepth,
      ignoreIntrospection: true,
      flattenFragments: true,
      ...reportAs((found, limit) => `Query depth ${found} exceeds the limit of ${limit}`),
    }),
    maxAliasesRule({
      n: limits.maxAliases,
      allowList: ["__typename"],
      ...reportAs((found, limit) => `Query has ${found} aliases, more than the limit of ${limit}`),
    }),
    maxDirectivesRule({
      n: limits.maxDirectives,
      ...reportAs((found, limit) => `Query has ${found} directives, more than the limit of ${limit}`),
    }),
  ] as unknown as ValidationRule[];
  return {
    validationRules,
    parseOptions: { maxTokens: limits.maxTokens },
    plugin: {
      async requestDidStart() {
        return {
          async didResolveOperation({ request, document, operation, schema, contextValue }) {
            // Apollo has already refused a document without the requested operation.
            if (!operation) return;
            const { parts, entities } = operationCost(schema, document, operation, request.variables ?? {});
            if (entities.representations > MAX_ENTITY_REPRESENTATIONS) {
              throw refusedInput(`at most ${MAX_ENTITY_REPRESENTATIONS} representations per _entities call`);
            }
            if (entities.tenants > MAX_ENTITY_TENANTS) {
              throw refusedInput(`an _entities call may reach at most ${MAX_ENTITY_TENANTS} tenants through Incident representations`);
            }
            const visibleTenants = parts.perVisibleTenant > 0 ? await options.visibleTenantCount(contextValue) : 0;
            const cost = totalCost(parts, visibleTenants);
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
