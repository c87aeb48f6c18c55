import "reflect-metadata";
import { ArgsType, Directive, Field, ID, InputType, Int, ObjectType, registerEnumType } from "type-graphql";
import {
  CLASSIFICATIONS,
  DETERMINATIONS,
  INCIDENT_STATUSES,
  SEVERITIES,
  type Classification,
  type Determination,
  type IncidentStatus,
  type Severity,
} from "../defender/incident.js";
import { PageInfo } from "./page-info.type.js";
import { IncidentsBackendKind } from "./server-info.type.js";
import { TenantError } from "./token.type.js";

/** A TypeScript enum object from a domain value list, so GraphQL enums and domain values are one list. */
function enumOf<T extends string>(values: readonly T[]): { [K in T]: K } {
  return Object.fromEntries(values.map((v) => [v, v])) as { [K in T]: K };
}

export const SeverityEnum = enumOf<Severity>(SEVERITIES);
registerEnumType(SeverityEnum, { name: "Severity", description: "Incident severity; UNKNOWN is the legacy UnSpecified." });
export const IncidentStatusEnum = enumOf<IncidentStatus>(INCIDENT_STATUSES);
registerEnumType(IncidentStatusEnum, { name: "IncidentStatus" });
export const ClassificationEnum = enumOf<Classification>(CLASSIFICATIONS);
registerEnumType(ClassificationEnum, {
  name: "Classification",
  description: "Graph alertClassification / Defender API classification. A Defender API tenant cannot be set to UNKNOWN.",
});
export const DeterminationEnum = enumOf<Determination>(DETERMINATIONS);
registerEnumType(DeterminationEnum, {
  name: "Determination",
  description:
    "One value for both backends, written as each one's own member (Graph alertDetermination / Defender API). A Defender " +
    "API tenant takes a determination only together with classification TRUE_POSITIVE, and then only MULTI_STAGED_ATTACK, " +
    "MALICIOUS_USER_ACTIVITY, COMPROMISED_ACCOUNT, MALWARE, PHISHING, UNWANTED_SOFTWARE or OTHER.",
  valuesConfig: {
    UNKNOWN: { description: "A value Crosswatch could not read; never written." },
    NOT_AVAILABLE: { description: "Nothing determined yet (Graph unknown, Defender NotAvailable); writable on Graph only." },
    COMPROMISED_ACCOUNT: { description: "Graph compromisedAccount, Defender CompromisedAccount (also read: CompromisedUser)." },
    NOT_MALICIOUS: { description: "Graph notMalicious, Defender Clean." },
    NOT_ENOUGH_DATA_TO_VALIDATE: { description: "Graph notEnoughDataToValidate, Defender NoEnoughDataToValidate (also read: InsufficientData)." },
    CONFIRMED_USER_ACTIVITY: { description: "Graph confirmedActivity, Defender ConfirmedActivity (also read: ConfirmedUserActivity)." },
  },
});

export enum IncidentOrderField {
  LAST_UPDATE_TIME = "LAST_UPDATE_TIME",
  CREATED_TIME = "CREATED_TIME",
  SEVERITY = "SEVERITY",
}
registerEnumType(IncidentOrderField, { name: "IncidentOrderField" });

export enum OrderDirection {
  ASC = "ASC",
  DESC = "DESC",
}
registerEnumType(OrderDirection, { name: "OrderDirection" });

export enum SyncStateEnum {
  FRESH = "FRESH",
  STALE = "STALE",
  SYNCING = "SYNCING",
  FAILING = "FAILING",
  NEVER_SYNCED = "NEVER_SYNCED",
}
registerEnumType(SyncStateEnum, {
  name: "SyncState",
  description: "A tenant's mirror: FRESH (synced within INCIDENT_FRESHNESS_SECONDS), STALE (older; a sync is queued), SYNCING (first load under way), FAILING (the last sync failed: see error), NEVER_SYNCED.",
});

@ObjectType()
export class IncidentComment {
  @Field(() => String)
  comment!: string;

  @Field(() => String, { nullable: true })
  createdBy!: string | null;

  @Field(() => Date, { nullable: true })
  createdTime!: Date | null;
}

@ObjectType()
export class IncidentDevice {
  @Field(() => String, { nullable: true, description: "Defender device id (mdatpDeviceId)." })
  deviceId!: string | null;

  @Field(() => String, { nullable: true })
  aadDeviceId!: string | null;

  @Field(() => String, { nullable: true })
  dnsName!: string | null;

  @Field(() => String, { nullable: true })
  osPlatform!: string | null;

  @Field(() => Int, { nullable: true })
  osBuild!: number | null;

  @Field(() => String, { nullable: true })
  riskScore!: string | null;

  @Field(() => String, { nullable: true })
  healthStatus!: string | null;

  @Field(() => Date, { nullable: true })
  firstSeen!: Date | null;
}

@ObjectType()
export class EntityProperty {
  @Field(() => String)
  name!: string;

  @Field(() => String)
  value!: string;
}

@ObjectType({ description: "An alert entity (legacy) or evidence item (Graph)." })
export class IncidentEntity {
  @Field(() => String, { description: "User, Ip, Url, File, Process, Mailbox, … (legacy entityType or Graph evidence type)." })
  type!: string;

  @Field(() => String, { nullable: true })
  verdict!: string | null;

  @Field(() => String, { nullable: true })
  remediationStatus!: string | null;

  @Field(() => String, { nullable: true, description: "The identifying value: UPN, IP address, URL, file name, …" })
  displayValue!: string | null;

  @Field(() => [EntityProperty])
  properties!: EntityProperty[];
}

@ObjectType()
export class IncidentAlert {
  @Field(() => ID)
  alertId!: string;

  @Field(() => String, { nullable: true })
  title!: string | null;

  @Field(() => String, { nullable: true })
  description!: string | null;

  @Field(() => SeverityEnum)
  severity!: Severity;

  @Field(() => String, { nullable: true })
  status!: string | null;

  @Field(() => String, { nullable: true })
  category!: string | null;

  @Field(() => String, { nullable: true })
  serviceSource!: string | null;

  @Field(() => String, { nullable: true })
  detectionSource!: string | null;

  @Field(() => [String])
  mitreTechniques!: string[];

  @Field(() => Date, { nullable: true })
  createdTime!: Date | null;

  @Field(() => Date, { nullable: true })
  lastUpdateTime!: Date | null;

  @Field(() => Date, { nullable: true })
  resolvedTime!: Date | null;

  @Field(() => Date, { nullable: true })
  firstActivity!: Date | null;

  @Field(() => Date, { nullable: true })
  lastActivity!: Date | null;

  @Field(() => [IncidentDevice])
  devices!: IncidentDevice[];

  @Field(() => [IncidentEntity])
  entities!: IncidentEntity[];
}

// Federation entity: other subgraphs extend an incident by its tenant and incident id together.
@Directive('@key(fields: "tenantId incidentId")')
@ObjectType({ description: "A Microsoft 365 Defender incident of one customer tenant, from either backend." })
export class Incident {
  @Field(() => ID)
  tenantId!: string;

  @Field(() => ID, { description: "Legacy numeric incidentId or Graph id, as an ID." })
  incidentId!: string;

  @Field(() => IncidentsBackendKind, { description: "The backend this incident was read from." })
  backend!: IncidentsBackendKind;

  @Field(() => String)
  incidentName!: string;

  @Field(() => SeverityEnum)
  severity!: Severity;

  @Field(() => IncidentStatusEnum)
  status!: IncidentStatus;

  @Field(() => ClassificationEnum)
  classification!: Classification;

  @Field(() => DeterminationEnum)
  determination!: Determination;

  @Field(() => String, { nullable: true })
  assignedTo!: string | null;

  @Field(() => Date)
  createdTime!: Date;

  @Field(() => Date)
  lastUpdateTime!: Date;

  @Field(() => [String])
  tags!: string[];

  @Field(() => [String], { description: "Tags the service sets (Graph systemTags)." })
  systemTags!: string[];

  @Field(() => String, { nullable: true })
  description!: string | null;

  @Field(() => [IncidentComment])
  comments!: IncidentComment[];

  @Field(() => [IncidentAlert], {
    nullable: true,
    description:
      "The incident's alerts. On Graph tenants they are read per incident when a query selects them (one upstream " +
      "call per incident not read before, within the tenant's rate budget), then cached with the incident; null, " +
      "with an error at this path, when they could not be read.",
  })
  alerts!: IncidentAlert[] | null;

  @Field(() => String, { nullable: true, description: "Link to the incident in the Microsoft Defender portal." })
  incidentUri!: string | null;

  @Field(() => ID, { nullable: true, description: "The incident this one was merged into (status REDIRECTED)." })
  redirectIncidentId!: string | null;
}

@ObjectType()
export class IncidentEdge {
  @Field(() => String)
  cursor!: string;

  @Field(() => Incident)
  node!: Incident;
}

@ObjectType({ description: "How one tenant's part of a query went." })
export class TenantOutcome {
  @Field(() => ID)
  tenantId!: string;

  @Field(() => Boolean)
  ok!: boolean;

  @Field(() => Boolean, { description: "Served from Crosswatch's cache without an upstream call." })
  fromCache!: boolean;

  @Field(() => Date, { nullable: true, description: "When this tenant's data was last fetched from upstream." })
  fetchedAt!: Date | null;

  @Field(() => Int)
  durationMs!: number;

  @Field(() => Boolean, {
    description:
      "False while the tenant's first listing is still under way across queries (a large tenant), or when nothing could be read: the incidents returned are those read so far, and the next query goes on from where this one stopped.",
  })
  complete!: boolean;

  @Field(() => TenantError, { nullable: true })
  error!: TenantError | null;

  @Field(() => SyncStateEnum, {
    nullable: true,
    description: "Where the tenant's background sync stands; null for a tenant not looked at (TENANT_FORBIDDEN).",
  })
  syncState!: SyncStateEnum | null;

  @Field(() => Int, { nullable: true, description: "Incidents Crosswatch's mirror holds for the tenant (within INCIDENT_WINDOW_DAYS)." })
  incidentsMirrored!: number | null;
}

@ObjectType()
export class IncidentConnection {
  @Field(() => [IncidentEdge])
  edges!: IncidentEdge[];

  @Field(() => PageInfo)
  pageInfo!: PageInfo;

  @Field(() => Int, { description: "Incidents matching the filter in the tenants that answered." })
  totalCount!: number;

  @Field(() => [TenantOutcome], { description: "One per tenant asked for: ok, or why not." })
  tenantOutcomes!: TenantOutcome[];
}

@ObjectType({ description: "Incident counts of one tenant." })
export class IncidentSummary {
  @Field(() => Int)
  total!: number;

  @Field(() => [SeverityCount])
  bySeverity!: SeverityCount[];

  @Field(() => [StatusCount])
  byStatus!: StatusCount[];

  @Field(() => TenantOutcome)
  outcome!: TenantOutcome;
}

@ObjectType()
export class SeverityCount {
  @Field(() => SeverityEnum)
  severity!: Severity;

  @Field(() => Int)
  count!: number;
}

@ObjectType()
export class StatusCount {
  @Field(() => IncidentStatusEnum)
  status!: IncidentStatus;

  @Field(() => Int)
  count!: number;
}

@InputType()
export class IncidentFilter {
  @Field(() => [SeverityEnum], { nullable: true })
  severity?: Severity[];

  @Field(() => [IncidentStatusEnum], { nullable: true })
  status?: IncidentStatus[];

  @Field(() => [ClassificationEnum], { nullable: true })
  classification?: Classification[];

  @Field(() => String, {
    nullable: true,
    description: "Exact owner (case-insensitive; at most 256 characters). Not blank, and not with unassigned: true.",
  })
  assignedTo?: string;

  @Field(() => Boolean, { nullable: true, description: "true: only unassigned incidents; false or null: no constraint." })
  unassigned?: boolean;

  @Field(() => Date, { nullable: true })
  createdAfter?: Date;

  @Field(() => Date, { nullable: true })
  createdBefore?: Date;

  @Field(() => Date, { nullable: true })
  updatedAfter?: Date;

  @Field(() => Date, { nullable: true })
  updatedBefore?: Date;

  @Field(() => String, { nullable: true, description: "Part of the incident name, or an exact incident id (at most 200 characters)." })
  search?: string;
}

@InputType()
export class IncidentOrder {
  @Field(() => IncidentOrderField, { defaultValue: IncidentOrderField.LAST_UPDATE_TIME })
  field!: IncidentOrderField;

  @Field(() => OrderDirection, { defaultValue: OrderDirection.DESC })
  direction!: OrderDirection;
}

@InputType({ description: "Fields to change on an incident; omitted fields keep their values." })
export class UpdateIncidentInput {
  @Field(() => IncidentStatusEnum, { nullable: true, description: "ACTIVE, IN_PROGRESS, RESOLVED or REDIRECTED." })
  status?: IncidentStatus;

  @Field(() => String, { nullable: true, description: "New owner (at most 256 characters); an empty string unassigns." })
  assignedTo?: string;

  @Field(() => ClassificationEnum, {
    nullable: true,
    description: "Defender API tenants: TRUE_POSITIVE, INFORMATIONAL_EXPECTED_ACTIVITY or FALSE_POSITIVE.",
  })
  classification?: Classification;

  @Field(() => DeterminationEnum, {
    nullable: true,
    description: "Defender API tenants: only with classification TRUE_POSITIVE in the same update (see Determination). Never UNKNOWN.",
  })
  determination?: Determination;

  @Field(() => [String], { nullable: true, description: "Replaces the incident's tags (at most 64, each 1 to 128 characters)." })
  tags?: string[];

  @Field(() => String, { nullable: true, description: "Appended as a new comment (1 to 4,000 characters)." })
  comment?: string;
}

/** Filter, order and page of an incident connection (shared by `incidents` and `Tenant.incidents`). */
@ArgsType()
export class IncidentPageArgs {
  @Field(() => IncidentFilter, { nullable: true })
  filter?: IncidentFilter;

  @Field(() => IncidentOrder, { nullable: true })
  orderBy?: IncidentOrder;

  @Field(() => Int, { nullable: true, defaultValue: 50, description: "At most 500." })
  first!: number;

  @Field(() => String, {
    nullable: true,
    description: "endCursor of the previous page of the same query (same field, tenants, filter and orderBy).",
  })
  after?: string;

  @Field(() => Int, {
    nullable: true,
    description:
      "The oldest data you accept, in seconds: tenants synced longer ago are synced first (front of the queue) and waited for, up to the operation's deadline. Omitted: the mirror as it is, with no wait (a tenant never synced is still waited for until its first page is in). 0 to 86400.",
  })
  maxAgeSeconds?: number | null;
}
