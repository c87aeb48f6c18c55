import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  evaluateFilter,
  ODataError,
  parseFilter,
  parseNonNegativeInteger,
  parseOrderBy,
  parseQueryOptions,
  pastSkipCeiling,
  sortByOrderBy,
  type FilterSchema,
} from "../../../src/sandbox/odata.js";
import { isoSqlDatetime, MonotonicStamp, parseDateTimeOffset, trimIso } from "../../../src/sandbox/timestamps.js";

const lenient: FilterSchema = {
  entityName: "Incident",
  datetimeLiterals: "lenient",
  properties: {
    lastUpdateTime: { kind: "datetime" },
    createdTime: { kind: "datetime" },
    status: { kind: "enum", typeName: "IncidentStatus", members: ["Active", "InProgress", "Resolved", "Redirected"] },
    assignedTo: { kind: "string" },
  },
};
const strict: FilterSchema = {
  entityName: "microsoft.graph.security.incident",
  datetimeLiterals: "strict",
  properties: {
    lastUpdateDateTime: { kind: "datetime" },
    severity: {
      kind: "enum",
      typeName: "microsoft.graph.security.alertSeverity",
      members: ["unknown", "informational", "low", "medium", "high"],
    },
    determination: {
      kind: "enum",
      typeName: "microsoft.graph.security.alertDetermination",
      members: ["unknown", "clean", "insufficientData"],
      aliases: { notmalicious: "clean" },
    },
  },
};

type Row = Record<string, string | null>;
const rows: Row[] = [
  { id: "1", lastUpdateTime: "2024-05-01T10:00:00.0000000Z", createdTime: "2024-04-01T00:00:00.0000000Z", status: "Active", assignedTo: null },
  { id: "2", lastUpdateTime: "2024-05-01T10:00:00.1234567Z", createdTime: "2024-04-02T00:00:00.0000000Z", status: "Resolved", assignedTo: "kai@contoso.com" },
  { id: "3", lastUpdateTime: "2024-05-02T00:00:00.5000000Z", createdTime: "2024-04-03T00:00:00.0000000Z", status: "InProgress", assignedTo: "O'Brien@contoso.com" },
  { id: "4", lastUpdateTime: "2024-05-03T00:00:00.0000000Z", createdTime: "2024-04-04T00:00:00.0000000Z", status: "Redirected", assignedTo: "kai@contoso.com" },
];

/** The ids of the rows a filter keeps. */
function ids(filter: string, schema = lenient, data = rows): string[] {
  const tree = parseFilter(filter, schema);
  return data.filter((row) => evaluateFilter(tree, schema, (p) => row[p] ?? null)).map((r) => r.id!);
}

function rejects(filter: string, pattern: RegExp, schema = lenient): void {
  assert.throws(() => parseFilter(filter, schema), (error: unknown) => {
    assert.ok(error instanceof ODataError, `expected ODataError for ${filter}`);
    assert.match(error.message, pattern);
    return true;
  });
}

describe("$filter comparisons", () => {
  it("supports every comparison operator on datetimes, to the 100 ns tick", () => {
    const at = "2024-05-01T10:00:00.1234567Z";
    assert.deepEqual(ids(`lastUpdateTime eq ${at}`), ["2"]);
    assert.deepEqual(ids(`lastUpdateTime ne ${at}`), ["1", "3", "4"]);
    assert.deepEqual(ids(`lastUpdateTime gt ${at}`), ["3", "4"]);
    assert.deepEqual(ids(`lastUpdateTime ge ${at}`), ["2", "3", "4"]);
    assert.deepEqual(ids(`lastUpdateTime lt ${at}`), ["1"]);
    assert.deepEqual(ids(`lastUpdateTime le ${at}`), ["1", "2"]);
    // One tick earlier still separates 1 from 2.
    assert.deepEqual(ids("lastUpdateTime gt 2024-05-01T10:00:00.1234566Z"), ["2", "3", "4"]);
  });

  it("accepts datetimes with 0 to 7 fractional digits and with offsets", () => {
    assert.deepEqual(ids("lastUpdateTime gt 2024-05-01T10:00:00Z"), ["2", "3", "4"]);
    assert.deepEqual(ids("lastUpdateTime gt 2024-05-01T10:00:00.1Z"), ["2", "3", "4"]);
    assert.deepEqual(ids("lastUpdateTime gt 2024-05-01T10:00:00.12Z"), ["2", "3", "4"]);
    assert.deepEqual(ids("lastUpdateTime gt 2024-05-01T10:00:00.123Z"), ["2", "3", "4"]);
    assert.deepEqual(ids("lastUpdateTime gt 2024-05-01T10:00:00.1234Z"), ["2", "3", "4"]);
    assert.deepEqual(ids("lastUpdateTime gt 2024-05-01T10:00:00.12345Z"), ["2", "3", "4"]);
    assert.deepEqual(ids("lastUpdateTime gt 2024-05-01T10:00:00.123456Z"), ["2", "3", "4"]);
    assert.deepEqual(ids("lastUpdateTime gt 2024-05-01T10:00:00.1234567Z"), ["3", "4"]);
    assert.deepEqual(ids("lastUpdateTime ge 2024-05-02T02:00:00.5+02:00"), ["3", "4"]);
    assert.deepEqual(ids("lastUpdateTime gt 2024-05-01T20:00:00-05:00"), ["4"]);
  });

  it("compares enums case-insensitively and by member order", () => {
    assert.deepEqual(ids("status eq 'Active'"), ["1"]);
    assert.deepEqual(ids("status eq 'active'"), ["1"]);
    assert.deepEqual(ids("status ne 'Active'"), ["2", "3", "4"]);
    assert.deepEqual(ids("status ge 'Resolved'"), ["2", "4"]);
  });

  it("compares strings with '' escapes and null", () => {
    assert.deepEqual(ids("assignedTo eq 'kai@contoso.com'"), ["2", "4"]);
    assert.deepEqual(ids("assignedTo eq 'KAI@contoso.com'"), ["2", "4"]);
    assert.deepEqual(ids("assignedTo eq 'O''Brien@contoso.com'"), ["3"]);
    assert.deepEqual(ids("assignedTo eq null"), ["1"]);
    assert.deepEqual(ids("assignedTo ne null"), ["2", "3", "4"]);
    assert.deepEqual(ids("null eq assignedTo"), ["1"]);
    assert.deepEqual(ids("assignedTo gt null"), []);
  });

  it("flips comparisons written literal-first", () => {
    assert.deepEqual(ids("2024-05-02T00:00:00Z lt lastUpdateTime"), ["3", "4"]);
  });

  it("combines with and, or, not and parentheses, with and binding tighter than or", () => {
    assert.deepEqual(ids("status eq 'Active' or status eq 'Resolved' and assignedTo eq 'nobody'"), ["1"]);
    assert.deepEqual(ids("(status eq 'Active' or status eq 'Resolved') and assignedTo eq 'nobody'"), []);
    assert.deepEqual(ids("(status eq 'Active' or status eq 'Resolved') and createdTime ge 2024-04-02T00:00:00Z"), ["2"]);
    assert.deepEqual(ids("not (status eq 'Active')"), ["2", "3", "4"]);
    assert.deepEqual(ids("not status eq 'Active' and not assignedTo eq null"), ["2", "3", "4"]);
    assert.deepEqual(ids("((assignedTo eq 'kai@contoso.com'))"), ["2", "4"]);
    assert.deepEqual(ids("status in ('Active', 'InProgress')"), ["1", "3"]);
  });

  it("lenient schemas take quoted and datetime'…' datetimes; strict ones refuse a quoted one", () => {
    assert.deepEqual(ids("lastUpdateTime gt '2024-05-02T00:00:00Z'"), ["3", "4"]);
    assert.deepEqual(ids("lastUpdateTime gt datetime'2024-05-02T00:00:00Z'"), ["3", "4"]);
    rejects("lastUpdateDateTime gt '2024-05-02T00:00:00Z'", /incompatible types.*Edm\.DateTimeOffset.*Edm\.String.*GreaterThan/, strict);
    const data = [{ id: "a", lastUpdateDateTime: "2024-05-03T00:00:00.0000000Z", severity: "high", determination: "clean" }];
    assert.deepEqual(ids("lastUpdateDateTime gt 2024-05-02T00:00:00Z", strict, data), ["a"]);
  });

  it("resolves enum aliases and qualified enum literals", () => {
    const data = [
      { id: "a", severity: "high", determination: "clean" },
      { id: "b", severity: "low", determination: "insufficientData" },
    ];
    assert.deepEqual(ids("determination eq 'notMalicious'", strict, data), ["a"]);
    assert.deepEqual(ids("severity eq microsoft.graph.security.alertSeverity'high'", strict, data), ["a"]);
    assert.deepEqual(ids("severity gt 'medium'", strict, data), ["a"]);
  });
});

describe("$filter errors", () => {
  it("names unknown and unsupported properties, with a case hint", () => {
    rejects("severity eq 'High'", /filterable property named 'severity'.*lastUpdateTime, createdTime, status, assignedTo/);
    rejects("Status eq 'Active'", /case-sensitive; did you mean 'status'/);
  });

  it("rejects syntax errors with the position", () => {
    rejects("status eq", /Expression expected at the end/);
    rejects("status 'Active'", /comparison operator/);
    rejects("(status eq 'Active'", /'\)' expected/);
    rejects("status eq 'Active' and", /Expression expected/);
    rejects("status eq 'Active' status eq 'Resolved'", /Syntax error at 'status' at position 19/);
    rejects("status eq 'Active", /unterminated string literal/);
    rejects("status eq 'Active' & x", /character '&' is not valid at position 19/);
    rejects("", /must not be empty/);
  });

  it("rejects unquoted strings, functions, unknown members and mismatched types", () => {
    rejects("status eq Active", /'Active' at position 10 is not a property.*single quotes/);
    rejects("contains(assignedTo,'kai')", /function 'contains' is not supported/);
    rejects("status eq 'New'", /'New' is not a valid enumeration type constant.*Active, InProgress, Resolved, Redirected/);
    rejects("assignedTo eq 2024-01-01T00:00:00Z", /incompatible types.*Edm\.String.*Edm\.DateTimeOffset/);
    rejects("createdTime gt 5", /incompatible types.*Edm\.DateTimeOffset.*Edm\.Int32/);
    rejects("createdTime gt 2024-01-01T00:00:00", /not a valid DateTimeOffset.*time zone/);
    rejects("createdTime gt 2024-02-30T00:00:00Z", /not a valid DateTimeOffset/);
    rejects("status eq true", /incompatible types/);
    rejects("assignedTo eq status", /Comparing two properties/);
  });

  it("explains a '+' offset that arrived as a space", () => {
    rejects("createdTime gt 2024-01-01T00:00:00 02:00", /%2B/);
  });
});

describe("query options", () => {
  it("decodes + and %20 as spaces and matches option names case-insensitively", () => {
    const options = parseQueryOptions("$filter=status+eq+'Active'&%24Top=5&$skip=%31%30&tid=x", ["$filter", "$top", "$skip"]);
    assert.equal(options.get("$filter"), "status eq 'Active'");
    assert.equal(options.get("$top"), "5");
    assert.equal(options.get("$skip"), "10");
    assert.equal(options.size, 3, "parameters without $ are ignored");
    assert.equal(parseQueryOptions("$filter=status%20eq%20'Active'", ["$filter"]).get("$filter"), "status eq 'Active'");
  });

  it("rejects unknown $-options, repeated options and bad encodings", () => {
    assert.throws(() => parseQueryOptions("$orderby=createdTime", ["$filter", "$top", "$skip"]), /'\$orderby' is not supported/);
    assert.throws(() => parseQueryOptions("$top=1&$top=2", ["$top"]), /more than once/);
    assert.throws(() => parseQueryOptions("$filter=%E0%A4%A", ["$filter"]), /invalid percent-encoding/);
  });

  it("parses non-negative integers only", () => {
    assert.equal(parseNonNegativeInteger("$top", "0"), 0);
    assert.equal(parseNonNegativeInteger("$top", "100"), 100);
    for (const bad of ["-1", "1.5", "ten", "", "1e3"]) assert.throws(() => parseNonNegativeInteger("$top", bad), ODataError);
    assert.throws(() => parseNonNegativeInteger("$skip", "99999999999"), /out of range/);
  });

  it("parses $orderby clauses against the sortable list", () => {
    assert.deepEqual(parseOrderBy("severity desc, id", ["severity", "id"], "x"), [
      { property: "severity", direction: "desc" },
      { property: "id", direction: "asc" },
    ]);
    assert.throws(() => parseOrderBy("displayName", ["severity"], "x"), /cannot be used in \$orderby/);
    assert.throws(() => parseOrderBy("severity sideways", ["severity"], "x"), /direction/);
    assert.throws(() => parseOrderBy("severity, severity desc", ["severity"], "x"), /more than once/);
    assert.throws(() => parseOrderBy("severity desc extra", ["severity"], "x"), /Invalid \$orderby clause/);
  });
});

describe("$orderby and the skip ceiling", () => {
  const rows = [
    { id: 3, t: "2024-01-01T00:00:02.0000000Z" },
    { id: 1, t: "2024-01-01T00:00:01.0000000Z" },
    { id: 4, t: "2024-01-01T00:00:01.0000000Z" },
    { id: 2, t: "2024-01-01T00:00:01.0000000Z" },
  ];
  const compare = (r: { id: number; t: string }, property: string) => (property === "lastUpdateDateTime" ? r.t : r.id);

  it("sorts by lastUpdateDateTime asc with ties in one stable order (the id), as watermark paging needs", () => {
    const clauses = parseOrderBy("lastUpdateDateTime asc", ["lastUpdateDateTime", "id"], "x");
    assert.deepEqual(sortByOrderBy([...rows], clauses, "id", compare).map((r) => r.id), [1, 2, 4, 3]);
    assert.deepEqual(sortByOrderBy([...rows].reverse(), clauses, "id", compare).map((r) => r.id), [1, 2, 4, 3], "whatever the input order");
    const desc = parseOrderBy("lastUpdateDateTime desc", ["lastUpdateDateTime", "id"], "x");
    assert.deepEqual(sortByOrderBy([...rows], desc, "id", compare).map((r) => r.id), [3, 4, 2, 1], "ties follow the last clause's direction");
    for (let limit = 0; limit <= 4; limit++) {
      assert.deepEqual(sortByOrderBy(rows, clauses, "id", compare, limit).map((r) => r.id), [1, 2, 4, 3].slice(0, limit), `the first ${limit} without sorting the rest`);
    }
  });

  it("refuses $orderby on a property that cannot be sorted", () => {
    assert.throws(() => parseOrderBy("severity asc", ["lastUpdateTime", "createdTime"], "Incident"), /cannot be used in \$orderby/);
  });

  it("a request is past the ceiling when $top + $skip exceeds it; a first page never is", () => {
    assert.equal(pastSkipCeiling(50, 5950, 6000), false);
    assert.equal(pastSkipCeiling(50, 5951, 6000), true);
    assert.equal(pastSkipCeiling(50, 0, 10), false);
    assert.equal(pastSkipCeiling(50, 1_000_000, null), false);
  });
});

describe("timestamps", () => {
  it("parses 0 to 7 (and more, truncated) fractional digits into the fixed-width form", () => {
    assert.equal(parseDateTimeOffset("2021-03-18T12:05:31Z"), "2021-03-18T12:05:31.0000000Z");
    assert.equal(parseDateTimeOffset("2021-03-18T12:05:31.9Z"), "2021-03-18T12:05:31.9000000Z");
    assert.equal(parseDateTimeOffset("2021-03-18T12:05:35.92Z"), "2021-03-18T12:05:35.9200000Z");
    assert.equal(parseDateTimeOffset("2021-04-05T06:56:06.833Z"), "2021-04-05T06:56:06.8330000Z");
    assert.equal(parseDateTimeOffset("2021-04-05T06:56:06.8331Z"), "2021-04-05T06:56:06.8331000Z");
    assert.equal(parseDateTimeOffset("2021-04-05T06:56:06.83312Z"), "2021-04-05T06:56:06.8331200Z");
    assert.equal(parseDateTimeOffset("2021-04-05T06:56:06.833123Z"), "2021-04-05T06:56:06.8331230Z");
    assert.equal(parseDateTimeOffset("2021-04-05T15:40:25.6866667Z"), "2021-04-05T15:40:25.6866667Z");
    assert.equal(parseDateTimeOffset("2021-04-05T15:40:25.686666789Z"), "2021-04-05T15:40:25.6866667Z");
    assert.equal(parseDateTimeOffset("2021-04-05T17:40:25.5+02:00"), "2021-04-05T15:40:25.5000000Z");
    assert.equal(parseDateTimeOffset("2021-04-05T15:40Z"), "2021-04-05T15:40:00.0000000Z");
    for (const bad of ["2021-04-05", "2021-04-05T15:40:25", "2021-13-01T00:00:00Z", "yesterday", "2021-04-05T25:00:00Z"]) {
      assert.equal(parseDateTimeOffset(bad), undefined, bad);
    }
  });

  it("prints trimmed, the way the services do", () => {
    assert.equal(trimIso("2021-03-18T12:05:31.0000000Z"), "2021-03-18T12:05:31Z");
    assert.equal(trimIso("2021-03-18T12:05:35.9200000Z"), "2021-03-18T12:05:35.92Z");
    assert.equal(trimIso("2021-04-05T15:40:25.6866667Z"), "2021-04-05T15:40:25.6866667Z");
    assert.equal(trimIso("2021-04-05T15:40:25.0000001Z"), "2021-04-05T15:40:25.0000001Z");
  });

  it("rounds incident times to SQL datetime precision (1/300 s)", () => {
    const base = Date.UTC(2021, 3, 5, 15, 40, 25);
    assert.equal(isoSqlDatetime(base + 687), "2021-04-05T15:40:25.6866667Z");
    assert.equal(isoSqlDatetime(base + 920), "2021-04-05T15:40:25.9200000Z");
    assert.equal(isoSqlDatetime(base + 999), "2021-04-05T15:40:26.0000000Z");
  });

  it("issues strictly increasing stamps within one millisecond", () => {
    const stamp = new MonotonicStamp();
    const ms = Date.UTC(2024, 0, 1);
    const a = stamp.next(ms);
    const b = stamp.next(ms);
    const c = stamp.next(ms - 5);
    assert.equal(a, "2024-01-01T00:00:00.0000000Z");
    assert.equal(b, "2024-01-01T00:00:00.0000001Z");
    assert.ok(c > b, "c > b");
    assert.ok(stamp.next(ms + 1) > c, "stamp.next(ms + 1) > c");
  });
});
