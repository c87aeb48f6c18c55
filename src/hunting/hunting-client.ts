import type { Logger } from "pino";
import type { Dispatcher } from "undici";
import type { TokenProvider } from "../auth/token-provider.js";
import { UpstreamError, type CallOptions } from "../defender/backend-client.js";
import { IncidentsHttp, resolveDeadline, type RetryPolicy, type UpstreamObserver, type UpstreamTimeouts } from "../defender/http.js";
import type { RateBudget } from "../defender/rate-budget.js";

/** Where a tenant's hunting queries run. */
export type HuntingBackendName = "graph" | "defender";

/**
 * The application permission each hunting backend needs in the customer tenant: Graph's
 * `ThreatHunting.Read.All` (Microsoft Graph resource), the legacy API's `AdvancedHunting.Read.All` (Microsoft
 * Threat Protection resource; reference 1.2 — issue 15 calls it AdvancedQuery.Read.All, the Defender
 * permission page names AdvancedHunting.Read.All).
 */
export const HUNTING_ROLES: Record<HuntingBackendName, string> = {
  graph: "ThreatHunting.Read.All",
  defender: "AdvancedHunting.Read.All",
};

/** Both services return at most 100,000 rows (documented for legacy, assumed for Graph). */
export const DEFAULT_HUNTING_ROW_LIMIT = 100_000;

/**
 * A hunt may run long: the legacy API times out requests after 3 minutes and documents 200 s per request
 * (reference 1.12). The operation's deadline bounds every hunt anyway; these only keep the incident
 * clients' shorter per-attempt timers from cutting a hunt that the deadline allows.
 */
const HUNTING_TIMEOUTS: Partial<UpstreamTimeouts> = { headersMs: 200_000, bodyMs: 30_000, attemptMs: 200_000 };

/** 100,000 rows of a few hundred bytes each; a larger answer is refused as UPSTREAM_BAD_RESPONSE. */
const DEFAULT_MAX_HUNTING_RESPONSE_BYTES = 128 * 1024 * 1024;

export interface HuntingColumn {
  name: string;
  /** The service's type name: String, DateTime, Int32, Int64, Double, Boolean, Dynamic, Guid, … */
  type: string;
}

/** One tenant's answer, mapped to one shape for both backends. */
export interface HuntingAnswer {
  backend: HuntingBackendName;
  columns: HuntingColumn[];
  rows: Record<string, unknown>[];
  /** `rows.length >= rowLimit`: the service cut the answer, more rows matched. */
  truncated: boolean;
}

export interface HuntOptions extends CallOptions {
  /** ISO-8601 duration; sent to Graph only (the legacy API takes none and always searches 30 days). */
  timespan?: string | undefined;
}

export interface HuntingClientOptions {
  dispatcher: Dispatcher;
  tokenProvider: TokenProvider;
  /** The incident clients' budget: its `defender.hunt` and `graph.hunt` buckets, and the one concurrency cap. */
  budget: RateBudget;
  /** `config.upstream.defenderApiBase`. */
  defenderApiBase: string;
  /** `config.upstream.graphApiBase`, version segment included. */
  graphApiBase: string;
  /** An answer with this many rows is reported truncated. Default 100,000. */
  rowLimit?: number;
  timeouts?: Partial<UpstreamTimeouts>;
  retry?: Partial<RetryPolicy>;
  maxResponseBytes?: number;
  logger?: Logger;
  observe?: UpstreamObserver;
}

/**
 * Advanced hunting in one tenant, over either backend, through the incident clients' request helper
 * (`IncidentsHttp`: token, rate budget, deadline, Retry-After, size limit, error mapping):
 * - Graph `POST {graph}/security/runHuntingQuery` `{Query, Timespan?}` → `{schema:[{name,type}], results}`;
 * - legacy `POST {defender}/api/advancedhunting/run` `{Query}` → `{Schema:[{Name,Type}], Results}`.
 *
 * A hunt is a POST, so the helper treats it as a write: never re-sent after a byte may have reached the
 * service (a 5xx, a reset, a timeout is reported, not retried — each run costs the tenant's hunting CPU
 * quota), re-sent once after a 401 with a fresh token; a 429 is reported at once as THROTTLED with its
 * Retry-After (and holds the tenant's hunting bucket until then).
 *
 * Errors (all `UpstreamError`, or the token layer's `TokenAcquisitionError`), re-worded for hunting:
 * 400 → BAD_REQUEST with the service's own message (the caller's query's syntax or semantic error);
 * 403 → MISSING_ROLE naming the hunting permission; 410, or a 400/404 whose message says the API is
 * retired → HUNTING_BACKEND_RETIRED (ASSUMED: the real retired answer is undocumented); 429 → THROTTLED;
 * timeouts → UPSTREAM_TIMEOUT. The query text is never logged, nor put into an error message.
 */
export class HuntingClient {
  readonly rowLimit: number;
  private readonly graphUrl: string;
  private readonly defenderUrl: string;
  private readonly http: Record<HuntingBackendName, IncidentsHttp>;

  constructor(options: HuntingClientOptions) {
    this.rowLimit = options.rowLimit ?? DEFAULT_HUNTING_ROW_LIMIT;
    if (!Number.isInteger(this.rowLimit) || this.rowLimit < 1) throw new RangeError("rowLimit must be a positive integer");
    this.graphUrl = `${options.graphApiBase.replace(/\/+$/, "")}/security/runHuntingQuery`;
    this.defenderUrl = `${options.defenderApiBase.replace(/\/+$/, "")}/api/advancedhunting/run`;
    const common = {
      dispatcher: options.dispatcher,
      tokenProvider: options.tokenProvider,
      budget: options.budget,
      timeouts: { ...HUNTING_TIMEOUTS, ...options.timeouts },
      maxResponseBytes: options.maxResponseBytes ?? DEFAULT_MAX_HUNTING_RESPONSE_BYTES,
      ...(options.retry ? { retry: options.retry } : {}),
      ...(options.logger ? { logger: options.logger.child({ component: "hunting" }) } : {}),
      ...(options.observe ? { observe: options.observe } : {}),
    };
    this.http = {
      graph: new IncidentsHttp({ ...common, backend: "graph", resource: "graph" }),
      defender: new IncidentsHttp({ ...common, backend: "defender", resource: "defender" }),
    };
  }

  /**
   * Runs `query` in one tenant on `backend`.
   *
   * @throws UpstreamError (codes above); TokenAcquisitionError from the token layer
   */
  async run(tenantId: string, backend: HuntingBackendName, query: string, options: HuntOptions = {}): Promise<HuntingAnswer> {
    const http = this.http[backend];
    const deadline = resolveDeadline(options, http.timeouts, http.now());
    let json: unknown;
    try {
      const answer = await http.send({
        tenantId,
        method: "POST",
        url: backend === "graph" ? this.graphUrl : this.defenderUrl,
        bucket: backend === "graph" ? "graph.hunt" : "defender.hunt",
        operation: "hunt",
        body: backend === "graph" && options.timespan ? { Query: query, Timespan: options.timespan } : { Query: query },
        signal: options.signal,
        deadline,
      });
      json = answer.json;
    } catch (error) {
      throw error instanceof UpstreamError ? huntingError(error, backend) : error;
    }
    const mapped = backend === "graph" ? mapGraphHunt(json) : mapDefenderHunt(json);
    if (!mapped) {
      throw new UpstreamError("UPSTREAM_BAD_RESPONSE", `${LABEL[backend]} hunt for tenant ${tenantId}: the answer is not a hunting result`, {
        tenantId,
        backend,
      });
    }
    return { backend, ...mapped, truncated: mapped.rows.length >= this.rowLimit };
  }
}

const LABEL: Record<HuntingBackendName, string> = { graph: "Microsoft Graph", defender: "Defender API" };

/** Words in a service message that mean the legacy hunting API is gone (ASSUMED; the real answer is undocumented). */
const RETIRED = /\b(retired|retirement|deprecated|no longer (available|supported))\b/i;

/** Re-words the request helper's incident-oriented errors for a hunt. Exported for tests. */
export function huntingError(error: UpstreamError, backend: HuntingBackendName): UpstreamError {
  const { tenantId } = error.details;
  const status = error.details.status;
  const serviceMessage = error.details.upstreamMessage;
  const prefix = `${LABEL[backend]} hunt for tenant ${tenantId}`;
  // Ids and status stay for operators; the body excerpt and the service's message (which may quote the query) go.
  const details: UpstreamError["details"] = { tenantId, backend };
  if (status !== undefined) details.status = status;
  if (error.details.upstreamRequestId) details.upstreamRequestId = error.details.upstreamRequestId;
  if (error.details.retryAfterSeconds !== undefined) details.retryAfterSeconds = error.details.retryAfterSeconds;
  const make = (code: UpstreamError["code"], message: string) => new UpstreamError(code, `${prefix}: ${message}`, details, { cause: error.cause });

  if (backend === "defender" && (status === 410 || ((status === 400 || status === 404) && serviceMessage !== undefined && RETIRED.test(serviceMessage)))) {
    return make("HUNTING_BACKEND_RETIRED", "the legacy advanced hunting API answered that it is retired");
  }
  switch (error.code) {
    case "BAD_REQUEST":
      return make("BAD_REQUEST", serviceMessage ? `the query was refused: ${serviceMessage}` : `the query was refused (HTTP ${status ?? "?"})`);
    case "MISSING_ROLE":
      return make("MISSING_ROLE", `the app lacks the hunting permission ${HUNTING_ROLES[backend]} in this tenant (HTTP ${status ?? 403})`);
    case "NOT_FOUND":
      // No such endpoint for this tenant: not an incident that is missing.
      return make("UPSTREAM_BAD_RESPONSE", `the hunting endpoint was not found (HTTP 404)`);
    default:
      // THROTTLED (retryAfterSeconds kept), UPSTREAM_TIMEOUT, UPSTREAM_UNAVAILABLE, CONSENT_REQUIRED, …:
      // the helper's message names no query and no body, only the status.
      return new UpstreamError(error.code, error.message, details, { cause: error.cause });
  }
}

/** Graph's `huntingQueryResults`: `{schema:[{name,type}], results:[{…}]}`. Undefined when it is not one. */
export function mapGraphHunt(json: unknown): { columns: HuntingColumn[]; rows: Record<string, unknown>[] } | undefined {
  if (!isObject(json)) return undefined;
  return mapTable(json.schema, json.results, "name", "type");
}

/** The legacy API's `{Stats, Schema:[{Name,Type}], Results:[{…}]}`. Undefined when it is not one. */
export function mapDefenderHunt(json: unknown): { columns: HuntingColumn[]; rows: Record<string, unknown>[] } | undefined {
  if (!isObject(json)) return undefined;
  return mapTable(json.Schema, json.Results, "Name", "Type");
}

function mapTable(
  schema: unknown,
  results: unknown,
  nameKey: string,
  typeKey: string,
): { columns: HuntingColumn[]; rows: Record<string, unknown>[] } | undefined {
  if (!Array.isArray(schema) || !Array.isArray(results)) return undefined;
  const columns: HuntingColumn[] = [];
  for (const column of schema) {
    if (!isObject(column) || typeof column[nameKey] !== "string") return undefined;
    const type = column[typeKey];
    columns.push({ name: column[nameKey] as string, type: typeof type === "string" && type !== "" ? type : "Dynamic" });
  }
  for (const row of results) if (!isObject(row)) return undefined;
  return { columns, rows: results as Record<string, unknown>[] };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
