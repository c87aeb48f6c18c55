import "reflect-metadata";
import { Field, ID, Int, ObjectType, registerEnumType } from "type-graphql";
import { TENANT_ERROR_CODES, type TenantErrorCode as DomainTenantErrorCode } from "../incidents/outcome.js";
import type { HuntingDiagnosis } from "../auth/token-diagnostics.js";
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
  HUNT = "hunt",
}
registerEnumType(IncidentCapabilityKind, {
  name: "IncidentCapability",
  description: "What a role allows: reading or updating incidents, or (HUNT) running hunting queries.",
});

export enum AccessVerdictKind {
  ALLOWED = "allowed",
  DENIED = "denied",
  UNKNOWN = "unknown",
}
registerEnumType(AccessVerdictKind, {
  name: "AccessVerdict",
  description:
    "Whether the app may do something in a tenant: known from the token's roles, or — when its claims are unreadable — from whether an incidents call was allowed; UNKNOWN when neither says.",
});

@ObjectType({ description: "Why one tenant failed, and what a person can do about it." })
export class TenantError {
  @Field(() => TenantErrorCode)
  code!: TenantErrorCode;

  @Field(() => String)
  message!: string;

  @Field(() => String, { nullable: true, description: "What to do about it." })
  hint!: string | null;

  @Field(() => Int, {
    nullable: true,
    description: "Seconds to wait before trying again: when throttled, when the service said when it will be back (503 with Retry-After), or while a lasting failure is remembered.",
  })
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

@ObjectType({
  description:
    "What a tenant's app-only token says (decoded claims; the token itself is never shown). Microsoft may issue access tokens that are not readable JWTs: then claimsReadable is false, the claim fields are null, and access is judged by whether an incidents call was allowed.",
})
export class TokenDiagnostics {
  @Field(() => ID)
  tenantId!: string;

  @Field(() => IncidentsBackendKind, { description: "The backend (resource) the token was requested for." })
  backend!: IncidentsBackendKind;

  @Field(() => Boolean, {
    description: "A token was obtained and reading incidents is not known to be refused (by its roles, or — claims unreadable — by an incidents call).",
  })
  ok!: boolean;

  @Field(() => Boolean, {
    description:
      "False when the token obtained is not a readable JWT (opaque or encrypted): the claim fields are null, roles is empty and readAccess/updateAccess come from an incidents call, if any. True otherwise (also when no token was obtained: see error).",
  })
  claimsReadable!: boolean;

  @Field(() => AccessVerdictKind, { description: "Whether the app may read incidents in the tenant (canRead is ALLOWED)." })
  readAccess!: AccessVerdictKind;

  @Field(() => AccessVerdictKind, {
    description: "Whether the app may update incidents in the tenant (canUpdate is ALLOWED). UNKNOWN with unreadable claims: the update itself decides.",
  })
  updateAccess!: AccessVerdictKind;

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

  @Field(() => [String], { description: "`roles` claim: the application permissions granted in the tenant ([] when the claims are unreadable)." })
  roles!: string[];

  @Field(() => [RoleRequirement], { description: "Roles that satisfy the backend, any one per capability." })
  requiredRoles!: RoleRequirement[];

  @Field(() => [String], { description: "To read incidents: any one of these is missing ([] when reading works, or when that is unknown: see readAccess)." })
  missingRoles!: string[];

  @Field(() => [String], { description: "To update incidents: any one of these is missing ([] when updating works, or when that is unknown: see updateAccess)." })
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

  /**
   * The hunting verdict, computed once when a hunting field is asked for (`canHunt`, `huntingAccess`,
   * `missingRolesForHunting`, `huntingBackend`: src/resolvers/tokens.resolver.ts); undefined when hunting is
   * off or the tenant is not visible. Not a field.
   */
  hunting?: () => Promise<HuntingDiagnosis | undefined>;
}
