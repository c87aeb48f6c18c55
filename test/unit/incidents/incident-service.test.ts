import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TokenAcquisitionError } from "../../../src/auth/token-errors.js";
import { UpstreamError, type AlertsLoad, type CallOptions, type IncidentsBackendClient, type ListOptions, type ListResult } from "../../../src/defender/backend-client.js";
import type { Incident, IncidentAlert, IncidentPatch, IncidentsBackendName } from "../../../src/defender/incident.js";
import { MemoryIncidentCache, type IncidentCache, type TenantIncidentsEntry } from "../../../src/incidents/incident-cache.js";
import { IncidentService, type IncidentServiceOptions } from "../../../src/incidents/incident-service.js";
import { captureLogger } from "../../helpers/log-capture.js";
import { makeIncident } from "../../helpers/incident-factory.js";

const TENANT = "0b9c3c7e-5b8e-4a43-9e0e-1f2a3b4c5d6e";
const OTHER = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
const T0 = Date.parse("2026-05-01T12:00:00Z");
const SECOND = 1000;
const MINUTE = 60_000;

function deferred<T>(): { promise: Promise<T>; resolve(value: T): void; reject(error: unknown): void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * A backend that holds incidents per tenant and records every call. `list` answers like the real
 * clients (incidents updated at or after `updatedSince`, one call per 100); `gate` holds answers back;
 * `fail` makes the next calls throw.
 */
class FakeClient implements IncidentsBackendClient {
  readonly data = new Map<string, Map<string, Incident>>();
  readonly listCalls: { tenantId: string; updatedSince: Date | undefined; signal: AbortSignal | undefined; deadline?: number | undefined; maxPages?: number | undefined }[] = [];
  readonly getCalls: string[] = [];
  readonly getOptions: CallOptions[] = [];
  readonly updateCalls: { tenantId: string; incidentId: string; patch: IncidentPatch }[] = [];
  gate: Promise<void> | undefined;
  fail: unknown;

  constructor(readonly backend: IncidentsBackendName) {}

  put(...incidents: Incident[]): void {
    for (const incident of incidents) {
      const tenant = this.data.get(incident.tenantId) ?? new Map<string, Incident>();
      tenant.set(incident.incidentId, { ...incident, backend: this.backend });
      this.data.set(incident.tenantId, tenant);
    }
  }

  /** Incidents per page of `listIncidents`. */
  pageSize = 100;
  /** The next list fails at this page (0: the first, thrown; later: the pages before it are returned). */
  failAtPage: { page: number; error: unknown } | undefined;
  /** Pages read per tenant, by their first incident id: a page read twice shows here. */
  readonly pagesRead: string[] = [];

  /** Pages oldest first by `lastUpdateTime` (ties by id), as the watermark-paging clients read them. */
  async listIncidents(tenantId: string, options: ListOptions = {}): Promise<ListResult> {
    this.listCalls.push({ tenantId, updatedSince: options.updatedSince, signal: options.signal, deadline: options.deadline, maxPages: options.maxPages });
    if (this.gate) await this.gate;
    if (this.fail !== undefined) throw this.fail;
    const since = options.updatedSince?.getTime() ?? Number.NEGATIVE_INFINITY;
    const sorted = [...(this.data.get(tenantId)?.values() ?? [])]
      .filter((i) => i.lastUpdateTime.getTime() >= since)
      .sort((a, b) => a.lastUpdateTime.getTime() - b.lastUpdateTime.getTime() || a.incidentId.localeCompare(b.incidentId));
    const incidents: Incident[] = [];
    const result = (complete: boolean, stoppedBy?: unknown): ListResult => ({
      incidents,
      calls: Math.max(1, pages),
      complete,
      resumeFrom: (complete ? sorted.at(-1) : incidents.at(-1))?.lastUpdateTime ?? options.updatedSince ?? null,
      paging: "watermark",
      ...(stoppedBy !== undefined ? { stoppedBy } : {}),
    });
    let pages = 0;
    while (pages * this.pageSize < sorted.length) {
      if (this.failAtPage?.page === pages) {
        const { error } = this.failAtPage;
        this.failAtPage = undefined;
        if (pages === 0) throw error;
        return result(false, error);
      }
      if (options.maxPages !== undefined && pages >= options.maxPages) return result(false);
      const page = sorted.slice(pages * this.pageSize, (pages + 1) * this.pageSize);
      this.pagesRead.push(`${tenantId}:${page[0]!.incidentId}`);
      incidents.push(...page);
      pages++;
    }
    return result(true);
  }

  async getIncident(tenantId: string, incidentId: string, options: CallOptions = {}): Promise<Incident | undefined> {
    this.getCalls.push(`${tenantId}/${incidentId}`);
    this.getOptions.push(options);
    if (this.fail !== undefined) throw this.fail;
    return this.data.get(tenantId)?.get(incidentId);
  }

  async updateIncident(tenantId: string, incidentId: string, patch: IncidentPatch): Promise<Incident> {
    this.updateCalls.push({ tenantId, incidentId, patch });
    if (this.fail !== undefined) throw this.fail;
    const held = this.data.get(tenantId)?.get(incidentId);
    if (!held) throw new UpstreamError("NOT_FOUND", "no such incident", { tenantId, backend: this.backend, status: 404 });
    const updated: Incident = {
      ...held,
      ...(patch.status ? { status: patch.status } : {}),
      ...(patch.assignedTo !== undefined ? { assignedTo: patch.assignedTo || null } : {}),
      lastUpdateTime: new Date(clockNow),
    };
    this.put(updated);
    return updated;
  }
}

let clockNow = T0;

function setup(options: Partial<IncidentServiceOptions> = {}) {
  clockNow = T0;
  const defender = new FakeClient("defender");
  const graph = new FakeClient("graph");
  const cache = (options.cache as MemoryIncidentCache | undefined) ?? new MemoryIncidentCache();
  const log = captureLogger();
  const service = new IncidentService({
    clients: { defender, graph },
    cache,
    freshnessMs: 30 * SECOND,
    overlapMs: SECOND,
    now: () => clockNow,
    logger: log.logger,
    ...options,
  });
  const advance = (ms: number) => {
    clockNow += ms;
  };
  return { service, defender, graph, cache, advance, lines: log.lines };
}

const at = (offsetMs: number) => new Date(T0 + offsetMs);
const target = { tenantId: TENANT, backend: "defender" as const };
const idsOf = (incidents: readonly Incident[]) => incidents.map((i) => i.incidentId).sort();

describe("IncidentService.loadTenant: cache and refresh", () => {
  it("lists in full the first time, then serves from the cache while fresh without any call", async () => {
    const { service, defender, advance } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1", lastUpdateTime: at(-MINUTE) }), makeIncident({ tenantId: TENANT, incidentId: "2", lastUpdateTime: at(-2 * MINUTE) }));

    const first = await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 1);
    assert.equal(defender.listCalls[0]!.updatedSince, undefined, "full list");
    assert.equal(defender.listCalls[0]!.tenantId, TENANT);
    assert.ok(defender.listCalls[0]!.signal instanceof AbortSignal, "the refresh carries a signal");
    assert.ok(defender.listCalls[0]!.deadline! > Date.now() + 60_000, "and its own deadline (refreshTimeoutMs, default 120 s)");
    assert.deepEqual(idsOf(first.incidents), ["1", "2"]);
    assert.deepEqual({ ...first.outcome, durationMs: 0 }, { tenantId: TENANT, ok: true, fromCache: false, fetchedAt: at(0), durationMs: 0, complete: true });

    advance(29 * SECOND);
    const second = await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 1, "fresh: no upstream call");
    assert.equal(second.outcome.fromCache, true);
    assert.equal(second.outcome.ok, true);
    assert.deepEqual(second.outcome.fetchedAt, at(0));
    assert.equal(second.incidents, first.incidents, "the same array");
    assert.deepEqual(service.stats(), {
      loads: 2,
      cacheHits: 1,
      coalesced: 0,
      refreshes: 1,
      fullRefreshes: 1,
      deltaRefreshes: 0,
      refreshFailures: 0,
      partialLists: 0,
      upstreamCalls: 1,
      staleServed: 0,
      deadlineExceeded: 0,
      failuresRemembered: 0,
      alertsFromCache: 0,
      alertsFetched: 0,
    });
  });

  it("refreshes a stale tenant with one delta from the watermark minus the overlap, merged by id", async () => {
    const { service, defender, cache, advance } = setup();
    defender.put(
      makeIncident({ tenantId: TENANT, incidentId: "1", lastUpdateTime: at(-10 * MINUTE), severity: "LOW" }),
      makeIncident({ tenantId: TENANT, incidentId: "2", lastUpdateTime: at(-5 * MINUTE) }),
      makeIncident({ tenantId: TENANT, incidentId: "3", lastUpdateTime: at(-20 * MINUTE) }),
    );
    await service.loadTenant(target);
    assert.deepEqual((await cache.get(TENANT))!.watermark, at(-5 * MINUTE));

    advance(31 * SECOND);
    defender.put(
      makeIncident({ tenantId: TENANT, incidentId: "1", lastUpdateTime: at(20 * SECOND), severity: "HIGH" }),
      makeIncident({ tenantId: TENANT, incidentId: "4", lastUpdateTime: at(25 * SECOND) }),
      makeIncident({ tenantId: TENANT, incidentId: "5", status: "REDIRECTED", redirectIncidentId: "4", lastUpdateTime: at(25 * SECOND) }),
    );
    const result = await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 2);
    assert.deepEqual(defender.listCalls[1]!.updatedSince, at(-5 * MINUTE - SECOND));
    assert.deepEqual(idsOf(result.incidents), ["1", "2", "3", "4", "5"]);
    const byId = new Map(result.incidents.map((i) => [i.incidentId, i]));
    assert.equal(byId.get("1")!.severity, "HIGH", "replaced by the newer version");
    assert.equal(byId.get("5")!.status, "REDIRECTED", "merged incidents stay, redirected");
    assert.equal(byId.get("5")!.redirectIncidentId, "4");
    assert.deepEqual(result.outcome.fetchedAt, at(31 * SECOND));
    assert.equal(result.outcome.fromCache, false);
    const entry = (await cache.get(TENANT))!;
    assert.deepEqual(entry.watermark, at(25 * SECOND));
    assert.ok(Object.isFrozen(entry.incidents));
    assert.deepEqual([service.stats().fullRefreshes, service.stats().deltaRefreshes], [1, 1]);
  });

  it("keeps the cached array when a delta brings nothing newer (overlap re-fetches)", async () => {
    const { service, defender, advance } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1", lastUpdateTime: at(-MINUTE) }));
    const first = await service.loadTenant(target);
    advance(MINUTE);
    const second = await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 2);
    assert.equal(second.outcome.fromCache, false);
    assert.deepEqual(second.outcome.fetchedAt, at(MINUTE), "fresh again");
    assert.equal(second.incidents, first.incidents, "same array: memoised sort orders survive");
  });

  it("lists in full again when the tenant's backend changed, and after fullRefreshMs", async () => {
    const { service, defender, graph, advance } = setup({ fullRefreshMs: 10 * MINUTE });
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1", lastUpdateTime: at(-MINUTE) }));
    graph.put(makeIncident({ tenantId: TENANT, incidentId: "g-1", lastUpdateTime: at(-MINUTE) }));
    await service.loadTenant(target);

    const switched = await service.loadTenant({ tenantId: TENANT, backend: "graph" });
    assert.equal(graph.listCalls.length, 1, "another backend's cache is not fresh for this one");
    assert.equal(graph.listCalls[0]!.updatedSince, undefined);
    assert.deepEqual(idsOf(switched.incidents), ["g-1"]);
    assert.equal(switched.incidents[0]!.backend, "graph");

    advance(MINUTE);
    await service.loadTenant({ tenantId: TENANT, backend: "graph" });
    assert.notEqual(graph.listCalls[1]!.updatedSince, undefined, "delta");
    advance(10 * MINUTE);
    graph.data.get(TENANT)!.delete("g-1"); // aged out upstream: only a full list notices
    const full = await service.loadTenant({ tenantId: TENANT, backend: "graph" });
    // A delta first (the data is current at once), then the full list with the pages the delta left.
    assert.notEqual(graph.listCalls[2]!.updatedSince, undefined, "delta first");
    assert.equal(graph.listCalls[3]!.updatedSince, undefined, "full again");
    assert.equal(graph.listCalls[3]!.maxPages, 99, "with the pages the delta left (100 - 1)");
    assert.deepEqual(full.incidents, []);
    assert.equal(full.outcome.ok, true);
  });

  it("normalises tenant ids, so one tenant is one cache entry", async () => {
    const { service, defender } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1" }));
    const result = await service.loadTenant({ tenantId: ` ${TENANT.toUpperCase()} `, backend: "defender" });
    assert.equal(result.tenantId, TENANT);
    await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 1);
  });
});

describe("IncidentService.loadTenant: lists that take several refreshes (watermark paging)", () => {
  /** `count` incidents one minute apart, the oldest first: ids 1…count. */
  const many = (client: FakeClient, count: number, tenantId = TENANT) => {
    for (let i = 1; i <= count; i++) client.put(makeIncident({ tenantId, incidentId: String(i), lastUpdateTime: at(-(count - i + 1) * MINUTE) }));
  };
  const noPageTwice = (client: FakeClient) => assert.equal(new Set(client.pagesRead).size, client.pagesRead.length, `a page was read twice: ${client.pagesRead.join(", ")}`);

  it("a first load larger than maxPagesPerRefresh finishes across queries, each going on where the last stopped", async () => {
    const { service, defender } = setup({ maxPagesPerRefresh: 2 });
    many(defender, 450);

    const first = await service.loadTenant(target);
    assert.equal(first.incidents.length, 200, "two pages of 100");
    assert.equal(first.outcome.ok, false);
    assert.equal(first.outcome.complete, false);
    assert.equal(first.outcome.error!.code, "INCOMPLETE");
    assert.deepEqual(first.outcome.fetchedAt, at(0));
    assert.equal(defender.listCalls[0]!.maxPages, 2);

    // No clock change: a first load under way is never fresh, so the next query goes on at once…
    const second = await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 2);
    // …from where the first stopped (the 200th incident's time), minus the overlap: not from the start.
    assert.deepEqual(defender.listCalls[1]!.updatedSince, new Date(at(-251 * MINUTE).getTime() - SECOND));
    assert.equal(second.incidents.length, 399);
    assert.equal(second.outcome.complete, false);

    const third = await service.loadTenant(target);
    assert.equal(third.outcome.ok, true);
    assert.equal(third.outcome.complete, true);
    assert.equal(third.outcome.error, undefined);
    assert.deepEqual(idsOf(third.incidents), idsOf([...defender.data.get(TENANT)!.values()]));
    assert.equal(defender.listCalls.length, 3);
    noPageTwice(defender);
    assert.equal(defender.pagesRead.length, 5, "450 incidents (+2 of overlap) in five pages of 100, none read twice");

    // Complete: fresh now, and later a delta from the newest incident.
    await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 3);
  });

  it("keeps the pages read when a later page fails transiently, serves them flagged, and goes on from there", async () => {
    const { service, defender } = setup();
    many(defender, 250);
    defender.failAtPage = { page: 2, error: new UpstreamError("THROTTLED", "429", { tenantId: TENANT, backend: "defender", status: 429, retryAfterSeconds: 20 }) };

    const first = await service.loadTenant(target);
    assert.equal(first.outcome.ok, false);
    assert.equal(first.outcome.complete, false);
    assert.equal(first.outcome.error!.code, "THROTTLED");
    assert.equal(first.outcome.error!.retryAfterSeconds, 20);
    assert.equal(first.incidents.length, 200, "the two pages read are kept");
    assert.equal(service.stats().partialLists, 1);

    const second = await service.loadTenant(target);
    assert.deepEqual(defender.listCalls[1]!.updatedSince, new Date(at(-51 * MINUTE).getTime() - SECOND), "from the last page read, not from the start");
    assert.equal(second.outcome.ok, true);
    assert.equal(second.incidents.length, 250);
    noPageTwice(defender);
  });

  it("drops the pages read when a later page fails lastingly (the app may no longer read them)", async () => {
    const { service, defender, cache } = setup();
    many(defender, 250);
    defender.failAtPage = { page: 1, error: new UpstreamError("MISSING_ROLE", "403", { tenantId: TENANT, backend: "defender", status: 403 }) };
    const result = await service.loadTenant(target);
    assert.equal(result.outcome.error!.code, "MISSING_ROLE");
    assert.deepEqual(result.incidents, []);
    assert.equal(await cache.get(TENANT), undefined);
  });

  it("a delta larger than the page bound keeps its pages, says so, and the next query goes on from where it got", async () => {
    const { service, defender, advance } = setup({ maxPagesPerRefresh: 1 });
    defender.pageSize = 10;
    many(defender, 5);
    await service.loadTenant(target);
    advance(MINUTE);
    for (let i = 1; i <= 15; i++) defender.put(makeIncident({ tenantId: TENANT, incidentId: `n${i}`, lastUpdateTime: at(i * SECOND * 2) }));

    const partial = await service.loadTenant(target);
    assert.equal(partial.outcome.ok, false);
    assert.equal(partial.outcome.error!.code, "INCOMPLETE");
    assert.equal(partial.outcome.complete, true, "every incident is there, some not yet in their latest version");
    assert.deepEqual(partial.outcome.fetchedAt, at(0), "not current: fetchedAt stays");
    assert.equal(partial.incidents.length, 14, "5 + the 9 new of the first page (one is the overlap)");

    const rest = await service.loadTenant(target);
    assert.equal(rest.outcome.ok, true);
    assert.equal(rest.incidents.length, 20);
    assert.deepEqual(rest.outcome.fetchedAt, at(MINUTE));
    noPageTwice(defender);
  });

  it("a periodic full list spans refreshes behind a delta, and drops incidents gone upstream only when it ends", async () => {
    const { service, defender, advance } = setup({ maxPagesPerRefresh: 2, fullRefreshMs: 10 * MINUTE });
    defender.pageSize = 10;
    many(defender, 15);
    await service.loadTenant(target);
    await service.loadTenant(target);
    advance(11 * MINUTE);
    defender.data.get(TENANT)!.delete("3"); // aged out upstream
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "new", lastUpdateTime: at(10 * MINUTE) }));

    const during = await service.loadTenant(target);
    assert.equal(during.outcome.ok, true, "the delta made the data current");
    assert.ok(during.incidents.some((i) => i.incidentId === "new"));
    assert.ok(during.incidents.some((i) => i.incidentId === "3"), "not dropped before the full list ends");
    const calls = defender.listCalls.length;
    assert.equal(defender.listCalls[calls - 1]!.updatedSince, undefined, "the full list began with the page the delta left");

    advance(MINUTE);
    const after = await service.loadTenant(target);
    assert.equal(after.outcome.ok, true);
    assert.ok(!after.incidents.some((i) => i.incidentId === "3"), "gone upstream: dropped when the full list ended");
    assert.equal(after.incidents.length, 15);
  });
});

describe("IncidentService.loadTenant: single flight", () => {
  it("makes one upstream call for 20 concurrent loads of one tenant", async () => {
    const { service, defender } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1" }));
    const gate = deferred<void>();
    defender.gate = gate.promise;
    const loads = Array.from({ length: 20 }, () => service.loadTenant(target));
    await new Promise((resolve) => setImmediate(resolve));
    gate.resolve();
    const results = await Promise.all(loads);
    assert.equal(defender.listCalls.length, 1);
    for (const result of results) {
      assert.equal(result.outcome.ok, true);
      assert.equal(result.incidents, results[0]!.incidents);
    }
    assert.equal(service.stats().coalesced, 19);
    assert.equal(service.stats().refreshes, 1);
  });

  it("makes no second call for a load that read the cache just before a refresh finished", async () => {
    const { service, defender } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1" }));
    // Without a gate the first refresh finishes within microtasks; the others read the cache meanwhile.
    const results = await Promise.all(Array.from({ length: 5 }, () => service.loadTenant(target)));
    assert.equal(defender.listCalls.length, 1);
    assert.ok(results.every((r) => r.outcome.ok));
  });

  it("ends only the waiting of a caller whose signal aborts; the refresh goes on and fills the cache", async () => {
    const { service, defender } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1" }));
    const gate = deferred<void>();
    defender.gate = gate.promise;
    const controller = new AbortController();
    const impatient = service.loadTenant(target, { signal: controller.signal });
    const patient = service.loadTenant(target);
    await new Promise((resolve) => setImmediate(resolve));
    controller.abort();
    const aborted = await impatient;
    assert.equal(aborted.outcome.ok, false);
    assert.equal(aborted.outcome.error!.code, "DEADLINE_EXCEEDED");
    assert.equal(aborted.outcome.fetchedAt, null);
    assert.deepEqual(aborted.incidents, []);

    gate.resolve();
    const waited = await patient;
    assert.equal(waited.outcome.ok, true);
    assert.deepEqual(idsOf(waited.incidents), ["1"]);
    const later = await service.loadTenant(target);
    assert.equal(later.outcome.fromCache, true);
    assert.equal(defender.listCalls.length, 1);
    assert.equal(service.stats().deadlineExceeded, 1);
  });

  it("gives the refresh the deadline of the caller that started it, so the client can answer in time", async () => {
    const { service, defender } = setup();
    const deadline = Date.now() + 4000;
    await service.loadTenant(target, { deadline });
    assert.equal(defender.listCalls[0]!.deadline, deadline);
  });

  it("puts one listener on a signal shared by many tenants' waits", async () => {
    const { service, defender } = setup();
    const gate = deferred<void>();
    defender.gate = gate.promise;
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on("warning", onWarning);
    try {
      const controller = new AbortController();
      const targets = Array.from({ length: 50 }, (_, n) => ({ tenantId: `${n.toString(16).padStart(8, "0")}-0000-4000-8000-000000000000`, backend: "defender" as const }));
      const loading = service.loadTenants(targets, { signal: controller.signal });
      await new Promise((resolve) => setImmediate(resolve));
      controller.abort();
      const results = await loading;
      assert.ok(results.every((r) => r.outcome.error?.code === "DEADLINE_EXCEEDED"));
      gate.resolve();
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(warnings.filter((w) => w.name === "MaxListenersExceededWarning"), []);
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("stops waiting at the deadline", async () => {
    const { service, defender } = setup();
    defender.gate = new Promise(() => {}); // never answers
    // The backend never answers: only the deadline can end the wait (no upper wall-clock bound, which a
    // loaded machine could outrun; the lower one only grows under load).
    const result = await service.loadTenant(target, { deadline: Date.now() + 50 });
    assert.equal(result.outcome.error!.code, "DEADLINE_EXCEEDED");
    assert.ok(result.outcome.durationMs >= 40);
  });

  it("makes no call for a caller whose signal already ended, but still serves a fresh cache", async () => {
    const { service, defender, advance } = setup();
    const over = AbortSignal.abort();
    const result = await service.loadTenant(target, { signal: over });
    assert.equal(result.outcome.error!.code, "DEADLINE_EXCEEDED");
    assert.equal(defender.listCalls.length, 0);
    await service.loadTenant(target);
    const cached = await service.loadTenant(target, { signal: over });
    assert.equal(cached.outcome.ok, true);
    advance(MINUTE);
    const past = await service.loadTenant(target, { deadline: new Date(Date.now() - 1) });
    assert.equal(past.outcome.error!.code, "DEADLINE_EXCEEDED");
    assert.equal(past.outcome.fromCache, true, "stale data served, flagged");
    assert.equal(defender.listCalls.length, 1);
  });

  it("bounds a shared refresh by refreshTimeoutMs: UPSTREAM_TIMEOUT", async () => {
    const { service, defender } = setup({ refreshTimeoutMs: 30 });
    defender.listIncidents = async (tenantId, options = {}) => {
      defender.listCalls.push({ tenantId, updatedSince: options.updatedSince, signal: options.signal });
      await new Promise((_resolve, reject) => options.signal!.addEventListener("abort", () => reject(options.signal!.reason)));
      throw new Error("unreachable");
    };
    // The refresh's timer does not hold the process open (AbortSignal.timeout is unref'd); this test must.
    const keepAlive = setTimeout(() => {}, 5000);
    const result = await service.loadTenant(target);
    clearTimeout(keepAlive);
    assert.equal(result.outcome.error!.code, "UPSTREAM_TIMEOUT");
    assert.match(result.outcome.error!.message, /did not finish/);
  });
});

describe("IncidentService.loadTenant: failures", () => {
  const failures: [string, unknown, string][] = [
    ["upstream throttling", new UpstreamError("THROTTLED", "429", { tenantId: TENANT, backend: "defender", status: 429, retryAfterSeconds: 30 }), "THROTTLED"],
    ["upstream 401", new UpstreamError("CONSENT_REQUIRED", "401", { tenantId: TENANT, backend: "defender", status: 401 }), "CONSENT_REQUIRED"],
    ["upstream 403", new UpstreamError("MISSING_ROLE", "403", { tenantId: TENANT, backend: "defender", status: 403 }), "MISSING_ROLE"],
    ["upstream 5xx", new UpstreamError("UPSTREAM_UNAVAILABLE", "503", { tenantId: TENANT, backend: "defender", status: 503 }), "UPSTREAM_UNAVAILABLE"],
    ["upstream garbage", new UpstreamError("UPSTREAM_BAD_RESPONSE", "bad json", { tenantId: TENANT, backend: "defender", status: 200 }), "UPSTREAM_BAD_RESPONSE"],
    ["token consent", new TokenAcquisitionError({ code: "CONSENT_REQUIRED", tenantId: TENANT, aadsts: 7000229 }), "CONSENT_REQUIRED"],
    ["token credential", new TokenAcquisitionError({ code: "INVALID_CLIENT_CREDENTIAL", aadsts: 7000215 }), "INVALID_CLIENT_CREDENTIAL"],
    ["token throttled", new TokenAcquisitionError({ code: "THROTTLED", tenantId: TENANT, retryAfterSeconds: 60 }), "THROTTLED"],
    ["an abort from below", new DOMException("aborted", "AbortError"), "DEADLINE_EXCEEDED"],
    ["a bug", new TypeError("x is undefined at https://api.security.microsoft.com/api/incidents"), "INTERNAL"],
  ];

  for (const [what, error, code] of failures) {
    it(`answers ${code} for ${what}, without throwing`, async () => {
      const { service, defender, lines } = setup();
      defender.fail = error;
      const result = await service.loadTenant(target);
      assert.equal(result.outcome.ok, false);
      assert.equal(result.outcome.fromCache, false);
      assert.equal(result.outcome.fetchedAt, null);
      assert.deepEqual(result.incidents, []);
      assert.equal(result.outcome.error!.code, code);
      assert.ok(result.outcome.error!.hint.length > 0);
      if (error instanceof UpstreamError || error instanceof TokenAcquisitionError) {
        assert.equal(result.outcome.error!.retryAfterSeconds, error.retryAfterSeconds);
      }
      if (code === "INTERNAL") {
        assert.equal(result.outcome.error!.message, "internal error");
        assert.ok(lines.some((l) => l.includes("x is undefined")), "the original is logged");
      }
      assert.doesNotMatch(JSON.stringify(result), /https?:/);
      assert.equal(service.stats().refreshFailures, 1);
    });
  }

  it("serves stale incidents, flagged, through a transient failure — within maxStaleMs", async () => {
    const { service, defender, advance } = setup({ maxStaleMs: 10 * MINUTE });
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1" }));
    const first = await service.loadTenant(target);
    advance(MINUTE);
    defender.fail = new UpstreamError("UPSTREAM_UNAVAILABLE", "503", { tenantId: TENANT, backend: "defender", status: 503 });
    const stale = await service.loadTenant(target);
    assert.equal(stale.outcome.ok, false);
    assert.equal(stale.outcome.fromCache, true);
    assert.deepEqual(stale.outcome.fetchedAt, at(0), "says how old");
    assert.equal(stale.outcome.error!.code, "UPSTREAM_UNAVAILABLE");
    assert.equal(stale.incidents, first.incidents);
    assert.equal(service.stats().staleServed, 1);

    advance(10 * MINUTE);
    const tooOld = await service.loadTenant(target);
    assert.deepEqual(tooOld.incidents, []);
    assert.equal(tooOld.outcome.fromCache, false);
    assert.equal(tooOld.outcome.fetchedAt, null);

    defender.fail = undefined;
    await service.loadTenant(target);
    assert.notEqual(defender.listCalls.at(-1)!.updatedSince, undefined, "the cache survived: a delta");
  });

  it("serves nothing after a non-transient failure and forgets the tenant's cache", async () => {
    const { service, defender, cache, advance } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1" }));
    await service.loadTenant(target);
    advance(MINUTE);
    defender.fail = new TokenAcquisitionError({ code: "CONSENT_REQUIRED", tenantId: TENANT });
    const revoked = await service.loadTenant(target);
    assert.deepEqual(revoked.incidents, []);
    assert.equal(revoked.outcome.fromCache, false);
    assert.equal(revoked.outcome.error!.code, "CONSENT_REQUIRED");
    assert.equal(await cache.get(TENANT), undefined);

    defender.fail = undefined;
    await service.loadTenant(target);
    assert.equal(defender.listCalls.at(-1)!.updatedSince, undefined, "full list after consent is back");
  });

  it("treats an unreadable cache as empty and an unwritable one as a cost, not a failure", async () => {
    const broken: IncidentCache = {
      get: async () => {
        throw new Error("redis down");
      },
      set: async () => {
        throw new Error("redis down");
      },
      delete: async () => {},
    };
    const { service, defender, lines } = setup({ cache: broken as MemoryIncidentCache });
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1" }));
    const result = await service.loadTenant(target);
    assert.equal(result.outcome.ok, true);
    assert.deepEqual(idsOf(result.incidents), ["1"]);
    assert.ok(lines.some((l) => l.includes("incident cache read failed")));
  });
});

describe("IncidentService.loadTenants", () => {
  it("loads all tenants at once, settled per tenant, in the order asked", async () => {
    const { service, defender, graph } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1" }));
    const gate = deferred<void>();
    defender.gate = gate.promise;
    graph.fail = new TokenAcquisitionError({ code: "RESOURCE_NOT_PROVISIONED", tenantId: OTHER });
    const all = service.loadTenants([target, { tenantId: OTHER, backend: "graph" }]);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(graph.listCalls.length, 1, "the second started while the first waits");
    assert.equal(defender.listCalls.length, 1);
    gate.resolve();
    const [ok, failed] = await all;
    assert.equal(ok!.tenantId, TENANT);
    assert.equal(ok!.outcome.ok, true);
    assert.equal(failed!.tenantId, OTHER);
    assert.equal(failed!.outcome.error!.code, "RESOURCE_NOT_PROVISIONED");
  });
});

describe("IncidentService single-incident operations", () => {
  it("gets from a fresh cache without a call, else from the backend", async () => {
    const { service, defender, advance } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1" }));
    await service.loadTenant(target);
    const cached = await service.getIncident(target, "1");
    assert.equal(cached!.incidentId, "1");
    assert.equal(defender.getCalls.length, 0);

    defender.put(makeIncident({ tenantId: TENANT, incidentId: "2", lastUpdateTime: at(SECOND) }));
    const notYetListed = await service.getIncident(target, "2");
    assert.equal(notYetListed!.incidentId, "2");
    assert.deepEqual(defender.getCalls, [`${TENANT}/2`]);

    advance(MINUTE);
    await service.getIncident(target, "1");
    assert.equal(defender.getCalls.length, 2, "stale cache: asks the backend");
    assert.equal(await service.getIncident(target, "404"), undefined);

    const deadline = Date.now() + 5000;
    const controller = new AbortController();
    await service.getIncident(target, "1", { signal: controller.signal, deadline });
    const passed = defender.getOptions.at(-1)!;
    assert.equal(passed.deadline, deadline, "the operation's deadline reaches the client");
    assert.equal(passed.signal!.aborted, false);
    controller.abort();
    assert.equal(passed.signal!.aborted, true, "so does the operation's signal");
  });

  it("throws the backend's errors", async () => {
    const { service, defender } = setup();
    defender.fail = new UpstreamError("MISSING_ROLE", "403", { tenantId: TENANT, backend: "defender", status: 403 });
    await assert.rejects(service.getIncident(target, "1"), (e: unknown) => e instanceof UpstreamError && e.code === "MISSING_ROLE");
    await assert.rejects(service.updateIncident(target, "1", { status: "RESOLVED" }), UpstreamError);
  });

  it("writes updates through and puts the answer in the cache, without making the tenant fresh", async () => {
    const { service, defender, cache, advance } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1", lastUpdateTime: at(-MINUTE) }), makeIncident({ tenantId: TENANT, incidentId: "2", lastUpdateTime: at(-MINUTE) }));
    await service.loadTenant(target);
    advance(MINUTE);

    const updated = await service.updateIncident(target, "1", { status: "RESOLVED", assignedTo: "soc@partner.example" });
    assert.deepEqual(defender.updateCalls, [{ tenantId: TENANT, incidentId: "1", patch: { status: "RESOLVED", assignedTo: "soc@partner.example" } }]);
    assert.equal(updated.status, "RESOLVED");
    const entry = (await cache.get(TENANT))!;
    assert.equal(entry.incidents.find((i) => i.incidentId === "1")!.status, "RESOLVED");
    assert.deepEqual(entry.fetchedAt, at(0), "not made fresh");
    assert.deepEqual(entry.watermark, at(-MINUTE), "the delta still starts where the lists left off");

    const next = await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 2, "still stale: refreshed");
    assert.equal(next.incidents.find((i) => i.incidentId === "1")!.status, "RESOLVED");
  });

  it("does not let an older listed copy replace a newer written one", async () => {
    const { service, defender, cache, advance } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1", lastUpdateTime: at(-MINUTE) }));
    await service.loadTenant(target);
    advance(MINUTE);
    // A delta that started before the update answers with the old copy after it.
    const gate = deferred<void>();
    defender.gate = gate.promise;
    const loading = service.loadTenant(target);
    await new Promise((resolve) => setImmediate(resolve));
    const stale = defender.data.get(TENANT)!.get("1")!;
    defender.gate = undefined;
    await service.updateIncident(target, "1", { status: "IN_PROGRESS" });
    defender.put(stale); // the list answers what it read before the write
    gate.resolve();
    await loading;
    assert.equal((await cache.get(TENANT))!.incidents.find((i) => i.incidentId === "1")!.status, "IN_PROGRESS");
  });

  it("forgets a tenant on request", async () => {
    const { service, defender, cache } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1" }));
    await service.loadTenant(target);
    await service.forget(TENANT.toUpperCase());
    assert.equal(await cache.get(TENANT), undefined);
  });
});

describe("MemoryIncidentCache", () => {
  it("holds entries by tenant, by reference", async () => {
    const cache = new MemoryIncidentCache();
    const entry: TenantIncidentsEntry = { backend: "defender", incidents: [], watermark: null, fetchedAt: at(0) };
    await cache.set(TENANT, entry);
    assert.equal(await cache.get(TENANT), entry);
    assert.equal(cache.size, 1);
    await cache.delete(TENANT);
    assert.equal(await cache.get(TENANT), undefined);
  });
});

describe("IncidentService: lasting failures remembered (failureMemoryMs)", () => {
  const forbidden = () => new UpstreamError("MISSING_ROLE", "the app lacks the incident permission in this tenant (HTTP 403)", { tenantId: TENANT, backend: "defender", status: 403 });

  it("answers a lasting failure again with no call: same code, message and hint, retryAfterSeconds the time left", async () => {
    const { service, defender, advance } = setup({ failureMemoryMs: MINUTE });
    defender.fail = forbidden();
    const first = await service.loadTenant(target);
    assert.equal(first.outcome.error!.code, "MISSING_ROLE");
    assert.equal(first.outcome.error!.retryAfterSeconds, undefined);
    advance(15 * SECOND);
    for (let i = 0; i < 5; i++) {
      const again = await service.loadTenant(target);
      assert.deepEqual(again.incidents, []);
      assert.deepEqual({ ...again.outcome, durationMs: 0 }, {
        tenantId: TENANT,
        ok: false,
        fromCache: false,
        fetchedAt: null,
        durationMs: 0,
        complete: false,
        error: { ...first.outcome.error!, retryAfterSeconds: 45 },
      });
    }
    assert.equal(defender.listCalls.length, 1, "one list call for six loads");
    assert.equal(service.stats().failuresRemembered, 5);
    assert.equal(service.stats().refreshFailures, 1);

    // Per tenant and backend: the Graph backend of the same tenant is still asked.
    await service.loadTenant({ tenantId: TENANT, backend: "graph" });
    await service.loadTenant({ tenantId: OTHER, backend: "defender" });
    assert.equal(defender.listCalls.length, 2);

    // A single incident of that tenant costs no call either.
    await assert.rejects(service.getIncident(target, "7"), (e: unknown) => e === defender.fail);
    assert.equal(defender.getCalls.length, 0);

    advance(45 * SECOND);
    defender.fail = undefined;
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1" }));
    const healed = await service.loadTenant(target);
    assert.equal(healed.outcome.ok, true, "asked again once the memory ran out");
    assert.equal(defender.listCalls.length, 3);
  });

  it("does not remember failures that pass by themselves or concern one request", async () => {
    const { service, defender } = setup({ failureMemoryMs: MINUTE });
    for (const error of [
      new UpstreamError("UPSTREAM_UNAVAILABLE", "503", { tenantId: TENANT, backend: "defender", status: 503 }),
      new UpstreamError("NOT_FOUND", "404", { tenantId: TENANT, backend: "defender", status: 404 }),
      new TokenAcquisitionError({ code: "THROTTLED", tenantId: TENANT, retryAfterSeconds: 30 }),
      new TokenAcquisitionError({ code: "TENANT_MISMATCH", tenantId: TENANT }),
    ]) {
      defender.fail = error;
      await service.loadTenant(target);
      await service.loadTenant(target);
    }
    assert.equal(defender.listCalls.length, 8);
    assert.equal(service.stats().failuresRemembered, 0);
  });

  it("remembers every lasting token code, and nothing with failureMemoryMs 0", async () => {
    const { service, defender } = setup({ failureMemoryMs: MINUTE });
    const codes = ["CONSENT_REQUIRED", "TENANT_NOT_FOUND", "RESOURCE_NOT_PROVISIONED", "ACCESS_BLOCKED", "INVALID_CLIENT_CREDENTIAL", "CREDENTIAL_EXPIRED", "TOKEN_REQUEST_REJECTED"] as const;
    for (const [i, code] of codes.entries()) {
      const tenantId = `00000000-0000-4000-8000-00000000000${i}`;
      defender.fail = new TokenAcquisitionError({ code, tenantId });
      assert.equal((await service.loadTenant({ tenantId, backend: "defender" })).outcome.error!.code, code);
      assert.equal((await service.loadTenant({ tenantId, backend: "defender" })).outcome.error!.code, code);
      assert.equal(defender.listCalls.length, i + 1, code);
    }
    const off = setup({ failureMemoryMs: 0 });
    off.defender.fail = forbidden();
    await off.service.loadTenant(target);
    await off.service.loadTenant(target);
    assert.equal(off.defender.listCalls.length, 2);
  });

  it("forgetFailures ends the memory at once; a refresh that started before cannot re-remember", async () => {
    const { service, defender } = setup({ failureMemoryMs: MINUTE });
    defender.fail = new TokenAcquisitionError({ code: "CONSENT_REQUIRED", tenantId: TENANT, aadsts: 700016 });
    await service.loadTenant(target);
    await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 1);
    service.forgetFailures(TENANT.toUpperCase());
    await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 2, "asked again after the forget");

    service.forgetFailures(TENANT, "defender");
    const gate = deferred<void>();
    defender.gate = gate.promise;
    const racing = service.loadTenant(target);
    while (defender.listCalls.length < 3) await new Promise((resolve) => setImmediate(resolve));
    service.forgetFailures(TENANT);
    gate.resolve();
    assert.equal((await racing).outcome.error!.code, "CONSENT_REQUIRED");
    defender.gate = undefined;
    await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 4, "the failure that raced the forget was not remembered");
  });

  it("remembers a failure the token provider gave from its memory no longer than the provider does", async () => {
    const { service, defender, advance } = setup({ failureMemoryMs: MINUTE });
    const original = new TokenAcquisitionError({ code: "CONSENT_REQUIRED", tenantId: TENANT, aadsts: 700016, correlationId: "abc" });
    defender.fail = original.rememberedFor(10);
    const first = await service.loadTenant(target);
    assert.equal(first.outcome.error!.message, original.message, "the original message, word for word");
    assert.equal(first.outcome.error!.retryAfterSeconds, 10);
    advance(4 * SECOND);
    assert.equal((await service.loadTenant(target)).outcome.error!.retryAfterSeconds, 6);
    assert.equal(defender.listCalls.length, 1);
    advance(6 * SECOND);
    await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 2);
  });

  it("a fresh cache entry (another replica's refresh) wins over a remembered failure", async () => {
    const { service, defender, cache } = setup({ failureMemoryMs: MINUTE });
    defender.fail = forbidden();
    await service.loadTenant(target);
    await cache.set(TENANT, { backend: "defender", incidents: [makeIncident({ tenantId: TENANT, incidentId: "9" })], watermark: null, fetchedAt: at(0), fullFetchedAt: at(0) });
    const served = await service.loadTenant(target);
    assert.equal(served.outcome.ok, true);
    assert.deepEqual(idsOf(served.incidents), ["9"]);
    assert.equal(defender.listCalls.length, 1);
  });
});

describe("IncidentService.loadAlerts (Graph lists carry no alerts)", () => {
  const graphTarget = { tenantId: TENANT, backend: "graph" as const };
  const alert = (id: string): IncidentAlert => ({
    alertId: id,
    title: `alert ${id}`,
    description: null,
    severity: "HIGH",
    status: "New",
    category: null,
    serviceSource: null,
    detectionSource: null,
    mitreTechniques: [],
    createdTime: null,
    lastUpdateTime: null,
    resolvedTime: null,
    firstActivity: null,
    lastActivity: null,
    devices: [],
    entities: [],
  });

  /** Lists like Graph without $expand (alerts null); `loadAlerts` reads incidents whole and records each batch. */
  class GraphFake extends FakeClient {
    readonly alertBatches: string[][] = [];
    readonly failing = new Map<string, unknown>();
    constructor() {
      super("graph");
    }
    override async listIncidents(tenantId: string, options: ListOptions = {}): Promise<ListResult> {
      const listed = await super.listIncidents(tenantId, options);
      return { ...listed, incidents: listed.incidents.map((i) => ({ ...i, alerts: null })) };
    }
    async loadAlerts(tenantId: string, incidentIds: readonly string[]): Promise<AlertsLoad[]> {
      this.alertBatches.push([...incidentIds]);
      return incidentIds.map((id) =>
        this.failing.has(id) ? { ok: false, error: this.failing.get(id) } : { ok: true, incident: this.data.get(tenantId)?.get(id) },
      );
    }
  }

  function graphSetup() {
    const graph = new GraphFake();
    const { service, cache, advance } = setup({ clients: { defender: new FakeClient("defender"), graph } });
    graph.put(
      makeIncident({ tenantId: TENANT, incidentId: "1", lastUpdateTime: at(-10 * MINUTE), alerts: [alert("a1"), alert("a2")] }),
      makeIncident({ tenantId: TENANT, incidentId: "2", lastUpdateTime: at(-10 * MINUTE), alerts: [] }),
      makeIncident({ tenantId: TENANT, incidentId: "3", lastUpdateTime: at(-10 * MINUTE), alerts: [alert("a3")] }),
    );
    const wanted = (incidents: readonly Incident[], ...ids: string[]) =>
      ids.map((id) => ({ incidentId: id, lastUpdateTime: incidents.find((i) => i.incidentId === id)!.lastUpdateTime }));
    return { service, graph, cache, advance, wanted };
  }

  it("reads them once per incident, caches them with the incident, then answers from the cache with no call", async () => {
    const { service, graph, cache, wanted } = graphSetup();
    const loaded = await service.loadTenant(graphTarget);
    assert.ok(loaded.incidents.every((i) => i.alerts === null), "not loaded by the list");

    const first = await service.loadAlerts(graphTarget, wanted(loaded.incidents, "1", "2"));
    assert.deepEqual(first, [[alert("a1"), alert("a2")], []], "none ([]) is not the same as not loaded");
    assert.deepEqual(graph.alertBatches, [["1", "2"]], "one batch for the tenant");
    const entry = (await cache.get(TENANT))!;
    assert.deepEqual(entry.incidents.map((i) => [i.incidentId, i.alerts?.length ?? null]), [["1", 2], ["2", 0], ["3", null]]);
    assert.deepEqual(entry.fetchedAt, at(0), "freshness does not move");

    const again = await service.loadAlerts(graphTarget, wanted(loaded.incidents, "1", "2", "3"));
    assert.deepEqual(again, [[alert("a1"), alert("a2")], [], [alert("a3")]]);
    assert.deepEqual(graph.alertBatches, [["1", "2"], ["3"]], "only the one never read");
    const stats = service.stats();
    assert.equal(stats.alertsFromCache, 2);
    assert.equal(stats.alertsFetched, 3);
  });

  it("a newer version from the next refresh replaces the incident and its alerts; unchanged incidents keep theirs", async () => {
    const { service, graph, advance, wanted } = graphSetup();
    const loaded = await service.loadTenant(graphTarget);
    await service.loadAlerts(graphTarget, wanted(loaded.incidents, "1", "2"));
    // Incident 1 gains an alert upstream, which moves its lastUpdateTime.
    graph.put({ ...graph.data.get(TENANT)!.get("1")!, lastUpdateTime: at(5 * SECOND), alerts: [alert("a1"), alert("a2"), alert("a4")] });
    advance(31 * SECOND);
    const refreshed = await service.loadTenant(graphTarget);
    assert.equal(graph.listCalls.at(-1)!.updatedSince !== undefined, true, "a delta");
    assert.equal(refreshed.incidents.find((i) => i.incidentId === "1")!.alerts, null, "replaced: alerts not loaded");
    assert.deepEqual(refreshed.incidents.find((i) => i.incidentId === "2")!.alerts, [], "kept");

    const answer = await service.loadAlerts(graphTarget, wanted(refreshed.incidents, "1", "2"));
    assert.deepEqual(answer[0], [alert("a1"), alert("a2"), alert("a4")]);
    assert.deepEqual(graph.alertBatches, [["1", "2"], ["1"]]);
  });

  it("does not serve cached alerts of a version older than the one asked about", async () => {
    const { service, graph, wanted } = graphSetup();
    const loaded = await service.loadTenant(graphTarget);
    await service.loadAlerts(graphTarget, wanted(loaded.incidents, "3"));
    await service.loadAlerts(graphTarget, [{ incidentId: "3", lastUpdateTime: at(MINUTE) }]);
    assert.deepEqual(graph.alertBatches, [["3"], ["3"]]);
  });

  it("settles per incident: a gone one is NOT_FOUND, a failed one its error, the others their alerts; failures are not cached", async () => {
    const { service, graph, wanted } = graphSetup();
    const loaded = await service.loadTenant(graphTarget);
    const throttled = new UpstreamError("THROTTLED", "slow down", { tenantId: TENANT, backend: "graph", retryAfterSeconds: 3 });
    graph.failing.set("2", throttled);
    graph.data.get(TENANT)!.delete("3");
    const answer = await service.loadAlerts(graphTarget, wanted(loaded.incidents, "1", "2", "3"));
    assert.deepEqual(answer[0], [alert("a1"), alert("a2")]);
    assert.equal(answer[1], throttled);
    assert.ok(answer[2] instanceof UpstreamError);
    assert.equal((answer[2] as UpstreamError).code, "NOT_FOUND");
    graph.failing.clear();
    await service.loadAlerts(graphTarget, wanted(loaded.incidents, "1", "2"));
    assert.deepEqual(graph.alertBatches, [["1", "2", "3"], ["2"]]);
  });

  it("reads through getIncident on a backend without loadAlerts", async () => {
    const { service, defender } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "7", alerts: [alert("d1")] }));
    const answer = await service.loadAlerts(target, [{ incidentId: "7", lastUpdateTime: at(0) }]);
    assert.deepEqual(answer, [[alert("d1")]]);
    assert.deepEqual(defender.getCalls, [`${TENANT}/7`]);
  });
});
