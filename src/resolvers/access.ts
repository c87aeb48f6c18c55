import { GraphQLError } from "graphql";
import { permits, permitsEverywhere, ROLE_NEEDED, type CallerRole, type ScopedTenant, type TenantPermission } from "../auth/caller.js";
import { ErrorCode, toPublicError } from "../errors.js";
import { tenantForbidden } from "../incidents/outcome.js";
import { TenantForbiddenError } from "../loaders/loaders.js";
import { normaliseTenantId, type TenantRecord } from "../store/tenant-store.js";
import type { AuditRecord, GraphQLContext } from "./context.js";

/**
 * Access checks of resolvers: one place that turns the caller model into public errors. Every check runs
 * before any token request or upstream call of the operation it guards.
 */

/** TENANT_FORBIDDEN: the same error for a tenant outside the caller's scope and for one that does not exist. */
export function tenantForbiddenError(tenantId: string): GraphQLError {
  const error = tenantForbidden(tenantId);
  return new GraphQLError(error.message, { extensions: { code: error.code, hint: error.hint } });
}

/** FORBIDDEN: the caller is who it says, but its role does not allow this. */
export function forbiddenError(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: ErrorCode.FORBIDDEN } });
}

/** The registry record of a tenant the caller may see, or TENANT_FORBIDDEN (unknown and invisible alike). */
export async function visibleTenant(ctx: GraphQLContext, tenantId: string): Promise<TenantRecord> {
  let id: string;
  try {
    id = normaliseTenantId(tenantId);
  } catch (error) {
    return toPublicError(error);
  }
  const record = await ctx.loaders.tenant.load(id);
  if (!record) throw tenantForbiddenError(id);
  return record;
}

const PERMISSION_WORDS: Record<TenantPermission, string> = {
  read: "read",
  update: "update incidents of",
  manage: "manage",
};

/** FORBIDDEN unless one of the caller's grants allows `permission` on this (visible) tenant. */
export function requirePermission(ctx: GraphQLContext, tenant: ScopedTenant, permission: TenantPermission): void {
  if (!permits(ctx.caller, permission, tenant)) {
    throw forbiddenError(`your role may not ${PERMISSION_WORDS[permission]} tenant ${tenant.id}: it needs ${ROLE_NEEDED[permission]}`);
  }
}

/** FORBIDDEN unless the caller holds `role` over every tenant (API keys, audit log, onboarding). */
export function requireEverywhere(ctx: GraphQLContext, role: CallerRole, what: string): void {
  if (!permitsEverywhere(ctx.caller, role)) throw forbiddenError(`${what} needs the ${role} role over all tenants`);
}

/**
 * Runs a mutation and records it in the audit log with its outcome: SUCCESS, or the public code of the
 * error it ended with (which is rethrown). Refusals are recorded too: they are what an auditor looks for.
 */
export async function audited<T>(ctx: GraphQLContext, record: Omit<AuditRecord, "outcome">, run: () => Promise<T>): Promise<T> {
  try {
    const result = await run();
    await ctx.audit({ ...record, outcome: "SUCCESS" });
    return result;
  } catch (error) {
    await ctx.audit({ ...record, outcome: publicCode(error) });
    throw error;
  }
}

/** The public code an error ends an action with, for the audit log. */
export function publicCode(error: unknown): string {
  if (error instanceof GraphQLError && typeof error.extensions.code === "string") return error.extensions.code;
  if (error instanceof TenantForbiddenError) return error.code;
  return ErrorCode.INTERNAL_SERVER_ERROR;
}
