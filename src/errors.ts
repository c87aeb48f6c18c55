import { unwrapResolverError } from "@apollo/server/errors";
import { GraphQLError, type GraphQLFormattedError } from "graphql";
import { TENANT_ERROR_CODES } from "./incidents/outcome.js";
import { StoreError } from "./store/errors.js";

/** Every `extensions.code` a client can see. Stable: clients switch on these. */
export enum ErrorCode {
  BAD_USER_INPUT = "BAD_USER_INPUT",
  GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED",
  GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED",
  BAD_REQUEST = "BAD_REQUEST",
  PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND",
  PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED",
  OPERATION_RESOLUTION_FAILURE = "OPERATION_RESOLUTION_FAILURE",
  NOT_FOUND = "NOT_FOUND",
  ALREADY_EXISTS = "ALREADY_EXISTS",
  /** No credentials, or credentials that are not valid (HTTP 401). */
  UNAUTHENTICATED = "UNAUTHENTICATED",
  /** Valid credentials whose role does not allow the action (HTTP 403 for a whole request). */
  FORBIDDEN = "FORBIDDEN",
  /** Entra ID's signing keys could not be fetched to check a bearer token (HTTP 503). */
  AUTH_UNAVAILABLE = "AUTH_UNAVAILABLE",
  /** The operation's estimated cost is above the limit (HTTP 400). */
  COST_LIMIT_EXCEEDED = "COST_LIMIT_EXCEEDED",
  /** Too many operations running and waiting (HTTP 503 with Retry-After). */
  SERVER_BUSY = "SERVER_BUSY",
  INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR",
}

/** Codes a client may see: the general ones, and a tenant's failure codes for single-tenant operations. */
const PUBLIC_CODES = new Set<string>([...Object.values(ErrorCode), ...TENANT_ERROR_CODES.filter((c) => c !== "INTERNAL")]);

/**
 * Apollo's `formatError`: errors that carry a known public code pass through without their stack;
 * anything else (a bug, an upstream failure nobody mapped) becomes INTERNAL_SERVER_ERROR with a generic
 * message, so no stack trace, upstream URL or upstream body ever reaches a client. The original is
 * logged by the error-logging plugin, with the request id the client also receives.
 */
export function formatError(formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError {
  const code = formatted.extensions?.code;
  if (typeof code === "string" && PUBLIC_CODES.has(code) && code !== ErrorCode.INTERNAL_SERVER_ERROR) {
    const { stacktrace: _stacktrace, ...extensions } = formatted.extensions ?? {};
    void _stacktrace;
    return { ...formatted, extensions };
  }
  void unwrapResolverError(error);
  return {
    message: "Internal server error",
    ...(formatted.locations ? { locations: formatted.locations } : {}),
    ...(formatted.path ? { path: formatted.path } : {}),
    extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR },
  };
}

/** graphql-js's suggestion suffix (" Did you mean "x"?", " Did you mean the enum value "Y"?"), to the end. */
const SUGGESTION = /\s*Did you mean\b[\s\S]*$/;

/**
 * A formatted error without graphql-js's "Did you mean …?" suggestions, which name fields, input fields,
 * enum values and types a caller did not ask for. Outside the sandbox every error passes through this:
 * Apollo's `hideSchemaDetailsFromClientErrors` strips them from validation errors only, not from variable
 * coercion or execution errors.
 */
export function withoutSuggestions(formatted: GraphQLFormattedError): GraphQLFormattedError {
  const message = formatted.message.replace(SUGGESTION, "");
  return message === formatted.message ? formatted : { ...formatted, message };
}

/** The never-branch of exhaustive switches. */
export function unreachable(value: never): never {
  throw new Error(`unreachable case: ${JSON.stringify(value)}`);
}

/**
 * Turns a store's refusal into the public GraphQL error; anything else is rethrown untouched (and then
 * masked by `formatError`).
 */
export function toPublicError(error: unknown): never {
  if (error instanceof StoreError) {
    const code =
      error.code === "INVALID_INPUT"
        ? ErrorCode.BAD_USER_INPUT
        : error.code === "ALREADY_EXISTS"
          ? ErrorCode.ALREADY_EXISTS
          : ErrorCode.NOT_FOUND;
    throw new GraphQLError(error.message, {
      extensions: { code, ...(error.details.field ? { field: error.details.field } : {}) },
    });
  }
  throw error;
}

/** A BAD_USER_INPUT error naming the argument at fault, with what to send instead when that helps. */
export function badInput(message: string, field?: string, hint?: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: ErrorCode.BAD_USER_INPUT, ...(field ? { field } : {}), ...(hint ? { hint } : {}) } });
}
