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
  /** An unordered list would have to page past the service's `$skip` ceiling (see watermark-paging.ts). */
  "UPSTREAM_PAGING_LIMIT",
  /**
   * The legacy advanced hunting API (`/api/advancedhunting/run`) answered as retired (410, or a 400/404 saying
   * so: the real retired answer is undocumented). Fixed by switching the tenant's hunting backend to Graph.
   */
  "HUNTING_BACKEND_RETIRED",
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
      /**
       * The service's own `error.message` of a 4xx answer (bounded, token-like text removed). Only for code
       * that may show it to the caller whose request it was about (a hunting query's syntax error); like
       * `bodyExcerpt` it can quote the request, so it is never logged by that code.
       */
      upstreamMessage?: string;
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
  /** Only incidents updated at or after this time (the incremental refresh watermark, or where a list resumes). */
  updatedSince?: Date;
  /**
   * Pages this call may read (the caller's share of the rate budget); when more are left the result says
   * `complete: false` and `resumeFrom` where to go on. Default: no bound (the list ends by itself: every
   * watermark page moves forward, and offset paging stops at the skip ceiling).
   */
  maxPages?: number;
  /**
   * Called after each page with the incidents it brought that the list had not already read, and where
   * a list would resume after it (everything updated before `resumeFrom` has been listed; it does not move
   * while paging by offset). The list awaits it before asking for the next page, so a caller can commit
   * each page as it arrives (the mirror's resumable first load). With it, `ListResult.incidents` is empty:
   * nothing is accumulated beyond the ids the list needs to skip duplicates.
   */
  onPage?: (page: ListedPage) => Promise<void>;
}

export interface ListedPage {
  incidents: Incident[];
  resumeFrom: Date | null;
  /** Upstream calls so far in this list. */
  calls: number;
}

export interface ListResult {
  /** One per incident id (the later `lastUpdateTime` wins). */
  incidents: Incident[];
  /** Upstream calls made (pages, retries included), for metrics and tests. */
  calls: number;
  /** False when the list stopped early: `maxPages` reached, or `stoppedBy` failed a page after others were read. */
  complete: boolean;
  /**
   * Every incident updated before this time (and at or after `updatedSince`) has been listed: a later
   * list from here (`updatedSince: resumeFrom`) continues without a gap. Complete lists: the greatest
   * `lastUpdateTime` read. Null when nothing bounds it (an empty first list, or one stopped before any
   * ordered page).
   */
  resumeFrom: Date | null;
  /** `watermark` (ordered by lastUpdateTime), or `offset` when the service refused or ignored the order. */
  paging: "watermark" | "offset";
  /** What stopped an incomplete list after some pages (an UpstreamError, a token error, the signal's reason). */
  stoppedBy?: unknown;
}

/**
 * One incidents backend. Implementations get a token per tenant from the TokenProvider, page through
 * results by watermark (watermark-paging.ts; offset paging within the skip ceiling when the service does
 * not order), honour rate budgets and retries, and map to `Incident`. Every failure is an `UpstreamError`
 * or a `TokenAcquisitionError` (token layer), for that tenant only; a list failing after some pages
 * returns them instead (`complete: false`, `stoppedBy`).
 */
export interface IncidentsBackendClient {
  readonly backend: IncidentsBackendName;
  listIncidents(tenantId: string, options?: ListOptions): Promise<ListResult>;
  /** Resolves undefined when the incident does not exist. */
  getIncident(tenantId: string, incidentId: string, options?: CallOptions): Promise<Incident | undefined>;
  /** Writes through; never retried blindly. Returns the incident as the backend answers it. */
  updateIncident(tenantId: string, incidentId: string, patch: IncidentPatch, options?: CallOptions): Promise<Incident>;
  /**
   * Reads incidents whose list did not carry their alerts (Graph: `alerts: null`), alerts included,
   * settled per incident in the order asked. Absent on a backend whose lists always carry alerts.
   */
  loadAlerts?(tenantId: string, incidentIds: readonly string[], options?: CallOptions): Promise<AlertsLoad[]>;
}

/** One incident of `loadAlerts`: read (alerts loaded; undefined when it no longer exists), or why not. */
export type AlertsLoad = { ok: true; incident: Incident | undefined } | { ok: false; error: unknown };
