import "reflect-metadata";
import { Arg, Ctx, ID, Int, Mutation, Query, Resolver } from "type-graphql";
import { highestRole, type Caller, type TenantScope as DomainScope } from "../auth/caller.js";
import { badInput, toPublicError } from "../errors.js";
import {
  ApiKey,
  ApiKeyConnection,
  AuditEvent,
  AuditEventConnection,
  AuditEventFilter,
  CallerKindKind,
  CallerRoleKind,
  CreateApiKeyInput,
  CreatedApiKey,
  Viewer,
} from "../schema/caller.type.js";
import type { ApiKeyRecord, ApiKeyStore } from "../store/api-key-store.js";
import { AUDIT_ACTIONS, type AuditAction, type AuditEvent as DomainAuditEvent, type AuditLog } from "../store/audit-log.js";
import { audited, publicCode, requireEverywhere } from "./access.js";
import { checkLength, checkLengths, STRING_LIMITS } from "./arguments.js";
import type { GraphQLContext } from "./context.js";
import { tenantIdArgument } from "./tenants.resolver.js";
import { pageInfoOf } from "../schema/page-info.type.js";

export interface CallersResolverDeps {
  apiKeys: ApiKeyStore;
  audit: AuditLog;
}

const DAY_MS = 86_400_000;
/** The key store's bounds on a key's scope. */
const MAX_KEY_TENANT_IDS = 1000;
const MAX_KEY_TENANT_TAGS = 100;

/** The caller itself, API keys and the audit log. Keys and the log need ADMIN over every tenant. */
@Resolver()
export class CallersResolver {
  constructor(private readonly deps: CallersResolverDeps) {}

  @Query(() => Viewer, { description: "Who is calling: how it was authenticated, its roles and tenant scopes." })
  viewer(@Ctx() ctx: GraphQLContext): Viewer {
    return toViewer(ctx.caller);
  }

  @Query(() => ApiKeyConnection, { description: "API keys, newest first (revoked ones included). Needs ADMIN over all tenants." })
  async apiKeys(
    @Arg("first", () => Int, { nullable: true, defaultValue: 50 }) first: number,
    @Arg("after", () => String, { nullable: true }) after: string | undefined,
    @Ctx() ctx: GraphQLContext,
  ): Promise<ApiKeyConnection> {
    requireEverywhere(ctx, "ADMIN", "listing API keys");
    checkLength(after, "after", STRING_LIMITS.cursor);
    const page = await this.deps.apiKeys.list(first, after ?? undefined).catch(toPublicError);
    const edges = page.items.map((record, i) => ({ cursor: page.cursors[i]!, node: toApiKey(record) }));
    return { edges, pageInfo: pageInfoOf(edges, page.hasNextPage, after) };
  }

  @Mutation(() => CreatedApiKey, {
    description: "Creates an API key with a role and a tenant scope; the key is shown once. Needs ADMIN over all tenants.",
  })
  async createApiKey(
    @Arg("input", () => CreateApiKeyInput) input: CreateApiKeyInput,
    @Ctx() ctx: GraphQLContext,
  ): Promise<CreatedApiKey> {
    // Bounded before the audit record, which carries the name and scope (the key store's own bounds).
    checkLength(input.name, "name", STRING_LIMITS.keyName);
    checkLengths(input.tenantIds, "tenantIds", MAX_KEY_TENANT_IDS, STRING_LIMITS.id);
    checkLengths(input.tenantTags, "tenantTags", MAX_KEY_TENANT_TAGS, STRING_LIMITS.tenantTag);
    const scope: DomainScope = {
      allTenants: input.allTenants === true,
      tenantIds: (input.tenantIds ?? []).map(tenantIdArgument),
      tenantTags: input.tenantTags ?? [],
    };
    const detail = { name: input.name, role: input.role, scope };
    let created: { record: ApiKeyRecord; key: string };
    try {
      requireEverywhere(ctx, "ADMIN", "creating API keys");
      if (scope.allTenants && scope.tenantIds.length + scope.tenantTags.length > 0) {
        throw badInput("give allTenants or tenantIds/tenantTags, not both", "allTenants");
      }
      if (input.expiresAt && input.expiresInDays) throw badInput("give expiresAt or expiresInDays, not both", "expiresInDays");
      if (input.expiresInDays !== undefined && input.expiresInDays !== null && (input.expiresInDays < 1 || input.expiresInDays > 3650)) {
        throw badInput("expiresInDays must be 1 to 3650", "expiresInDays");
      }
      const expiresAt = input.expiresInDays ? new Date(Date.now() + input.expiresInDays * DAY_MS) : (input.expiresAt ?? null);
      created = await this.deps.apiKeys
        .create({ name: input.name, role: input.role, scope, expiresAt, createdBy: actorLabel(ctx.caller) })
        .catch(toPublicError);
    } catch (error) {
      await ctx.audit({ action: "key.create", outcome: publicCode(error), detail });
      throw error;
    }
    // The key's id and prefix go to the audit log; the key itself only to this one response.
    await ctx.audit({ action: "key.create", target: created.record.id, outcome: "SUCCESS", detail: { ...detail, prefix: created.record.prefix } });
    const out = new CreatedApiKey();
    Object.assign(out, { key: created.key, apiKey: toApiKey(created.record) });
    return out;
  }

  @Mutation(() => ApiKey, { description: "Revokes an API key at once, on every replica. Needs ADMIN over all tenants." })
  async revokeApiKey(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<ApiKey> {
    checkLength(id, "id", STRING_LIMITS.id);
    return audited(ctx, { action: "key.revoke", target: id }, async () => {
      requireEverywhere(ctx, "ADMIN", "revoking API keys");
      return toApiKey(await this.deps.apiKeys.revoke(id, actorLabel(ctx.caller)).catch(toPublicError));
    });
  }

  @Query(() => AuditEventConnection, {
    description: "The audit log, newest first: mutations, consent events and key events. Needs ADMIN over all tenants.",
  })
  async auditEvents(
    @Arg("filter", () => AuditEventFilter, { nullable: true }) filter: AuditEventFilter | undefined,
    @Arg("first", () => Int, { nullable: true, defaultValue: 50 }) first: number,
    @Arg("after", () => String, { nullable: true }) after: string | undefined,
    @Ctx() ctx: GraphQLContext,
  ): Promise<AuditEventConnection> {
    requireEverywhere(ctx, "ADMIN", "reading the audit log");
    checkLength(filter?.action, "filter.action", STRING_LIMITS.auditText);
    checkLength(filter?.actorId, "filter.actorId", STRING_LIMITS.auditText);
    checkLength(filter?.outcome, "filter.outcome", STRING_LIMITS.auditText);
    checkLength(after, "after", STRING_LIMITS.cursor);
    if (filter?.action && !(AUDIT_ACTIONS as readonly string[]).includes(filter.action)) {
      throw badInput(`action must be one of ${AUDIT_ACTIONS.join(", ")}`, "filter.action");
    }
    const page = await this.deps.audit
      .list(
        {
          ...(filter?.tenantId ? { tenantId: tenantIdArgument(filter.tenantId) } : {}),
          ...(filter?.action ? { action: filter.action as AuditAction } : {}),
          ...(filter?.actorId ? { actorId: filter.actorId } : {}),
          ...(filter?.outcome ? { outcome: filter.outcome } : {}),
          ...(filter?.since ? { since: filter.since } : {}),
          ...(filter?.until ? { until: filter.until } : {}),
        },
        first,
        after ?? undefined,
      )
      .catch(toPublicError);
    const edges = page.items.map((event, i) => ({ cursor: page.cursors[i]!, node: toAuditEvent(event) }));
    return { edges, pageInfo: pageInfoOf(edges, page.hasNextPage, after) };
  }
}

/** How a caller is named where it acted (key creator, revoker). */
export function actorLabel(caller: Caller): string {
  return `${caller.kind}:${caller.id}`;
}

function toScope(scope: DomainScope) {
  return { allTenants: scope.allTenants, tenantIds: [...scope.tenantIds], tenantTags: [...scope.tenantTags] };
}

function toViewer(caller: Caller): Viewer {
  const out = new Viewer();
  const role = highestRole(caller);
  Object.assign(out, {
    kind: CallerKindKind[caller.kind],
    id: caller.id,
    name: caller.name,
    role: role ? CallerRoleKind[role] : null,
    grants: caller.grants.map((g) => ({ role: CallerRoleKind[g.role], scope: toScope(g.scope) })),
  });
  return out;
}

function toApiKey(record: ApiKeyRecord): ApiKey {
  const out = new ApiKey();
  const now = Date.now();
  Object.assign(out, {
    id: record.id,
    prefix: record.prefix,
    name: record.name,
    role: CallerRoleKind[record.role],
    scope: toScope(record.scope),
    active: record.revokedAt === null && (record.expiresAt === null || record.expiresAt.getTime() > now),
    createdAt: record.createdAt,
    createdBy: record.createdBy,
    expiresAt: record.expiresAt,
    revokedAt: record.revokedAt,
    revokedBy: record.revokedBy,
    lastUsedAt: record.lastUsedAt,
  });
  return out;
}

function toAuditEvent(event: DomainAuditEvent): AuditEvent {
  const out = new AuditEvent();
  Object.assign(out, {
    id: event.id,
    at: event.at,
    actorKind: CallerKindKind[event.actor.kind],
    actorId: event.actor.id,
    actorName: event.actor.name,
    action: event.action,
    tenantId: event.tenantId,
    target: event.target,
    outcome: event.outcome,
    detail: JSON.stringify(event.detail),
    requestId: event.requestId,
  });
  return out;
}
