import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { UpstreamError } from "../../../src/defender/backend-client.js";
import type { Incident } from "../../../src/defender/incident.js";
import { listByWatermark, type PageAnswer, type PageRequest, type PagingSpec } from "../../../src/defender/watermark-paging.js";
import { makeIncident } from "../../helpers/incident-factory.js";

/**
 * The paging loop both clients share, against an in-memory service whose behaviour the test picks:
 * ordered or not, `$orderby` refused, tie order unstable, a skip ceiling answering 400 or an empty page.
 */

const TENANT = "0b9c3c7e-5b8e-4a43-9e0e-1f2a3b4c5d6e";
const T0 = Date.parse("2026-05-01T00:00:00Z");

interface ServiceOptions {
  order?: "asc" | "none" | "refuse";
  /** `$top + $skip` beyond this: `answer`. */
  ceiling?: number;
  answer?: "400" | "empty";
  /** Reverse the order within one millisecond on every other request. */
  unstableTies?: boolean;
  /** Page number (0-based) that throws. */
  failAt?: number;
}

class FakeService {
  readonly requests: Array<PageRequest | { nextLink: string; position: number }> = [];
  /** How often each incident id was delivered. */
  readonly delivered = new Map<string, number>();
  constructor(
    readonly incidents: Incident[],
    readonly options: ServiceOptions = {},
  ) {}

  fetch = async (page: PageRequest | { nextLink: string; position: number }, pageSize: number): Promise<PageAnswer> => {
    const n = this.requests.push(page) - 1;
    if (this.options.failAt === n) throw new UpstreamError("UPSTREAM_UNAVAILABLE", "503", { tenantId: TENANT, backend: "graph", status: 503 });
    let request: PageRequest;
    if ("nextLink" in page) {
      const [since, skip, ordered] = page.nextLink.split("|");
      request = { since: since === "" ? null : new Date(since!), skip: Number(skip), ordered: ordered === "1" };
    } else {
      request = page;
    }
    if (request.ordered && this.options.order === "refuse") {
      throw new UpstreamError("BAD_REQUEST", "the API rejected the request (400 ODataError: The query parameter '$orderby' is not supported.)", { tenantId: TENANT, backend: "graph", status: 400 });
    }
    if (this.options.ceiling !== undefined && request.skip > 0 && request.skip + pageSize > this.options.ceiling) {
      if (this.options.answer === "empty") return { incidents: [], nextLink: undefined, calls: 1 };
      throw new UpstreamError("BAD_REQUEST", "the API rejected the request (400 BadRequest: $top + $skip too large)", { tenantId: TENANT, backend: "graph", status: 400 });
    }
    const since = request.since?.getTime() ?? Number.NEGATIVE_INFINITY;
    const matching = this.incidents.filter((i) => i.lastUpdateTime.getTime() >= since);
    if (request.ordered && this.options.order !== "none") {
      const flip = this.options.unstableTies && n % 2 === 1 ? -1 : 1;
      matching.sort((a, b) => a.lastUpdateTime.getTime() - b.lastUpdateTime.getTime() || flip * a.incidentId.localeCompare(b.incidentId));
    } else {
      // Newest first by creation, as the Defender API documents when it does not sort.
      matching.sort((a, b) => b.createdTime.getTime() - a.createdTime.getTime());
    }
    const items = matching.slice(request.skip, request.skip + pageSize);
    for (const i of items) this.delivered.set(i.incidentId, (this.delivered.get(i.incidentId) ?? 0) + 1);
    const more = request.skip + items.length < matching.length;
    const nextLink = more ? `${request.since?.toISOString() ?? ""}|${request.skip + items.length}|${request.ordered ? 1 : 0}` : undefined;
    return { incidents: items.map((i) => ({ ...i })), nextLink, calls: 1 };
  };
}

/** `count` incidents, created and updated one second apart (ids 1…count, oldest first), unless `at` says otherwise. */
function incidents(count: number, at: (i: number) => number = (i) => T0 + i * 1000): Incident[] {
  return Array.from({ length: count }, (_, k) => {
    const i = k + 1;
    return makeIncident({ tenantId: TENANT, incidentId: String(i), createdTime: new Date(T0 + i * 1000), lastUpdateTime: new Date(at(i)) });
  });
}

function spec(service: FakeService, overrides: Partial<PagingSpec> = {}): PagingSpec & { refused: number } {
  const pageSize = overrides.pageSize ?? 5;
  const s = {
    backend: "graph" as const,
    tenantId: TENANT,
    pageSize,
    skipCeiling: 6_000,
    linkEndsList: true,
    askOrder: true,
    since: undefined,
    maxPages: undefined,
    refused: 0,
    fetch: (page: PageRequest | { nextLink: string; position: number }) => service.fetch(page, pageSize),
    onOrderRefused: () => void s.refused++,
    ...overrides,
  };
  return s;
}

const ids = (list: readonly Incident[]) => list.map((i) => Number(i.incidentId)).sort((a, b) => a - b);
const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
const readOnce = (service: FakeService) => assert.ok([...service.delivered.values()].every((n) => n === 1), `delivered twice: ${[...service.delivered].filter(([, n]) => n > 1).map(([id]) => id).join(",")}`);

describe("listByWatermark", () => {
  it("pages oldest first from the last item's time, skipping only what it has seen at that time: nothing read twice", async () => {
    const service = new FakeService(incidents(23));
    const result = await listByWatermark(spec(service));
    assert.deepEqual(ids(result.incidents), range(23));
    assert.equal(result.complete, true);
    assert.equal(result.paging, "watermark");
    assert.equal(result.calls, 5);
    assert.deepEqual(result.resumeFrom, new Date(T0 + 23_000));
    readOnce(service);
    const asked = service.requests as PageRequest[];
    assert.deepEqual(asked.map((r) => r.skip), [0, 1, 1, 1, 1], "never a deep $skip");
    assert.deepEqual(asked[1]!.since, new Date(T0 + 5_000));
    assert.ok(asked.every((r) => r.ordered));
  });

  it("gets through a tie group larger than a page (a page full of one timestamp) by skipping within it", async () => {
    // 12 incidents in one millisecond, then 3 later: with `ge` alone the second page would be the first again.
    const service = new FakeService(incidents(15, (i) => (i <= 12 ? T0 : T0 + i * 1000)));
    const result = await listByWatermark(spec(service));
    assert.deepEqual(ids(result.incidents), range(15));
    readOnce(service);
    assert.deepEqual((service.requests as PageRequest[]).map((r) => r.skip), [0, 5, 10]);
    assert.equal(result.complete, true);
  });

  it("reads the boundary again when the order within a millisecond changes between requests (no incident missed)", async () => {
    const service = new FakeService(incidents(15, (i) => (i <= 8 ? T0 : T0 + i * 1000)), { unstableTies: true });
    const result = await listByWatermark(spec(service));
    assert.deepEqual(ids(result.incidents), range(15));
    assert.equal(result.complete, true);
  });

  it("stops after maxPages with where to go on; going on from there reads the rest, no page twice", async () => {
    const service = new FakeService(incidents(23));
    const first = await listByWatermark(spec(service, { maxPages: 2 }));
    assert.equal(first.complete, false);
    assert.equal(first.stoppedBy, undefined);
    assert.equal(first.incidents.length, 10);
    assert.deepEqual(first.resumeFrom, new Date(T0 + 10_000));
    const rest = await listByWatermark(spec(service, { since: first.resumeFrom! }));
    assert.equal(rest.complete, true);
    assert.deepEqual(ids([...first.incidents, ...rest.incidents].filter((i, k, all) => all.findIndex((j) => j.incidentId === i.incidentId) === k)), range(23));
    assert.equal(service.delivered.get("10"), 2, "only the boundary incident comes again");
    assert.equal(service.requests.length, 5);
  });

  it("returns the pages read when a later one fails; throws when the first does", async () => {
    const service = new FakeService(incidents(23), { failAt: 2 });
    const partial = await listByWatermark(spec(service));
    assert.equal(partial.complete, false);
    assert.equal(partial.incidents.length, 10);
    assert.ok(partial.stoppedBy instanceof UpstreamError);
    assert.deepEqual(partial.resumeFrom, new Date(T0 + 10_000));

    const failing = new FakeService(incidents(23), { failAt: 0 });
    await assert.rejects(listByWatermark(spec(failing)), (e: unknown) => e instanceof UpstreamError && e.code === "UPSTREAM_UNAVAILABLE");
  });

  it("falls back to offset paging when the service ignores $orderby, within the ceiling", async () => {
    const service = new FakeService(incidents(23), { order: "none" });
    const fallbacks: string[] = [];
    const result = await listByWatermark(spec(service, { onFallback: (r) => fallbacks.push(r) }));
    assert.deepEqual(ids(result.incidents), range(23));
    assert.equal(result.paging, "offset");
    assert.equal(result.complete, true);
    assert.equal(fallbacks.length, 1);
    readOnce(service);
    assert.equal(result.resumeFrom!.getTime(), T0 + 23_000);
  });

  it("an unordered list that would page past the ceiling stops with UPSTREAM_PAGING_LIMIT before asking, keeping its pages", async () => {
    for (const answer of ["400", "empty"] as const) {
      const service = new FakeService(incidents(23), { order: "none", ceiling: 12, answer });
      const result = await listByWatermark(spec(service, { skipCeiling: 12 }));
      assert.equal(result.complete, false);
      assert.ok(result.stoppedBy instanceof UpstreamError && result.stoppedBy.code === "UPSTREAM_PAGING_LIMIT", String(result.stoppedBy));
      assert.equal(result.incidents.length, 10);
      assert.equal(result.resumeFrom, null, "unordered: nothing below which all is read");
      assert.ok(service.requests.every((r) => ("position" in r ? r.position : r.skip) + 5 <= 12), "never past the ceiling");
    }
  });

  it("an empty page right after a next link is a stall, not the end (the service's ceiling is lower than ours)", async () => {
    const service = new FakeService(incidents(23), { order: "none", ceiling: 12, answer: "empty" });
    const result = await listByWatermark(spec(service));
    assert.equal(result.complete, false);
    assert.ok(result.stoppedBy instanceof UpstreamError && result.stoppedBy.code === "UPSTREAM_PAGING_LIMIT");
  });

  it("a refused $orderby is remembered by the client and the list pages by offset", async () => {
    const service = new FakeService(incidents(12), { order: "refuse" });
    const s = spec(service);
    const result = await listByWatermark(s);
    assert.equal(s.refused, 1);
    assert.deepEqual(ids(result.incidents), range(12));
    assert.equal(result.paging, "offset");
    assert.equal(result.calls, 4, "the refused request counts");
  });

  it("a watermark list never asks past the ceiling either: a tie group that large fails clearly", async () => {
    const service = new FakeService(incidents(30, () => T0));
    const result = await listByWatermark(spec(service, { skipCeiling: 12 }));
    assert.equal(result.complete, false);
    assert.match(String((result.stoppedBy as Error).message), /share one last-update millisecond/);
    assert.ok((service.requests as PageRequest[]).every((r) => r.skip + 5 <= 12));
  });
});
