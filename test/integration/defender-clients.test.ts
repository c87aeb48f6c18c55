import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { createConfidentialClient } from "../../src/auth/msal-client.js";
import { UndiciNetworkClient } from "../../src/auth/network-client.js";
import { TokenAcquisitionError } from "../../src/auth/token-errors.js";
import { createTokenProvider, type AccessToken, type TokenProvider } from "../../src/auth/token-provider.js";
import { UpstreamError, type IncidentsBackendClient, type UpstreamErrorCode } from "../../src/defender/backend-client.js";
import { createIncidentsClients, type IncidentsClientsOptions } from "../../src/defender/clients.js";
import type { Incident } from "../../src/defender/incident.js";
import { parseUpstreamTime } from "../../src/defender/mapping.js";
import type { FaultSpec } from "../../src/sandbox/context.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { captureLogger } from "../helpers/log-capture.js";
import { startTestSandbox, type TestSandbox } from "../helpers/sandbox.js";

/**
 * Both incident clients against a real sandbox over HTTPS, with the real token layer: paging, deltas,
 * the get/patch round trip across backends, every failure mode (per tenant, with the right code) and
 * the rate budget. Upstream economy is checked with the sandbox's counters, not with times.
 */

let t: TestSandbox;
let tokens: TokenProvider;
const logs = captureLogger("debug");
/** Every access token handed to a client, for the log scan at the end. */
const issued = new Set<string>();

function tenant(name: string): SandboxTenant {
  const found = t.sandbox.tenants.find((x) => x.displayName === name);
  if (!found) throw new Error(`no tenant ${name}`);
  return found;
}

/** The tenant's incidents now (activity in other tests adds some). */
function count(target: SandboxTenant): number {
  return t.sandbox.incidents.forTenant(target.id).length;
}

/** Calls the sandbox received for a tenant since the last reset. */
function counted(tenantId: string, endpoint: string): number {
  return (t.sandbox.context.counterSnapshot().byTenant[tenantId] as Record<string, number> | undefined)?.[endpoint] ?? 0;
}

/** Fresh clients (with their own rate budget) over the shared dispatcher and token provider. */
function clients(options: Partial<IncidentsClientsOptions> = {}, sandbox: TestSandbox = t, provider: TokenProvider = tokens) {
  return createIncidentsClients({
    dispatcher: sandbox.dispatcher,
    tokenProvider: provider,
    defenderApiBase: sandbox.sandbox.url,
    graphApiBase: `${sandbox.sandbox.url}/v1.0`,
    logger: logs.logger,
    retry: { baseDelayMs: 20, maxDelayMs: 100 },
    ...options,
  });
}

async function tokenProvider(sandbox: TestSandbox): Promise<TokenProvider> {
  const client = await createConfidentialClient({
    credential: { kind: "secret", clientId: sandbox.sandbox.clientId, clientSecret: sandbox.sandbox.clientSecret },
    authorityHost: sandbox.sandbox.url,
    networkClient: new UndiciNetworkClient(sandbox.dispatcher),
    logger: logs.logger,
  });
  const inner = createTokenProvider({ client, authorityHost: sandbox.sandbox.url, logger: logs.logger });
  return {
    async getToken(tenantId, resource, options) {
      const token: AccessToken = await inner.getToken(tenantId, resource, options);
      issued.add(token.accessToken);
      return token;
    },
    invalidate: (tenantId, resource) => inner.invalidate(tenantId, resource),
    forgetFailures: (tenantId) => inner.forgetFailures(tenantId),
    stats: () => inner.stats(),
  };
}

async function upstreamFailure(promise: Promise<unknown>, code: UpstreamErrorCode): Promise<UpstreamError> {
  const error = await promise.then(
    () => assert.fail(`expected ${code}`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof UpstreamError, String(error));
  assert.equal(error.code, code, error.message);
  return error;
}

function fault(target: SandboxTenant, spec: FaultSpec): void {
  t.sandbox.context.setFault(target.id, spec);
}

/** The fields both backends must agree on. */
function comparable(i: Incident) {
  return {
    incidentId: i.incidentId,
    name: i.name,
    severity: i.severity,
    status: i.status,
    classification: i.classification,
    determination: i.determination,
    assignedTo: i.assignedTo,
    createdTime: i.createdTime.toISOString(),
    lastUpdateTime: i.lastUpdateTime.toISOString(),
    tags: i.tags,
    comments: i.comments.map((c) => c.comment),
    alerts: i.alerts === null ? null : i.alerts.map((a) => [a.alertId, a.severity, a.devices.length, a.entities.map((e) => `${e.type}:${e.displayValue}`)]),
    redirectIncidentId: i.redirectIncidentId,
  };
}

before(async () => {
  t = await startTestSandbox();
  tokens = await tokenProvider(t);
});
after(async () => {
  await t?.close();
});
beforeEach(() => {
  t.sandbox.context.resetCounters(true);
  t.sandbox.context.clearFaults();
});

describe("listing", () => {
  it("lists all 300 incidents of Adventure Works on both backends, in $top-sized pages", async () => {
    const aw = tenant("Adventure Works Cycles");
    const { defender, graph } = clients();
    const legacy = await defender.listIncidents(aw.id);
    const modern = await graph.listIncidents(aw.id);
    const expected = t.sandbox.incidents.forTenant(aw.id).map((r) => String(r.incidentId)).sort();
    assert.equal(expected.length, 300);
    assert.deepEqual(legacy.incidents.map((i) => i.incidentId).sort(), expected);
    assert.deepEqual(modern.incidents.map((i) => i.incidentId).sort(), expected);
    // Graph: six pages of 50, the last without a next link. Defender: three full pages of 100 and then
    // one empty page — with neither nextLink nor a count, only a short page ends a $skip list, and a
    // count that is an exact multiple of 100 has none before the empty one.
    assert.equal(counted(aw.id, "graph.list"), 6);
    assert.equal(modern.calls, 6);
    assert.equal(counted(aw.id, "defender.list"), 4);
    assert.equal(legacy.calls, 4);
    // Same incidents, same values, whichever backend read them — alerts aside: Graph lists never carry
    // them ($expand=alerts fails on large tenants), so they are not loaded (null), which is not "none".
    const byId = new Map(modern.incidents.map((i) => [i.incidentId, i]));
    for (const incident of legacy.incidents) {
      assert.deepEqual(comparable(byId.get(incident.incidentId)!), { ...comparable(incident), alerts: null });
      assert.equal(incident.tenantId, aw.id);
    }
    assert.ok(legacy.incidents.some((i) => i.alerts!.length > 0), "Defender lists carry alerts inline");
    assert.equal(counted(aw.id, "graph.get"), 0, "listing reads no alerts");
  });

  it("lists a tenant without incidents in one call each", async () => {
    const tailspin = tenant("Tailspin Toys");
    const { defender, graph } = clients();
    assert.deepEqual((await defender.listIncidents(tailspin.id)).incidents, []);
    assert.deepEqual((await graph.listIncidents(tailspin.id)).incidents, []);
    assert.equal(counted(tailspin.id, "defender.list"), 1);
    assert.equal(counted(tailspin.id, "graph.list"), 1);
  });

  it("returns only what changed since the watermark after activity", async () => {
    const aw = tenant("Adventure Works Cycles");
    const { defender, graph } = clients();
    const full = await graph.listIncidents(aw.id);
    const watermark = new Date(Math.max(...full.incidents.map((i) => i.lastUpdateTime.getTime())));
    const store = t.sandbox.incidents;
    store.applyActivity(40);
    // Make sure the tenant has changes of both kinds whatever the activity drew.
    const touched = store.forTenant(aw.id)[10]!;
    store.update(aw.id, touched.incidentId, { assignedTo: "delta@adventureworks.example" }, "test");
    store.createIncident(aw.id);
    const expected = store
      .forTenant(aw.id)
      .filter((r) => parseUpstreamTime(r.lastUpdateTime)!.getTime() >= watermark.getTime())
      .map((r) => String(r.incidentId))
      .sort();
    assert.ok(expected.length >= 2 && expected.length < 100, `${expected.length} changed`);
    t.sandbox.context.resetCounters();
    const legacy = await defender.listIncidents(aw.id, { updatedSince: watermark });
    const modern = await graph.listIncidents(aw.id, { updatedSince: watermark });
    assert.deepEqual(legacy.incidents.map((i) => i.incidentId).sort(), expected);
    assert.deepEqual(modern.incidents.map((i) => i.incidentId).sort(), expected);
    assert.ok(legacy.incidents.some((i) => i.incidentId === String(touched.incidentId) && i.assignedTo === "delta@adventureworks.example"));
    assert.equal(counted(aw.id, "defender.list"), 1);
    assert.equal(counted(aw.id, "graph.list"), 1);
  });
});

describe("get and update", () => {
  it("round-trips an update through one backend and reads it through the other", async () => {
    const aw = tenant("Adventure Works Cycles");
    const { defender, graph } = clients();
    const target = t.sandbox.incidents.forTenant(aw.id).find((r) => r.status === "Active" && r.redirectIncidentId === null)!;
    const id = String(target.incidentId);

    const viaDefender = await defender.updateIncident(aw.id, id, {
      status: "IN_PROGRESS",
      assignedTo: "analyst@partner.example",
      classification: "TRUE_POSITIVE",
      determination: "MALWARE",
      tags: ["crosswatch", "p1"],
      comment: "triaged via the Defender API",
    });
    assert.equal(viaDefender.status, "IN_PROGRESS");
    assert.equal(viaDefender.backend, "defender");
    assert.ok(viaDefender.alerts!.length > 0);
    let seen = await graph.getIncident(aw.id, id);
    assert.ok(seen);
    assert.equal(seen.status, "IN_PROGRESS");
    assert.equal(seen.assignedTo, "analyst@partner.example");
    assert.equal(seen.classification, "TRUE_POSITIVE");
    assert.equal(seen.determination, "MALWARE");
    assert.deepEqual(seen.tags, ["crosswatch", "p1"]);
    assert.equal(seen.comments.at(-1)?.comment, "triaged via the Defender API");
    assert.deepEqual(comparable(seen), comparable(viaDefender));

    const viaGraph = await graph.updateIncident(aw.id, id, {
      status: "RESOLVED",
      determination: "COMPROMISED_ACCOUNT",
      tags: ["closed"],
      comment: "resolved via Microsoft Graph",
    });
    assert.equal(viaGraph.status, "RESOLVED");
    assert.equal(viaGraph.determination, "COMPROMISED_ACCOUNT");
    assert.equal(viaGraph.comments.at(-1)?.comment, "resolved via Microsoft Graph");
    assert.ok(viaGraph.alerts!.length > 0, "the read-back expands alerts");
    seen = await defender.getIncident(aw.id, id);
    assert.ok(seen);
    assert.deepEqual(comparable(seen), comparable(viaGraph));

    // A comment alone is one POST and the read-back.
    const commented = await graph.updateIncident(aw.id, id, { comment: "just a note" });
    assert.equal(commented.comments.at(-1)?.comment, "just a note");

    assert.equal(counted(aw.id, "defender.patch"), 1);
    assert.equal(counted(aw.id, "graph.patch"), 1);
    assert.equal(counted(aw.id, "graph.comment"), 2);
    assert.equal(counted(aw.id, "graph.get"), 3);
  });

  it("answers undefined for an unknown incident, NOT_FOUND for updating one, BAD_REQUEST for an empty patch", async () => {
    const aw = tenant("Adventure Works Cycles");
    const { defender, graph } = clients();
    assert.equal(await defender.getIncident(aw.id, "999999999"), undefined);
    assert.equal(await graph.getIncident(aw.id, "999999999"), undefined);
    assert.equal(await defender.getIncident(aw.id, "not-a-number"), undefined);
    assert.equal(counted(aw.id, "defender.get"), 1, "a non-numeric legacy id costs no call");
    await upstreamFailure(defender.updateIncident(aw.id, "999999999", { status: "RESOLVED" }), "NOT_FOUND");
    await upstreamFailure(graph.updateIncident(aw.id, "999999999", { status: "RESOLVED" }), "NOT_FOUND");
    await upstreamFailure(defender.updateIncident(aw.id, "1", {}), "BAD_REQUEST");
    await upstreamFailure(graph.updateIncident(aw.id, "1", { comment: " " }), "BAD_REQUEST");
    assert.equal(counted(aw.id, "defender.patch"), 1);
    assert.equal(counted(aw.id, "graph.patch"), 1);
  });

  it("reads a Graph-only tenant through Graph; its Defender token fails in the token layer", async () => {
    const proseware = tenant("Proseware, Inc.");
    const { defender, graph } = clients();
    assert.equal((await graph.listIncidents(proseware.id)).incidents.length, count(proseware));
    const error = await defender.listIncidents(proseware.id).catch((e: unknown) => e);
    assert.ok(error instanceof TokenAcquisitionError, String(error));
    assert.equal(counted(proseware.id, "defender.list"), 0);
  });
});

describe("failures stay with their tenant and carry the right code", () => {
  /** Runs the failing call next to a healthy tenant's list on the same clients. */
  async function isolated(client: IncidentsBackendClient, failing: Promise<unknown>, code: UpstreamErrorCode): Promise<UpstreamError> {
    const trey = tenant("Trey Research");
    const healthy = client.listIncidents(trey.id);
    const error = await upstreamFailure(failing, code);
    assert.equal((await healthy).incidents.length, count(trey));
    return error;
  }

  it("429 with a Retry-After that fits the deadline: waits and retries", async () => {
    const contoso = tenant("Contoso Ltd");
    const { defender, graph } = clients();
    fault(contoso, { kind: "throttle", endpoints: ["defender.list"], times: 1, retryAfterSeconds: 1 });
    fault(contoso, { kind: "throttle", endpoints: ["graph.get"], times: 1, retryAfterSeconds: 1 });
    const listed = await defender.listIncidents(contoso.id);
    const pages = Math.floor(count(contoso) / 100) + 1;
    assert.equal(listed.incidents.length, count(contoso));
    assert.equal(counted(contoso.id, "defender.list"), pages + 1); // one page sent twice
    assert.equal(listed.calls, pages + 1);
    const id = String(t.sandbox.incidents.forTenant(contoso.id)[0]!.incidentId);
    assert.ok(await graph.getIncident(contoso.id, id));
    assert.equal(counted(contoso.id, "graph.get"), 2);
    assert.equal(counted(contoso.id, "throttled"), 2);
  });

  it("429 with a Retry-After past the deadline: THROTTLED at once, and the budget holds the tenant", async () => {
    const contoso = tenant("Contoso Ltd");
    const { defender } = clients();
    fault(contoso, { kind: "throttle", endpoints: ["defender.list"], times: 1, retryAfterSeconds: 30 });
    const error = await isolated(defender, defender.listIncidents(contoso.id, { deadline: Date.now() + 5_000 }), "THROTTLED");
    assert.equal(error.retryAfterSeconds, 30);
    assert.equal(error.details.status, 429);
    assert.equal(error.details.backend, "defender");
    assert.equal(error.details.tenantId, contoso.id);
    assert.ok(error.details.upstreamRequestId, "the Defender error target is kept");
    assert.equal(counted(contoso.id, "defender.list"), 1);
    // The fault is used up, but the budget remembers the Retry-After: refused without a call.
    const again = await upstreamFailure(defender.listIncidents(contoso.id, { deadline: Date.now() + 5_000 }), "THROTTLED");
    assert.ok(again.retryAfterSeconds! > 20);
    assert.equal(again.details.status, undefined);
    assert.equal(counted(contoso.id, "defender.list"), 1);
  });

  it("503 on reads: retried with back-off, then UPSTREAM_UNAVAILABLE", async () => {
    const contoso = tenant("Contoso Ltd");
    const { defender, graph } = clients();
    fault(contoso, { kind: "server-error", status: 503, endpoints: ["defender.list", "graph.list"] });
    const error = await isolated(defender, defender.listIncidents(contoso.id), "UPSTREAM_UNAVAILABLE");
    assert.equal(error.details.status, 503);
    await upstreamFailure(graph.listIncidents(contoso.id), "UPSTREAM_UNAVAILABLE");
    assert.equal(counted(contoso.id, "defender.list"), 3);
    assert.equal(counted(contoso.id, "graph.list"), 3);
  });

  it("a transient 502 is recovered from", async () => {
    const contoso = tenant("Contoso Ltd");
    const { graph } = clients();
    fault(contoso, { kind: "server-error", status: 502, endpoints: ["graph.list"], times: 1 });
    assert.equal((await graph.listIncidents(contoso.id)).incidents.length, count(contoso));
    assert.equal(counted(contoso.id, "graph.list"), Math.ceil(count(contoso) / 50) + 1);
  });

  it("503 on writes: never retried", async () => {
    const contoso = tenant("Contoso Ltd");
    const { defender, graph } = clients();
    const record = t.sandbox.incidents.forTenant(contoso.id).at(-1)!;
    const before = record.lastUpdateTime;
    fault(contoso, { kind: "server-error", status: 503, endpoints: ["defender.patch", "graph.patch", "graph.comment"] });
    await upstreamFailure(defender.updateIncident(contoso.id, String(record.incidentId), { status: "IN_PROGRESS", comment: "x" }), "UPSTREAM_UNAVAILABLE");
    await upstreamFailure(graph.updateIncident(contoso.id, String(record.incidentId), { status: "IN_PROGRESS" }), "UPSTREAM_UNAVAILABLE");
    await upstreamFailure(graph.updateIncident(contoso.id, String(record.incidentId), { comment: "y" }), "UPSTREAM_UNAVAILABLE");
    assert.equal(counted(contoso.id, "defender.patch"), 1);
    assert.equal(counted(contoso.id, "graph.patch"), 1);
    assert.equal(counted(contoso.id, "graph.comment"), 1);
    assert.equal(counted(contoso.id, "graph.get"), 0);
    assert.equal(record.lastUpdateTime, before);
  });

  it("a write is not re-sent after a connection reset either", async () => {
    const contoso = tenant("Contoso Ltd");
    const { defender } = clients();
    const id = String(t.sandbox.incidents.forTenant(contoso.id).at(-2)!.incidentId);
    fault(contoso, { kind: "reset", endpoints: ["defender.patch"], times: 1 });
    await upstreamFailure(defender.updateIncident(contoso.id, id, { tags: ["x"] }), "UPSTREAM_UNAVAILABLE");
    assert.equal(counted(contoso.id, "defender.patch"), 1);
  });

  it("resets on reads are retried", async () => {
    const contoso = tenant("Contoso Ltd");
    const { defender } = clients();
    const id = String(t.sandbox.incidents.forTenant(contoso.id)[3]!.incidentId);
    fault(contoso, { kind: "reset", endpoints: ["defender.get"], times: 1 });
    assert.ok(await defender.getIncident(contoso.id, id));
    assert.equal(counted(contoso.id, "defender.get"), 2);
    fault(contoso, { kind: "reset", endpoints: ["defender.get"] });
    await upstreamFailure(defender.getIncident(contoso.id, id), "UPSTREAM_UNAVAILABLE");
    assert.equal(counted(contoso.id, "defender.get"), 5);
  });

  it("a hanging upstream: UPSTREAM_TIMEOUT at the deadline, one call", async () => {
    const contoso = tenant("Contoso Ltd");
    const { graph, defender } = clients();
    fault(contoso, { kind: "hang", endpoints: ["graph.list", "defender.list"] });
    // The deadline leaves ample time to send the call (token cached, connection open); the hang then holds it
    // until the deadline. No wall-clock assertion: that the call ends at all, as UPSTREAM_TIMEOUT after one
    // call, shows the deadline ended it.
    await isolated(graph, graph.listIncidents(contoso.id, { deadline: Date.now() + 3_000 }), "UPSTREAM_TIMEOUT");
    // The operation's signal aborts once the sandbox holds the call (its counter says so), not after a guess.
    const controller = new AbortController();
    const listing = upstreamFailure(defender.listIncidents(contoso.id, { signal: controller.signal }), "UPSTREAM_TIMEOUT");
    while (counted(contoso.id, "defender.list") < 1) await new Promise((resolve) => setImmediate(resolve));
    controller.abort(new Error("the GraphQL operation timed out"));
    await listing;
    assert.equal(counted(contoso.id, "graph.list"), 1);
    assert.equal(counted(contoso.id, "defender.list"), 1);
  });

  it("an attempt that hangs within a longer deadline is retried", async () => {
    const contoso = tenant("Contoso Ltd");
    // The attempt bound must also cover the retry's ordinary answer on a loaded machine: 2 s, not a few
    // hundred ms (else the retry times out too and the count is 3).
    const { defender } = clients({ timeouts: { attemptMs: 2_000 } });
    const id = String(t.sandbox.incidents.forTenant(contoso.id)[5]!.incidentId);
    fault(contoso, { kind: "hang", endpoints: ["defender.get"], times: 1 });
    assert.ok(await defender.getIncident(contoso.id, id, { deadline: Date.now() + 30_000 }));
    assert.equal(counted(contoso.id, "defender.get"), 2);
  });

  it("a body that stalls: UPSTREAM_TIMEOUT after the retries", async () => {
    const contoso = tenant("Contoso Ltd");
    // undici's body timer ticks about every 500 ms: gaps of 2 s against a 500 ms timeout.
    const { defender } = clients({ timeouts: { bodyMs: 500 }, retry: { maxAttempts: 2, baseDelayMs: 20 } });
    const id = String(t.sandbox.incidents.forTenant(contoso.id)[6]!.incidentId);
    fault(contoso, { kind: "slow-body", durationMs: 20_000, endpoints: ["defender.get"] });
    await upstreamFailure(defender.getIncident(contoso.id, id), "UPSTREAM_TIMEOUT");
    assert.equal(counted(contoso.id, "defender.get"), 2);
  });

  it("malformed and truncated JSON: UPSTREAM_BAD_RESPONSE, not retried", async () => {
    const contoso = tenant("Contoso Ltd");
    const { defender, graph } = clients();
    fault(contoso, { kind: "malformed-json", endpoints: ["defender.list"], times: 1 });
    fault(contoso, { kind: "truncated-json", endpoints: ["graph.list"], times: 1 });
    const malformed = await isolated(defender, defender.listIncidents(contoso.id), "UPSTREAM_BAD_RESPONSE");
    assert.ok(malformed.details.bodyExcerpt && malformed.details.bodyExcerpt.length <= 200);
    await isolated(graph, graph.listIncidents(contoso.id), "UPSTREAM_BAD_RESPONSE");
    assert.equal(counted(contoso.id, "defender.list"), 1);
    assert.equal(counted(contoso.id, "graph.list"), 1);
  });

  it("Coho Winery (no incident role): MISSING_ROLE on both backends", async () => {
    const coho = tenant("Coho Winery");
    const { defender, graph } = clients();
    const legacy = await isolated(defender, defender.listIncidents(coho.id), "MISSING_ROLE");
    assert.equal(legacy.details.status, 403);
    const modern = await upstreamFailure(graph.listIncidents(coho.id), "MISSING_ROLE");
    assert.ok(modern.details.upstreamRequestId, "Graph's request-id is kept");
    assert.match(modern.details.bodyExcerpt ?? "", /Missing application roles/);
    assert.equal(counted(coho.id, "defender.list"), 1);
    assert.equal(counted(coho.id, "graph.list"), 1);
  });

  it("Alpine Ski House (not consented): the token layer's CONSENT_REQUIRED, no API call", async () => {
    const alpine = tenant("Alpine Ski House");
    const { defender, graph } = clients();
    for (const client of [defender, graph]) {
      const error = await client.listIncidents(alpine.id).catch((e: unknown) => e);
      assert.ok(error instanceof TokenAcquisitionError, String(error));
      assert.equal(error.code, "CONSENT_REQUIRED");
    }
    assert.equal(counted(alpine.id, "defender.list"), 0);
    assert.equal(counted(alpine.id, "graph.list"), 0);
  });

  it("consent revoked after a token was cached: 401, token invalidated, then CONSENT_REQUIRED", async () => {
    const litware = tenant("Litware, Inc.");
    const { defender } = clients();
    assert.equal((await defender.listIncidents(litware.id)).incidents.length, count(litware));
    const revoked = await t.call("POST", `/_sandbox/tenants/${litware.id}/revoke-consent`);
    assert.equal(revoked.status, 200, revoked.text);
    try {
      t.sandbox.context.resetCounters();
      const error = await defender.listIncidents(litware.id).catch((e: unknown) => e);
      assert.ok(error instanceof TokenAcquisitionError, String(error));
      assert.equal(error.code, "CONSENT_REQUIRED");
      assert.equal(counted(litware.id, "defender.list"), 1, "the cached token was tried once");
      assert.equal(counted(litware.id, "token"), 1, "then a new token was asked for, past every cache");
    } finally {
      await t.call("POST", `/_sandbox/tenants/${litware.id}/grant-consent`, { json: {} });
    }
    assert.equal((await defender.listIncidents(litware.id)).incidents.length, count(litware));
  });

  it("a token the API keeps refusing: UpstreamError CONSENT_REQUIRED after one renewal, no token in the error", async () => {
    const trey = tenant("Trey Research");
    const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const bogus = `${b64({ alg: "RS256", typ: "JWT" })}.${b64({ tid: trey.id, aud: "https://api.security.microsoft.com" })}.c2lnbmF0dXJl`;
    const invalidated: string[] = [];
    const fake: TokenProvider = {
      getToken: async () => ({ accessToken: bogus, expiresOn: new Date(Date.now() + 3_600_000), fromCache: true, claims: {} as AccessToken["claims"], fingerprint: "bogus" }),
      invalidate: (tenantId, resource) => void invalidated.push(`${tenantId}/${resource}`),
      forgetFailures: () => undefined,
      stats: () => tokens.stats(),
    };
    const { defender } = clients({}, t, fake);
    const error = await upstreamFailure(defender.listIncidents(trey.id), "CONSENT_REQUIRED");
    assert.equal(error.details.status, 401);
    assert.equal(counted(trey.id, "defender.list"), 2);
    assert.deepEqual(invalidated, [`${trey.id}/defender`, `${trey.id}/defender`]);
    const text = `${error.message} ${JSON.stringify(error.details)}`;
    assert.ok(!text.includes(bogus) && !text.includes(bogus.split(".")[1]!), text);
  });
});

describe("rate budget against the sandbox's limiter", () => {
  let small: TestSandbox;
  let smallTokens: TokenProvider;
  const LIMIT = { limit: 20, windowSeconds: 2 };
  /** The Defender API's overall quota (50/min) is out of the way here: these tests are about one method's window. */
  const API_WIDE = [{ limit: 10_000, windowSeconds: 60 }];

  before(async () => {
    small = await startTestSandbox({ rateLimits: { "defender.get": [LIMIT], "defender.api": API_WIDE } });
    smallTokens = await tokenProvider(small);
  });
  after(async () => {
    await small?.close();
  });

  const burst = async (options: Partial<IncidentsClientsOptions>, deadlineMs: number) => {
    small.sandbox.context.resetCounters(true);
    const aw = small.sandbox.tenants.find((x) => x.displayName === "Adventure Works Cycles")!;
    const ids = small.sandbox.incidents.forTenant(aw.id).slice(0, 60).map((r) => String(r.incidentId));
    // The token is fetched (and cached by the provider) before the burst, by a client of its own.
    await clients({}, small, smallTokens).defender.getIncident(aw.id, ids[0]!);
    small.sandbox.context.resetCounters(true);
    const { defender } = clients(options, small, smallTokens);
    const deadline = Date.now() + deadlineMs;
    const results = await Promise.allSettled(ids.map((id) => defender.getIncident(aw.id, id, { deadline })));
    const snapshot = small.sandbox.context.counterSnapshot();
    return { results, sent: snapshot.byTenant[aw.id]?.["defender.get"] ?? 0, throttled: snapshot.throttled };
  };

  it("a 60-call burst for one tenant never meets a 429 when the budget equals the upstream limit", async () => {
    // The margin absorbs how much later than its slot a call reaches the sandbox's own window: generous, as
    // a loaded machine delays some calls more than others.
    const { results, sent, throttled } = await burst({ budgets: { limits: { "defender.get": [LIMIT], "defender.api": API_WIDE }, safetyMarginMs: 1_000 } }, 30_000);
    assert.ok(results.every((r) => r.status === "fulfilled" && r.value !== undefined));
    assert.equal(sent, 60);
    assert.equal(throttled, 0);
  });

  it("calls whose slot comes after the deadline are refused with THROTTLED without being sent", async () => {
    const { results, sent, throttled } = await burst({ budgets: { limits: { "defender.get": [LIMIT], "defender.api": API_WIDE }, safetyMarginMs: 250 } }, 1_000);
    const refused = results.filter((r) => r.status === "rejected");
    assert.equal(sent, 20);
    assert.equal(refused.length, 40);
    for (const r of refused) {
      const reason = (r as PromiseRejectedResult).reason as UpstreamError;
      assert.equal(reason.code, "THROTTLED");
      assert.ok(reason.retryAfterSeconds! >= 1);
    }
    assert.equal(throttled, 0);
  });

  it("without the budget the same burst is throttled upstream (the control)", async () => {
    const { throttled } = await burst({ budgets: { limits: { "defender.get": [{ limit: 10_000, windowSeconds: 1 }], "defender.api": API_WIDE } }, retry: { maxThrottleRetries: 0 } }, 5_000);
    assert.ok(throttled >= 40, `${throttled} throttled`);
  });
});

describe("logs", () => {
  it("never contain an access token", () => {
    assert.ok(issued.size > 0);
    assert.ok(logs.lines.length > 0);
    for (const line of logs.lines) {
      for (const token of issued) assert.ok(!line.includes(token), "a token reached the log");
    }
  });
});
