import { ApolloServer } from "@apollo/server";
import fastifyApollo, { fastifyApolloDrainPlugin } from "@as-integrations/fastify";
import Fastify from "fastify";
import { createApp, type App } from "../src/app.js";
import { loadConfig } from "../src/config.js";
import { mapDefenderIncident } from "../src/defender/defender-mapper.js";
import type { Incident } from "../src/defender/incident.js";
import { IncidentMirror } from "../src/incidents/mirror.js";
import { SandboxContext } from "../src/sandbox/context.js";
import { defenderIncident } from "../src/sandbox/incident-serializers.js";
import { IncidentStore } from "../src/sandbox/incidents-store.js";
import { withSandbox } from "../src/runtime.js";
import type { Sandbox } from "../src/sandbox/sandbox.js";
import { openStore, type Store } from "../src/store/store.js";
import { serveParent } from "./rpc.js";
import type { SandboxInfo } from "./sandbox-process.js";

/**
 * The process the measured servers run in: Crosswatch apps (a new one per cold run: no tokens, empty
 * cache, new connections) and, beside them, a bare Apollo Server on the same stack for throughput.
 * It samples its own RSS, so the figure is the server's, not the bench's or the sandbox's.
 *
 * The tenant registry (embedded PGlite) is opened once and shared by the apps: it holds the tenants,
 * not tokens or incidents. It lives in a data directory the bench prepared in another process, as a
 * deployment's ./data after its first start: PGlite's initdb grows its WebAssembly memory to ~630 MB
 * for good, where reopening an existing directory takes ~200 MB and a fraction of the time.
 */

/** What a new app is started with: its freshness bound and, when not the default 20 s, its deadline. */
export interface AppParams {
  freshnessSeconds: number;
  operationTimeoutMs?: number;
  /** The background sync engine (INCIDENT_SYNC); default on, as in a deployment. */
  sync?: boolean;
  /** More settings (e.g. INCIDENT_FIRST_LOAD_WAIT_MS), as environment variables. */
  env?: Record<string, string>;
  /** A replica: its own store on this PostgreSQL and shared state in this Redis (not the PGlite registry). */
  shared?: { databaseUrl: string; redisUrl: string; redisPrefix: string; tokenCacheKey?: string };
}

let store: Store | undefined;
let sandbox: SandboxInfo | undefined;
let app: App | undefined;
let bare: { close(): Promise<void> } | undefined;

let peakRss = 0;
let peakHeapUsed = 0;
const sampleMemory = () => {
  const usage = process.memoryUsage();
  peakRss = Math.max(peakRss, usage.rss);
  peakHeapUsed = Math.max(peakHeapUsed, usage.heapUsed);
};
setInterval(sampleMemory, 20).unref();

/** A sandbox tenant as the registry holds it. */
function newTenantOf(t: SandboxInfo["tenants"][number]) {
  return {
    id: t.id,
    displayName: t.displayName,
    tags: t.tags,
    backend: t.defender ? null : ("graph" as const),
    consentState: t.granted ? ("GRANTED" as const) : ("PENDING" as const),
  };
}

/** Sandbox-mode config with the bench's freshness bound and deadline (default 20 s); the rest at defaults. */
function config(params: AppParams) {
  const base = loadConfig({
    PORT: "0",
    LOG_LEVEL: "silent",
    DATA_DIR: "memory://",
    // Chosen, as it must be on PostgreSQL and on the registry the bench filled before any app opened it.
    SANDBOX: "true",
    INCIDENT_FRESHNESS_SECONDS: String(params.freshnessSeconds),
    ...(params.sync === false ? { INCIDENT_SYNC: "false" } : {}),
    ...(params.env ?? {}),
    ...(params.shared ? { DATABASE_URL: params.shared.databaseUrl, REDIS_URL: params.shared.redisUrl, REDIS_PREFIX: params.shared.redisPrefix } : {}),
    ...(params.shared?.tokenCacheKey ? { TOKEN_CACHE_KEY: params.shared.tokenCacheKey } : {}),
    ...(params.operationTimeoutMs !== undefined ? { OPERATION_TIMEOUT_MS: String(params.operationTimeoutMs) } : {}),
  });
  // withSandbox reads the sandbox's URL, certificate and app credential, which is all the info carries.
  return withSandbox(base, sandbox as unknown as Sandbox);
}

async function stopApp(): Promise<void> {
  const current = app;
  app = undefined;
  await current?.close();
}

serveParent(
  {
    /**
     * Opens the registry — PGlite in `dataDir` (in memory when undefined), or PostgreSQL at `databaseUrl` —
     * and registers the sandbox's tenants as `startRuntime` would (all of them, or `register` of them).
     */
    async init(params: { sandbox: SandboxInfo; dataDir?: string; databaseUrl?: string; register?: SandboxInfo["tenants"] }) {
      sandbox = params.sandbox;
      const t0 = performance.now();
      const before = process.memoryUsage();
      store = await openStore(params.databaseUrl ? { databaseUrl: params.databaseUrl } : { dataDir: params.dataDir });
      await store.tenants.registerMissing((params.register ?? sandbox.tenants).map(newTenantOf));
      const after = process.memoryUsage();
      return {
        storeMs: performance.now() - t0,
        rssBeforeStore: before.rss,
        rssAfterStore: after.rss,
        externalBeforeStore: before.external - before.arrayBuffers,
        externalAfterStore: after.external - after.arrayBuffers,
      };
    },
    /** Closes the registry (the process that prepares the data directory ends after this). */
    async closeStore() {
      await store?.close();
      store = undefined;
    },
    /** A new app (closing the previous one): new MSAL client, dispatcher, incident cache and budget. */
    async startApp(params: AppParams) {
      if (!store && !params.shared) throw new Error("init first");
      await stopApp();
      const t0 = performance.now();
      app = await createApp(config(params), params.shared ? {} : { store: store! });
      const url = await app.listen();
      return { url, startMs: performance.now() - t0 };
    },
    stopApp,
    /** Bare Apollo Server 5 on Fastify 5 through @as-integrations/fastify: `{ __typename }` and nothing else. */
    async startBare() {
      const fastify = Fastify({ logger: false });
      const apollo = new ApolloServer({ typeDefs: "type Query { ok: Boolean }", plugins: [fastifyApolloDrainPlugin(fastify)] });
      await apollo.start();
      await fastify.register(fastifyApollo(apollo), { path: "/graphql" });
      const url = await fastify.listen({ host: "127.0.0.1", port: 0 });
      bare = {
        async close() {
          await fastify.close();
          await apollo.stop();
        },
      };
      return { url };
    },
    async stopBare() {
      await bare?.close();
      bare = undefined;
    },
    /** Current and peak (sampled every 20 ms) RSS and JS heap, and the kernel's max RSS of the process. */
    memory(params: { gc?: boolean } | undefined) {
      // `--expose-gc` (the bench starts this process with it): what stays, not what waits for collection.
      if (params?.gc) (globalThis as { gc?: () => void }).gc?.();
      sampleMemory();
      const usage = process.memoryUsage();
      return {
        rss: usage.rss,
        heapUsed: usage.heapUsed,
        heapTotal: usage.heapTotal,
        external: usage.external,
        arrayBuffers: usage.arrayBuffers,
        // WebAssembly memories count as external, not as array buffers: this is mostly PGlite's.
        wasm: usage.external - usage.arrayBuffers,
        peakRss,
        peakHeapUsed,
        maxRssKb: process.resourceUsage().maxRSS,
      };
    },
    /** CPU time of this process so far, µs (user + system). */
    cpu() {
      const usage = process.cpuUsage();
      return { userUs: usage.user, systemUs: usage.system };
    },
    resetPeak() {
      peakRss = 0;
      peakHeapUsed = 0;
      sampleMemory();
      return null;
    },
    /** Replicas: the sandbox to point at, without opening the PGlite registry. */
    attach(params: { sandbox: SandboxInfo }) {
      sandbox = params.sandbox;
      return null;
    },
    /** Registers tenants (default: all the sandbox's) in the app's store, or in the opened registry without an app. */
    async registerTenants(params: { sandbox: SandboxInfo; tenants?: SandboxInfo["tenants"] }) {
      const target = app?.store ?? store;
      if (!target) throw new Error("no app and no store");
      await target.tenants.registerMissing((params.tenants ?? params.sandbox.tenants).map(newTenantOf));
      return null;
    },
    /**
     * How far the mirror's syncs got over `tenantIds` (from the sync state rows): tenants with some data,
     * fully loaded, fresh within `freshnessMs`, failing; pages and incidents mirrored.
     */
    async progress(params: { tenantIds: string[]; freshnessMs: number }) {
      if (!app) throw new Error("no app");
      const wanted = new Set(params.tenantIds.map((id) => id.toLowerCase()));
      const states = await app.incidents.mirror.states([...wanted]);
      const now = Date.now();
      let withData = 0;
      let complete = 0;
      let fresh = 0;
      let failing = 0;
      let pages = 0;
      let incidents = 0;
      let lastFetchedAt = 0;
      for (const state of states.values()) {
        if (state.fetchedAt !== null || (state.sweep !== null && state.sweep.pages > 0)) withData++;
        if (state.fullFetchedAt !== null) complete++;
        if (state.fetchedAt !== null && now - state.fetchedAt.getTime() < params.freshnessMs) fresh++;
        if (state.lastError) failing++;
        pages += state.pagesRead;
        incidents += state.incidentCount;
        if (state.fetchedAt) lastFetchedAt = Math.max(lastFetchedAt, state.fetchedAt.getTime());
      }
      return { tenants: wanted.size, states: states.size, withData, complete, fresh, failing, pages, incidents, lastFetchedAt };
    },
    /** One tenant's sync state (dates as ISO strings). */
    async tenantState(params: { tenantId: string }) {
      if (!app) throw new Error("no app");
      const state = await app.incidents.mirror.state(params.tenantId.toLowerCase());
      return state ? JSON.parse(JSON.stringify(state)) : null;
    },
    /**
     * Fills the opened registry's mirror without any upstream call: `perTenant` incidents for each tenant,
     * as the sandbox would list them (one sandbox tenant's generated incidents, mapped as the Defender
     * client maps them, given each tenant's id and times shifted per tenant), put with IncidentMirror.put
     * page by page as a sync would, and each tenant's state marked fully synced now.
     */
    async seedMirror(params: { tenantIds: string[]; perTenant: number; pageSize: number; seed: number }) {
      if (!store) throw new Error("init first");
      const t0 = performance.now();
      const generator = new SandboxContext({ tenantCount: 1, incidentsPerTenant: params.perTenant, seed: params.seed });
      const source = new IncidentStore(generator);
      const template = source
        .forTenant(generator.tenants[0]!.id)
        .map((record) => mapDefenderIncident(defenderIncident(source.view(record), { entitySerialization: "sparse", listItem: true }), record.tenantId));
      const generatedMs = performance.now() - t0;
      const mirror = new IncidentMirror(store.db);
      let rows = 0;
      for (const [k, tenantId] of params.tenantIds.entries()) {
        // Per tenant, times moved by up to a minute so the tenants' incidents interleave in the global order.
        const shift = (k * 7_919) % 60_000;
        const incidents: Incident[] = template.map((i) => ({
          ...i,
          tenantId,
          createdTime: new Date(i.createdTime.getTime() - shift),
          lastUpdateTime: new Date(i.lastUpdateTime.getTime() - shift),
        }));
        const now = Date.now();
        for (let from = 0; from < incidents.length; from += params.pageSize) {
          const page = incidents.slice(from, from + params.pageSize);
          const last = from + params.pageSize >= incidents.length;
          const newest = new Date(Math.max(...incidents.map((i) => i.lastUpdateTime.getTime())));
          await mirror.put(tenantId, "defender", page, {
            source: "sync",
            listedMs: now,
            state: last
              ? { watermark: newest, fetchedAt: new Date(now), fullFetchedAt: new Date(now), sweep: null, pagesRead: 1, lastAttemptAt: new Date(now), lastError: null, errorAt: null }
              : { pagesRead: 1 },
          });
          rows += page.length;
        }
      }
      return { generatedMs, seededMs: performance.now() - t0 - generatedMs, rows };
    },
    engineStats() {
      if (!app) throw new Error("no app");
      return app.syncEngine?.stats() ?? null;
    },
    stats() {
      if (!app) throw new Error("no app");
      return { tokens: app.tokenProvider.stats(), incidents: app.incidents.stats() };
    },
  },
  async () => {
    await stopApp();
    await bare?.close();
    await store?.close();
  },
);
