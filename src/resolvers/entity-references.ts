import type { IncidentService } from "../incidents/incident-service.js";
import type { IncidentsBackend } from "../config.js";
import { toPublicError } from "../errors.js";
import { requireEverywhere, tenantForbiddenError } from "./access.js";
import type { Incident } from "../schema/incident.type.js";
import type { Tenant } from "../schema/tenant.type.js";
import { normaliseTenantId } from "../store/tenant-store.js";
import type { GraphQLContext } from "./context.js";
import { isIncidentId, toIncidentType } from "./incidents.resolver.js";
import { toTenant } from "./tenants.resolver.js";

export interface EntityReferenceDeps {
  defaultBackend: IncidentsBackend;
  incidents: IncidentService;
}

/** The key fields a router sends for each entity (`@key` on the schema classes). */
export interface TenantReference {
  id: string;
}
export interface IncidentReference {
  tenantId: string;
  incidentId: string;
}

/**
 * Resolves a `Tenant` representation through the request's tenant loader, so the representations of one
 * `_entities` call cost one registry query together, and the same per-request rules apply as for every
 * other tenant read. A key that is not a tenant id resolves to null; a tenant that is not registered or is
 * outside the caller's scope is TENANT_FORBIDDEN (as for `Query.tenant`), for that entity only, so one bad
 * key never fails the other entities of the batch.
 */
export async function resolveTenantReference(
  ctx: GraphQLContext,
  id: string,
  deps: EntityReferenceDeps,
): Promise<Tenant | null> {
  let normalised: string;
  try {
    normalised = normaliseTenantId(String(id));
  } catch {
    return null;
  }
  const record = await ctx.loaders.tenant.load(normalised).catch(toPublicError);
  if (!record) throw tenantForbiddenError(normalised);
  return toTenant(record, deps.defaultBackend);
}

/**
 * Resolves an `Incident` representation through the request's incidents loader: every representation of
 * one tenant in an `_entities` call shares one load of that tenant (its cache, or one refresh). An unknown
 * tenant or incident, or a tenant that cannot be read right now, resolves to null for that entity only.
 */
export async function resolveIncidentReference(
  ctx: GraphQLContext,
  tenantId: string,
  incidentId: string,
  deps: EntityReferenceDeps,
): Promise<Incident | null> {
  let normalised: string;
  try {
    normalised = normaliseTenantId(tenantId);
  } catch {
    return null;
  }
  // No incident has such an id: null without loading the tenant (no token or upstream call).
  if (!isIncidentId(incidentId)) return null;
  const record = await ctx.loaders.tenant.load(normalised).catch(toPublicError);
  if (!record) throw tenantForbiddenError(normalised);
  const loaded = await ctx.loaders.incidents.load(`${record.id}|${record.backend ?? deps.defaultBackend}`);
  if (!loaded.usable) return null;
  const found = await deps.incidents.mirror.get(record.id, incidentId.trim());
  return found ? toIncidentType(found) : null;
}

/**
 * Why `_entities` cannot resolve a representation, or undefined when it can: it must be an object whose
 * `__typename` is one of `entityTypes`. The reason never repeats what the caller sent.
 */
export function representationProblem(representation: unknown, entityTypes: ReadonlySet<string>): string | undefined {
  if (typeof representation !== "object" || representation === null || Array.isArray(representation)) return "is not an object";
  const typename: unknown = (representation as Record<string, unknown>).__typename;
  if (typename === undefined || typename === null) return "has no __typename";
  if (typeof typename !== "string" || !entityTypes.has(typename)) return "has a __typename that is not an entity type of this service";
  return undefined;
}

/**
 * Who may read `_service { sdl }` when introspection is off: a caller with ADMIN over every tenant, which
 * is what a gateway or `rover subgraph introspect` sends when it composes from the running server. The SDL
 * is the whole schema, so it is closed exactly as introspection is, and this caller may do everything
 * anyway.
 */
export function requireServiceSdlAccess(ctx: GraphQLContext): void {
  requireEverywhere(ctx, "ADMIN", "reading the subgraph schema (_service)");
}

/** `__resolveReference` of each entity type, for `buildCrosswatchSchema`. */
export function createEntityReferences(deps: EntityReferenceDeps) {
  return {
    Tenant: {
      __resolveReference: (reference: TenantReference, ctx: GraphQLContext) => resolveTenantReference(ctx, reference.id, deps),
    },
    Incident: {
      __resolveReference: (reference: IncidentReference, ctx: GraphQLContext) =>
        resolveIncidentReference(ctx, String(reference.tenantId), String(reference.incidentId), deps),
    },
  };
}
