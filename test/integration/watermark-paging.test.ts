import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import type { Dispatcher } from "undici";
import { createConfidentialClient } from "../../src/auth/msal-client.js";
import { UndiciNetworkClient } from "../../src/auth/network-client.js";
import { createTokenProvider, type TokenProvider } from "../../src/auth/token-provider.js";
import { UpstreamError } from "../../src/defender/backend-client.js";
import { createIncidentsClients } from "../../src/defender/clients.js";
import { parseIncidentQuery } from "../../src/incidents/incident-query.js";
import { IncidentService, type IncidentServiceOptions } from "../../src/incidents/incident-service.js";
import { IncidentMirror } from "../../src/incidents/mirror.js";
import { openStore, type Store } from "../../src/store/store.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { captureLogger } from "../helpers/log-capture.js";
import { startTestSandbox, type TestSandbox } from "../helpers/sandbox.js";

/**
 * Issue 13, item 3 — "Done when": a Graph tenant of 20,000 incidents whose `$expand=alerts` list fails
 * and whose skip ceiling is 6,000 loads completely, across several queries, with no call wasted on
 * re-reading pages. Real clients and the incident service (its mirror on PGlite in memory) against the
 * sandbox over HTTPS; every list URL the clients send is recorded, and the sandbox's counters say what it
 * received.
 *
 * 20,000 is the real size (generating it takes about a second). Rate limits are raised on both sides so
 * the test does not wait for rate windows: the bound per sync here is `maxPagesPerRefresh` (150 pages),
 * which is what a rate budget demands in production (the same code path keeps pages when the budget
 * refuses a call: see test/unit/incidents/incident-service.test.ts).
 */

const logs = captureLogger("warn");
let t: TestSandbox;
let tokens: TokenProvider;
/** Path and query of every request the clients sent. */
const sent: string[] = [];
let recording: Dispatcher;
let store: Store;
let mirror: IncidentMirror;

function tenant(name: string): SandboxTenant {
  const found = t.sandbox.tenants.find((x) => x.displayName === name);
  if (!found) throw new Error(`no tenant ${name}`);
  return found;
}

function counted(tenantId: string, endpoint: string): number {
  return (t.sandbox.context.counterSnapshot().byTenant[tenantId] as Record<string, number> | undefined)?.[endpoint] ?? 0;
}

const HIGH = [{ limit: 100_000, windowSeconds: 60 }];

function clients() {
  return createIncidentsClients({
    dispatcher: recording,
    tokenProvider: tokens,
    defenderApiBase: t.sandbox.url,
    graphApiBase: `${t.sandbox.url}/v1.0`,
    logger: logs.logger,
    retry: { baseDelayMs: 20, maxDelayMs: 100 },
    budgets: { limits: { graph: HIGH, "defender.list": HIGH } },
  });
}

/** A service over the mirror. The window spans a year, so none of the sandbox's 90 days of incidents is left out. */
function incidentService(options: Partial<IncidentServiceOptions> = {}): IncidentService {
  return new IncidentService({ clients: clients(), mirror, windowMs: 365 * 86_400_000, firstLoadWaitMs: 600_000, logger: logs.logger, ...options });
}

/** The ids the mirror serves for a tenant, read through the service's pages. */
async function mirroredIds(service: IncidentService, tenantId: string): Promise<string[]> {
  const ids: string[] = [];
  let after: string | null = null;
  for (let pages = 0; pages < 1_000; pages++) {
    const page = await service.page([tenantId.toLowerCase()], parseIncidentQuery({ first: 500, after }));
    ids.push(...page.edges.map((e) => e.incident.incidentId));
    if (!page.hasNextPage) return ids;
    after = page.endCursor;
  }
  throw new Error("paging did not end");
}

const listUrls = (path: string) => sent.filter((u) => u.startsWith(path) && !/incidents\/[^?]/.test(u));
const param = (url: string, name: string) => new URLSearchParams(url.split("?")[1] ?? "").get(name);

before(async () => {
  store = await openStore({});
  mirror = new IncidentMirror(store.db);
  t = await startTestSandbox({ rateLimits: { graph: HIGH, "defender.list": HIGH, "defender.api": HIGH } as never });
  recording = t.dispatcher.compose((dispatch) => (opts, handler) => {
    sent.push(String(opts.path));
    return dispatch(opts, handler);
  });
  const client = await createConfidentialClient({
    credential: { kind: "secret", clientId: t.sandbox.clientId, clientSecret: t.sandbox.clientSecret },
    authorityHost: t.sandbox.url,
    networkClient: new UndiciNetworkClient(t.dispatcher),
    logger: logs.logger,
  });
  tokens = createTokenProvider({ client, authorityHost: t.sandbox.url, logger: logs.logger });
});
after(async () => {
  await t?.close();
  await store?.close();
});
beforeEach(() => {
  sent.length = 0;
  t.sandbox.context.resetCounters(true);
  t.sandbox.context.options.skipCeiling = 6_000;
  t.sandbox.context.options.skipCeilingAnswer = "400";
  t.sandbox.context.options.graphOrderBy = "honour";
  t.sandbox.context.options.defenderOrderBy = "honour";
});

describe("watermark paging against the sandbox", () => {
  it("a Graph tenant of 20,000 incidents ($expand fails, skip ceiling 6,000) loads completely across queries, no page read twice", async () => {
    const big = tenant("Trey Research");
    big.incidentCount = 20_000; // before its incidents are generated (on first read)
    const expected = t.sandbox.incidents.forTenant(big.id).map((r) => String(r.incidentId));
    assert.equal(expected.length, 20_000);

    // What the old list did would fail here: the expanded list answers 500, deep $skip answers 400.
    const token = await t.sandbox.mintAccessToken({ tenantId: big.id, resource: "graph" });
    assert.equal((await t.call("GET", "/v1.0/security/incidents?$top=50&$expand=alerts", { token })).status, 500);
    const deep = await t.call("GET", "/v1.0/security/incidents?$top=50&$skip=5951", { token });
    assert.equal(deep.status, 400);
    assert.match(deep.json.error.message, /\$top and \$skip cannot exceed '6000'/);
    assert.ok(deep.json.error.innerError["request-id"], "Graph's error shape");
    t.sandbox.context.resetCounters(true);

    const service = incidentService({ maxPagesPerRefresh: 150 });
    const target = { tenantId: big.id, backend: "graph" as const };

    // A never-synced tenant: the query waits for its first sync, which reads its 150 pages and commits them.
    const first = await service.loadTenant(target);
    assert.equal(first.usable, true);
    assert.equal(first.outcome.complete, false);
    assert.equal(first.outcome.ok, false);
    assert.equal(first.outcome.error?.code, "INCOMPLETE");
    assert.equal(first.outcome.incidentsMirrored, 150 * 50);
    assert.equal((await mirroredIds(service, big.id)).length, 150 * 50);

    // Queries that want current data (maxAgeMs 0) wait for the next syncs, each going on where the last stopped.
    const second = await service.loadTenant(target, { maxAgeMs: 0 });
    assert.equal(second.outcome.complete, false);
    assert.ok(second.outcome.incidentsMirrored! > first.outcome.incidentsMirrored!);

    const third = await service.loadTenant(target, { maxAgeMs: 0 });
    assert.equal(third.outcome.ok, true, JSON.stringify(third.outcome.error));
    assert.equal(third.outcome.complete, true);
    assert.equal(third.outcome.incidentsMirrored, 20_000);
    assert.deepEqual((await mirroredIds(service, big.id)).sort(), [...expected].sort());

    const lists = listUrls("/v1.0/security/incidents");
    assert.equal(counted(big.id, "graph.list"), lists.length, "every list call the sandbox counted was one the clients sent");
    assert.equal(new Set(lists).size, lists.length, "no page asked for twice");
    assert.ok(lists.every((u) => !u.includes("expand")), "no $expand on a list");
    // $skip only ever passes over incidents of the boundary millisecond already read: at most the
    // largest group of incidents sharing one (the generated data has one of about a hundred: a page full
    // of one timestamp, which `gt` would lose and `ge` alone would loop on).
    const perMs = new Map<number, number>();
    for (const r of t.sandbox.incidents.forTenant(big.id)) {
      const ms = Date.parse(r.lastUpdateTime);
      perMs.set(ms, (perMs.get(ms) ?? 0) + 1);
    }
    const largestTie = Math.max(...perMs.values());
    const skips = lists.map((u) => Number(param(u, "$skip") ?? 0));
    assert.ok(Math.max(...skips) <= largestTie, `no deep $skip: ${Math.max(...skips)} > ${largestTie}`);
    assert.ok(Math.max(...skips) + 50 <= 6_000);
    assert.ok(lists.every((u) => param(u, "$orderby") === "lastUpdateDateTime asc"));
    // 20,000 / 50 = 400 pages; each of the two resumed queries re-reads at most its boundary incident
    // (the 1 s overlap), which can cost one page between them. Nothing else.
    assert.ok(lists.length >= 400 && lists.length <= 401, `${lists.length} list calls`);
    assert.equal(counted(big.id, "throttled") ?? 0, 0);
    const stats = service.stats();
    assert.equal(stats.upstreamCalls, lists.length);
    assert.equal(stats.partialLists, 2);

    // Complete: the next query (no maxAgeMs) is answered from the mirror and costs nothing.
    await service.loadTenant(target);
    assert.equal(counted(big.id, "graph.list"), lists.length);
  });

  it("survives a service that ignores $orderby: offset paging to the ceiling, then a clear error with the pages kept (400 or empty page)", async () => {
    const aw = tenant("Adventure Works Cycles"); // 300 incidents
    t.sandbox.context.options.graphOrderBy = "ignore";
    t.sandbox.context.options.skipCeiling = 120;
    for (const answer of ["400", "empty"] as const) {
      t.sandbox.context.options.skipCeilingAnswer = answer;
      sent.length = 0;
      const { graph } = clients();
      const result = await graph.listIncidents(aw.id);
      assert.equal(result.paging, "offset", answer);
      assert.equal(result.complete, false, answer);
      assert.ok(result.stoppedBy instanceof UpstreamError && result.stoppedBy.code === "UPSTREAM_PAGING_LIMIT", `${answer}: ${String(result.stoppedBy)}`);
      assert.equal(result.incidents.length, 100, `${answer}: the pages before the ceiling are kept`);

      await mirror.forgetTenant(aw.id.toLowerCase());
      const service = incidentService();
      const loaded = await service.loadTenant({ tenantId: aw.id, backend: "graph" });
      assert.equal(loaded.outcome.error?.code, "UPSTREAM_PAGING_LIMIT", answer);
      assert.equal(loaded.outcome.complete, false);
      assert.equal(loaded.usable, true, "served, flagged incomplete");
      assert.equal(loaded.outcome.incidentsMirrored, 100);
      assert.equal((await mirroredIds(service, aw.id)).length, 100);
    }
  });

  it("the control API sets the paging knobs (PUT /_sandbox/paging), and the lists obey them", async () => {
    const bad = await t.call("PUT", "/_sandbox/paging", { json: { skipCeilingAnswer: "maybe" } });
    assert.equal(bad.status, 400);
    const set = await t.call("PUT", "/_sandbox/paging", { json: { skipCeiling: 100, skipCeilingAnswer: "empty", graphOrderBy: "ignore" } });
    assert.equal(set.status, 200);
    assert.deepEqual(set.json, { skipCeiling: 100, skipCeilingAnswer: "empty", graphOrderBy: "ignore", defenderOrderBy: "honour" });
    assert.deepEqual((await t.call("GET", "/_sandbox/paging")).json, set.json);
    const aw = tenant("Adventure Works Cycles");
    const token = await t.sandbox.mintAccessToken({ tenantId: aw.id, resource: "graph" });
    const past = await t.call("GET", "/v1.0/security/incidents?$top=50&$skip=51", { token });
    assert.equal(past.status, 200);
    assert.deepEqual(past.json.value, [], "an empty page past the ceiling");
    assert.equal(past.json["@odata.nextLink"], undefined);
    const ignored = await t.call("GET", "/v1.0/security/incidents?$top=5&$orderby=lastUpdateDateTime%20asc", { token });
    const times = ignored.json.value.map((i: { lastUpdateDateTime: string }) => i.lastUpdateDateTime);
    assert.notDeepEqual(times, [...times].sort(), "$orderby ignored: newest created first");
  });

  it("Defender: lists by lastUpdateTime watermark; a refused $orderby pages by offset within the ceiling", async () => {
    const contoso = tenant("Contoso Ltd"); // 240 incidents
    const { defender } = clients();
    const ordered = await defender.listIncidents(contoso.id);
    assert.equal(ordered.paging, "watermark");
    assert.equal(ordered.incidents.length, t.sandbox.incidents.forTenant(contoso.id).length);
    const lists = listUrls("/api/incidents");
    assert.ok(lists.every((u) => param(u, "$orderby") === "lastUpdateTime asc" && Number(param(u, "$skip") ?? 0) <= 1), lists.join("\n"));

    t.sandbox.context.options.defenderOrderBy = "reject";
    sent.length = 0;
    const fallback = clients().defender;
    const offset = await fallback.listIncidents(contoso.id);
    assert.equal(offset.paging, "offset");
    assert.equal(offset.complete, true);
    assert.equal(offset.incidents.length, t.sandbox.incidents.forTenant(contoso.id).length);
    const again = await fallback.listIncidents(contoso.id);
    assert.equal(again.paging, "offset");
    assert.equal(listUrls("/api/incidents").filter((u) => u.includes("orderby")).length, 1, "refused once, then not asked again");
  });
});
