import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TOKEN_ERROR_CODES, TokenAcquisitionError } from "../../../src/auth/token-errors.js";
import { UPSTREAM_ERROR_CODES, UpstreamError } from "../../../src/defender/backend-client.js";
import { TENANT_ERROR_CODES, deadlineExceeded, isTransientCode, toTenantError } from "../../../src/incidents/outcome.js";
import { captureLogger } from "../../helpers/log-capture.js";

const TENANT = "0b9c3c7e-5b8e-4a43-9e0e-1f2a3b4c5d6e";

describe("toTenantError", () => {
  it("passes a token failure through with its own code, message, hint and retry-after", () => {
    for (const code of TOKEN_ERROR_CODES) {
      const error = new TokenAcquisitionError({ code, tenantId: TENANT, aadsts: 7000229, correlationId: "corr-1" });
      const mapped = toTenantError(error);
      assert.deepEqual(mapped, error.toPublic());
      assert.equal(mapped.code, code);
      assert.ok(mapped.hint.length > 20);
    }
    const throttled = toTenantError(new TokenAcquisitionError({ code: "THROTTLED", tenantId: TENANT, retryAfterSeconds: 17 }));
    assert.equal(throttled.retryAfterSeconds, 17);
    const precise = toTenantError(new TokenAcquisitionError({ code: "INVALID_CLIENT_CREDENTIAL", hint: "the precise hint" }));
    assert.equal(precise.hint, "the precise hint");
  });

  it("maps every upstream code with a hint of its own, naming the backend's roles for MISSING_ROLE", () => {
    const hints = new Set<string>();
    for (const code of UPSTREAM_ERROR_CODES) {
      const mapped = toTenantError(new UpstreamError(code, `upstream said ${code}`, { tenantId: TENANT, backend: "defender", status: 400 }));
      assert.equal(mapped.code, code);
      assert.equal(mapped.message, `upstream said ${code}`);
      assert.ok(mapped.hint.length > 20);
      assert.equal("retryAfterSeconds" in mapped, false);
      hints.add(mapped.hint);
    }
    assert.equal(hints.size, UPSTREAM_ERROR_CODES.length);
    const defender = toTenantError(new UpstreamError("MISSING_ROLE", "403", { tenantId: TENANT, backend: "defender" }));
    assert.match(defender.hint, /Incident\.Read\.All/);
    const graph = toTenantError(new UpstreamError("MISSING_ROLE", "403", { tenantId: TENANT, backend: "graph" }));
    assert.match(graph.hint, /SecurityIncident\.Read\.All/);
    assert.match(graph.hint, /Graph/);
  });

  it("keeps retry-after of upstream throttling, and never the body excerpt or a URL", () => {
    const error = new UpstreamError(
      "THROTTLED",
      "429 from https://api.security.microsoft.com/api/incidents?$skip=100 for the tenant",
      { tenantId: TENANT, backend: "defender", status: 429, retryAfterSeconds: 42, bodyExcerpt: "secret-ish body", upstreamRequestId: "req-9" },
    );
    const mapped = toTenantError(error);
    assert.equal(mapped.code, "THROTTLED");
    assert.equal(mapped.retryAfterSeconds, 42);
    assert.doesNotMatch(JSON.stringify(mapped), /https?:|security\.microsoft|secret-ish|\$skip/);
    assert.match(mapped.message, /429 from \[url\] for the tenant/);
  });

  it("maps aborts and timeouts (the operation's signal or deadline) to DEADLINE_EXCEEDED", () => {
    const controller = new AbortController();
    controller.abort();
    const reasons: unknown[] = [controller.signal.reason, new DOMException("timed out", "TimeoutError"), Object.assign(new Error("aborted"), { name: "AbortError" })];
    for (const reason of reasons) {
      const mapped = toTenantError(reason);
      assert.equal(mapped.code, "DEADLINE_EXCEEDED");
      assert.deepEqual(mapped, deadlineExceeded());
      assert.match(mapped.hint, /again/);
    }
  });

  it("turns anything else into INTERNAL with a generic message, and logs the original", () => {
    const { logger, lines } = captureLogger();
    const original = new TypeError("cannot read 'value' of https://api.security.microsoft.com/api/incidents?token=abc");
    const mapped = toTenantError(original, { tenantId: TENANT, logger });
    assert.equal(mapped.code, "INTERNAL");
    assert.equal(mapped.message, "internal error");
    assert.doesNotMatch(JSON.stringify(mapped), /https|token=|TypeError|value/);
    assert.equal(lines.length, 1);
    const logged = JSON.parse(lines[0]!) as { level: number; tenantId: string; err: { message: string } };
    assert.equal(logged.level, 50, "error level");
    assert.equal(logged.tenantId, TENANT);
    assert.match(logged.err.message, /cannot read/);

    for (const thrown of ["a string", 42, null, undefined, { message: "https://x" }]) {
      const other = toTenantError(thrown);
      assert.equal(other.code, "INTERNAL");
      assert.equal(other.message, "internal error");
    }
  });
});

describe("tenant error codes", () => {
  it("list every token and upstream code once, plus DEADLINE_EXCEEDED", () => {
    assert.equal(new Set(TENANT_ERROR_CODES).size, TENANT_ERROR_CODES.length);
    for (const code of [...TOKEN_ERROR_CODES, ...UPSTREAM_ERROR_CODES, "DEADLINE_EXCEEDED", "INTERNAL"] as const) {
      assert.ok(TENANT_ERROR_CODES.includes(code), code);
    }
  });

  it("are transient exactly when waiting may fix them", () => {
    const transient = TENANT_ERROR_CODES.filter((code) => isTransientCode(code)).sort();
    // INCOMPLETE (a first load still going) and UPSTREAM_PAGING_LIMIT (the offset fallback stopped before the
    // skip ceiling) keep the pages already read: the next query continues from them.
    assert.deepEqual(transient, [
      "DEADLINE_EXCEEDED",
      "INCOMPLETE",
      "INTERNAL",
      "THROTTLED",
      "TOKEN_ENDPOINT_UNAVAILABLE",
      "UPSTREAM_BAD_RESPONSE",
      "UPSTREAM_PAGING_LIMIT",
      "UPSTREAM_TIMEOUT",
      "UPSTREAM_UNAVAILABLE",
    ]);
  });
});
