import { ApolloServer } from "@apollo/server";
import fastifyApollo, { fastifyApolloDrainPlugin } from "@as-integrations/fastify";
import Fastify from "fastify";
import { createApp, type App } from "../src/app.js";
import { loadConfig } from "../src/config.js";
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
  /** A replica: its own store on this PostgreSQL and shared state in this Redis (not the PGlite registry). */
  shared?: { databaseUrl: string; redisUrl: string; redisPrefix: string };
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

/** Sandbox-mode config with the bench's freshness bound and deadline (default 20 s); the rest at defaults. */
function config(params: AppParams) {
  const base = loadConfig({
    PORT: "0",
    LOG_LEVEL: "silent",
    DATA_DIR: "memory://",
    // Chosen, as it must be on PostgreSQL and on the registry the bench filled before any app opened it.
    SANDBOX: "true",
    INCIDENT_FRESHNESS_SECONDS: String(params.freshnessSeconds),
    ...(params.shared ? { DATABASE_URL: params.shared.databaseUrl, REDIS_URL: params.shared.redisUrl, REDIS_PREFIX: params.shared.redisPrefix } : {}),
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
    /** Opens the registry in `dataDir` and registers the sandbox's tenants as `startRuntime` would. */
    async init(params: { sandbox: SandboxInfo; dataDir: string }) {
      sandbox = params.sandbox;
      const t0 = performance.now();
      const rssBeforeStore = process.memoryUsage().rss;
      store = await openStore({ dataDir: params.dataDir });
      await store.tenants.registerMissing(
        sandbox.tenants.map((t) => ({
          id: t.id,
          displayName: t.displayName,
          tags: t.tags,
          backend: t.defender ? null : ("graph" as const),
          consentState: t.granted ? ("GRANTED" as const) : ("PENDING" as const),
        })),
      );
      return { storeMs: performance.now() - t0, rssBeforeStore, rssAfterStore: process.memoryUsage().rss };
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
      return { rss: usage.rss, heapUsed: usage.heapUsed, external: usage.external, peakRss, peakHeapUsed, maxRssKb: process.resourceUsage().maxRSS };
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
    /** Replicas: registers the sandbox's tenants in the shared store (as `init` does in the PGlite one). */
    async registerTenants(params: { sandbox: SandboxInfo }) {
      if (!app) throw new Error("no app");
      await app.store.tenants.registerMissing(
        params.sandbox.tenants.map((t) => ({ id: t.id, displayName: t.displayName, tags: t.tags, backend: t.defender ? null : ("graph" as const), consentState: t.granted ? ("GRANTED" as const) : ("PENDING" as const) })),
      );
      return null;
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
