import "reflect-metadata";
import { Arg, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from "type-graphql";
import { permits, readableScope } from "../auth/caller.js";
import type { ConsentLinks } from "../auth/consent.js";
import type { IncidentsBackend } from "../config.js";
import { badInput, toPublicError } from "../errors.js";
import { StoreError } from "../store/errors.js";
import { ConsentFlowKind, ConsentLink } from "../schema/consent.type.js";
import { IncidentsBackendKind } from "../schema/server-info.type.js";
import {
  ConsentStateKind,
  HuntingBackendKind,
  RegisterTenantInput,
  Tenant,
  TenantConnection,
  TenantFilter,
  UpdateTenantInput,
} from "../schema/tenant.type.js";
import { MAX_TAGS as MAX_TENANT_TAGS, normaliseTenantId, type TenantRecord, type TenantStore } from "../store/tenant-store.js";
import { audited, requirePermission, tenantForbiddenError, visibleTenant } from "./access.js";
import { checkLength, checkLengths, MAX_FILTER_TAGS, STRING_LIMITS } from "./arguments.js";
import { consentLinkIfPermitted } from "./consent-links.js";
import type { GraphQLContext } from "./context.js";
import { pageInfoOf } from "../schema/page-info.type.js";

export interface TenantsResolverDeps {
  tenants: TenantStore;
  links: ConsentLinks;
  defaultBackend: IncidentsBackend;
  /** A tenant was registered or its backend changed: what was remembered of its failures no longer holds. */
  onTenantChanged?(tenantId: string): void;
  /** After a tenant left the registry: its mirrored incidents go too. */
  onTenantRemoved?(tenantId: string): Promise<void>;
}

/** The tenant registry: queries, mutations, and the consent link of one tenant. */
@Resolver(() => Tenant)
export class TenantsResolver {
  constructor(private readonly deps: TenantsResolverDeps) {}

  @Query(() => TenantConnection, {
    description: "Registered tenants within the caller's scope, by display name, as a Relay connection.",
  })
  async tenants(
    @Arg("filter", () => TenantFilter, { nullable: true }) filter: TenantFilter | undefined,
    @Arg("first", () => Int, { nullable: true, defaultValue: 50 }) first: number,
    @Arg("after", () => String, { nullable: true }) after: string | undefined,
    @Ctx() ctx: GraphQLContext,
  ): Promise<TenantConnection> {
    checkLengths(filter?.tags, "filter.tags", MAX_FILTER_TAGS, STRING_LIMITS.tenantTag);
    checkLength(filter?.search, "filter.search", STRING_LIMITS.search);
    checkLength(after, "after", STRING_LIMITS.cursor);
    const scope = readableScope(ctx.caller);
    const page = await this.deps.tenants
      .list(
        {
          ...(scope ? { scope } : {}),
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
      pageInfo: pageInfoOf(edges, page.hasNextPage, after),
      totalCount: page.totalCount,
    };
  }

  @Query(() => Tenant, {
    nullable: true,
    description: "One registered tenant. TENANT_FORBIDDEN when it is not registered or outside the caller's scope.",
  })
  async tenant(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<Tenant | null> {
    return this.toTenant(await visibleTenant(ctx, id));
  }

  @Mutation(() => Tenant, {
    description: "Adds a customer tenant to the registry (consent state PENDING). Needs ADMIN over the tenant's id or tags.",
  })
  async registerTenant(
    @Arg("input", () => RegisterTenantInput) input: RegisterTenantInput,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Tenant> {
    const id = tenantIdArgument(input.id);
    // Bounded before the audit record, which carries the name and tags.
    checkTenantFields(input);
    return audited(ctx, { action: "tenant.register", tenantId: id, detail: { displayName: input.displayName, tags: input.tags ?? [] } }, async () => {
      if (!permits(ctx.caller, "manage", { id, tags: input.tags ?? [] })) throw tenantForbiddenError(id);
      try {
        const record = await this.deps.tenants.register({
          id,
          displayName: input.displayName,
          ...(input.tags ? { tags: input.tags } : {}),
          backend: input.backend ?? null,
          huntingBackend: input.huntingBackend ?? null,
        });
        this.deps.onTenantChanged?.(record.id);
        return this.toTenant(record);
      } catch (error) {
        // An existing tenant the caller cannot see must not be revealed by ALREADY_EXISTS.
        if (error instanceof StoreError && error.code === "ALREADY_EXISTS" && !(await ctx.loaders.tenant.load(id))) {
          throw tenantForbiddenError(id);
        }
        return toPublicError(error);
      }
    });
  }

  @Mutation(() => Tenant, { description: "Changes a tenant's name, tags, backend or hunting backend. Needs ADMIN over the tenant." })
  async updateTenant(
    @Arg("id", () => ID) id: string,
    @Arg("input", () => UpdateTenantInput) input: UpdateTenantInput,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Tenant> {
    const tenantId = tenantIdArgument(id);
    checkTenantFields(input);
    const changed = Object.entries(input).filter(([, value]) => value !== undefined).map(([key]) => key);
    return audited(ctx, { action: "tenant.update", tenantId, detail: { changed } }, async () => {
      const record = await visibleTenant(ctx, tenantId);
      requirePermission(ctx, record, "manage");
      if (input.displayName === null) throw badInput("displayName cannot be null", "displayName");
      if (input.tags === null) throw badInput("tags cannot be null; give [] to clear them", "tags");
      const updated = await this.deps.tenants
        .update(record.id, {
          ...(input.displayName !== undefined ? { displayName: input.displayName } : {}),
          ...(input.tags !== undefined ? { tags: input.tags } : {}),
          ...(input.backend !== undefined ? { backend: input.backend } : {}),
          ...(input.huntingBackend !== undefined ? { huntingBackend: input.huntingBackend } : {}),
        })
        .catch(toPublicError);
      if (updated.backend !== record.backend || (updated.huntingBackend ?? null) !== (record.huntingBackend ?? null)) {
        this.deps.onTenantChanged?.(record.id);
      }
      return this.toTenant(updated);
    });
  }

  @Mutation(() => Boolean, {
    description: "Removes a tenant from the registry (its consent in Entra stays). Needs ADMIN over the tenant.",
  })
  async removeTenant(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<boolean> {
    const tenantId = tenantIdArgument(id);
    return audited(ctx, { action: "tenant.remove", tenantId }, async () => {
      const record = await visibleTenant(ctx, tenantId);
      requirePermission(ctx, record, "manage");
      await this.deps.tenants.remove(record.id).catch(toPublicError);
      await this.deps.onTenantRemoved?.(record.id);
      return true;
    });
  }

  @FieldResolver(() => ConsentLink, {
    nullable: true,
    description:
      "A fresh admin-consent link bound to this tenant, when the caller is ADMIN over it; null otherwise (see consentState). " +
      "redirectUri: PUBLIC_URL's /consent/callback (the default) or one of CONSENT_REDIRECT_URIS.",
  })
  async consentLink(
    @Root() tenant: Tenant,
    @Arg("redirectUri", () => String, { nullable: true }) redirectUri: string | undefined,
    @Ctx() ctx: GraphQLContext,
  ): Promise<ConsentLink | null> {
    return consentLinkIfPermitted(ctx, this.deps.links, { flow: ConsentFlowKind.ADMIN_CONSENT, tenantId: tenant.id, redirectUri });
  }

  private toTenant(record: TenantRecord): Tenant {
    return toTenant(record, this.deps.defaultBackend);
  }
}

/** The registry's own bounds on a tenant's name and tags, checked before any store call or audit record. */
function checkTenantFields(input: { displayName?: string | null; tags?: string[] | null }): void {
  checkLength(input.displayName, "displayName", STRING_LIMITS.displayName);
  checkLengths(input.tags, "tags", MAX_TENANT_TAGS, STRING_LIMITS.tenantTag);
}

/** A tenant id argument, normalised, or BAD_USER_INPUT. */
export function tenantIdArgument(id: string): string {
  try {
    return normaliseTenantId(id);
  } catch (error) {
    return toPublicError(error);
  }
}

/** Maps a registry record to its GraphQL shape. */
export function toTenant(record: TenantRecord, defaultBackend: IncidentsBackend): Tenant {
  const tenant = new Tenant();
  Object.assign(tenant, {
    ...record,
    backend: record.backend ? backendKind(record.backend) : null,
    huntingBackend: record.huntingBackend ? huntingBackendKind(record.huntingBackend) : null,
    effectiveBackend: backendKind(record.backend ?? defaultBackend),
    consentState: ConsentStateKind[record.consentState],
  });
  return tenant;
}

function huntingBackendKind(backend: "graph" | "defender"): HuntingBackendKind {
  return backend === "graph" ? HuntingBackendKind.GRAPH : HuntingBackendKind.DEFENDER;
}

function backendKind(backend: IncidentsBackend): IncidentsBackendKind {
  return backend === "graph" ? IncidentsBackendKind.GRAPH : IncidentsBackendKind.DEFENDER;
}
