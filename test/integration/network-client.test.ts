import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { UndiciNetworkClient } from "../../src/auth/network-client.js";
import { startTestSandbox, type TestSandbox } from "../helpers/sandbox.js";

/** The MSAL network module, against the sandbox's real token endpoint and its faults. */
describe("UndiciNetworkClient", () => {
  let t: TestSandbox;
  let client: UndiciNetworkClient;
  let tenantId: string;
  let tokenUrl: string;
  const form = () =>
    new URLSearchParams({
      grant_type: "client_credentials",
      client_id: t.sandbox.clientId,
      client_secret: t.sandbox.clientSecret,
      scope: "https://api.security.microsoft.com/.default",
    }).toString();
  const headers = { "content-type": "application/x-www-form-urlencoded;charset=utf-8" };

  before(async () => {
    t = await startTestSandbox();
    // The total bound is far from the headers bound, so the error's code alone tells which one fired, however
    // late a loaded machine runs the timers.
    client = new UndiciNetworkClient(t.dispatcher, { connectMs: 10_000, headersMs: 500, bodyMs: 500, totalMs: 60_000 });
    tenantId = t.sandbox.tenants[0]!.id;
    tokenUrl = `${t.sandbox.url}/${tenantId}/oauth2/v2.0/token?client-request-id=test`;
  });
  after(async () => {
    await t.close();
  });

  it("resolves a token response with status, lower-case headers and the parsed body", async () => {
    const response = await client.sendPostRequestAsync<Record<string, unknown>>(tokenUrl, { headers, body: form() });
    assert.equal(response.status, 200);
    assert.equal(response.body.token_type, "Bearer");
    assert.equal(typeof response.body.access_token, "string");
    assert.match(String(response.headers["cache-control"]), /no-store/);
  });

  it("resolves (does not reject) an Entra error so MSAL can build a ServerError", async () => {
    const body = form().replace(/client_secret=[^&]+/, "client_secret=wrong");
    const response = await client.sendPostRequestAsync<Record<string, unknown>>(tokenUrl, { headers, body });
    assert.equal(response.status, 401);
    assert.equal(response.body.error, "invalid_client");
    assert.deepEqual(response.body.error_codes, [7000215]);
  });

  it("gives MSAL an empty object when the body is not JSON", async () => {
    t.sandbox.context.setFault(tenantId, { kind: "malformed-json", endpoints: ["token"], times: 1 });
    const response = await client.sendPostRequestAsync<Record<string, unknown>>(tokenUrl, { headers, body: form() });
    assert.equal(response.status, 200);
    assert.deepEqual(response.body, {});
  });

  it("rejects when the authority sends no headers within the headers timeout", async () => {
    t.sandbox.context.setFault(tenantId, { kind: "hang", endpoints: ["token"], times: 1 });
    // Gave up at the headers timeout, not the total one: the total signal would reject with a TimeoutError.
    await assert.rejects(client.sendPostRequestAsync(tokenUrl, { headers, body: form() }), (error: Error) => {
      assert.match(`${error.name} ${(error as { code?: string }).code ?? ""}`, /HeadersTimeout|UND_ERR_HEADERS_TIMEOUT/);
      return true;
    });
  });

  it("rejects when the connection is reset", async () => {
    t.sandbox.context.setFault(tenantId, { kind: "reset", endpoints: ["token"], times: 1 });
    await assert.rejects(client.sendPostRequestAsync(tokenUrl, { headers, body: form() }));
  });

  it("uses GET for discovery documents", async () => {
    const response = await client.sendGetRequestAsync<Record<string, unknown>>(
      `${t.sandbox.url}/${tenantId}/v2.0/.well-known/openid-configuration`,
    );
    assert.equal(response.status, 200);
    assert.equal(response.body.token_endpoint, `${t.sandbox.url}/${tenantId}/oauth2/v2.0/token`);
  });
});
