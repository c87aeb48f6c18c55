import type { Logger } from "pino";
import type { Dispatcher } from "undici";
import type { TokenProvider } from "../auth/token-provider.js";
import { UpstreamError, type CallOptions, type IncidentsBackendClient, type ListOptions, type ListResult } from "./backend-client.js";
import { mapDefenderIncident, mapDefenderIncidentPage, toDefenderPatchBody } from "./defender-mapper.js";
import { checkNextLink, IncidentsHttp, resolveDeadline, type RetryPolicy, type UpstreamObserver, type UpstreamTimeouts } from "./http.js";
import type { Incident, IncidentPatch } from "./incident.js";
import { badListing, mapAnswer, patchProblem } from "./mapping.js";
import { InProcessRateBudget, type RateBudget } from "./rate-budget.js";
import { DEFAULT_SKIP_CEILING, listByWatermark } from "./watermark-paging.js";
import { backendUpdateProblem } from "./update-rules.js";

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
  /**
   * Lists never page past `$top + $skip` = this. The Defender API documents no ceiling; the same 6,000 as
   * Graph's is assumed (unconfirmed). Only offset paging (a service that does not order) comes near it.
   */
  skipCeiling?: number;
  maxResponseBytes?: number;
}

/**
 * The legacy Microsoft 365 Defender incidents API (`/api/incidents`, reference section 1).
 *
 * Listing pages by watermark (watermark-paging.ts): `$filter=lastUpdateTime ge W&$orderby=lastUpdateTime
 * asc&$top=100`, the next W the last item's time, until a page comes back short. The API does not
 * document `$orderby` (unconfirmed): when it refuses it or answers out of order, the list pages by offset
 * (`@odata.nextLink` when sent, else `$skip`) within the skip ceiling, duplicates merged (the later
 * `lastUpdateTime` wins); an incident missed by shifting positions carries a `lastUpdateTime` past the
 * watermark, so the next incremental list picks it up. A tenant whose count is an exact multiple of the
 * page size costs one extra, empty page: nothing else says the list has ended.
 */
export class DefenderIncidentsClient implements IncidentsBackendClient {
  readonly backend = "defender" as const;
  private readonly baseUrl: string;
  private readonly http: IncidentsHttp;
  private readonly pageSize: number;
  private readonly skipCeiling: number;
  /** Set once the API refused `$orderby` (a 400 naming it): later lists page by offset without asking. */
  private orderByRefused = false;
  private readonly logger: Logger | undefined;

  constructor(options: DefenderIncidentsClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.pageSize = options.pageSize ?? DEFENDER_MAX_PAGE_SIZE;
    if (!Number.isInteger(this.pageSize) || this.pageSize < 1 || this.pageSize > DEFENDER_MAX_PAGE_SIZE) {
      throw new RangeError(`pageSize must be an integer from 1 to ${DEFENDER_MAX_PAGE_SIZE}`);
    }
    this.skipCeiling = options.skipCeiling ?? DEFAULT_SKIP_CEILING;
    this.logger = options.logger?.child({ component: "defender-incidents" });
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
    const visited = new Set<string>();
    return listByWatermark({
      backend: "defender",
      tenantId,
      pageSize: this.pageSize,
      skipCeiling: this.skipCeiling,
      // The API is not known to send next links: a short page ends a list, or a missing link once one came.
      linkEndsList: false,
      askOrder: !this.orderByRefused,
      since: options.updatedSince,
      maxPages: options.maxPages,
      onPage: options.onPage,
      onOrderRefused: () => (this.orderByRefused = true),
      onFallback: (reason) => this.logger?.warn({ tenantId, reason }, "Defender incidents list falls back to offset paging"),
      fetch: async (page, continuation) => {
        let url: string;
        if ("nextLink" in page) {
          url = checkNextLink(page.nextLink, this.baseUrl, tenantId, "defender");
          if (visited.has(url)) throw badListing("defender", tenantId, "the next link points to a page already read");
        } else {
          const params = [`$top=${this.pageSize}`];
          if (page.since) params.push(`$filter=${encodeURIComponent(`lastUpdateTime ge ${page.since.toISOString()}`)}`);
          if (page.ordered) params.push(`$orderby=${encodeURIComponent("lastUpdateTime asc")}`);
          if (page.skip > 0) params.push(`$skip=${page.skip}`);
          url = `${this.baseUrl}/api/incidents?${params.join("&")}`;
        }
        visited.add(url);
        const answer = await this.http.send({ tenantId, method: "GET", url, bucket: "defender.list", operation: "list", continuation, signal: options.signal, deadline });
        const parsed = mapAnswer("defender", tenantId, () => mapDefenderIncidentPage(answer.json, tenantId), answer.upstreamRequestId);
        return { incidents: parsed.incidents, nextLink: parsed.nextLink, calls: answer.attempts };
      },
    });
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
    // The resolver refuses these first, with a hint; this keeps any other caller from sending them.
    const refusal = backendUpdateProblem("defender", patch);
    if (refusal) throw new UpstreamError("BAD_REQUEST", `invalid incident update: ${refusal.message}`, { tenantId, backend: "defender" });
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
