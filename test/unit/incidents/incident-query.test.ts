import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CLASSIFICATIONS, INCIDENT_STATUSES, SEVERITIES, type Incident } from "../../../src/defender/incident.js";
import {
  INCIDENT_ORDER_FIELDS,
  MAX_ASSIGNEE_LENGTH,
  MAX_CURSOR_LENGTH,
  MAX_SEARCH_LENGTH,
  ORDER_DIRECTIONS,
  pageIncidents,
  parseIncidentQuery,
  QueryInputError,
  queryIncidents,
  type IncidentFilter,
  type IncidentOrder,
  type IncidentQuery,
  type LoadedTenantIncidents,
} from "../../../src/incidents/incident-query.js";
import { makeIncident, pick, seededRandom, tenantGuid } from "../../helpers/incident-factory.js";

const BASE = Date.parse("2026-03-01T00:00:00Z");
const MINUTE = 60_000;
const ASSIGNEES = [null, "alice@contoso.com", "Bob@Fabrikam.com", "", "carol@contoso.com"];
const NAMES = ["Suspicious sign-in", "Ransomware activity", "Phishing email reported", "Mass download", "Malware detected"];

/**
 * Tenants with deliberately many ties: times come from a few dozen minutes, so equal keys across and
 * within tenants are common; ids mix short and long numbers and (in one tenant) non-numeric Graph-like ids.
 */
function generate(seed: number, tenantCount: number, maxPerTenant: number): LoadedTenantIncidents[] {
  const random = seededRandom(seed);
  const tenants: LoadedTenantIncidents[] = [];
  for (let t = 0; t < tenantCount; t++) {
    const tenantId = tenantGuid(t * 7919 % 1000);
    const count = Math.floor(random() * (maxPerTenant + 1));
    const incidents: Incident[] = [];
    for (let n = 0; n < count; n++) {
      const created = BASE + Math.floor(random() * 40) * MINUTE;
      const incidentId = t % 5 === 4 && n % 3 === 0 ? `x${n}-${Math.floor(random() * 1000)}` : String(n * 13 + 1);
      incidents.push(
        makeIncident({
          tenantId,
          incidentId,
          name: `${pick(random, NAMES)} #${n}`,
          severity: pick(random, SEVERITIES),
          status: pick(random, INCIDENT_STATUSES),
          classification: pick(random, CLASSIFICATIONS),
          assignedTo: pick(random, ASSIGNEES),
          createdTime: new Date(created),
          lastUpdateTime: new Date(created + Math.floor(random() * 30) * MINUTE),
        }),
      );
    }
    tenants.push({ tenantId, incidents: dedupe(incidents) });
  }
  return tenants;
}

function dedupe(incidents: Incident[]): Incident[] {
  return [...new Map(incidents.map((i) => [i.incidentId, i])).values()];
}

/** An independent statement of the order: tuples compared element by element. */
function expectedSort(tenants: readonly LoadedTenantIncidents[], order: IncidentOrder): Incident[] {
  const rank = (s: string) => SEVERITIES.indexOf(s as never);
  const sign = order.direction === "ASC" ? 1 : -1;
  const idKey = (id: string): [number, bigint, string] => (/^\d+$/.test(id) ? [0, BigInt(id), ""] : [1, 0n, id]);
  const tuple = (i: Incident): (number | bigint | string)[] => {
    const primary =
      order.field === "SEVERITY" ? rank(i.severity) : order.field === "CREATED_TIME" ? i.createdTime.getTime() : i.lastUpdateTime.getTime();
    const secondary = order.field === "SEVERITY" ? -i.lastUpdateTime.getTime() : 0;
    return [sign * primary, secondary, i.tenantId, ...idKey(i.incidentId)];
  };
  const all = tenants.flatMap((t) => t.incidents.map((incident) => ({ incident, key: tuple(incident) })));
  all.sort((a, b) => {
    for (let k = 0; k < a.key.length; k++) {
      if (a.key[k]! < b.key[k]!) return -1;
      if (a.key[k]! > b.key[k]!) return 1;
    }
    return 0;
  });
  return all.map((x) => x.incident);
}

const ids = (incidents: readonly Incident[]) => incidents.map((i) => `${i.tenantId}/${i.incidentId}`);
const ORDERS: IncidentOrder[] = INCIDENT_ORDER_FIELDS.flatMap((field) => ORDER_DIRECTIONS.map((direction) => ({ field, direction })));

/** Every page, following endCursor. */
function allPages(tenants: readonly LoadedTenantIncidents[], query: { filter?: IncidentFilter; orderBy?: IncidentOrder }, first: number) {
  const seen: Incident[] = [];
  let after: string | null = null;
  let pages = 0;
  let totalCount = -1;
  for (;;) {
    const page = queryIncidents(tenants, { ...query, first, after });
    pages++;
    if (totalCount < 0) totalCount = page.totalCount;
    assert.equal(page.totalCount, totalCount, "totalCount is the same on every page");
    assert.equal(page.hasPreviousPage, after !== null && seen.length > 0);
    seen.push(...page.edges.map((e) => e.incident));
    if (page.edges.length > 0) {
      assert.equal(page.startCursor, page.edges[0]!.cursor);
      assert.equal(page.endCursor, page.edges.at(-1)!.cursor);
    }
    if (!page.hasNextPage) break;
    assert.equal(page.edges.length, first);
    after = page.endCursor;
    assert.ok(pages < 10_000);
  }
  return { seen, totalCount, pages };
}

describe("queryIncidents: order", () => {
  const tenants = generate(1, 25, 60);

  for (const order of ORDERS) {
    it(`merges tenants in ${order.field} ${order.direction} exactly as an independent sort`, () => {
      const expected = expectedSort(tenants, order);
      const page = queryIncidents(tenants, { orderBy: order, first: 500 });
      assert.ok(expected.length > 500);
      assert.equal(page.totalCount, expected.length);
      assert.deepEqual(ids(page.edges.map((e) => e.incident)), ids(expected.slice(0, 500)));
      assert.equal(page.hasNextPage, true);
      assert.equal(page.hasPreviousPage, false);
      // The whole order, through the pages.
      assert.deepEqual(ids(allPages(tenants, { orderBy: order }, 500).seen), ids(expected));
    });
  }

  it("defaults to LAST_UPDATE_TIME DESC and 50 per page", () => {
    const page = queryIncidents(tenants);
    assert.equal(page.edges.length, 50);
    assert.deepEqual(ids(page.edges.map((e) => e.incident)), ids(expectedSort(tenants, { field: "LAST_UPDATE_TIME", direction: "DESC" }).slice(0, 50)));
  });

  it("breaks ties by tenant id, then incident id (numeric by value, before non-numeric), whatever the input order", () => {
    const t = new Date(BASE);
    const a = tenantGuid(1);
    const b = tenantGuid(2);
    const make = (tenantId: string, incidentId: string) => makeIncident({ tenantId, incidentId, createdTime: t, lastUpdateTime: t });
    const tenantsA = [
      { tenantId: b, incidents: [make(b, "10"), make(b, "9"), make(b, "abc")] },
      { tenantId: a, incidents: [make(a, "x2"), make(a, "100"), make(a, "2"), make(a, "x10")] },
    ];
    const expected = [`${a}/2`, `${a}/100`, `${a}/x10`, `${a}/x2`, `${b}/9`, `${b}/10`, `${b}/abc`];
    for (const order of ORDERS) {
      const forward = queryIncidents(tenantsA, { orderBy: order }).edges.map((e) => `${e.incident.tenantId}/${e.incident.incidentId}`);
      assert.deepEqual(forward, expected, `${order.field} ${order.direction}`);
      const reversed = queryIncidents([...tenantsA].reverse().map((x) => ({ ...x, incidents: [...x.incidents].reverse() })), { orderBy: order });
      assert.deepEqual(reversed.edges.map((e) => `${e.incident.tenantId}/${e.incident.incidentId}`), expected);
    }
  });

  it("sorts SEVERITY by rank (UNKNOWN lowest), then newest update first in both directions", () => {
    const tenantId = tenantGuid(3);
    const at = (minutes: number) => new Date(BASE + minutes * MINUTE);
    const incidents = [
      makeIncident({ tenantId, incidentId: "1", severity: "HIGH", lastUpdateTime: at(1) }),
      makeIncident({ tenantId, incidentId: "2", severity: "HIGH", lastUpdateTime: at(5) }),
      makeIncident({ tenantId, incidentId: "3", severity: "UNKNOWN", lastUpdateTime: at(9) }),
      makeIncident({ tenantId, incidentId: "4", severity: "INFORMATIONAL", lastUpdateTime: at(2) }),
      makeIncident({ tenantId, incidentId: "5", severity: "LOW", lastUpdateTime: at(3) }),
    ];
    const run = (direction: "ASC" | "DESC") =>
      queryIncidents([{ tenantId, incidents }], { orderBy: { field: "SEVERITY", direction } }).edges.map((e) => e.incident.incidentId);
    assert.deepEqual(run("DESC"), ["2", "1", "5", "4", "3"]);
    assert.deepEqual(run("ASC"), ["3", "4", "5", "2", "1"]);
  });

  it("takes a tenant listed twice once", () => {
    const [one] = generate(4, 1, 20);
    const page = queryIncidents([one!, one!], { first: 500 });
    assert.equal(page.totalCount, one!.incidents.length);
  });
});

describe("queryIncidents: paging", () => {
  const tenants = generate(2, 40, 40);
  const total = tenants.reduce((n, t) => n + t.incidents.length, 0);

  for (const first of [1, 7, 50, 333, 500]) {
    it(`visits every incident exactly once with first=${first}`, () => {
      for (const orderBy of first === 7 ? ORDERS : [ORDERS[0]!, ORDERS[5]!]) {
        const { seen, totalCount, pages } = allPages(tenants, { orderBy }, first);
        assert.equal(totalCount, total);
        assert.equal(seen.length, total);
        assert.equal(new Set(ids(seen)).size, total, "no incident twice");
        assert.equal(pages, Math.max(1, Math.ceil(total / first)));
        assert.deepEqual(ids(seen), ids(expectedSort(tenants, orderBy)));
      }
    });
  }

  it("pages through a filtered set, with totalCount the filtered count", () => {
    const filter: IncidentFilter = { severity: ["HIGH", "MEDIUM"], status: ["ACTIVE", "IN_PROGRESS"] };
    const matching = tenants.flatMap((t) => t.incidents).filter((i) => ["HIGH", "MEDIUM"].includes(i.severity) && ["ACTIVE", "IN_PROGRESS"].includes(i.status));
    for (const first of [3, 25]) {
      const { seen, totalCount } = allPages(tenants, { filter, orderBy: ORDERS[4]! }, first);
      assert.equal(totalCount, matching.length);
      assert.deepEqual(new Set(ids(seen)), new Set(ids(matching)));
      assert.equal(seen.length, matching.length);
    }
  });

  it("answers first=0 with no edges, the count, and whether there is anything to fetch", () => {
    const page = queryIncidents(tenants, { first: 0 });
    assert.deepEqual(page.edges, []);
    assert.equal(page.totalCount, total);
    assert.equal(page.hasNextPage, true);
    assert.equal(page.startCursor, null);
    assert.equal(page.endCursor, null);
  });

  it("answers an empty set", () => {
    const page = queryIncidents([{ tenantId: tenantGuid(1), incidents: [] }], { first: 10 });
    assert.deepEqual(page, { edges: [], totalCount: 0, hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null });
  });

  it("refuses first out of 0..500", () => {
    for (const first of [-1, 501, 1.5, Number.NaN]) {
      assert.throws(
        () => queryIncidents(tenants, { first }),
        (e: unknown) => e instanceof QueryInputError && e.field === "first" && e.code === "INVALID_INPUT",
      );
    }
  });

  it("handles 300 tenants x 300 incidents and returns the same first pages as a full sort", () => {
    const random = seededRandom(9);
    const big: LoadedTenantIncidents[] = [];
    for (let t = 0; t < 300; t++) {
      const tenantId = tenantGuid(t);
      const incidents: Incident[] = [];
      for (let n = 0; n < 300; n++) {
        const created = BASE + Math.floor(random() * 100_000) * 1000;
        incidents.push(
          makeIncident({
            tenantId,
            incidentId: String(n + 1),
            severity: pick(random, SEVERITIES),
            createdTime: new Date(created),
            lastUpdateTime: new Date(created + Math.floor(random() * 10_000) * 1000),
          }),
        );
      }
      big.push({ tenantId, incidents });
    }
    for (const orderBy of [ORDERS[1]!, ORDERS[4]!]) {
      const expected = ids(expectedSort(big, orderBy));
      const first = queryIncidents(big, { orderBy, first: 500 });
      assert.equal(first.totalCount, 90_000);
      const second = queryIncidents(big, { orderBy, first: 500, after: first.endCursor });
      assert.deepEqual(ids([...first.edges, ...second.edges].map((e) => e.incident)), expected.slice(0, 1000));
      const filtered = queryIncidents(big, { orderBy, first: 10, filter: { severity: ["HIGH"] } });
      assert.deepEqual(
        ids(filtered.edges.map((e) => e.incident)),
        ids(expectedSort(big, orderBy).filter((i) => i.severity === "HIGH").slice(0, 10)),
      );
    }
  });
});

describe("queryIncidents: cursors", () => {
  const tenants = generate(3, 12, 30);

  it("stay valid while data changes: the next page is everything strictly after the cursor's key", () => {
    for (const orderBy of ORDERS) {
      const page1 = queryIncidents(tenants, { orderBy, first: 20 });
      const cursorIncident = page1.edges.at(-1)!.incident;

      // The cursor's own incident disappears, others change, new ones arrive before and after it.
      const changed = tenants.map((t) => ({
        tenantId: t.tenantId,
        incidents: t.incidents
          .filter((i) => i !== cursorIncident)
          .map((i, n) => (n % 4 === 0 ? { ...i, lastUpdateTime: new Date(i.lastUpdateTime.getTime() + 7 * MINUTE), severity: "HIGH" as const } : i)),
      }));
      const tenant0 = changed[0]!;
      tenant0.incidents.push(
        makeIncident({ tenantId: tenant0.tenantId, incidentId: "900001", createdTime: new Date(BASE - 99 * MINUTE), severity: "UNKNOWN" }),
        makeIncident({ tenantId: tenant0.tenantId, incidentId: "900002", createdTime: new Date(BASE + 999 * MINUTE), severity: "HIGH" }),
      );

      const next = queryIncidents(changed, { orderBy, first: 500, after: page1.endCursor });
      // Independently: where would the cursor's incident (as it was) sort in the new data?
      const withMarker = expectedSort(
        changed.map((t) => (t.tenantId === cursorIncident.tenantId ? { ...t, incidents: [...t.incidents, cursorIncident] } : t)),
        orderBy,
      );
      const expected = withMarker.slice(withMarker.indexOf(cursorIncident) + 1);
      assert.deepEqual(ids(next.edges.map((e) => e.incident)), ids(expected).slice(0, 500), `${orderBy.field} ${orderBy.direction}`);
      assert.equal(next.hasPreviousPage, withMarker.indexOf(cursorIncident) > 0);
    }
  });

  it("stay valid when the tenant of the cursor is gone", () => {
    const orderBy = ORDERS[0]!;
    const page1 = queryIncidents(tenants, { orderBy, first: 5 });
    const gone = page1.edges.at(-1)!.incident.tenantId;
    const rest = tenants.filter((t) => t.tenantId !== gone);
    const next = queryIncidents(rest, { orderBy, first: 500, after: page1.endCursor });
    const all = expectedSort(rest, orderBy);
    const remaining = all.filter((i) => !ids(page1.edges.map((e) => e.incident)).includes(`${i.tenantId}/${i.incidentId}`));
    assert.deepEqual(ids(next.edges.map((e) => e.incident)), ids(remaining).slice(0, 500));
  });

  it("are opaque base64url", () => {
    const page = queryIncidents(tenants, { first: 3 });
    for (const edge of page.edges) assert.match(edge.cursor, /^[A-Za-z0-9_-]+$/);
  });

  it("are refused when they belong to another ordering", () => {
    const fromDesc = queryIncidents(tenants, { orderBy: { field: "CREATED_TIME", direction: "DESC" }, first: 1 }).endCursor!;
    for (const orderBy of ORDERS.filter((o) => !(o.field === "CREATED_TIME" && o.direction === "DESC"))) {
      assert.throws(
        () => queryIncidents(tenants, { orderBy, after: fromDesc }),
        (e: unknown) => e instanceof QueryInputError && e.field === "after" && /another|belongs/.test(e.message),
      );
    }
  });

  it("are refused when they are garbage, tampered with or of another version", () => {
    const good = queryIncidents(tenants, { orderBy: { field: "SEVERITY", direction: "ASC" }, first: 1 }).endCursor!;
    const decoded = JSON.parse(Buffer.from(good, "base64url").toString("utf8")) as unknown[];
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const bad = [
      "",
      "!!!",
      "not a cursor",
      "abc",
      Buffer.from("[1,2").toString("base64url"),
      encode({ a: 1 }),
      encode(["i0", ...decoded.slice(1)]),
      encode(["i1", ...decoded.slice(1, 6)]),
      encode(decoded.slice(0, 6)),
      encode([decoded[0], decoded[1], decoded[2], ["CRITICAL", 0], decoded[4], decoded[5], decoded[6]]),
      encode([decoded[0], decoded[1], decoded[2], ["HIGH"], decoded[4], decoded[5], decoded[6]]),
      encode([decoded[0], decoded[1], decoded[2], ["HIGH", "soon"], decoded[4], decoded[5], decoded[6]]),
      encode([decoded[0], decoded[1], decoded[2], decoded[3], "", decoded[5], decoded[6]]),
      encode([decoded[0], decoded[1], decoded[2], decoded[3], decoded[4], 42, decoded[6]]),
      encode([decoded[0], decoded[1], decoded[2], decoded[3], decoded[4], decoded[5], "AAAAAAAAAAAAAAAA"]),
      encode([decoded[0], "NAME", decoded[2], decoded[3], decoded[4], decoded[5], decoded[6]]),
      "A".repeat(5000),
    ];
    for (const after of bad) {
      assert.throws(
        () => queryIncidents(tenants, { orderBy: { field: "SEVERITY", direction: "ASC" }, after }),
        (e: unknown) => e instanceof QueryInputError && e.field === "after",
        `cursor ${after.slice(0, 40)}`,
      );
    }
    // The untouched one works.
    queryIncidents(tenants, { orderBy: { field: "SEVERITY", direction: "ASC" }, after: good });
  });
});

describe("queryIncidents: filters", () => {
  const tenants = generate(5, 20, 40);
  const all = tenants.flatMap((t) => t.incidents);
  const run = (filter: IncidentFilter) => new Set(ids(allPages(tenants, { filter }, 500).seen));
  const expect = (filter: IncidentFilter, predicate: (i: Incident) => boolean, empty = false) => {
    const expected = all.filter(predicate);
    assert.equal(expected.length === 0, empty, `filter ${JSON.stringify(filter)} selects ${empty ? "nothing" : "something"}`);
    assert.deepEqual(run(filter), new Set(ids(expected)), JSON.stringify(filter));
  };

  it("by severity, status and classification (any of the values; empty or null lists constrain nothing)", () => {
    expect({ severity: ["HIGH"] }, (i) => i.severity === "HIGH");
    expect({ severity: ["LOW", "UNKNOWN"] }, (i) => i.severity === "LOW" || i.severity === "UNKNOWN");
    expect({ status: ["REDIRECTED"] }, (i) => i.status === "REDIRECTED");
    expect({ classification: ["TRUE_POSITIVE", "FALSE_POSITIVE"] }, (i) => i.classification === "TRUE_POSITIVE" || i.classification === "FALSE_POSITIVE");
    expect({ severity: [], status: null, classification: undefined }, () => true);
    expect({ severity: ["HIGH"], status: ["ACTIVE"] }, (i) => i.severity === "HIGH" && i.status === "ACTIVE");
  });

  it("by assignee: exact but case-insensitive; unassigned: true for none or blank; null or absent means anyone", () => {
    expect({ assignedTo: "ALICE@contoso.com" }, (i) => i.assignedTo === "alice@contoso.com");
    expect({ assignedTo: " bob@fabrikam.com " }, (i) => i.assignedTo === "Bob@Fabrikam.com");
    expect({ assignedTo: "alice" }, () => false, true);
    const unassigned = (i: Incident) => i.assignedTo === null || i.assignedTo === "";
    expect({ unassigned: true }, unassigned);
    expect({ unassigned: true, assignedTo: null }, unassigned);
    expect({ unassigned: false, assignedTo: "alice@contoso.com" }, (i) => i.assignedTo === "alice@contoso.com");
    expect({ assignedTo: null }, () => true);
    expect({ unassigned: false }, () => true);
    expect({}, () => true);
  });

  it("by creation and update time, half-open windows [after, before)", () => {
    const from = new Date(BASE + 10 * MINUTE);
    const to = new Date(BASE + 20 * MINUTE);
    expect({ createdAfter: from }, (i) => i.createdTime >= from);
    expect({ createdBefore: to }, (i) => i.createdTime < to);
    expect({ createdAfter: from, createdBefore: to }, (i) => i.createdTime >= from && i.createdTime < to);
    expect({ updatedAfter: to }, (i) => i.lastUpdateTime >= to);
    expect({ updatedAfter: from, updatedBefore: to }, (i) => i.lastUpdateTime >= from && i.lastUpdateTime < to);
    assert.ok(all.some((i) => i.createdTime.getTime() === from.getTime()), "the boundary itself is exercised");
  });

  it("by search: a case-insensitive part of the name, or the exact incident id", () => {
    expect({ search: "RANSOMWARE" }, (i) => i.name.includes("Ransomware"));
    expect({ search: "  phishing email " }, (i) => i.name.includes("Phishing email"));
    const target = all.find((i) => i.incidentId === "14")!;
    expect({ search: "14" }, (i) => i.incidentId === "14" || i.name.includes("14"));
    assert.ok(run({ search: "14" }).has(`${target.tenantId}/14`));
    expect({ search: "" }, () => true);
    expect({ search: "no such text" }, () => false, true);
  });

  it("refuses unknown enum values and invalid dates, naming the field", () => {
    const cases: [IncidentFilter, string][] = [
      [{ severity: ["CRITICAL" as never] }, "filter.severity"],
      [{ status: ["OPEN" as never] }, "filter.status"],
      [{ classification: ["MAYBE" as never] }, "filter.classification"],
      [{ createdAfter: new Date("nonsense") }, "filter.createdAfter"],
      [{ updatedBefore: "2026-01-01" as never }, "filter.updatedBefore"],
    ];
    for (const [filter, field] of cases) {
      assert.throws(
        () => queryIncidents(tenants, { filter }),
        (e: unknown) => e instanceof QueryInputError && e.field === field,
      );
    }
    assert.throws(
      () => queryIncidents(tenants, { orderBy: { field: "NAME" as never, direction: "ASC" } }),
      (e: unknown) => e instanceof QueryInputError && e.field === "orderBy.field",
    );
  });

  it("keeps redirected incidents, with their redirect target", () => {
    const tenantId = tenantGuid(77);
    const incidents = [
      makeIncident({ tenantId, incidentId: "1", status: "REDIRECTED", redirectIncidentId: "2" }),
      makeIncident({ tenantId, incidentId: "2" }),
    ];
    const page = queryIncidents([{ tenantId, incidents }], { filter: { status: ["REDIRECTED"] } });
    assert.equal(page.totalCount, 1);
    assert.equal(page.edges[0]!.incident.redirectIncidentId, "2");
  });
});

describe("queryIncidents: memoised work", () => {
  it("gives the same answers from memo as fresh, and sees a replaced array's new data", () => {
    const tenants = generate(11, 10, 30);
    const filter: IncidentFilter = { severity: ["HIGH", "LOW"], search: "a" };
    const once = queryIncidents(tenants, { filter, first: 500 });
    const twice = queryIncidents(tenants, { filter: { search: " A ", severity: ["LOW", "HIGH"] }, first: 500 });
    assert.deepEqual(twice, once, "an equal filter written differently hits the same memo with the same result");
    // A new array version (as the service writes after a change) is filtered afresh.
    const changed = tenants.map((t, n) =>
      n === 0 ? { ...t, incidents: t.incidents.map((i) => ({ ...i, severity: "HIGH" as const, name: "a" })) } : t,
    );
    const after = queryIncidents(changed, { filter, first: 500 });
    assert.equal(after.totalCount, once.totalCount - tenants[0]!.incidents.filter((i) => ["HIGH", "LOW"].includes(i.severity) && /a/i.test(i.name)).length + tenants[0]!.incidents.length);
  });

  it("searches for text with regular-expression characters literally", () => {
    const tenantId = tenantGuid(5);
    const incidents = [
      makeIncident({ tenantId, incidentId: "1", name: "Access from 10.0.0.1 (VPN)" }),
      makeIncident({ tenantId, incidentId: "2", name: "Access from 10a0b0c1 VPN" }),
    ];
    const found = (search: string) => queryIncidents([{ tenantId, incidents }], { filter: { search } }).edges.map((e) => e.incident.incidentId);
    assert.deepEqual(found("10.0.0.1 (vpn)"), ["1"]);
    assert.deepEqual(found("[a-z]"), []);
    assert.deepEqual(found("2"), ["2"], "by id");
  });
});

describe("parseIncidentQuery: every argument checked before any incident is touched", () => {
  const tenants = generate(21, 4, 30);
  const refused = (query: IncidentQuery, field: string, secret?: string) => {
    assert.throws(
      () => parseIncidentQuery(query),
      (e: unknown) => {
        assert.ok(e instanceof QueryInputError, String(e));
        assert.equal(e.field, field, e.message);
        if (secret) assert.ok(!e.message.includes(secret), "the message does not repeat the value");
        return true;
      },
      JSON.stringify(query).slice(0, 120),
    );
  };

  it("refuses page sizes, cursors and filters it cannot use, naming the field", () => {
    refused({ first: -1 }, "first");
    refused({ first: 501 }, "first");
    refused({ first: 2.5 }, "first");
    refused({ after: "not-a-cursor" }, "after");
    refused({ after: "A".repeat(MAX_CURSOR_LENGTH + 1) }, "after");
    refused({ filter: { assignedTo: "   " } }, "filter.assignedTo");
    refused({ filter: { assignedTo: "" } }, "filter.assignedTo");
    refused({ filter: { assignedTo: "alice@contoso.com", unassigned: true } }, "filter.unassigned");
    refused({ filter: { assignedTo: `${"a".repeat(MAX_ASSIGNEE_LENGTH)}x` } }, "filter.assignedTo");
    refused({ filter: { severity: ["CRITICAL" as never] } }, "filter.severity", "CRITICAL");
    refused({ orderBy: { field: "NAME_OF_THE_GAME" as never, direction: "ASC" } }, "orderBy.field", "NAME_OF_THE_GAME");
  });

  it("bounds search and matches it without a regular expression: 40,000 characters are refused, not a SyntaxError", () => {
    const huge = "(".repeat(40_000);
    refused({ filter: { search: huge } }, "filter.search", "((((((((");
    refused({ filter: { search: "x".repeat(MAX_SEARCH_LENGTH + 1) } }, "filter.search");
    // At the bound, text that is no valid regular expression is matched literally.
    const tenantId = tenantGuid(9);
    const incidents = [makeIncident({ tenantId, incidentId: "1", name: "Access (VPN [eu" }), makeIncident({ tenantId, incidentId: "2", name: "x".repeat(300) })];
    const found = (search: string) => queryIncidents([{ tenantId, incidents }], { filter: { search } }).edges.map((e) => e.incident.incidentId);
    assert.deepEqual(found("(vpn [EU"), ["1"]);
    assert.deepEqual(found("X".repeat(MAX_SEARCH_LENGTH)), ["2"]);
    assert.deepEqual(found(`  ${"x".repeat(MAX_SEARCH_LENGTH - 4)}  `), ["2"], "surrounding spaces count toward the bound, then are trimmed");
  });

  it("binds cursors to the query's scope, filter and order: a foreign cursor is refused, an equal query's accepted", () => {
    const filter: IncidentFilter = { severity: ["HIGH", "LOW"], search: "a" };
    const page = queryIncidents(tenants, { filter, first: 2, scope: "incidents:[null,null]" });
    const cursor = page.endCursor!;
    assert.ok(cursor);
    // The same query written differently: accepted, and its page continues after the cursor.
    const parsed = parseIncidentQuery({ filter: { search: " A ", severity: ["LOW", "HIGH"] }, after: cursor, scope: "incidents:[null,null]" });
    const next = pageIncidents(tenants, parsed);
    assert.ok(next.hasPreviousPage);
    assert.ok(!next.edges.some((e) => page.edges.some((p) => p.cursor === e.cursor)));
    // Another filter, another scope (tenant selection or field), another order, or no scope at all.
    refused({ filter: { severity: ["HIGH"], search: "a" }, after: cursor, scope: "incidents:[null,null]" }, "after");
    refused({ filter, after: cursor, scope: 'incidents:[["00000000-0000-4000-8000-000000000001"],null]' }, "after");
    refused({ filter, after: cursor, scope: "Tenant.incidents:00000000-0000-4000-8000-000000000001" }, "after");
    refused({ filter, after: cursor }, "after");
    refused({ filter, after: cursor, scope: "incidents:[null,null]", orderBy: { field: "LAST_UPDATE_TIME", direction: "ASC" } }, "after");
  });

  it("parses without tenants: the parsed query pages any tenants given later", () => {
    const parsed = parseIncidentQuery({ filter: { unassigned: true }, first: 3 });
    const page = pageIncidents(tenants, parsed);
    assert.ok(page.edges.length <= 3);
    for (const edge of page.edges) assert.ok(edge.incident.assignedTo === null || edge.incident.assignedTo.trim() === "");
    assert.deepEqual(page, queryIncidents(tenants, { filter: { unassigned: true }, first: 3 }));
  });
});
