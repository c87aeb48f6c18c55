import "reflect-metadata";
import { Directive, Field, ID, InputType, Int, ObjectType, registerEnumType } from "type-graphql";
import { IncidentsBackendKind } from "./server-info.type.js";
import { PageInfo } from "./page-info.type.js";

export enum ConsentStateKind {
  PENDING = "PENDING",
  GRANTED = "GRANTED",
  DENIED = "DENIED",
  REVOKED = "REVOKED",
}
registerEnumType(ConsentStateKind, {
  name: "ConsentState",
  description: "Where a tenant's admin consent stands.",
  valuesConfig: {
    PENDING: { description: "Registered; no admin has consented yet." },
    GRANTED: { description: "An admin consented (the last token check says whether it works)." },
    DENIED: { description: "An admin declined, or consent failed." },
    REVOKED: { description: "Consent was withdrawn after being granted." },
  },
});

export enum HuntingBackendKind {
  GRAPH = "graph",
  DEFENDER = "defender",
}
registerEnumType(HuntingBackendKind, {
  name: "HuntingBackend",
  description:
    "Where a tenant's hunting queries run. GRAPH: Microsoft Graph runHuntingQuery (ThreatHunting.Read.All). DEFENDER: the legacy " +
    "api.security.microsoft.com/api/advancedhunting/run (AdvancedHunting.Read.All), retired by Microsoft: it stops returning data on 2027-02-01.",
});

// Federation entity: other subgraphs extend a tenant by its Entra tenant id.
@Directive('@key(fields: "id")')
@ObjectType({ description: "A customer Entra ID tenant in the partner's registry." })
export class Tenant {
  @Field(() => ID, { description: "Entra tenant id (GUID, lower case)." })
  id!: string;

  @Field(() => String)
  displayName!: string;

  @Field(() => [String])
  tags!: string[];

  @Field(() => IncidentsBackendKind, { nullable: true, description: "Backend override; null follows the server default." })
  backend!: IncidentsBackendKind | null;

  @Field(() => IncidentsBackendKind, { description: "The backend this tenant's incidents are read from." })
  effectiveBackend!: IncidentsBackendKind;

  @Field(() => HuntingBackendKind, { nullable: true, description: "Hunting backend override; null follows the server default (HUNTING_BACKEND)." })
  huntingBackend!: HuntingBackendKind | null;

  @Field(() => ConsentStateKind)
  consentState!: ConsentStateKind;

  @Field(() => Date, { nullable: true })
  consentedAt!: Date | null;

  @Field(() => String, { nullable: true, description: "The error an admin's consent came back with." })
  consentError!: string | null;

  @Field(() => Date, { nullable: true })
  lastTokenSuccessAt!: Date | null;

  @Field(() => Date, { nullable: true })
  lastFailureAt!: Date | null;

  @Field(() => String, { nullable: true, description: "Public code of the last failure, e.g. CONSENT_REQUIRED." })
  lastFailureCode!: string | null;

  @Field(() => Date)
  createdAt!: Date;

  @Field(() => Date)
  updatedAt!: Date;
}

@ObjectType()
export class TenantEdge {
  @Field(() => String)
  cursor!: string;

  @Field(() => Tenant)
  node!: Tenant;
}

@ObjectType()
export class TenantConnection {
  @Field(() => [TenantEdge])
  edges!: TenantEdge[];

  @Field(() => PageInfo)
  pageInfo!: PageInfo;

  @Field(() => Int, { description: "Tenants matching the filter, over all pages." })
  totalCount!: number;
}

@InputType()
export class TenantFilter {
  @Field(() => [String], { nullable: true, description: "Tenants carrying any of these tags." })
  tags?: string[];

  @Field(() => [ConsentStateKind], { nullable: true })
  consentState?: ConsentStateKind[];

  @Field(() => String, { nullable: true, description: "Part of the display name, or the start of the id." })
  search?: string;
}

@InputType()
export class RegisterTenantInput {
  @Field(() => ID, { description: "Entra tenant id (GUID)." })
  id!: string;

  @Field(() => String)
  displayName!: string;

  @Field(() => [String], { nullable: true })
  tags?: string[];

  @Field(() => IncidentsBackendKind, { nullable: true })
  backend?: IncidentsBackendKind | null;

  @Field(() => HuntingBackendKind, { nullable: true, description: "Where the tenant's hunts run; null: the server default (HUNTING_BACKEND)." })
  huntingBackend?: HuntingBackendKind | null;
}

@InputType({ description: "Fields to change; omitted fields keep their values, a null backend or huntingBackend clears that override." })
export class UpdateTenantInput {
  @Field(() => String, { nullable: true })
  displayName?: string;

  @Field(() => [String], { nullable: true })
  tags?: string[];

  @Field(() => IncidentsBackendKind, { nullable: true })
  backend?: IncidentsBackendKind | null;

  @Field(() => HuntingBackendKind, { nullable: true, description: "Where the tenant's hunts run; null: the server default (HUNTING_BACKEND)." })
  huntingBackend?: HuntingBackendKind | null;
}
