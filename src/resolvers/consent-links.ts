import type { GraphQLError } from "graphql";
import { permitsConsentLink } from "../auth/caller.js";
import type { ConsentLinks } from "../auth/consent.js";
import { badInput, toPublicError } from "../errors.js";
import { ConsentFlowKind, ConsentLink } from "../schema/consent.type.js";
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
}

/** A consent link, or FORBIDDEN / TENANT_FORBIDDEN when the caller may not mint it (`Query.consentLink`). */
export async function mintConsentLink(ctx: GraphQLContext, links: ConsentLinks, request: ConsentLinkRequest): Promise<ConsentLink> {
  const { tenantId, permitted, record } = await check(ctx, links, request);
  if (!permitted) throw refusal(tenantId, record);
  return create(ctx, links, request.flow, tenantId, request.redirectUri ?? undefined);
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
  const { tenantId, permitted } = await check(ctx, links, request);
  return permitted ? create(ctx, links, request.flow, tenantId, request.redirectUri ?? undefined) : null;
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
  flow: ConsentFlowKind,
  tenantId: string | undefined,
  redirectUri: string | undefined,
): Promise<ConsentLink> {
  const link = await links.create({
    flow: flow === ConsentFlowKind.LEGACY_V1 ? "LEGACY_V1" : "ADMIN_CONSENT",
    tenantId,
    redirectUri,
    minter: { kind: ctx.caller.kind, id: ctx.caller.id, name: ctx.caller.name },
  });
  const result = new ConsentLink();
  Object.assign(result, { ...link, flow: link.flow === "LEGACY_V1" ? ConsentFlowKind.LEGACY_V1 : ConsentFlowKind.ADMIN_CONSENT });
  return result;
}
