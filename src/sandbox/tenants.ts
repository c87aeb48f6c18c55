import { Random } from "./random.js";
import { RESOURCES } from "./resources.js";

/** One emulated customer directory. Mutable: consent can be granted and revoked while the sandbox runs. */
export interface SandboxTenant {
  /** Entra tenant id (GUID). */
  id: string;
  /** Position in the seed order; named tenants come first. */
  index: number;
  displayName: string;
  /** Initial domain, e.g. `contoso.onmicrosoft.com`; token endpoints accept it in place of the GUID. */
  domain: string;
  tags: string[];
  /** `tenant_region_scope` in discovery documents. */
  region: "WW" | "NA" | "EU";
  /**
   * Which resource service principals exist in the tenant. A tenant without Microsoft Threat Protection
   * answers AADSTS500011 to token requests for `https://api.security.microsoft.com` ("reachable through Graph only").
   */
  resources: { defender: boolean; graph: boolean };
  /** The partner app's service principal in this tenant, and the app roles granted to it. */
  consent: {
    granted: boolean;
    /** App roles granted per resource; an empty list yields a token without a `roles` claim. */
    roles: { defender: string[]; graph: string[] };
    /** Unix ms of the last grant, or undefined. */
    grantedAt?: number;
  };
  /** Object id of the partner app's service principal in this tenant (`oid`/`sub` of its tokens). */
  servicePrincipalId: string;
  /** How many incidents the tenant starts with (generated lazily on first read). */
  incidentCount: number;
  /** Tenant creation time, Unix seconds (`xms_tcdt`). */
  createdUnix: number;
  /** What makes this tenant interesting, for the start-up banner and GET /_sandbox/tenants. */
  note?: string;
}

interface NamedTenant {
  name: string;
  domain: string;
  tags: string[];
  region: SandboxTenant["region"];
  incidents: number;
  /** Default: consented with full roles on both resources, both resources present. */
  kind?: "not-consented" | "no-incident-role" | "graph-only" | "no-hunting-role";
  note?: string;
}

/** About a dozen realistic customers (Microsoft's fictitious company names), each with a reason to exist. */
const NAMED_TENANTS: readonly NamedTenant[] = [
  { name: "Contoso Ltd", domain: "contoso", tags: ["enterprise", "eu", "24x7"], region: "EU", incidents: 240 },
  { name: "Fabrikam, Inc.", domain: "fabrikam", tags: ["enterprise", "na"], region: "NA", incidents: 180 },
  { name: "Northwind Traders", domain: "northwindtraders", tags: ["smb", "na"], region: "NA", incidents: 95 },
  { name: "Adventure Works Cycles", domain: "adventureworks", tags: ["enterprise", "na", "24x7"], region: "NA", incidents: 300, note: "largest tenant: 300 incidents, several pages" },
  { name: "Woodgrove Bank", domain: "woodgrovebank", tags: ["finance", "enterprise", "eu"], region: "EU", incidents: 210 },
  { name: "Wide World Importers", domain: "wideworldimporters", tags: ["mid", "eu"], region: "EU", incidents: 120 },
  { name: "Lamna Healthcare", domain: "lamnahealthcare", tags: ["health", "mid", "na"], region: "NA", incidents: 150 },
  { name: "Litware, Inc.", domain: "litwareinc", tags: ["smb", "na"], region: "NA", incidents: 60, kind: "no-hunting-role" },
  { name: "Trey Research", domain: "treyresearch", tags: ["smb", "eu"], region: "EU", incidents: 15 },
  { name: "Tailspin Toys", domain: "tailspintoys", tags: ["smb", "na"], region: "NA", incidents: 0, note: "no incidents at all" },
  { name: "Proseware, Inc.", domain: "proseware", tags: ["mid", "graph"], region: "WW", incidents: 75, kind: "graph-only", note: "reachable through Microsoft Graph only (no Microsoft Threat Protection principal)" },
  { name: "Alpine Ski House", domain: "alpineskihouse", tags: ["smb", "eu", "onboarding"], region: "EU", incidents: 40, kind: "not-consented", note: "admin has not consented yet (AADSTS700016)" },
  { name: "Coho Winery", domain: "cohowinery", tags: ["smb", "na"], region: "NA", incidents: 30, kind: "no-incident-role", note: "consented to an older app version without the incident roles (API answers 403)" },
];

export const NAMED_TENANT_COUNT = NAMED_TENANTS.length;

const HUNT_ROLES = [...RESOURCES.defender.huntRoles, ...RESOURCES.graph.huntRoles];

export interface TenantSeedOptions {
  seed: number;
  /** Total tenants; below the named count it keeps the first N named ones, above it adds generated customers. */
  tenantCount: number;
  /** When set, every tenant starts with this many incidents instead of its named count. */
  incidentsPerTenant?: number | undefined;
  /** Roles a consenting admin grants: what the partner app's registration requires. */
  requiredRoles: { defender: string[]; graph: string[] };
  /** Unix ms "now" at seeding. */
  now: number;
}

/** Builds the tenant list. Cheap even at 1,000 tenants: incidents are not generated here. */
export function seedTenants(options: TenantSeedOptions): SandboxTenant[] {
  const tenants: SandboxTenant[] = [];
  for (let index = 0; index < options.tenantCount; index++) {
    const rnd = Random.derive(options.seed, "tenant", index);
    const named = NAMED_TENANTS[index];
    const id = rnd.guid();
    const generatedNumber = String(index + 1).padStart(4, "0");
    const kind = named?.kind;
    const fullRoles = { defender: [...options.requiredRoles.defender], graph: [...options.requiredRoles.graph] };
    // Litware consented before the app asked for hunting: its incident roles only (hunting answers 403).
    const withoutHunting = (list: string[]) => list.filter((r) => !(HUNT_ROLES as readonly string[]).includes(r));
    const roles =
      kind === "no-incident-role"
        ? { defender: ["AdvancedHunting.Read.All"], graph: [] }
        : kind === "graph-only"
          ? { defender: [], graph: fullRoles.graph }
          : kind === "no-hunting-role"
            ? { defender: withoutHunting(fullRoles.defender), graph: withoutHunting(fullRoles.graph) }
            : fullRoles;
    const granted = kind !== "not-consented";
    const tenant: SandboxTenant = {
      id,
      index,
      displayName: named?.name ?? `Customer ${generatedNumber}`,
      domain: `${named?.domain ?? `customer${generatedNumber}`}.onmicrosoft.com`,
      tags: named ? [...named.tags] : [rnd.pick(["smb", "mid", "enterprise"]), rnd.pick(["na", "eu"]), "generated"],
      region: named?.region ?? rnd.pick(["NA", "EU", "WW"] as const),
      resources: { defender: kind !== "graph-only", graph: true },
      consent: granted
        ? { granted: true, roles, grantedAt: options.now - rnd.int(1, 400) * 86_400_000 }
        : { granted: false, roles: { defender: [], graph: [] } },
      servicePrincipalId: rnd.guid(),
      incidentCount: options.incidentsPerTenant ?? named?.incidents ?? rnd.int(0, 300),
      createdUnix: Math.floor(options.now / 1000) - rnd.int(400, 4000) * 86_400,
    };
    if (named?.note) tenant.note = named.note;
    tenants.push(tenant);
  }
  return tenants;
}

/** The roles a tenant granted on a resource, as a token's `roles` claim would list them. */
export function grantedRoles(tenant: SandboxTenant, resource: keyof typeof RESOURCES): string[] {
  if (!tenant.consent.granted || !tenant.resources[resource]) return [];
  return tenant.consent.roles[resource];
}

/** Tenants created at run time number from here, past any seed (at most 1,000 tenants), so none shares a seeded index. */
export const ADDED_TENANT_FIRST_INDEX = 1000;

/**
 * A customer directory created at run time (`POST /_sandbox/tenants`), to try onboarding under one's own
 * name: both resource principals present, no consent yet (token requests answer AADSTS700016 until an
 * admin consents), `incidents` incidents generated on first read like a seeded tenant's.
 *
 * @param input.domain the initial domain's first label; derived from the name when absent
 * @param taken whether an initial domain is in use already (a number is appended until it is free)
 */
export function newSandboxTenant(
  input: { displayName: string; domain?: string; tags?: string[]; incidents?: number; index: number; now: number },
  taken: (domain: string) => boolean,
): SandboxTenant {
  const base =
    input.domain ??
    (input.displayName
      .normalize("NFKD")
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "")
      .slice(0, 40) || "customer");
  let label = base;
  for (let n = 2; taken(`${label}.onmicrosoft.com`); n++) label = `${base}${n}`;
  return {
    id: crypto.randomUUID(),
    index: input.index,
    displayName: input.displayName,
    domain: `${label}.onmicrosoft.com`,
    tags: input.tags ?? ["onboarding"],
    region: "WW",
    resources: { defender: true, graph: true },
    consent: { granted: false, roles: { defender: [], graph: [] } },
    servicePrincipalId: crypto.randomUUID(),
    incidentCount: input.incidents ?? 25,
    createdUnix: Math.floor(input.now / 1000),
    note: "created through POST /_sandbox/tenants: not consented yet",
  };
}
