import type { LatencySpec, RateLimitOptions } from "../src/sandbox/context.js";
import { RESOURCES } from "../src/sandbox/resources.js";
import { startSandbox, type Sandbox } from "../src/sandbox/sandbox.js";
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
const running = (): Sandbox => {
  if (!sandbox) throw new Error("the sandbox is not started");
  return sandbox;
};

serveParent(
  {
    /** `huntingRoles`: the app also requires the hunting roles, so the consented tenants grant them (bench/hunting.ts). */
    async start(params: { tenantCount: number; incidentsPerTenant: number; seed: number; huntingRoles?: boolean }): Promise<SandboxInfo> {
      sandbox = await startSandbox({ ...params, rateLimits: RATE_LIMITS, huntingTablesCached: params.tenantCount });
      // Incident readability is judged by the incident roles alone, whether or not the hunting ones are required.
      const huntRoles: string[] = [...RESOURCES.defender.huntRoles, ...RESOURCES.graph.huntRoles];
      const required = {
        defender: sandbox.context.app.requiredRoles.defender.filter((role) => !huntRoles.includes(role)),
        graph: sandbox.context.app.requiredRoles.graph.filter((role) => !huntRoles.includes(role)),
      };
      return {
        url: sandbox.url,
        caCertPem: sandbox.caCertPem,
        clientId: sandbox.clientId,
        clientSecret: sandbox.clientSecret,
        tenants: sandbox.tenants.map((t) => {
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
        }),
      };
    },
    /** Generates every tenant's incidents now (the sandbox does it lazily, on a tenant's first read). */
    prime() {
      const t0 = performance.now();
      for (const tenant of running().tenants) running().incidents.forTenant(tenant.id);
      return { ms: performance.now() - t0 };
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
