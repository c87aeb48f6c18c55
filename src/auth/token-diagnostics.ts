import type { TokenClaims } from "./token-claims.js";
import { TOKEN_ERROR_HINTS, toTokenAcquisitionError, type TokenErrorCode } from "./token-errors.js";
import type { TokenProvider, TokenResource } from "./token-provider.js";

/** What an incidents backend lets the app do. */
export type IncidentCapability = "read" | "update";

/** One application permission that satisfies the backend, and what it enables. */
export interface RoleRequirement {
  role: string;
  enables: IncidentCapability[];
}

/**
 * Application permissions per backend (reference 1.2 and 2.1): list and get accept either role, update
 * needs the ReadWrite one. Least privilege first.
 */
export const INCIDENT_ROLES: Record<TokenResource, RoleRequirement[]> = {
  defender: [
    { role: "Incident.Read.All", enables: ["read"] },
    { role: "Incident.ReadWrite.All", enables: ["read", "update"] },
  ],
  graph: [
    { role: "SecurityIncident.Read.All", enables: ["read"] },
    { role: "SecurityIncident.ReadWrite.All", enables: ["read", "update"] },
  ],
};

/** The diagnosis of one tenant's token for one backend: what a support page or the consent callback shows. */
export interface TokenDiagnosis {
  tenantId: string;
  backend: TokenResource;
  /** True when a token was obtained and it may read incidents. */
  ok: boolean;
  /** The decoded claims, when a token was obtained. */
  claims?: TokenClaims;
  /** Acceptable roles: any one with `read` allows reading, one with `update` allows updating. */
  requiredRoles: RoleRequirement[];
  /** The token's `roles` ([] when no token was obtained). */
  grantedRoles: string[];
  canRead: boolean;
  canUpdate: boolean;
  /**
   * Per capability the token lacks, the roles of which any one would grant it ([] when it has it): for
   * "can read, cannot update", `read` is empty and `update` lists the ReadWrite role. Absent when no
   * token was obtained, as nothing is known then.
   */
  missingRoles?: Record<IncidentCapability, string[]>;
  fromCache?: boolean;
  expiresAt?: Date;
  error?: { code: TokenErrorCode; message: string; hint: string; retryAfterSeconds?: number };
}

/**
 * Gets a token for the tenant and says whether it is usable for the backend: roles present, roles
 * missing for reading and for updating, or why no token could be had. Never throws for a tenant's
 * failure; that is the answer. A missing read role is the failure code MISSING_ROLE.
 *
 * @param options.recheck ask Entra even while the provider remembers a lasting failure of the tenant, and
 *   remember this answer instead (`tokenDiagnostics`, the consent callback); otherwise a remembered failure
 *   is the answer, with its `retryAfterSeconds`
 */
export async function diagnoseToken(
  provider: TokenProvider,
  tenantId: string,
  backend: TokenResource,
  options: { signal?: AbortSignal; recheck?: boolean } = {},
): Promise<TokenDiagnosis> {
  const requiredRoles = INCIDENT_ROLES[backend];
  const base = { tenantId: tenantId.trim().toLowerCase(), backend, requiredRoles: requiredRoles.map((r) => ({ ...r, enables: [...r.enables] })) };
  let token;
  try {
    token = await provider.getToken(tenantId, backend, {
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.recheck ? { recheck: true } : {}),
    });
  } catch (error) {
    // An abort is the caller's decision, not the tenant's state.
    if (options.signal?.aborted && error === options.signal.reason) throw error;
    const failure = toTokenAcquisitionError(error, { tenantId: base.tenantId, resource: backend });
    return { ...base, ok: false, grantedRoles: [], canRead: false, canUpdate: false, error: failure.toPublic() };
  }

  const granted = token.claims.roles;
  const missing = (capability: IncidentCapability): string[] => {
    const enabling = requiredRoles.filter((r) => r.enables.includes(capability)).map((r) => r.role);
    return enabling.some((role) => granted.includes(role)) ? [] : enabling;
  };
  const missingRoles = { read: missing("read"), update: missing("update") };
  const canRead = missingRoles.read.length === 0;
  const diagnosis: TokenDiagnosis = {
    ...base,
    ok: canRead,
    claims: token.claims,
    grantedRoles: [...granted],
    canRead,
    canUpdate: missingRoles.update.length === 0,
    missingRoles,
    fromCache: token.fromCache,
    expiresAt: token.expiresOn,
  };
  if (!canRead) {
    diagnosis.error = {
      code: "MISSING_ROLE",
      message: `the ${backend} token of tenant ${base.tenantId} carries none of the roles needed to read incidents (${missingRoles.read.join(" or ")}); it has ${granted.length > 0 ? granted.join(", ") : "no roles"}`,
      hint: TOKEN_ERROR_HINTS.MISSING_ROLE,
    };
  }
  return diagnosis;
}
