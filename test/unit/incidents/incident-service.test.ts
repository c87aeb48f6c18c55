import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { TokenAcquisitionError } from "../../../src/auth/token-errors.js";
import { UpstreamError, type AlertsLoad, type CallOptions, type IncidentsBackendClient, type ListOptions, type ListResult } from "../../../src/defender/backend-client.js";
import type { Incident, IncidentPatch, IncidentsBackendName } from "../../../src/defender/incident.js";
import { parseIncidentQuery } from "../../../src/incidents/incident-query.js";
import { IncidentService, type IncidentServiceOptions, type IncidentTarget } from "../../../src/incidents/incident-service.js";
import { IncidentMirror } from "../../../src/incidents/mirror.js";
import { openStore, type Store } from "../../../src/store/store.js";
import { makeAlert, makeIncident } from "../../helpers/incident-factory.js";
import { captureLogger } from "../../helpers/log-capture.js";

/**
 * The incident service over fake backends and a real mirror (PGlite in memory, one per file, emptied
 * before each test). The fakes page like the watermark-paging clients: oldest first, `updatedSince`
 * inclusive, `maxPages` honoured, each page handed to `onPage` (awaited) before the next is read.
 */

const TENANT = "0b9c3c7e-5b8e-4a43-9e0e-1f2a3b4c5d6e";
const OTHER = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
const T0 = Date.parse("2026-05-01T12:00:00Z");
const SECOND = 1000;
const MINUTE = 60_000;
const DAY = 86_400_000;
const WINDOW = 30 * DAY;

function deferred<T = void>(): { promise: Promise<T>; resolve(value: T): void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => (resolve = res));
  return { promise, resolve };
}

/** Polls `done` (between macrotasks) until it holds; fails after `cap` rounds. No wall-clock assertion. */
async function until(done: () => boolean | Promise<boolean>, what: string, cap = 2_000): Promise<void> {
  for (let i = 0; i < cap; i++) {
    if (await done()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.fail(`gave up waiting: ${what}`);
}

/** The gate, or the signal's reason once it aborts (as a real client's wait would end). */
function untilAborted(gate: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return gate;
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    void gate.then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}

let clockNow = T0;
const at = (offsetMs: number) => new Date(T0 + offsetMs);

interface ListCall {
  tenantId: string;
  updatedSince: Date | undefined;
  maxPages: number | undefined;
  deadline: number | undefined;
  signal: AbortSignal | undefined;
  streamed: boolean;
}

class FakeClient implements IncidentsBackendClient {
  readonly data = new Map<string, Map<string, Incident>>();
  readonly listCalls: ListCall[] = [];
  readonly getCalls: string[] = [];
  readonly updateCalls: { tenantId: string; incidentId: string; patch: IncidentPatch }[] = [];
  /** Pages read, by tenant and first incident id: a page read twice shows here. */
  readonly pagesRead: string[] = [];
  pageSize = 10;
  /** Holds every call back until it settles. */
  gate: Promise<void> | undefined;
  /** Awaited before page `index` (0-based) of a list is read. */
  beforePage: ((index: number) => Promise<void>) | undefined;
  /** Every call throws this. */
  fail: unknown;
  /** The next list fails at this page (0: thrown; later: the list stops with `stoppedBy`). */
  failAtPage: { page: number; error: unknown } | undefined;

  constructor(readonly backend: IncidentsBackendName) {}

  put(...incidents: Incident[]): void {
    for (const incident of incidents) {
      const tenant = this.data.get(incident.tenantId) ?? new Map<string, Incident>();
      tenant.set(incident.incidentId, { ...incident, backend: this.backend });
      this.data.set(incident.tenantId, tenant);
    }
  }

  async listIncidents(tenantId: string, options: ListOptions = {}): Promise<ListResult> {
    this.listCalls.push({ tenantId, updatedSince: options.updatedSince, maxPages: options.maxPages, deadline: options.deadline, signal: options.signal, streamed: options.onPage !== undefined });
    if (this.gate) await untilAborted(this.gate, options.signal);
    if (this.fail !== undefined) throw this.fail;
    const since = options.updatedSince?.getTime() ?? Number.NEGATIVE_INFINITY;
    const sorted = [...(this.data.get(tenantId)?.values() ?? [])]
      .filter((i) => i.lastUpdateTime.getTime() >= since)
      .sort((a, b) => a.lastUpdateTime.getTime() - b.lastUpdateTime.getTime() || a.incidentId.localeCompare(b.incidentId));
    const kept: Incident[] = [];
    let pages = 0;
    let w: Date | null = options.updatedSince ?? null;
    const result = (complete: boolean, stoppedBy?: unknown): ListResult => ({
      incidents: options.onPage ? [] : kept,
      calls: Math.max(1, pages),
      complete,
      resumeFrom: complete ? (sorted.at(-1)?.lastUpdateTime ?? w) : w,
      paging: "watermark",
      ...(stoppedBy !== undefined ? { stoppedBy } : {}),
    });
    while (pages * this.pageSize < sorted.length) {
      if (options.maxPages !== undefined && pages >= options.maxPages) return result(false);
      if (this.beforePage) {
        try {
          await untilAborted(this.beforePage(pages), options.signal);
        } catch (error) {
          // Like the real clients: a failure before the first page throws, after it the pages read are returned.
          if (pages === 0) throw error;
          return result(false, error);
        }
      }
      if (this.failAtPage?.page === pages) {
        const { error } = this.failAtPage;
        this.failAtPage = undefined;
        if (pages === 0) throw error;
        return result(false, error);
      }
      const page = sorted.slice(pages * this.pageSize, (pages + 1) * this.pageSize);
      this.pagesRead.push(`${tenantId}:${page[0]!.incidentId}`);
      pages++;
      w = page.at(-1)!.lastUpdateTime;
      if (options.onPage) await options.onPage({ incidents: page, resumeFrom: w, calls: pages });
      else kept.push(...page);
    }
    return result(true);
  }

  async getIncident(tenantId: string, incidentId: string, _options: CallOptions = {}): Promise<Incident | undefined> {
    this.getCalls.push(`${tenantId}/${incidentId}`);
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

let store: Store;
let mirror: IncidentMirror;

before(async () => {
  store = await openStore({});
  mirror = new IncidentMirror(store.db);
});
after(async () => {
  await store?.close();
});
beforeEach(async () => {
  clockNow = T0;
  await store.db.query("DELETE FROM incidents");
  await store.db.query("DELETE FROM incident_sync");
  await store.db.query("DELETE FROM incident_changes");
});

function setup(options: Partial<IncidentServiceOptions> = {}) {
  const defender = new FakeClient("defender");
  const graph = new FakeClient("graph");
  const log = captureLogger();
  const stale: IncidentTarget[] = [];
  const service = new IncidentService({
    clients: { defender, graph },
    mirror,
    freshnessMs: 30 * SECOND,
    overlapMs: SECOND,
    windowMs: WINDOW,
    // Long enough that a never-synced tenant's load waits for its whole first sync, however loaded the machine.
    firstLoadWaitMs: 60_000,
    onStale: (t) => stale.push(t),
    now: () => clockNow,
    logger: log.logger,
    ...options,
  });
  const advance = (ms: number) => {
    clockNow += ms;
  };
  return { service, defender, graph, advance, stale, lines: log.lines };
}

const target = { tenantId: TENANT, backend: "defender" as const };

/** `count` incidents one minute apart, the oldest first: ids 1…count (the newest at T0 − 1 min). */
function many(client: FakeClient, count: number, tenantId = TENANT): Incident[] {
  const made: Incident[] = [];
  for (let i = 1; i <= count; i++) made.push(makeIncident({ tenantId, incidentId: String(i), createdTime: at(-DAY), lastUpdateTime: at(-(count - i + 1) * MINUTE) }));
  client.put(...made);
  return made;
}

/** The ids the mirror serves for a tenant (the service's own page over it). */
async function mirrored(service: IncidentService, tenantId = TENANT): Promise<string[]> {
  const page = await service.page([tenantId], parseIncidentQuery({ first: 500 }));
  return page.edges.map((e) => e.incident.incidentId).sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => String(from + i));

describe("IncidentService: first load", () => {
  it("lists the window oldest first, commits page by page, and a never-synced tenant's load waits for its first sync", async () => {
    const { service, defender } = setup();
    many(defender, 25);
    const committedBeforePage: number[] = [];
    defender.beforePage = async () => {
      committedBeforePage.push((await mirror.state(TENANT))?.incidentCount ?? -1);
    };

    const load = await service.loadTenant(target);
    assert.deepEqual(committedBeforePage, [0, 10, 20], "each page is in the mirror before the next is asked for");
    assert.equal(defender.listCalls.length, 1);
    const call = defender.listCalls[0]!;
    assert.deepEqual(call.updatedSince, at(-WINDOW), "from the window's start");
    assert.equal(call.streamed, true, "pages through onPage");
    assert.ok(call.signal instanceof AbortSignal);
    assert.ok(call.deadline! > Date.now() + 60_000, "its own deadline (refreshTimeoutMs, default 120 s)");

    assert.equal(load.tenantId, TENANT);
    assert.equal(load.usable, true);
    assert.deepEqual({ ...load.outcome, durationMs: 0 }, {
      tenantId: TENANT,
      ok: true,
      fromCache: false,
      fetchedAt: at(0),
      durationMs: 0,
      complete: true,
      syncState: "FRESH",
      incidentsMirrored: 25,
    });
    assert.deepEqual(await mirrored(service), range(1, 25));
    const state = (await mirror.state(TENANT))!;
    assert.deepEqual(state.watermark, at(-MINUTE), "the newest incident listed");
    assert.deepEqual(state.fullFetchedAt, at(0));
    assert.equal(state.sweep, null);
    assert.equal(state.pagesRead, 3);
    assert.equal(state.leaseOwner, null, "the lease is released");
    const events = await mirror.changes(0, 100);
    assert.equal(events.length, 25);
    assert.ok(events.every((e) => e.kind === "created" && e.source === "sync" && e.tenantId === TENANT));
    const stats = service.stats();
    assert.deepEqual([stats.refreshes, stats.fullRefreshes, stats.pagesCommitted, stats.upstreamCalls], [1, 1, 3, 3]);
  });

  it("answers after the first page when the first sync takes longer than firstLoadWaitMs; the sync goes on", async () => {
    const { service, defender } = setup({ firstLoadWaitMs: 0 });
    many(defender, 25);
    const secondPage = deferred();
    defender.beforePage = (index) => (index === 1 ? secondPage.promise : Promise.resolve());

    const load = await service.loadTenant(target);
    assert.equal(load.usable, true);
    assert.equal(load.outcome.ok, false);
    assert.equal(load.outcome.complete, false);
    assert.equal(load.outcome.error!.code, "INCOMPLETE");
    assert.equal(load.outcome.syncState, "SYNCING");
    assert.equal(load.outcome.incidentsMirrored, 10);
    assert.deepEqual(await mirrored(service), range(1, 10), "the first page is served");

    const running = service.sync(target);
    assert.equal(service.stats().coalesced, 1, "the same sync, joined");
    secondPage.resolve();
    const result = await running.done;
    assert.deepEqual(result, { ran: true, ok: true, changed: 25 });
    assert.deepEqual(await mirrored(service), range(1, 25));
    const after = await service.loadTenant(target);
    assert.equal(after.outcome.ok, true);
    assert.equal(after.outcome.complete, true);
    assert.equal(defender.listCalls.length, 1, "no second list");
  });

  it("a first load larger than maxPagesPerRefresh goes on at the next sync from the sweep's resume point, no page read twice", async () => {
    const { service, defender, advance, stale } = setup({ maxPagesPerRefresh: 2 });
    const incidents = many(defender, 45);

    const first = await service.loadTenant(target);
    assert.equal(defender.listCalls[0]!.maxPages, 2);
    assert.equal(first.usable, true);
    assert.equal(first.outcome.complete, false);
    assert.equal(first.outcome.error!.code, "INCOMPLETE");
    assert.equal(first.outcome.incidentsMirrored, 20);
    const sweep = (await mirror.state(TENANT))!.sweep!;
    assert.deepEqual(sweep, { startedAt: at(0), resumeFrom: incidents[19]!.lastUpdateTime, pages: 2 });

    // A query does not sync a tenant that has data: it serves what is in; the engine goes on.
    advance(5 * SECOND);
    const served = await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 1);
    assert.equal(served.outcome.incidentsMirrored, 20);
    assert.equal(served.outcome.syncState, "SYNCING");
    assert.deepEqual(stale, [], "a first load under way is the engine's anyway: not moved up");

    const second = await service.sync(target).done;
    assert.ok(second.ran && second.ok);
    assert.equal(second.changed, 19, "incidents 21…39 (20, the boundary, again and unchanged)");
    assert.equal(second.stopped?.code, "INCOMPLETE", "still more to read");
    assert.equal(defender.listCalls.length, 2);
    assert.deepEqual(defender.listCalls[1]!.updatedSince, incidents[19]!.lastUpdateTime, "from where the first sync stopped: not the window's start, no overlap");
    assert.equal(defender.listCalls[1]!.maxPages, 2);
    assert.deepEqual(await mirrored(service), range(1, 39));

    advance(5 * SECOND);
    assert.deepEqual(await service.sync(target).done, { ran: true, ok: true, changed: 6 });
    assert.deepEqual(defender.listCalls[2]!.updatedSince, incidents[38]!.lastUpdateTime);
    assert.deepEqual(await mirrored(service), range(1, 45));
    assert.equal(new Set(defender.pagesRead).size, defender.pagesRead.length, `a page was read twice: ${defender.pagesRead.join(", ")}`);
    assert.equal(defender.pagesRead.length, 5, "45 incidents (+2 boundary incidents) in five pages of 10");

    const state = (await mirror.state(TENANT))!;
    assert.equal(state.sweep, null);
    assert.deepEqual(state.fullFetchedAt, at(0), "complete as of the sweep's start");
    assert.deepEqual(state.fetchedAt, at(10 * SECOND));
    const done = await service.loadTenant(target);
    assert.equal(done.outcome.ok, true);
    assert.equal(done.outcome.complete, true);
    assert.equal(done.outcome.syncState, "FRESH");
  });

  it("normalises tenant ids, so one tenant is one mirror entry", async () => {
    const { service, defender } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1", lastUpdateTime: at(-MINUTE) }));
    const load = await service.loadTenant({ tenantId: ` ${TENANT.toUpperCase()} `, backend: "defender" });
    assert.equal(load.tenantId, TENANT);
    assert.equal(defender.listCalls[0]!.tenantId, TENANT);
    await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 1);
  });

  it("starts over when the tenant's backend changed", async () => {
    const { service, defender, graph } = setup();
    defender.put(makeIncident({ tenantId: TENANT, incidentId: "1", lastUpdateTime: at(-MINUTE) }));
    graph.put(makeIncident({ tenantId: TENANT, incidentId: "g-1", lastUpdateTime: at(-MINUTE) }));
    await service.loadTenant(target);
    const switched = await service.loadTenant({ tenantId: TENANT, backend: "graph" });
    assert.equal(graph.listCalls.length, 1);
    assert.deepEqual(graph.listCalls[0]!.updatedSince, at(-WINDOW), "a first load");
    assert.equal(switched.outcome.ok, true);
    assert.deepEqual(await mirrored(service), ["g-1"]);
    assert.equal((await mirror.state(TENANT))!.backend, "graph");
  });
});

describe("IncidentService: freshness", () => {
  it("a load within freshness makes no call; a stale tenant is served at once and handed to onStale", async () => {
    const { service, defender, advance, stale } = setup();
    many(defender, 3);
    await service.loadTenant(target);
    advance(29 * SECOND);
    const fresh = await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 1, "fresh: no call");
    assert.deepEqual([fresh.outcome.ok, fresh.outcome.fromCache, fresh.outcome.syncState, fresh.usable], [true, true, "FRESH", true]);
    assert.deepEqual(fresh.outcome.fetchedAt, at(0));
    assert.deepEqual(stale, []);

    advance(2 * SECOND);
    const old = await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 1, "stale: still no call (no maxAgeMs)");
    assert.equal(old.usable, true);
    assert.equal(old.outcome.syncState, "STALE");
    assert.deepEqual(stale, [target]);
    assert.equal(service.stats().cacheHits, 2);
  });

  it("maxAgeMs: 0 syncs a delta from the watermark minus overlapMs and waits for it; a larger maxAgeMs does not", async () => {
    const { service, defender, advance } = setup();
    const [one] = many(defender, 3);
    await service.loadTenant(target);
    const seq = (await mirror.changes(0, 100)).at(-1)!.seq;
    advance(5 * SECOND);
    defender.put({ ...one!, severity: "HIGH", lastUpdateTime: at(2 * SECOND) }, makeIncident({ tenantId: TENANT, incidentId: "4", lastUpdateTime: at(3 * SECOND) }));

    const relaxed = await service.loadTenant(target, { maxAgeMs: MINUTE });
    assert.equal(defender.listCalls.length, 1, "5 s old is young enough for a minute");
    assert.equal(relaxed.outcome.fromCache, true);

    const current = await service.loadTenant(target, { maxAgeMs: 0 });
    assert.equal(defender.listCalls.length, 2);
    assert.deepEqual(defender.listCalls[1]!.updatedSince, new Date(at(-MINUTE).getTime() - SECOND), "watermark (newest listed) minus the overlap");
    assert.deepEqual([current.outcome.ok, current.outcome.fromCache, current.outcome.complete], [true, false, true]);
    assert.deepEqual(current.outcome.fetchedAt, at(5 * SECOND));
    assert.equal(service.stats().deltaRefreshes, 1);
    assert.deepEqual(await mirrored(service), ["1", "2", "3", "4"]);
    assert.equal((await mirror.get(TENANT, "1"))!.severity, "HIGH");
    assert.deepEqual(
      (await mirror.changes(seq, 100)).map((e) => [e.incidentId, e.kind, e.changed]),
      [
        ["1", "updated", ["severity"]],
        ["4", "created", []],
      ],
    );
    const state = (await mirror.state(TENANT))!;
    assert.deepEqual(state.watermark, at(3 * SECOND));
    assert.deepEqual(state.fullFetchedAt, at(0), "a delta is not a full list");
  });
});

describe("IncidentService: failures", () => {
  const unavailable = () => new UpstreamError("UPSTREAM_UNAVAILABLE", "503", { tenantId: TENANT, backend: "defender", status: 503 });

  it("a transient failure keeps serving the mirrored incidents, flagged, within maxStaleMs; the next sync is a delta", async () => {
    const { service, defender, advance } = setup({ maxStaleMs: 10 * MINUTE });
    many(defender, 3);
    await service.loadTenant(target);
    advance(MINUTE);
    defender.fail = unavailable();

    const flagged = await service.loadTenant(target, { maxAgeMs: 0 });
    assert.equal(defender.listCalls.length, 2);
    assert.equal(flagged.usable, true);
    assert.deepEqual([flagged.outcome.ok, flagged.outcome.fromCache, flagged.outcome.error?.code], [false, true, "UPSTREAM_UNAVAILABLE"]);
    assert.deepEqual(flagged.outcome.fetchedAt, at(0), "says how old");
    assert.equal(flagged.outcome.syncState, "FAILING");
    assert.deepEqual(await mirrored(service), ["1", "2", "3"], "kept");
    const state = (await mirror.state(TENANT))!;
    assert.equal(state.lastError!.code, "UPSTREAM_UNAVAILABLE");

    // Without maxAgeMs: served from the mirror, flagged with the recorded failure, no call.
    const again = await service.loadTenant(target);
    assert.equal(defender.listCalls.length, 2);
    assert.deepEqual([again.usable, again.outcome.ok, again.outcome.error?.code], [true, false, "UPSTREAM_UNAVAILABLE"]);

    advance(10 * MINUTE);
    const tooOld = await service.loadTenant(target);
    assert.equal(tooOld.usable, false, "failing for longer than stale data may be shown");
    assert.equal(tooOld.outcome.error!.code, "UPSTREAM_UNAVAILABLE");

    defender.fail = undefined;
    assert.deepEqual(await service.sync(target).done, { ran: true, ok: true, changed: 0 });
    assert.notDeepEqual(defender.listCalls[2]!.updatedSince, at(-WINDOW), "the mirror survived: a delta");
    const healed = await service.loadTenant(target);
    assert.deepEqual([healed.usable, healed.outcome.ok, healed.outcome.syncState], [true, true, "FRESH"]);
  });

  it("a transient failure after some pages keeps them, flagged, and the next sync goes on from there", async () => {
    const { service, defender } = setup();
    const incidents = many(defender, 25);
    defender.failAtPage = { page: 2, error: new UpstreamError("THROTTLED", "429", { tenantId: TENANT, backend: "defender", status: 429, retryAfterSeconds: 20 }) };
    const first = await service.loadTenant(target);
    assert.equal(first.usable, true);
    assert.deepEqual([first.outcome.ok, first.outcome.complete, first.outcome.error?.code, first.outcome.error?.retryAfterSeconds], [false, false, "THROTTLED", 20]);
    assert.deepEqual(await mirrored(service), range(1, 20));
    assert.equal(service.stats().partialLists, 1);

    assert.equal((await service.sync(target).done).ran, true);
    assert.deepEqual(defender.listCalls[1]!.updatedSince, incidents[19]!.lastUpdateTime, "from the last page read, not from the start");
    assert.deepEqual(await mirrored(service), range(1, 25));
    assert.equal(new Set(defender.pagesRead).size, defender.pagesRead.length);
    const healed = await service.loadTenant(target);
    assert.deepEqual([healed.outcome.ok, healed.outcome.complete], [true, true]);
  });

  const lasting: [string, () => unknown, string][] = [
    ["upstream 403", () => new UpstreamError("MISSING_ROLE", "403", { tenantId: TENANT, backend: "defender", status: 403 }), "MISSING_ROLE"],
    ["upstream 401", () => new UpstreamError("CONSENT_REQUIRED", "401", { tenantId: TENANT, backend: "defender", status: 401 }), "CONSENT_REQUIRED"],
    ["token: consent revoked", () => new TokenAcquisitionError({ code: "CONSENT_REQUIRED", tenantId: TENANT, aadsts: 7000229 }), "CONSENT_REQUIRED"],
  ];
  for (const [what, error, code] of lasting) {
    it(`a lasting failure (${what}) drops the tenant's rows and is remembered for failureMemoryMs`, async () => {
      const { service, defender, advance } = setup({ failureMemoryMs: MINUTE });
      many(defender, 3);
      many(defender, 2, OTHER);
      await service.loadTenant(target);
      await service.loadTenant({ tenantId: OTHER, backend: "defender" });
      advance(MINUTE);
      defender.fail = error();

      const failed = await service.loadTenant(target, { maxAgeMs: 0 });
      assert.equal(failed.usable, false);
      assert.deepEqual([failed.outcome.ok, failed.outcome.error?.code, failed.outcome.fetchedAt], [false, code, null]);
      assert.equal(failed.outcome.error!.retryAfterSeconds, undefined);
      assert.deepEqual(await mirrored(service), [], "the app may no longer read them: none served");
      assert.equal(await mirror.get(TENANT, "1"), undefined);
      assert.deepEqual(await mirrored(service, OTHER), ["1", "2"], "other tenants untouched");
      const state = (await mirror.state(TENANT))!;
      assert.equal(state.lastError!.code, code, "recorded for every replica");
      assert.equal(state.incidentCount, 0);
      assert.equal(service.phase(state), "FAILING");
      const calls = defender.listCalls.length;

      advance(15 * SECOND);
      for (let i = 0; i < 3; i++) {
        const again = await service.loadTenant(target, { maxAgeMs: 0 });
        assert.equal(again.usable, false);
        assert.deepEqual(again.outcome.error, { ...failed.outcome.error!, retryAfterSeconds: 45 }, "same error, with the time left");
      }
      assert.equal(defender.listCalls.length, calls, "no call while remembered");
      assert.equal(service.stats().failuresRemembered, 3);
      assert.equal(service.remembers(target), true);

      advance(45 * SECOND);
      defender.fail = undefined;
      const healed = await service.loadTenant(target);
      assert.equal(defender.listCalls.length, calls + 1, "asked again once the memory ran out");
      assert.deepEqual(defender.listCalls.at(-1)!.updatedSince, new Date(clockNow - WINDOW), "a first load again");
      assert.deepEqual([healed.usable, healed.outcome.ok], [true, true]);
      assert.deepEqual(await mirrored(service), ["1", "2", "3"]);
    });
  }

  it("remembers nothing with failureMemoryMs 0, nor failures that pass by themselves", async () => {
    const off = setup({ failureMemoryMs: 0 });
    off.defender.fail = new UpstreamError("MISSING_ROLE", "403", { tenantId: TENANT, backend: "defender", status: 403 });
    await off.service.loadTenant(target);
    await off.service.loadTenant(target);
    assert.equal(off.defender.listCalls.length, 2);

    const on = setup({ failureMemoryMs: MINUTE });
    on.defender.fail = new TokenAcquisitionError({ code: "THROTTLED", tenantId: OTHER, retryAfterSeconds: 30 });
    await on.service.loadTenant({ tenantId: OTHER, backend: "defender" });
    await on.service.loadTenant({ tenantId: OTHER, backend: "defender" });
    assert.equal(on.defender.listCalls.length, 2);
    assert.equal(on.service.stats().failuresRemembered, 0);
  });

  it("a lasting failure after some pages drops the pages read", async () => {
    const { service, defender } = setup();
    many(defender, 25);
    defender.failAtPage = { page: 1, error: new UpstreamError("MISSING_ROLE", "403", { tenantId: TENANT, backend: "defender", status: 403 }) };
    const result = await service.loadTenant(target);
    assert.equal(result.usable, false);
    assert.equal(result.outcome.error!.code, "MISSING_ROLE");
    assert.deepEqual(await mirrored(service), []);
  });

  const firstLoadFailures: [string, unknown, string][] = [
    ["upstream throttling", new UpstreamError("THROTTLED", "429", { tenantId: TENANT, backend: "defender", status: 429, retryAfterSeconds: 30 }), "THROTTLED"],
    ["upstream 5xx", new UpstreamError("UPSTREAM_UNAVAILABLE", "503", { tenantId: TENANT, backend: "defender", status: 503 }), "UPSTREAM_UNAVAILABLE"],
    ["token credential", new TokenAcquisitionError({ code: "INVALID_CLIENT_CREDENTIAL", aadsts: 7000215 }), "INVALID_CLIENT_CREDENTIAL"],
    ["an abort from below", new DOMException("aborted", "AbortError"), "DEADLINE_EXCEEDED"],
    ["a bug", new TypeError("x is undefined at https://api.security.microsoft.com/api/incidents"), "INTERNAL"],
  ];
  for (const [what, error, code] of firstLoadFailures) {
    it(`a first load that fails with ${what} answers ${code}, serves nothing and throws nothing`, async () => {
      const { service, defender, lines } = setup();
      defender.fail = error;
      const result = await service.loadTenant(target);
      assert.equal(result.usable, false);
      assert.deepEqual([result.outcome.ok, result.outcome.fromCache, result.outcome.fetchedAt, result.outcome.error?.code], [false, false, null, code]);
      assert.ok(result.outcome.error!.hint.length > 0);
      if (error instanceof UpstreamError || error instanceof TokenAcquisitionError) assert.equal(result.outcome.error!.retryAfterSeconds, error.retryAfterSeconds);
      if (code === "INTERNAL") {
        assert.equal(result.outcome.error!.message, "internal error");
        assert.ok(lines.some((l) => l.includes("x is undefined")), "the original is logged");
      }
      assert.doesNotMatch(JSON.stringify(result), /https?:/);
      assert.equal(service.stats().refreshFailures, 1);
    });
  }

  it("stops waiting at the deadline; the sync goes on and fills the mirror", async () => {
    const { service, defender } = setup();
    many(defender, 3);
    const gate = deferred();
    defender.gate = gate.promise;
    const result = await service.loadTenant(target, { deadline: Date.now() + 50 });
    assert.equal(result.usable, false);
    assert.equal(result.outcome.error!.code, "DEADLINE_EXCEEDED");
    assert.equal(service.stats().deadlineExceeded, 1);
    const running = service.sync(target);
    gate.resolve();
    assert.equal((await running.done).ran, true);
    const later = await service.loadTenant(target);
    assert.deepEqual([later.outcome.ok, later.outcome.fromCache], [true, true]);
    assert.equal(defender.listCalls.length, 1);
  });

  it("makes no call for a caller whose signal already ended", async () => {
    const { service, defender } = setup();
    const result = await service.loadTenant(target, { signal: AbortSignal.abort() });
    assert.equal(result.outcome.error!.code, "DEADLINE_EXCEEDED");
    assert.equal(defender.listCalls.length, 0);
  });
});

describe("IncidentService: single incidents", () => {
  it("updateIncident writes through and into the mirror at once (a write event), leaving freshness and watermark", async () => {
    const { service, defender, advance } = setup();
    many(defender, 2);
    await service.loadTenant(target);
    const before = (await mirror.state(TENANT))!;
    const seq = (await mirror.changes(0, 100)).at(-1)!.seq;
    advance(MINUTE);

    const updated = await service.updateIncident(target, "1", { status: "RESOLVED", assignedTo: "soc@partner.example" });
    assert.deepEqual(defender.updateCalls, [{ tenantId: TENANT, incidentId: "1", patch: { status: "RESOLVED", assignedTo: "soc@partner.example" } }]);
    assert.deepEqual(await mirror.get(TENANT, "1"), updated);
    const events = await mirror.changes(seq, 100);
    assert.deepEqual(events.map((e) => [e.incidentId, e.kind, e.changed, e.source]), [["1", "updated", ["status", "assignedTo"], "write"]]);
    const state = (await mirror.state(TENANT))!;
    assert.deepEqual([state.fetchedAt, state.watermark], [before.fetchedAt, before.watermark], "not made fresh; deltas start where the lists left off");

    // The next delta lists the same version: nothing changes twice.
    await service.loadTenant(target, { maxAgeMs: 0 });
    assert.equal(defender.listCalls.length, 2);
    assert.equal((await mirror.changes(seq, 100)).length, 1);
    assert.equal((await mirror.get(TENANT, "1"))!.status, "RESOLVED");
  });

  it("an older listed copy does not replace a newer written one", async () => {
    const { service, defender, advance } = setup();
    many(defender, 2);
    await service.loadTenant(target);
    advance(MINUTE);
    const listed = defender.data.get(TENANT)!.get("1")!;
    await service.updateIncident(target, "1", { status: "IN_PROGRESS" });
    defender.put(listed); // a list that read the incident before the write
    await service.loadTenant(target, { maxAgeMs: 0 });
    assert.equal((await mirror.get(TENANT, "1"))!.status, "IN_PROGRESS");
  });

  it("throws the backend's errors, and writes nothing", async () => {
    const { service, defender } = setup();
    many(defender, 1);
    await service.loadTenant(target);
    const seq = (await mirror.changes(0, 100)).at(-1)!.seq;
    defender.fail = new UpstreamError("MISSING_ROLE", "403", { tenantId: TENANT, backend: "defender", status: 403 });
    await assert.rejects(service.updateIncident(target, "1", { status: "RESOLVED" }), (e: unknown) => e instanceof UpstreamError && e.code === "MISSING_ROLE");
    await assert.rejects(service.getIncident(target, "9"), UpstreamError);
    assert.deepEqual(await mirror.changes(seq, 100), []);
  });

  it("getIncident answers from a fresh mirror without a call, else from the backend (into the mirror)", async () => {
    const { service, defender, advance } = setup();
    many(defender, 2);
    await service.loadTenant(target);
    assert.equal((await service.getIncident(target, "1"))!.incidentId, "1");
    assert.equal(defender.getCalls.length, 0);

    defender.put(makeIncident({ tenantId: TENANT, incidentId: "7", lastUpdateTime: at(SECOND) }));
    assert.equal((await service.getIncident(target, "7"))!.incidentId, "7");
    assert.deepEqual(defender.getCalls, [`${TENANT}/7`]);
    assert.ok(await mirror.get(TENANT, "7"), "kept in the mirror");

    advance(MINUTE);
    await service.getIncident(target, "1");
    assert.equal(defender.getCalls.length, 2, "stale mirror: asks the backend");
    assert.equal(await service.getIncident(target, "404"), undefined);
  });
});

describe("IncidentService: replicas share the mirror through leases", () => {
  it("two owners never sync one tenant at once: the second gets ran: false while the first holds the lease", async () => {
    const a = setup({ owner: "replica-a" });
    const b = setup({ owner: "replica-b" });
    many(a.defender, 5);
    many(b.defender, 5);
    const gate = deferred();
    a.defender.gate = gate.promise;

    const first = a.service.sync(target);
    await until(() => a.defender.listCalls.length === 1, "replica A lists (holding the lease)");
    assert.equal((await mirror.state(TENANT))!.leaseOwner, "replica-a");
    assert.deepEqual(await b.service.sync(target).done, { ran: false });
    assert.equal(b.defender.listCalls.length, 0, "B made no call");
    assert.equal(b.service.stats().leaseBusy, 1);

    gate.resolve();
    assert.deepEqual(await first.done, { ran: true, ok: true, changed: 5 });
    assert.equal((await mirror.state(TENANT))!.leaseOwner, null);
    const second = await b.service.sync(target).done;
    assert.equal(second.ran, true, "free again: B syncs");
    assert.equal(b.defender.listCalls.length, 1);
    assert.notDeepEqual(b.defender.listCalls[0]!.updatedSince, at(-WINDOW), "B goes on from A's sync: a delta");
  });

  it("a never-synced tenant's load on one replica waits for the sync another replica runs", async () => {
    const a = setup({ owner: "replica-a" });
    const b = setup({ owner: "replica-b" });
    many(a.defender, 5);
    const gate = deferred();
    a.defender.gate = gate.promise;
    const syncing = a.service.sync(target);
    await until(() => a.defender.listCalls.length === 1, "replica A lists");

    const waiting = b.service.loadTenant(target);
    await until(() => b.service.stats().leaseBusy === 1, "replica B found the lease taken");
    gate.resolve();
    const load = await waiting;
    await syncing.done;
    assert.equal(b.defender.listCalls.length, 0, "B never called upstream");
    assert.equal(load.usable, true);
    assert.equal(load.outcome.incidentsMirrored, 5);
    assert.deepEqual(await mirrored(b.service), range(1, 5));
  });

  it("close() ends running syncs' waits, keeps what they committed, records no failure, and releases the leases", async () => {
    const { service, defender } = setup({ owner: "replica-c", maxPagesPerRefresh: 10 });
    many(defender, 25);
    defender.beforePage = (index) => (index === 1 ? new Promise(() => {}) : Promise.resolve());
    const never = deferred();
    const running = service.sync(target);
    await until(async () => ((await mirror.state(TENANT))?.incidentCount ?? 0) === 10, "the first page is committed");
    // The second page never comes; a gate on another tenant's list never opens either: only close() ends them.
    defender.gate = never.promise;
    const other = service.sync({ tenantId: OTHER, backend: "defender" });
    await until(() => defender.listCalls.length === 2, "the other tenant's sync lists");
    assert.equal(service.syncing, 2);
    assert.equal((await mirror.state(TENANT))!.leaseOwner, "replica-c");
    await service.close();
    assert.equal((await running.done).ran, true);
    assert.equal((await other.done).ran, true);
    assert.equal(service.syncing, 0);
    const state = (await mirror.state(TENANT))!;
    assert.equal(state.leaseOwner, null, "released");
    assert.equal(state.lastError, null, "shutting down is no failure");
    assert.equal(state.incidentCount, 10, "the committed page stays");
    assert.equal(service.stats().refreshFailures, 0);
    assert.deepEqual(await service.sync(target).done, { ran: false }, "a closed service starts no sync");
  });
});

describe("IncidentService.loadAlerts (Graph lists carry no alerts)", () => {
  const graphTarget = { tenantId: TENANT, backend: "graph" as const };
  const alert = makeAlert;


  class GraphFake extends FakeClient {
    readonly alertBatches: string[][] = [];
    constructor() {
      super("graph");
    }
    override async listIncidents(tenantId: string, options: ListOptions = {}): Promise<ListResult> {
      const onPage = options.onPage;
      return super.listIncidents(tenantId, {
        ...options,
        ...(onPage ? { onPage: (page) => onPage({ ...page, incidents: page.incidents.map((i) => ({ ...i, alerts: null })) }) } : {}),
      });
    }
    async loadAlerts(tenantId: string, incidentIds: readonly string[]): Promise<AlertsLoad[]> {
      this.alertBatches.push([...incidentIds]);
      return incidentIds.map((id) => ({ ok: true, incident: this.data.get(tenantId)?.get(id) }));
    }
  }

  it("reads them once per incident version, keeps them in the mirror, then answers from it with no call", async () => {
    const graph = new GraphFake();
    const { service } = setup({ clients: { defender: new FakeClient("defender"), graph } });
    graph.put(
      makeIncident({ tenantId: TENANT, incidentId: "1", lastUpdateTime: at(-10 * MINUTE), alerts: [alert("a1"), alert("a2")] }),
      makeIncident({ tenantId: TENANT, incidentId: "2", lastUpdateTime: at(-10 * MINUTE), alerts: [] }),
    );
    await service.loadTenant(graphTarget);
    assert.equal((await mirror.get(TENANT, "1"))!.alerts, null, "not loaded by the list");
    const wanted = [
      { incidentId: "1", lastUpdateTime: at(-10 * MINUTE) },
      { incidentId: "2", lastUpdateTime: at(-10 * MINUTE) },
    ];
    assert.deepEqual(await service.loadAlerts(graphTarget, wanted), [[alert("a1"), alert("a2")], []]);
    assert.deepEqual(graph.alertBatches, [["1", "2"]]);
    assert.deepEqual((await mirror.get(TENANT, "1"))!.alerts, [alert("a1"), alert("a2")]);
    assert.deepEqual(await service.loadAlerts(graphTarget, wanted), [[alert("a1"), alert("a2")], []]);
    assert.equal(graph.alertBatches.length, 1, "from the mirror");
    await service.loadAlerts(graphTarget, [{ incidentId: "1", lastUpdateTime: at(MINUTE) }]);
    assert.deepEqual(graph.alertBatches, [["1", "2"], ["1"]], "a newer version than the mirror holds is read again");
    assert.deepEqual([service.stats().alertsFromCache, service.stats().alertsFetched], [2, 3]);
  });
});
