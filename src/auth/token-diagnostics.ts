import type { TokenClaims } from "./token-claims.js";
import { TOKEN_ERROR_HINTS, toTokenAcquisitionError, type TokenErrorCode } from "./token-errors.js";
import type { AccessToken, TokenProvider, TokenResource } from "./token-provider.js";

/** What an incidents backend lets the app do. */
export type IncidentCapability = "read" | "update";

/**
 * Whether the app may do something in a tenant: known from the token's `roles`, or — for a token whose
 * claims cannot be read — from whether a call was allowed; `unknown` when neither says.
 */
export type AccessVerdict = "allowed" | "denied" | "unknown";

/**
 * Asks the backend itself whether the app may read the tenant's incidents (a call it makes, or one made
 * moments ago): `allowed` when it answered, `denied` when it refused for lack of a role (403), `unknown`
 * for any other outcome. Used only when the token's claims cannot be read.
 */
export type ReadProbe = () => Promise<AccessVerdict>;

/** What a role may enable: reading or updating incidents, or running hunting queries. */
export type Capability = IncidentCapability | "hunt";

/** One application permission that satisfies the backend, and what it enables. */
export interface RoleRequirement {
  role: string;
  enables: Capability[];
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

/**
 * The application permission hunting needs, per hunting backend (resource): Microsoft Graph
 * `POST /security/runHuntingQuery` needs `ThreatHunting.Read.All` on Graph; the legacy Defender
 * `POST /api/advancedhunting/run` needs `AdvancedHunting.Read.All` on Microsoft Threat Protection (reference
 * 1.2 and 1.12; issue 15 names the securitycenter API's `AdvancedQuery.Read.All`, which is another resource's
 * role and not what api.security.microsoft.com checks).
 */
export const HUNTING_ROLES: Readonly<Record<TokenResource, string>> = {
  graph: "ThreatHunting.Read.All",
  defender: "AdvancedHunting.Read.All",
};

/** The hunting requirement of a backend, in the shape of `INCIDENT_ROLES`' entries. */
export function huntingRequirement(backend: TokenResource): RoleRequirement {
  return { role: HUNTING_ROLES[backend], enables: ["hunt"] };
}

/** Whether the app may run hunting queries in a tenant, judged from the hunting backend's token. */
export interface HuntingDiagnosis {
  /** The hunting backend (resource) whose token was judged. */
  backend: TokenResource;
  access: AccessVerdict;
  /**
   * True when the token carries the hunting role, false when it does not or no token could be had; null when
   * the token's claims cannot be read (an opaque token: only a hunt can tell).
   */
  canHunt: boolean | null;
  /** The hunting role when the token is known to lack it; [] otherwise (also when unknown). */
  missingRoles: string[];
  /** Why no token for the hunting backend could be had (its public code), when none could. */
  errorCode?: TokenErrorCode;
}

/** The hunting verdict a diagnosis of the hunting backend's own token gives. */
export function huntingAccessOf(diagnosis: TokenDiagnosis): HuntingDiagnosis {
  const role = HUNTING_ROLES[diagnosis.backend];
  const base = { backend: diagnosis.backend };
  // No token: nothing can be hunted, whatever the roles would say.
  if (diagnosis.error && diagnosis.error.code !== "MISSING_ROLE" && !diagnosis.claims && diagnosis.claimsReadable) {
    return { ...base, access: "unknown", canHunt: false, missingRoles: [], errorCode: diagnosis.error.code };
  }
  if (!diagnosis.claimsReadable) return { ...base, access: "unknown", canHunt: null, missingRoles: [] };
  const granted = diagnosis.grantedRoles.includes(role);
  return { ...base, access: granted ? "allowed" : "denied", canHunt: granted, missingRoles: granted ? [] : [role] };
}

/**
 * Judges hunting for a tenant on its hunting backend. When `reuse` is a diagnosis of that backend's token
 * (the tenant's incidents and hunts use one resource), it is read and no token is requested; otherwise the
 * hunting backend's token is requested (cached by the provider like any other). Never throws for the tenant's
 * failure; an abort of `signal` is rethrown.
 */
export async function diagnoseHunting(
  provider: TokenProvider,
  tenantId: string,
  backend: TokenResource,
  options: { signal?: AbortSignal; recheck?: boolean; reuse?: TokenDiagnosis } = {},
): Promise<HuntingDiagnosis> {
  if (options.reuse && options.reuse.backend === backend) return huntingAccessOf(options.reuse);
  let token: AccessToken;
  try {
    token = await provider.getToken(tenantId, backend, {
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.recheck ? { recheck: true } : {}),
    });
  } catch (error) {
    if (options.signal?.aborted && error === options.signal.reason) throw error;
    const failure = toTokenAcquisitionError(error, { tenantId: tenantId.trim().toLowerCase(), resource: backend });
    return { backend, access: "unknown", canHunt: false, missingRoles: [], errorCode: failure.toPublic().code };
  }
  if (!token.claims) return { backend, access: "unknown", canHunt: null, missingRoles: [] };
  const role = HUNTING_ROLES[backend];
  const granted = token.claims.roles.includes(role);
  return { backend, access: granted ? "allowed" : "denied", canHunt: granted, missingRoles: granted ? [] : [role] };
}

/** The diagnosis of one tenant's token for one backend: what a support page or the consent callback shows. */
export interface TokenDiagnosis {
  tenantId: string;
  backend: TokenResource;
  /**
   * True when a token was obtained and reading incidents is not known to be refused: the roles say so,
   * or — claims unreadable — a call was allowed or none said otherwise.
   */
  ok: boolean;
  /** The decoded claims, when a token was obtained and it is a readable JWT. */
  claims?: TokenClaims;
  /**
   * False when a token was obtained but is not a readable JWT (opaque or encrypted, as Microsoft warns
   * its access tokens may be): no claims, roles unknown, access judged by a call (`access`). True otherwise,
   * also when no token was obtained (`error` says why).
   */
  claimsReadable: boolean;
  /** Per capability: allowed, denied or unknown (see `AccessVerdict`); `canRead`/`canUpdate` are "allowed". */
  access: Record<IncidentCapability, AccessVerdict>;
  /** Acceptable roles: any one with `read` allows reading, one with `update` allows updating. */
  requiredRoles: RoleRequirement[];
  /** The token's `roles` ([] when no token was obtained or its claims are unreadable). */
  grantedRoles: string[];
  canRead: boolean;
  canUpdate: boolean;
  /**
   * Per capability the token lacks, the roles of which any one would grant it ([] when it has it, and
   * when it is unknown): for "can read, cannot update", `read` is empty and `update` lists the ReadWrite
   * role. Absent when no token was obtained, as nothing is known then.
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
 * A token whose claims cannot be read does not fail the tenant: its roles are unknown, and reading is
 * judged by `options.probe` when given (a refusal is MISSING_ROLE), else left unknown. Updating stays
 * unknown: only an update can tell, and the update itself then decides.
 *
 * @param options.recheck ask Entra even while the provider remembers a lasting failure of the tenant, and
 *   remember this answer instead (`tokenDiagnostics`, the consent callback); otherwise a remembered failure
 *   is the answer, with its `retryAfterSeconds`
 * @param options.probe how to judge reading for a token whose claims cannot be read
 */
export async function diagnoseToken(
  provider: TokenProvider,
  tenantId: string,
  backend: TokenResource,
  options: { signal?: AbortSignal; recheck?: boolean; probe?: ReadProbe } = {},
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
    return {
      ...base,
      ok: false,
      claimsReadable: true,
      access: { read: "unknown", update: "unknown" },
      grantedRoles: [],
      canRead: false,
      canUpdate: false,
      error: failure.toPublic(),
    };
  }

  if (!token.claims) return judgedByCall(base, requiredRoles, token, options);

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
    claimsReadable: true,
    access: { read: canRead ? "allowed" : "denied", update: missingRoles.update.length === 0 ? "allowed" : "denied" },
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

/** The diagnosis of a token whose claims cannot be read: reading judged by the probe, if any. */
async function judgedByCall(
  base: Pick<TokenDiagnosis, "tenantId" | "backend" | "requiredRoles">,
  requiredRoles: RoleRequirement[],
  token: AccessToken,
  options: { signal?: AbortSignal; probe?: ReadProbe },
): Promise<TokenDiagnosis> {
  let read: AccessVerdict = "unknown";
  if (options.probe) {
    try {
      read = await options.probe();
    } catch (error) {
      if (options.signal?.aborted && error === options.signal.reason) throw error;
      // A probe that could not finish says nothing about the roles.
    }
  }
  const enabling = (capability: IncidentCapability) => requiredRoles.filter((r) => r.enables.includes(capability)).map((r) => r.role);
  const diagnosis: TokenDiagnosis = {
    ...base,
    ok: read !== "denied",
    claimsReadable: false,
    access: { read, update: read === "denied" ? "denied" : "unknown" },
    grantedRoles: [],
    canRead: read === "allowed",
    canUpdate: false,
    // Known missing only when the API refused: then every role that would have allowed it is missing.
    missingRoles: read === "denied" ? { read: enabling("read"), update: enabling("update") } : { read: [], update: [] },
    fromCache: token.fromCache,
    expiresAt: token.expiresOn,
  };
  if (read === "denied") {
    diagnosis.error = {
      code: "MISSING_ROLE",
      message: `the ${base.backend} API refused tenant ${base.tenantId}'s token for reading incidents; its claims are unreadable, so the roles were judged by that call (needs ${enabling("read").join(" or ")})`,
      hint: TOKEN_ERROR_HINTS.MISSING_ROLE,
    };
  }
  return diagnosis;
}
