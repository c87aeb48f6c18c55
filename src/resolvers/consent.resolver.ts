import "reflect-metadata";
import { Arg, Ctx, ID, Query, Resolver } from "type-graphql";
import { permitsEverywhere } from "../auth/caller.js";
import type { ConsentLinks } from "../auth/consent.js";
import { ConsentFlowKind, ConsentLink } from "../schema/consent.type.js";
import { requireEverywhere, requirePermission, visibleTenant } from "./access.js";
import type { GraphQLContext } from "./context.js";
import { createConsentLink, tenantIdArgument } from "./tenants.resolver.js";

/** Consent links for onboarding a customer tenant. */
@Resolver()
export class ConsentResolver {
  constructor(private readonly links: ConsentLinks) {}

  @Query(() => ConsentLink, {
    description:
      "A link for a customer's Global Administrator to consent. With no tenantId, any tenant's admin may use it " +
      "(`organizations`). Onboarding: needs ADMIN over the tenant, or over all tenants for a tenant not yet registered.",
  })
  async consentLink(
    @Arg("tenantId", () => ID, { nullable: true }) tenantId: string | undefined,
    @Arg("redirectUri", () => String, { nullable: true }) redirectUri: string | undefined,
    @Arg("flow", () => ConsentFlowKind, { nullable: true, defaultValue: ConsentFlowKind.ADMIN_CONSENT }) flow: ConsentFlowKind,
    @Ctx() ctx: GraphQLContext,
  ): Promise<ConsentLink> {
    let normalised: string | undefined;
    if (tenantId !== undefined && tenantId !== null) {
      normalised = tenantIdArgument(tenantId);
      // An all-tenant admin may onboard tenants not registered yet; anyone else only tenants it manages.
      if (!permitsEverywhere(ctx.caller, "ADMIN")) requirePermission(ctx, await visibleTenant(ctx, normalised), "manage");
    } else {
      requireEverywhere(ctx, "ADMIN", "a consent link for any tenant");
    }
    return createConsentLink(this.links, flow, normalised, redirectUri);
  }
}
