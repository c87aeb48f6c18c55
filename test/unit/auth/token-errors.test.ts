import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ClientAuthError, ClientConfigurationError, InteractionRequiredAuthError, ServerError } from "@azure/msal-node";
import { TokenClaimsError } from "../../../src/auth/token-claims.js";
import {
  AADSTS_CODES,
  TOKEN_ERROR_CODES,
  TOKEN_ERROR_HINTS,
  TokenAcquisitionError,
  msalBackoffSeconds,
  toTokenAcquisitionError,
  type TokenErrorCode,
} from "../../../src/auth/token-errors.js";

const TENANT = "0b9c3c7e-5b8e-4a43-9e0e-1f2a3b4c5d6e";
const CORRELATION = "ebb366a6-d8f5-493e-8f2f-b94c502283c7";
const TRACE = "e288cfe3-e86b-4c8c-a283-25a5ab41ca00";

/**
 * A ServerError exactly as MSAL's ResponseHandler builds one from a token-endpoint error body (reference
 * 3.3 and 3.6): errorCode = `error`, errorNo = first of `error_codes` (a number at run time), the HTTP status,
 * and a message quoting the whole description.
 */
function serverError(status: number, error: string, aadsts: number, description: string): ServerError {
  const body = `AADSTS${aadsts}: ${description}\r\nTrace ID: ${TRACE}\r\nCorrelation ID: ${CORRELATION}\r\nTimestamp: 2023-05-30 21:44:17Z`;
  const message = `Error(s): ${aadsts} - Timestamp: 2023-05-30 21:44:17Z - Description: ${body} - Correlation ID: ${CORRELATION} - Trace ID: ${TRACE}`;
  return new ServerError(error, CORRELATION, message, "", aadsts as unknown as string, status);
}

/** Captured-shape answers (wording from reference 3.4 and the sandbox catalogue) and their public codes. */
const CASES: { status: number; error: string; aadsts: number; description: string; code: TokenErrorCode }[] = [
  { status: 400, error: "unauthorized_client", aadsts: 700016, code: "CONSENT_REQUIRED", description: "Application with identifier '5c1e7d2a-9b3f-4c6e-8a1d-0f2b4c6d8e10' was not found in the directory 'Alpine Ski House'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant." },
  { status: 401, error: "invalid_client", aadsts: 7000229, code: "CONSENT_REQUIRED", description: "The client application 5c1e7d2a-9b3f-4c6e-8a1d-0f2b4c6d8e10 is missing service principal in the tenant 0b9c3c7e-5b8e-4a43-9e0e-1f2a3b4c5d6e. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119" },
  { status: 400, error: "invalid_grant", aadsts: 65001, code: "CONSENT_REQUIRED", description: "The user or administrator has not consented to use the application." },
  { status: 400, error: "invalid_resource", aadsts: 500011, code: "RESOURCE_NOT_PROVISIONED", description: "The resource principal named https://api.security.microsoft.com was not found in the tenant named Proseware, Inc.." },
  { status: 401, error: "invalid_client", aadsts: 7000215, code: "INVALID_CLIENT_CREDENTIAL", description: "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID." },
  { status: 401, error: "invalid_client", aadsts: 700027, code: "INVALID_CLIENT_CREDENTIAL", description: "Client assertion contains an invalid signature. [Reason - The key was not found.]" },
  { status: 401, error: "invalid_client", aadsts: 7000218, code: "INVALID_CLIENT_CREDENTIAL", description: "The request body must contain the following parameter: 'client_assertion' or 'client_secret'." },
  { status: 401, error: "invalid_client", aadsts: 700024, code: "INVALID_CLIENT_CREDENTIAL", description: "Client assertion is not within its valid time range." },
  { status: 401, error: "invalid_client", aadsts: 7000222, code: "CREDENTIAL_EXPIRED", description: "The provided client secret keys for app '5c1e7d2a-9b3f-4c6e-8a1d-0f2b4c6d8e10' are expired." },
  { status: 400, error: "invalid_request", aadsts: 90002, code: "TENANT_NOT_FOUND", description: "Tenant '11111111-2222-3333-4444-555555555555' not found." },
  { status: 400, error: "invalid_request", aadsts: 900023, code: "TENANT_NOT_FOUND", description: "Specified tenant identifier 'x' is neither a valid DNS name, nor a valid external domain." },
  { status: 400, error: "unauthorized_client", aadsts: 7000112, code: "ACCESS_BLOCKED", description: "Application is disabled." },
  { status: 400, error: "invalid_grant", aadsts: 53003, code: "ACCESS_BLOCKED", description: "Access has been blocked by Conditional Access policies." },
  { status: 400, error: "invalid_scope", aadsts: 1002012, code: "TOKEN_REQUEST_REJECTED", description: "The provided value for scope x is not valid." },
  { status: 400, error: "invalid_request", aadsts: 900144, code: "TOKEN_REQUEST_REJECTED", description: "The request body must contain the following parameter: 'scope'." },
  { status: 429, error: "temporarily_unavailable", aadsts: 90055, code: "THROTTLED", description: "There are too many incoming requests. Please try again later." },
  { status: 503, error: "temporarily_unavailable", aadsts: 90006, code: "TOKEN_ENDPOINT_UNAVAILABLE", description: "The service is temporarily unavailable. Please try again later." },
  { status: 500, error: "server_error", aadsts: 50000, code: "TOKEN_ENDPOINT_UNAVAILABLE", description: "There was an error issuing a token." },
];

describe("toTokenAcquisitionError", () => {
  for (const c of CASES) {
    it(`maps HTTP ${c.status} AADSTS${c.aadsts} (${c.error}) to ${c.code}`, () => {
      const upstream = serverError(c.status, c.error, c.aadsts, c.description);
      const error = toTokenAcquisitionError(upstream, { tenantId: TENANT, resource: "defender", correlationId: "other" });
      assert.ok(error instanceof TokenAcquisitionError);
      assert.equal(error.name, "TokenAcquisitionError");
      assert.equal(error.code, c.code);
      assert.equal(error.aadsts, c.aadsts);
      assert.equal(error.oauthError, c.error);
      assert.equal(error.httpStatus, c.status);
      assert.equal(error.correlationId, CORRELATION, "the correlation id Entra logged wins over ours");
      assert.equal(error.tenantId, TENANT);
      assert.equal(error.cause, upstream);
      assert.ok(error.hint.length > 20);
      assert.match(error.message, new RegExp(`AADSTS${c.aadsts}`));
      assert.match(error.message, new RegExp(CORRELATION));
      assert.match(error.message, new RegExp(TENANT));
      // Entra's description stays in the cause; the message never carries upstream text.
      assert.ok(!error.message.includes(c.description.slice(0, 30)), error.message);
      assert.ok(!error.message.includes("Description"));
      assert.ok(!error.message.includes(TRACE));
    });
  }

  it("gives precise hints for the credential problems a person can fix", () => {
    const wrong = toTokenAcquisitionError(serverError(401, "invalid_client", 7000215, "Invalid client secret provided."));
    assert.match(wrong.hint, /secret's ID instead of its value/);
    const expired = toTokenAcquisitionError(serverError(401, "invalid_client", 7000222, "expired"));
    assert.equal(expired.hint, TOKEN_ERROR_HINTS.CREDENTIAL_EXPIRED);
    const consent = toTokenAcquisitionError(serverError(400, "unauthorized_client", 700016, "not found"));
    assert.match(consent.hint, /Global Administrator has not consented.*consent link/);
  });

  it("takes Retry-After from the recorded answer and marks what MSAL will back off from", () => {
    const throttled = toTokenAcquisitionError(serverError(429, "temporarily_unavailable", 90055, "Too many"), {
      answer: { status: 429, retryAfterSeconds: 7, requestId: TRACE },
    });
    assert.equal(throttled.code, "THROTTLED");
    assert.equal(throttled.retryAfterSeconds, 7);
    assert.equal(throttled.traceId, TRACE);
    assert.ok(throttled.transient);
    assert.match(throttled.message, /retry after 7 s/);
    assert.deepEqual(throttled.toPublic(), { code: "THROTTLED", message: throttled.message, hint: throttled.hint, retryAfterSeconds: 7 });

    // Without Retry-After MSAL blocks for its 60 s default, after a 5xx too.
    assert.equal(toTokenAcquisitionError(serverError(429, "temporarily_unavailable", 90055, "x")).retryAfterSeconds, 60);
    assert.equal(toTokenAcquisitionError(serverError(503, "temporarily_unavailable", 90006, "x")).retryAfterSeconds, 60);
    // A plain 4xx leaves no back-off behind: the next attempt goes to Entra.
    assert.equal(toTokenAcquisitionError(serverError(400, "unauthorized_client", 700016, "x")).retryAfterSeconds, undefined);
    assert.equal(msalBackoffSeconds(400, 30), 30);
    assert.equal(msalBackoffSeconds(429, 0), 60);
    assert.equal(msalBackoffSeconds(503, 7200), 3600);
    assert.equal(msalBackoffSeconds(200, undefined), undefined);
  });

  it("recognises MSAL's own throttle refusal (no status, the AADSTS numbers as errorCode)", () => {
    // ThrottlingUtils.preProcess: new ServerError(errorCodes.join(" "), correlationId, stored description).
    const local = new ServerError("90055", "new-correlation", "AADSTS90055: There are too many incoming requests.");
    const error = toTokenAcquisitionError(local, { tenantId: TENANT, resource: "graph" });
    assert.equal(error.code, "THROTTLED");
    assert.equal(error.aadsts, 90055);
    assert.equal(error.httpStatus, undefined);
    const after5xx = toTokenAcquisitionError(new ServerError("90006", "c", "AADSTS90006: unavailable"));
    assert.equal(after5xx.code, "THROTTLED");
  });

  it("falls back on the OAuth error for unknown AADSTS numbers", () => {
    assert.equal(toTokenAcquisitionError(serverError(401, "invalid_client", 7999999, "new")).code, "INVALID_CLIENT_CREDENTIAL");
    assert.equal(toTokenAcquisitionError(serverError(400, "invalid_resource", 5999999, "new")).code, "RESOURCE_NOT_PROVISIONED");
    assert.equal(toTokenAcquisitionError(serverError(400, "invalid_request", 9999999, "new")).code, "TOKEN_REQUEST_REJECTED");
  });

  it("maps interaction-required answers by their AADSTS number", () => {
    const upstream = new InteractionRequiredAuthError("invalid_grant", CORRELATION, "AADSTS65001: consent_required", "consent_required", "", TRACE, "", "65001");
    const error = toTokenAcquisitionError(upstream);
    assert.equal(error.code, "CONSENT_REQUIRED");
    assert.equal(error.aadsts, 65001);
  });

  it("maps failures without an HTTP answer to TOKEN_ENDPOINT_UNAVAILABLE, without caching them", () => {
    for (const upstream of [
      new ClientAuthError("network_error", CORRELATION),
      new ClientAuthError("endpoints_resolution_error", CORRELATION),
      Object.assign(new Error("Headers Timeout Error"), { code: "UND_ERR_HEADERS_TIMEOUT" }),
      Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }),
      new DOMException("The operation was aborted due to timeout", "TimeoutError"),
      new TokenClaimsError("access token is not a decodable JWT"),
    ]) {
      const error = toTokenAcquisitionError(upstream, { tenantId: TENANT, correlationId: "ours" });
      assert.equal(error.code, "TOKEN_ENDPOINT_UNAVAILABLE", String(upstream));
      assert.equal(error.retryAfterSeconds, undefined);
      assert.ok(error.transient);
    }
  });

  it("maps configuration errors and anything unknown to INTERNAL", () => {
    assert.equal(toTokenAcquisitionError(new ClientConfigurationError("untrusted_authority", "c")).code, "INTERNAL");
    assert.equal(toTokenAcquisitionError(new ClientAuthError("multiple_matching_tokens", "c")).code, "INTERNAL");
    const unknown = toTokenAcquisitionError(new RangeError("boom"), { correlationId: "ours" });
    assert.equal(unknown.code, "INTERNAL");
    assert.equal(unknown.correlationId, "ours");
    assert.equal(unknown.transient, false);
  });

  it("passes a TokenAcquisitionError through untouched", () => {
    const original = new TokenAcquisitionError({ code: "TENANT_MISMATCH", tenantId: TENANT });
    assert.equal(toTokenAcquisitionError(original), original);
  });

  it("has a hint for every code and a code in the table for every listed AADSTS number", () => {
    for (const code of TOKEN_ERROR_CODES) assert.ok(TOKEN_ERROR_HINTS[code].length > 20, code);
    for (const [aadsts, entry] of AADSTS_CODES) assert.ok(TOKEN_ERROR_CODES.includes(entry.code), String(aadsts));
  });

  it("keeps a back-off refusal's identity and shortens its retry-after", () => {
    const first = toTokenAcquisitionError(serverError(429, "temporarily_unavailable", 90055, "x"), {
      tenantId: TENANT,
      answer: { status: 429, retryAfterSeconds: 30 },
    });
    const later = first.withRetryAfter(12);
    assert.equal(later.code, "THROTTLED");
    assert.equal(later.aadsts, 90055);
    assert.equal(later.correlationId, CORRELATION);
    assert.equal(later.retryAfterSeconds, 12);
    assert.equal(later.cause, first);
  });
});
