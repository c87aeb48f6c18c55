import "reflect-metadata";
import { GraphQLScalarType, Kind, type ValueNode } from "graphql";
import { Field, ID, Int, ObjectType } from "type-graphql";
import { PageInfo } from "./page-info.type.js";
import { HuntingBackendKind } from "./tenant.type.js";
import { TenantError } from "./token.type.js";

/** Any JSON value, as the input literal or variable it was given. */
function literalValue(node: ValueNode, variables: Record<string, unknown> | null | undefined): unknown {
  switch (node.kind) {
    case Kind.STRING:
    case Kind.BOOLEAN:
      return node.value;
    case Kind.INT:
    case Kind.FLOAT:
      return Number(node.value);
    case Kind.NULL:
      return null;
    case Kind.LIST:
      return node.values.map((v) => literalValue(v, variables));
    case Kind.OBJECT:
      return Object.fromEntries(node.fields.map((f) => [f.name.value, literalValue(f.value, variables)]));
    case Kind.VARIABLE:
      return variables?.[node.name.value];
    default:
      return undefined;
  }
}

/** A JSON value (object, array, string, number, boolean or null): a hunting row, keyed by column name. */
export const JSONScalar = new GraphQLScalarType({
  name: "JSON",
  description: "Any JSON value. A hunting row is an object keyed by column name (see HuntingResult.columns).",
  serialize: (value) => value,
  parseValue: (value) => value,
  parseLiteral: (node, variables) => literalValue(node, variables),
});

@ObjectType({ description: "A column of a hunting result." })
export class HuntingColumn {
  @Field(() => String)
  name!: string;

  @Field(() => String, {
    description:
      "The services' type name (String, DateTime, Int32, Int64, Double, Boolean, Dynamic, Guid, …); Dynamic when tenants disagree.",
  })
  type!: string;
}

@ObjectType({ description: "One merged row and its cursor." })
export class HuntingRowEdge {
  @Field(() => String)
  cursor!: string;

  @Field(() => JSONScalar, { description: "The row: an object keyed by column name, tenantId first." })
  node!: Record<string, unknown>;
}

@ObjectType({ description: "How the hunt went in one tenant." })
export class HuntingTenantOutcome {
  @Field(() => ID)
  tenantId!: string;

  @Field(() => Boolean, { description: "True when the tenant answered; its rows are in the result." })
  ok!: boolean;

  @Field(() => TenantError, { nullable: true })
  error!: TenantError | null;

  @Field(() => Int, { description: "Rows the tenant returned." })
  rowCount!: number;

  @Field(() => Boolean, { description: "The service cut the tenant's answer at its row limit (100,000): more rows matched." })
  truncated!: boolean;

  @Field(() => Int, { description: "Time the tenant's hunt took, milliseconds." })
  durationMs!: number;

  @Field(() => HuntingBackendKind, { description: "Where the tenant's hunt ran (or would have)." })
  backend!: HuntingBackendKind;
}

@ObjectType({ description: "One KQL query's rows from many tenants, as one table." })
export class HuntingResult {
  @Field(() => [HuntingColumn], {
    description: "The union of every answering tenant's columns: tenantId first, then the others in the order first seen.",
  })
  columns!: HuntingColumn[];

  @Field(() => [HuntingRowEdge])
  edges!: HuntingRowEdge[];

  @Field(() => [JSONScalar], { description: "The page's rows without cursors." })
  nodes!: Record<string, unknown>[];

  @Field(() => Int, { description: "Rows of every answering tenant." })
  totalCount!: number;

  @Field(() => PageInfo)
  pageInfo!: PageInfo;

  @Field(() => [HuntingTenantOutcome])
  tenantOutcomes!: HuntingTenantOutcome[];
}
