import { randomUUID } from "node:crypto";
import { ApolloServer, type ApolloServerPlugin } from "@apollo/server";
import { ApolloServerPluginLandingPageDisabled } from "@apollo/server/plugin/disabled";
import fastifyApollo, { fastifyApolloDrainPlugin } from "@as-integrations/fastify";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { Dispatcher } from "undici";
import type { Config } from "./config.js";
import { ErrorCode, formatError } from "./errors.js";
import { createDispatcher } from "./http/dispatcher.js";
import { createLogger } from "./logger.js";
import type { GraphQLContext } from "./resolvers/context.js";
import { ServerInfoResolver } from "./resolvers/server-info.resolver.js";
import { buildCrosswatchSchema } from "./schema/build-schema.js";
import { IncidentsBackendKind, ServerInfo, ServerMode } from "./schema/server-info.type.js";
import { VERSION } from "./version.js";

export interface App {
  fastify: FastifyInstance;
  logger: Logger;
  /** The one undici dispatcher every upstream call goes through. */
  dispatcher: Dispatcher;
  /** Listens on `config.host:config.port` (port 0 picks a free one) and returns the base URL. */
  listen(): Promise<string>;
  /** Stops accepting, drains in-flight operations, closes the dispatcher. Safe to call twice. */
  close(): Promise<void>;
}

export interface AppDependencies {
  logger?: Logger;
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

  const fastify = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // One log line per GraphQL operation is what operators want, not two per HTTP request.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    // Honour a caller's request id when it is a plain token, so logs correlate across a gateway.
    genReqId: (request) => {
      const header = request.headers["x-request-id"];
      return typeof header === "string" && REQUEST_ID.test(header) ? header : randomUUID();
    },
    forceCloseConnections: "idle",
  });
  fastify.addHook("onSend", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });

  const info = new ServerInfo();
  info.mode = config.mode === "sandbox" ? ServerMode.SANDBOX : ServerMode.AZURE;
  info.version = VERSION;
  info.defaultIncidentsBackend =
    config.upstream.defaultBackend === "graph" ? IncidentsBackendKind.GRAPH : IncidentsBackendKind.DEFENDER;
  info.authorityHost = config.upstream.authorityHost;
  const resolvers = new Map<unknown, unknown>([[ServerInfoResolver, new ServerInfoResolver(info)]]);
  const schema = await buildCrosswatchSchema({
    get: (someClass) => {
      const instance = resolvers.get(someClass);
      if (!instance) throw new Error(`no resolver instance registered for ${String(someClass)}`);
      return instance;
    },
  });

  const apollo = new ApolloServer<GraphQLContext>({
    schema,
    formatError,
    includeStacktraceInErrorResponses: false,
    plugins: [
      fastifyApolloDrainPlugin(fastify),
      // Apollo's default landing page loads from a CDN; the offline GraphiQL page replaces it.
      ApolloServerPluginLandingPageDisabled(),
      errorLoggingPlugin(),
    ],
  });
  await apollo.start();

  fastify.get("/healthz", async () => ({ status: "ok", mode: config.mode, version: VERSION }));
  await fastify.register(fastifyApollo(apollo), {
    path: "/graphql",
    context: async (request) => ({ requestId: request.id, logger: logger.child({ requestId: request.id }) }),
  });

  let closed = false;
  return {
    fastify,
    logger,
    dispatcher,
    async listen() {
      await fastify.listen({ host: config.host, port: config.port });
      const address = fastify.server.address();
      if (!address || typeof address === "string") throw new Error("server is not listening on a TCP port");
      const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
      return `http://${host}:${address.port}`;
    },
    async close() {
      if (closed) return;
      closed = true;
      await fastify.close();
      await apollo.stop();
      await dispatcher.close();
    },
  };
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
