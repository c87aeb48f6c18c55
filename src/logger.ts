import { pino, type DestinationStream, type Logger } from "pino";

/**
 * Paths pino censors wherever they appear in a log object. Secrets should never reach a log call in the
 * first place; this is the second line of defence for headers and credential objects.
 */
export const REDACT_PATHS = [
  "req.headers.authorization",
  "req.headers.cookie",
  'req.headers["x-api-key"]',
  "headers.authorization",
  "authorization",
  "clientSecret",
  "client_secret",
  "accessToken",
  "access_token",
  "privateKey",
  "*.clientSecret",
  "*.client_secret",
  "*.accessToken",
  "*.access_token",
  "*.privateKey",
  "*.authorization",
  "apiKey",
  "*.apiKey",
  '*["x-api-key"]',
  "tokenCacheKey",
  "*.tokenCacheKey",
];

/**
 * Fields a database driver puts on its errors (PGlite and node-postgres: the statement, its parameters,
 * where in it the error is): they can carry a caller's input or stored values, so no log line shows them.
 */
const DATABASE_ERROR_FIELDS = ["query", "params", "queryOptions", "parameters", "where", "internalQuery"] as const;

/** pino's error serializer, less the database fields, on the error and its causes. */
export function serializeError(error: unknown): unknown {
  const serialized = pino.stdSerializers.err(error as Error) as unknown;
  const strip = (value: unknown, depth: number): void => {
    if (!value || typeof value !== "object" || depth > 5) return;
    const record = value as Record<string, unknown>;
    for (const field of DATABASE_ERROR_FIELDS) delete record[field];
    strip(record.cause, depth + 1);
  };
  strip(serialized, 0);
  return serialized;
}

/** The process logger: JSON lines on stdout (or `destination`, for tests that inspect the log). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: "crosswatch" },
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    serializers: { err: serializeError, error: serializeError },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}
