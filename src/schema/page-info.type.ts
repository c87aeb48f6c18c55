import "reflect-metadata";
import { Directive, Field, ObjectType } from "type-graphql";

// Shareable: other subgraphs of a supergraph define the same Relay type, and composition needs every
// definition of a value type to say it may be resolved by more than one subgraph.
@Directive("@shareable")
@ObjectType({ description: "Relay page information." })
export class PageInfo {
  @Field(() => Boolean)
  hasNextPage!: boolean;

  @Field(() => Boolean)
  hasPreviousPage!: boolean;

  @Field(() => String, { nullable: true })
  startCursor!: string | null;

  @Field(() => String, { nullable: true })
  endCursor!: string | null;
}
