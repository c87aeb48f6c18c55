import type { Logger } from "pino";
import { INCIDENT_ROLES } from "../auth/token-diagnostics.js";
import { LASTING_TOKEN_ERROR_CODES, TOKEN_ERROR_CODES, TokenAcquisitionError, type TokenErrorCode } from "../auth/token-errors.js";
import { UPSTREAM_ERROR_CODES, UpstreamError, type UpstreamErrorCode } from "../defender/backend-client.js";

/**
 * Every public code a tenant's failure can have: the token layer's, the incidents backend's, and
 * DEADLINE_EXCEEDED (the operation's deadline or signal ended the wait) / INTERNAL (anything else).
 * CONSENT_REQUIRED, MISSING_ROLE, THROTTLED and INTERNAL occur in both layers and mean the same there.
 */
export type TenantErrorCode = TokenErrorCode | UpstreamErrorCode | "DEADLINE_EXCEEDED" | "TENANT_FORBIDDEN" | "INCOMPLETE";
export const TENANT_ERROR_CODES: readonly TenantErrorCode[] = [
  ...new Set<TenantErrorCode>([...TOKEN_ERROR_CODES, ...UPSTREAM_ERROR_CODES, "DEADLINE_EXCEEDED", "TENANT_FORBIDDEN", "INCOMPLETE"]),
];

/** Why one tenant failed, in words a partner can show: no upstream text, URL or token. */
export interface TenantError {
  code: TenantErrorCode;
  message: string;
  /** What a person can do about it. */
  hint: string;
  /**
   * Seconds to wait before asking again: when the upstream said so, or while Crosswatch remembers a lasting
   * failure (then asking sooner gives the same answer without any call).
   */
  retryAfterSeconds?: number;
}

/** How loading one tenant's incidents went (the GraphQL `TenantOutcome`). */
export interface TenantOutcome {
  tenantId: string;
  /** True when the incidents returned are current (fresh cache or a successful refresh). */
  ok: boolean;
  /** True when the incidents returned came from the cache without a refresh in this call. */
  fromCache: boolean;
  /** When the returned incidents were fetched from upstream; null when none are returned. */
  fetchedAt: Date | null;
  /** Time this caller waited, milliseconds. */
  durationMs: number;
  /**
   * False while the tenant's first list is still under way (several queries for a large tenant), or when
   * nothing was read: the incidents returned are those read so far, and the next query goes on from there.
   */
  complete: boolean;
  error?: TenantError;
  /** Where the tenant's sync stands (the mirror's state); absent for a tenant never looked at (TENANT_FORBIDDEN). */
  syncState?: "FRESH" | "STALE" | "SYNCING" | "FAILING" | "NEVER_SYNCED";
  /** Incidents the mirror holds for the tenant. */
  incidentsMirrored?: number;
}

/**
 * Codes after which the same request may succeed later without anyone changing anything. The service
 * keeps (and may serve) a tenant's cached incidents through these, and drops them after any other.
 */
const TRANSIENT_CODES: ReadonlySet<TenantErrorCode> = new Set<TenantErrorCode>([
  "THROTTLED",
  "TOKEN_ENDPOINT_UNAVAILABLE",
  "UPSTREAM_TIMEOUT",
  "UPSTREAM_UNAVAILABLE",
  "UPSTREAM_BAD_RESPONSE",
  "DEADLINE_EXCEEDED",
  "INTERNAL",
  "INCOMPLETE",
  // Not lasting either: the incidents read so far are kept and served, and a later list may get further.
  "UPSTREAM_PAGING_LIMIT",
]);

/** Whether a failure with this code is expected to pass by itself (outage, throttling, deadline, bug). */
export function isTransientCode(code: TenantErrorCode): boolean {
  return TRANSIENT_CODES.has(code);
}

/**
 * Codes after which nothing will change until someone acts (consent, the app's roles, the tenant id, the
 * app's credential): the token layer's lasting codes, and the incidents API refusing the app's token (401
 * twice, 403). Remembered for TENANT_FAILURE_MEMORY_SECONDS. Not NOT_FOUND or BAD_REQUEST: they are about
 * one request, not the tenant.
 */
const LASTING_CODES: ReadonlySet<TenantErrorCode> = new Set<TenantErrorCode>([...LASTING_TOKEN_ERROR_CODES, "CONSENT_REQUIRED", "MISSING_ROLE"]);

/** Whether a tenant failure with this code will last until someone acts, so asking again soon is waste. */
export function isLastingCode(code: TenantErrorCode): boolean {
  return LASTING_CODES.has(code);
}

const DEADLINE_MESSAGE = "the operation's deadline passed before the tenant's incidents arrived";
const DEADLINE_HINT =
  "The tenant answered too slowly for this request, so its incidents are missing or older: ask again in a moment — the refresh goes on and its result will be cached.";
const INTERNAL_HINT = "An unexpected error occurred in Crosswatch: look in the server log for the tenant id and this time, and report it.";

/**
 * The one answer for a tenant the caller may not see and for a tenant that is not registered, so a caller
 * cannot learn which tenants exist outside its scope. No token is acquired and no upstream call is made.
 */
export function tenantForbidden(tenantId: string): TenantError {
  return {
    code: "TENANT_FORBIDDEN",
    message: `tenant ${tenantId} is not registered or is outside your tenant scope`,
    hint: "Check the tenant id; if it is right, ask a Crosswatch administrator to register the tenant or to widen your API key's or app role's tenant scope.",
  };
}

/** A tenant error for a list that read its share of pages (`maxPagesPerRefresh`) and has more to read. */
export function incomplete(held: number): TenantError {
  return {
    code: "INCOMPLETE",
    message: `the tenant's incidents are still being read: ${held} so far`,
    hint: "The tenant's first load is still under way: the incidents mirrored so far are returned, and the sync engine goes on from where it stopped (nothing is read twice), at the tenant's rate budget. Ask again later; complete turns true when all are in.",
  };
}

/** A tenant error for a wait ended by the operation's deadline or signal. */
export function deadlineExceeded(): TenantError {
  return { code: "DEADLINE_EXCEEDED", message: DEADLINE_MESSAGE, hint: DEADLINE_HINT };
}

/**
 * Maps whatever loading a tenant threw to its public error:
 * - `TokenAcquisitionError` → its own code, message and hint (`toPublic()`);
 * - `UpstreamError` → its code and message (any URL in it replaced), a hint per code;
 * - `AbortError` / `TimeoutError` (the operation's signal or deadline) → DEADLINE_EXCEEDED;
 * - anything else → INTERNAL with the message "internal error": the original may hold upstream URLs or
 *   bodies, so it only goes to `logger` (as an error, with the tenant id).
 */
export function toTenantError(error: unknown, context: { tenantId?: string; logger?: Logger | undefined } = {}): TenantError {
  if (error instanceof TokenAcquisitionError) return error.toPublic();
  if (error instanceof UpstreamError) {
    return {
      code: error.code,
      message: scrubUrls(error.message),
      hint: upstreamHint(error),
      ...(error.retryAfterSeconds !== undefined ? { retryAfterSeconds: error.retryAfterSeconds } : {}),
    };
  }
  if (isAbort(error)) return deadlineExceeded();
  context.logger?.error({ err: error, tenantId: context.tenantId }, "unexpected error while loading a tenant's incidents");
  return { code: "INTERNAL", message: "internal error", hint: INTERNAL_HINT };
}

/** The roles that let the app read (and update) a backend's incidents, for hints. */
function roleNames(backend: "defender" | "graph"): string {
  return INCIDENT_ROLES[backend].map((r) => r.role).join(" or ");
}

function upstreamHint(error: UpstreamError): string {
  const backend = error.details.backend;
  const api = backend === "graph" ? "Microsoft Graph security API" : "Microsoft Defender API";
  const code = error.code;
  switch (code) {
    case "CONSENT_REQUIRED":
      return `The ${api} refused the app's token: consent was probably removed in the customer's tenant. Send the customer's Global Administrator the consent link, then verify the tenant again.`;
    case "MISSING_ROLE":
      return `The ${api} refused the app's token for lack of the incident permission (${roleNames(backend)}): ask the customer's Global Administrator to open the consent link again so the app's current permissions are granted.`;
    case "THROTTLED":
      return `The ${api} is throttling this tenant's requests: wait for retryAfterSeconds, then try again. Nothing needs fixing.`;
    case "UPSTREAM_TIMEOUT":
      return `The ${api} did not answer in time: try again later; if it persists, check the Microsoft 365 service health page.`;
    case "UPSTREAM_UNAVAILABLE":
      return `The ${api} is unavailable or unreachable: try again later; if it persists, check outbound HTTPS from Crosswatch and the Microsoft 365 service health page.`;
    case "UPSTREAM_BAD_RESPONSE":
      return `The ${api} answered something Crosswatch could not read: try again; if it persists, report it with the upstream request id from the server log.`;
    case "NOT_FOUND":
      return `The ${api} does not know this incident (or the tenant has none of that kind): check the incident id and the tenant's backend.`;
    case "UPSTREAM_PAGING_LIMIT":
      return `The ${api} did not order this tenant's incidents by last update, and paging further would pass the offset where its pages stop: the incidents read so far are returned, the rest cannot be read this way. Report it with the tenant id; setting the tenant's backend to the other API may help.`;
    case "HUNTING_BACKEND_RETIRED":
      return `The legacy advanced hunting API is retired for this tenant: set the tenant's huntingBackend to GRAPH (Microsoft Graph runHuntingQuery, application permission ThreatHunting.Read.All) and hunt again.`;
    case "BAD_REQUEST":
      return `The ${api} refused the request as invalid: check the values sent (for updates, the classification and determination pair); if they are right, report it.`;
    default:
      return unreachable(code);
  }
}

function isAbort(error: unknown): boolean {
  return (error instanceof Error || error instanceof DOMException) && (error.name === "AbortError" || error.name === "TimeoutError");
}

/** Upstream messages should hold no URL; should one slip in, it leaves no address (or query string) behind. */
function scrubUrls(message: string): string {
  return message.replace(/\bhttps?:\/\/\S+/gi, "[url]");
}

function unreachable(value: never): never {
  throw new Error(`unreachable case: ${JSON.stringify(value)}`);
}
