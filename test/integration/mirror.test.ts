import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { createApp, type App, type AppDependencies } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { idKey } from "../../src/incidents/incident-query.js";
import type { SyncState } from "../../src/incidents/mirror.js";
import { withSandbox } from "../../src/runtime.js";
import type { SandboxContext } from "../../src/sandbox/context.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { openStore, type Store } from "../../src/store/store.js";
import { postGraphQL, type GraphQLResponse } from "../helpers/graphql.js";
import { startTestSandbox, type TestSandbox } from "../helpers/sandbox.js";

/**
 * The incident mirror and its sync engine end to end (issue 14): the app over real HTTP against the sandbox,
 * on PGlite (a data directory that outlives the app) and on PostgreSQL (TEST_DATABASE_URL), with each
 * backend as the deployment default. Every check reads both the GraphQL answer and the sandbox's own
 * counters (or the list requests it served), never a clock.
 */

const DATABASE_URL = process.env.TEST_DATABASE_URL;
const NEEDS_PG = "needs TEST_DATABASE_URL (set by .ci/run)";

const PAGE = `query($first: Int, $after: String, $tenantIds: [ID!], $filter: IncidentFilter, $maxAge: Int) {
  incidents(first: $first, after: $after, tenantIds: $tenantIds, filter: $filter, maxAgeSeconds: $maxAge) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { tenantId incidentId status assignedTo severity lastUpdateTime } }
    tenantOutcomes { tenantId ok complete syncState incidentsMirrored fromCache error { code } }
  }
}`;

/** Generous, so that every wait in this file ends on the awaited event and never on a deadline (except where said). */
const OPERATION_TIMEOUT_MS = "20000";
/** Incidents of the sandbox (updated within the last 90 days) all fit, whatever the time between the sandbox's anchor and the sync. */
const WINDOW_DAYS = "365";
/** The polls' pause and most iterations: about 30 s, far beyond what any awaited event takes. */
const POLL_MS = 100;
const POLL_CAP = 300;

interface Outcome {
  tenantId: string;
  ok: boolean;
  complete: boolean;
  syncState: string | null;
  incidentsMirrored: number | null;
  fromCache: boolean;
  error: { code: string } | null;
}
interface Node {
  tenantId: string;
  incidentId: string;
  status: string;
  assignedTo: string | null;
  severity: string;
  lastUpdateTime: string;
}

// ---------------------------------------------------------------------------------------------------
// Helpers

/** A store the apps of one suite share, across their restarts. */
interface StoreUnderTest {
  kind: "pglite" | "postgres";
  /** DATA_DIR (and DATABASE_URL on PostgreSQL). */
  env: Record<string, string>;
  dispose(): Promise<void>;
}

/**
 * A new PGlite data directory, migrated and empty: a copy of one made once per file (initdb takes seconds on
 * this machine; copying a closed directory does not).
 */
let pgliteTemplate: Promise<string> | undefined;
async function pgliteStore(): Promise<StoreUnderTest> {
  pgliteTemplate ??= (async () => {
    const template = await mkdtemp(join(tmpdir(), "crosswatch-mirror-template-"));
    await (await openStore({ dataDir: template })).close();
    return template;
  })();
  const dir = await mkdtemp(join(tmpdir(), "crosswatch-mirror-"));
  await cp(await pgliteTemplate, dir, { recursive: true });
  return { kind: "pglite", env: { DATA_DIR: dir }, dispose: () => rm(dir, { recursive: true, force: true }) };
}

after(async () => {
  if (pgliteTemplate) await rm(await pgliteTemplate, { recursive: true, force: true });
});

/** PostgreSQL in a schema of its own: its tables start empty, and parallel test files never meet. */
async function postgresStore(): Promise<StoreUnderTest> {
  const schema = `cw_mirror_${randomBytes(5).toString("hex")}`;
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.end();
  const url = new URL(DATABASE_URL!);
  url.searchParams.set("options", `-c search_path=${schema}`);
  // The data directory only keeps the sandbox's state file away from ./data; the store is PostgreSQL.
  const dir = await mkdtemp(join(tmpdir(), "crosswatch-mirror-"));
  return {
    kind: "postgres",
    env: { DATABASE_URL: url.toString(), DATA_DIR: dir },
    async dispose() {
      const drop = new pg.Client({ connectionString: DATABASE_URL });
      await drop.connect();
      await drop.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await drop.end();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** An app on the sandbox and the store, not yet listening (so tenants can be registered before its engine starts). */
async function buildApp(t: TestSandbox, store: StoreUnderTest, env: Record<string, string>, deps: AppDependencies = {}): Promise<App> {
  const config = withSandbox(
    loadConfig({
      PORT: "0",
      LOG_LEVEL: "silent",
      // The sandbox on an external database is a choice, never a fallback (src/deployment-mode.ts).
      SANDBOX: "true",
      OPERATION_TIMEOUT_MS,
      INCIDENT_WINDOW_DAYS: WINDOW_DAYS,
      ...store.env,
      ...env,
    }),
    t.sandbox,
  );
  return createApp(config, deps);
}

/** Registers sandbox tenants as sandbox mode does at its first start: consented ones GRANTED, the Graph-only one on Graph. */
async function register(app: App, tenants: readonly SandboxTenant[]): Promise<void> {
  await app.store.tenants.registerMissing(
    tenants.map((x) => ({
      id: x.id,
      displayName: x.displayName,
      tags: x.tags,
      backend: x.resources.defender ? null : ("graph" as const),
      consentState: x.consent.granted ? ("GRANTED" as const) : ("PENDING" as const),
    })),
  );
}

/** The store is new: no tenant, no mirrored incident, no sync state, no change event. */
async function assertCleanStore(app: App): Promise<void> {
  for (const table of ["tenants", "incidents", "incident_sync", "incident_changes"]) {
    const rows = await app.store.db.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
    assert.equal(Number(rows[0]!.n), 0, `${table} is empty at the start`);
  }
}

/** List calls (either backend) the sandbox received for a tenant. */
function listCalls(t: TestSandbox, tenantId: string): number {
  const c = t.sandbox.context.counterSnapshot().byTenant[tenantId] ?? {};
  return (c["defender.list"] ?? 0) + (c["graph.list"] ?? 0);
}

/** Token calls the sandbox received for a tenant. */
function tokenCalls(t: TestSandbox, tenantId: string): number {
  return t.sandbox.context.counterSnapshot().byTenant[tenantId]?.token ?? 0;
}

/** A list request the sandbox answered (went past latency, faults and rate limits). */
interface ListRequest {
  tenantId: string;
  url: string;
  /** Which replica sent it: a digest of its bearer token (each replica holds its own tokens). */
  caller: string;
  startMs: number;
  /** When the answer was sent; undefined while in flight. */
  endMs: number | undefined;
}

/** Records every list request the sandbox serves, by wrapping its gate (where each emulated call is counted). */
function recordListRequests(context: SandboxContext): ListRequest[] {
  const log: ListRequest[] = [];
  const gate = context.gate.bind(context);
  context.gate = async (request, reply, call) => {
    const startMs = performance.now();
    const result = await gate(request, reply, call);
    if (result.proceed && (call.endpoint === "defender.list" || call.endpoint === "graph.list")) {
      const entry: ListRequest = {
        tenantId: call.tenantKey,
        url: request.url,
        caller: createHash("sha256").update(String(request.headers.authorization ?? "")).digest("hex").slice(0, 12),
        startMs,
        endMs: undefined,
      };
      log.push(entry);
      reply.raw.once("close", () => (entry.endMs = performance.now()));
    }
    return result;
  };
  return log;
}

/** A list request's watermark position: `$filter=… ge <time>` in ms and `$skip`. */
function listPosition(url: string): { sinceMs: number; skip: number } {
  const params = new URLSearchParams(url.slice(url.indexOf("?") + 1));
  const since = /\bge\s+(\S+)/.exec(params.get("$filter") ?? "")?.[1];
  assert.ok(since, `a watermark list request: ${url}`);
  return { sinceMs: Date.parse(since), skip: Number(params.get("$skip") ?? 0) };
}

type Gql = (variables: Record<string, unknown>) => Promise<GraphQLResponse<any>>;

function pageQuery(url: string): Gql {
  return (variables) => postGraphQL(url, PAGE, variables);
}

/** The connection, after checking the answer has no errors. */
function connection(result: GraphQLResponse<any>): { totalCount: number; edges: { cursor: string; node: Node }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null }; tenantOutcomes: Outcome[] } {
  assert.equal(result.body.errors, undefined, JSON.stringify(result.body.errors));
  return result.body.data.incidents;
}

/** Every page of `incidents(first:)` over all tenants, in order. */
async function pageAll(gql: Gql, first: number): Promise<{ totalCount: number; nodes: Node[]; cursors: string[] }> {
  const nodes: Node[] = [];
  const cursors: string[] = [];
  let totalCount = -1;
  let after: string | null = null;
  for (let page = 0; page < 500; page++) {
    const c = connection(await gql({ first, after }));
    if (totalCount === -1) totalCount = c.totalCount;
    assert.equal(c.totalCount, totalCount, "totalCount is the same on every page");
    assert.ok(c.edges.length <= first);
    nodes.push(...c.edges.map((e) => e.node));
    cursors.push(...c.edges.map((e) => e.cursor));
    if (!c.pageInfo.hasNextPage) return { totalCount, nodes, cursors };
    after = c.pageInfo.endCursor;
  }
  assert.fail("paging did not end within 500 pages");
}

/** Polls until `done` holds (at most POLL_CAP times, POLL_MS apart); returns its last value. */
async function until<T>(what: string, probe: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  let value = await probe();
  for (let i = 0; i < POLL_CAP && !done(value); i++) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    value = await probe();
  }
  assert.ok(done(value), `${what}: not reached after ${POLL_CAP} polls (${JSON.stringify(value)})`);
  return value;
}

/** The sandbox's status in the public vocabulary (`InProgress` → `IN_PROGRESS`). */
function publicStatus(status: string): string {
  return status.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** A sandbox incident as `tenant/id@lastUpdateMs`. */
function sandboxKey(tenantId: string, incidentId: number | string, lastUpdateTime: string): string {
  return `${tenantId}/${incidentId}@${Date.parse(lastUpdateTime)}`;
}

function nodeKey(n: Node): string {
  return `${n.tenantId}/${n.incidentId}@${Date.parse(n.lastUpdateTime)}`;
}

/** Whether a tenant is readable by the app: consented with the incident roles. */
function readableTenant(x: SandboxTenant): boolean {
  return x.consent.granted && x.displayName !== "Coho Winery";
}

// ---------------------------------------------------------------------------------------------------
// One store and one default backend per suite

const STORES = [
  { kind: "pglite" as const, open: pgliteStore, skip: false as const },
  { kind: "postgres" as const, open: postgresStore, skip: DATABASE_URL ? (false as const) : NEEDS_PG },
];

for (const storeSpec of STORES) {
  for (const backend of ["defender", "graph"] as const) {
    describe(`the incident mirror on ${storeSpec.kind}, ${backend} by default`, { skip: storeSpec.skip }, () => {
      let t: TestSandbox;
      let store: StoreUnderTest;
      let app: App | undefined;
      let gql: Gql;
      let url: string;
      let listLog: ListRequest[];
      let seeded: SandboxTenant[];
      /** Registered at the start: every seeded tenant but Trey Research (kept for the engine's test). */
      let registered: SandboxTenant[];
      let readable: SandboxTenant[];
      const named = (name: string) => seeded.find((x) => x.displayName === name)!;
      /** Incidents per list page on this backend (Defender's `$top` 100, Graph's 50). */
      const pageSize = backend === "defender" ? 100 : 50;

      const start = async (env: Record<string, string>): Promise<App> => {
        const built = await buildApp(t, store, { INCIDENTS_BACKEND: backend, ...env });
        app = built;
        url = await built.listen();
        gql = pageQuery(url);
        return built;
      };
      const stop = async (): Promise<void> => {
        const running = app;
        app = undefined;
        await running?.close();
      };
      /** List and token calls per readable tenant since `before` (a map from `snapshot`). */
      const snapshot = () => new Map(readable.map((x) => [x.id, { lists: listCalls(t, x.id), tokens: tokenCalls(t, x.id) }]));
      const callsSince = (before: ReturnType<typeof snapshot>) =>
        readable.map((x) => ({ tenant: x.displayName, lists: listCalls(t, x.id) - before.get(x.id)!.lists, tokens: tokenCalls(t, x.id) - before.get(x.id)!.tokens }));

      before(async () => {
        t = await startTestSandbox();
        store = await storeSpec.open();
        listLog = recordListRequests(t.sandbox.context);
        seeded = [...t.sandbox.tenants];
        registered = seeded.filter((x) => x.displayName !== "Trey Research");
        readable = registered.filter(readableTenant);
      });
      after(async () => {
        await stop();
        await t?.close();
        await store?.dispose();
      });

      it("goes on with an interrupted first load after a fault and a restart, reading no page twice", async () => {
        // One page per sync, no background engine: each query with maxAgeSeconds: 0 moves the first load on by one page.
        const settings = { INCIDENT_SYNC: "false", INCIDENT_PAGES_PER_REFRESH: "1" };
        const first = await start(settings);
        await assertCleanStore(first);
        await register(first, registered);
        const aw = named("Adventure Works Cycles");
        const expected = t.sandbox.incidents.forTenant(aw.id);
        assert.equal(expected.length, 300);
        const awOutcome = async (maxAge?: number) => {
          const c = connection(await gql({ tenantIds: [aw.id], first: 1, ...(maxAge !== undefined ? { maxAge } : {}) }));
          const outcome = c.tenantOutcomes[0]!;
          return { outcome, totalCount: c.totalCount };
        };

        const cold = await awOutcome();
        assert.equal(cold.outcome.complete, false, JSON.stringify(cold.outcome));
        assert.equal(cold.outcome.syncState, "SYNCING");
        assert.equal(cold.outcome.error?.code, "INCOMPLETE");
        assert.equal(cold.outcome.incidentsMirrored, pageSize, "the first sync committed its one page");
        assert.equal(cold.totalCount, pageSize, "the incidents read so far are served");
        assert.equal(listCalls(t, aw.id), 1);

        const second = await awOutcome(0);
        // It resumes at the first page's last update time, so it reads the incident(s) of that millisecond again.
        assert.ok(second.outcome.incidentsMirrored! > pageSize && second.outcome.incidentsMirrored! < 2 * pageSize, `the next sync went on from the first page (${second.outcome.incidentsMirrored})`);
        assert.equal(listCalls(t, aw.id), 2);

        // A fault: the sync fails (every retry answered 500); the pages committed stay and are served, flagged.
        t.sandbox.context.setFault(aw.id, { kind: "server-error", status: 500, endpoints: [`${backend}.list`] });
        const failing = await awOutcome(0);
        assert.ok(listCalls(t, aw.id) > 2, "the sync asked (and was answered 500)");
        assert.equal(failing.outcome.ok, false);
        assert.equal(failing.outcome.error?.code, "UPSTREAM_UNAVAILABLE", JSON.stringify(failing.outcome));
        assert.equal(failing.outcome.incidentsMirrored, second.outcome.incidentsMirrored, "nothing lost to the fault");
        assert.equal(failing.totalCount, second.outcome.incidentsMirrored);
        t.sandbox.context.clearFaults(aw.id);

        // A restart mid-way: a new app on the same store goes on from where the old one stopped.
        await stop();
        await start(settings);
        let mirrored = failing.outcome.incidentsMirrored!;
        let last = failing.outcome;
        for (let i = 0; i < 20 && !last.complete; i++) {
          const step = await awOutcome(0);
          last = step.outcome;
          assert.ok(last.incidentsMirrored! > mirrored || last.complete, `each sync adds incidents (${mirrored} → ${last.incidentsMirrored})`);
          mirrored = last.incidentsMirrored!;
        }
        assert.equal(last.complete, true, JSON.stringify(last));
        assert.equal(last.ok, true);
        assert.equal(last.incidentsMirrored, expected.length);

        // The list requests the sandbox answered: each one further on than the one before, none read twice.
        const served = listLog.filter((r) => r.tenantId === aw.id);
        assert.equal(new Set(served.map((r) => r.url)).size, served.length, "no list URL served twice");
        for (let i = 1; i < served.length; i++) {
          const a = listPosition(served[i - 1]!.url);
          const b = listPosition(served[i]!.url);
          assert.ok(b.sinceMs > a.sinceMs || (b.sinceMs === a.sinceMs && b.skip > a.skip), `request ${i} goes on from request ${i - 1}: ${served[i - 1]!.url} → ${served[i]!.url}`);
        }
        const state = (await app!.incidents.mirror.state(aw.id))!;
        assert.equal(state.pagesRead, served.length, "every page served was committed, once");

        // The mirror now holds exactly the sandbox's incidents.
        const all = connection(await gql({ tenantIds: [aw.id], first: 500 }));
        assert.equal(all.totalCount, expected.length);
        assert.deepEqual(new Set(all.edges.map((e) => nodeKey(e.node))), new Set(expected.map((r) => sandboxKey(aw.id, r.incidentId, r.lastUpdateTime))));
        const byId = new Map(expected.map((r) => [String(r.incidentId), r]));
        for (const { node } of all.edges) assert.equal(node.status, publicStatus(byId.get(node.incidentId)!.status), `status of ${node.incidentId}`);
        await stop();
      });

      it("pages across tenants through every incident once, in order, and keeps the mirror across a restart with no upstream call", async () => {
        await start({ INCIDENT_SYNC: "false" });
        // Waits for every tenant's first load (maxAgeSeconds waits for a tenant not completely synced).
        const outcomes = await until(
          "every readable tenant completely synced",
          async () => connection(await gql({ first: 1, maxAge: 3600 })).tenantOutcomes,
          (list) => readable.every((x) => list.some((o) => o.tenantId === x.id && o.ok && o.complete && o.syncState === "FRESH")),
        );
        assert.equal(outcomes.length, registered.length);
        for (const x of readable) assert.ok(listCalls(t, x.id) >= 1, `${x.displayName} was listed`);

        const firstLoad = await pageAll(gql, 37);
        const expected = readable
          .flatMap((x) => t.sandbox.incidents.forTenant(x.id).map((r) => ({ tenantId: x.id, incidentId: String(r.incidentId), ms: Date.parse(r.lastUpdateTime) })))
          .sort((a, b) => b.ms - a.ms || (a.tenantId < b.tenantId ? -1 : a.tenantId > b.tenantId ? 1 : 0) || (idKey(a.incidentId) < idKey(b.incidentId) ? -1 : 1));
        assert.equal(firstLoad.totalCount, expected.length);
        assert.equal(firstLoad.nodes.length, expected.length);
        const keys = firstLoad.nodes.map((n) => `${n.tenantId}/${n.incidentId}`);
        assert.equal(new Set(keys).size, keys.length, "no incident twice");
        assert.deepEqual(
          firstLoad.nodes.map((n) => `${n.tenantId}/${n.incidentId}@${Date.parse(n.lastUpdateTime)}`),
          expected.map((e) => `${e.tenantId}/${e.incidentId}@${e.ms}`),
          "every readable incident once, newest first (ties by tenant, then id)",
        );
        assert.ok(firstLoad.nodes.some((n) => n.tenantId === named("Proseware, Inc.").id), "the Graph-only tenant is in");

        // A restart: the new app serves the same mirror (same pages, same cursors) without a token or a list call.
        const beforeRestart = await pageAll(gql, 500);
        assert.deepEqual(beforeRestart.nodes, firstLoad.nodes);
        const before = snapshot();
        await stop();
        await start({ INCIDENT_SYNC: "false" });
        const again = await pageAll(gql, 500);
        assert.equal(again.totalCount, firstLoad.totalCount);
        assert.deepEqual(again.nodes, beforeRestart.nodes);
        assert.deepEqual(again.cursors, beforeRestart.cursors);
        const calls = callsSince(before);
        assert.deepEqual(calls.filter((c) => c.lists !== 0 || c.tokens !== 0), [], "no list or token call after the restart");
      });

      it("serves the mirror as it is without maxAgeSeconds, syncs each tenant once with maxAgeSeconds: 0, and refuses -1", async () => {
        const contoso = named("Contoso Ltd");
        const record = t.sandbox.incidents.forTenant(contoso.id)[5]!;
        const oldAssignee = record.assignedTo;
        const newAssignee = `night.shift.${backend}@contoso.onmicrosoft.com`;
        assert.ok(t.sandbox.incidents.update(contoso.id, record.incidentId, { assignedTo: newAssignee }, "test"));
        const filter = { assignedTo: newAssignee };

        let before = snapshot();
        const asIs = connection(await gql({ first: 5, filter }));
        assert.equal(asIs.edges.length, 0, "the change is not in the mirror yet");
        const contosoPage = connection(await gql({ tenantIds: [contoso.id], first: 500 }));
        const held = contosoPage.edges.find((e) => e.node.incidentId === String(record.incidentId))!;
        assert.equal(held.node.assignedTo, oldAssignee, "the old value is served");
        assert.deepEqual(callsSince(before).filter((c) => c.lists !== 0), [], "no list call without maxAgeSeconds");

        before = snapshot();
        const fresh = connection(await gql({ first: 5, filter, maxAge: 0 }));
        assert.equal(fresh.edges.length, 1);
        assert.equal(fresh.edges[0]!.node.incidentId, String(record.incidentId));
        assert.equal(fresh.edges[0]!.node.assignedTo, newAssignee);
        for (const x of readable) assert.ok(fresh.tenantOutcomes.find((o) => o.tenantId === x.id)?.ok, x.displayName);
        assert.deepEqual(
          callsSince(before).filter((c) => c.lists !== 1),
          [],
          "exactly one list call (a delta) per tenant",
        );

        const total = t.sandbox.context.counterSnapshot().total;
        const refused = await gql({ first: 5, maxAge: -1 });
        assert.equal(refused.body.data ?? null, null);
        assert.equal(refused.body.errors?.[0]?.extensions?.code, "BAD_USER_INPUT");
        assert.equal(t.sandbox.context.counterSnapshot().total, total, "refused before any upstream call");
      });

      it("shows an updateIncident change at once, without a list call, and records it in the change stream", async () => {
        const fabrikam = named("Fabrikam, Inc.");
        const record = t.sandbox.incidents.forTenant(fabrikam.id).find((r) => r.status === "Active")!;
        const assignee = `ana.${backend}@partner.example`;
        const update = await postGraphQL(
          url,
          `mutation($t: ID!, $i: ID!, $a: String) { updateIncident(tenantId: $t, incidentId: $i, input: { status: IN_PROGRESS, assignedTo: $a }) { status assignedTo } }`,
          { t: fabrikam.id, i: String(record.incidentId), a: assignee },
        );
        assert.equal(update.body.errors, undefined, JSON.stringify(update.body.errors));
        assert.equal(update.body.data.updateIncident.status, "IN_PROGRESS");

        const before = snapshot();
        const shown = connection(await gql({ tenantIds: [fabrikam.id], first: 5, filter: { assignedTo: assignee } }));
        assert.equal(shown.edges.length, 1);
        assert.equal(shown.edges[0]!.node.incidentId, String(record.incidentId));
        assert.equal(shown.edges[0]!.node.status, "IN_PROGRESS");
        assert.equal(shown.edges[0]!.node.assignedTo, assignee);
        assert.deepEqual(callsSince(before).filter((c) => c.lists !== 0), [], "no list call");

        const events = await app!.store.db.query<{ kind: string; changed: string[]; source: string }>(
          `SELECT kind, changed, source FROM incident_changes WHERE tenant_id = $1 AND incident_id = $2 AND source = 'write' ORDER BY seq`,
          [fabrikam.id, String(record.incidentId)],
        );
        assert.equal(events.length, 1, JSON.stringify(events));
        assert.equal(events[0]!.kind, "updated");
        assert.ok(events[0]!.changed.includes("status") && events[0]!.changed.includes("assignedTo"), JSON.stringify(events[0]!.changed));
        await stop();
      });

      it("syncs a consented tenant in the background, with no query", async () => {
        const trey = named("Trey Research");
        const engineApp = await buildApp(t, store, { INCIDENTS_BACKEND: backend });
        app = engineApp;
        await register(engineApp, [trey]);
        assert.equal(listCalls(t, trey.id), 0);
        await engineApp.listen();
        const state = await until(
          "Trey Research synced by the engine",
          () => engineApp.incidents.mirror.state(trey.id),
          (s: SyncState | undefined) => s?.fetchedAt != null,
        );
        assert.ok(listCalls(t, trey.id) >= 1, "the sandbox was listed for the tenant");
        assert.equal(state!.incidentCount, t.sandbox.incidents.forTenant(trey.id).length);
        assert.ok(engineApp.syncEngine!.stats().started >= 1);
        await stop();
      });
    });
  }
}

// ---------------------------------------------------------------------------------------------------
// Two replicas on one PostgreSQL database

describe("two replicas on one PostgreSQL database", { skip: DATABASE_URL ? false : NEEDS_PG }, () => {
  let t: TestSandbox;
  let store: StoreUnderTest;
  /** Replica A's store, opened here: "killing" A closes it under A's feet. */
  let storeA: Store | undefined;
  let a: App | undefined;
  let b: App | undefined;
  let listLog: ListRequest[];
  let seeded: SandboxTenant[];
  let trey: SandboxTenant;
  let readable: SandboxTenant[];
  /** Who holds each tenant's lease, as the replicas' own lease calls say; and any take-over of a held lease. */
  const holders = new Map<string, string>();
  const violations: string[] = [];

  /** Wraps a replica's lease calls to see who holds what (released before the release is sent: never a false alarm). */
  const watchLeases = (app: App, name: string) => {
    const mirror = app.incidents.mirror;
    const tryLease = mirror.tryLease.bind(mirror);
    const releaseLease = mirror.releaseLease.bind(mirror);
    mirror.tryLease = async (tenantId, backend, owner, ttlMs) => {
      const taken = await tryLease(tenantId, backend, owner, ttlMs);
      if (taken) {
        const holder = holders.get(tenantId);
        if (holder !== undefined && holder !== name) violations.push(`${name} took ${tenantId} while ${holder} held it`);
        holders.set(tenantId, name);
      }
      return taken;
    };
    mirror.releaseLease = async (tenantId, owner) => {
      if (holders.get(tenantId) === name) holders.delete(tenantId);
      await releaseLease(tenantId, owner);
    };
  };

  before(async () => {
    // Some latency, so that syncs last long enough for the two replicas' engines to meet.
    t = await startTestSandbox({ latency: { fixedMs: 20 } });
    store = await postgresStore();
    listLog = recordListRequests(t.sandbox.context);
    seeded = [...t.sandbox.tenants];
    trey = seeded.find((x) => x.displayName === "Trey Research")!;
    readable = seeded.filter((x) => x !== trey && readableTenant(x));
  });
  after(async () => {
    await b?.close();
    // A was killed: its close may fail on what was taken from it.
    await a?.close().catch(() => undefined);
    await storeA?.close().catch(() => undefined);
    await t?.close();
    await store?.dispose();
  });

  it("never sync one tenant in two replicas at once", async () => {
    const env = {
      INCIDENTS_BACKEND: "defender",
      INCIDENT_SYNC_LEASE_SECONDS: "2",
      INCIDENT_SYNC_CONCURRENCY: "4",
      // B's query for a tenant A holds waits for A's progress until this deadline.
      OPERATION_TIMEOUT_MS: "2000",
    };
    storeA = await openStore({ databaseUrl: store.env.DATABASE_URL! });
    a = await buildApp(t, store, env, { store: storeA });
    b = await buildApp(t, store, env);
    await assertCleanStore(a);
    // Trey Research is registered later, for the take-over.
    await register(
      a,
      seeded.filter((x) => x !== trey),
    );
    watchLeases(a, "A");
    watchLeases(b, "B");
    await Promise.all([a.listen(), b.listen()]);

    const ids = readable.map((x) => x.id);
    await until(
      "every readable tenant synced by the engines",
      async () => [...(await b!.incidents.mirror.states(ids)).values()].filter((s) => s.fullFetchedAt !== null).length,
      (n) => n === ids.length,
    );
    const states = await b.incidents.mirror.states(ids);
    for (const x of readable) {
      const count = t.sandbox.incidents.forTenant(x.id).length;
      assert.equal(states.get(x.id)!.incidentCount, count, x.displayName);
      // One full list in all: full pages (Defender's 100; Graph's 50 for the Graph-only tenant), and one more
      // (short or empty) that says the list has ended.
      const pageSize = x.resources.defender ? 100 : 50;
      assert.equal(listCalls(t, x.id), Math.floor(count / pageSize) + 1, `${x.displayName}: listed once, by one replica`);
    }
    assert.deepEqual(violations, [], "no lease taken while another replica held it");
    const overlaps: string[] = [];
    for (const x of readable) {
      const requests = listLog.filter((r) => r.tenantId === x.id);
      for (const r of requests) {
        for (const s of requests) {
          if (r.caller !== s.caller && r.startMs < s.startMs && (r.endMs === undefined || s.startMs < r.endMs)) overlaps.push(`${x.displayName}: ${r.url} and ${s.url}`);
        }
      }
    }
    assert.deepEqual(overlaps, [], "no two replicas listing one tenant at the same time");
    const refreshes = [a.incidents.stats().refreshes, b.incidents.stats().refreshes];
    assert.ok(refreshes.every((n) => n > 0), `both replicas synced tenants: ${refreshes.join(" + ")}`);
  });

  it("waits out a tenant another replica holds, then takes it over once that replica died and its lease ran out", async () => {
    const target = { tenantId: trey.id, backend: "defender" as const };
    // B's engine pauses while A takes the tenant, so A's lease is the first.
    await b!.syncEngine!.stop();
    t.sandbox.context.setFault(trey.id, { kind: "hang", endpoints: ["defender.list"] });
    // The tenant is consented now; A's sync takes it first (A's engine may join it: the same replica).
    await register(a!, [trey]);
    const flight = a!.incidents.sync(target);
    void flight.done.catch(() => undefined);
    const held = await until(
      "A holds the tenant and its list hangs",
      async () => ({ state: await b!.incidents.mirror.state(trey.id), lists: listCalls(t, trey.id) }),
      (v) => v.state?.leaseOwner === a!.incidents.owner && v.lists === 1,
    );
    assert.notEqual(held.state!.leaseUntil, null);
    b!.syncEngine!.start();

    // B's query: the lease is A's, so B makes no call of its own and waits for A's progress until its deadline.
    const busyBefore = b!.incidents.stats().leaseBusy;
    const urlB = `http://127.0.0.1:${(b!.fastify.server.address() as { port: number }).port}`;
    const answer = connection(await postGraphQL(urlB, PAGE, { tenantIds: [trey.id], first: 5 }));
    const outcome = answer.tenantOutcomes[0]!;
    assert.equal(outcome.ok, false);
    assert.equal(outcome.error?.code, "DEADLINE_EXCEEDED");
    assert.equal(answer.totalCount, 0);
    assert.equal(listCalls(t, trey.id), 1, "only A's (hanging) list call");
    assert.ok(b!.incidents.stats().leaseBusy > busyBefore, "B found the lease busy");
    const metrics = await fetch(new URL("/metrics", b!.metricsUrl!)).then((r) => r.text());
    const busyMetric = /^crosswatch_sync_lease_busy_total (\d+)/m.exec(metrics);
    assert.ok(busyMetric && Number(busyMetric[1]) > 0, "crosswatch_sync_lease_busy_total moved");
    assert.equal((await b!.incidents.mirror.state(trey.id))?.leaseOwner, a!.incidents.owner, "A still holds the tenant");

    // A dies: no clean shutdown, so its lease stays in the table until it runs out (no renewal, no release).
    await a!.syncEngine!.stop();
    t.sandbox.context.clearFaults(trey.id);
    await storeA!.close();
    await a!.dispatcher.destroy();
    const listsBefore = listCalls(t, trey.id);
    const servedBefore = listLog.filter((r) => r.tenantId === trey.id).length;
    const refreshesBefore = b!.incidents.stats().refreshes;

    const state = await until(
      "B synced the tenant A held",
      () => b!.incidents.mirror.state(trey.id),
      (s) => s?.fetchedAt != null && s.leaseOwner === null,
    );
    assert.equal(state!.incidentCount, t.sandbox.incidents.forTenant(trey.id).length);
    assert.equal(listCalls(t, trey.id) - listsBefore, 1, "one list, by B");
    const servedAfter = listLog.filter((r) => r.tenantId === trey.id).slice(servedBefore);
    assert.equal(servedAfter.length, 1);
    assert.ok(b!.incidents.stats().refreshes > refreshesBefore, "the sync ran in B");
  });
});
