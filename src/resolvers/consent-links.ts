import type { GraphQLError } from "graphql";
import { permitsConsentLink } from "../auth/caller.js";
import type { ConsentLinks } from "../auth/consent.js";
import { badInput, toPublicError } from "../errors.js";
import { ConsentFlowKind, ConsentLink } from "../schema/consent.type.js";
import { IncidentsBackendKind } from "../schema/server-info.type.js";
import { normaliseTenantId, type TenantRecord } from "../store/tenant-store.js";
import { forbiddenError, tenantForbiddenError } from "./access.js";
import type { GraphQLContext } from "./context.js";

/**
 * The only way resolvers mint consent links (`consentLink`, `Tenant.consentLink`, `TenantError.consentLink`,
 * the link in `updateIncident`'s MISSING_ROLE): arguments checked first, then the one rule
 * (`permitsConsentLink`: ADMIN over the tenant), and the minting caller bound into the link's signed state
 * so its callback is audited under that caller.
 */

export interface ConsentLinkRequest {
  flow: ConsentFlowKind;
  /** The tenant the link is for; absent: any tenant's admin may use it (`organizations`). */
  tenantId?: string | null | undefined;
  redirectUri?: string | null | undefined;
  /**
   * The backend whose resource a v2 link asks for. Absent: the tenant's registered backend, else the server
   * default (INCIDENTS_BACKEND). LEGACY_V1 names no resource and refuses it.
   */
  backend?: IncidentsBackendKind | null | undefined;
}

/** A consent link, or FORBIDDEN / TENANT_FORBIDDEN when the caller may not mint it (`Query.consentLink`). */
export async function mintConsentLink(ctx: GraphQLContext, links: ConsentLinks, request: ConsentLinkRequest): Promise<ConsentLink> {
  const { tenantId, permitted, record } = await check(ctx, links, request);
  if (!permitted) throw refusal(tenantId, record);
  return create(ctx, links, request, tenantId, record);
}

/**
 * A consent link when the caller may mint it, else null: what fields that show a link to whoever can read
 * the tenant answer (a reader learns that consent is needed from the error code and hint, never a live link).
 */
export async function consentLinkIfPermitted(
  ctx: GraphQLContext,
  links: ConsentLinks,
  request: ConsentLinkRequest,
): Promise<ConsentLink | null> {
  const { tenantId, permitted, record } = await check(ctx, links, request);
  return permitted ? create(ctx, links, request, tenantId, record) : null;
}

/** Arguments (BAD_USER_INPUT before anything else), then the caller's permission. */
async function check(
  ctx: GraphQLContext,
  links: ConsentLinks,
  request: ConsentLinkRequest,
): Promise<{ tenantId: string | undefined; permitted: boolean; record: TenantRecord | undefined }> {
  let tenantId: string | undefined;
  if (request.tenantId !== undefined && request.tenantId !== null) {
    try {
      tenantId = normaliseTenantId(request.tenantId);
    } catch (error) {
      return toPublicError(error);
    }
  }
  if (request.backend !== undefined && request.backend !== null && request.flow === ConsentFlowKind.LEGACY_V1) {
    throw badInput("LEGACY_V1 links name no resource (v1 consent covers every permission the app requires): leave backend out", "backend");
  }
  const redirectUri = request.redirectUri ?? undefined;
  if (redirectUri !== undefined) {
    if (request.flow === ConsentFlowKind.LEGACY_V1) {
      throw badInput("LEGACY_V1 links carry no redirectUri: the app's registered reply URL is used", "redirectUri");
    }
    // Exact match against the allow-list; the allowed values are configuration and are not echoed.
    if (!links.isAllowedRedirectUri(redirectUri)) {
      throw badInput("redirectUri is not an allowed consent redirect URI (PUBLIC_URL's /consent/callback or CONSENT_REDIRECT_URIS)", "redirectUri");
    }
  }
  // The caller's scoped view: a tenant it cannot read is undefined here, like one not registered.
  const record = tenantId ? await ctx.loaders.tenant.load(tenantId) : undefined;
  return { tenantId, permitted: permitsConsentLink(ctx.caller, record), record };
}

function refusal(tenantId: string | undefined, record: TenantRecord | undefined): GraphQLError {
  if (!tenantId) return forbiddenError("a consent link for any tenant needs the ADMIN role over all tenants");
  if (!record) return tenantForbiddenError(tenantId);
  return forbiddenError(`your role may not mint a consent link for tenant ${tenantId}: it needs ADMIN`);
}

async function create(
  ctx: GraphQLContext,
  links: ConsentLinks,
  request: ConsentLinkRequest,
  tenantId: string | undefined,
  record: TenantRecord | undefined,
): Promise<ConsentLink> {
  // The explicit argument, else the tenant's own backend, else (unregistered or no override) the default.
  const backend = request.backend ? (request.backend === IncidentsBackendKind.GRAPH ? "graph" : "defender") : (record?.backend ?? undefined);
  const link = await links.create({
    flow: request.flow === ConsentFlowKind.LEGACY_V1 ? "LEGACY_V1" : "ADMIN_CONSENT",
    tenantId,
    redirectUri: request.redirectUri ?? undefined,
    backend,
    huntingBackend: record?.huntingBackend ?? undefined,
    minter: { kind: ctx.caller.kind, id: ctx.caller.id, name: ctx.caller.name },
  });
  const result = new ConsentLink();
  Object.assign(result, {
    ...link,
    flow: link.flow === "LEGACY_V1" ? ConsentFlowKind.LEGACY_V1 : ConsentFlowKind.ADMIN_CONSENT,
    backend: link.backend === null ? null : link.backend === "graph" ? IncidentsBackendKind.GRAPH : IncidentsBackendKind.DEFENDER,
  });
  return result;
}
