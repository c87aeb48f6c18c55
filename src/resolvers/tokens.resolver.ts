import "reflect-metadata";
import { Arg, Ctx, FieldResolver, ID, Query, Resolver, Root } from "type-graphql";
import { diagnoseHunting, huntingRequirement, type Capability, type HuntingDiagnosis, type TokenDiagnosis } from "../auth/token-diagnostics.js";
import type { TokenProvider, TokenResource } from "../auth/token-provider.js";
import type { HuntingBackend, IncidentsBackend } from "../config.js";
import { badInput, toPublicError } from "../errors.js";
import { tenantForbidden } from "../incidents/outcome.js";
import { isForbidden, type DiagnosisResult } from "../loaders/loaders.js";
import { IncidentsBackendKind } from "../schema/server-info.type.js";
import { HuntingBackendKind, Tenant } from "../schema/tenant.type.js";
import { AccessVerdictKind, IncidentCapabilityKind, TenantError, TenantErrorCode, TokenDiagnostics } from "../schema/token.type.js";
import type { TenantStore } from "../store/tenant-store.js";
import { normaliseTenantId } from "../store/tenant-store.js";
import type { GraphQLContext } from "./context.js";

export interface TokensResolverDeps {
  tenants: TenantStore;
  defaultBackend: IncidentsBackend;
  /**
   * HUNTING_ENABLED and HUNTING_BACKEND: when on, diagnostics judge hunting too (`canHunt`), from the token of
   * each tenant's hunting backend (requested only when a hunting field is asked for and that backend is not
   * the one diagnosed). Absent: hunting off.
   */
  hunting?: { enabled: boolean; defaultBackend: HuntingBackend; tokenProvider: TokenProvider };
}

const CAPABILITIES: Record<Capability, IncidentCapabilityKind> = {
  read: IncidentCapabilityKind.READ,
  update: IncidentCapabilityKind.UPDATE,
  hunt: IncidentCapabilityKind.HUNT,
};

const VERDICTS: Record<TokenDiagnosis["access"]["read"], AccessVerdictKind> = {
  allowed: AccessVerdictKind.ALLOWED,
  denied: AccessVerdictKind.DENIED,
  unknown: AccessVerdictKind.UNKNOWN,
};

/** At most this many tenants per `tokenDiagnostics` call. */
const MAX_TENANTS = 1000;

/** Token diagnostics: what each tenant's app-only token says, or why there is none. */
@Resolver(() => Tenant)
export class TokensResolver {
  constructor(private readonly deps: TokensResolverDeps) {}

  @Query(() => [TokenDiagnostics], {
    description:
      "Acquires (or reuses) each tenant's token and explains it: tid, roles, audience, expiry, missing roles, or why it failed. " +
      "A token that is not a readable JWT does not fail the tenant: claimsReadable is false and reading is judged by an incidents call. " +
      "The backend defaults to each tenant's own (registry override, else the server default). A tenant outside the " +
      "caller's scope (or, for a caller not reading every tenant, not registered) gets TENANT_FORBIDDEN and no token request.",
  })
  async tokenDiagnostics(
    @Arg("tenantIds", () => [ID]) tenantIds: string[],
    @Arg("backend", () => IncidentsBackendKind, { nullable: true }) backend: IncidentsBackendKind | undefined,
    @Ctx() ctx: GraphQLContext,
  ): Promise<TokenDiagnostics[]> {
    if (tenantIds.length > MAX_TENANTS) throw badInput(`at most ${MAX_TENANTS} tenantIds per call`, "tenantIds");
    let ids: string[];
    try {
      ids = tenantIds.map(normaliseTenantId);
    } catch (error) {
      return toPublicError(error);
    }
    const unique = [...new Set(ids)];
    const records = await ctx.loaders.tenant.loadMany(unique);
    return Promise.all(
      unique.map(async (id, i) => {
        const record = records[i];
        const registered = record instanceof Error ? undefined : record;
        const chosen = backend ?? registered?.backend ?? this.deps.defaultBackend;
        // An explicit re-check: past any remembered failure of the tenant, which it replaces.
        return this.explain(await ctx.loaders.recheck.load(`${id}|${chosen}`), ctx, registered?.huntingBackend ?? undefined, true);
      }),
    );
  }

  @FieldResolver(() => TokenDiagnostics, { description: "This tenant's token, for its effective backend." })
  async token(@Root() tenant: Tenant, @Ctx() ctx: GraphQLContext): Promise<TokenDiagnostics> {
    const backend = tenant.effectiveBackend === IncidentsBackendKind.GRAPH ? "graph" : "defender";
    const hunting = tenant.huntingBackend ? (tenant.huntingBackend === HuntingBackendKind.GRAPH ? "graph" : "defender") : undefined;
    return this.explain(await ctx.loaders.diagnosis.load(`${tenant.id}|${backend}`), ctx, hunting, false);
  }

  /**
   * A diagnosis as GraphQL shows it. With hunting on, the hunting role joins `requiredRoles` when the tenant
   * hunts on the diagnosed backend, and the hunting fields are judged lazily (see `TokenHuntingResolver`).
   */
  private async explain(
    result: DiagnosisResult,
    ctx: GraphQLContext,
    tenantHuntingBackend: TokenResource | undefined,
    recheck: boolean,
  ): Promise<TokenDiagnostics> {
    if (isForbidden(result)) return forbiddenDiagnostics(result.tenantId, result.backend);
    const d: TokenDiagnosis = result;
    const out = new TokenDiagnostics();
    const hunting = this.deps.hunting?.enabled ? this.deps.hunting : undefined;
    const huntingBackend = hunting ? (tenantHuntingBackend ?? hunting.defaultBackend) : undefined;
    const requiredRoles = huntingBackend === d.backend ? [...d.requiredRoles, huntingRequirement(d.backend)] : d.requiredRoles;
    if (hunting && huntingBackend) {
      let verdict: Promise<HuntingDiagnosis> | undefined;
      out.hunting = () =>
        (verdict ??= diagnoseHunting(hunting.tokenProvider, d.tenantId, huntingBackend, {
          reuse: d,
          signal: ctx.operation.signal,
          ...(recheck ? { recheck: true } : {}),
        }));
    }
    Object.assign(out, {
      tenantId: d.tenantId,
      backend: d.backend === "graph" ? IncidentsBackendKind.GRAPH : IncidentsBackendKind.DEFENDER,
      ok: d.ok,
      claimsReadable: d.claimsReadable,
      readAccess: VERDICTS[d.access.read],
      updateAccess: VERDICTS[d.access.update],
      tid: d.claims?.tid ?? null,
      audience: d.claims?.aud ?? null,
      issuer: d.claims?.iss ?? null,
      appId: d.claims?.appId ?? null,
      version: d.claims?.ver ?? null,
      roles: d.grantedRoles,
      requiredRoles: requiredRoles.map((r) => ({ role: r.role, enables: r.enables.map((c) => CAPABILITIES[c]) })),
      missingRoles: d.missingRoles?.read ?? [],
      missingRolesForUpdate: d.missingRoles?.update ?? [],
      canRead: d.canRead,
      canUpdate: d.canUpdate,
      issuedAt: d.claims ? new Date(d.claims.iat * 1000) : null,
      expiresAt: d.expiresAt ?? null,
      fromCache: d.fromCache ?? null,
      error: d.error ? await this.tenantError(d.tenantId, d.error) : null,
    });
    return out;
  }

  private async tenantError(
    tenantId: string,
    error: NonNullable<TokenDiagnosis["error"]>,
  ): Promise<TenantError> {
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
}

function forbiddenDiagnostics(tenantId: string, backend: "defender" | "graph"): TokenDiagnostics {
  const error = new TenantError();
  Object.assign(error, { ...tenantForbidden(tenantId), retryAfterSeconds: null });
  const out = new TokenDiagnostics();
  Object.assign(out, {
    tenantId,
    backend: backend === "graph" ? IncidentsBackendKind.GRAPH : IncidentsBackendKind.DEFENDER,
    ok: false,
    claimsReadable: true,
    readAccess: AccessVerdictKind.UNKNOWN,
    updateAccess: AccessVerdictKind.UNKNOWN,
    tid: null,
    audience: null,
    issuer: null,
    appId: null,
    version: null,
    roles: [],
    requiredRoles: [],
    missingRoles: [],
    missingRolesForUpdate: [],
    canRead: false,
    canUpdate: false,
    issuedAt: null,
    expiresAt: null,
    fromCache: null,
    error,
  });
  return out;
}

/**
 * The hunting fields of a token diagnosis, judged only when asked for: from the diagnosed token itself when
 * the tenant hunts on that backend, else from its hunting backend's token (one more token request, cached
 * like any other). Null everywhere when HUNTING_ENABLED is off or the tenant is not visible.
 */
@Resolver(() => TokenDiagnostics)
export class TokenHuntingResolver {
  @FieldResolver(() => Boolean, {
    nullable: true,
    description:
      "Whether the app may run hunting queries in the tenant (HUNTING_ENABLED): its hunting backend's token carries the hunting role " +
      "(ThreatHunting.Read.All on Graph, AdvancedHunting.Read.All on the legacy Defender API). False when it does not or no token could be had; " +
      "null when the token's claims are unreadable (only a hunt can tell), when hunting is off, or for a tenant outside the caller's scope.",
  })
  async canHunt(@Root() diagnostics: TokenDiagnostics): Promise<boolean | null> {
    return (await diagnostics.hunting?.())?.canHunt ?? null;
  }

  @FieldResolver(() => AccessVerdictKind, { nullable: true, description: "canHunt as a verdict (UNKNOWN when claims are unreadable); null when hunting is off." })
  async huntingAccess(@Root() diagnostics: TokenDiagnostics): Promise<AccessVerdictKind | null> {
    const verdict = await diagnostics.hunting?.();
    return verdict ? VERDICTS[verdict.access] : null;
  }

  @FieldResolver(() => HuntingBackendKind, { nullable: true, description: "The hunting backend judged: the tenant's, else HUNTING_BACKEND. Null when hunting is off." })
  async huntingBackend(@Root() diagnostics: TokenDiagnostics): Promise<HuntingBackendKind | null> {
    const verdict = await diagnostics.hunting?.();
    return verdict ? (verdict.backend === "graph" ? HuntingBackendKind.GRAPH : HuntingBackendKind.DEFENDER) : null;
  }

  @FieldResolver(() => [String], { description: "To run hunting queries: the role missing from the hunting backend's token ([] when present, unknown, or hunting is off)." })
  async missingRolesForHunting(@Root() diagnostics: TokenDiagnostics): Promise<string[]> {
    return (await diagnostics.hunting?.())?.missingRoles ?? [];
  }
}
