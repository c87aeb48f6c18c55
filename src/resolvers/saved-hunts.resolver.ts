import "reflect-metadata";
import { Arg, Ctx, ID, Int, Mutation, Query, Resolver } from "type-graphql";
import { toPublicError } from "../errors.js";
import { HuntingResult } from "../schema/hunting.type.js";
import { CallerKindKind } from "../schema/caller.type.js";
import { SavedHunt, SavedHuntConnection } from "../schema/saved-hunt.type.js";
import { StoreError } from "../store/errors.js";
import {
  checkHuntQuery,
  MAX_HUNT_NAME_LENGTH,
  MAX_HUNT_QUERY_LENGTH,
  MAX_HUNT_TAGS,
  normaliseHuntName,
  normaliseHuntTags,
  type SavedHuntRecord,
  type SavedHuntStore,
} from "../store/saved-hunt-store.js";
import { forbiddenError, publicCode, requireEverywhere } from "./access.js";
import { checkLength, checkLengths, STRING_LIMITS } from "./arguments.js";
import type { GraphQLContext } from "./context.js";
import type { HuntingResolver } from "./hunting.resolver.js";
import { pageInfoOf } from "../schema/page-info.type.js";

export interface SavedHuntsResolverDeps {
  savedHunts: SavedHuntStore;
  /** `huntingQuery` itself: a saved hunt runs through exactly the same checks, tenant selection and service. */
  hunting: Pick<HuntingResolver, "huntingQuery">;
}

/**
 * Saved hunts: the partner's library of KQL queries, one per deployment. A saved hunt may name any tags, so
 * saving and deleting need ADMIN over all tenants (like API keys); listing and running need only a caller with
 * some grant, and a run reaches only the tenants that caller may read (those of the hunt's tags within its
 * scope, or its whole scope for a hunt without tags), exactly as `huntingQuery` with those tags would.
 * Every save, delete and run is audited with the hunt's id, name and tags; the query text is never in the
 * audit log or any log line.
 */
@Resolver()
export class SavedHuntsResolver {
  constructor(private readonly deps: SavedHuntsResolverDeps) {}

  @Query(() => SavedHuntConnection, { description: "Saved hunts by name, as a Relay connection. Any caller with a role over some tenant." })
  async savedHunts(
    @Arg("first", () => Int, { nullable: true, defaultValue: 50, description: "1 to 200." }) first: number,
    @Arg("after", () => String, { nullable: true }) after: string | undefined,
    @Ctx() ctx: GraphQLContext,
  ): Promise<SavedHuntConnection> {
    checkLength(after, "after", STRING_LIMITS.cursor);
    requireSomeGrant(ctx, "listing saved hunts");
    const page = await this.deps.savedHunts.list(first, after ?? undefined).catch(toPublicError);
    const edges = page.items.map((record, i) => ({ cursor: page.cursors[i]!, node: toSavedHunt(record) }));
    return {
      edges,
      pageInfo: pageInfoOf(edges, page.hasNextPage, after),
      totalCount: page.totalCount,
    };
  }

  @Mutation(() => SavedHunt, {
    description:
      "Saves a hunting query under a name (name ≤ 128 characters, query ≤ 10,000, tenantTags like tenant tags); saving under an existing " +
      "name (case-insensitive) replaces that hunt's query and tags. Needs ADMIN over all tenants. Audited without the query text.",
  })
  async saveHunt(
    @Arg("name", () => String) name: string,
    @Arg("query", () => String) query: string,
    @Arg("tenantTags", () => [String], { nullable: true }) tenantTags: string[] | undefined,
    @Ctx() ctx: GraphQLContext,
  ): Promise<SavedHunt> {
    // Every bound and pattern before the audit record (which carries the name and tags) and any store write.
    checkLength(name, "name", MAX_HUNT_NAME_LENGTH);
    checkLength(query, "query", MAX_HUNT_QUERY_LENGTH);
    checkLengths(tenantTags, "tenantTags", MAX_HUNT_TAGS, STRING_LIMITS.tenantTag);
    let input: { name: string; query: string; tenantTags: string[] };
    try {
      input = { name: normaliseHuntName(name), query: checkHuntQuery(query), tenantTags: normaliseHuntTags(tenantTags ?? []) };
    } catch (error) {
      return toPublicError(error);
    }
    // The query's length, never its text: the audit log is read by people who may not read the hunts' tenants.
    const detail = { name: input.name, tenantTags: input.tenantTags, queryLength: input.query.length };
    let saved: { record: SavedHuntRecord; replaced: boolean };
    try {
      requireEverywhere(ctx, "ADMIN", "saving hunts");
      saved = await this.deps.savedHunts
        .save({ ...input, createdBy: { kind: ctx.caller.kind, id: ctx.caller.id, name: ctx.caller.name } })
        .catch(toPublicError);
    } catch (error) {
      await ctx.audit({ action: "hunt.save", outcome: publicCode(error), detail });
      throw error;
    }
    await ctx.audit({ action: "hunt.save", target: saved.record.id, outcome: "SUCCESS", detail: { ...detail, replaced: saved.replaced } });
    return toSavedHunt(saved.record);
  }

  @Mutation(() => Boolean, { description: "Deletes a saved hunt (NOT_FOUND when there is none). Needs ADMIN over all tenants. Audited." })
  async deleteSavedHunt(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<boolean> {
    checkLength(id, "id", STRING_LIMITS.id);
    try {
      requireEverywhere(ctx, "ADMIN", "deleting saved hunts");
      const removed = await this.deps.savedHunts.remove(id).catch(toPublicError);
      await ctx.audit({ action: "hunt.delete", target: removed.id, outcome: "SUCCESS", detail: { name: removed.name } });
      return true;
    } catch (error) {
      await ctx.audit({ action: "hunt.delete", target: id, outcome: publicCode(error) });
      throw error;
    }
  }

  @Query(() => HuntingResult, {
    description:
      "Runs a saved hunt as huntingQuery(query, tenantTags) would for this caller: in the tenants carrying the hunt's tags (every tenant " +
      "for a hunt without tags) within the caller's scope, never beyond it. first/after page the merged rows as in huntingQuery. " +
      "Any caller with a role over some tenant; NOT_FOUND for an unknown id. Audited (id, name, tags, tenants reached), without the query text.",
  })
  async runSavedHunt(
    @Arg("id", () => ID) id: string,
    @Arg("first", () => Int, { nullable: true, description: "Rows per page, as huntingQuery's." }) first: number | undefined,
    @Arg("after", () => String, { nullable: true }) after: string | undefined,
    @Ctx() ctx: GraphQLContext,
  ): Promise<HuntingResult> {
    checkLength(id, "id", STRING_LIMITS.id);
    checkLength(after, "after", STRING_LIMITS.cursor);
    let hunt: SavedHuntRecord | undefined;
    try {
      requireSomeGrant(ctx, "running saved hunts");
      hunt = await this.deps.savedHunts.get(id);
      if (!hunt) toPublicError(new StoreError("NOT_FOUND", "no saved hunt has this id", { field: "id" }));
      const result = await this.deps.hunting.huntingQuery(
        hunt.query,
        undefined,
        hunt.tenantTags.length > 0 ? hunt.tenantTags : undefined,
        undefined,
        first,
        after,
        ctx,
      );
      const failed = result.tenantOutcomes.filter((o) => !o.ok).length;
      await ctx.audit({
        action: "hunt.run",
        target: hunt.id,
        outcome: "SUCCESS",
        detail: { name: hunt.name, tenantTags: hunt.tenantTags, tenants: result.tenantOutcomes.length, failedTenants: failed },
      });
      return result;
    } catch (error) {
      await ctx.audit({
        action: "hunt.run",
        target: hunt?.id ?? id,
        outcome: publicCode(error),
        ...(hunt ? { detail: { name: hunt.name, tenantTags: hunt.tenantTags } } : {}),
      });
      throw error;
    }
  }
}

/** FORBIDDEN for a caller holding no role over any tenant (what listing and running saved hunts need). */
function requireSomeGrant(ctx: GraphQLContext, what: string): void {
  if (ctx.caller.grants.length === 0) throw forbiddenError(`${what} needs a role over some tenant`);
}

function toSavedHunt(record: SavedHuntRecord): SavedHunt {
  const hunt = new SavedHunt();
  Object.assign(hunt, { ...record, createdBy: { ...record.createdBy, kind: CallerKindKind[record.createdBy.kind] } });
  return hunt;
}
