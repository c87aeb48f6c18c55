import type { ApolloServerPlugin } from "@apollo/server";
import type { GraphQLContext } from "../resolvers/context.js";

/**
 * One structured log line per GraphQL operation: request id and caller (from the context's logger),
 * operation name and type, how many tenants it reached, how long it took, and the error codes it ended
 * with. Never the query text or variables: they can hold tenant data, and a caller's input is no log's business.
 */
export function operationLogPlugin(): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      const started = performance.now();
      return {
        async willSendResponse({ contextValue, operation, operationName, response, errors }) {
          const bodyErrors = response.body.kind === "single" ? (response.body.singleResult.errors ?? []) : [];
          const codes = [...new Set([...(errors ?? []), ...bodyErrors].map((e) => String(e.extensions?.code ?? "INTERNAL_SERVER_ERROR")))];
          contextValue.logger.info(
            {
              operationName: operationName ?? null,
              operationType: operation?.operation ?? null,
              tenants: contextValue.loaders.tenantsTouched.size,
              durationMs: Math.round(performance.now() - started),
              ...(codes.length > 0 ? { errorCodes: codes } : {}),
            },
            "graphql operation",
          );
        },
      };
    },
  };
}
