import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Writable } from "node:stream";
import { createLogger } from "../../src/logger.js";

describe("the process logger", () => {
  const capture = () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    return { logger: createLogger("info", stream), lines };
  };

  it("logs a database error's message and stack but not its statement or parameters, on the error and its cause", () => {
    const { logger, lines } = capture();
    const cause = Object.assign(new Error("inner"), { query: "SELECT * FROM inner_table WHERE x = $1", params: ["inner-secret"] });
    const error = Object.assign(new Error("value out of range for type bigint"), {
      query: "SELECT id FROM audit_events WHERE seq < $1",
      params: ["99999999999999999999"],
      queryOptions: { rowMode: "object" },
      code: "22003",
      cause,
    });
    logger.error({ err: error }, "store failed");
    logger.error({ error }, "store failed again");
    assert.equal(lines.length, 2);
    for (const line of lines) {
      const parsed = JSON.parse(line) as Record<string, any>;
      const logged = parsed.err ?? parsed.error;
      assert.match(logged.message, /^value out of range for type bigint/);
      assert.equal(logged.code, "22003");
      assert.match(logged.stack, /value out of range/);
      assert.doesNotMatch(line, /audit_events|inner_table|99999999999999999999|inner-secret|rowMode/);
    }
  });
});
