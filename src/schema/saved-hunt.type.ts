import "reflect-metadata";
import { Field, ID, Int, ObjectType } from "type-graphql";
import { CallerKindKind } from "./caller.type.js";
import { PageInfo } from "./page-info.type.js";

@ObjectType({ description: "Who saved a hunt (as the audit log names an actor)." })
export class SavedHuntAuthor {
  @Field(() => CallerKindKind)
  kind!: CallerKindKind;

  @Field(() => String, { description: "The API key's id, the token's oid, or cli:<user>." })
  id!: string;

  @Field(() => String)
  name!: string;
}

@ObjectType({
  description:
    "A hunting (KQL) query the partner keeps under a name, to run again across customers with runSavedHunt. Partner-wide: one library " +
    "per deployment. Saving and deleting need ADMIN over all tenants; any caller may list and run them, each run narrowed to its own scope.",
})
export class SavedHunt {
  @Field(() => ID)
  id!: string;

  @Field(() => String, { description: "Unique per deployment, case-insensitively." })
  name!: string;

  @Field(() => String, { description: "The KQL query text (never logged, never in the audit log)." })
  query!: string;

  @Field(() => [String], { description: "Tenants carrying any of these tags; [] means every tenant the caller running it may read." })
  tenantTags!: string[];

  @Field(() => SavedHuntAuthor)
  createdBy!: SavedHuntAuthor;

  @Field(() => Date)
  createdAt!: Date;

  @Field(() => Date, { description: "When its query or tags were last replaced (saveHunt under the same name)." })
  updatedAt!: Date;
}

@ObjectType()
export class SavedHuntEdge {
  @Field(() => String)
  cursor!: string;

  @Field(() => SavedHunt)
  node!: SavedHunt;
}

@ObjectType()
export class SavedHuntConnection {
  @Field(() => [SavedHuntEdge])
  edges!: SavedHuntEdge[];

  @Field(() => PageInfo)
  pageInfo!: PageInfo;

  @Field(() => Int, { description: "Saved hunts over all pages." })
  totalCount!: number;
}
