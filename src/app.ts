import { randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import { ApolloServer, type ApolloServerPlugin } from "@apollo/server";
import { ApolloServerPluginInlineTraceDisabled, ApolloServerPluginLandingPageDisabled } from "@apollo/server/plugin/disabled";
import fastifyApollo, { fastifyApolloDrainPlugin } from "@as-integrations/fastify";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { Counter, Gauge } from "prom-client";
import type { Logger } from "pino";
import type { Dispatcher } from "undici";
import { GraphQLError } from "graphql";
import { ConfigError, type Config } from "./config.js";
import { enterDeploymentMode } from "./deployment-mode.js";
import { createAuthenticator } from "./auth/authenticate.js";
import { CallerAuthError, createEntraCallerVerifier } from "./auth/caller-jwt.js";
import { readableScope, type Caller } from "./auth/caller.js";
import { ConsentLinks } from "./auth/consent.js";
import { createConfidentialClient } from "./auth/msal-client.js";
import { openSharedTokenCache, type RedisSharedTokenCache } from "./auth/shared-token-cache.js";
import { UndiciNetworkClient } from "./auth/network-client.js";
import { diagnoseToken } from "./auth/token-diagnostics.js";
import { createTokenProvider, type TokenProvider } from "./auth/token-provider.js";
import { createIncidentsClients } from "./defender/clients.js";
import { HuntingClient } from "./hunting/hunting-client.js";
import { HuntingService } from "./hunting/hunting-service.js";
import { ErrorCode, formatError, withoutSuggestions } from "./errors.js";
import { IncidentMirror } from "./incidents/mirror.js";
import { SyncEngine } from "./incidents/sync-engine.js";
import { createIncidentService, type IncidentService } from "./incidents/incident-service.js";
import { registerConsentCallback } from "./http/consent-callback.js";
import { registerGraphiQL } from "./http/graphiql.js";
import { createLoaders } from "./loaders/loaders.js";
import { TenantOutcomeRecorder, withOutcomes } from "./loaders/outcome-recorder.js";
import { createDispatcher } from "./http/dispatcher.js";
import { createQueryLimits } from "./http/limits.js";
import { createMetrics, type Metrics } from "./http/metrics.js";
import { createAdmission, type AdmissionStats } from "./http/admission.js";
import { createMetricsServer } from "./http/metrics-server.js";
import { connectRedis, RedisRateBudget } from "./shared/redis-state.js";
import { errorForLog, operationLogPlugin } from "./http/operation-log.js";
import { createLogger } from "./logger.js";
import type { AuditRecord, GraphQLContext } from "./resolvers/context.js";
import { CallersResolver } from "./resolvers/callers.resolver.js";
import { HuntingResolver } from "./resolvers/hunting.resolver.js";
import { ConsentResolver, TenantErrorConsentResolver } from "./resolvers/consent.resolver.js";
import { createEntityReferences, requireServiceSdlAccess } from "./resolvers/entity-references.js";
import { IncidentsResolver, TenantIncidentsResolver } from "./resolvers/incidents.resolver.js";
import { ServerInfoResolver } from "./resolvers/server-info.resolver.js";
import { TenantsResolver } from "./resolvers/tenants.resolver.js";
import { SavedHuntsResolver } from "./resolvers/saved-hunts.resolver.js";
import { TokenHuntingResolver, TokensResolver } from "./resolvers/tokens.resolver.js";
import { buildCrosswatchSchema, noSubscriptionsRule } from "./schema/build-schema.js";
import { IncidentsBackendKind, ServerInfo, ServerMode } from "./schema/server-info.type.js";
import { openStore, type Store } from "./store/store.js";
import { VERSION } from "./version.js";

export interface App {
  fastify: FastifyInstance;
  logger: Logger;
  /** The one undici dispatcher every upstream call goes through. */
  dispatcher: Dispatcher;
  store: Store;
  tokenProvider: TokenProvider;
  incidents: IncidentService;
  /** The background sync engine (started by `listen`); undefined with INCIDENT_SYNC=off. */
  syncEngine: SyncEngine | undefined;
  /** Records tenants' outcomes and consent drift in the registry (throttled, in the background). */
  outcomes: TenantOutcomeRecorder;
  /** This app's Prometheus metrics (its own registry). */
  metrics: Metrics;
  /** GraphQL operations running and waiting for a slot (admission control), and those refused. */
  operations(): AdmissionStats;
  /** Where Prometheus metrics are served once listening (their own listener); undefined with METRICS_PORT=off. */
  readonly metricsUrl: string | undefined;
  /**
   * Where consent answers come back (PUBLIC_URL's /consent/callback; before `listen()` with no PUBLIC_URL, a
   * placeholder): the reply URL to register on the app, which the LEGACY_V1 link returns to.
   */
  consentCallbackUrl(): string;
  /**
   * Listens on `config.host:config.port` (port 0 picks a free one), and metrics on their own listener;
   * returns the API's base URL.
   */
  listen(): Promise<string>;
  /** Stops accepting, drains in-flight operations, closes the dispatcher. Safe to call twice. */
  close(): Promise<void>;
}

export interface AppDependencies {
  logger?: Logger;
  /** An already open store (tests share one); by default the app opens and closes its own. */
  store?: Store;
  /** The incident cache's clock (Unix ms) for freshness: tests age the cache without waiting. Default `Date.now`. */
  incidentClock?: () => number;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Wires one Crosswatch server from a validated config: logger, dispatcher, GraphQL schema and HTTP routes.
 * Opens no connection and reads no environment; `listen()` starts it. Used by main and by tests.
 */
export async function createApp(config: Config, deps: AppDependencies = {}): Promise<App> {
  const logger = deps.logger ?? createLogger(config.logLevel);
  const dispatcher = createDispatcher({
    trustedCaPem: config.upstream.trustedCaPem,
    connectTimeoutMs: 5_000,
    connectionsPerOrigin: 64,
  });

  if (!config.credential) throw new Error("no app credential: configure an Azure app or start through the sandbox runtime");
  const msal = await createConfidentialClient({
    credential: config.credential,
    authorityHost: config.upstream.authorityHost,
    networkClient: new UndiciNetworkClient(dispatcher),
    logger,
  });
  const failureMemoryMs = config.incidents.failureMemorySeconds * 1000;
  // With Redis, replicas share the per-tenant rate windows and (with TOKEN_CACHE_KEY) the tokens.
  const redis = config.store.redisUrl ? await connectRedis(config.store.redisUrl, logger) : undefined;
  let sharedTokens: RedisSharedTokenCache | undefined;
  if (redis && config.store.tokenCacheKey) {
    try {
      sharedTokens = await openSharedTokenCache(redis, {
        secret: config.store.tokenCacheKey,
        prefix: config.store.redisPrefix,
        // Replicas of another app registration or cloud (a rolling change) never take these tokens.
        partition: `${config.credential.clientId}|${config.upstream.authorityHost}`,
        logger,
      });
    } catch (error) {
      redis.disconnect();
      await dispatcher.close();
      throw error;
    }
  } else if (config.store.tokenCacheKey) {
    logger.warn("TOKEN_CACHE_KEY is set but REDIS_URL is not: tokens are not shared between replicas");
  } else if (redis && config.mode === "azure") {
    logger.info("REDIS_URL without TOKEN_CACHE_KEY: each replica asks Entra for its own tokens");
  }
  const tokenProvider = createTokenProvider({
    client: msal,
    authorityHost: config.upstream.authorityHost,
    failureMemoryMs,
    logger,
    ...(sharedTokens ? { shared: sharedTokens } : {}),
  });
  // Bound once metrics exist (they read the clients' budget); attempts before that are not counted.
  let metrics: Metrics | undefined;
  // Graph publishes no hunting call count: HUNTING_GRAPH_CALLS_PER_MINUTE is an assumed budget (rate-budget.ts).
  const budgetLimits = {
    "graph.hunt": [
      { limit: config.hunting.graphCallsPerMinute, windowSeconds: 60 },
      { limit: 1500, windowSeconds: 3600 },
    ],
  };
  const clients = createIncidentsClients({
    observe: (attempt) => metrics?.observeUpstream(attempt),
    budgets: redis ? new RedisRateBudget(redis, { prefix: config.store.redisPrefix, logger, limits: budgetLimits }) : { limits: budgetLimits },
    dispatcher,
    tokenProvider,
    defenderApiBase: config.upstream.defenderApiBase,
    graphApiBase: config.upstream.graphApiBase,
    logger,
  });
  // Hunting shares the clients' budget (its own buckets, one concurrency cap), dispatcher and tokens.
  const hunting = new HuntingService({
    client: new HuntingClient({
      dispatcher,
      tokenProvider,
      budget: clients.budget,
      defenderApiBase: config.upstream.defenderApiBase,
      graphApiBase: config.upstream.graphApiBase,
      rowLimit: config.hunting.rowLimit,
      logger,
      observe: (attempt) => metrics?.observeUpstream(attempt),
    }),
    logger,
  });
  /**
   * Ends what this replica remembers of a tenant's lasting failures, in the token provider and the incident
   * service. After a consent, tokens issued before it (with the old roles) are dropped too.
   */
  const forgetTenantFailures = (tenantId: string, options: { consented?: boolean } = {}) => {
    if (options.consented) tokenProvider.invalidate(tenantId);
    tokenProvider.forgetFailures(tenantId);
    incidents.forgetFailures(tenantId);
    outcomes?.forget(tenantId);
  };
  // Bound once the store is open (below); nothing calls forgetTenantFailures before.
  let outcomes: TenantOutcomeRecorder | undefined;
  const store =
    deps.store ??
    (await openStore({
      databaseUrl: config.store.databaseUrl,
      dataDir: config.store.dataDir === "memory://" ? undefined : config.store.dataDir,
    }));
  const ownsStore = deps.store === undefined;
  const tenantOutcomes = new TenantOutcomeRecorder({
    tenants: store.tenants,
    audit: async (event) => {
      try {
        await store.audit.record(event);
      } catch (error) {
        logger.error({ err: error, action: event.action }, "could not write the audit log");
      }
    },
    logger,
  });
  outcomes = tenantOutcomes;
  // The incident mirror lives in the store's database; the sync engine (background) keeps it fresh.
  let engine: SyncEngine | undefined;
  const incidents = createIncidentService({
    clients,
    mirror: new IncidentMirror(store.db),
    freshnessMs: config.incidents.freshnessSeconds * 1000,
    maxPagesPerRefresh: config.incidents.pagesPerRefresh,
    failureMemoryMs,
    windowMs: config.incidents.windowDays * 86_400_000,
    leaseMs: config.incidents.syncLeaseSeconds * 1000,
    firstLoadWaitMs: config.incidents.firstLoadWaitMs,
    onStale: (target) => engine?.prioritise(target),
    ...(deps.incidentClock ? { now: deps.incidentClock } : {}),
    logger,
  });
  if (config.incidents.syncEnabled) {
    engine = new SyncEngine({
      service: incidents,
      tenants: store.tenants,
      defaultBackend: config.upstream.defaultBackend,
      concurrency: config.incidents.syncConcurrency,
      quietMaxMs: config.incidents.syncQuietSeconds * 1000,
      lastingRetryMs: Math.max(failureMemoryMs, 60_000),
      windowMs: config.incidents.windowDays * 86_400_000,
      logger,
    });
  }
  metrics = createMetrics({ tokenProvider, incidents, budget: clients.budget, ...(engine ? { engine } : {}) });
  const appMetrics = metrics;
  // Before anything is seeded or served: the store's recorded mode must be this one (src/deployment-mode.ts).
  try {
    await enterDeploymentMode(config, store.deployment);
  } catch (error) {
    if (ownsStore) await store.close();
    await dispatcher.close();
    redis?.disconnect();
    throw error;
  }
  const authenticator = createAuthenticator({
    apiKeys: store.apiKeys,
    entra: config.auth.entra
      ? createEntraCallerVerifier({ config: config.auth.entra, authorityHost: config.upstream.authorityHost, dispatcher, logger })
      : undefined,
    anonymous: config.auth.anonymous,
  });
  if (config.mode === "azure" && !config.auth.entra && (await store.apiKeys.countActive()) === 0) {
    if (ownsStore) await store.close();
    await dispatcher.close();
    redis?.disconnect();
    throw new ConfigError([
      "no caller authentication: Crosswatch holds the credential for every customer tenant and will not serve it openly. " +
        "Create an API key (npm run keys -- create --name admin --role ADMIN --all-tenants) or set AUTH_ENTRA_AUDIENCE and AUTH_ENTRA_TENANTS",
    ]);
  }
  if (config.auth.anonymous) {
    logger.warn("caller authentication is OFF (sandbox): requests without credentials act as an admin over every tenant; API keys and Entra tokens are still checked when sent");
  }
  const audit = async (caller: Caller, requestId: string | null, record: AuditRecord): Promise<void> => {
    try {
      await store.audit.record({ ...record, actor: { kind: caller.kind, id: caller.id, name: caller.name }, requestId });
    } catch (error) {
      logger.error({ err: error, requestId, action: record.action }, "could not write the audit log");
    }
  };
  let publicUrl = config.consent.publicUrl;
  const stateKey = config.consent.stateSecret
    ? new TextEncoder().encode(config.consent.stateSecret)
    : crypto.getRandomValues(new Uint8Array(32));
  if (!config.consent.stateSecret && config.mode === "azure") {
    logger.warn("CONSENT_STATE_SECRET is unset: consent links stop working when this process restarts and on other replicas");
  }
  const links = new ConsentLinks({
    authorityHost: config.upstream.authorityHost,
    clientId: config.credential?.clientId ?? "",
    // A v2 link asks for the tenant's backend only (AADSTS650052 otherwise on a tenant without the other).
    defaultBackend: config.upstream.defaultBackend,
    defaultRedirectUri: () => `${publicUrl ?? "http://localhost:4000"}/consent/callback`,
    extraRedirectUris: config.consent.redirectUris,
    stateKey,
    stateTtlSeconds: config.consent.linkTtlSeconds,
    // HUNTING_ENABLED: links list the hunting permission of the tenant's hunting backend (src/auth/consent.ts).
    hunting: config.hunting.enabled ? { defaultBackend: config.hunting.defaultBackend } : undefined,
  });

  const fastify = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // One log line per GraphQL operation is what operators want, not two per HTTP request.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.limits.bodyLimitBytes,
    // A client gets this long to send a whole request (headers within min(10 s, that)): a slow body holds
    // nothing for minutes. Node checks these on an interval, so it runs at a quarter of the headers bound.
    // The socket's idle timeout outlasts a request plus its operation, so it only ends abandoned sockets.
    requestTimeout: config.http.requestTimeoutMs,
    connectionTimeout: config.http.requestTimeoutMs + config.incidents.operationTimeoutMs + 10_000,
    http: {
      requestTimeout: config.http.requestTimeoutMs,
      headersTimeout: config.http.headersTimeoutMs,
      connectionsCheckingInterval: Math.max(25, Math.min(1_000, Math.floor(config.http.headersTimeoutMs / 4))),
    },
    // Honour a caller's request id when it is a plain token, so logs correlate across a gateway.
    genReqId: (request) => {
      const header = request.headers["x-request-id"];
      return typeof header === "string" && REQUEST_ID.test(header) ? header : randomUUID();
    },
    forceCloseConnections: "idle",
  });
  // Liveness first, before every other hook: a probe never waits behind authentication or GraphQL work.
  const health = { status: "ok", mode: config.mode, version: VERSION };
  fastify.addHook("onRequest", async (request, reply) => {
    if (request.method === "GET" && request.url === "/healthz") return reply.send(health);
  });
  let closing = false;
  fastify.addHook("onSend", async (request, reply) => {
    reply.header("x-request-id", request.id);
    // Draining: the answers still in flight end their connections, so closing waits for no client's keep-alive.
    if (closing) reply.header("connection", "close");
  });

  const info = new ServerInfo();
  info.mode = config.mode === "sandbox" ? ServerMode.SANDBOX : ServerMode.AZURE;
  info.version = VERSION;
  info.defaultIncidentsBackend =
    config.upstream.defaultBackend === "graph" ? IncidentsBackendKind.GRAPH : IncidentsBackendKind.DEFENDER;
  info.authorityHost = config.upstream.authorityHost;
  const incidentsResolver = new IncidentsResolver({
    tenants: store.tenants,
    // `incident` and `updateIncident` report their tenant's outcome (queries do through the loaders).
    service: withOutcomes(incidents, tenantOutcomes),
    links,
    defaultBackend: config.upstream.defaultBackend,
  });
  const resolvers = new Map<unknown, unknown>([
    [ServerInfoResolver, new ServerInfoResolver(info)],
    [
      TenantsResolver,
      new TenantsResolver({
        tenants: store.tenants,
        links,
        defaultBackend: config.upstream.defaultBackend,
        onTenantChanged: (tenantId) => forgetTenantFailures(tenantId),
        onTenantRemoved: (tenantId) => incidents.forget(tenantId),
      }),
    ],
    [ConsentResolver, new ConsentResolver(links)],
    [TenantErrorConsentResolver, new TenantErrorConsentResolver(links)],
    [
      TokensResolver,
      new TokensResolver({
        tenants: store.tenants,
        defaultBackend: config.upstream.defaultBackend,
        hunting: { enabled: config.hunting.enabled, defaultBackend: config.hunting.defaultBackend, tokenProvider },
      }),
    ],
    [TokenHuntingResolver, new TokenHuntingResolver()],
    [IncidentsResolver, incidentsResolver],
    [TenantIncidentsResolver, new TenantIncidentsResolver(incidentsResolver)],
    [CallersResolver, new CallersResolver({ apiKeys: store.apiKeys, audit: store.audit })],
    [HuntingResolver, new HuntingResolver({ service: hunting, incidents: incidentsResolver, defaultBackend: config.hunting.defaultBackend })],
    [
      SavedHuntsResolver,
      new SavedHuntsResolver({
        savedHunts: store.savedHunts,
        // A saved hunt runs through huntingQuery itself (the instance registered above).
        hunting: {
          huntingQuery: (...args: Parameters<HuntingResolver["huntingQuery"]>): ReturnType<HuntingResolver["huntingQuery"]> =>
            (resolvers.get(HuntingResolver) as HuntingResolver).huntingQuery(...args),
        },
      }),
    ],
  ]);
  const schema = await buildCrosswatchSchema(
    {
      get: (someClass) => {
        const instance = resolvers.get(someClass);
        if (!instance) throw new Error(`no resolver instance registered for ${String(someClass)}`);
        return instance;
      },
    },
    createEntityReferences({ defaultBackend: config.upstream.defaultBackend, incidents }),
    // The subgraph SDL is the whole schema: open when introspection is, else for ADMIN over every tenant.
    config.limits.introspection ? {} : { authorizeService: requireServiceSdlAccess },
  );

  const queryLimits = createQueryLimits({
    limits: config.limits,
    // Only asked when an operation has `incidents` without tenantIds: what it would span for this caller.
    async visibleTenantCount(ctx: GraphQLContext) {
      const scope = readableScope(ctx.caller);
      return store.tenants.count(scope ? { scope } : {});
    },
  });
  const apollo = new ApolloServer<GraphQLContext>({
    schema,
    // Apollo's own notices (e.g. inline tracing enabled for a subgraph) go to our log, not the console.
    logger,
    // Outside the sandbox no error names what the caller did not ask for (variable coercion included).
    formatError: config.mode === "azure" ? (formatted, error) => withoutSuggestions(formatError(formatted, error)) : formatError,
    includeStacktraceInErrorResponses: false,
    introspection: config.limits.introspection,
    // No "Did you mean …?" outside the sandbox: it would describe the schema to anyone probing it.
    hideSchemaDetailsFromClientErrors: config.mode === "azure",
    csrfPrevention: true,
    allowBatchedHttpRequests: false,
    // main.ts owns SIGTERM/SIGINT (drain, then close pools); Apollo's own handler would stop it mid-drain.
    stopOnTerminationSignals: false,
    parseOptions: queryLimits.parseOptions,
    validationRules: [...queryLimits.validationRules, noSubscriptionsRule],
    plugins: [
      appMetrics.plugin(),
      operationLogPlugin(),
      queryLimits.plugin,
      fastifyApolloDrainPlugin(fastify),
      // Apollo's default landing page loads from a CDN; the offline GraphiQL page replaces it.
      ApolloServerPluginLandingPageDisabled(),
      // Apollo installs inline tracing for every subgraph schema: per-field timings to anyone who sends
      // `apollo-federation-include-trace: ftv1`. Only when FEDERATION_TRACING is on (sandbox default).
      ...(config.limits.federationTracing ? [] : [ApolloServerPluginInlineTraceDisabled()]),
      errorLoggingPlugin(),
    ],
  });
  await apollo.start();

  fastify.get("/healthz", async () => health);
  // Ready when the store answers: a load balancer stops sending requests to a replica that cannot serve them.
  fastify.get("/readyz", async (_request, reply) => {
    const checks: Record<string, boolean> = { store: await store.db.ping().catch(() => false) };
    if (redis) checks.redis = await redis.ping().then((pong) => pong === "PONG", () => false);
    const ready = Object.values(checks).every(Boolean);
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ready" : "not ready", checks });
  });
  // Metrics name every customer tenant: served on a listener of their own (METRICS_PORT), never here.
  const metricsServer = config.metrics
    ? createMetricsServer({ registry: appMetrics.registry, ...config.metrics, logger })
    : undefined;
  let metricsUrl: string | undefined;
  registerConsentCallback(fastify, {
    links,
    nonces: store.consentNonces,
    tenants: store.tenants,
    // Under the caller that minted the link (bound in its signed state); the callback notes that the customer's admin answered.
    audit: (minter, requestId, record) => audit({ ...minter, grants: [] }, requestId, record),
    onRejected: (reason) => appMetrics.observeConsentRejection(reason),
    ratePerMinute: config.consent.callbackRatePerMinute,
    onConsentGranted: (tenantId) => forgetTenantFailures(tenantId, { consented: true }),
    async verifyTenant(tenantId, options) {
      // A stateless answer is vouched for by a token issued now, not one cached before a revocation.
      if (options?.fresh) tokenProvider.invalidate(tenantId);
      const tenant = await store.tenants.get(tenantId);
      const diagnosis = await diagnoseToken(tokenProvider, tenantId, tenant?.backend ?? config.upstream.defaultBackend, { recheck: true });
      if (diagnosis.error && diagnosis.error.code !== "MISSING_ROLE") {
        return { ok: false, code: diagnosis.error.code, message: diagnosis.error.message, hint: diagnosis.error.hint };
      }
      return { ok: true, roles: diagnosis.grantedRoles, missingRoles: [...(diagnosis.missingRoles?.read ?? []), ...(diagnosis.missingRoles?.update ?? [])] };
    },
    logger,
  });
  // Before the GraphQL route: a browser opening /graphql gets GraphiQL (served from installed packages only).
  registerGraphiQL(fastify, { endpoint: "/graphql" });
  const admission = createAdmission({
    maxConcurrent: config.http.maxConcurrentOperations,
    maxQueued: config.http.maxQueuedOperations,
    // Waiting longer would leave the operation little of its own deadline.
    maxWaitMs: config.incidents.operationTimeoutMs,
  });
  observeAdmission(appMetrics, () => admission.stats());
  fastify.server.on("connection", () => admission.noteConnection());
  /** Callers authenticated in the onRequest hook, for the GraphQL context of the same request. */
  const callers = new WeakMap<FastifyRequest, Caller>();
  await fastify.register(async (graphql) => {
    // Before the body is read (GraphiQL's page, a root hook, is answered before this one):
    // - who is calling: a refused caller's body is never parsed (Node discards it unread), so an
    //   unauthenticated client cannot make the server parse megabytes;
    // - admission: at most MAX_CONCURRENT_OPERATIONS run, MAX_QUEUED_OPERATIONS wait, the rest get 503.
    graphql.addHook("onRequest", async (request, reply) => {
      if (request.method !== "POST" && request.method !== "GET") return;
      let release: (() => void) | undefined;
      const abandoned = new AbortController();
      // Finished or cut off: the slot goes to the next waiter; a waiter whose client left leaves the queue.
      reply.raw.once("close", () => {
        abandoned.abort();
        release?.();
      });
      try {
        callers.set(request, await authenticator.authenticate(request.headers));
      } catch (error) {
        return sendGraphQLError(reply, authError(error, logger.child({ requestId: request.id })));
      }
      const admitted = await admission.acquire(abandoned.signal);
      if (admitted.admitted && abandoned.signal.aborted) admitted.release();
      if (abandoned.signal.aborted) return reply.hijack();
      if (!admitted.admitted) {
        return sendGraphQLError(
          reply,
          new GraphQLError("the server is busy: too many operations in progress, retry in a moment", {
            extensions: { code: ErrorCode.SERVER_BUSY, http: { status: 503, headers: new Map([["retry-after", "1"]]) } },
          }),
        );
      }
      release = admitted.release;
    });
    await graphql.register(fastifyApollo(apollo), {
      path: "/graphql",
      context: async (request) => {
        // Authenticated in the onRequest hook, before the body was read (this lookup is a fallback only).
        let caller: Caller;
        try {
          caller = callers.get(request) ?? (await authenticator.authenticate(request.headers));
        } catch (error) {
          throw authError(error, logger.child({ requestId: request.id }));
        }
        // One deadline per operation: every token and upstream wait of this request ends by then.
        const deadline = Date.now() + config.incidents.operationTimeoutMs;
        const signal = AbortSignal.timeout(config.incidents.operationTimeoutMs);
        // Every tenant's wait listens on this one signal: a 1,000-tenant query adds 1,000 listeners.
        setMaxListeners(0, signal);
        return {
          requestId: request.id,
          logger: logger.child({ requestId: request.id, caller: `${caller.kind}:${caller.id}` }),
          caller,
          loaders: createLoaders({ tokenProvider, tenants: store.tenants, incidents, outcomes: tenantOutcomes }, caller, {
            signal,
            deadline,
            onTenantLoads: (results) => appMetrics.observeTenantLoads(results),
          }),
          operation: { signal, deadline },
          audit: (record) => audit(caller, request.id, record),
        };
      },
    });
  });

  let closed = false;
  return {
    fastify,
    logger,
    dispatcher,
    store,
    tokenProvider,
    incidents,
    syncEngine: engine,
    outcomes: tenantOutcomes,
    metrics: appMetrics,
    operations: () => admission.stats(),
    consentCallbackUrl() {
      return links.allowedRedirectUris()[0]!;
    },
    get metricsUrl() {
      return metricsUrl;
    },
    async listen() {
      await fastify.listen({ host: config.host, port: config.port });
      engine?.start();
      if (metricsServer) {
        metricsUrl = await metricsServer.listen().catch(async (error: unknown) => {
          await fastify.close();
          throw error;
        });
        if (config.metrics?.token === undefined && !isLoopback(config.metrics!.host)) {
          logger.warn({ metricsUrl }, "metrics listen beyond loopback without METRICS_TOKEN: anyone who reaches that port sees every tenant's id");
        }
      }
      const address = fastify.server.address();
      if (!address || typeof address === "string") throw new Error("server is not listening on a TCP port");
      const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
      // Browsers on this machine reach a loopback listener as localhost, which Entra accepts as a reply URL.
      publicUrl ??= `http://${isLoopbackOrAny(address.address) ? "localhost" : host}:${address.port}`;
      return `http://${host}:${address.port}`;
    },
    async close() {
      if (closed) return;
      closed = true;
      closing = true;
      admission.close();
      await engine?.stop();
      await Promise.all([fastify.close(), metricsServer?.close()]);
      logger.debug("http server closed: operations drained");
      // Running syncs end (their pages are committed); this replica's leases go to the others at once.
      await incidents.close();
      await apollo.stop();
      await dispatcher.close();
      logger.debug("upstream connections closed");
      await tenantOutcomes.idle();
      if (ownsStore) await store.close();
      await redis?.quit().catch(() => redis.disconnect());
      logger.debug("store closed");
    },
  };
}

const AUTH_STATUS = { UNAUTHENTICATED: 401, FORBIDDEN: 403, AUTH_UNAVAILABLE: 503 } as const;

/**
 * A refused caller as the GraphQL error Apollo answers with the right HTTP status (and, for 401, the
 * challenge). The reason is safe to show; the credential never appears in it or in the log.
 */
function authError(error: unknown, logger: Logger): GraphQLError {
  if (!(error instanceof CallerAuthError)) {
    logger.error({ err: error }, "caller authentication failed unexpectedly");
    return new GraphQLError("authentication failed", {
      extensions: { code: ErrorCode.AUTH_UNAVAILABLE, http: { status: 503 } },
    });
  }
  logger.info({ code: error.code, reason: error.message }, "caller refused");
  const headers = new Map<string, string>();
  if (error.code === "UNAUTHENTICATED") headers.set("www-authenticate", 'Bearer realm="crosswatch"');
  return new GraphQLError(error.message, {
    extensions: { code: error.code, http: { status: AUTH_STATUS[error.code], headers } },
  });
}

/**
 * Answers a refusal made before Apollo saw the request exactly as Apollo answers one from the context:
 * the status and headers of `extensions.http`, and `{ errors: [{ message, extensions: { code } }] }`.
 */
function sendGraphQLError(reply: FastifyReply, error: GraphQLError): FastifyReply {
  const http = error.extensions.http as { status: number; headers?: Map<string, string> };
  for (const [name, value] of http.headers ?? []) reply.header(name, value);
  return reply
    .code(http.status)
    .type("application/json; charset=utf-8")
    // Apollo ends its JSON bodies with a newline.
    .send(`${JSON.stringify({ errors: [{ message: error.message, extensions: { code: error.extensions.code } }] })}\n`);
}

/** Admission control in the app's registry: operations running and waiting, and those refused. */
function observeAdmission(metrics: Metrics, stats: () => AdmissionStats): void {
  const registers = [metrics.registry];
  new Gauge({
    name: "crosswatch_graphql_operations_in_flight",
    help: "GraphQL operations admitted and running",
    registers,
    collect() {
      this.set(stats().inFlight);
    },
  });
  new Gauge({
    name: "crosswatch_graphql_operations_queued",
    help: "GraphQL operations waiting for a slot (MAX_CONCURRENT_OPERATIONS)",
    registers,
    collect() {
      this.set(stats().queued);
    },
  });
  new Counter({
    name: "crosswatch_graphql_operations_refused_total",
    help: "GraphQL operations answered 503 because the queue was full or their wait for a slot ran out",
    registers,
    collect() {
      this.reset();
      this.inc(stats().refused);
    },
  });
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

function isLoopbackOrAny(address: string): boolean {
  return address === "::" || address === "0.0.0.0" || address === "::1" || address.startsWith("127.");
}

/**
 * Logs every error Apollo masks, with the request id, and puts that id into the masked error so an
 * operator can find the original from what the client reports.
 */
function errorLoggingPlugin(): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      return {
        async didEncounterErrors({ contextValue, errors, request, document }) {
          for (const error of errors) {
            const code = error.extensions?.code;
            if (code === undefined || code === ErrorCode.INTERNAL_SERVER_ERROR) {
              // Without the operation's argument values, should the error quote them.
              contextValue.logger.error({ err: errorForLog(error.originalError ?? error, request, document) }, "unhandled error in operation");
            }
          }
        },
        async willSendResponse({ contextValue, response }) {
          if (response.body.kind !== "single") return;
          for (const error of response.body.singleResult.errors ?? []) {
            if (error.extensions?.code === ErrorCode.INTERNAL_SERVER_ERROR) {
              (error.extensions as Record<string, unknown>).requestId = contextValue.requestId;
            }
          }
        },
      };
    },
  };
}
