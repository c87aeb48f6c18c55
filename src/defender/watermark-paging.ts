import { UpstreamError, type ListedPage, type ListResult } from "./backend-client.js";
import type { Incident, IncidentsBackendName } from "./incident.js";
import { badListing } from "./mapping.js";

/**
 * Listing by watermark, shared by both incident clients.
 *
 * Why: deep `$skip` paging on Microsoft's security APIs stops returning pages past some offset (Elastic
 * integrations #20234/#20348; Graph documents `$top + $skip ≤ 6000` for security alerts, and 500 for
 * `$skip` alone on the legacy alerts list — whether either applies to incidents is unconfirmed). So a list
 * never walks `$skip` through the tenant: each request asks for incidents updated at or after the last
 * one seen, oldest first:
 *
 *     $filter=<updated> ge W  &  $orderby=<updated> asc  &  $top=N  [&  $skip=k]
 *
 * and the next W is the last item's time. `ge`, not `gt`: the mapped times are cut to milliseconds while
 * upstream stamps carry up to 7 digits, and incidents can share a stamp, so `gt` could skip an unseen
 * incident of the last millisecond. Instead `k` = how many incidents of W's millisecond this list has
 * already seen (usually 1: the last one), so nothing is read twice — and a page full of one timestamp
 * still progresses (k grows by a page). Every item is also de-duplicated by id (the later
 * `lastUpdateTime` wins). Should the service's order within a millisecond change between requests
 * (an already-seen incident comes back after the skip), the rest of the list re-reads the boundary
 * (`k` = 0 while the boundary fits in a page), which costs a few items a page but cannot miss any.
 *
 * Unconfirmed: whether Graph and the Defender API honour `$orderby` on incidents (the Defender page does
 * not list it; Graph's incidents page does not either). Every page is checked: ascending and at or after
 * W. When the service refuses `$orderby` (400 naming it; remembered by the client) or answers out of
 * order, the list falls back to offset paging — `@odata.nextLink` when given, else `$skip` — from the
 * last safe watermark, but only up to the skip ceiling (`$top + $skip ≤ skipCeiling`, default 6,000):
 * beyond it the list stops with UPSTREAM_PAGING_LIMIT rather than ask for pages that would stall or
 * come back empty. An empty page right after a next link is taken as such a stall too (never as the end).
 *
 * Resumable: a list can be bounded (`maxPages`) and continued later from `resumeFrom` (the greatest time
 * below which everything has been listed); a failure after some pages returns those pages with
 * `stoppedBy` instead of throwing, so nothing read is lost. A failure of the first page throws.
 */

/** Default `$top + $skip` ceiling (Graph's documented number for security alerts; assumed for incidents). */
export const DEFAULT_SKIP_CEILING = 6_000;

/** One list request the client turns into a URL. */
export interface PageRequest {
  /** `<updated> ge since`; null: no lower bound. */
  since: Date | null;
  /** `$skip`, 0 for none. */
  skip: number;
  /** Whether to ask for `$orderby=<updated> asc`. */
  ordered: boolean;
}

export interface PageAnswer {
  incidents: Incident[];
  nextLink: string | undefined;
  /** Upstream attempts the page cost (retries included). */
  calls: number;
}

export interface PagingSpec {
  backend: IncidentsBackendName;
  tenantId: string;
  pageSize: number;
  skipCeiling: number;
  /** Whether a page without `@odata.nextLink` ends the list (Graph documents next links). Otherwise a short page does. */
  linkEndsList: boolean;
  /** Whether to ask for `$orderby` at all (false once the service refused it). */
  askOrder: boolean;
  /** Lower bound of the whole list (a delta's `updatedSince`, a resumed list's watermark). */
  since: Date | undefined;
  /** Pages this call may read; more left after them → `complete: false`. Default: no bound. */
  maxPages: number | undefined;
  /** Told each page's new incidents as they arrive; then the result carries none (see `ListOptions.onPage`). */
  onPage?: ((page: ListedPage) => Promise<void>) | undefined;
  /** Reads one page: a request to build, or a (checked) next link to follow. `continuation`: not the list's first call. */
  fetch(page: PageRequest | { nextLink: string; position: number }, continuation: boolean): Promise<PageAnswer>;
  /** The service refused `$orderby`; the client remembers it. */
  onOrderRefused(): void;
  /** Told once per list when it falls back to offset paging, and why. */
  onFallback?(reason: string): void;
}

/** The error of an offset listing that would have to page past the ceiling. */
export function pagingLimit(backend: IncidentsBackendName, tenantId: string, ceiling: number, read: number, cause?: UpstreamError): UpstreamError {
  const api = backend === "graph" ? "Microsoft Graph" : "Defender API";
  return new UpstreamError(
    "UPSTREAM_PAGING_LIMIT",
    `${api} list for tenant ${tenantId}: the service does not order incidents by last update, and its pages stop past an offset of about ${ceiling}; ${read} incidents read`,
    cause ? cause.details : { tenantId, backend },
    cause ? { cause } : undefined,
  );
}

/** Whether an upstream 400 is the service refusing `$orderby` (its message names the option). */
function refusesOrderBy(error: unknown): boolean {
  if (!(error instanceof UpstreamError) || error.code !== "BAD_REQUEST") return false;
  return /orderby/i.test(`${error.message} ${error.details.bodyExcerpt ?? ""}`);
}

export async function listByWatermark(spec: PagingSpec): Promise<ListResult> {
  /** Incidents read (or, with `onPage`, only their times: the pages went to the caller). */
  const byId = new Map<string, Incident | number>();
  const streaming = spec.onPage !== undefined;
  let newestMs: number | null = null;
  let pageNew: Incident[] = [];
  let calls = 0;
  let pages = 0;
  let askOrder = spec.askOrder;
  /** The boundary: everything updated before `w` has been listed. */
  let w: Date | null = spec.since ?? null;
  /** Ids seen whose (millisecond) time is exactly `w`. */
  let atW = new Set<string>();
  /** Watermark mode: skip the boundary's seen incidents; false after the service's order proved unstable. */
  let skipBoundary = true;
  /** Offset mode, once the service refused or ignored the order: where it started and how far it got. */
  let offset: { since: Date | null; position: number; nextLink: string | undefined; afterLink: boolean } | undefined;
  let sawLink = false;

  const keep = (incident: Incident): boolean => {
    const held = byId.get(incident.incidentId);
    const t = incident.lastUpdateTime.getTime();
    if (held !== undefined && (typeof held === "number" ? held : held.lastUpdateTime.getTime()) >= t) return false;
    byId.set(incident.incidentId, streaming ? t : incident);
    if (!Number.isNaN(t) && (newestMs === null || t > newestMs)) newestMs = t;
    if (streaming) pageNew.push(incident);
    return true;
  };
  /** Hands the page's new incidents to `onPage` (streaming lists), with where a list would resume now. */
  const deliver = async (): Promise<void> => {
    if (!spec.onPage) return;
    const incidents = pageNew;
    pageNew = [];
    await spec.onPage({ incidents, resumeFrom: offset ? offset.since : w, calls });
  };
  const result = (complete: boolean, stoppedBy?: unknown): ListResult => {
    const incidents = streaming ? [] : [...byId.values()].filter((i): i is Incident => typeof i !== "number");
    let resumeFrom: Date | null;
    if (complete) resumeFrom = newestMs === null ? w : new Date(newestMs);
    else resumeFrom = offset ? offset.since : w;
    return {
      incidents,
      calls,
      complete,
      resumeFrom,
      paging: offset ? "offset" : "watermark",
      ...(stoppedBy !== undefined ? { stoppedBy } : {}),
    };
  };

  for (;;) {
    if (spec.maxPages !== undefined && pages >= spec.maxPages && !offset) return result(false);
    let answer: PageAnswer;
    let request: PageRequest | undefined;
    try {
      if (offset) {
        // Offset paging cannot resume (positions shift), so it ignores maxPages; the ceiling bounds it.
        if (offset.position + spec.pageSize > spec.skipCeiling) return result(false, pagingLimit(spec.backend, spec.tenantId, spec.skipCeiling, byId.size));
        answer = offset.nextLink
          ? await spec.fetch({ nextLink: offset.nextLink, position: offset.position }, pages > 0)
          : await spec.fetch((request = { since: offset.since, skip: offset.position, ordered: false }), pages > 0);
      } else {
        const skip = w !== null && (skipBoundary || atW.size >= spec.pageSize) ? atW.size : 0;
        if (skip + spec.pageSize > spec.skipCeiling) {
          return result(false, badListing(spec.backend, spec.tenantId, `more than ${spec.skipCeiling - spec.pageSize} incidents share one last-update millisecond`));
        }
        request = { since: w, skip, ordered: askOrder };
        try {
          answer = await spec.fetch(request, pages > 0);
        } catch (error) {
          if (!askOrder || !refusesOrderBy(error)) throw error;
          calls++;
          spec.onOrderRefused();
          spec.onFallback?.("the service refused $orderby");
          askOrder = false;
          // Unordered, a skip over the boundary means nothing: read from the boundary (duplicates merge).
          offset = { since: w, position: 0, nextLink: undefined, afterLink: false };
          continue;
        }
      }
    } catch (error) {
      if (pages === 0) throw error;
      // An offset page refused as invalid, when the first pages were fine: the service's own skip ceiling.
      if (offset && offset.position > 0 && error instanceof UpstreamError && error.code === "BAD_REQUEST") {
        return result(false, pagingLimit(spec.backend, spec.tenantId, offset.position, byId.size, error));
      }
      return result(false, error);
    }
    pages++;
    calls += answer.calls;
    if (answer.nextLink) sawLink = true;
    const ended = answer.nextLink === undefined && (spec.linkEndsList || sawLink || answer.incidents.length < spec.pageSize);

    if (offset) {
      if (answer.incidents.length === 0 && offset.afterLink) {
        // A next link promised more and the page is empty: the service stopped paging (never the end).
        return result(false, pagingLimit(spec.backend, spec.tenantId, offset.position, byId.size));
      }
      for (const incident of answer.incidents) keep(incident);
      await deliver();
      if (ended || answer.incidents.length === 0) return result(true);
      offset.position += answer.incidents.length;
      offset.nextLink = answer.nextLink;
      offset.afterLink = answer.nextLink !== undefined;
      continue;
    }

    const from = w;
    if (!isAscendingFrom(answer.incidents, from)) {
      // The service ignored $orderby (or the filter): what came is real data, but the watermark cannot move.
      spec.onFallback?.("the service answered out of lastUpdateTime order");
      for (const incident of answer.incidents) keep(incident);
      await deliver();
      if (ended) return result(true);
      // A skip the service applied to its own order passed over unknown incidents: then start over at the boundary.
      const skipped = request!.skip > 0;
      offset = {
        since: from,
        position: skipped ? 0 : answer.incidents.length,
        nextLink: skipped ? undefined : answer.nextLink,
        afterLink: !skipped && answer.nextLink !== undefined,
      };
      continue;
    }
    const fromMs = from?.getTime();
    if (skipBoundary && request!.skip > 0 && answer.incidents.some((i) => i.lastUpdateTime.getTime() === fromMs && atW.has(i.incidentId))) {
      // The order within one millisecond changed between requests: the skip may have passed over an
      // unseen incident. Read the boundary again without skipping (this page's items come again).
      skipBoundary = false;
      continue;
    }
    let fresh = 0;
    for (const incident of answer.incidents) if (keep(incident)) fresh++;
    const last = answer.incidents.at(-1);
    if (last) {
      const lastMs = last.lastUpdateTime.getTime();
      const next = lastMs === fromMs ? new Set(atW) : new Set<string>();
      for (const incident of answer.incidents) if (incident.lastUpdateTime.getTime() === lastMs) next.add(incident.incidentId);
      w = last.lastUpdateTime;
      atW = next;
    }
    await deliver();
    if (ended) return result(true);
    // Nothing new and not ended (say, an empty page with a next link): the next request would be this one.
    if (fresh === 0) return result(false, badListing(spec.backend, spec.tenantId, "a page brought no incident not already read"));
  }
}

/** Whether the page is oldest-first and entirely at or after `from`. */
function isAscendingFrom(incidents: readonly Incident[], from: Date | null): boolean {
  let previous = from?.getTime() ?? Number.NEGATIVE_INFINITY;
  for (const incident of incidents) {
    const t = incident.lastUpdateTime.getTime();
    if (Number.isNaN(t) || t < previous) return false;
    previous = t;
  }
  return true;
}
