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
];

/** The process logger: JSON lines on stdout (or `destination`, for tests that inspect the log). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: "crosswatch" },
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}
