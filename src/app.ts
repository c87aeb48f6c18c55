import { randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import { ApolloServer, type ApolloServerPlugin } from "@apollo/server";
import { ApolloServerPluginLandingPageDisabled } from "@apollo/server/plugin/disabled";
import fastifyApollo, { fastifyApolloDrainPlugin } from "@as-integrations/fastify";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { Dispatcher } from "undici";
import { GraphQLError } from "graphql";
import { ConfigError, type Config } from "./config.js";
import { createAuthenticator } from "./auth/authenticate.js";
import { CallerAuthError, createEntraCallerVerifier } from "./auth/caller-jwt.js";
import { readableScope, type Caller } from "./auth/caller.js";
import { ConsentLinks } from "./auth/consent.js";
import { createConfidentialClient } from "./auth/msal-client.js";
import { UndiciNetworkClient } from "./auth/network-client.js";
import { diagnoseToken } from "./auth/token-diagnostics.js";
import { createTokenProvider, type TokenProvider } from "./auth/token-provider.js";
import { createIncidentsClients } from "./defender/clients.js";
import { ErrorCode, formatError } from "./errors.js";
import { MemoryIncidentCache } from "./incidents/incident-cache.js";
import { createIncidentService, type IncidentService } from "./incidents/incident-service.js";
import { registerConsentCallback } from "./http/consent-callback.js";
import { registerGraphiQL } from "./http/graphiql.js";
import { createLoaders } from "./loaders/loaders.js";
import { createDispatcher } from "./http/dispatcher.js";
import { createQueryLimits } from "./http/limits.js";
import { createMetrics, type Metrics } from "./http/metrics.js";
import { connectRedis, RedisIncidentCache, RedisRateBudget, RedisRefreshCoordinator } from "./shared/redis-state.js";
import { operationLogPlugin } from "./http/operation-log.js";
import { createLogger } from "./logger.js";
import type { AuditRecord, GraphQLContext } from "./resolvers/context.js";
import { CallersResolver } from "./resolvers/callers.resolver.js";
import { ConsentResolver } from "./resolvers/consent.resolver.js";
import { createEntityReferences } from "./resolvers/entity-references.js";
import { IncidentsResolver, TenantIncidentsResolver } from "./resolvers/incidents.resolver.js";
import { ServerInfoResolver } from "./resolvers/server-info.resolver.js";
import { TenantsResolver } from "./resolvers/tenants.resolver.js";
import { TokensResolver } from "./resolvers/tokens.resolver.js";
import { buildCrosswatchSchema } from "./schema/build-schema.js";
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
  /** Listens on `config.host:config.port` (port 0 picks a free one) and returns the base URL. */
  listen(): Promise<string>;
  /** Stops accepting, drains in-flight operations, closes the dispatcher. Safe to call twice. */
  close(): Promise<void>;
}

export interface AppDependencies {
  logger?: Logger;
  /** An already open store (tests share one); by default the app opens and closes its own. */
  store?: Store;
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
  const tokenProvider = createTokenProvider({ client: msal, authorityHost: config.upstream.authorityHost, logger });
  // With Redis, replicas share the per-tenant rate windows, the refresh locks and the incident cache.
  const redis = config.store.redisUrl ? await connectRedis(config.store.redisUrl, logger) : undefined;
  // Bound once metrics exist (they read the clients' budget); attempts before that are not counted.
  let metrics: Metrics | undefined;
  const clients = createIncidentsClients({
    observe: (attempt) => metrics?.observeUpstream(attempt),
    ...(redis ? { budgets: new RedisRateBudget(redis, { prefix: config.store.redisPrefix, logger }) } : {}),
    dispatcher,
    tokenProvider,
    defenderApiBase: config.upstream.defenderApiBase,
    graphApiBase: config.upstream.graphApiBase,
    logger,
  });
  const incidents = createIncidentService({
    clients,
    cache: redis ? new RedisIncidentCache(redis, { prefix: config.store.redisPrefix }) : new MemoryIncidentCache(),
    ...(redis ? { coordinator: new RedisRefreshCoordinator(redis, { prefix: config.store.redisPrefix }) } : {}),
    freshnessMs: config.incidents.freshnessSeconds * 1000,
    logger,
  });
  metrics = createMetrics({ tokenProvider, incidents, budget: clients.budget });
  const appMetrics = metrics;
  const store =
    deps.store ??
    (await openStore({
      databaseUrl: config.store.databaseUrl,
      dataDir: config.store.dataDir === "memory://" ? undefined : config.store.dataDir,
    }));
  const ownsStore = deps.store === undefined;
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
    defenderResource: "https://api.security.microsoft.com",
    defaultRedirectUri: () => `${publicUrl ?? "http://localhost:4000"}/consent/callback`,
    stateKey,
    stateTtlSeconds: config.consent.linkTtlSeconds,
  });

  const fastify = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // One log line per GraphQL operation is what operators want, not two per HTTP request.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.limits.bodyLimitBytes,
    // Honour a caller's request id when it is a plain token, so logs correlate across a gateway.
    genReqId: (request) => {
      const header = request.headers["x-request-id"];
      return typeof header === "string" && REQUEST_ID.test(header) ? header : randomUUID();
    },
    forceCloseConnections: "idle",
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
    service: incidents,
    links,
    defaultBackend: config.upstream.defaultBackend,
  });
  const resolvers = new Map<unknown, unknown>([
    [ServerInfoResolver, new ServerInfoResolver(info)],
    [TenantsResolver, new TenantsResolver({ tenants: store.tenants, links, defaultBackend: config.upstream.defaultBackend })],
    [ConsentResolver, new ConsentResolver(links)],
    [TokensResolver, new TokensResolver({ tenants: store.tenants, links, defaultBackend: config.upstream.defaultBackend })],
    [IncidentsResolver, incidentsResolver],
    [TenantIncidentsResolver, new TenantIncidentsResolver(incidentsResolver)],
    [CallersResolver, new CallersResolver({ apiKeys: store.apiKeys, audit: store.audit })],
  ]);
  const schema = await buildCrosswatchSchema(
    {
      get: (someClass) => {
        const instance = resolvers.get(someClass);
        if (!instance) throw new Error(`no resolver instance registered for ${String(someClass)}`);
        return instance;
      },
    },
    createEntityReferences({ defaultBackend: config.upstream.defaultBackend }),
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
    formatError,
    includeStacktraceInErrorResponses: false,
    introspection: config.limits.introspection,
    // No "Did you mean …?" outside the sandbox: it would describe the schema to anyone probing it.
    hideSchemaDetailsFromClientErrors: config.mode === "azure",
    csrfPrevention: true,
    allowBatchedHttpRequests: false,
    // main.ts owns SIGTERM/SIGINT (drain, then close pools); Apollo's own handler would stop it mid-drain.
    stopOnTerminationSignals: false,
    parseOptions: queryLimits.parseOptions,
    validationRules: queryLimits.validationRules,
    plugins: [
      appMetrics.plugin(),
      operationLogPlugin(),
      queryLimits.plugin,
      fastifyApolloDrainPlugin(fastify),
      // Apollo's default landing page loads from a CDN; the offline GraphiQL page replaces it.
      ApolloServerPluginLandingPageDisabled(),
      errorLoggingPlugin(),
    ],
  });
  await apollo.start();

  fastify.get("/healthz", async () => ({ status: "ok", mode: config.mode, version: VERSION }));
  // Ready when the store answers: a load balancer stops sending requests to a replica that cannot serve them.
  fastify.get("/readyz", async (_request, reply) => {
    const checks: Record<string, boolean> = { store: await store.db.ping().catch(() => false) };
    if (redis) checks.redis = await redis.ping().then((pong) => pong === "PONG", () => false);
    const ready = Object.values(checks).every(Boolean);
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ready" : "not ready", checks });
  });
  fastify.get("/metrics", async (_request, reply) => {
    reply.header("content-type", appMetrics.registry.contentType);
    return appMetrics.registry.metrics();
  });
  registerConsentCallback(fastify, {
    links,
    nonces: store.consentNonces,
    tenants: store.tenants,
    audit: (record) => audit(CONSENT_CALLBACK_ACTOR, null, record),
    async verifyTenant(tenantId) {
      const tenant = await store.tenants.get(tenantId);
      const diagnosis = await diagnoseToken(tokenProvider, tenantId, tenant?.backend ?? config.upstream.defaultBackend);
      if (diagnosis.error && diagnosis.error.code !== "MISSING_ROLE") {
        return { ok: false, code: diagnosis.error.code, message: diagnosis.error.message, hint: diagnosis.error.hint };
      }
      return { ok: true, roles: diagnosis.grantedRoles, missingRoles: [...(diagnosis.missingRoles?.read ?? []), ...(diagnosis.missingRoles?.update ?? [])] };
    },
    logger,
  });
  // Before the GraphQL route: a browser opening /graphql gets GraphiQL (served from installed packages only).
  registerGraphiQL(fastify, { endpoint: "/graphql" });
  await fastify.register(fastifyApollo(apollo), {
    path: "/graphql",
    context: async (request) => {
      // Who is calling, before anything else: a refused caller costs no parsing, no store and no upstream call.
      let caller: Caller;
      try {
        caller = await authenticator.authenticate(request.headers);
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
        loaders: createLoaders({ tokenProvider, tenants: store.tenants, incidents }, caller, {
          signal,
          deadline,
          onTenantLoads: (results) => appMetrics.observeTenantLoads(results),
        }),
        operation: { signal, deadline },
        audit: (record) => audit(caller, request.id, record),
      };
    },
  });

  let closed = false;
  return {
    fastify,
    logger,
    dispatcher,
    store,
    tokenProvider,
    incidents,
    async listen() {
      await fastify.listen({ host: config.host, port: config.port });
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
      await fastify.close();
      logger.debug("http server closed: operations drained");
      await apollo.stop();
      await dispatcher.close();
      logger.debug("upstream connections closed");
      if (ownsStore) await store.close();
      await redis?.quit().catch(() => redis.disconnect());
      logger.debug("store closed");
    },
  };
}

/** The actor of consent events: the customer's admin, known only through the signed state it brought back. */
const CONSENT_CALLBACK_ACTOR: Caller = { kind: "ANONYMOUS", id: "consent-callback", name: "customer administrator (consent callback)", grants: [] };

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
        async didEncounterErrors({ contextValue, errors }) {
          for (const error of errors) {
            const code = error.extensions?.code;
            if (code === undefined || code === ErrorCode.INTERNAL_SERVER_ERROR) {
              contextValue.logger.error({ err: error.originalError ?? error }, "unhandled error in operation");
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
