import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import { postGraphQL } from "../helpers/graphql.js";
import { captureLogger } from "../helpers/log-capture.js";

describe("server in sandbox mode", () => {
  let runtime: Runtime;
  const logs = captureLogger("debug");

  before(async () => {
    runtime = await startRuntime(loadConfig({ PORT: "0", LOG_LEVEL: "debug", DATA_DIR: "memory://" }), { logger: logs.logger });
  });
  after(async () => {
    await runtime.close();
  });

  it("starts the in-process sandbox and points the server at it", async () => {
    assert.ok(runtime.sandbox, "sandbox started");
    assert.match(runtime.sandbox.url, /^https:\/\/localhost:\d+$/);
    const result = await postGraphQL(runtime.url, "{ serverInfo { mode version defaultIncidentsBackend authorityHost } }");
    assert.equal(result.status, 200);
    assert.deepEqual(result.body.data?.serverInfo, {
      mode: "SANDBOX",
      version: "0.1.0",
      defaultIncidentsBackend: "DEFENDER",
      authorityHost: runtime.sandbox.url,
    });
  });

  it("answers /healthz", async () => {
    const response = await request(`${runtime.url}/healthz`);
    assert.equal(response.statusCode, 200);
    assert.deepEqual(await response.body.json(), { status: "ok", mode: "sandbox", version: "0.1.0" });
  });

  it("gives validation errors a code and no stack trace", async () => {
    const result = await postGraphQL(runtime.url, "{ serverInfo { nope } }");
    assert.equal(result.status, 400);
    assert.equal(result.body.errors?.[0]?.extensions?.code, "GRAPHQL_VALIDATION_FAILED");
    assert.ok(!result.text.includes("stacktrace"));
    assert.ok(!result.text.includes("    at "));
  });

  it("gives parse errors a code", async () => {
    const result = await postGraphQL(runtime.url, "{ serverInfo { ");
    assert.equal(result.status, 400);
    assert.equal(result.body.errors?.[0]?.extensions?.code, "GRAPHQL_PARSE_FAILED");
  });

  it("returns a request id, echoing a well-formed one from the caller and replacing a hostile one", async () => {
    const echoed = await postGraphQL(runtime.url, "{ serverInfo { mode } }", undefined, { "x-request-id": "trace-abc.123" });
    assert.equal(echoed.headers["x-request-id"], "trace-abc.123");
    const hostile = await postGraphQL(runtime.url, "{ serverInfo { mode } }", undefined, {
      "x-request-id": "evil\"} {injected: true} and a very long value that is not a token",
    });
    assert.match(String(hostile.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
  });

  it("never writes the sandbox app's client secret to the log", async () => {
    const secret = runtime.sandbox!.clientSecret;
    assert.ok(secret.length >= 32);
    assert.ok(logs.lines.length > 0, "something was logged");
    for (const line of logs.lines) assert.ok(!line.includes(secret), `secret leaked in: ${line}`);
  });
});
