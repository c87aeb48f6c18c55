import "reflect-metadata";
import { Arg, ID, Query, Resolver } from "type-graphql";
import type { ConsentLinks } from "../auth/consent.js";
import { toPublicError } from "../errors.js";
import { ConsentFlowKind, ConsentLink } from "../schema/consent.type.js";
import { normaliseTenantId } from "../store/tenant-store.js";
import { createConsentLink } from "./tenants.resolver.js";

/** Consent links for onboarding a customer tenant. */
@Resolver()
export class ConsentResolver {
  constructor(private readonly links: ConsentLinks) {}

  @Query(() => ConsentLink, {
    description:
      "A link for a customer's Global Administrator to consent. With no tenantId, any tenant's admin may use it (`organizations`).",
  })
  async consentLink(
    @Arg("tenantId", () => ID, { nullable: true }) tenantId: string | undefined,
    @Arg("redirectUri", () => String, { nullable: true }) redirectUri: string | undefined,
    @Arg("flow", () => ConsentFlowKind, { nullable: true, defaultValue: ConsentFlowKind.ADMIN_CONSENT }) flow: ConsentFlowKind,
  ): Promise<ConsentLink> {
    let normalised: string | undefined;
    if (tenantId !== undefined && tenantId !== null) {
      try {
        normalised = normaliseTenantId(tenantId);
      } catch (error) {
        toPublicError(error);
      }
    }
    return createConsentLink(this.links, flow, normalised, redirectUri);
  }
}
