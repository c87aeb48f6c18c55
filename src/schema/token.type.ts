import "reflect-metadata";
import { Field, ID, Int, ObjectType, registerEnumType } from "type-graphql";
import { TENANT_ERROR_CODES, type TenantErrorCode as DomainTenantErrorCode } from "../incidents/outcome.js";
import { IncidentsBackendKind } from "./server-info.type.js";

/** Public failure codes of a tenant: the token layer's, the incidents backends', and DEADLINE_EXCEEDED. */
export const TenantErrorCode = Object.fromEntries(TENANT_ERROR_CODES.map((c) => [c, c])) as {
  [K in DomainTenantErrorCode]: K;
};
export type TenantErrorCode = DomainTenantErrorCode;
registerEnumType(TenantErrorCode, {
  name: "TenantErrorCode",
  description: "Why one tenant could not be served. Stable: switch on these.",
});

export enum IncidentCapabilityKind {
  READ = "read",
  UPDATE = "update",
}
registerEnumType(IncidentCapabilityKind, { name: "IncidentCapability" });

@ObjectType({ description: "Why one tenant failed, and what a person can do about it." })
export class TenantError {
  @Field(() => TenantErrorCode)
  code!: TenantErrorCode;

  @Field(() => String)
  message!: string;

  @Field(() => String, { nullable: true, description: "What to do about it." })
  hint!: string | null;

  @Field(() => Int, { nullable: true, description: "When throttled: seconds to wait before trying again." })
  retryAfterSeconds!: number | null;

  /**
   * The tenant this error is about. Not a field (its TenantOutcome or TokenDiagnostics says it): the
   * `consentLink` field resolver (src/resolvers/consent.resolver.ts) needs it to apply the consent-link rule.
   */
  tenantId?: string;
}

@ObjectType({ description: "An application permission that satisfies a backend, and what it allows." })
export class RoleRequirement {
  @Field(() => String)
  role!: string;

  @Field(() => [IncidentCapabilityKind])
  enables!: IncidentCapabilityKind[];
}

@ObjectType({ description: "What a tenant's app-only token says (decoded claims; the token itself is never shown)." })
export class TokenDiagnostics {
  @Field(() => ID)
  tenantId!: string;

  @Field(() => IncidentsBackendKind, { description: "The backend (resource) the token was requested for." })
  backend!: IncidentsBackendKind;

  @Field(() => Boolean, { description: "A token was obtained and it may read incidents." })
  ok!: boolean;

  @Field(() => ID, { nullable: true, description: "`tid` claim: the tenant the token was issued in." })
  tid!: string | null;

  @Field(() => String, { nullable: true, description: "`aud` claim." })
  audience!: string | null;

  @Field(() => String, { nullable: true, description: "`iss` claim." })
  issuer!: string | null;

  @Field(() => String, { nullable: true, description: "`appid` (v1) or `azp` (v2) claim." })
  appId!: string | null;

  @Field(() => String, { nullable: true, description: "`ver` claim: 1.0 or 2.0." })
  version!: string | null;

  @Field(() => [String], { description: "`roles` claim: the application permissions granted in the tenant." })
  roles!: string[];

  @Field(() => [RoleRequirement], { description: "Roles that satisfy the backend, any one per capability." })
  requiredRoles!: RoleRequirement[];

  @Field(() => [String], { description: "To read incidents: any one of these is missing ([] when reading works)." })
  missingRoles!: string[];

  @Field(() => [String], { description: "To update incidents: any one of these is missing ([] when updating works)." })
  missingRolesForUpdate!: string[];

  @Field(() => Boolean)
  canRead!: boolean;

  @Field(() => Boolean)
  canUpdate!: boolean;

  @Field(() => Date, { nullable: true })
  issuedAt!: Date | null;

  @Field(() => Date, { nullable: true })
  expiresAt!: Date | null;

  @Field(() => Boolean, { nullable: true, description: "True when no token call was made for this answer." })
  fromCache!: boolean | null;

  @Field(() => TenantError, { nullable: true })
  error!: TenantError | null;
}
