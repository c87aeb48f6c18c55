import type { Logger } from "pino";
import type { Dispatcher } from "undici";
import type { TokenProvider } from "../auth/token-provider.js";
import { UpstreamError, type AlertsLoad, type CallOptions, type IncidentsBackendClient, type ListOptions, type ListResult } from "./backend-client.js";
import { mapGraphIncident, mapGraphIncidentPage, toGraphPatchRequests } from "./graph-mapper.js";
import { checkNextLink, IncidentsHttp, resolveDeadline, type RetryPolicy, type UpstreamObserver, type UpstreamTimeouts } from "./http.js";
import type { Incident, IncidentPatch } from "./incident.js";
import { badListing, mapAnswer, patchProblem } from "./mapping.js";
import { InProcessRateBudget, type RateBudget } from "./rate-budget.js";
import { DEFAULT_SKIP_CEILING, listByWatermark } from "./watermark-paging.js";
import { backendUpdateProblem } from "./update-rules.js";

/** Graph refuses `$top` above 50 for incidents (reference 2.2). */
export const GRAPH_MAX_PAGE_SIZE = 50;

/** Single-incident reads `loadAlerts` keeps in flight at once for one tenant. */
export const GRAPH_ALERTS_CONCURRENCY = 4;

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
  /**
   * Lists never page past `$top + $skip` = this (Graph documents 6,000 for security alerts; assumed for
   * incidents). Only offset paging (a service that does not order) comes near it. Default 6,000.
   */
  skipCeiling?: number;
  maxResponseBytes?: number;
}

/**
 * Microsoft Graph security incidents (`/security/incidents`, reference section 2).
 *
 * Lists are read WITHOUT `$expand=alerts`: the expanded list is reported to answer 500 consistently on
 * large tenants (~45k users; threshold unknown) while the same list without it works (reference,
 * "Corrections"; elastic/integrations#18144). Listed incidents therefore carry `alerts: null` (not
 * loaded); `loadAlerts` fetches them per incident when a query asks for them. Single-incident reads (get,
 * update read-back, `loadAlerts`) keep `$expand=alerts` on one incident: no failure of that form is
 * reported (elastic/integrations#18277 proposes exactly this two-step read), but it is not confirmed either.
 *
 * Lists page by watermark (`lastUpdateDateTime ge W`, oldest first; see `listIncidents`), never deep
 * `$skip`; `@odata.nextLink` is followed (as an opaque URL, only on the configured base's origin) only
 * when Graph does not order. Updates are a
 * PATCH for the fields, then — when the patch adds a comment — `POST …/comments` (last, so that a caller
 * retrying a half-failed update repeats the idempotent PATCH rather than the comment), then a GET with
 * `$expand=alerts`, because Graph's PATCH answer carries no alerts. When that read fails after the
 * writes succeeded, the PATCH answer (alerts not loaded) is returned if there is one, and the read's error
 * is thrown otherwise (a comment-only update), its message saying the comment was added.
 */
export class GraphIncidentsClient implements IncidentsBackendClient {
  readonly backend = "graph" as const;
  private readonly baseUrl: string;
  private readonly http: IncidentsHttp;
  private readonly pageSize: number;
  private readonly skipCeiling: number;
  /** Set once Graph refused `$orderby` (a 400 naming it): later lists page by offset without asking. */
  private orderByRefused = false;
  private readonly logger: Logger | undefined;

  constructor(options: GraphIncidentsClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.pageSize = options.pageSize ?? GRAPH_MAX_PAGE_SIZE;
    if (!Number.isInteger(this.pageSize) || this.pageSize < 1 || this.pageSize > GRAPH_MAX_PAGE_SIZE) {
      throw new RangeError(`pageSize must be an integer from 1 to ${GRAPH_MAX_PAGE_SIZE}`);
    }
    this.skipCeiling = options.skipCeiling ?? DEFAULT_SKIP_CEILING;
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

  /**
   * Lists by watermark (watermark-paging.ts): `$filter=lastUpdateDateTime ge W&$orderby=lastUpdateDateTime
   * asc&$top=N`, next W the last item's time; a page without `@odata.nextLink` ends the list. Next links
   * are followed only when Graph does not order (offset paging, within the skip ceiling), checked to stay
   * on the configured origin.
   */
  async listIncidents(tenantId: string, options: ListOptions = {}): Promise<ListResult> {
    const deadline = resolveDeadline(options, this.http.timeouts, this.http.now());
    const base = `${this.baseUrl}/security/incidents`;
    const visited = new Set<string>();
    return listByWatermark({
      backend: "graph",
      tenantId,
      pageSize: this.pageSize,
      skipCeiling: this.skipCeiling,
      linkEndsList: true,
      askOrder: !this.orderByRefused,
      since: options.updatedSince,
      maxPages: options.maxPages,
      onPage: options.onPage,
      onOrderRefused: () => (this.orderByRefused = true),
      onFallback: (reason) => this.logger?.warn({ tenantId, reason }, "Graph incidents list falls back to offset paging"),
      fetch: async (page, continuation) => {
        let url: string;
        if ("nextLink" in page) {
          url = checkNextLink(page.nextLink, this.baseUrl, tenantId, "graph");
          if (visited.has(url)) throw badListing("graph", tenantId, "the next link points to a page already read");
        } else {
          // Never `$expand=alerts` on a list: it answers 500 on large tenants (see the class comment).
          const params = [`$top=${this.pageSize}`];
          if (page.since) params.push(`$filter=${encodeURIComponent(`lastUpdateDateTime ge ${page.since.toISOString()}`)}`);
          if (page.ordered) params.push(`$orderby=${encodeURIComponent("lastUpdateDateTime asc")}`);
          if (page.skip > 0) params.push(`$skip=${page.skip}`);
          url = `${base}?${params.join("&")}`;
        }
        visited.add(url);
        const answer = await this.http.send({
          tenantId,
          method: "GET",
          url,
          bucket: "graph",
          operation: "list",
          continuation,
          headers: GRAPH_HEADERS,
          signal: options.signal,
          deadline,
        });
        const parsed = mapAnswer("graph", tenantId, () => mapGraphIncidentPage(answer.json, tenantId), answer.upstreamRequestId);
        return { incidents: parsed.incidents, nextLink: parsed.nextLink ?? undefined, calls: answer.attempts };
      },
    });
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
    // The resolver refuses these first, with a hint; this keeps any other caller from sending them.
    const refusal = backendUpdateProblem("graph", patch);
    if (refusal) throw new UpstreamError("BAD_REQUEST", `invalid incident update: ${refusal.message}`, { tenantId, backend: "graph" });
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
        this.logger?.warn({ tenantId, incidentId, err: error }, "reading the incident back after an update failed; answering with the PATCH result (alerts not loaded)");
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

  /**
   * The alerts of some of a tenant's incidents: one `GET /security/incidents/{id}?$expand=alerts` per
   * incident, at most `concurrency` (default 4) of this tenant's at once, each through the tenant's
   * `graph` rate budget under the caller's signal and deadline — a budget without a slot before the
   * deadline refuses the rest with THROTTLED without sending them. Settles per incident, in the order
   * asked: the incident as read (alerts loaded), `undefined` when it no longer exists, or the error
   * (UpstreamError, TokenAcquisitionError, the signal's reason). Never rejects.
   */
  async loadAlerts(tenantId: string, incidentIds: readonly string[], options: CallOptions & { concurrency?: number } = {}): Promise<AlertsLoad[]> {
    const deadline = resolveDeadline(options, this.http.timeouts, this.http.now());
    const results: AlertsLoad[] = new Array(incidentIds.length);
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < incidentIds.length; i = next++) {
        const id = incidentIds[i]!;
        try {
          results[i] = { ok: true, incident: id.trim() === "" ? undefined : await this.read(tenantId, id, options.signal, deadline, "alerts") };
        } catch (error) {
          results[i] = error instanceof UpstreamError && error.code === "NOT_FOUND" ? { ok: true, incident: undefined } : { ok: false, error };
        }
      }
    };
    const workers = Math.max(1, Math.min(options.concurrency ?? GRAPH_ALERTS_CONCURRENCY, incidentIds.length));
    await Promise.all(Array.from({ length: workers }, worker));
    return results;
  }

  private async read(tenantId: string, incidentId: string, signal: AbortSignal | undefined, deadline: number, operation = "get"): Promise<Incident> {
    const answer = await this.http.send({
      tenantId,
      method: "GET",
      url: `${this.incidentUrl(incidentId)}?$expand=alerts`,
      bucket: "graph",
      operation,
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
