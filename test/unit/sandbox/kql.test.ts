import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { KqlDateTime, KqlError, parseKql, runKql, type Row, type Table } from "../../../src/sandbox/hunting/kql.js";
import { parseIsoDuration } from "../../../src/sandbox/hunting/hunting-service.js";

/** The sandbox's KQL subset: grammar (ohm-js), semantic checks and evaluation over an in-memory table. */

const NOW = Date.parse("2026-11-29T12:00:00Z");
const DAY = 86_400_000;

const T: Table = {
  schema: [
    { name: "Timestamp", type: "DateTime" },
    { name: "Title", type: "String" },
    { name: "Severity", type: "String" },
    { name: "Count", type: "Int64" },
    { name: "Score", type: "Double" },
    { name: "Active", type: "Boolean" },
  ],
  rows: [
    { Timestamp: new KqlDateTime(NOW - 1 * DAY, "2026-11-28T12:00:00.1234567Z"), Title: "Suspicious PowerShell command line", Severity: "High", Count: 3, Score: 0.5, Active: true },
    { Timestamp: new KqlDateTime(NOW - 5 * DAY), Title: "Mimikatz credential theft tool", Severity: "High", Count: 7, Score: 1.5, Active: false },
    { Timestamp: new KqlDateTime(NOW - 10 * DAY), Title: "Phishing email delivered", Severity: "Medium", Count: 1, Score: 2.25, Active: true },
    { Timestamp: new KqlDateTime(NOW - 40 * DAY), Title: "Anonymous IP address", Severity: "Low", Count: 0, Score: 0, Active: false },
  ],
};

function run(query: string, since?: number): { schema: string[]; rows: Row[] } {
  const result = runKql(parseKql(query), { tables: (name) => (name === "T" ? T : undefined), now: NOW, ...(since !== undefined ? { since } : {}) });
  return { schema: result.schema.map((c) => `${c.name}:${c.type}`), rows: JSON.parse(JSON.stringify(result.rows)) as Row[] };
}

const titles = (query: string) => run(query).rows.map((r) => r.Title);

function refused(query: string, kind: "syntax" | "semantic", message: RegExp): KqlError {
  try {
    run(query);
  } catch (error) {
    assert.ok(error instanceof KqlError, String(error));
    assert.equal(error.kind, kind, error.message);
    assert.match(error.message, message);
    return error;
  }
  assert.fail(`accepted: ${query}`);
}

describe("KQL subset: where", () => {
  it("compares numbers, strings, datetimes and booleans with == != < <= > >=", () => {
    assert.deepEqual(titles("T | where Count == 3"), ["Suspicious PowerShell command line"]);
    assert.deepEqual(titles("T | where Count != 3 and Count > 0"), ["Mimikatz credential theft tool", "Phishing email delivered"]);
    assert.deepEqual(titles("T | where Count >= 3"), ["Suspicious PowerShell command line", "Mimikatz credential theft tool"]);
    assert.deepEqual(titles("T | where Count < 1"), ["Anonymous IP address"]);
    assert.deepEqual(titles("T | where Score <= 0.5"), ["Suspicious PowerShell command line", "Anonymous IP address"]);
    assert.deepEqual(titles("T | where Active == true"), ["Suspicious PowerShell command line", "Phishing email delivered"]);
    assert.deepEqual(titles("T | where Timestamp > datetime(2026-11-20)"), ["Suspicious PowerShell command line", "Mimikatz credential theft tool"]);
    assert.deepEqual(titles("T | where Timestamp < datetime(2026-11-01T00:00:00Z)"), ["Anonymous IP address"]);
  });

  it("== is case-sensitive, =~ and !~ are not", () => {
    assert.deepEqual(titles("T | where Severity == 'high'"), []);
    assert.deepEqual(titles('T | where Severity =~ "high"').length, 2);
    assert.deepEqual(titles("T | where Severity !~ 'HIGH'"), ["Phishing email delivered", "Anonymous IP address"]);
  });

  it("has matches whole terms, contains substrings, startswith prefixes, all case-insensitive, and their negations", () => {
    assert.deepEqual(titles("T | where Title has 'powershell'"), ["Suspicious PowerShell command line"]);
    assert.deepEqual(titles("T | where Title has 'power'"), [], "has needs a whole term");
    assert.deepEqual(titles("T | where Title contains 'POWER'"), ["Suspicious PowerShell command line"]);
    assert.deepEqual(titles("T | where Title startswith 'mimi'"), ["Mimikatz credential theft tool"]);
    assert.deepEqual(titles("T | where Title !has 'email' and Title !contains 'shell' and Title !startswith 'anon'"), ["Mimikatz credential theft tool"]);
  });

  it("ago() and now() are relative to the run's clock", () => {
    assert.deepEqual(titles("T | where Timestamp > ago(7d)"), ["Suspicious PowerShell command line", "Mimikatz credential theft tool"]);
    assert.deepEqual(titles("T | where Timestamp > ago(36h)"), ["Suspicious PowerShell command line"]);
    assert.deepEqual(titles("T | where Timestamp <= now() - 30d"), ["Anonymous IP address"]);
  });

  it("and binds tighter than or; not() and parentheses", () => {
    // Count == 0 or (Severity == 'High' and Count > 5)
    assert.deepEqual(titles("T | where Count == 0 or Severity == 'High' and Count > 5"), ["Mimikatz credential theft tool", "Anonymous IP address"]);
    assert.deepEqual(titles("T | where (Count == 0 or Severity == 'High') and Count > 5"), ["Mimikatz credential theft tool"]);
    assert.deepEqual(titles("T | where not(Severity == 'High') and not(Count == 0)"), ["Phishing email delivered"]);
  });

  it("arithmetic: * and / bind tighter than + and -", () => {
    assert.deepEqual(titles("T | where Count + 2 * 3 == 13"), ["Mimikatz credential theft tool"]);
    assert.deepEqual(titles("T | where (Count + 2) * 3 == 15"), ["Suspicious PowerShell command line"]);
    assert.deepEqual(run("T | where Count == 7 | project Q = Count / 2, R = Count % 4, F = Score * 2").rows, [{ Q: 3, R: 3, F: 3 }]);
  });

  it("the data window hides rows older than `since`", () => {
    assert.equal(run("T", NOW - 30 * DAY).rows.length, 3);
  });
});

describe("KQL subset: tabular operators", () => {
  it("project keeps, orders and renames columns; types follow the expressions", () => {
    const result = run("T | where Count == 3 | project Severity, Name = Title, Next = Count + 1, Ratio = Score / 2");
    assert.deepEqual(result.schema, ["Severity:String", "Name:String", "Next:Int64", "Ratio:Double"]);
    assert.deepEqual(result.rows, [{ Severity: "High", Name: "Suspicious PowerShell command line", Next: 4, Ratio: 0.25 }]);
  });

  it("extend adds (or replaces) columns with strcat, tolower, toupper", () => {
    const result = run("T | where Count == 1 | extend Label = strcat(toupper(Severity), ': ', tolower(Title)), Count = Count * 10 | project Label, Count");
    assert.deepEqual(result.rows, [{ Label: "MEDIUM: phishing email delivered", Count: 10 }]);
    assert.deepEqual(run("T | extend X = 1 | take 1").schema.at(-1), "X:Int64");
  });

  it("summarize count() by columns, count() alone, dcount(), named aggregates", () => {
    assert.deepEqual(run("T | summarize count() by Severity | order by Severity asc").rows, [
      { Severity: "High", count_: 2 },
      { Severity: "Low", count_: 1 },
      { Severity: "Medium", count_: 1 },
    ]);
    assert.deepEqual(run("T | summarize count()").rows, [{ count_: 4 }]);
    assert.deepEqual(run("T | where Count > 100 | summarize count()").rows, [{ count_: 0 }]);
    assert.deepEqual(run("T | summarize Alerts = count(), Kinds = dcount(Severity), dcount(Active)").rows, [{ Alerts: 4, Kinds: 3, dcount_Active: 2 }]);
    assert.deepEqual(run("T | summarize count() by Severity, Active").schema, ["Severity:String", "Active:Boolean", "count_:Int64"]);
  });

  it("top N by (desc by default), take/limit, order/sort by with asc|desc", () => {
    assert.deepEqual(titles("T | top 2 by Count"), ["Mimikatz credential theft tool", "Suspicious PowerShell command line"]);
    assert.deepEqual(titles("T | top 1 by Count asc"), ["Anonymous IP address"]);
    assert.equal(titles("T | take 3").length, 3);
    assert.equal(titles("T | limit 1").length, 1);
    assert.deepEqual(titles("T | order by Timestamp asc | take 1"), ["Anonymous IP address"]);
    assert.deepEqual(titles("T | sort by Severity asc, Count desc"), ["Mimikatz credential theft tool", "Suspicious PowerShell command line", "Anonymous IP address", "Phishing email delivered"]);
    assert.deepEqual(titles("T | order by Count"), ["Mimikatz credential theft tool", "Suspicious PowerShell command line", "Phishing email delivered", "Anonymous IP address"]);
  });

  it("values print as the services print them: datetimes in 7-digit ISO text", () => {
    assert.deepEqual(run("T | top 1 by Timestamp desc | project Timestamp").rows, [{ Timestamp: "2026-11-28T12:00:00.1234567Z" }]);
    assert.deepEqual(run("T | where Count == 7 | project Timestamp").rows, [{ Timestamp: "2026-11-24T12:00:00.0000000Z" }]);
    assert.deepEqual(run("T | where Count == 7 | project Age = now() - Timestamp").rows, [{ Age: "5.00:00:00" }]);
  });

  it("// comments, both string quotes and escapes are accepted", () => {
    assert.deepEqual(titles("T // all alerts\n| where Title == \"Anonymous IP address\" or Title == 'it\\'s'"), ["Anonymous IP address"]);
  });
});

describe("KQL subset: refusals", () => {
  it("anything outside the grammar is a syntax error naming the token, line and 1-based column", () => {
    let e = refused("T | join kind=inner T on Title", "syntax", /^Query could not be parsed at 'join' on line \[1,5\]$/);
    assert.deepEqual([e.line, e.column, e.token], [1, 5, "join"]);
    e = refused("T\n| where Count >", "syntax", /at '<end of query>' on line \[2,16\]/);
    assert.equal(e.line, 2);
    refused("T | project Title as Name", "syntax", /at 'as' on line \[1,19\]/);
    refused("T | distinct Title", "syntax", /at 'distinct'/);
    refused("T | where Count = 3", "syntax", /at '='/);
    // The parser reads `avg` as a result column's name and stops where it expected `=`.
    refused("T | summarize avg(Count)", "syntax", /at '\(' on line \[1,18\]/);
    refused("T | WHERE Count == 1", "syntax", /at 'WHERE'/);
    refused("T | take ten", "syntax", /at 'ten'/);
    refused("T | where Title has", "syntax", /end of query/);
    refused("", "syntax", /end of query/);
  });

  it("unknown tables, columns and functions, and mismatched types, are semantic errors", () => {
    refused("Nope | take 1", "semantic", /table or column expression named 'Nope'/);
    refused("T | where Nope == 1", "semantic", /scalar expression named 'Nope'/);
    refused("T | project Nope", "semantic", /'Nope'/);
    refused("T | summarize count() by Nope", "semantic", /'Nope'/);
    refused("T | where parse_json(Title) == 1", "semantic", /'parse_json'/);
    refused("T | where Title == 1", "semantic", /Cannot compare values of types string and int64/);
    refused("T | where Timestamp > ago('x')", "semantic", /timespan/);
    refused("T | where Timestamp > datetime(yesterday)", "semantic", /Invalid datetime literal/);
    refused("T | project A = 1, A = 2", "semantic", /more than once/);
    // Column names resolve after earlier stages: a projected-away column is gone.
    refused("T | project Title | where Count > 1", "semantic", /'Count'/);
  });
});

describe("ISO-8601 durations (Graph Timespan)", () => {
  it("parses days, weeks and times; refuses the rest", () => {
    assert.equal(parseIsoDuration("P30D"), 30 * DAY);
    assert.equal(parseIsoDuration("P2W"), 14 * DAY);
    assert.equal(parseIsoDuration("PT12H"), DAY / 2);
    assert.equal(parseIsoDuration("P1DT6H30M"), DAY + 6.5 * 3_600_000);
    for (const bad of ["P", "PT", "30D", "P1Y", "P1M", "P0D", "seven days", ""]) assert.equal(parseIsoDuration(bad), undefined, bad);
  });
});
