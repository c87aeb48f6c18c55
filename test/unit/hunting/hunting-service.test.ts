import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { UpstreamError } from "../../../src/defender/backend-client.js";
import type { HuntingAnswer, HuntingBackendName } from "../../../src/hunting/hunting-client.js";
import {
  durationMs,
  encodeHuntingCursor,
  HuntingInputError,
  HuntingService,
  mergeHunts,
  pageHunt,
  parseHunt,
} from "../../../src/hunting/hunting-service.js";
import { captureLogger } from "../../helpers/log-capture.js";

const A = "aaaaaaaa-0000-4000-8000-000000000000";
const B = "bbbbbbbb-0000-4000-8000-000000000000";
const C = "cccccccc-0000-4000-8000-000000000000";
const QUERY = "DeviceInfo | where DeviceName has 'query-marker-5512' | take 10";

function inputError(run: () => unknown, field: string): void {
  assert.throws(run, (e: unknown) => e instanceof HuntingInputError && e.field === field);
}

describe("parseHunt", () => {
  it("refuses blank or overlong queries, bad timespans and out-of-range first", () => {
    inputError(() => parseHunt({ query: "  ", scope: "s" }), "query");
    inputError(() => parseHunt({ query: "x".repeat(10_001), scope: "s" }), "query");
    assert.equal(parseHunt({ query: "x".repeat(10_000), scope: "s" }).first, 100);
    for (const bad of ["1D", "P", "PT", "P1Y", "P1M", "P0D", "P31D", "PT721H", "P1DT", "yesterday"]) {
      inputError(() => parseHunt({ query: "T", timespan: bad, scope: "s" }), "timespan");
    }
    assert.equal(parseHunt({ query: "T", timespan: "p7dt12h", scope: "s" }).timespan, "P7DT12H");
    assert.equal(parseHunt({ query: "T", timespan: "P30D", scope: "s" }).timespan, "P30D");
    inputError(() => parseHunt({ query: "T", first: -1, scope: "s" }), "first");
    inputError(() => parseHunt({ query: "T", first: 1001, scope: "s" }), "first");
    assert.equal(parseHunt({ query: "T", first: 0, scope: "s" }).first, 0);
  });

  it("reads ISO-8601 durations", () => {
    assert.equal(durationMs("PT1H"), 3_600_000);
    assert.equal(durationMs("P1W"), 7 * 86_400_000);
    assert.equal(durationMs("P1DT0.5S"), 86_400_000 + 500);
    assert.equal(durationMs("P1Y"), undefined);
  });

  it("accepts only cursors of the same query, timespan and tenant selection", () => {
    const hunt = parseHunt({ query: QUERY, timespan: "P1D", scope: "s1" });
    const cursor = encodeHuntingCursor(5, hunt.binding);
    assert.equal(parseHunt({ query: QUERY, timespan: "P1D", after: cursor, scope: "s1" }).offset, 5);
    inputError(() => parseHunt({ query: `${QUERY} `, timespan: "P1D", after: cursor, scope: "s1" }), "after");
    inputError(() => parseHunt({ query: QUERY, timespan: "P2D", after: cursor, scope: "s1" }), "after");
    inputError(() => parseHunt({ query: QUERY, timespan: "P1D", after: cursor, scope: "s2" }), "after");
    inputError(() => parseHunt({ query: QUERY, after: "not-a-cursor", scope: "s1" }), "after");
    inputError(() => parseHunt({ query: QUERY, after: encodeHuntingCursor(0, hunt.binding), scope: "s1" }), "after");
  });
});

describe("mergeHunts / pageHunt", () => {
  it("unions the schemas with tenantId first, and types a column Dynamic when tenants disagree", () => {
    const merged = mergeHunts([
      { tenantId: A, columns: [{ name: "Timestamp", type: "DateTime" }, { name: "Count", type: "Int64" }], rows: [{ Timestamp: "t1", Count: 1 }] },
      { tenantId: B, columns: [{ name: "Count", type: "Int32" }, { name: "Title", type: "String" }, { name: "tenantId", type: "String" }], rows: [{ Count: 2, Title: "x", tenantId: "theirs" }] },
    ]);
    assert.deepEqual(merged.columns, [
      { name: "tenantId", type: "String" },
      { name: "Timestamp", type: "DateTime" },
      { name: "Count", type: "Dynamic" },
      { name: "Title", type: "String" },
    ]);
    assert.deepEqual(merged.row(0), { tenantId: A, Timestamp: "t1", Count: 1 });
    assert.deepEqual(merged.row(1), { tenantId: B, Count: 2, Title: "x" });
    assert.equal(Object.keys(merged.row(1)!)[0], "tenantId");
    assert.equal(merged.row(2), undefined);
  });

  it("pages the merged rows in tenant order across empty tenants, with cursors that resume", () => {
    const rows = (n: number, tag: string) => Array.from({ length: n }, (_, i) => ({ i, tag }));
    const merged = mergeHunts([
      { tenantId: A, columns: [], rows: rows(3, "a") },
      { tenantId: B, columns: [], rows: [] },
      { tenantId: C, columns: [], rows: rows(2, "c") },
    ]);
    assert.equal(merged.totalCount, 5);
    const hunt = parseHunt({ query: "T", first: 2, scope: "s" });
    const first = pageHunt(merged, hunt);
    assert.deepEqual(first.edges.map((e) => e.node.tag), ["a", "a"]);
    assert.equal(first.hasNextPage, true);
    assert.equal(first.hasPreviousPage, false);
    const second = pageHunt(merged, parseHunt({ query: "T", first: 2, after: first.endCursor, scope: "s" }));
    assert.deepEqual(second.edges.map((e) => [e.node.tenantId, e.node.i]), [[A, 2], [C, 0]]);
    const third = pageHunt(merged, parseHunt({ query: "T", first: 2, after: second.endCursor, scope: "s" }));
    assert.deepEqual(third.edges.map((e) => e.node.i), [1]);
    assert.equal(third.hasNextPage, false);
    assert.equal(third.hasPreviousPage, true);
  });
});

describe("HuntingService", () => {
  it("runs every tenant, reports failures and truncation per tenant, and never logs the query", async () => {
    const { logger, lines } = captureLogger("debug");
    const calls: { tenantId: string; backend: HuntingBackendName; query: string }[] = [];
    const service = new HuntingService({
      logger,
      client: {
        run: async (tenantId: string, backend: HuntingBackendName, query: string): Promise<HuntingAnswer> => {
          calls.push({ tenantId, backend, query });
          if (tenantId === B) {
            throw new UpstreamError("BAD_REQUEST", `hunt for tenant ${tenantId}: the query was refused: unknown column 'query-marker-5512'`, { tenantId, backend });
          }
          return { backend, columns: [{ name: "N", type: "Int32" }], rows: [{ N: 1 }, { N: 2 }], truncated: tenantId === C };
        },
      },
    });
    const result = await service.hunt(
      [
        { tenantId: C, backend: "defender" },
        { tenantId: A, backend: "graph" },
        { tenantId: B, backend: "graph" },
      ],
      parseHunt({ query: QUERY, scope: "s" }),
      {},
      [{ tenantId: "dddddddd-0000-4000-8000-000000000000", backend: "graph", error: { code: "TENANT_FORBIDDEN", message: "m", hint: "h" } }],
    );
    assert.equal(calls.length, 3);
    assert.deepEqual(
      result.outcomes.map((o) => [o.tenantId.slice(0, 1), o.ok, o.rowCount, o.truncated, o.backend, o.error?.code ?? null]),
      [
        ["a", true, 2, false, "graph", null],
        ["b", false, 0, false, "graph", "BAD_REQUEST"],
        ["c", true, 2, true, "defender", null],
        ["d", false, 0, false, "graph", "TENANT_FORBIDDEN"],
      ],
    );
    assert.match(result.outcomes[1]!.error!.message, /unknown column/);
    assert.equal(result.page.totalCount, 4);
    assert.deepEqual(result.page.edges.map((e) => e.node.tenantId), [A, A, C, C]);
    assert.ok(lines.length > 0, "the hunt is logged");
    for (const line of lines) {
      assert.ok(!line.includes("query-marker-5512"), `query text in the log: ${line}`);
      assert.ok(!line.includes("DeviceInfo"), `query text in the log: ${line}`);
    }
  });

  it("pages exactly as if it kept every row, though it keeps of each answer only the rows a page can reach", async () => {
    const sizes: Record<string, number> = { [A]: 250, [B]: 3, [C]: 400 };
    const answers: HuntingAnswer[] = [];
    const service = new HuntingService({
      client: {
        run: async (tenantId: string, backend: HuntingBackendName): Promise<HuntingAnswer> => {
          const answer = { backend, columns: [{ name: "I", type: "Int32" }], rows: Array.from({ length: sizes[tenantId]! }, (_, i) => ({ I: i })), truncated: false };
          answers.push(answer);
          return answer;
        },
      },
    });
    const targets = [A, B, C].map((tenantId) => ({ tenantId, backend: "graph" as const }));
    // Everything, for comparison: one page over all 653 rows.
    const all = await service.hunt(targets, parseHunt({ query: QUERY, scope: "s", first: 1000 }), {});
    assert.equal(all.page.totalCount, 653);
    const expected = all.page.edges.map((e) => e.node);
    // Page by page, 100 at a time, following the cursors: the same rows in the same order, the same total.
    const paged: Record<string, unknown>[] = [];
    let after: string | undefined;
    for (let i = 0; i < 7; i++) {
      const { page } = await service.hunt(targets, parseHunt({ query: QUERY, scope: "s", first: 100, ...(after ? { after } : {}) }), {});
      assert.equal(page.totalCount, 653);
      paged.push(...page.edges.map((e) => e.node));
      after = page.endCursor ?? undefined;
      if (!page.hasNextPage) break;
    }
    assert.deepEqual(paged, expected);
    // The first page ends inside the first tenant; outcomes still count each tenant's whole answer.
    const first = await service.hunt(targets, parseHunt({ query: QUERY, scope: "s", first: 100 }), {});
    assert.deepEqual(first.page.edges.map((e) => [e.node.tenantId, e.node.I]).slice(-1), [[A, 99]]);
    assert.deepEqual(first.outcomes.map((o) => o.rowCount), [250, 3, 400], "row counts are the tenants' whole answers");
  });
});
