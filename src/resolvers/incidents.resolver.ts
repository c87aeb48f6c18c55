import "reflect-metadata";
import { GraphQLError } from "graphql";
import { Arg, Args, Ctx, FieldResolver, ID, Mutation, Query, Resolver, Root } from "type-graphql";
import { readableScope } from "../auth/caller.js";
import type { ConsentLinks } from "../auth/consent.js";
import type { IncidentsBackend } from "../config.js";
import { INCIDENT_STATUSES, SEVERITIES, type Incident as DomainIncident, type IncidentAlert as DomainAlert, type IncidentPatch } from "../defender/incident.js";
import { backendUpdateProblem, updateProblem } from "../defender/update-rules.js";
import { badInput, ErrorCode, toPublicError } from "../errors.js";
import { parseIncidentQuery, QueryInputError, type ParsedIncidentQuery } from "../incidents/incident-query.js";
import type { IncidentService, IncidentTarget } from "../incidents/incident-service.js";
import { tenantForbidden, toTenantError, type TenantError as DomainTenantError, type TenantOutcome as DomainOutcome } from "../incidents/outcome.js";
import { ConsentFlowKind } from "../schema/consent.type.js";
import {
  Incident,
  IncidentAlert,
  IncidentConnection,
  IncidentPageArgs,
  IncidentSummary,
  SyncStateEnum,
  TenantOutcome,
  UpdateIncidentInput,
} from "../schema/incident.type.js";
import { IncidentsBackendKind } from "../schema/server-info.type.js";
import { Tenant } from "../schema/tenant.type.js";
import { TenantError, TenantErrorCode } from "../schema/token.type.js";
import { normaliseTenantId, type TenantRecord, type TenantStore } from "../store/tenant-store.js";
import { TenantForbiddenError, type IncidentsKey } from "../loaders/loaders.js";
import { audited, requirePermission, tenantForbiddenError, visibleTenant } from "./access.js";
import { checkLength, checkLengths, MAX_FILTER_TAGS, STRING_LIMITS } from "./arguments.js";
import type { GraphQLContext } from "./context.js";
import { consentLinkIfPermitted } from "./consent-links.js";
import { tenantIdArgument } from "./tenants.resolver.js";

export interface IncidentsResolverDeps {
  tenants: TenantStore;
  service: IncidentService;
  links: ConsentLinks;
  defaultBackend: IncidentsBackend;
}

/** At most this many tenants in one query. */
export const MAX_TENANTS_PER_QUERY = 1000;

/**
 * Incidents across tenants. Resolvers stay thin: check every argument first (`parseTenantSelection`,
 * `parseIncidentPage`, `validIncidentId`, `toPatch`), so a refused request loads no tenant and makes no
 * token or upstream call; then pick the tenants, load them through the per-request loader (one load per
 * tenant per request), merge and page with `pageIncidents`, and turn each tenant's outcome into its
 * public shape.
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
    const selection = parseTenantSelection(tenantIds, tenantTags);
    const query = parseIncidentPage(page, `incidents:${selection.scope}`);
    const maxAge = parseMaxAge(page.maxAgeSeconds);
    const { records, refused } = await this.selectTenants(selection, ctx);
    return this.connection(records, query, ctx, refused, maxAge);
  }

  @Query(() => Incident, { nullable: true, description: "One incident; null when the tenant has no such incident." })
  async incident(
    @Arg("tenantId", () => ID) tenantId: string,
    @Arg("incidentId", () => ID) incidentId: string,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Incident | null> {
    const normalised = tenantIdArgument(tenantId);
    const id = validIncidentId(incidentId);
    const record = await visibleTenant(ctx, normalised);
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
      // What the tenant's backend can write: known once the tenant is, still before any token or upstream call.
      const refusal = backendUpdateProblem(this.target(record).backend, patch);
      if (refusal) throw badInput(refusal.message, refusal.field, refusal.hint);
      return this.update(record, id, patch, ctx);
    });
  }

  private async update(record: TenantRecord, id: string, patch: IncidentPatch, ctx: GraphQLContext): Promise<Incident> {
    const target = this.target(record);
    // Refused here only when the token's roles say so; a token whose claims cannot be read goes to the API.
    const diagnosis = await ctx.loaders.rolesOnly.load(`${record.id}|${target.backend}`);
    if ("claims" in diagnosis && diagnosis.claims && !diagnosis.canUpdate) {
      throw new GraphQLError(
        `the app may not update incidents in tenant ${record.id}: its token lacks ${diagnosis.missingRoles?.update.join(" or ")}`,
        {
          extensions: {
            code: "MISSING_ROLE",
            hint: "Ask the customer's Global Administrator to open the consent link again so the app's current permissions (ReadWrite) are granted.",
            // Only for a caller that may mint it (ADMIN over the tenant); omitted otherwise.
            consentLink: (await consentLinkIfPermitted(ctx, this.deps.links, { flow: ConsentFlowKind.ADMIN_CONSENT, tenantId: record.id }))?.url,
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

  /**
   * `Incident.alerts`: as the incident carries them (Defender, or Graph ones already read), else read
   * through the request's alerts loader — batched per tenant, no call for alerts cached with this version
   * of the incident. A failure nulls this incident's alerts alone, with its tenant's public code.
   */
  @FieldResolver(() => [IncidentAlert], { nullable: true })
  async alerts(@Root() incident: Incident, @Ctx() ctx: GraphQLContext): Promise<IncidentAlert[] | null> {
    if (incident.alerts !== null && incident.alerts !== undefined) return incident.alerts;
    try {
      const alerts = await ctx.loaders.alerts.load({
        tenantId: incident.tenantId,
        backend: incident.backend === IncidentsBackendKind.GRAPH ? "graph" : "defender",
        incidentId: incident.incidentId,
        lastUpdateTime: incident.lastUpdateTime,
      });
      return alerts.map(toAlertType);
    } catch (error) {
      if (error instanceof TenantForbiddenError) throw tenantForbiddenError(error.tenantId);
      throw this.tenantFailure(incident.tenantId, error, ctx);
    }
  }

  /**
   * The page of a parsed query over a set of tenants (shared with `Tenant.incidents`): each tenant's state
   * through the request's loader (waiting only for tenants never synced, or older than `maxAgeSeconds`),
   * then one indexed query over the mirror for the tenants whose incidents may be shown.
   */
  async connection(
    records: TenantRecord[],
    query: ParsedIncidentQuery,
    ctx: GraphQLContext,
    refused: readonly string[] = [],
    maxAge?: number,
  ): Promise<IncidentConnection> {
    const loaded = await Promise.all(records.map((r) => ctx.loaders.incidents.load(this.key(r, maxAge))));
    const page = await this.deps.service
      .page(
        loaded.filter((l) => l.usable).map((l) => l.tenantId),
        query,
        loaded,
      )
      .catch(toPublicError);
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
            this.outcome({ tenantId, ok: false, fromCache: false, fetchedAt: null, durationMs: 0, complete: false, error: tenantForbidden(tenantId) }),
          ),
        )),
      ],
    };
  }

  /** The summary of one tenant (shared with `Tenant.incidentSummary`): counted in the mirror. */
  async summary(record: TenantRecord, ctx: GraphQLContext): Promise<IncidentSummary> {
    const loaded = await ctx.loaders.incidents.load(this.key(record));
    const counts = loaded.usable ? await this.deps.service.counts([loaded.tenantId]).catch(toPublicError) : { total: 0, bySeverity: {}, byStatus: {} };
    return {
      total: counts.total,
      bySeverity: SEVERITIES.map((severity) => ({ severity, count: counts.bySeverity[severity] ?? 0 })) as IncidentSummary["bySeverity"],
      byStatus: INCIDENT_STATUSES.map((status) => ({ status, count: counts.byStatus[status] ?? 0 })) as IncidentSummary["byStatus"],
      outcome: await this.outcome(loaded.outcome),
    };
  }

  key(record: TenantRecord, maxAgeMs?: number): IncidentsKey {
    const base = `${record.id}|${this.target(record).backend}` as const;
    return maxAgeMs === undefined ? base : `${base}|${maxAgeMs}`;
  }

  private target(record: TenantRecord): IncidentTarget {
    return { tenantId: record.id, backend: record.backend ?? this.deps.defaultBackend };
  }

  /**
   * The tenants a query spans: the listed ones the caller may see (an unknown or invisible one is `refused`,
   * one answer for both), or every tenant in the caller's scope. Shared with `huntingQuery`.
   */
  async selectTenants(selection: TenantSelection, ctx: GraphQLContext): Promise<{ records: TenantRecord[]; refused: string[] }> {
    const { ids, tags } = selection;
    if (!ids) return { records: await this.allTenants(tags, ctx), refused: [] };
    const found = await ctx.loaders.tenant.loadMany(ids);
    const failed = found.find((r) => r instanceof Error);
    if (failed) throw failed;
    let records = found.filter((r): r is TenantRecord => r !== undefined && !(r instanceof Error));
    if (tags) {
      const wanted = new Set(tags);
      records = records.filter((r) => r.tags.some((t) => wanted.has(t)));
    }
    return { records, refused: ids.filter((_, i) => !found[i]) };
  }

  /** Every registered tenant in the caller's scope (with any of the tags), refusing more than a query may span. */
  private async allTenants(tags: string[] | undefined, ctx: GraphQLContext): Promise<TenantRecord[]> {
    const records: TenantRecord[] = [];
    const scope = readableScope(ctx.caller);
    try {
      for await (const items of this.deps.tenants.pages({ ...(tags ? { tags } : {}), ...(scope ? { scope } : {}) })) {
        records.push(...items);
        if (records.length > MAX_TENANTS_PER_QUERY) {
          throw badInput(
            `more than ${MAX_TENANTS_PER_QUERY} tenants match: name them with tenantIds or narrow them with tenantTags`,
            "tenantIds",
          );
        }
      }
    } catch (error) {
      toPublicError(error);
    }
    return records;
  }

  private async outcome(outcome: DomainOutcome): Promise<TenantOutcome> {
    return {
      tenantId: outcome.tenantId,
      ok: outcome.ok,
      fromCache: outcome.fromCache,
      fetchedAt: outcome.fetchedAt,
      durationMs: Math.round(outcome.durationMs),
      complete: outcome.complete,
      error: outcome.error ? await this.publicTenantError(outcome.tenantId, outcome.error) : null,
      syncState: outcome.syncState ? SyncStateEnum[outcome.syncState] : null,
      incidentsMirrored: outcome.incidentsMirrored ?? null,
    };
  }

  private async publicTenantError(tenantId: string, error: DomainTenantError): Promise<TenantError> {
    const out = new TenantError();
    // The consent link, when there is one for this caller, comes from TenantError.consentLink's resolver.
    Object.assign(out, {
      tenantId,
      code: TenantErrorCode[error.code],
      message: error.message,
      hint: error.hint,
      retryAfterSeconds: error.retryAfterSeconds ?? null,
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
    const query = parseIncidentPage(page, `Tenant.incidents:${tenant.id}`);
    const maxAge = parseMaxAge(page.maxAgeSeconds);
    return this.incidentsResolver.connection([await this.record(tenant, ctx)], query, ctx, [], maxAge);
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

/** The tenants an `incidents` query names, checked: ids normalised and deduplicated, tags bounded. */
export interface TenantSelection {
  /** The listed tenants; undefined: every tenant in the caller's scope. */
  ids: string[] | undefined;
  /** Only tenants carrying one of these; undefined (or an empty list given): no constraint. */
  tags: string[] | undefined;
  /** The selection in canonical form, for the cursor binding. */
  scope: string;
}

/**
 * Checks `incidents(tenantIds, tenantTags)` without touching the registry: at most
 * MAX_TENANTS_PER_QUERY ids, each a GUID; at most MAX_FILTER_TAGS tags, each bounded.
 */
export function parseTenantSelection(tenantIds: readonly string[] | null | undefined, tenantTags: readonly string[] | null | undefined): TenantSelection {
  let ids: string[] | undefined;
  if (tenantIds !== undefined && tenantIds !== null) {
    if (tenantIds.length > MAX_TENANTS_PER_QUERY) throw badInput(`at most ${MAX_TENANTS_PER_QUERY} tenantIds per query`, "tenantIds");
    try {
      ids = [...new Set(tenantIds.map(normaliseTenantId))];
    } catch {
      throw badInput("tenantIds must be Entra tenant ids (GUIDs)", "tenantIds");
    }
  }
  checkLengths(tenantTags, "tenantTags", MAX_FILTER_TAGS, STRING_LIMITS.tenantTag);
  const tags = tenantTags && tenantTags.length > 0 ? [...new Set(tenantTags)] : undefined;
  return { ids, tags, scope: JSON.stringify([ids ? [...ids].sort() : null, tags ? [...tags].sort() : null]) };
}

/**
 * The filter, order, page size and cursor of `incidents` and `Tenant.incidents`, checked and compiled
 * before any tenant is loaded; `scope` names the field and its tenants, so a cursor of another field,
 * tenant selection, filter or order is refused here too.
 */
export function parseIncidentPage(args: IncidentPageArgs, scope: string): ParsedIncidentQuery {
  try {
    return parseIncidentQuery({
      filter: args.filter ?? null,
      orderBy: args.orderBy ?? null,
      first: args.first,
      after: args.after ?? null,
      scope,
    });
  } catch (error) {
    if (error instanceof QueryInputError) throw badInput(error.message, error.field);
    throw error;
  }
}

/** Longest `maxAgeSeconds`: a day. */
export const MAX_AGE_SECONDS = 86_400;

/** `maxAgeSeconds` in ms, checked: an integer from 0 to a day; undefined when not given. */
export function parseMaxAge(maxAgeSeconds: number | null | undefined): number | undefined {
  if (maxAgeSeconds === undefined || maxAgeSeconds === null) return undefined;
  if (!Number.isInteger(maxAgeSeconds) || maxAgeSeconds < 0 || maxAgeSeconds > MAX_AGE_SECONDS) {
    throw badInput(`maxAgeSeconds must be an integer from 0 to ${MAX_AGE_SECONDS}`, "maxAgeSeconds");
  }
  return maxAgeSeconds * 1000;
}

const INCIDENT_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Whether a string is an incident id as both backends issue them (legacy numbers, Graph ids). */
export function isIncidentId(id: string): boolean {
  // Bounded before trimming: surrounding spaces are allowed, a megabyte is not even copied.
  return id.length <= 2 * STRING_LIMITS.id && INCIDENT_ID.test(id.trim());
}

function validIncidentId(id: string): string {
  if (!isIncidentId(id)) throw badInput("incidentId must be 1 to 64 letters, digits, - or _", "incidentId");
  return id.trim();
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
    checkLength(input.assignedTo, "assignedTo", STRING_LIMITS.assignedTo);
    patch.assignedTo = input.assignedTo.trim() === "" ? null : input.assignedTo.trim();
  }
  if (input.classification !== undefined && input.classification !== null) patch.classification = input.classification;
  if (input.determination !== undefined && input.determination !== null) patch.determination = input.determination;
  if (input.tags !== undefined && input.tags !== null) {
    if (input.tags.length > 64 || input.tags.some((t) => t.trim() === "" || t.length > STRING_LIMITS.incidentTag)) {
      throw badInput(`tags: at most 64, each 1 to ${STRING_LIMITS.incidentTag} characters`, "tags");
    }
    patch.tags = input.tags.map((t) => t.trim());
  }
  if (input.comment !== undefined && input.comment !== null) {
    if (input.comment.length > STRING_LIMITS.comment || input.comment.trim() === "") {
      throw badInput(`comment must be 1 to ${STRING_LIMITS.comment.toLocaleString("en-US")} characters`, "comment");
    }
    patch.comment = input.comment;
  }
  if (Object.keys(patch).length === 0) throw badInput("give at least one field to change", "input");
  const refusal = updateProblem(patch);
  if (refusal) throw badInput(refusal.message, refusal.field, refusal.hint);
  return patch;
}

/** The GraphQL shape of a normalised incident. */
export function toIncidentType(incident: DomainIncident): Incident {
  const out = new Incident();
  Object.assign(out, {
    ...incident,
    incidentName: incident.name,
    backend: incident.backend === "graph" ? IncidentsBackendKind.GRAPH : IncidentsBackendKind.DEFENDER,
    // null: not loaded (Graph lists), read by the `alerts` field resolver when a query selects them.
    alerts: incident.alerts === null ? null : incident.alerts.map(toAlertType),
  });
  return out;
}

function toAlertType(alert: DomainAlert): IncidentAlert {
  return {
    ...alert,
    entities: alert.entities.map((entity) => ({
      ...entity,
      properties: Object.entries(entity.properties).map(([name, value]) => ({ name, value })),
    })),
  };
}
