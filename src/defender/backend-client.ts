import type { Incident, IncidentPatch, IncidentsBackendName } from "./incident.js";

/** Public codes of an upstream (incidents API) failure of one tenant. */
export const UPSTREAM_ERROR_CODES = [
  "CONSENT_REQUIRED",
  "MISSING_ROLE",
  "THROTTLED",
  "UPSTREAM_TIMEOUT",
  "UPSTREAM_UNAVAILABLE",
  "UPSTREAM_BAD_RESPONSE",
  "NOT_FOUND",
  "BAD_REQUEST",
] as const;
export type UpstreamErrorCode = (typeof UPSTREAM_ERROR_CODES)[number];

/**
 * A failed call to an incidents backend, for one tenant. Carries the HTTP status, the upstream request id
 * and a short excerpt of the body for the log — never for a client (formatError and the outcome mapping
 * use `code`, `message` and `retryAfterSeconds` only).
 */
export class UpstreamError extends Error {
  override readonly name = "UpstreamError";
  constructor(
    readonly code: UpstreamErrorCode,
    message: string,
    readonly details: {
      tenantId: string;
      backend: IncidentsBackendName;
      status?: number;
      upstreamRequestId?: string;
      bodyExcerpt?: string;
      retryAfterSeconds?: number;
    },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get retryAfterSeconds(): number | undefined {
    return this.details.retryAfterSeconds;
  }
}

/** Per-call options of every backend method. */
export interface CallOptions {
  /** The GraphQL operation's deadline (or cancellation). */
  signal?: AbortSignal;
  /**
   * The same deadline as an epoch-ms instant, so the client can tell whether a wait (Retry-After, a rate
   * slot, a back-off) still fits: a signal cannot say how much time it has left. Default: now plus the
   * client's operation timeout.
   */
  deadline?: number;
}

export interface ListOptions extends CallOptions {
  /** Only incidents updated at or after this time (the incremental refresh watermark). */
  updatedSince?: Date;
}

export interface ListResult {
  incidents: Incident[];
  /** Upstream calls made (pages), for metrics and tests. */
  calls: number;
}

/**
 * One incidents backend. Implementations get a token per tenant from the TokenProvider, page through
 * results (nextLink when given, else $skip), honour rate budgets and retries, and map to `Incident`.
 * Every failure is an `UpstreamError` or a `TokenAcquisitionError` (token layer), for that tenant only.
 */
export interface IncidentsBackendClient {
  readonly backend: IncidentsBackendName;
  listIncidents(tenantId: string, options?: ListOptions): Promise<ListResult>;
  /** Resolves undefined when the incident does not exist. */
  getIncident(tenantId: string, incidentId: string, options?: CallOptions): Promise<Incident | undefined>;
  /** Writes through; never retried blindly. Returns the incident as the backend answers it. */
  updateIncident(tenantId: string, incidentId: string, patch: IncidentPatch, options?: CallOptions): Promise<Incident>;
}
