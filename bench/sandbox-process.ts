import type { LatencySpec, RateLimitOptions } from "../src/sandbox/context.js";
import { RESOURCES } from "../src/sandbox/resources.js";
import { startSandbox, type Sandbox } from "../src/sandbox/sandbox.js";
import { ADDED_TENANT_FIRST_INDEX, newSandboxTenant, type SandboxTenant } from "../src/sandbox/tenants.js";
import { serveParent } from "./rpc.js";

/**
 * The bench's sandbox, in a process of its own: up to 1,000 tenants (the first N serve the N-tenant
 * cases), a fixed number of incidents per tenant, latency set per phase by the parent.
 *
 * Rate limits are raised far above Microsoft's (50 list calls a minute per tenant): the bench lists
 * every tenant dozens of times a minute, and a 429 would measure the limiter, not the path.
 */
const UNLIMITED = [{ limit: 1_000_000, windowSeconds: 60 }];
const RATE_LIMITS: RateLimitOptions = {
  "defender.list": UNLIMITED,
  "defender.get": UNLIMITED,
  "defender.patch": UNLIMITED,
  graph: UNLIMITED,
  "defender.api": UNLIMITED,
  "defender.hunt": UNLIMITED,
  "graph.hunt": UNLIMITED,
};

/** What the parent learns about the started sandbox (secrets stay between the bench's processes). */
export interface SandboxInfo {
  url: string;
  caCertPem: string;
  clientId: string;
  clientSecret: string;
  tenants: {
    id: string;
    displayName: string;
    tags: string[];
    /** Read through the Defender API (else Graph only). */
    defender: boolean;
    granted: boolean;
    /** Consented with the incident role of its backend: the tenants a query can read. */
    readable: boolean;
    /**
     * Consented with Graph's ThreatHunting.Read.All: the tenants a hunt on the default (Graph) backend
     * reaches. Only with `huntingRoles` (bench/hunting.ts); false otherwise.
     */
    canHunt: boolean;
  }[];
}

let sandbox: Sandbox | undefined;
let required: { defender: string[]; graph: string[] } = { defender: [], graph: [] };
/** List calls received per tracked tenant, in order: when (Unix ms) and which URL (bench: no page read twice). */
const listUrls = new Map<string, { at: number; url: string }[]>();
const running = (): Sandbox => {
  if (!sandbox) throw new Error("the sandbox is not started");
  return sandbox;
};

/** What the parent learns of one tenant. */
function infoOf(t: SandboxTenant): SandboxInfo["tenants"][number] {
  const resource = t.resources.defender ? "defender" : "graph";
  return {
    id: t.id,
    displayName: t.displayName,
    tags: t.tags,
    defender: t.resources.defender,
    granted: t.consent.granted,
    readable: t.consent.granted && required[resource].every((role) => t.consent.roles[resource].includes(role)),
    canHunt: t.consent.granted && t.resources.graph && RESOURCES.graph.huntRoles.every((role) => t.consent.roles.graph.includes(role)),
  };
}

serveParent(
  {
    /** `huntingRoles`: the app also requires the hunting roles, so the consented tenants grant them (bench/hunting.ts). */
    async start(params: { tenantCount: number; incidentsPerTenant: number; seed: number; huntingRoles?: boolean }): Promise<SandboxInfo> {
      sandbox = await startSandbox({ ...params, rateLimits: RATE_LIMITS, huntingTablesCached: params.tenantCount });
      // Every list call of a tracked tenant: its URL (the gate sees each call once, before latency and faults).
      const ctx = sandbox.context;
      const gate = ctx.gate.bind(ctx);
      ctx.gate = (request, reply, call) => {
        if (call.endpoint === "defender.list" || call.endpoint === "graph.list") listUrls.get(call.tenantKey)?.push({ at: Date.now(), url: request.url });
        return gate(request, reply, call);
      };
      // Incident readability is judged by the incident roles alone, whether or not the hunting ones are required.
      const huntRoles: string[] = [...RESOURCES.defender.huntRoles, ...RESOURCES.graph.huntRoles];
      required = {
        defender: sandbox.context.app.requiredRoles.defender.filter((role) => !huntRoles.includes(role)),
        graph: sandbox.context.app.requiredRoles.graph.filter((role) => !huntRoles.includes(role)),
      };
      return {
        url: sandbox.url,
        caCertPem: sandbox.caCertPem,
        clientId: sandbox.clientId,
        clientSecret: sandbox.clientSecret,
        tenants: sandbox.tenants.map(infoOf),
      };
    },
    /** Generates every tenant's incidents now (the sandbox does it lazily, on a tenant's first read). */
    prime() {
      const t0 = performance.now();
      for (const tenant of running().tenants) running().incidents.forTenant(tenant.id);
      return { ms: performance.now() - t0 };
    },
    /**
     * Adds a consented Defender tenant of `incidents` incidents (past the 1,000 incidents the options and the
     * control API allow), generates them now, and records the URL of every list call it receives.
     */
    addTenant(params: { displayName: string; incidents: number }) {
      const ctx = running().context;
      const tenant = newSandboxTenant(
        { displayName: params.displayName, incidents: params.incidents, tags: ["bench-large"], index: ADDED_TENANT_FIRST_INDEX + ctx.addedTenants.length, now: ctx.now() },
        (candidate) => ctx.findTenant(candidate) !== undefined,
      );
      tenant.resources = { defender: true, graph: true };
      tenant.consent = { granted: true, roles: { defender: [...ctx.app.requiredRoles.defender], graph: [...ctx.app.requiredRoles.graph] } };
      ctx.addTenant(tenant);
      const t0 = performance.now();
      running().incidents.forTenant(tenant.id);
      listUrls.set(tenant.id, []);
      return { tenant: infoOf(tenant), generatedMs: performance.now() - t0 };
    },
    /** The list calls a tracked tenant received, in order. */
    listUrls(params: { tenantId: string }) {
      return listUrls.get(params.tenantId.toLowerCase()) ?? [];
    },
    /** CPU time of the sandbox process so far, µs (user + system). */
    cpu() {
      const usage = process.cpuUsage();
      return { userUs: usage.user, systemUs: usage.system };
    },
    setLatency(latency: LatencySpec | null) {
      running().context.latency = latency ?? undefined;
      return null;
    },
    counters: () => running().context.counterSnapshot(),
    reset() {
      running().context.resetCounters(true);
      return null;
    },
  },
  async () => {
    await sandbox?.close();
  },
);
