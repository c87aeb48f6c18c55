import { randomBytes } from "node:crypto";
import { errors as joseErrors, jwtVerify, SignJWT } from "jose";
import { CALLER_KINDS, type CallerKind } from "./caller.js";
import { DEFAULT_RESOURCE_URIS, type TokenResource } from "./token-provider.js";

export type ConsentFlow = "ADMIN_CONSENT" | "LEGACY_V1";

/** An application permission the customer's admin is asked to grant. */
export interface ConsentPermission {
  /** Resource display name, e.g. "Microsoft Threat Protection". */
  resource: string;
  /** App role value, e.g. "Incident.ReadWrite.All". */
  role: string;
  description: string;
}

export interface ConsentLinkResult {
  url: string;
  flow: ConsentFlow;
  /** Null for a link any tenant's admin may use (`organizations`, or the v1 `common` link). */
  tenantId: string | null;
  permissions: ConsentPermission[];
  /**
   * The backend (resource) whose `/.default` a v2 link asks for; null for LEGACY_V1, which names no resource
   * (v1 consent covers every resource the app registration requires).
   */
  backend: TokenResource | null;
  /** When the link's state stops being accepted; null for LEGACY_V1, which carries no state. */
  expiresAt: Date | null;
}

/** The permissions Crosswatch's app registration requires, per backend (resource). */
export const REQUIRED_PERMISSIONS_BY_BACKEND: Readonly<Record<TokenResource, readonly ConsentPermission[]>> = {
  defender: [{ resource: "Microsoft Threat Protection", role: "Incident.ReadWrite.All", description: "Read and write all incidents (Defender API)" }],
  graph: [{ resource: "Microsoft Graph", role: "SecurityIncident.ReadWrite.All", description: "Read and write all security incidents (Microsoft Graph)" }],
};

/** Every permission Crosswatch's app registration requires without hunting (what a v1 consent grants). */
export const REQUIRED_PERMISSIONS: readonly ConsentPermission[] = [
  ...REQUIRED_PERMISSIONS_BY_BACKEND.defender,
  ...REQUIRED_PERMISSIONS_BY_BACKEND.graph,
];

/**
 * The hunting permission per hunting backend (resource), asked for when HUNTING_ENABLED: Graph's
 * runHuntingQuery needs ThreatHunting.Read.All, the legacy Defender advanced hunting API AdvancedHunting.Read.All.
 */
export const HUNTING_PERMISSIONS_BY_BACKEND: Readonly<Record<TokenResource, ConsentPermission>> = {
  graph: { resource: "Microsoft Graph", role: "ThreatHunting.Read.All", description: "Run hunting queries (Microsoft Graph runHuntingQuery)" },
  defender: { resource: "Microsoft Threat Protection", role: "AdvancedHunting.Read.All", description: "Run advanced queries (legacy Defender advanced hunting API)" },
};

/**
 * Who minted a link: the caller a consent callback is audited under, since the customer's admin who answers
 * is known to Crosswatch only through the state it brings back. Identifiers only (a key's id and name, a
 * token's `oid` and display name), never a credential: the state is signed, not encrypted.
 */
export interface ConsentLinkMinter {
  kind: CallerKind;
  id: string;
  name: string;
}

export interface ConsentLinkOptions {
  authorityHost: string;
  clientId: string;
  /**
   * The backend a v2 link asks consent for when the caller names none (the tenant's registry entry decides
   * first): INCIDENTS_BACKEND.
   */
  defaultBackend: TokenResource;
  /** App ID URIs per backend, whose `/.default` a v2 link names; default `DEFAULT_RESOURCE_URIS`. */
  resourceUris?: Partial<Record<TokenResource, string>>;
  /** Where Entra sends the admin back: Crosswatch's `/consent/callback` (known once the server listens). */
  defaultRedirectUri: () => string;
  /** Further redirect URIs a link may name (CONSENT_REDIRECT_URIS); the default one is always allowed. */
  extraRedirectUris?: readonly string[];
  /** HMAC key of the state (shared by all replicas so any of them can take the callback). */
  stateKey: Uint8Array;
  /** How long a link's state is accepted. */
  stateTtlSeconds: number;
  /**
   * HUNTING_ENABLED: links also list the hunting permission, and the app registration must require it. The
   * default hunting backend (HUNTING_BACKEND) applies to tenants without an override. Absent: hunting off.
   */
  hunting?: { defaultBackend: TokenResource } | undefined;
  now?: () => number;
}

/** Why a callback's state was refused. Nothing is changed when it is. */
export class ConsentStateError extends Error {
  override readonly name = "ConsentStateError";
  constructor(
    readonly code: "STATE_INVALID" | "STATE_EXPIRED" | "STATE_REPLAYED" | "STATE_TENANT_MISMATCH",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What a verified state says. */
export interface ConsentState {
  /** Nonce: single use. */
  nonce: string;
  /** The tenant the link was made for, or null for an `organizations` link. */
  tenantId: string | null;
  redirectUri: string;
  expiresAt: Date;
  /** The caller that minted the link. */
  minter: ConsentLinkMinter;
}

const STATE_AUDIENCE = "crosswatch:consent-callback";

/**
 * Builds consent links and signs/verifies their `state`. The state is an HS256 JWT (jose) naming the
 * tenant, the redirect URI, the minting caller and a single-use nonce, so a callback can prove the link
 * came from us, is fresh, answers for the tenant it was made for, and whom to audit it under. Single use
 * is enforced by the caller's nonce store. Who may mint a link is the resolvers' decision
 * (`permitsConsentLink`); which redirect URIs a link may name is decided here.
 */
export class ConsentLinks {
  constructor(private readonly options: ConsentLinkOptions) {}

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  /** The redirect URIs a link may name: the default callback and CONSENT_REDIRECT_URIS, compared exactly. */
  allowedRedirectUris(): string[] {
    return [...new Set([this.options.defaultRedirectUri(), ...(this.options.extraRedirectUris ?? [])])];
  }

  isAllowedRedirectUri(uri: string): boolean {
    return this.allowedRedirectUris().includes(uri);
  }

  /**
   * A consent link. A v2 link asks for the `/.default` of ONE resource, the tenant's backend (`backend`,
   * else `defaultBackend`): Entra refuses the whole request with AADSTS650052 when the tenant has no service
   * principal for a resource it names (a Graph-only tenant without Microsoft Threat Protection), so a link
   * never names a resource the tenant's backend does not use.
   *
   * With hunting on, `.default` also grants the hunting role the app registration requires on that resource,
   * and `permissions` lists it when the tenant hunts on that same resource (`huntingBackend`, else the
   * default hunting backend). A tenant whose hunts run on the other resource (incidents on Graph, hunts on the
   * legacy Defender API, or the reverse) is NOT asked for both in one link, for the same AADSTS650052 reason:
   * it needs a second link naming the hunting resource (`backend` = its hunting backend), whose permissions
   * then list that resource's incident and hunting roles. A v1 link covers every permission the app requires,
   * both hunting roles included.
   */
  async create(input: {
    flow: ConsentFlow;
    tenantId?: string | undefined;
    redirectUri?: string | undefined;
    /** The tenant's backend; default `defaultBackend`. Ignored by LEGACY_V1. */
    backend?: TokenResource | undefined;
    /** The tenant's hunting backend; default the hunting default. Ignored when hunting is off and by LEGACY_V1. */
    huntingBackend?: TokenResource | undefined;
    minter: ConsentLinkMinter;
  }): Promise<ConsentLinkResult> {
    const authority = this.options.authorityHost;
    if (input.flow === "LEGACY_V1") {
      // Exactly the partner-access page's link: no state, no redirect URI (the app's registered one is used).
      const url =
        `${authority}/common/oauth2/authorize?prompt=consent&client_id=${encodeURIComponent(this.options.clientId)}` +
        `&response_type=code&sso_reload=true`;
      const hunting = this.options.hunting ? [HUNTING_PERMISSIONS_BY_BACKEND.defender, HUNTING_PERMISSIONS_BY_BACKEND.graph] : [];
      return { url, flow: "LEGACY_V1", tenantId: null, permissions: [...REQUIRED_PERMISSIONS, ...hunting], backend: null, expiresAt: null };
    }
    const backend = input.backend ?? this.options.defaultBackend;
    const resourceUri = (this.options.resourceUris?.[backend] ?? DEFAULT_RESOURCE_URIS[backend]).replace(/\/+$/, "");
    const tenantId = input.tenantId ?? null;
    const redirectUri = input.redirectUri ?? this.options.defaultRedirectUri();
    // Resolvers refuse a foreign redirect URI as bad input first; this guards any other path.
    if (!this.isAllowedRedirectUri(redirectUri)) throw new Error("consent link redirect URI is not on the allow-list");
    const issuedAt = Math.floor(this.now() / 1000);
    const exp = issuedAt + this.options.stateTtlSeconds;
    const by = { k: input.minter.kind, i: input.minter.id.slice(0, 200), n: input.minter.name.slice(0, 200) };
    const state = await new SignJWT({ tid: tenantId, ru: redirectUri, by })
      .setProtectedHeader({ alg: "HS256" })
      .setJti(randomBytes(16).toString("base64url"))
      .setAudience(STATE_AUDIENCE)
      .setIssuedAt(issuedAt)
      .setExpirationTime(exp)
      .sign(this.options.stateKey);
    const params = new URLSearchParams({
      client_id: this.options.clientId,
      scope: `${resourceUri}/.default`,
      redirect_uri: redirectUri,
      state,
    });
    return {
      url: `${authority}/${tenantId ?? "organizations"}/v2.0/adminconsent?${params.toString()}`,
      flow: "ADMIN_CONSENT",
      tenantId,
      permissions: this.permissionsFor(backend, input.huntingBackend),
      backend,
      expiresAt: new Date(exp * 1000),
    };
  }

  /** What a v2 link for `backend`'s resource lists: its incident roles, and its hunting role when the tenant hunts there. */
  private permissionsFor(backend: TokenResource, huntingBackend: TokenResource | undefined): ConsentPermission[] {
    const permissions = [...REQUIRED_PERMISSIONS_BY_BACKEND[backend]];
    const hunting = this.options.hunting;
    if (hunting && (huntingBackend ?? hunting.defaultBackend) === backend) permissions.push(HUNTING_PERMISSIONS_BY_BACKEND[backend]);
    return permissions;
  }

  /**
   * Verifies a callback's state: our signature, not expired, and (for a tenant-bound link) the same tenant
   * Entra reports. Single use is the caller's job (`nonce`).
   */
  async verify(state: string, reportedTenantId: string | undefined): Promise<ConsentState> {
    let payload;
    try {
      ({ payload } = await jwtVerify(state, this.options.stateKey, {
        algorithms: ["HS256"],
        audience: STATE_AUDIENCE,
        currentDate: new Date(this.now()),
      }));
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) {
        throw new ConsentStateError("STATE_EXPIRED", "this consent link has expired", { cause: error });
      }
      throw new ConsentStateError("STATE_INVALID", "this consent answer does not carry a state Crosswatch issued", { cause: error });
    }
    const tenantId = typeof payload.tid === "string" ? payload.tid : null;
    const minter = minterOf(payload.by);
    // A state without its minter predates the consent-link rule (any reader could mint one then): refused.
    if (typeof payload.jti !== "string" || typeof payload.ru !== "string" || typeof payload.exp !== "number" || !minter) {
      throw new ConsentStateError("STATE_INVALID", "this consent answer does not carry a state Crosswatch issued");
    }
    if (tenantId && reportedTenantId && tenantId !== reportedTenantId.toLowerCase()) {
      throw new ConsentStateError("STATE_TENANT_MISMATCH", "the consent came back for another tenant than the link was made for");
    }
    return { nonce: payload.jti, tenantId, redirectUri: payload.ru, expiresAt: new Date(payload.exp * 1000), minter };
  }
}

function minterOf(claim: unknown): ConsentLinkMinter | undefined {
  if (typeof claim !== "object" || claim === null) return undefined;
  const { k, i, n } = claim as Record<string, unknown>;
  if (typeof k !== "string" || !(CALLER_KINDS as readonly string[]).includes(k) || typeof i !== "string" || typeof n !== "string") {
    return undefined;
  }
  return { kind: k as CallerKind, id: i, name: n };
}
