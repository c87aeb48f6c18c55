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

/** A keyset page's PageInfo: its edges' first and last cursors, and whether it started after a cursor. */
export function pageInfoOf(edges: readonly { cursor: string }[], hasNextPage: boolean, after: string | undefined | null): PageInfo {
  return {
    hasNextPage,
    hasPreviousPage: after !== undefined && after !== null,
    startCursor: edges[0]?.cursor ?? null,
    endCursor: edges.at(-1)?.cursor ?? null,
  };
}
