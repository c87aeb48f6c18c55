import type { IncidentsBackend } from "../config.js";
import { toPublicError } from "../errors.js";
import type { Incident } from "../schema/incident.type.js";
import type { Tenant } from "../schema/tenant.type.js";
import { normaliseTenantId } from "../store/tenant-store.js";
import type { GraphQLContext } from "./context.js";
import { toTenant } from "./tenants.resolver.js";

export interface EntityReferenceDeps {
  defaultBackend: IncidentsBackend;
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
 * other tenant read. A key that is not a tenant id, or a tenant that is not registered, resolves to null
 * (as `Query.tenant` does), so one bad key never fails the other entities of the batch.
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
  return record ? toTenant(record, deps.defaultBackend) : null;
}

/**
 * Resolves an `Incident` representation. Hook for the incidents work: load the incident through the
 * request's loaders (the tenant's cached incidents, caller scope applied) and map it with the incidents
 * resolver's mapping. Until then a router asking for an Incident's Crosswatch fields gets null for it; the
 * other direction (Crosswatch returns incidents, another subgraph adds fields to them) already works.
 */
export async function resolveIncidentReference(
  _ctx: GraphQLContext,
  _tenantId: string,
  _incidentId: string,
): Promise<Incident | null> {
  return null;
}

/** `__resolveReference` of each entity type, for `buildCrosswatchSchema`. */
export function createEntityReferences(deps: EntityReferenceDeps) {
  return {
    Tenant: {
      __resolveReference: (reference: TenantReference, ctx: GraphQLContext) => resolveTenantReference(ctx, reference.id, deps),
    },
    Incident: {
      __resolveReference: (reference: IncidentReference, ctx: GraphQLContext) =>
        resolveIncidentReference(ctx, String(reference.tenantId), String(reference.incidentId)),
    },
  };
}
