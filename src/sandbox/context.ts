import { randomBytes, randomUUID } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { CertificateCredential } from "./certs.js";
import { Random } from "./random.js";
import { SlidingWindowLimiter, type RateRule } from "./rate-limit.js";
import { seedTenants, type SandboxTenant } from "./tenants.js";

/** Every kind of call the sandbox counts. Incident endpoints are per backend. */
export const ENDPOINTS = [
  "token",
  "discovery",
  "jwks",
  "consent",
  "defender.list",
  "defender.get",
  "defender.patch",
  "graph.list",
  "graph.get",
  "graph.patch",
  "graph.comment",
  "graph.hunt",
  "defender.hunt",
] as const;
export type EndpointName = (typeof ENDPOINTS)[number];

/** Endpoint groups a fault can target besides single endpoint names (`incidents` excludes the hunting calls). */
export type EndpointSelector = EndpointName | "incidents" | "hunting" | "defender" | "graph" | "all";

export const FAULT_KINDS = [
  "throttle",
  "server-error",
  "hang",
  "slow-body",
  "malformed-json",
  "truncated-json",
  "reset",
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** A fault injected for one tenant (or every tenant, `*`). */
export interface FaultSpec {
  kind: FaultKind;
  /** Which calls it hits; default `["incidents"]` (every incident call on both backends). */
  endpoints?: EndpointSelector[];
  /** How many matching calls it affects before it clears itself; default: until cleared. */
  times?: number;
  /** `server-error`: the status (500, 502, 503 or 504; default 503). */
  status?: number;
  /** `throttle`: the Retry-After seconds (default 5). `server-error`: a Retry-After to send (default none). */
  retryAfterSeconds?: number;
  /** `slow-body`: how long the body takes to arrive, in ms (default 5000). */
  durationMs?: number;
}

/** Upstream latency: fixed, or log-normal with a median and a 95th percentile (a realistic spread). */
export type LatencySpec = { fixedMs: number } | { medianMs: number; p95Ms: number };

export interface RateLimitOptions {
  "defender.list": RateRule[];
  "defender.get": RateRule[];
  "defender.patch": RateRule[];
  /** Graph publishes no incident-specific number; 150/min per app per tenant is its security-API budget. */
  graph: RateRule[];
  /**
   * The Defender incidents API as a whole: list, get and update together, besides each one's own quota
   * (api-incident: 50/min and 1,500/h per app per tenant). Not an endpoint's bucket: `SHARED_QUOTA_OF`.
   */
  "defender.api": RateRule[];
  /** Legacy advanced hunting: 45/min and 1,500/h per tenant (reference 1.12, documented). */
  "defender.hunt": RateRule[];
  /**
   * Graph runHuntingQuery: Microsoft publishes only "CPU per tenant in 15-minute cycles", no call count.
   * ASSUMED the legacy numbers (same engine); configurable, and a `throttle` fault emulates the CPU quota.
   */
  "graph.hunt": RateRule[];
}

/** The quota each endpoint bucket shares with others, taken together with its own (all or none). */
export const SHARED_QUOTA_OF: Partial<Record<keyof RateLimitOptions, keyof RateLimitOptions>> = {
  "defender.list": "defender.api",
  "defender.get": "defender.api",
  "defender.patch": "defender.api",
};

export interface SandboxAppRegistration {
  clientId: string;
  displayName: string;
  /** Client secrets; `expiresAt` in Unix ms. A secret past it answers AADSTS7000222. */
  secrets: { id: string; value: string; expiresAt: number }[];
  certificates: CertificateCredential[];
  /** Redirect URIs registered on the app; see `allowLoopbackRedirects`. */
  redirectUris: string[];
  /** Accept any http(s) redirect URI on localhost/127.0.0.1/[::1] (ports change every run). Default true. */
  allowLoopbackRedirects: boolean;
  /** Application permissions the app requires, granted by an admin who consents. */
  requiredRoles: { defender: string[]; graph: string[] };
}

/** See `SandboxOptions.defenderDeterminationRule`. */
export type DefenderDeterminationRule = "truePositiveOnly" | "byClassification";

export interface SandboxOptions {
  /** Seed for every generated tenant, incident and latency draw. Default 42. */
  seed?: number;
  /** Number of tenants (1 to 1,000). Default: the 13 named tenants. */
  tenantCount?: number;
  /** Incidents per tenant (0 to 1,000), overriding the named tenants' own counts. */
  incidentsPerTenant?: number;
  /** Listen address, loopback only. Default 127.0.0.1. */
  host?: string;
  /** Port; default 0 (a free port). */
  port?: number;
  /** The partner app registered in the emulated cloud. Defaults: a fixed client id, a random secret. */
  app?: Partial<SandboxAppRegistration>;
  /** Access-token format: v1 (`iss` sts.windows.net, `appid`) is what Defender tokens look like. Default 1. */
  accessTokenVersion?: 1 | 2;
  /**
   * Issue opaque access tokens (random strings, not JWTs) — for every tenant (`true`) or the tenants listed
   * (ids) — as Microsoft warns its services' tokens may be. The sandbox's APIs still accept them: it maps
   * each to its claims internally. Also per tenant at run time: `PUT /_sandbox/tenants/{id}/token-format`.
   * Default false.
   */
  opaqueTokens?: boolean | string[];
  /** `expires_in` of issued tokens, seconds. Default 3599. */
  tokenLifetimeSeconds?: number;
  /** Error for a tenant without the app's service principal: 700016 (default) or 7000229. */
  notConsentedError?: 700016 | 7000229;
  /**
   * Which resources an admin consent must find in the tenant (else AADSTS650052, nothing granted): `scopes`
   * (default) those a v2 link names, every required one for v1 and `/adminconsent`; `required` every
   * required one for all flows. Which one Entra applies to a v2 `.default` link is unconfirmed.
   */
  consentResourceCheck?: "scopes" | "required";
  /** Upstream latency for Entra and incident calls (not control calls). Default none. */
  latency?: LatencySpec;
  rateLimits?: Partial<RateLimitOptions>;
  /** Defender list: `$top` when the client sends none (unconfirmed upstream; default 100). */
  defenderDefaultTop?: number;
  /** Defender list: whether full pages carry `@odata.nextLink` (unconfirmed upstream; default false). */
  defenderNextLink?: boolean;
  /** Graph list: page size when the client sends no `$top` (unconfirmed upstream; default 50). */
  graphDefaultTop?: number;
  /** Graph list: largest `$skip` accepted (unconfirmed for incidents; default none). */
  graphMaxSkip?: number;
  /**
   * Both lists: the largest `$top + $skip` that still returns a page. Graph documents 6,000 for security
   * alerts and deep `$skip` on its security APIs is reported to stop returning pages (Elastic integrations
   * #20234/#20348); for incidents, and for the Defender API, the number is unconfirmed. Default 6,000; null: none.
   */
  skipCeiling?: number | null;
  /**
   * What a list past `skipCeiling` answers: `400` (Graph's error shape, or the Defender one), or `empty`
   * (200 with no items and no next link: the reports say pages "stop"). Unconfirmed which; default `400`.
   */
  skipCeilingAnswer?: "400" | "empty";
  /** Graph list: `$orderby` is applied (`honour`, default) or parsed and ignored (`ignore`). Unconfirmed upstream. */
  graphOrderBy?: "honour" | "ignore";
  /**
   * Defender list: `$orderby` (on `lastUpdateTime`, `createdTime`) is applied (`honour`, default), parsed and
   * ignored (`ignore`: newest first by createdTime as always), or refused with 400 (`reject`). The API does
   * not list `$orderby` as supported (reference 1.3); its behaviour is unconfirmed.
   */
  defenderOrderBy?: "honour" | "ignore" | "reject";
  /**
   * Graph list: above this many incidents in a tenant, `$expand=alerts` on the LIST answers 500
   * InternalServerError, as reported of large tenants (~45k users, elastic/integrations#18144; the real
   * threshold is unknown, and the report blames incidents with many alerts). A single incident's
   * `$expand=alerts` keeps working (assumed). Default 1,000; null: never fails. Per tenant:
   * `setGraphExpandFailsAbove` (control API `PUT /_sandbox/tenants/{tenant}/graph-expand`).
   */
  graphExpandFailsAbove?: number | null;
  /** Entities: `sparse` omits null fields (real 2023+ responses), `full` lists every field (docs). */
  entitySerialization?: "sparse" | "full";
  /**
   * Defender PATCH: which reading of the update page's determination rule to enforce (reference 1.8,
   * "Unconfirmed items" 4). `truePositiveOnly` (default, the documented sentence): a determination only
   * together with `classification: TruePositive`, one of TruePositive's determinations. `byClassification`
   * (the page's per-classification lists): the determination must belong to the classification sent, or
   * else to the incident's current one.
   */
  defenderDeterminationRule?: DefenderDeterminationRule;
  /**
   * Hunting: the most rows one query returns; more are cut (documented 100,000 for the legacy API, assumed
   * for Graph). Default 100,000. Also at run time: `PUT /_sandbox/hunting {rowLimit}`.
   */
  huntingRowLimit?: number;
  /**
   * The legacy `POST /api/advancedhunting/run` answers 410 Gone (ASSUMED: the real retired answer is
   * undocumented), as it does anyway once the sandbox clock reaches 2027-02-01. Default false. Also at run
   * time: `PUT /_sandbox/hunting {legacyRetired}`.
   */
  legacyHuntingRetired?: boolean;
  /**
   * Hunting: how many tenants' generated tables are kept (least recently hunted dropped first). Default 64;
   * a hunt over more tenants than this rebuilds every tenant's tables each time (the bench raises it).
   */
  huntingTablesCached?: number;
  /**
   * The partner app also requires the hunting roles (AdvancedHunting.Read.All on Microsoft Threat Protection,
   * ThreatHunting.Read.All on Graph), so consents and the seeded consented tenants grant them, except Litware
   * (incident roles only: hunting answers 403) and Coho Winery (AdvancedHunting.Read.All only, as before).
   * Default false (tokens keep exactly the incident roles); ignored when `app.requiredRoles` is given.
   */
  huntingRoles?: boolean;
  /** Background activity: every `intervalMs`, create and update a few incidents. Default off. */
  activity?: { intervalMs: number; changesPerTick?: number };
}

/** Options after defaults; what every sandbox module reads. */
export type ResolvedSandboxOptions = Required<
  Omit<SandboxOptions, "app" | "latency" | "rateLimits" | "incidentsPerTenant" | "graphMaxSkip" | "skipCeiling" | "activity">
> & {
  incidentsPerTenant: number | undefined;
  graphMaxSkip: number | undefined;
  skipCeiling: number | null;
  latency: LatencySpec | undefined;
  rateLimits: RateLimitOptions;
  activity: { intervalMs: number; changesPerTick: number } | undefined;
};

export const DEFAULT_RATE_LIMITS: RateLimitOptions = {
  "defender.list": [
    { limit: 50, windowSeconds: 60 },
    { limit: 1500, windowSeconds: 3600 },
  ],
  "defender.get": [
    { limit: 100, windowSeconds: 60 },
    { limit: 1500, windowSeconds: 3600 },
  ],
  "defender.patch": [
    { limit: 50, windowSeconds: 60 },
    { limit: 1500, windowSeconds: 3600 },
  ],
  graph: [{ limit: 150, windowSeconds: 60 }],
  "defender.api": [
    { limit: 50, windowSeconds: 60 },
    { limit: 1500, windowSeconds: 3600 },
  ],
  "defender.hunt": [
    { limit: 45, windowSeconds: 60 },
    { limit: 1500, windowSeconds: 3600 },
  ],
  "graph.hunt": [
    { limit: 45, windowSeconds: 60 },
    { limit: 1500, windowSeconds: 3600 },
  ],
};

/** Both hunting APIs return at most this many rows (documented for legacy, assumed for Graph). */
export const DEFAULT_HUNTING_ROW_LIMIT = 100_000;

/** The day the legacy hunting API stops returning data (reference 1.12, MC1220762). */
export const LEGACY_HUNTING_RETIREMENT_MS = Date.parse("2027-02-01T00:00:00Z");

/** See `SandboxOptions.graphExpandFailsAbove`. */
export const DEFAULT_GRAPH_EXPAND_FAILS_ABOVE = 1000;

function checkRowLimit(value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`huntingRowLimit must be a positive integer, got ${value}`);
  return value;
}

function checkExpandThreshold(value: number | null): number | null {
  if (value !== null && (!Number.isInteger(value) || value < 0)) throw new RangeError(`graphExpandFailsAbove must be a non-negative integer or null, got ${value}`);
  return value;
}

/** The fixed client id of the sandbox's partner app, so links and logs are recognisable across runs. */
export const SANDBOX_CLIENT_ID = "5c1e7d2a-9b3f-4c6e-8a1d-0f2b4c6d8e10";

/** Per-tenant, per-endpoint call counts (every call received, whatever it was answered). */
export interface CounterSnapshot {
  total: number;
  byEndpoint: Partial<Record<EndpointName, number>>;
  /** Keyed by tenant id (or the raw tenant segment for unknown tenants, `common`, `organizations`). */
  byTenant: Record<string, Partial<Record<EndpointName | "throttled", number>>>;
  /** Calls answered 429 by the rate limiter or a throttle fault. */
  throttled: number;
}

/** What a route learns from `ctx.gate`: go on (with maybe a body fault to apply), or stop (already answered). */
export type GateResult = { proceed: true } | { proceed: false };

declare module "fastify" {
  interface FastifyRequest {
    /** A body fault the onSend hook applies to this response. */
    sandboxBodyFault?: FaultSpec;
  }
}

/**
 * All mutable state of one sandbox: options, clock, the app registration, tenants, counters, faults,
 * latency and rate limits. Routes receive it; nothing in the sandbox keeps state anywhere else, except
 * the incident store (created by the sandbox from this context).
 */
export class SandboxContext {
  readonly options: ResolvedSandboxOptions;
  readonly app: SandboxAppRegistration;
  readonly tenants: SandboxTenant[];
  private readonly tenantsById = new Map<string, SandboxTenant>();
  private readonly tenantsByDomain = new Map<string, SandboxTenant>();
  /** Base URL once listening, e.g. `https://localhost:41234`. */
  baseUrl = "";
  private clockOffsetMs = 0;
  private counters = new Map<string, Map<EndpointName | "throttled", number>>();
  private readonly endpointTotals = new Map<EndpointName, number>();
  private total = 0;
  private throttled = 0;
  private readonly faults = new Map<string, FaultSpec[]>();
  /** Hunting knobs that the control API changes at run time (`PUT /_sandbox/hunting`). */
  readonly hunting: { rowLimit: number; legacyRetired: boolean };
  /** Per-tenant `graphExpandFailsAbove` overrides (null: never fails). */
  private readonly expandThresholds = new Map<string, number | null>();
  latency: LatencySpec | undefined;
  private latencyRandom: Random;
  readonly limiter = new SlidingWindowLimiter();
  /** Sockets held open by `hang` faults, destroyed on close. */
  readonly hungReplies = new Set<FastifyReply>();
  /** Called after every change kept across restarts (consent, added tenants, clock, incidents): the state file. */
  onStateChange: () => void = () => {};
  /** Tenants whose consent changed since the seed (the state file keeps theirs). */
  readonly consentChangedIds = new Set<string>();
  /** Tenants created through the control API, in order (the state file keeps them whole). */
  readonly addedTenants: SandboxTenant[] = [];

  constructor(options: SandboxOptions = {}) {
    const seed = options.seed ?? 42;
    const tenantCount = options.tenantCount ?? 13;
    if (!Number.isInteger(tenantCount) || tenantCount < 1 || tenantCount > 1000) {
      throw new RangeError(`tenantCount must be an integer from 1 to 1000, got ${tenantCount}`);
    }
    const perTenant = options.incidentsPerTenant;
    if (perTenant !== undefined && (!Number.isInteger(perTenant) || perTenant < 0 || perTenant > 1000)) {
      throw new RangeError(`incidentsPerTenant must be an integer from 0 to 1000, got ${perTenant}`);
    }
    this.options = {
      seed,
      tenantCount,
      incidentsPerTenant: perTenant,
      host: options.host ?? "127.0.0.1",
      port: options.port ?? 0,
      accessTokenVersion: options.accessTokenVersion ?? 1,
      opaqueTokens: options.opaqueTokens ?? false,
      tokenLifetimeSeconds: options.tokenLifetimeSeconds ?? 3599,
      notConsentedError: options.notConsentedError ?? 700016,
      consentResourceCheck: options.consentResourceCheck ?? "scopes",
      latency: options.latency,
      rateLimits: { ...DEFAULT_RATE_LIMITS, ...options.rateLimits },
      defenderDefaultTop: options.defenderDefaultTop ?? 100,
      defenderNextLink: options.defenderNextLink ?? false,
      graphDefaultTop: options.graphDefaultTop ?? 50,
      graphMaxSkip: options.graphMaxSkip,
      skipCeiling: options.skipCeiling === undefined ? 6_000 : options.skipCeiling,
      skipCeilingAnswer: options.skipCeilingAnswer ?? "400",
      graphOrderBy: options.graphOrderBy ?? "honour",
      defenderOrderBy: options.defenderOrderBy ?? "honour",
      graphExpandFailsAbove: checkExpandThreshold(options.graphExpandFailsAbove === undefined ? DEFAULT_GRAPH_EXPAND_FAILS_ABOVE : options.graphExpandFailsAbove),
      entitySerialization: options.entitySerialization ?? "sparse",
      defenderDeterminationRule: options.defenderDeterminationRule ?? "truePositiveOnly",
      huntingRowLimit: checkRowLimit(options.huntingRowLimit ?? DEFAULT_HUNTING_ROW_LIMIT),
      legacyHuntingRetired: options.legacyHuntingRetired ?? false,
      huntingTablesCached: Math.max(1, Math.floor(options.huntingTablesCached ?? 64)),
      huntingRoles: options.huntingRoles ?? false,
      activity: options.activity
        ? { intervalMs: options.activity.intervalMs, changesPerTick: options.activity.changesPerTick ?? 3 }
        : undefined,
    };
    this.hunting = { rowLimit: this.options.huntingRowLimit, legacyRetired: this.options.legacyHuntingRetired };
    this.latency = options.latency;
    this.latencyRandom = Random.derive(seed, "latency");
    const now = Date.now();
    this.app = {
      clientId: options.app?.clientId ?? SANDBOX_CLIENT_ID,
      displayName: options.app?.displayName ?? "Crosswatch Partner App (sandbox)",
      secrets: options.app?.secrets ?? [
        { id: randomUUID(), value: generateClientSecret(), expiresAt: now + 730 * 86_400_000 },
      ],
      certificates: options.app?.certificates ?? [],
      redirectUris: options.app?.redirectUris ?? [],
      allowLoopbackRedirects: options.app?.allowLoopbackRedirects ?? true,
      requiredRoles: options.app?.requiredRoles ??
        (options.huntingRoles
          ? { defender: ["Incident.ReadWrite.All", "AdvancedHunting.Read.All"], graph: ["SecurityIncident.ReadWrite.All", "ThreatHunting.Read.All"] }
          : { defender: ["Incident.ReadWrite.All"], graph: ["SecurityIncident.ReadWrite.All"] }),
    };
    this.tenants = seedTenants({
      seed,
      tenantCount,
      incidentsPerTenant: perTenant,
      requiredRoles: this.app.requiredRoles,
      now,
    });
    for (const tenant of this.tenants) {
      this.tenantsById.set(tenant.id, tenant);
      this.tenantsByDomain.set(tenant.domain, tenant);
    }
  }

  /** The sandbox clock in Unix ms: real time plus whatever the control API advanced it by. */
  now(): number {
    return Date.now() + this.clockOffsetMs;
  }

  advanceClock(ms: number): void {
    this.clockOffsetMs += ms;
    this.onStateChange();
  }

  /** How far the clock was advanced, ms (kept across restarts). */
  get clockOffset(): number {
    return this.clockOffsetMs;
  }

  /** Call after changing `tenant.consent`: the change is kept across restarts. */
  noteConsentChanged(tenant: SandboxTenant): void {
    this.consentChangedIds.add(tenant.id);
    this.onStateChange();
  }

  /** Adds a tenant created at run time (`newSandboxTenant`); its id and domain must be new. */
  addTenant(tenant: SandboxTenant): void {
    if (this.tenantsById.has(tenant.id) || this.tenantsByDomain.has(tenant.domain)) {
      throw new Error(`a sandbox tenant with id ${tenant.id} or domain ${tenant.domain} exists`);
    }
    this.tenants.push(tenant);
    this.addedTenants.push(tenant);
    this.tenantsById.set(tenant.id, tenant);
    this.tenantsByDomain.set(tenant.domain, tenant);
    this.onStateChange();
  }

  /**
   * Applies a saved state over the seed, at start (before any call): the clock offset, the added tenants,
   * then the consents (of seeded and added tenants alike; ids the seed no longer has are ignored).
   */
  restoreState(state: { clockOffsetMs: number; addedTenants: SandboxTenant[]; consents: Record<string, SandboxTenant["consent"]> }): void {
    this.clockOffsetMs = state.clockOffsetMs;
    for (const tenant of state.addedTenants) {
      if (!this.tenantsById.has(tenant.id) && !this.tenantsByDomain.has(tenant.domain)) this.addTenant(tenant);
    }
    for (const [id, consent] of Object.entries(state.consents)) {
      const tenant = this.tenantsById.get(id);
      if (!tenant) continue;
      tenant.consent = consent;
      this.consentChangedIds.add(id);
    }
  }

  /** Finds a tenant by GUID (any case) or by initial domain. */
  findTenant(idOrDomain: string): SandboxTenant | undefined {
    const key = idOrDomain.toLowerCase();
    return this.tenantsById.get(key) ?? this.tenantsByDomain.get(key);
  }

  /** Counts one call. `tenantKey` is the tenant id, or the raw tenant segment when it names no tenant. */
  count(tenantKey: string, endpoint: EndpointName): void {
    this.total++;
    this.endpointTotals.set(endpoint, (this.endpointTotals.get(endpoint) ?? 0) + 1);
    const perTenant = this.counters.get(tenantKey) ?? new Map();
    perTenant.set(endpoint, (perTenant.get(endpoint) ?? 0) + 1);
    this.counters.set(tenantKey, perTenant);
  }

  countThrottled(tenantKey: string): void {
    this.throttled++;
    const perTenant = this.counters.get(tenantKey) ?? new Map();
    perTenant.set("throttled", (perTenant.get("throttled") ?? 0) + 1);
    this.counters.set(tenantKey, perTenant);
  }

  counterSnapshot(): CounterSnapshot {
    const byTenant: CounterSnapshot["byTenant"] = {};
    for (const [tenant, counts] of this.counters) byTenant[tenant] = Object.fromEntries(counts);
    return {
      total: this.total,
      byEndpoint: Object.fromEntries(this.endpointTotals),
      byTenant,
      throttled: this.throttled,
    };
  }

  /** Zeroes the counters; with `rateLimits`, also forgets every call the rate limiter remembers. */
  resetCounters(rateLimits = false): void {
    this.counters = new Map();
    this.endpointTotals.clear();
    this.total = 0;
    this.throttled = 0;
    if (rateLimits) this.limiter.reset();
  }

  /** Changes the hunting knobs; a field left undefined keeps its value. */
  setHunting(change: { rowLimit?: number | undefined; legacyRetired?: boolean | undefined }): void {
    if (change.rowLimit !== undefined) this.hunting.rowLimit = checkRowLimit(change.rowLimit);
    if (change.legacyRetired !== undefined) this.hunting.legacyRetired = change.legacyRetired;
  }

  /** Whether the legacy hunting API is retired: the knob, or the sandbox clock past the retirement date. */
  legacyHuntingRetired(): boolean {
    return this.hunting.legacyRetired || this.now() >= LEGACY_HUNTING_RETIREMENT_MS;
  }

  /** Above how many incidents the tenant's Graph list fails with `$expand=alerts`; null: never. */
  graphExpandFailsAbove(tenantId: string): number | null {
    const own = this.expandThresholds.get(tenantId.toLowerCase());
    return own === undefined ? this.options.graphExpandFailsAbove : own;
  }

  /** Sets a tenant's threshold (null: never fails); undefined returns it to the sandbox's option. */
  setGraphExpandFailsAbove(tenantId: string, threshold: number | null | undefined): void {
    if (threshold === undefined) this.expandThresholds.delete(tenantId.toLowerCase());
    else this.expandThresholds.set(tenantId.toLowerCase(), checkExpandThreshold(threshold));
  }

  setFault(tenantKey: string, fault: FaultSpec): void {
    const list = this.faults.get(tenantKey) ?? [];
    list.push({ ...fault });
    this.faults.set(tenantKey, list);
  }

  clearFaults(tenantKey?: string): void {
    if (tenantKey === undefined) this.faults.clear();
    else this.faults.delete(tenantKey);
  }

  listFaults(): Record<string, FaultSpec[]> {
    return Object.fromEntries(this.faults);
  }

  /** Takes (and uses up one of) the first fault that matches this call, for this tenant or for `*`. */
  private takeFault(tenantKey: string, endpoint: EndpointName): FaultSpec | undefined {
    for (const key of [tenantKey, "*"]) {
      const list = this.faults.get(key);
      if (!list) continue;
      const index = list.findIndex((f) => selectorMatches(f.endpoints ?? ["incidents"], endpoint));
      if (index < 0) continue;
      const fault = list[index]!;
      if (fault.times !== undefined) {
        fault.times -= 1;
        if (fault.times <= 0) list.splice(index, 1);
        if (list.length === 0) this.faults.delete(key);
      }
      return fault;
    }
    return undefined;
  }

  /** Draws one latency in ms from the current latency spec. */
  drawLatency(): number {
    const spec = this.latency;
    if (!spec) return 0;
    if ("fixedMs" in spec) return spec.fixedMs;
    // Log-normal: median = e^mu, p95 = e^(mu + 1.645 sigma).
    const mu = Math.log(Math.max(spec.medianMs, 0.001));
    const sigma = Math.max(0, Math.log(Math.max(spec.p95Ms, spec.medianMs) / Math.max(spec.medianMs, 0.001)) / 1.645);
    return Math.exp(mu + sigma * this.latencyRandom.normal());
  }

  /**
   * The common entry of every emulated call: counts it, applies latency, then a fault or a rate limit.
   * Returns `{ proceed: false }` when the call has already been answered (429, 5xx, hang, reset).
   * Body faults (slow, malformed, truncated) are left on the request for the onSend hook.
   *
   * @param rateBucket the rate-limit bucket and the app/tenant key it is charged to, when the endpoint is limited
   */
  async gate(
    request: FastifyRequest,
    reply: FastifyReply,
    call: {
      tenantKey: string;
      endpoint: EndpointName;
      rate?: { bucket: keyof RateLimitOptions; appId: string };
      /** Writes a throttling or server error in the endpoint's own error format. */
      errorBody: (status: number, code: string, message: string) => unknown;
    },
  ): Promise<GateResult> {
    this.count(call.tenantKey, call.endpoint);
    const delay = this.drawLatency();
    if (delay > 0) await sleep(delay);
    const fault = this.takeFault(call.tenantKey, call.endpoint);
    if (fault) {
      switch (fault.kind) {
        case "throttle": {
          const seconds = fault.retryAfterSeconds ?? 5;
          this.countThrottled(call.tenantKey);
          await reply
            .code(429)
            .header("retry-after", String(seconds))
            .send(call.errorBody(429, "TooManyRequests", throttleMessage(seconds)));
          return { proceed: false };
        }
        case "server-error": {
          const status = fault.status ?? 503;
          // Graph documents Retry-After on 503 as on 429; given only when the fault asks for it.
          if (fault.retryAfterSeconds !== undefined) void reply.header("retry-after", String(fault.retryAfterSeconds));
          await reply
            .code(status)
            .send(
              call.errorBody(
                status,
                status === 503 ? "ServiceUnavailable" : "InternalServerError",
                status === 503 ? "The service is temporarily unavailable." : "An internal server error occurred.",
              ),
            );
          return { proceed: false };
        }
        case "hang":
          // Never send headers; the socket stays open until the client gives up or the sandbox closes.
          reply.hijack();
          this.hungReplies.add(reply);
          request.raw.socket.once("close", () => this.hungReplies.delete(reply));
          return { proceed: false };
        case "reset":
          reply.hijack();
          request.raw.socket.destroy();
          return { proceed: false };
        case "slow-body":
        case "malformed-json":
        case "truncated-json":
          request.sandboxBodyFault = fault;
          break;
      }
    }
    if (call.rate) {
      const quotas = [call.rate.bucket, SHARED_QUOTA_OF[call.rate.bucket]].filter((q): q is keyof RateLimitOptions => q !== undefined);
      const decision = this.limiter.takeAll(
        quotas.map((quota) => ({ key: `${call.rate!.appId}|${call.tenantKey}|${quota}`, rules: this.options.rateLimits[quota] })),
        this.now(),
      );
      if (!decision.ok) {
        this.countThrottled(call.tenantKey);
        await reply
          .code(429)
          .header("retry-after", String(decision.retryAfterSeconds))
          .send(
            call.errorBody(
              429,
              "TooManyRequests",
              `API calls quota exceeded! Maximum allowed ${decision.rule.limit} per ${formatWindow(decision.rule.windowSeconds)}. Next call is allowed in ${decision.retryAfterSeconds} seconds.`,
            ),
          );
        return { proceed: false };
      }
    }
    return { proceed: true };
  }
}

function throttleMessage(seconds: number): string {
  return `API calls quota exceeded! Next call is allowed in ${seconds} seconds.`;
}

function formatWindow(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600} hour(s)`;
  if (seconds % 60 === 0) return `${seconds / 60} minute(s)`;
  return `${seconds} second(s)`;
}

export function selectorMatches(selectors: readonly EndpointSelector[], endpoint: EndpointName): boolean {
  return selectors.some(
    (s) =>
      s === endpoint ||
      s === "all" ||
      (s === "incidents" && (endpoint.startsWith("defender.") || endpoint.startsWith("graph.")) && !endpoint.endsWith(".hunt")) ||
      (s === "hunting" && endpoint.endsWith(".hunt")) ||
      (s === "defender" && endpoint.startsWith("defender.")) ||
      (s === "graph" && endpoint.startsWith("graph.")),
  );
}

/** A client secret shaped like Entra's (40 characters, with a `~` at position 4 as the portal's are). */
export function generateClientSecret(): string {
  const body = randomBytes(30).toString("base64url").replace(/[-_]/g, "x").slice(0, 36);
  return `${body.slice(0, 3)}8Q~${body}`.slice(0, 40);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
