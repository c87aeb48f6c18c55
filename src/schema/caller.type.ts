import "reflect-metadata";
import { Field, ID, InputType, Int, ObjectType, registerEnumType } from "type-graphql";
import { PageInfo } from "./page-info.type.js";

export enum CallerRoleKind {
  READER = "READER",
  RESPONDER = "RESPONDER",
  ADMIN = "ADMIN",
}
registerEnumType(CallerRoleKind, {
  name: "CallerRole",
  description: "READER reads incidents; RESPONDER also updates them; ADMIN also manages tenants (and, over all tenants, API keys and the audit log).",
});

export enum CallerKindKind {
  ANONYMOUS = "ANONYMOUS",
  API_KEY = "API_KEY",
  ENTRA = "ENTRA",
  CLI = "CLI",
  SYSTEM = "SYSTEM",
}
registerEnumType(CallerKindKind, {
  name: "CallerKind",
  description: "How a caller was authenticated.",
  valuesConfig: { SYSTEM: { description: "Crosswatch itself (audit events it records, e.g. consent.revoked_detected); never a caller." } },
});

@ObjectType({ description: "The tenants a grant covers: all, or those listed by id or carrying one of the tags." })
export class TenantScope {
  @Field(() => Boolean)
  allTenants!: boolean;

  @Field(() => [ID])
  tenantIds!: string[];

  @Field(() => [String])
  tenantTags!: string[];
}

@ObjectType({ description: "A role over a set of tenants." })
export class Grant {
  @Field(() => CallerRoleKind)
  role!: CallerRoleKind;

  @Field(() => TenantScope)
  scope!: TenantScope;
}

@ObjectType({ description: "Who is calling, and what it may do." })
export class Viewer {
  @Field(() => CallerKindKind)
  kind!: CallerKindKind;

  @Field(() => String, { description: "API key id, the token's oid, or anonymous." })
  id!: string;

  @Field(() => String)
  name!: string;

  @Field(() => CallerRoleKind, { nullable: true, description: "The highest role among the grants." })
  role!: CallerRoleKind | null;

  @Field(() => [Grant])
  grants!: Grant[];
}

@ObjectType({ description: "An API key (its secret is never shown after creation)." })
export class ApiKey {
  @Field(() => ID)
  id!: string;

  @Field(() => String, { description: "The key's public prefix, to recognise it (cwk_<prefix>_…)." })
  prefix!: string;

  @Field(() => String)
  name!: string;

  @Field(() => CallerRoleKind)
  role!: CallerRoleKind;

  @Field(() => TenantScope)
  scope!: TenantScope;

  @Field(() => Boolean, { description: "Neither revoked nor expired." })
  active!: boolean;

  @Field(() => Date)
  createdAt!: Date;

  @Field(() => String)
  createdBy!: string;

  @Field(() => Date, { nullable: true })
  expiresAt!: Date | null;

  @Field(() => Date, { nullable: true })
  revokedAt!: Date | null;

  @Field(() => String, { nullable: true })
  revokedBy!: string | null;

  @Field(() => Date, { nullable: true, description: "Last use, to the minute." })
  lastUsedAt!: Date | null;
}

@ObjectType()
export class ApiKeyEdge {
  @Field(() => String)
  cursor!: string;

  @Field(() => ApiKey)
  node!: ApiKey;
}

@ObjectType()
export class ApiKeyConnection {
  @Field(() => [ApiKeyEdge])
  edges!: ApiKeyEdge[];

  @Field(() => PageInfo)
  pageInfo!: PageInfo;
}

@InputType()
export class CreateApiKeyInput {
  @Field(() => String, { description: "What the key is for, e.g. the integration's name (1 to 128 characters)." })
  name!: string;

  @Field(() => CallerRoleKind)
  role!: CallerRoleKind;

  @Field(() => Boolean, { nullable: true, description: "Every tenant, now and later. Otherwise give tenantIds and/or tenantTags." })
  allTenants?: boolean | null;

  @Field(() => [ID], { nullable: true })
  tenantIds?: string[] | null;

  @Field(() => [String], { nullable: true })
  tenantTags?: string[] | null;

  @Field(() => Date, { nullable: true, description: "When the key stops working; none by default." })
  expiresAt?: Date | null;

  @Field(() => Int, { nullable: true, description: "Alternative to expiresAt: days from now (1 to 3650)." })
  expiresInDays?: number | null;
}

@ObjectType({ description: "A new API key. `key` is shown this once: store it now." })
export class CreatedApiKey {
  @Field(() => String, { description: "The secret key, shown only in this response." })
  key!: string;

  @Field(() => ApiKey)
  apiKey!: ApiKey;
}

@ObjectType({ description: "One entry of the audit log: who did what to which tenant, and how it ended." })
export class AuditEvent {
  @Field(() => ID)
  id!: string;

  @Field(() => Date)
  at!: Date;

  @Field(() => CallerKindKind)
  actorKind!: CallerKindKind;

  @Field(() => String)
  actorId!: string;

  @Field(() => String)
  actorName!: string;

  @Field(() => String, { description: "e.g. tenant.register, incident.update, consent.granted, key.create." })
  action!: string;

  @Field(() => ID, { nullable: true })
  tenantId!: string | null;

  @Field(() => String, { nullable: true, description: "The object acted on besides the tenant: an incident id, a key id." })
  target!: string | null;

  @Field(() => String, { description: "SUCCESS, or the error code the action ended with." })
  outcome!: string;

  @Field(() => String, { description: "Details as a JSON object (never a secret)." })
  detail!: string;

  @Field(() => String, { nullable: true })
  requestId!: string | null;
}

@ObjectType()
export class AuditEventEdge {
  @Field(() => String)
  cursor!: string;

  @Field(() => AuditEvent)
  node!: AuditEvent;
}

@ObjectType()
export class AuditEventConnection {
  @Field(() => [AuditEventEdge])
  edges!: AuditEventEdge[];

  @Field(() => PageInfo)
  pageInfo!: PageInfo;
}

@InputType()
export class AuditEventFilter {
  @Field(() => ID, { nullable: true })
  tenantId?: string | null;

  @Field(() => String, { nullable: true })
  action?: string | null;

  @Field(() => String, { nullable: true })
  actorId?: string | null;

  @Field(() => String, { nullable: true })
  outcome?: string | null;

  @Field(() => Date, { nullable: true })
  since?: Date | null;

  @Field(() => Date, { nullable: true })
  until?: Date | null;
}
