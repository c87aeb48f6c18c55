import "reflect-metadata";
import { Arg, Ctx, FieldResolver, ID, Query, Resolver, Root } from "type-graphql";
import type { ConsentLinks } from "../auth/consent.js";
import { ConsentFlowKind, ConsentLink } from "../schema/consent.type.js";
import { IncidentsBackendKind } from "../schema/server-info.type.js";
import { TenantError } from "../schema/token.type.js";
import { consentLinkIfPermitted, mintConsentLink } from "./consent-links.js";
import type { GraphQLContext } from "./context.js";

/** Consent links for onboarding a customer tenant. */
@Resolver()
export class ConsentResolver {
  constructor(private readonly links: ConsentLinks) {}

  @Query(() => ConsentLink, {
    description:
      "A link for a customer's Global Administrator to consent. With no tenantId, any tenant's admin may use it " +
      "(`organizations`). Needs ADMIN over the tenant, or over all tenants for a tenant not yet registered or no tenantId " +
      "(FORBIDDEN otherwise). redirectUri: PUBLIC_URL's /consent/callback (the default) or one of CONSENT_REDIRECT_URIS. " +
      "backend: whose resource the link asks for; default the tenant's registered backend, else the server default.",
  })
  async consentLink(
    @Arg("tenantId", () => ID, { nullable: true }) tenantId: string | undefined,
    @Arg("redirectUri", () => String, { nullable: true }) redirectUri: string | undefined,
    @Arg("flow", () => ConsentFlowKind, { nullable: true, defaultValue: ConsentFlowKind.ADMIN_CONSENT }) flow: ConsentFlowKind,
    @Arg("backend", () => IncidentsBackendKind, { nullable: true }) backend: IncidentsBackendKind | undefined,
    @Ctx() ctx: GraphQLContext,
  ): Promise<ConsentLink> {
    return mintConsentLink(ctx, this.links, { flow, tenantId, redirectUri, backend });
  }
}

/** The link in a tenant's error, minted only when it is asked for and the caller may mint it. */
@Resolver(() => TenantError)
export class TenantErrorConsentResolver {
  constructor(private readonly links: ConsentLinks) {}

  @FieldResolver(() => ConsentLink, {
    nullable: true,
    description:
      "For CONSENT_REQUIRED and MISSING_ROLE, when the caller is ADMIN over the tenant: the link that fixes it. " +
      "Null otherwise (a reader sees the code and hint, and asks an admin for the link).",
  })
  async consentLink(@Root() error: TenantError, @Ctx() ctx: GraphQLContext): Promise<ConsentLink | null> {
    if (!error.tenantId || (error.code !== "CONSENT_REQUIRED" && error.code !== "MISSING_ROLE")) return null;
    return consentLinkIfPermitted(ctx, this.links, { flow: ConsentFlowKind.ADMIN_CONSENT, tenantId: error.tenantId });
  }
}
