/**
 * Who is calling and what they may do. Services and resolvers ask these functions; nothing else decides
 * access. A caller holds one or more grants (an API key has one; an Entra token one per mapped app role),
 * and an action on a tenant is allowed when one single grant both ranks high enough and covers the tenant,
 * so an admin grant over tag `eu` combined with a reader grant over everything never makes an admin of all.
 */

/** Roles in rising order: each may do what the ones before it may. */
export const CALLER_ROLES = ["READER", "RESPONDER", "ADMIN"] as const;
export type CallerRole = (typeof CALLER_ROLES)[number];

/** What an action needs: read a tenant, update its incidents, manage it in the registry. */
export type TenantPermission = "read" | "update" | "manage";

/** The least role each permission needs. */
export const ROLE_NEEDED: Readonly<Record<TenantPermission, CallerRole>> = { read: "READER", update: "RESPONDER", manage: "ADMIN" };

/** Tenants a grant covers: all of them, or those named by id or carrying one of the tags. */
export interface TenantScope {
  allTenants: boolean;
  /** Lower-case tenant GUIDs. */
  tenantIds: readonly string[];
  tenantTags: readonly string[];
}

export interface Grant {
  role: CallerRole;
  scope: TenantScope;
}

/** SYSTEM never calls: it is the actor of what Crosswatch itself records (consent drift), in the audit log. */
export const CALLER_KINDS = ["ANONYMOUS", "API_KEY", "ENTRA", "CLI", "SYSTEM"] as const;
export type CallerKind = (typeof CALLER_KINDS)[number];

export interface Caller {
  kind: CallerKind;
  /** Stable id for audit: the key's id, the token's `oid` (or `sub`), `anonymous`, or `cli:<user>`. */
  id: string;
  /** Human label: the key's name, the token's `name`/`preferred_username`, … */
  name: string;
  grants: readonly Grant[];
}

/** The tenant facts access depends on. */
export interface ScopedTenant {
  id: string;
  tags: readonly string[];
}

export function roleRank(role: CallerRole): number {
  return CALLER_ROLES.indexOf(role);
}

export function scopeCovers(scope: TenantScope, tenant: ScopedTenant): boolean {
  if (scope.allTenants) return true;
  const id = tenant.id.toLowerCase();
  if (scope.tenantIds.includes(id)) return true;
  return tenant.tags.some((tag) => scope.tenantTags.includes(tag));
}

/** Whether one of the caller's grants allows `permission` on this tenant. */
export function permits(caller: Caller, permission: TenantPermission, tenant: ScopedTenant): boolean {
  const needed = roleRank(ROLE_NEEDED[permission]);
  return caller.grants.some((grant) => roleRank(grant.role) >= needed && scopeCovers(grant.scope, tenant));
}

/**
 * Whether the caller holds `role` over every tenant: what managing API keys and reading the audit log
 * need, since a key or an audit entry may concern any tenant.
 */
export function permitsEverywhere(caller: Caller, role: CallerRole): boolean {
  return caller.grants.some((grant) => roleRank(grant.role) >= roleRank(role) && grant.scope.allTenants);
}

/**
 * Whether the caller may mint a consent link: the one rule for every way a link is made (`consentLink`,
 * `Tenant.consentLink`, the link in a tenant error). Answering a link changes the tenant's consent state,
 * so it needs ADMIN over that tenant; for a tenant not registered (or visible) yet, and for a link any
 * tenant's admin may use (`tenant` undefined), ADMIN over every tenant.
 */
export function permitsConsentLink(caller: Caller, tenant: ScopedTenant | undefined): boolean {
  return tenant ? permits(caller, "manage", tenant) : permitsEverywhere(caller, "ADMIN");
}

/** The highest role among the caller's grants (for display), or undefined for a caller with none. */
export function highestRole(caller: Caller): CallerRole | undefined {
  let best: CallerRole | undefined;
  for (const grant of caller.grants) if (!best || roleRank(grant.role) > roleRank(best)) best = grant.role;
  return best;
}

/**
 * The union of the scopes in which the caller may read: what the registry filters listings by, so pages
 * hold only visible tenants. `undefined` means every tenant.
 */
export function readableScope(caller: Caller): { tenantIds: string[]; tenantTags: string[] } | undefined {
  if (caller.grants.some((g) => g.scope.allTenants)) return undefined;
  const ids = new Set<string>();
  const tags = new Set<string>();
  for (const grant of caller.grants) {
    for (const id of grant.scope.tenantIds) ids.add(id);
    for (const tag of grant.scope.tenantTags) tags.add(tag);
  }
  return { tenantIds: [...ids], tenantTags: [...tags] };
}

/** The open caller of a sandbox running without authentication: an admin over every tenant. */
export const ANONYMOUS_CALLER: Caller = Object.freeze({
  kind: "ANONYMOUS",
  id: "anonymous",
  name: "anonymous (sandbox, authentication off)",
  grants: Object.freeze([{ role: "ADMIN", scope: { allTenants: true, tenantIds: [], tenantTags: [] } }]),
}) as Caller;
