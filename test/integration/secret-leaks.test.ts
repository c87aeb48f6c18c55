import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { loadConfig } from "../../src/config.js";
import { startRuntime, type Runtime } from "../../src/runtime.js";
import { API_KEY_PATTERN } from "../../src/store/api-key-store.js";
import { captureLogger } from "../helpers/log-capture.js";

/** Any RS256 JWT: access tokens and caller tokens (consent links legitimately carry an HS256 state). */
const RS256_JWT = /eyJhbGciOiJSUzI1NiIs[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\./;
const ANY_JWT = /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/;

/**
 * Runs a broad pass over the server — every query and mutation, failures of every kind, faults, refused
 * callers, the consent callback, GraphiQL — with known secrets (the app's client secret, API keys, caller
 * tokens, the access tokens the sandbox issues) and scans every response (headers and body) and every log
 * line, at trace level, for any of them.
 */
describe("no secret in any response or log line", () => {
  let runtime: Runtime;
  const logs = captureLogger("trace");
  const responses: { label: string; text: string }[] = [];
  const secrets: { label: string; value: string }[] = [];
  let adminKey: string;

  const http = async (label: string, path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) => {
    const response = await request(`${runtime.url}${path}`, { method: (init.method ?? "GET") as "GET", headers: init.headers ?? {}, body: init.body ?? null });
    const text = await response.body.text();
    responses.push({ label, text: `${JSON.stringify(response.headers)}\n${text}` });
    return text;
  };
  const gql = (label: string, query: string, variables?: Record<string, unknown>, credential: string | null = adminKey) =>
    http(label, "/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", ...(credential ? { authorization: `Bearer ${credential}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
  const control = async (method: string, path: string, body?: unknown) => {
    const response = await request(`${runtime.sandbox!.url}/_sandbox${path}`, {
      method: method as "POST",
      headers: { "content-type": "application/json" },
      body: body === undefined ? null : JSON.stringify(body),
      dispatcher: runtime.app.dispatcher,
    });
    return response.body.json() as Promise<any>;
  };

  before(async () => {
    runtime = await startRuntime(
      loadConfig({ PORT: "0", LOG_LEVEL: "trace", DATA_DIR: "memory://", AUTH_ANONYMOUS: "false", OPERATION_TIMEOUT_MS: "3000" }),
      { logger: logs.logger },
    );
    secrets.push({ label: "app client secret", value: runtime.sandbox!.clientSecret });
    const created = await runtime.app.store.apiKeys.create({
      name: "scanner admin",
      role: "ADMIN",
      scope: { allTenants: true, tenantIds: [], tenantTags: [] },
      createdBy: "test",
    });
    adminKey = created.key;
    secrets.push({ label: "admin API key", value: adminKey }, { label: "admin API key secret part", value: adminKey.slice(17) });
  });
  after(async () => {
    await runtime.close();
  });

  it("holds for a broad pass over every feature, failures included", async () => {
    const tenants = runtime.sandbox!.tenants;
    const ids = tenants.map((t) => t.id);
    const [first, second, third] = tenants.filter((t) => t.resources.defender && t.consent.granted);

    // Failures of every kind: not consented, missing role, throttled, 5xx, malformed, truncated, hung.
    await control("PUT", `/faults/${second!.id}`, { kind: "throttle", retryAfterSeconds: 7 });
    await control("PUT", `/faults/${third!.id}`, { kind: "malformed-json" });
    await gql("incidents, all tenants", "{ incidents(first: 50) { totalCount edges { node { incidentId incidentName alerts { title } } } tenantOutcomes { tenantId ok error { code message hint consentLink { url } } } } }");
    await control("DELETE", "/faults");
    await control("PUT", `/faults/${second!.id}`, { kind: "server-error", status: 503 });
    await control("PUT", `/faults/${third!.id}`, { kind: "hang", durationMs: 5000 });
    await gql("incidents under 5xx and hang", "query($ids: [ID!]) { incidents(tenantIds: $ids) { tenantOutcomes { tenantId ok error { code message hint } } } }", { ids: [second!.id, third!.id] });
    await control("DELETE", "/faults");
    await gql("token diagnostics, every tenant", "query($ids: [ID!]!) { tokenDiagnostics(tenantIds: $ids) { tenantId ok tid audience issuer appId roles missingRoles error { code message hint } } }", { ids });
    await gql("tenants with tokens", "{ tenants(first: 100) { edges { node { id token { ok roles expiresAt } incidentSummary { total } consentLink { url } } } } }");
    const listed = JSON.parse(await gql("one tenant's incidents", `{ incidents(tenantIds: ["${first!.id}"], first: 1) { edges { node { incidentId } } } }`));
    const incidentId = listed.data.incidents.edges[0].node.incidentId;
    await gql("update", `mutation { updateIncident(tenantId: "${first!.id}", incidentId: "${incidentId}", input: { comment: "checked", status: IN_PROGRESS }) { status comments { comment } } }`);
    await gql("update of a missing incident", `mutation { updateIncident(tenantId: "${first!.id}", incidentId: "999999999", input: { status: RESOLVED }) { status } }`);
    await gql("bad input", `{ incident(tenantId: "not-a-guid", incidentId: "1") { incidentId } }`);
    await gql("consent link", "{ consentLink { url } }");
    await gql("viewer", "{ viewer { id name kind grants { role } } }");

    // Keys: the creation response is the one place a key may appear; it is kept out of the scan.
    const createdText = await gql("create key", 'mutation { createApiKey(input: { name: "scanned", role: READER, allTenants: true }) { key apiKey { id } } }');
    responses.pop();
    const created = JSON.parse(createdText).data.createApiKey;
    secrets.push({ label: "created API key", value: created.key });
    await gql("use created key", "{ viewer { id } }", undefined, created.key);
    await gql("list keys", "{ apiKeys { edges { node { id prefix name createdBy } } } }");
    await gql("revoke key", `mutation { revokeApiKey(id: "${created.apiKey.id}") { id } }`);
    await gql("use revoked key", "{ viewer { id } }", undefined, created.key);
    await gql("audit", "{ auditEvents(first: 500) { edges { node { action actorId actorName detail outcome } } } }");

    // Caller tokens: a valid one, then hostile ones — none may come back or reach the log.
    const minted = await control("POST", "/caller-tokens", { roles: ["Crosswatch.Admin"] });
    secrets.push({ label: "caller token", value: minted.accessToken });
    await gql("with caller token", "{ viewer { name } }", undefined, minted.accessToken);
    const expired = await control("POST", "/caller-tokens", { expiresInSeconds: -3600 });
    secrets.push({ label: "expired caller token", value: expired.accessToken });
    await gql("with expired caller token", "{ viewer { name } }", undefined, expired.accessToken);
    await gql("no credentials", "{ viewer { name } }", undefined, null);

    // The app's own access tokens, as the sandbox issues them.
    const issued = await runtime.sandbox!.mintAccessToken({ tenantId: first!.id, resource: "defender" });
    secrets.push({ label: "an access token's signature", value: issued.split(".")[2]! });

    // Pages and the consent callback with a forged state.
    await http("graphiql", "/graphql", { headers: { accept: "text/html" } });
    await http("healthz", "/healthz");
    await http("forged consent", `/consent/callback?admin_consent=True&tenant=${first!.id}&state=eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.forged`);

    assert.ok(responses.length >= 20, `${responses.length} responses scanned`);
    assert.ok(logs.lines.length > 50, `${logs.lines.length} log lines scanned`);
    for (const { label, text } of responses) {
      for (const secret of secrets) assert.ok(!text.includes(secret.value), `${secret.label} in the response to ${label}`);
      assert.doesNotMatch(text, RS256_JWT, `a JWT in the response to ${label}`);
      assert.doesNotMatch(text, new RegExp(API_KEY_PATTERN.source), `an API key in the response to ${label}`);
      assert.ok(!text.includes("PRIVATE KEY"), `a private key in the response to ${label}`);
      assert.ok(!/\n\s+at .+:\d+:\d+/.test(text), `a stack trace in the response to ${label}`);
      assert.doesNotMatch(text, /\/api\/incidents|\/security\/incidents|oauth2\/(v2\.0\/)?token/, `an upstream URL in the response to ${label}`);
    }
    for (const line of logs.lines) {
      for (const secret of secrets) assert.ok(!line.includes(secret.value), `${secret.label} in a log line: ${line.slice(0, 300)}`);
      assert.doesNotMatch(line, ANY_JWT, `a JWT in a log line: ${line.slice(0, 300)}`);
      assert.doesNotMatch(line, new RegExp(API_KEY_PATTERN.source), `an API key in a log line: ${line.slice(0, 300)}`);
      assert.ok(!line.includes("PRIVATE KEY"), "a private key in a log line");
    }
  });
});
