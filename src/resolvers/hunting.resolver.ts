import "reflect-metadata";
import { Arg, Ctx, ID, Int, Query, Resolver } from "type-graphql";
import type { HuntingBackend } from "../config.js";
import { badInput } from "../errors.js";
import { HuntingInputError, parseHunt, type HuntingService, type HuntingTenantOutcome as DomainOutcome } from "../hunting/hunting-service.js";
import { tenantForbidden } from "../incidents/outcome.js";
import { HuntingResult, type HuntingTenantOutcome } from "../schema/hunting.type.js";
import { HuntingBackendKind } from "../schema/tenant.type.js";
import { TenantError, TenantErrorCode } from "../schema/token.type.js";
import type { TenantRecord } from "../store/tenant-store.js";
import { checkLength, STRING_LIMITS } from "./arguments.js";
import type { GraphQLContext } from "./context.js";
import { parseTenantSelection, type IncidentsResolver } from "./incidents.resolver.js";

export interface HuntingResolverDeps {
  service: HuntingService;
  /** Its tenant selection (`selectTenants`): the same tenants, scope and refusals as `incidents`. */
  incidents: Pick<IncidentsResolver, "selectTenants">;
  /** HUNTING_BACKEND: the backend of tenants whose `huntingBackend` is unset. */
  defaultBackend: HuntingBackend;
}

/**
 * `huntingQuery`: one KQL query in many tenants, one table. Every argument is checked first (`parseHunt`,
 * `parseTenantSelection`), so a refused request loads no tenant and makes no token or upstream call;
 * tenants are then chosen exactly as for `incidents` (READER suffices; an unknown or out-of-scope tenant
 * gets TENANT_FORBIDDEN and no call), and the service hunts in them in parallel.
 */
@Resolver(() => HuntingResult)
export class HuntingResolver {
  constructor(private readonly deps: HuntingResolverDeps) {}

  @Query(() => HuntingResult, {
    description:
      "Runs one advanced hunting (KQL) query in many tenants and returns one table: the union of their columns (tenantId first), " +
      "the rows of every tenant that answered, and per-tenant outcomes (BAD_REQUEST with the service's syntax error, MISSING_ROLE, " +
      "THROTTLED, HUNTING_BACKEND_RETIRED, TENANT_FORBIDDEN …): a tenant that fails never fails the query. Tenants are chosen as for " +
      "incidents. Each call runs the hunt again (pages with after included); the query text is never logged.",
  })
  async huntingQuery(
    @Arg("query", () => String) query: string,
    @Arg("tenantIds", () => [ID], { nullable: true }) tenantIds: string[] | undefined,
    @Arg("tenantTags", () => [String], { nullable: true }) tenantTags: string[] | undefined,
    @Arg("timespan", () => String, { nullable: true, description: "ISO-8601 duration, at most P30D (Graph tenants; the legacy API always searches 30 days)." })
    timespan: string | undefined,
    @Arg("first", () => Int, { nullable: true, description: "Rows per page, 0 to 1,000 (default 100)." }) first: number | undefined,
    @Arg("after", () => String, { nullable: true }) after: string | undefined,
    @Ctx() ctx: GraphQLContext,
  ): Promise<HuntingResult> {
    const selection = parseTenantSelection(tenantIds, tenantTags);
    checkLength(after, "after", STRING_LIMITS.cursor);
    let hunt;
    try {
      hunt = parseHunt({ query, timespan, first, after, scope: `huntingQuery:${selection.scope}` });
    } catch (error) {
      if (error instanceof HuntingInputError) throw badInput(error.message, error.field);
      throw error;
    }
    const { records, refused } = await this.deps.incidents.selectTenants(selection, ctx);
    const result = await this.deps.service.hunt(
      records.map((record) => ({ tenantId: record.id, backend: this.backend(record) })),
      hunt,
      ctx.operation,
      refused.map((tenantId) => ({ tenantId, backend: this.deps.defaultBackend, error: tenantForbidden(tenantId) })),
    );
    const { page } = result;
    const out = new HuntingResult();
    Object.assign(out, {
      columns: page.columns,
      edges: page.edges,
      nodes: page.edges.map((e) => e.node),
      totalCount: page.totalCount,
      pageInfo: { hasNextPage: page.hasNextPage, hasPreviousPage: page.hasPreviousPage, startCursor: page.startCursor, endCursor: page.endCursor },
      tenantOutcomes: result.outcomes.map(toOutcomeType),
    });
    return out;
  }

  private backend(record: TenantRecord): HuntingBackend {
    return record.huntingBackend ?? this.deps.defaultBackend;
  }
}

function toOutcomeType(outcome: DomainOutcome): HuntingTenantOutcome {
  let error: TenantError | null = null;
  if (outcome.error) {
    error = new TenantError();
    // tenantId lets TenantError.consentLink apply the consent-link rule.
    Object.assign(error, {
      tenantId: outcome.tenantId,
      code: TenantErrorCode[outcome.error.code],
      message: outcome.error.message,
      hint: outcome.error.hint,
      retryAfterSeconds: outcome.error.retryAfterSeconds ?? null,
    });
  }
  return {
    tenantId: outcome.tenantId,
    ok: outcome.ok,
    error,
    rowCount: outcome.rowCount,
    truncated: outcome.truncated,
    durationMs: outcome.durationMs,
    backend: outcome.backend === "graph" ? HuntingBackendKind.GRAPH : HuntingBackendKind.DEFENDER,
  };
}
