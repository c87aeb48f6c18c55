import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "graphql";
import { errorForLog } from "../../../src/http/operation-log.js";

describe("errorForLog", () => {
  it("cuts every variable value and string literal of the operation out of the error, its stack and its cause", () => {
    const variable = "secret-search-text-from-a-variable";
    const literal = "literal-text-in-the-document";
    const cause = new Error(`upstream said no to ${literal}`);
    const error = new Error(`Invalid regular expression: /${variable}/i: too large`, { cause });
    const document = parse(`query($f: IncidentFilter) { incidents(filter: $f, tenantTags: [${JSON.stringify(literal)}]) { totalCount } }`);
    const logged = JSON.stringify(errorForLog(error, { variables: { f: { search: variable, severity: ["HIGH"] } } }, document));
    assert.ok(!logged.includes(variable), logged);
    assert.ok(!logged.includes(literal), logged);
    assert.match(logged, /Invalid regular expression: \/\[argument\]\/i: too large/);
    assert.match(logged, /upstream said no to \[argument\]/);
    assert.match(logged, /"type":"Error"/);
    assert.match(logged, /"stack":/);
  });

  it("leaves short values alone and cuts any string to a bounded length", () => {
    const error = new Error(`HIGH ${"y".repeat(100_000)}`);
    const logged = errorForLog(error, { variables: { severity: "HIGH", n: 5 } }) as { message: string };
    assert.ok(logged.message.startsWith("HIGH yyy"), "a four-letter value is not worth garbling the log for");
    assert.ok(logged.message.length < 5000, `cut to ${logged.message.length}`);
  });

  it("takes anything thrown, not only errors", () => {
    assert.deepEqual(errorForLog("plain text with secret-value-1", { variables: { v: "secret-value-1" } }), { message: "plain text with [argument]" });
  });
});
