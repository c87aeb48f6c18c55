import "reflect-metadata";
import { GraphQLError } from "graphql";
import { Arg, Args, Ctx, FieldResolver, ID, Mutation, Query, Resolver, Root } from "type-graphql";
import { readableScope } from "../auth/caller.js";
import type { ConsentLinks } from "../auth/consent.js";
import type { IncidentsBackend } from "../config.js";
import type { Incident as DomainIncident, IncidentPatch } from "../defender/incident.js";
import { badInput, ErrorCode, toPublicError } from "../errors.js";
import { QueryInputError, queryIncidents, type IncidentQuery } from "../incidents/incident-query.js";
import type { IncidentService, IncidentTarget } from "../incidents/incident-service.js";
import { tenantForbidden, toTenantError, type TenantError as DomainTenantError, type TenantOutcome as DomainOutcome } from "../incidents/outcome.js";
import { summarizeIncidents } from "../incidents/summary.js";
import { ConsentFlowKind } from "../schema/consent.type.js";
import {
  Incident,
  IncidentConnection,
  IncidentFilter,
  IncidentPageArgs,
  IncidentSummary,
  TenantOutcome,
  UpdateIncidentInput,
} from "../schema/incident.type.js";
import { IncidentsBackendKind } from "../schema/server-info.type.js";
import { Tenant } from "../schema/tenant.type.js";
import { TenantError, TenantErrorCode } from "../schema/token.type.js";
import { normaliseTenantId, type TenantRecord, type TenantStore } from "../store/tenant-store.js";
import { audited, requirePermission, visibleTenant } from "./access.js";
import type { GraphQLContext } from "./context.js";
import { createConsentLink, tenantIdArgument } from "./tenants.resolver.js";

export interface IncidentsResolverDeps {
  tenants: TenantStore;
  service: IncidentService;
  links: ConsentLinks;
  defaultBackend: IncidentsBackend;
}

/** At most this many tenants in one query. */
export const MAX_TENANTS_PER_QUERY = 1000;

/**
 * Incidents across tenants. Resolvers stay thin: pick the tenants, load them through the per-request
 * loader (one load per tenant per request), merge and page with `queryIncidents`, and turn each tenant's
 * outcome into its public shape.
 */
@Resolver(() => Incident)
export class IncidentsResolver {
  constructor(private readonly deps: IncidentsResolverDeps) {}

  @Query(() => IncidentConnection, {
    description:
      "Incidents of many tenants in one order. With neither tenantIds nor tenantTags: every registered tenant in the " +
      "caller's scope; with both: the listed tenants that carry one of the tags. A tenant that fails never fails the " +
      "query: see tenantOutcomes (TENANT_FORBIDDEN for a listed tenant that is unknown or outside the caller's scope).",
  })
  async incidents(
    @Arg("tenantIds", () => [ID], { nullable: true }) tenantIds: string[] | undefined,
    @Arg("tenantTags", () => [String], { nullable: true }) tenantTags: string[] | undefined,
    @Args(() => IncidentPageArgs) page: IncidentPageArgs,
    @Ctx() ctx: GraphQLContext,
  ): Promise<IncidentConnection> {
    const { records, refused } = await this.selectTenants(tenantIds ?? undefined, tenantTags ?? undefined, ctx);
    return this.connection(records, page, ctx, refused);
  }

  @Query(() => Incident, { nullable: true, description: "One incident; null when the tenant has no such incident." })
  async incident(
    @Arg("tenantId", () => ID) tenantId: string,
    @Arg("incidentId", () => ID) incidentId: string,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Incident | null> {
    const record = await visibleTenant(ctx, tenantId);
    const id = validIncidentId(incidentId);
    try {
      const found = await this.deps.service.getIncident(this.target(record), id, ctx.operation);
      return found ? toIncidentType(found) : null;
    } catch (error) {
      throw this.tenantFailure(record.id, error, ctx);
    }
  }

  @Mutation(() => Incident, {
    description:
      "Changes an incident, written through to the tenant's backend (needs Incident.ReadWrite.All or " +
      "SecurityIncident.ReadWrite.All in that tenant: MISSING_ROLE otherwise). The caller needs RESPONDER over the tenant.",
  })
  async updateIncident(
    @Arg("tenantId", () => ID) tenantId: string,
    @Arg("incidentId", () => ID) incidentId: string,
    @Arg("input", () => UpdateIncidentInput) input: UpdateIncidentInput,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Incident> {
    const normalised = tenantIdArgument(tenantId);
    const id = validIncidentId(incidentId);
    const patch = toPatch(input);
    return audited(ctx, { action: "incident.update", tenantId: normalised, target: id, detail: { changed: Object.keys(patch) } }, async () => {
      const record = await visibleTenant(ctx, normalised);
      requirePermission(ctx, record, "update");
      return this.update(record, id, patch, ctx);
    });
  }

  private async update(record: TenantRecord, id: string, patch: IncidentPatch, ctx: GraphQLContext): Promise<Incident> {
    const target = this.target(record);
    const diagnosis = await ctx.loaders.diagnosis.load(`${record.id}|${target.backend}`);
    if ("claims" in diagnosis && diagnosis.claims && !diagnosis.canUpdate) {
      throw new GraphQLError(
        `the app may not update incidents in tenant ${record.id}: its token lacks ${diagnosis.missingRoles?.update.join(" or ")}`,
        {
          extensions: {
            code: "MISSING_ROLE",
            hint: "Ask the customer's Global Administrator to open the consent link again so the app's current permissions (ReadWrite) are granted.",
            consentLink: (await createConsentLink(this.deps.links, ConsentFlowKind.ADMIN_CONSENT, record.id, undefined)).url,
          },
        },
      );
    }
    try {
      return toIncidentType(await this.deps.service.updateIncident(target, id, patch, ctx.operation));
    } catch (error) {
      throw this.tenantFailure(record.id, error, ctx);
    }
  }

  /** The page for a set of tenants (shared with `Tenant.incidents`). */
  async connection(
    records: TenantRecord[],
    args: IncidentPageArgs,
    ctx: GraphQLContext,
    refused: readonly string[] = [],
  ): Promise<IncidentConnection> {
    const loaded = await Promise.all(records.map((r) => ctx.loaders.incidents.load(this.key(r))));
    const query: IncidentQuery = {
      filter: args.filter ? toDomainFilter(args.filter) : null,
      orderBy: args.orderBy ? { field: args.orderBy.field, direction: args.orderBy.direction } : null,
      first: args.first,
      after: args.after ?? null,
    };
    let page;
    try {
      page = queryIncidents(
        loaded.map((l) => ({ tenantId: l.tenantId, incidents: l.incidents })),
        query,
      );
    } catch (error) {
      if (error instanceof QueryInputError) throw badInput(error.message, error.field);
      throw error;
    }
    return {
      edges: page.edges.map((e) => ({ cursor: e.cursor, node: toIncidentType(e.incident) })),
      pageInfo: {
        hasNextPage: page.hasNextPage,
        hasPreviousPage: page.hasPreviousPage,
        startCursor: page.startCursor,
        endCursor: page.endCursor,
      },
      totalCount: page.totalCount,
      tenantOutcomes: [
        ...(await Promise.all(loaded.map((l) => this.outcome(l.outcome)))),
        ...(await Promise.all(
          refused.map((tenantId) =>
            this.outcome({ tenantId, ok: false, fromCache: false, fetchedAt: null, durationMs: 0, error: tenantForbidden(tenantId) }),
          ),
        )),
      ],
    };
  }

  /** The summary of one tenant (shared with `Tenant.incidentSummary`). */
  async summary(record: TenantRecord, ctx: GraphQLContext): Promise<IncidentSummary> {
    const loaded = await ctx.loaders.incidents.load(this.key(record));
    const counts = summarizeIncidents(loaded.incidents);
    return {
      total: counts.total,
      bySeverity: Object.entries(counts.bySeverity).map(([severity, count]) => ({ severity, count })) as IncidentSummary["bySeverity"],
      byStatus: Object.entries(counts.byStatus).map(([status, count]) => ({ status, count })) as IncidentSummary["byStatus"],
      outcome: await this.outcome(loaded.outcome),
    };
  }

  key(record: TenantRecord): `${string}|${IncidentsBackend}` {
    return `${record.id}|${this.target(record).backend}`;
  }

  private target(record: TenantRecord): IncidentTarget {
    return { tenantId: record.id, backend: record.backend ?? this.deps.defaultBackend };
  }

  /**
   * The tenants a query spans: the listed ones the caller may see (an unknown or invisible one is `refused`,
   * one answer for both), or every tenant in the caller's scope.
   */
  private async selectTenants(
    tenantIds: string[] | undefined,
    tenantTags: string[] | undefined,
    ctx: GraphQLContext,
  ): Promise<{ records: TenantRecord[]; refused: string[] }> {
    let records: TenantRecord[];
    let refused: string[] = [];
    if (tenantIds) {
      if (tenantIds.length > MAX_TENANTS_PER_QUERY) {
        throw badInput(`at most ${MAX_TENANTS_PER_QUERY} tenantIds per query`, "tenantIds");
      }
      let ids: string[];
      try {
        ids = [...new Set(tenantIds.map(normaliseTenantId))];
      } catch (error) {
        return toPublicError(error);
      }
      const found = await ctx.loaders.tenant.loadMany(ids);
      const failed = found.find((r) => r instanceof Error);
      if (failed) throw failed;
      refused = ids.filter((_, i) => !found[i]);
      records = found.filter((r): r is TenantRecord => r !== undefined && !(r instanceof Error));
      if (tenantTags && tenantTags.length > 0) {
        const wanted = new Set(tenantTags);
        records = records.filter((r) => r.tags.some((t) => wanted.has(t)));
      }
    } else {
      records = await this.allTenants(tenantTags && tenantTags.length > 0 ? tenantTags : undefined, ctx);
    }
    return { records, refused };
  }

  /** Every registered tenant in the caller's scope (with any of the tags), refusing more than a query may span. */
  private async allTenants(tags: string[] | undefined, ctx: GraphQLContext): Promise<TenantRecord[]> {
    const records: TenantRecord[] = [];
    const scope = readableScope(ctx.caller);
    let after: string | undefined;
    for (;;) {
      const page = await this.deps.tenants
        .list({ ...(tags ? { tags } : {}), ...(scope ? { scope } : {}) }, 500, after)
        .catch(toPublicError);
      records.push(...page.items);
      if (records.length > MAX_TENANTS_PER_QUERY) {
        throw badInput(
          `more than ${MAX_TENANTS_PER_QUERY} tenants match: name them with tenantIds or narrow them with tenantTags`,
          "tenantIds",
        );
      }
      if (!page.hasNextPage) return records;
      after = page.cursors.at(-1);
    }
  }

  private async outcome(outcome: DomainOutcome): Promise<TenantOutcome> {
    return {
      tenantId: outcome.tenantId,
      ok: outcome.ok,
      fromCache: outcome.fromCache,
      fetchedAt: outcome.fetchedAt,
      durationMs: Math.round(outcome.durationMs),
      error: outcome.error ? await this.publicTenantError(outcome.tenantId, outcome.error) : null,
    };
  }

  private async publicTenantError(tenantId: string, error: DomainTenantError): Promise<TenantError> {
    const out = new TenantError();
    Object.assign(out, {
      code: TenantErrorCode[error.code],
      message: error.message,
      hint: error.hint,
      retryAfterSeconds: error.retryAfterSeconds ?? null,
      consentLink:
        error.code === "CONSENT_REQUIRED" || error.code === "MISSING_ROLE"
          ? await createConsentLink(this.deps.links, ConsentFlowKind.ADMIN_CONSENT, tenantId, undefined)
          : null,
    });
    return out;
  }

  /** A single-tenant operation's failure as a GraphQL error with the tenant's public code. */
  private tenantFailure(tenantId: string, error: unknown, ctx: GraphQLContext): GraphQLError {
    const failure = toTenantError(error, { tenantId, logger: ctx.logger });
    if (failure.code === "NOT_FOUND") {
      return new GraphQLError(failure.message, { extensions: { code: ErrorCode.NOT_FOUND } });
    }
    if (failure.code === "BAD_REQUEST") {
      return new GraphQLError(failure.message, { extensions: { code: ErrorCode.BAD_USER_INPUT } });
    }
    return new GraphQLError(failure.message, {
      extensions: {
        code: failure.code,
        hint: failure.hint,
        ...(failure.retryAfterSeconds !== undefined ? { retryAfterSeconds: failure.retryAfterSeconds } : {}),
      },
    });
  }
}

/** `Tenant.incidents` and `Tenant.incidentSummary`, through the same loaders as `incidents`. */
@Resolver(() => Tenant)
export class TenantIncidentsResolver {
  constructor(private readonly incidentsResolver: IncidentsResolver) {}

  @FieldResolver(() => IncidentConnection, { description: "This tenant's incidents." })
  async incidents(
    @Root() tenant: Tenant,
    @Args(() => IncidentPageArgs) page: IncidentPageArgs,
    @Ctx() ctx: GraphQLContext,
  ): Promise<IncidentConnection> {
    return this.incidentsResolver.connection([await this.record(tenant, ctx)], page, ctx);
  }

  @FieldResolver(() => IncidentSummary, { description: "Counts of this tenant's incidents by severity and status." })
  async incidentSummary(@Root() tenant: Tenant, @Ctx() ctx: GraphQLContext): Promise<IncidentSummary> {
    return this.incidentsResolver.summary(await this.record(tenant, ctx), ctx);
  }

  private async record(tenant: Tenant, ctx: GraphQLContext): Promise<TenantRecord> {
    const record = await ctx.loaders.tenant.load(tenant.id);
    if (record) return record;
    // Removed in this very operation: fall back to the values the parent resolved.
    return {
      id: tenant.id,
      displayName: tenant.displayName,
      tags: tenant.tags,
      backend: tenant.backend === IncidentsBackendKind.GRAPH ? "graph" : tenant.backend === IncidentsBackendKind.DEFENDER ? "defender" : null,
      consentState: tenant.consentState,
      consentedAt: tenant.consentedAt,
      consentError: tenant.consentError,
      lastTokenSuccessAt: tenant.lastTokenSuccessAt,
      lastFailureAt: tenant.lastFailureAt,
      lastFailureCode: tenant.lastFailureCode,
      createdAt: tenant.createdAt,
      updatedAt: tenant.updatedAt,
    };
  }
}

const INCIDENT_ID = /^[A-Za-z0-9_-]{1,64}$/;

function validIncidentId(id: string): string {
  const trimmed = id.trim();
  if (!INCIDENT_ID.test(trimmed)) throw badInput("incidentId must be 1 to 64 letters, digits, - or _", "incidentId");
  return trimmed;
}

function toPatch(input: UpdateIncidentInput): IncidentPatch {
  const patch: IncidentPatch = {};
  if (input.status !== undefined && input.status !== null) {
    if (input.status === "UNKNOWN" || input.status === "AWAITING_ACTION") {
      throw badInput("status can be set to ACTIVE, IN_PROGRESS, RESOLVED or REDIRECTED", "status");
    }
    patch.status = input.status;
  }
  if (input.assignedTo !== undefined && input.assignedTo !== null) {
    if (input.assignedTo.length > 256) throw badInput("assignedTo is at most 256 characters", "assignedTo");
    patch.assignedTo = input.assignedTo.trim() === "" ? null : input.assignedTo.trim();
  }
  if (input.classification !== undefined && input.classification !== null) patch.classification = input.classification;
  if (input.determination !== undefined && input.determination !== null) patch.determination = input.determination;
  if (input.tags !== undefined && input.tags !== null) {
    if (input.tags.length > 64 || input.tags.some((t) => t.trim() === "" || t.length > 128)) {
      throw badInput("tags: at most 64, each 1 to 128 characters", "tags");
    }
    patch.tags = input.tags.map((t) => t.trim());
  }
  if (input.comment !== undefined && input.comment !== null) {
    if (input.comment.trim() === "" || input.comment.length > 10_000) throw badInput("comment must be 1 to 10,000 characters", "comment");
    patch.comment = input.comment;
  }
  if (Object.keys(patch).length === 0) throw badInput("give at least one field to change", "input");
  return patch;
}

function toDomainFilter(filter: IncidentFilter): NonNullable<IncidentQuery["filter"]> {
  if (filter.assignedTo !== undefined && filter.assignedTo !== null && filter.unassigned === true) {
    throw badInput("give assignedTo or unassigned, not both", "filter.unassigned");
  }
  const out: NonNullable<IncidentQuery["filter"]> = {};
  // The query treats a present assignedTo of "" as "unassigned", so set it only when asked for.
  if (filter.unassigned === true) out.assignedTo = "";
  else if (filter.assignedTo !== undefined && filter.assignedTo !== null) {
    if (filter.assignedTo.trim() === "") throw badInput("assignedTo must not be empty; use unassigned: true", "filter.assignedTo");
    out.assignedTo = filter.assignedTo;
  }
  if (filter.severity) out.severity = filter.severity;
  if (filter.status) out.status = filter.status;
  if (filter.classification) out.classification = filter.classification;
  if (filter.createdAfter) out.createdAfter = filter.createdAfter;
  if (filter.createdBefore) out.createdBefore = filter.createdBefore;
  if (filter.updatedAfter) out.updatedAfter = filter.updatedAfter;
  if (filter.updatedBefore) out.updatedBefore = filter.updatedBefore;
  if (filter.search) out.search = filter.search;
  return out;
}

/** The GraphQL shape of a normalised incident. */
export function toIncidentType(incident: DomainIncident): Incident {
  const out = new Incident();
  Object.assign(out, {
    ...incident,
    incidentName: incident.name,
    backend: incident.backend === "graph" ? IncidentsBackendKind.GRAPH : IncidentsBackendKind.DEFENDER,
    alerts: incident.alerts.map((alert) => ({
      ...alert,
      entities: alert.entities.map((entity) => ({
        ...entity,
        properties: Object.entries(entity.properties).map(([name, value]) => ({ name, value })),
      })),
    })),
  });
  return out;
}
