import "reflect-metadata";
import { Field, ID, ObjectType, registerEnumType } from "type-graphql";
import { IncidentsBackendKind } from "./server-info.type.js";

export enum ConsentFlowKind {
  ADMIN_CONSENT = "ADMIN_CONSENT",
  LEGACY_V1 = "LEGACY_V1",
}
registerEnumType(ConsentFlowKind, {
  name: "ConsentFlow",
  valuesConfig: {
    ADMIN_CONSENT: { description: "v2 admin consent for one tenant (or any, with no tenant), with a signed, expiring state that Crosswatch's callback verifies." },
    LEGACY_V1: { description: "The v1 link exactly as Microsoft's Defender partner-access page gives it (no state; the admin returns to the app's registered reply URL)." },
  },
});

@ObjectType({ description: "An application permission the customer's admin is asked to grant." })
export class ConsentPermission {
  @Field(() => String)
  resource!: string;

  @Field(() => String)
  role!: string;

  @Field(() => String)
  description!: string;
}

@ObjectType({ description: "A link for a customer's Global Administrator to grant Crosswatch's app access." })
export class ConsentLink {
  @Field(() => String)
  url!: string;

  @Field(() => ConsentFlowKind)
  flow!: ConsentFlowKind;

  @Field(() => ID, { nullable: true, description: "The tenant the link is bound to; null: any tenant's admin." })
  tenantId!: string | null;

  @Field(() => [ConsentPermission])
  permissions!: ConsentPermission[];

  @Field(() => IncidentsBackendKind, {
    nullable: true,
    description:
      "The backend whose resource the link asks consent for (the tenant's, or the server default): a link names one " +
      "resource only, since Entra refuses the whole request (AADSTS650052) when the tenant lacks one. Null for LEGACY_V1.",
  })
  backend!: IncidentsBackendKind | null;

  @Field(() => Date, { nullable: true, description: "When the link's state expires (null for LEGACY_V1)." })
  expiresAt!: Date | null;
}
