import type { Logger } from "pino";
import type { Dispatcher } from "undici";
import type { TokenProvider } from "../auth/token-provider.js";
import { UpstreamError, type CallOptions, type IncidentsBackendClient, type ListOptions, type ListResult } from "./backend-client.js";
import { mapDefenderIncident, mapDefenderIncidentPage, toDefenderPatchBody } from "./defender-mapper.js";
import { checkNextLink, IncidentsHttp, resolveDeadline, type RetryPolicy, type UpstreamObserver, type UpstreamTimeouts } from "./http.js";
import type { Incident, IncidentPatch } from "./incident.js";
import { badListing, mapAnswer, patchProblem } from "./mapping.js";
import { InProcessRateBudget, type RateBudget } from "./rate-budget.js";

/** The documented maximum page size of `GET /api/incidents` (reference 1.3). */
export const DEFENDER_MAX_PAGE_SIZE = 100;

export interface DefenderIncidentsClientOptions {
  /** `https://api.security.microsoft.com`, a regional host, or the sandbox URL; `/api/incidents` is appended. */
  baseUrl: string;
  dispatcher: Dispatcher;
  tokenProvider: TokenProvider;
  /** Shared with the Graph client (one concurrency cap). Default: a private in-process budget. */
  budget?: RateBudget;
  timeouts?: Partial<UpstreamTimeouts>;
  retry?: Partial<RetryPolicy>;
  logger?: Logger;
  observe?: UpstreamObserver;
  /** `$top`, 1–100. Default 100. */
  pageSize?: number;
  /** A list stops with UPSTREAM_BAD_RESPONSE past this many pages (a server that never ends). Default 200. */
  maxPages?: number;
  maxResponseBytes?: number;
}

/**
 * The legacy Microsoft 365 Defender incidents API (`/api/incidents`, reference section 1).
 *
 * Listing pages with `$top=100`, following `@odata.nextLink` when the service sends one, else `$skip`
 * until a page comes back short. The service promises no order and `$skip` is positional, so an
 * incident that changes during a list can appear twice or be missed: duplicates are merged (the later
 * `lastUpdateTime` wins) and a missed one carries a `lastUpdateTime` past the watermark, so the next
 * incremental list (`updatedSince`) picks it up. A tenant whose count is an exact multiple of the page
 * size costs one extra, empty page: nothing else says the list has ended.
 */
export class DefenderIncidentsClient implements IncidentsBackendClient {
  readonly backend = "defender" as const;
  private readonly baseUrl: string;
  private readonly http: IncidentsHttp;
  private readonly pageSize: number;
  private readonly maxPages: number;

  constructor(options: DefenderIncidentsClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.pageSize = options.pageSize ?? DEFENDER_MAX_PAGE_SIZE;
    if (!Number.isInteger(this.pageSize) || this.pageSize < 1 || this.pageSize > DEFENDER_MAX_PAGE_SIZE) {
      throw new RangeError(`pageSize must be an integer from 1 to ${DEFENDER_MAX_PAGE_SIZE}`);
    }
    this.maxPages = options.maxPages ?? 200;
    this.http = new IncidentsHttp({
      backend: "defender",
      resource: "defender",
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
    const filter = options.updatedSince ? `&$filter=${encodeURIComponent(`lastUpdateTime ge ${options.updatedSince.toISOString()}`)}` : "";
    const pageUrl = (skip: number) => `${this.baseUrl}/api/incidents?$top=${this.pageSize}${filter}${skip > 0 ? `&$skip=${skip}` : ""}`;
    const byId = new Map<string, Incident>();
    const visited = new Set<string>();
    let url = pageUrl(0);
    let skip = 0;
    let calls = 0;
    let pagingByLink = false;
    for (let page = 0; ; page++) {
      if (page >= this.maxPages) throw badListing("defender", tenantId, `more than ${this.maxPages} pages`);
      visited.add(url);
      const answer = await this.http.send({ tenantId, method: "GET", url, bucket: "defender.list", operation: "list", continuation: page > 0, signal: options.signal, deadline });
      calls += answer.attempts;
      const parsed = mapAnswer("defender", tenantId, () => mapDefenderIncidentPage(answer.json, tenantId), answer.upstreamRequestId);
      for (const incident of parsed.incidents) {
        const seen = byId.get(incident.incidentId);
        if (!seen || seen.lastUpdateTime < incident.lastUpdateTime) byId.set(incident.incidentId, incident);
      }
      if (parsed.nextLink) {
        url = checkNextLink(parsed.nextLink, this.baseUrl, tenantId, "defender");
        if (visited.has(url)) throw badListing("defender", tenantId, "the next link points to a page already read");
        pagingByLink = true;
        continue;
      }
      // A service that pages by links ends by sending none; one that does not, with a short page.
      if (pagingByLink || parsed.incidents.length < this.pageSize) break;
      skip += parsed.incidents.length;
      url = pageUrl(skip);
    }
    return { incidents: [...byId.values()], calls };
  }

  async getIncident(tenantId: string, incidentId: string, options: CallOptions = {}): Promise<Incident | undefined> {
    // Legacy ids are longs: anything else names no incident, and is not worth a call.
    if (!/^\d{1,19}$/.test(incidentId)) return undefined;
    const deadline = resolveDeadline(options, this.http.timeouts, this.http.now());
    try {
      const answer = await this.http.send({
        tenantId,
        method: "GET",
        url: `${this.baseUrl}/api/incidents/${incidentId}`,
        bucket: "defender.get",
        operation: "get",
        signal: options.signal,
        deadline,
      });
      return mapAnswer("defender", tenantId, () => mapDefenderIncident(answer.json, tenantId), answer.upstreamRequestId);
    } catch (error) {
      if (error instanceof UpstreamError && error.code === "NOT_FOUND") return undefined;
      throw error;
    }
  }

  /**
   * One PATCH with every change, comment included (`comment`, appended). Not retried once sent; see http.ts.
   *
   * @throws UpstreamError NOT_FOUND when the incident does not exist; BAD_REQUEST for an empty or invalid
   *   patch (before any call)
   */
  async updateIncident(tenantId: string, incidentId: string, patch: IncidentPatch, options: CallOptions = {}): Promise<Incident> {
    const problem = patchProblem(patch);
    if (problem) throw new UpstreamError("BAD_REQUEST", `invalid incident update: ${problem}`, { tenantId, backend: "defender" });
    if (!/^\d{1,19}$/.test(incidentId)) {
      throw new UpstreamError("NOT_FOUND", `Defender API update for tenant ${tenantId}: incident ids are numbers`, { tenantId, backend: "defender" });
    }
    const deadline = resolveDeadline(options, this.http.timeouts, this.http.now());
    const answer = await this.http.send({
      tenantId,
      method: "PATCH",
      url: `${this.baseUrl}/api/incidents/${incidentId}`,
      bucket: "defender.patch",
      operation: "update",
      body: toDefenderPatchBody(patch),
      signal: options.signal,
      deadline,
    });
    return mapAnswer("defender", tenantId, () => mapDefenderIncident(answer.json, tenantId), answer.upstreamRequestId);
  }


}
