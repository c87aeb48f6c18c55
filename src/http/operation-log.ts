import type { ApolloServerPlugin } from "@apollo/server";
import { visit, type DocumentNode } from "graphql";
import { pino } from "pino";
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

/** Shorter argument values are left in place: cutting every "eu" or "HIGH" out would garble the log, and they tell nothing. */
const MIN_HIDDEN_LENGTH = 6;
/** At most this many distinct argument values are cut out, the longest first (any string is also cut to MAX_LOGGED_STRING). */
const MAX_HIDDEN_VALUES = 200;
/** Any string of a logged error is cut to this many characters, whatever it holds. */
const MAX_LOGGED_STRING = 4096;
const HIDDEN = "[argument]";

/**
 * An error as the log may show it: pino's own error serialisation (type, message, stack, code, cause, …)
 * with every argument value of the operation — each string in its variables and each string literal in
 * its document — replaced by `[argument]`, and every string cut to MAX_LOGGED_STRING characters. An
 * error whose message repeats what a caller sent (a library quoting its input) is logged without it.
 */
export function errorForLog(
  error: unknown,
  request: { variables?: Record<string, unknown> | undefined | null },
  document?: DocumentNode | undefined,
): unknown {
  const serialised = error instanceof Error ? pino.stdSerializers.err(error) : { message: String(error) };
  const hidden = argumentValues(request.variables, document);
  return scrub(serialised, hidden, 0);
}

/** The strings a caller sent as argument values, longest first (so a value's parts never remain). */
function argumentValues(variables: Record<string, unknown> | undefined | null, document: DocumentNode | undefined): string[] {
  const values = new Set<string>();
  const collect = (value: unknown, depth: number): void => {
    if (values.size > 10_000 || depth > 32) return;
    if (typeof value === "string") {
      if (value.length >= MIN_HIDDEN_LENGTH) values.add(value);
    } else if (Array.isArray(value)) {
      for (const item of value) collect(item, depth + 1);
    } else if (typeof value === "object" && value !== null) {
      for (const item of Object.values(value)) collect(item, depth + 1);
    }
  };
  collect(variables, 0);
  if (document) {
    visit(document, {
      StringValue(node) {
        collect(node.value, 0);
      },
    });
  }
  return [...values].sort((a, b) => b.length - a.length).slice(0, MAX_HIDDEN_VALUES);
}

function scrub(value: unknown, hidden: readonly string[], depth: number): unknown {
  if (typeof value === "string") {
    let out = value;
    for (const text of hidden) if (out.includes(text)) out = out.replaceAll(text, HIDDEN);
    return out.length > MAX_LOGGED_STRING ? `${out.slice(0, MAX_LOGGED_STRING)}…[cut]` : out;
  }
  if (depth > 8 || typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) return value.map((item) => scrub(item, hidden, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, scrub(item, hidden, depth + 1)]));
}
