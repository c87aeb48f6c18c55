import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, beforeEach, describe, it } from "node:test";
import pg from "pg";
import { CLASSIFICATIONS, INCIDENT_STATUSES, SEVERITIES, type Incident } from "../../../src/defender/incident.js";
import {
  INCIDENT_ORDER_FIELDS,
  ORDER_DIRECTIONS,
  parseIncidentQuery,
  queryIncidents,
  type IncidentFilter,
  type IncidentOrder,
  type LoadedTenantIncidents,
} from "../../../src/incidents/incident-query.js";
import { IncidentMirror } from "../../../src/incidents/mirror.js";
import { openStore, type Store } from "../../../src/store/store.js";
import { makeAlert, makeIncident, pick, seededRandom, tenantGuid } from "../../helpers/incident-factory.js";

/**
 * The SQL incident mirror (src/incidents/mirror.ts) on PGlite in memory, and on PostgreSQL too when
 * TEST_DATABASE_URL is set (in a schema of its own, dropped at the end). Its paging is checked against the
 * in-memory `queryIncidents` (the earlier, trusted implementation of the same order and cursors).
 */

const BASE = Date.parse("2026-03-01T00:00:00Z");
const MINUTE = 60_000;
const T1 = tenantGuid(1);
const T2 = tenantGuid(2);
const T3 = tenantGuid(3);

interface Engine {
  name: string;
  open(): Promise<Store>;
  dispose(): Promise<void>;
}

const engines: Engine[] = [{ name: "PGlite", open: () => openStore({}), dispose: async () => {} }];
const databaseUrl = process.env.TEST_DATABASE_URL;
if (databaseUrl) {
  const schema = `cw_mirror_${randomBytes(6).toString("hex")}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  engines.push({
    name: "PostgreSQL",
    async open() {
      await admin(`CREATE SCHEMA ${schema}`);
      const url = new URL(databaseUrl);
      url.searchParams.set("options", `-c search_path=${schema}`);
      return openStore({ databaseUrl: url.toString() });
    },
    dispose: () => admin(`DROP SCHEMA IF EXISTS ${schema} CASCADE`),
  });
} else {
  describe("IncidentMirror (PostgreSQL)", { skip: "TEST_DATABASE_URL is not set" }, () => {
    it("runs the same suite against PostgreSQL", () => {});
  });
}

const alert = makeAlert;

// ---------------------------------------------------------------------------------------------------
// Random data for the paging comparison

/** Ids whose orders differ as text and as numbers, numbers past 2^53, and non-numeric ones (case, symbols, non-ASCII). */
const ID_POOL = [
  "9", "10", "100", "1000", "2", "20", "007", "0", "99999999999999999999", "12345678901234567890",
  ...Array.from({ length: 60 }, (_, n) => String(n * 37 + 3)),
  "a", "A", "b10", "b9", "INC-1", "inc-10", "x_%", "Zeta", "ü1", "10a",
];
const NAMES = ["Suspicious sign-in", "Ransomware activity on one endpoint", "Phishing email reported", "100% CPU_spike", "Multi-stage incident involving RANSOMWARE", "MFA fatigue"];
const ASSIGNEES = [null, "alice@contoso.com", " Alice@Contoso.com ", "bob@fabrikam.com", "  ", ""];

/** Tenants with many ties: times come from a few minutes, so equal keys across and within tenants are common. */
function generate(seed: number, tenantIds: readonly string[], perTenant: number): LoadedTenantIncidents[] {
  const random = seededRandom(seed);
  return tenantIds.map((tenantId) => {
    const ids = new Set<string>();
    while (ids.size < perTenant) ids.add(pick(random, ID_POOL));
    const incidents = [...ids].map((incidentId) =>
      makeIncident({
        tenantId,
        incidentId,
        name: `${pick(random, NAMES)}`,
        severity: pick(random, SEVERITIES),
        status: pick(random, INCIDENT_STATUSES),
        classification: pick(random, CLASSIFICATIONS),
        assignedTo: pick(random, ASSIGNEES),
        createdTime: new Date(BASE + Math.floor(random() * 6) * MINUTE),
        lastUpdateTime: new Date(BASE + Math.floor(random() * 8) * MINUTE),
      }),
    );
    return { tenantId, incidents };
  });
}

const ORDERS: IncidentOrder[] = INCIDENT_ORDER_FIELDS.flatMap((field) => ORDER_DIRECTIONS.map((direction) => ({ field, direction })));

const FILTERS: { name: string; filter: IncidentFilter | undefined }[] = [
  { name: "no filter", filter: undefined },
  { name: "severity list", filter: { severity: ["HIGH", "MEDIUM"] } },
  { name: "status", filter: { status: ["ACTIVE"] } },
  { name: "classification and status", filter: { classification: ["TRUE_POSITIVE", "UNKNOWN"], status: ["ACTIVE", "RESOLVED", "IN_PROGRESS"] } },
  { name: "assignedTo (trimmed, any case)", filter: { assignedTo: "  ALICE@contoso.com" } },
  { name: "unassigned (null or blank)", filter: { unassigned: true } },
  { name: "created window", filter: { createdAfter: new Date(BASE + MINUTE), createdBefore: new Date(BASE + 4 * MINUTE) } },
  { name: "updated window and severity", filter: { updatedAfter: new Date(BASE + 2 * MINUTE), updatedBefore: new Date(BASE + 6 * MINUTE), severity: ["LOW", "HIGH", "UNKNOWN"] } },
  { name: "search: name substring, any case", filter: { search: "Ransom" } },
  { name: "search: '%' is not a pattern", filter: { search: "%" } },
  { name: "search: a numeric id (and names containing it)", filter: { search: "10" } },
  { name: "search: a non-numeric id, any case", filter: { search: "INC-1" } },
];

const key = (i: Incident) => `${i.tenantId}/${i.incidentId}`;

// ---------------------------------------------------------------------------------------------------

for (const engine of engines) {
  describe(`IncidentMirror (${engine.name})`, () => {
    let store: Store;
    let mirror: IncidentMirror;

    before(async () => {
      store = await engine.open();
      mirror = new IncidentMirror(store.db);
    });
    after(async () => {
      await store?.close();
      await engine.dispose();
    });
    beforeEach(async () => {
      await store.db.query("DELETE FROM incidents");
      await store.db.query("DELETE FROM incident_sync");
      await store.db.query("DELETE FROM incident_changes");
    });

    /** Puts each tenant's incidents as one listed page. */
    const load = async (tenants: readonly LoadedTenantIncidents[]) => {
      for (const tenant of tenants) await mirror.put(tenant.tenantId, "defender", tenant.incidents, { source: "sync", listedMs: BASE });
    };

    describe("page: keyset paging equals the in-memory reference", () => {
      // Five tenants with data; the query spans three of them and one that has none.
      const data = generate(42, [tenantGuid(1), tenantGuid(2), tenantGuid(3), tenantGuid(10), tenantGuid(300)], 40);
      const queried = [tenantGuid(3), tenantGuid(1), tenantGuid(300), tenantGuid(77)];
      const reference = data.filter((t) => queried.includes(t.tenantId));

      beforeEach(() => load(data));

      for (const order of ORDERS) {
        it(`${order.field} ${order.direction}: every filter, page by page, the same incidents, counts and flags`, async () => {
          for (const { name, filter } of FILTERS) {
            const query = { orderBy: order, ...(filter ? { filter } : {}), first: 7, scope: "test" };
            const expectedAll = queryIncidents(reference, { ...query, first: 500 }).edges.map((e) => key(e.incident));
            const visited: string[] = [];
            let after: string | null = null;
            for (let pages = 0; ; pages++) {
              assert.ok(pages < 200, `${name}: paging does not end`);
              const got = await mirror.page(queried, parseIncidentQuery({ ...query, after }));
              const want = queryIncidents(reference, { ...query, after });
              const where = `${name}, page ${pages + 1}`;
              assert.deepEqual(got.edges.map((e) => key(e.incident)), want.edges.map((e) => key(e.incident)), where);
              assert.deepEqual(got.edges.map((e) => e.cursor), want.edges.map((e) => e.cursor), `${where}: cursors`);
              assert.equal(got.totalCount, want.totalCount, `${where}: totalCount`);
              assert.equal(got.hasNextPage, want.hasNextPage, `${where}: hasNextPage`);
              assert.equal(got.hasPreviousPage, want.hasPreviousPage, `${where}: hasPreviousPage`);
              assert.equal(got.startCursor, want.startCursor, where);
              assert.equal(got.endCursor, want.endCursor, where);
              visited.push(...got.edges.map((e) => key(e.incident)));
              if (!got.hasNextPage) break;
              after = got.endCursor;
            }
            assert.deepEqual(visited, expectedAll, `${name}: the whole sequence`);
            assert.equal(new Set(visited).size, visited.length, `${name}: nothing twice`);
          }
        });
      }

      it("the data has the ties and ids the comparison is about", () => {
        const all = reference.flatMap((t) => t.incidents);
        const times = new Set(all.map((i) => i.lastUpdateTime.getTime()));
        assert.ok(times.size < all.length / 5, "many equal lastUpdateTimes");
        const ids = new Set(all.map((i) => i.incidentId));
        for (const id of ["9", "10", "100"]) assert.ok([...ids].some((x) => x.length === id.length && /^\d+$/.test(x)), `numeric ids of length ${id.length}`);
        assert.ok([...ids].some((x) => !/^\d+$/.test(x)), "non-numeric ids");
        assert.ok(all.some((i) => i.assignedTo !== null && i.assignedTo.trim() === ""), "blank assignees");
        for (const { name, filter } of FILTERS) {
          const n = queryIncidents(reference, { ...(filter ? { filter } : {}), first: 0 }).totalCount;
          assert.ok(n > 0, `filter "${name}" matches something`);
        }
      });

      it("first 0, first 1 and one large page agree too, and a cursor of a row that left the mirror still pages", async () => {
        for (const first of [0, 500]) {
          const got = await mirror.page(queried, parseIncidentQuery({ first }));
          const want = queryIncidents(reference, { first });
          assert.deepEqual(got.edges.map((e) => key(e.incident)), want.edges.map((e) => key(e.incident)));
          assert.deepEqual([got.totalCount, got.hasNextPage, got.hasPreviousPage], [want.totalCount, want.hasNextPage, want.hasPreviousPage]);
        }
        // After the first incident alone: the cursor's own incident is all that sorts at or before it.
        for (const order of ORDERS) {
          const one = await mirror.page(queried, parseIncidentQuery({ orderBy: order, first: 1 }));
          const next = await mirror.page(queried, parseIncidentQuery({ orderBy: order, first: 1, after: one.endCursor }));
          const want = queryIncidents(reference, { orderBy: order, first: 1, after: one.endCursor });
          assert.equal(next.hasPreviousPage, true, `${order.field} ${order.direction}`);
          assert.equal(want.hasPreviousPage, true);
          assert.deepEqual(next.edges.map((e) => key(e.incident)), want.edges.map((e) => key(e.incident)));
        }
        const page = await mirror.page(queried, parseIncidentQuery({ first: 5 }));
        const cursorIncident = page.edges.at(-1)!.incident;
        await store.db.query("DELETE FROM incidents WHERE tenant_id = $1 AND incident_id = $2", [cursorIncident.tenantId, cursorIncident.incidentId]);
        const without = reference.map((t) => ({ tenantId: t.tenantId, incidents: t.incidents.filter((i) => key(i) !== key(cursorIncident)) }));
        const got = await mirror.page(queried, parseIncidentQuery({ first: 5, after: page.endCursor }));
        const want = queryIncidents(without, { first: 5, after: page.endCursor });
        assert.deepEqual(got.edges.map((e) => key(e.incident)), want.edges.map((e) => key(e.incident)));
        assert.equal(got.hasPreviousPage, true);
        assert.equal(got.totalCount, want.totalCount);
      });

      it("returns incidents as they were put: dates as Dates, every field", async () => {
        const got = await mirror.page([tenantGuid(1)], parseIncidentQuery({ first: 500 }));
        const byKey = new Map(data[0]!.incidents.map((i) => [key(i), i]));
        assert.equal(got.edges.length, byKey.size);
        for (const edge of got.edges) assert.deepEqual(edge.incident, byKey.get(key(edge.incident)));
        assert.deepEqual(await mirror.page([], parseIncidentQuery({})), { edges: [], totalCount: 0, hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null });
      });
    });

    describe("put and the change stream", () => {
      const v = (minutes: number, overrides: Partial<Incident> = {}) =>
        makeIncident({ tenantId: T1, incidentId: "7", createdTime: new Date(BASE), lastUpdateTime: new Date(BASE + minutes * MINUTE), ...overrides });

      it("creates, replaces only with a strictly newer lastUpdateTime, and records exactly what changed", async () => {
        assert.deepEqual(await mirror.put(T1, "defender", [v(1)], { source: "sync", listedMs: BASE }), { created: 1, updated: 0 });
        // The same version again, even with other contents, and an older one: nothing changes, no event.
        assert.deepEqual(await mirror.put(T1, "defender", [v(1, { status: "RESOLVED" })], { source: "sync", listedMs: BASE }), { created: 0, updated: 0 });
        assert.deepEqual(await mirror.put(T1, "defender", [v(0, { status: "RESOLVED" })], { source: "sync", listedMs: BASE }), { created: 0, updated: 0 });
        assert.equal((await mirror.get(T1, "7"))!.status, "ACTIVE");
        // Newer: replaced; the event names status and assignedTo, nothing else.
        const newer = v(2, { status: "IN_PROGRESS", assignedTo: "soc@partner.example" });
        assert.deepEqual(await mirror.put(T1, "defender", [newer], { source: "write", listedMs: BASE }), { created: 0, updated: 1 });
        assert.deepEqual(await mirror.get(T1, "7"), newer);
        // Several versions of one id in one put: the newest counts, once.
        const tags = v(4, { status: "IN_PROGRESS", assignedTo: "soc@partner.example", tags: ["x"], severity: "HIGH" });
        assert.deepEqual(await mirror.put(T1, "defender", [v(3), tags, v(2)], { source: "sync", listedMs: BASE }), { created: 0, updated: 1 });

        const events = await mirror.changes(0, 100);
        assert.deepEqual(
          events.map((e) => [e.tenantId, e.incidentId, e.kind, e.changed, e.lastUpdateTime?.getTime(), e.source]),
          [
            [T1, "7", "created", [], BASE + MINUTE, "sync"],
            [T1, "7", "updated", ["status", "assignedTo"], BASE + 2 * MINUTE, "write"],
            [T1, "7", "updated", ["severity", "tags"], BASE + 4 * MINUTE, "sync"],
          ],
        );
        assert.ok(events[0]!.seq < events[1]!.seq && events[1]!.seq < events[2]!.seq);
        assert.ok(events.every((e) => e.at instanceof Date && !Number.isNaN(e.at.getTime())));
        assert.equal((await mirror.state(T1))!.incidentCount, 1);
      });

      it("changes(afterSeq, limit, tenantIds) pages the stream in order and by tenant", async () => {
        await mirror.put(T1, "defender", [makeIncident({ tenantId: T1, incidentId: "1" }), makeIncident({ tenantId: T1, incidentId: "2" })], { source: "sync", listedMs: BASE });
        await mirror.put(T2, "graph", [makeIncident({ tenantId: T2, incidentId: "1", backend: "graph" })], { source: "sync", listedMs: BASE });
        await mirror.put(T1, "defender", [makeIncident({ tenantId: T1, incidentId: "3" })], { source: "sync", listedMs: BASE });
        const all = await mirror.changes(0, 100);
        assert.equal(all.length, 4);
        assert.deepEqual(all.map((e) => e.tenantId), [T1, T1, T2, T1]);
        assert.deepEqual(all.at(-1)!.incidentId, "3");
        const seqs = all.map((e) => e.seq);
        assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
        assert.deepEqual(await mirror.changes(seqs[0]!, 2), all.slice(1, 3), "after a seq, limited");
        assert.deepEqual(await mirror.changes(seqs[1]!, 100, [T1]), [all[3]], "one tenant's");
        assert.deepEqual(await mirror.changes(0, 100, [T2, T3]), [all[2]]);
        assert.deepEqual(await mirror.changes(seqs[3]!, 100), []);
      });

      it("keeps a row's alerts under a write that lacks them only when asked (keepAlerts), and writes state with the rows", async () => {
        await mirror.put(T1, "graph", [v(1, { alerts: [alert("a1")] })], { source: "sync", listedMs: BASE });
        await mirror.put(T1, "graph", [v(2, { alerts: null, status: "RESOLVED" })], { source: "write", listedMs: BASE, keepAlerts: true });
        assert.deepEqual((await mirror.get(T1, "7"))!.alerts, [alert("a1")]);
        assert.equal((await mirror.get(T1, "7"))!.status, "RESOLVED");
        await mirror.put(T1, "graph", [v(3, { alerts: null })], { source: "sync", listedMs: BASE });
        assert.equal((await mirror.get(T1, "7"))!.alerts, null, "a newer listed version carries its own (unknown) alerts");

        const fetchedAt = new Date(BASE + 9 * MINUTE);
        await mirror.put(T1, "graph", [], { source: "sync", listedMs: BASE, state: { fetchedAt, watermark: new Date(BASE), pagesRead: 1 } });
        await mirror.put(T1, "graph", [], { source: "sync", listedMs: BASE, state: { pagesRead: 2 } });
        const state = (await mirror.state(T1))!;
        assert.deepEqual([state.backend, state.fetchedAt, state.watermark, state.pagesRead, state.incidentCount], ["graph", fetchedAt, new Date(BASE), 3, 1]);
        assert.deepEqual([...(await mirror.getMany(T1, ["7", "8"])).keys()], ["7"]);
      });
    });

    describe("removals", () => {
      const inc = (tenantId: string, incidentId: string, minutes: number) => makeIncident({ tenantId, incidentId, lastUpdateTime: new Date(BASE + minutes * MINUTE), createdTime: new Date(BASE) });

      it("removeUnlisted drops the rows a sweep did not list, with removed events; other tenants untouched", async () => {
        await mirror.put(T1, "defender", [inc(T1, "1", 1), inc(T1, "2", 2), inc(T1, "3", 3)], { source: "sync", listedMs: 1_000 });
        await mirror.put(T2, "defender", [inc(T2, "1", 1)], { source: "sync", listedMs: 1_000 });
        assert.equal((await mirror.state(T1))!.incidentCount, 3);
        const before = await mirror.changes(0, 100);

        // A sweep started at 2,000 lists 1 (same version: only marked) and 2 (newer): 3 is gone upstream.
        await mirror.put(T1, "defender", [inc(T1, "1", 1), inc(T1, "2", 5)], { source: "sync", listedMs: 2_000 });
        // A written copy of the same version does not count as listed.
        await mirror.put(T1, "defender", [inc(T1, "3", 3)], { source: "write", listedMs: 2_000 });
        assert.equal(await mirror.removeUnlisted(T1, 2_000), 1);
        assert.deepEqual([...(await mirror.getMany(T1, ["1", "2", "3"])).keys()].sort(), ["1", "2"]);
        assert.ok(await mirror.get(T2, "1"), "another tenant's old rows stay");
        assert.equal((await mirror.state(T1))!.incidentCount, 2);

        const events = (await mirror.changes(before.at(-1)!.seq, 100)).map((e) => [e.incidentId, e.kind, e.changed, e.lastUpdateTime?.getTime(), e.source]);
        assert.deepEqual(events, [
          ["2", "updated", [], BASE + 5 * MINUTE, "sync"],
          ["3", "removed", [], BASE + 3 * MINUTE, "sync"],
        ]);
        assert.equal(await mirror.removeUnlisted(T1, 2_000), 0, "nothing twice");
      });

      it("pruneWindow drops rows updated before the bound, in every tenant, without events; counts follow", async () => {
        await mirror.put(T1, "defender", [inc(T1, "1", 1), inc(T1, "2", 5), inc(T1, "3", 10)], { source: "sync", listedMs: BASE });
        await mirror.put(T2, "defender", [inc(T2, "1", 2), inc(T2, "2", 20)], { source: "sync", listedMs: BASE });
        const seq = (await mirror.changes(0, 100)).at(-1)!.seq;
        assert.equal(await mirror.pruneWindow(BASE + 5 * MINUTE), 2);
        assert.deepEqual([...(await mirror.getMany(T1, ["1", "2", "3"])).keys()].sort(), ["2", "3"], "a row exactly at the bound stays");
        assert.deepEqual([...(await mirror.getMany(T2, ["1", "2"])).keys()], ["2"]);
        assert.deepEqual(await mirror.changes(seq, 100), []);
        assert.equal((await mirror.state(T1))!.incidentCount, 2);
        assert.equal((await mirror.state(T2))!.incidentCount, 1);
        assert.equal(await mirror.size(), 3);
      });

      it("forgetTenant drops a tenant's rows (each with a removed event) and state", async () => {
        await mirror.put(T1, "defender", [inc(T1, "1", 1)], { source: "sync", listedMs: BASE });
        await mirror.put(T2, "defender", [inc(T2, "1", 1)], { source: "sync", listedMs: BASE });
        const before = (await mirror.changes(0, 100)).at(-1)!.seq;
        await mirror.forgetTenant(T1);
        assert.deepEqual(
          (await mirror.changes(before, 100)).map((c) => [c.tenantId, c.incidentId, c.kind, c.source]),
          [[T1, "1", "removed", "sync"]],
        );
        assert.equal(await mirror.state(T1), undefined);
        assert.equal(await mirror.get(T1, "1"), undefined);
        assert.deepEqual([...(await mirror.states([T1, T2])).keys()], [T2]);
      });
    });

    describe("leases", () => {
      it("one owner at a time; renewable by its owner; free after release; not released by another", async () => {
        assert.equal(await mirror.tryLease(T1, "defender", "A", 60_000), true);
        assert.equal((await mirror.state(T1))!.leaseOwner, "A", "the state row is created with the lease");
        assert.equal(await mirror.tryLease(T1, "defender", "B", 60_000), false);
        assert.equal(await mirror.tryLease(T1, "defender", "A", 60_000), true, "renewed");
        assert.equal(await mirror.tryLease(T2, "defender", "B", 60_000), true, "per tenant");
        await mirror.releaseLease(T1, "B");
        assert.equal(await mirror.tryLease(T1, "defender", "B", 60_000), false, "B cannot release A's lease");
        await mirror.releaseLease(T1, "A");
        assert.equal((await mirror.state(T1))!.leaseOwner, null);
        assert.equal(await mirror.tryLease(T1, "defender", "B", 60_000), true);
        assert.equal(await mirror.tryLease(T1, "defender", "A", 60_000), false);
        await mirror.releaseAll("B");
        assert.deepEqual([(await mirror.state(T1))!.leaseOwner, (await mirror.state(T2))!.leaseOwner], [null, null]);
      });

      it("an expired lease goes to the next owner", async () => {
        assert.equal(await mirror.tryLease(T1, "defender", "A", 200), true);
        let taken = false;
        for (let i = 0; i < 1_000 && !taken; i++) {
          taken = await mirror.tryLease(T1, "defender", "B", 60_000);
          if (!taken) await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert.equal(taken, true, "B got the lease once A's ran out");
        const state = (await mirror.state(T1))!;
        assert.equal(state.leaseOwner, "B");
        assert.equal(await mirror.tryLease(T1, "defender", "A", 200), false, "and holds it");
      });
    });

    describe("alerts and counts", () => {
      it("putAlerts stores alerts only on a row of the same version", async () => {
        const v2 = makeIncident({ tenantId: T1, incidentId: "5", alerts: null, lastUpdateTime: new Date(BASE + 2 * MINUTE) });
        await mirror.put(T1, "graph", [v2], { source: "sync", listedMs: BASE });
        await mirror.putAlerts(T1, [{ ...v2, lastUpdateTime: new Date(BASE + MINUTE), alerts: [alert("old")] }]);
        assert.equal((await mirror.get(T1, "5"))!.alerts, null, "read from an older version: not kept");
        await mirror.putAlerts(T1, [{ ...v2, alerts: [alert("a1")] }]);
        assert.deepEqual((await mirror.get(T1, "5"))!.alerts, [alert("a1")], "same version: kept");
        await mirror.putAlerts(T1, [{ ...v2, lastUpdateTime: new Date(BASE + 3 * MINUTE), alerts: [alert("a2")] }]);
        const held = (await mirror.get(T1, "5"))!;
        assert.deepEqual(held.alerts, [alert("a1")], "read newer than the row: not kept (the next sync brings that version)");
        assert.equal(held.lastUpdateTime.getTime(), BASE + 2 * MINUTE, "the row keeps its version");
        await mirror.putAlerts(T1, [{ ...v2, incidentId: "6", alerts: [alert("x")] }]);
        assert.equal(await mirror.get(T1, "6"), undefined, "no row is created");
      });

      it("counts group by severity and status over the tenants asked", async () => {
        const data = generate(7, [T1, T2, T3], 30);
        await load(data);
        const expect = (tenantIds: string[]) => {
          const out = { total: 0, bySeverity: {} as Record<string, number>, byStatus: {} as Record<string, number> };
          for (const i of data.filter((t) => tenantIds.includes(t.tenantId)).flatMap((t) => t.incidents)) {
            out.total++;
            out.bySeverity[i.severity] = (out.bySeverity[i.severity] ?? 0) + 1;
            out.byStatus[i.status] = (out.byStatus[i.status] ?? 0) + 1;
          }
          return out;
        };
        assert.deepEqual(await mirror.counts([T1]), expect([T1]));
        assert.deepEqual(await mirror.counts([T1, T3]), expect([T1, T3]));
        assert.deepEqual(await mirror.counts([T1, T2, T3]), expect([T1, T2, T3]));
        assert.deepEqual(await mirror.counts([]), { total: 0, bySeverity: {}, byStatus: {} });
      });
    });
  });
}
