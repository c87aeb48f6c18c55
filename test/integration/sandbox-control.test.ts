import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startTestSandbox, type TestSandbox } from "../helpers/sandbox.js";

/** The /_sandbox control API over real HTTPS: what tests, benchmarks and people use to steer the sandbox. */
describe("sandbox control API", () => {
  let t: TestSandbox;
  const tokenForm = (_tenant: string) => ({
    grant_type: "client_credentials",
    client_id: t.sandbox.clientId,
    client_secret: t.sandbox.clientSecret,
    scope: "https://api.security.microsoft.com/.default",
  });

  before(async () => {
    t = await startTestSandbox({ seed: 42 });
  });
  after(async () => {
    await t.close();
  });

  it("describes itself and its tenants without any secret", async () => {
    const info = await t.call("GET", "/_sandbox");
    assert.equal(info.status, 200);
    assert.equal(info.json.clientId, t.sandbox.clientId);
    assert.equal(info.json.tenantCount, 13);
    const tenants = await t.call("GET", "/_sandbox/tenants");
    assert.equal(tenants.json.value.length, 13);
    assert.equal(tenants.json.value[0].id, t.sandbox.tenants[0]!.id);
    for (const text of [info.text, tenants.text]) assert.ok(!text.includes(t.sandbox.clientSecret));
  });

  it("counts calls per tenant and endpoint, and resets", async () => {
    await t.call("POST", "/_sandbox/counters/reset");
    const [a, b] = t.sandbox.tenants;
    await t.call("POST", `/${a!.id}/oauth2/v2.0/token`, { form: tokenForm(a!.id) });
    await t.call("POST", `/${a!.id}/oauth2/v2.0/token`, { form: tokenForm(a!.id) });
    await t.call("GET", `/${b!.id}/v2.0/.well-known/openid-configuration`);
    const counters = await t.call("GET", "/_sandbox/counters");
    assert.equal(counters.json.total, 3);
    assert.equal(counters.json.byTenant[a!.id].token, 2);
    assert.equal(counters.json.byTenant[b!.id].discovery, 1);
    assert.equal(counters.json.byEndpoint.token, 2);
    const reset = await t.call("POST", "/_sandbox/counters/reset");
    assert.equal(reset.json.total, 0);
    assert.deepEqual(reset.json.byTenant, {});
  });

  it("revokes and grants consent, which the token endpoint obeys at once", async () => {
    const tenant = t.sandbox.tenants[1]!;
    const revoked = await t.call("POST", `/_sandbox/tenants/${tenant.id}/revoke-consent`);
    assert.equal(revoked.json.consent.granted, false);
    const refused = await t.call("POST", `/${tenant.id}/oauth2/v2.0/token`, { form: tokenForm(tenant.id) });
    assert.equal(refused.status, 400);
    assert.deepEqual(refused.json.error_codes, [700016]);
    const granted = await t.call("POST", `/_sandbox/tenants/${tenant.domain}/grant-consent`, { json: {} });
    assert.equal(granted.json.consent.granted, true);
    const ok = await t.call("POST", `/${tenant.id}/oauth2/v2.0/token`, { form: tokenForm(tenant.id) });
    assert.equal(ok.status, 200);
  });

  it("injects a fault for a number of calls, then clears itself", async () => {
    const tenant = t.sandbox.tenants[2]!;
    const set = await t.call("PUT", `/_sandbox/faults/${tenant.id}`, {
      json: { kind: "server-error", endpoints: ["token"], times: 2, status: 500 },
    });
    assert.equal(set.status, 200);
    assert.equal(set.json[tenant.id][0].kind, "server-error");
    for (let i = 0; i < 2; i++) {
      const failed = await t.call("POST", `/${tenant.id}/oauth2/v2.0/token`, { form: tokenForm(tenant.id) });
      assert.equal(failed.status, 500);
    }
    const ok = await t.call("POST", `/${tenant.id}/oauth2/v2.0/token`, { form: tokenForm(tenant.id) });
    assert.equal(ok.status, 200);
    assert.deepEqual((await t.call("GET", "/_sandbox/faults")).json, {});
  });

  it("throttles with Retry-After through a throttle fault and counts it", async () => {
    const tenant = t.sandbox.tenants[3]!;
    await t.call("POST", "/_sandbox/counters/reset");
    await t.call("PUT", `/_sandbox/faults/${tenant.id}`, {
      json: { kind: "throttle", endpoints: ["token"], retryAfterSeconds: 7 },
    });
    const throttled = await t.call("POST", `/${tenant.id}/oauth2/v2.0/token`, { form: tokenForm(tenant.id) });
    assert.equal(throttled.status, 429);
    assert.equal(throttled.headers["retry-after"], "7");
    const cleared = await t.call("DELETE", `/_sandbox/faults/${tenant.id}`);
    assert.deepEqual(cleared.json, {});
    const counters = (await t.call("GET", "/_sandbox/counters")).json;
    assert.equal(counters.throttled, 1);
    assert.equal(counters.byTenant[tenant.id].throttled, 1);
  });

  it("refuses malformed control requests with a 400 and a message, and unknown tenants with 404", async () => {
    const badKind = await t.call("PUT", `/_sandbox/faults/${t.sandbox.tenants[0]!.id}`, { json: { kind: "meteor" } });
    assert.equal(badKind.status, 400);
    assert.equal(badKind.json.error.code, "BadRequest");
    assert.match(badKind.json.error.message, /kind/);
    const extra = await t.call("PUT", `/_sandbox/faults/${t.sandbox.tenants[0]!.id}`, {
      json: { kind: "hang", surprise: 1 },
    });
    assert.equal(extra.status, 400);
    const notJson = await t.call("PUT", "/_sandbox/latency", { body: "{", headers: { "content-type": "application/json" } });
    assert.equal(notJson.status, 400);
    assert.equal(notJson.json.error.code, "BadRequest");
    const unknown = await t.call("PUT", "/_sandbox/faults/00000000-0000-0000-0000-000000000000", { json: { kind: "hang" } });
    assert.equal(unknown.status, 404);
    const noRoute = await t.call("GET", "/_sandbox/nothing-here");
    assert.equal(noRoute.status, 404);
  });

  it("adds latency to emulated calls but not to control calls", async () => {
    const tenant = t.sandbox.tenants[0]!;
    const set = await t.call("PUT", "/_sandbox/latency", { json: { fixedMs: 250 } });
    assert.deepEqual(set.json, { latency: { fixedMs: 250 } });
    const started = Date.now();
    await t.call("GET", `/${tenant.id}/v2.0/.well-known/openid-configuration`);
    assert.ok(Date.now() - started >= 240, "the emulated call waited for its latency");
    await t.call("DELETE", "/_sandbox/latency");
    assert.deepEqual((await t.call("GET", "/_sandbox/latency")).json, { latency: null });
  });

  it("advances the sandbox clock", async () => {
    const before = Date.parse((await t.call("GET", "/_sandbox")).json.clock);
    const advanced = await t.call("POST", "/_sandbox/clock", { json: { advanceSeconds: 3600 } });
    assert.ok(Date.parse(advanced.json.clock) - before >= 3600_000);
    const refused = await t.call("POST", "/_sandbox/clock", { json: { advanceSeconds: -5 } });
    assert.equal(refused.status, 400);
  });

  it("expires the app's secrets, after which tokens answer AADSTS7000222", async () => {
    const tenant = t.sandbox.tenants[4]!;
    const expired = await t.call("POST", "/_sandbox/app/secrets/expire");
    assert.equal(expired.json.expired, 1);
    const refused = await t.call("POST", `/${tenant.id}/oauth2/v2.0/token`, { form: tokenForm(tenant.id) });
    assert.equal(refused.status, 401);
    assert.deepEqual(refused.json.error_codes, [7000222]);
  });
});
