import type { Logger } from "pino";
import type { Dispatcher } from "undici";
import type { TokenProvider } from "../auth/token-provider.js";
import { UpstreamError, type CallOptions, type IncidentsBackendClient, type ListOptions, type ListResult } from "./backend-client.js";
import { mapGraphIncident, mapGraphIncidentPage, toGraphPatchRequests } from "./graph-mapper.js";
import { checkNextLink, IncidentsHttp, resolveDeadline, type RetryPolicy, type UpstreamObserver, type UpstreamTimeouts } from "./http.js";
import type { Incident, IncidentPatch } from "./incident.js";
import { badListing, mapAnswer, patchProblem } from "./mapping.js";
import { InProcessRateBudget, type RateBudget } from "./rate-budget.js";

/** Graph refuses `$top` above 50 for incidents (reference 2.2). */
export const GRAPH_MAX_PAGE_SIZE = 50;

/** Asks Graph for evolvable enum members (`awaitingAction`) instead of `unknownFutureValue` (reference 2.2). */
const GRAPH_HEADERS = { prefer: "include-unknown-enum-members" };

export interface GraphIncidentsClientOptions {
  /**
   * Graph base including the version: `https://graph.microsoft.com/v1.0`, or `${sandbox}/v1.0`;
   * `/security/incidents` is appended.
   */
  baseUrl: string;
  dispatcher: Dispatcher;
  tokenProvider: TokenProvider;
  budget?: RateBudget;
  timeouts?: Partial<UpstreamTimeouts>;
  retry?: Partial<RetryPolicy>;
  logger?: Logger;
  observe?: UpstreamObserver;
  /** `$top`, 1–50. Default 50. */
  pageSize?: number;
  /** Default 400 (20,000 incidents). */
  maxPages?: number;
  maxResponseBytes?: number;
}

/**
 * Microsoft Graph security incidents (`/security/incidents`, reference section 2), alerts expanded.
 *
 * Lists follow `@odata.nextLink` as an opaque URL, only on the configured base's origin. Updates are a
 * PATCH for the fields, then — when the patch adds a comment — `POST …/comments` (last, so that a caller
 * retrying a half-failed update repeats the idempotent PATCH rather than the comment), then a GET with
 * `$expand=alerts`, because Graph's PATCH answer carries no alerts. When that read fails after the
 * writes succeeded, the PATCH answer (alerts empty) is returned if there is one, and the read's error
 * is thrown otherwise (a comment-only update), its message saying the comment was added.
 */
export class GraphIncidentsClient implements IncidentsBackendClient {
  readonly backend = "graph" as const;
  private readonly baseUrl: string;
  private readonly http: IncidentsHttp;
  private readonly pageSize: number;
  private readonly maxPages: number;
  private readonly logger: Logger | undefined;

  constructor(options: GraphIncidentsClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.pageSize = options.pageSize ?? GRAPH_MAX_PAGE_SIZE;
    if (!Number.isInteger(this.pageSize) || this.pageSize < 1 || this.pageSize > GRAPH_MAX_PAGE_SIZE) {
      throw new RangeError(`pageSize must be an integer from 1 to ${GRAPH_MAX_PAGE_SIZE}`);
    }
    this.maxPages = options.maxPages ?? 400;
    this.logger = options.logger?.child({ component: "graph-incidents" });
    this.http = new IncidentsHttp({
      backend: "graph",
      resource: "graph",
      dispatcher: options.dispatcher,
      tokenProvider: options.tokenProvider,
      budget: options.budget ?? new InProcessRateBudget(),
      ...(options.timeouts ? { timeouts: options.timeouts } : {}),
      ...(options.retry ? { retry: options.retry } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.observe ? { observe: options.observe } : {}),
      ...(options.maxResponseBytes !== undefined ? { maxResponseBytes: options.maxResponseBytes } : {}),
    });
  }

  async listIncidents(tenantId: string, options: ListOptions = {}): Promise<ListResult> {
    const deadline = resolveDeadline(options, this.http.timeouts, this.http.now());
    const filter = options.updatedSince ? `&$filter=${encodeURIComponent(`lastUpdateDateTime ge ${options.updatedSince.toISOString()}`)}` : "";
    let url = `${this.baseUrl}/security/incidents?$top=${this.pageSize}&$expand=alerts${filter}`;
    const byId = new Map<string, Incident>();
    const visited = new Set<string>();
    let calls = 0;
    for (let page = 0; ; page++) {
      if (page >= this.maxPages) throw badListing("graph", tenantId, `more than ${this.maxPages} pages`);
      visited.add(url);
      const answer = await this.http.send({
        tenantId,
        method: "GET",
        url,
        bucket: "graph",
        operation: "list",
        continuation: page > 0,
        headers: GRAPH_HEADERS,
        signal: options.signal,
        deadline,
      });
      calls += answer.attempts;
      const parsed = mapAnswer("graph", tenantId, () => mapGraphIncidentPage(answer.json, tenantId), answer.upstreamRequestId);
      for (const incident of parsed.incidents) {
        const seen = byId.get(incident.incidentId);
        if (!seen || seen.lastUpdateTime < incident.lastUpdateTime) byId.set(incident.incidentId, incident);
      }
      if (!parsed.nextLink) break;
      url = checkNextLink(parsed.nextLink, this.baseUrl, tenantId, "graph");
      if (visited.has(url)) throw badListing("graph", tenantId, "the next link points to a page already read");
    }
    return { incidents: [...byId.values()], calls };
  }

  async getIncident(tenantId: string, incidentId: string, options: CallOptions = {}): Promise<Incident | undefined> {
    if (incidentId.trim() === "") return undefined;
    const deadline = resolveDeadline(options, this.http.timeouts, this.http.now());
    try {
      return await this.read(tenantId, incidentId, options.signal, deadline);
    } catch (error) {
      if (error instanceof UpstreamError && error.code === "NOT_FOUND") return undefined;
      throw error;
    }
  }

  /**
   * @throws UpstreamError NOT_FOUND when the incident does not exist; BAD_REQUEST for an empty or invalid
   *   patch (before any call)
   */
  async updateIncident(tenantId: string, incidentId: string, patch: IncidentPatch, options: CallOptions = {}): Promise<Incident> {
    const problem = patchProblem(patch);
    if (problem) throw new UpstreamError("BAD_REQUEST", `invalid incident update: ${problem}`, { tenantId, backend: "graph" });
    if (incidentId.trim() === "") throw new UpstreamError("NOT_FOUND", "an incident id is required", { tenantId, backend: "graph" });
    const deadline = resolveDeadline(options, this.http.timeouts, this.http.now());
    const requests = toGraphPatchRequests(patch);
    const url = this.incidentUrl(incidentId);
    let patched: unknown;
    if (requests.body) {
      const answer = await this.http.send({ tenantId, method: "PATCH", url, bucket: "graph", operation: "update", body: requests.body, signal: options.signal, deadline });
      patched = answer.json;
    }
    if (requests.comment) {
      await this.http.send({
        tenantId,
        method: "POST",
        url: `${url}/comments`,
        bucket: "graph",
        operation: "comment",
        body: requests.comment,
        signal: options.signal,
        deadline,
      });
    }
    try {
      return await this.read(tenantId, incidentId, options.signal, deadline);
    } catch (error) {
      if (patched !== undefined) {
        this.logger?.warn({ tenantId, incidentId, err: error }, "reading the incident back after an update failed; answering with the PATCH result (no alerts)");
        return mapAnswer("graph", tenantId, () => mapGraphIncident(patched, tenantId), undefined);
      }
      if (error instanceof UpstreamError) {
        throw new UpstreamError(
          error.code,
          `${error.message} (the comment was added; only reading the incident back failed)`,
          error.details,
          { cause: error },
        );
      }
      throw error;
    }
  }

  private async read(tenantId: string, incidentId: string, signal: AbortSignal | undefined, deadline: number): Promise<Incident> {
    const answer = await this.http.send({
      tenantId,
      method: "GET",
      url: `${this.incidentUrl(incidentId)}?$expand=alerts`,
      bucket: "graph",
      operation: "get",
      headers: GRAPH_HEADERS,
      signal,
      deadline,
    });
    return mapAnswer("graph", tenantId, () => mapGraphIncident(answer.json, tenantId), answer.upstreamRequestId);
  }

  private incidentUrl(incidentId: string): string {
    return `${this.baseUrl}/security/incidents/${encodeURIComponent(incidentId)}`;
  }


}
