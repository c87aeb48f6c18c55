import "reflect-metadata";
import { Arg, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from "type-graphql";
import type { ConsentLinks } from "../auth/consent.js";
import type { IncidentsBackend } from "../config.js";
import { badInput, toPublicError } from "../errors.js";
import { ConsentFlowKind, ConsentLink } from "../schema/consent.type.js";
import { IncidentsBackendKind } from "../schema/server-info.type.js";
import {
  ConsentStateKind,
  RegisterTenantInput,
  Tenant,
  TenantConnection,
  TenantFilter,
  UpdateTenantInput,
} from "../schema/tenant.type.js";
import type { TenantRecord, TenantStore } from "../store/tenant-store.js";

export interface TenantsResolverDeps {
  tenants: TenantStore;
  links: ConsentLinks;
  defaultBackend: IncidentsBackend;
}

/** The tenant registry: queries, mutations, and the consent link of one tenant. */
@Resolver(() => Tenant)
export class TenantsResolver {
  constructor(private readonly deps: TenantsResolverDeps) {}

  @Query(() => TenantConnection, { description: "Registered tenants, by display name, as a Relay connection." })
  async tenants(
    @Arg("filter", () => TenantFilter, { nullable: true }) filter: TenantFilter | undefined,
    @Arg("first", () => Int, { nullable: true, defaultValue: 50 }) first: number,
    @Arg("after", () => String, { nullable: true }) after: string | undefined,
  ): Promise<TenantConnection> {
    const page = await this.deps.tenants
      .list(
        {
          ...(filter?.tags ? { tags: filter.tags } : {}),
          ...(filter?.consentState ? { consentState: filter.consentState } : {}),
          ...(filter?.search ? { search: filter.search } : {}),
        },
        first,
        after ?? undefined,
      )
      .catch(toPublicError);
    const edges = page.items.map((record, i) => ({ cursor: page.cursors[i]!, node: this.toTenant(record) }));
    return {
      edges,
      pageInfo: {
        hasNextPage: page.hasNextPage,
        hasPreviousPage: after !== undefined && after !== null,
        startCursor: edges[0]?.cursor ?? null,
        endCursor: edges.at(-1)?.cursor ?? null,
      },
      totalCount: page.totalCount,
    };
  }

  @Query(() => Tenant, { nullable: true, description: "One registered tenant; null when it is not registered." })
  async tenant(@Arg("id", () => ID) id: string): Promise<Tenant | null> {
    const record = await this.deps.tenants.get(id).catch(toPublicError);
    return record ? this.toTenant(record) : null;
  }

  @Mutation(() => Tenant, { description: "Adds a customer tenant to the registry (consent state PENDING)." })
  async registerTenant(@Arg("input", () => RegisterTenantInput) input: RegisterTenantInput): Promise<Tenant> {
    const record = await this.deps.tenants
      .register({
        id: input.id,
        displayName: input.displayName,
        ...(input.tags ? { tags: input.tags } : {}),
        backend: input.backend ?? null,
      })
      .catch(toPublicError);
    return this.toTenant(record);
  }

  @Mutation(() => Tenant)
  async updateTenant(
    @Arg("id", () => ID) id: string,
    @Arg("input", () => UpdateTenantInput) input: UpdateTenantInput,
  ): Promise<Tenant> {
    if (input.displayName === null) throw badInput("displayName cannot be null", "displayName");
    if (input.tags === null) throw badInput("tags cannot be null; give [] to clear them", "tags");
    const record = await this.deps.tenants
      .update(id, {
        ...(input.displayName !== undefined ? { displayName: input.displayName } : {}),
        ...(input.tags !== undefined ? { tags: input.tags } : {}),
        ...(input.backend !== undefined ? { backend: input.backend } : {}),
      })
      .catch(toPublicError);
    return this.toTenant(record);
  }

  @Mutation(() => Boolean, { description: "Removes a tenant from the registry (its consent in Entra stays)." })
  async removeTenant(@Arg("id", () => ID) id: string): Promise<boolean> {
    await this.deps.tenants.remove(id).catch(toPublicError);
    return true;
  }

  @FieldResolver(() => ConsentLink, { description: "A fresh admin-consent link bound to this tenant." })
  async consentLink(
    @Root() tenant: Tenant,
    @Arg("redirectUri", () => String, { nullable: true }) redirectUri: string | undefined,
  ): Promise<ConsentLink> {
    return createConsentLink(this.deps.links, ConsentFlowKind.ADMIN_CONSENT, tenant.id, redirectUri);
  }

  private toTenant(record: TenantRecord): Tenant {
    return toTenant(record, this.deps.defaultBackend);
  }
}

/** Maps a registry record to its GraphQL shape. */
export function toTenant(record: TenantRecord, defaultBackend: IncidentsBackend): Tenant {
  const tenant = new Tenant();
  Object.assign(tenant, {
    ...record,
    backend: record.backend ? backendKind(record.backend) : null,
    effectiveBackend: backendKind(record.backend ?? defaultBackend),
    consentState: ConsentStateKind[record.consentState],
  });
  return tenant;
}

function backendKind(backend: IncidentsBackend): IncidentsBackendKind {
  return backend === "graph" ? IncidentsBackendKind.GRAPH : IncidentsBackendKind.DEFENDER;
}

const HTTP_URL = /^https?:\/\/[^\s]+$/i;

/** Validates the arguments and builds a consent link (shared by `consentLink` and `Tenant.consentLink`). */
export async function createConsentLink(
  links: ConsentLinks,
  flow: ConsentFlowKind,
  tenantId: string | undefined,
  redirectUri: string | undefined,
): Promise<ConsentLink> {
  if (redirectUri !== undefined && redirectUri !== null && (!HTTP_URL.test(redirectUri) || redirectUri.length > 2000)) {
    throw badInput("redirectUri must be an http(s) URL registered on the app", "redirectUri");
  }
  if (flow === ConsentFlowKind.LEGACY_V1 && redirectUri) {
    throw badInput("LEGACY_V1 links carry no redirectUri: the app's registered reply URL is used", "redirectUri");
  }
  const link = await links.create({
    flow,
    tenantId: tenantId ?? undefined,
    redirectUri: redirectUri ?? undefined,
  });
  const result = new ConsentLink();
  Object.assign(result, { ...link, flow: link.flow === "LEGACY_V1" ? ConsentFlowKind.LEGACY_V1 : ConsentFlowKind.ADMIN_CONSENT });
  return result;
}
