import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ServerError, type AuthenticationResult, type ClientCredentialRequest } from "@azure/msal-node";
import { SignJWT } from "jose";
import { TokenAcquisitionError } from "../../../src/auth/token-errors.js";
import { MsalTokenProvider, type ClientCredentialClient } from "../../../src/auth/token-provider.js";

const HOST = "https://login.microsoftonline.com";
const TENANT = "0b9c3c7e-5b8e-4a43-9e0e-1f2a3b4c5d6e";
const OTHER = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
const KEY = new TextEncoder().encode("fake-signing-key-for-unverified-tokens-000");
const HOUR = 3_600_000;

let serial = 0;
async function jwt(tid: string, iatMs: number, lifetimeMs = HOUR): Promise<string> {
  const iat = Math.floor(iatMs / 1000);
  return new SignJWT({
    tid,
    aud: "https://api.security.microsoft.com",
    iss: `https://sts.windows.net/${tid}/`,
    appid: "5c1e7d2a-9b3f-4c6e-8a1d-0f2b4c6d8e10",
    oid: "33333333-3333-3333-3333-333333333333",
    roles: ["Incident.ReadWrite.All"],
    ver: "1.0",
    iat,
    nbf: iat,
    exp: iat + lifetimeMs / 1000,
    uti: String(++serial),
  })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .sign(KEY);
}

function result(accessToken: string, fromCache: boolean, expiresOn: Date | null): AuthenticationResult {
  return { accessToken, fromCache, expiresOn, tokenType: "Bearer", correlationId: "c" } as unknown as AuthenticationResult;
}

/**
 * A stand-in for MSAL's confidential client: records every request and answers with what the test
 * scripts (`respond`), by default a fresh token for the tenant in the authority.
 */
class FakeClient implements ClientCredentialClient {
  readonly requests: ClientCredentialRequest[] = [];
  respond: (request: ClientCredentialRequest, tenant: string) => Promise<AuthenticationResult | null> = async (_r, tenant) =>
    result(await jwt(tenant, Date.now()), false, new Date(Date.now() + HOUR));

  acquireTokenByClientCredential(request: ClientCredentialRequest): Promise<AuthenticationResult | null> {
    this.requests.push(request);
    const tenant = new URL(request.authority!).pathname.slice(1);
    return this.respond(request, tenant);
  }
}

function deferred<T>(): { promise: Promise<T>; resolve(value: T): void; reject(error: unknown): void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function setup(options: { clock?: { now: number } } = {}) {
  const client = new FakeClient();
  const clock = options.clock;
  const provider = new MsalTokenProvider({
    client,
    authorityHost: HOST,
    ...(clock ? { now: () => clock.now } : {}),
  });
  return { client, provider };
}

describe("MsalTokenProvider (fake MSAL client)", () => {
  it("asks for the tenant's authority and the resource's .default scope, then serves from memory", async () => {
    const { client, provider } = setup();
    const first = await provider.getToken(TENANT.toUpperCase(), "defender");
    assert.equal(first.fromCache, false);
    assert.equal(first.claims!.tid, TENANT);
    assert.match(first.fingerprint, /^[0-9a-f]{12}$/);
    assert.equal(client.requests.length, 1);
    assert.equal(client.requests[0]!.authority, `${HOST}/${TENANT}`);
    assert.deepEqual(client.requests[0]!.scopes, ["https://api.security.microsoft.com/.default"]);
    assert.equal(client.requests[0]!.skipCache, false);

    const second = await provider.getToken(TENANT, "defender");
    assert.equal(second.fromCache, true);
    assert.equal(second.accessToken, first.accessToken);
    assert.equal(client.requests.length, 1);

    await provider.getToken(TENANT, "graph");
    assert.deepEqual(client.requests[1]!.scopes, ["https://graph.microsoft.com/.default"]);
    assert.deepEqual(provider.stats(), {
      requests: 3,
      cacheHits: 1,
      coalesced: 0,
      acquisitions: 2,
      tokensIssued: 2,
      failures: 0,
      backoffRefusals: 0,
      cachedTokens: 2,
    });
  });

  it("takes resource URIs from options (sovereign clouds)", async () => {
    const client = new FakeClient();
    const provider = new MsalTokenProvider({
      client,
      authorityHost: "https://login.microsoftonline.us/",
      resourceUris: { defender: "https://api-gov.security.microsoft.us/", graph: "https://graph.microsoft.us" },
    });
    await provider.getToken(TENANT, "defender");
    await provider.getToken(TENANT, "graph");
    assert.equal(client.requests[0]!.authority, `https://login.microsoftonline.us/${TENANT}`);
    assert.deepEqual(client.requests.map((r) => r.scopes?.[0]), ["https://api-gov.security.microsoft.us/.default", "https://graph.microsoft.us/.default"]);
  });

  it("refuses a token issued for another tenant with TENANT_MISMATCH, and skips MSAL's cache next time", async () => {
    const { client, provider } = setup();
    client.respond = async () => result(await jwt(OTHER, Date.now()), false, new Date(Date.now() + HOUR));
    const error = await provider.getToken(TENANT, "defender").catch((e: unknown) => e);
    assert.ok(error instanceof TokenAcquisitionError);
    assert.equal(error.code, "TENANT_MISMATCH");
    assert.equal(error.tenantId, TENANT);
    assert.match(error.message, new RegExp(OTHER));
    assert.equal(provider.stats().cachedTokens, 0, "never kept");

    client.respond = async (_r, tenant) => result(await jwt(tenant, Date.now()), false, new Date(Date.now() + HOUR));
    const token = await provider.getToken(TENANT, "defender");
    assert.equal(token.claims!.tid, TENANT);
    assert.equal(client.requests[1]!.skipCache, true, "the foreign token MSAL cached is bypassed");
  });

  it("makes one call for concurrent needs of one tenant and resource", async () => {
    const { client, provider } = setup();
    const gate = deferred<void>();
    client.respond = async (_r, tenant) => {
      await gate.promise;
      return result(await jwt(tenant, Date.now()), false, new Date(Date.now() + HOUR));
    };
    const waits = Array.from({ length: 10 }, () => provider.getToken(TENANT, "defender"));
    const graph = provider.getToken(TENANT, "graph");
    gate.resolve();
    const tokens = await Promise.all(waits);
    await graph;
    assert.equal(client.requests.length, 2, "one per (tenant, resource)");
    assert.equal(new Set(tokens.map((t) => t.accessToken)).size, 1);
    assert.equal(provider.stats().coalesced, 9);
  });

  it("lets a caller stop waiting without cancelling the shared call", async () => {
    const { client, provider } = setup();
    const gate = deferred<void>();
    client.respond = async (_r, tenant) => {
      await gate.promise;
      return result(await jwt(tenant, Date.now()), false, new Date(Date.now() + HOUR));
    };
    const controller = new AbortController();
    const impatient = provider.getToken(TENANT, "defender", { signal: controller.signal });
    const patient = provider.getToken(TENANT, "defender");
    controller.abort(new DOMException("deadline", "TimeoutError"));
    await assert.rejects(impatient, (e: unknown) => e instanceof DOMException && e.name === "TimeoutError");
    gate.resolve();
    assert.equal((await patient).claims!.tid, TENANT);
    assert.equal(client.requests.length, 1);
    await assert.rejects(provider.getToken(TENANT, "defender", { signal: AbortSignal.abort() }), { name: "AbortError" });
  });

  it("renews on the first call once less than five minutes are left, not before", async () => {
    const clock = { now: Date.now() };
    const { client, provider } = setup({ clock });
    const first = await provider.getToken(TENANT, "defender");
    clock.now += HOUR - 6 * 60_000;
    assert.equal((await provider.getToken(TENANT, "defender")).fromCache, true);
    assert.equal(client.requests.length, 1);
    clock.now += 2 * 60_000;
    const renewed = await provider.getToken(TENANT, "defender");
    assert.equal(renewed.fromCache, false);
    assert.notEqual(renewed.accessToken, first.accessToken);
    assert.equal(client.requests.length, 2);
    assert.equal(client.requests[1]!.skipCache, true, "MSAL's copy is the same old token");
  });

  it("asks past MSAL's cache when MSAL hands over a token this provider considers due", async () => {
    const clock = { now: Date.now() };
    const { client, provider } = setup({ clock });
    const old = await jwt(TENANT, clock.now - HOUR + 2 * 60_000);
    client.respond = async (request, tenant) =>
      request.skipCache
        ? result(await jwt(tenant, clock.now), false, new Date(Date.now() + HOUR))
        : result(old, true, new Date(Date.now() + 2 * 60_000));
    const token = await provider.getToken(TENANT, "defender");
    assert.notEqual(token.accessToken, old);
    assert.deepEqual(client.requests.map((r) => r.skipCache), [false, true]);
  });

  it("does not remember ordinary failures", async () => {
    const { client, provider } = setup();
    client.respond = async () => {
      throw new ServerError("unauthorized_client", "c", "AADSTS700016: not found", "", 700016 as unknown as string, 400);
    };
    for (let i = 0; i < 2; i++) {
      await assert.rejects(provider.getToken(TENANT, "defender"), { code: "CONSENT_REQUIRED" });
    }
    assert.equal(client.requests.length, 2);
    client.respond = async () => result("", false, null);
    await assert.rejects(provider.getToken(TENANT, "defender"), { code: "TOKEN_ENDPOINT_UNAVAILABLE" });
    client.respond = async () => null;
    await assert.rejects(provider.getToken(TENANT, "defender"), { code: "TOKEN_ENDPOINT_UNAVAILABLE" });
    assert.equal(provider.stats().failures, 4);
  });

  it("uses a token that is not a readable JWT: no claims, expiry from MSAL's expiresOn, no failure", async () => {
    const clock = { now: 50_000_000 };
    const { client, provider } = setup({ clock });
    const opaque = "EwBwA8l6BAAUO9chh8cJscQLmU+LSWpbnr0vmwwAAdefinitely.not-a-jwt";
    client.respond = async () => result(opaque, false, new Date(Date.now() + HOUR));
    const token = await provider.getToken(TENANT, "defender");
    assert.equal(token.accessToken, opaque);
    assert.equal(token.claims, undefined);
    // MSAL's expiresOn is on the real clock: its remaining life (less the real time between the fake's answer and
    // the provider reading it, a few ms, bounded loosely here for a loaded machine) moves to the provider's clock.
    const left = token.expiresOn.getTime() - clock.now;
    assert.ok(left <= HOUR && left > HOUR - 30_000, `remaining life ${left} ms`);
    // Held like any other token until the refresh margin.
    clock.now += HOUR - 6 * 60_000;
    assert.equal((await provider.getToken(TENANT, "defender")).fromCache, true);
    assert.equal(client.requests.length, 1);
    clock.now += 2 * 60_000;
    await provider.getToken(TENANT, "defender");
    assert.equal(client.requests.length, 2);
    assert.equal(provider.stats().failures, 0);
  });

  it("gives an opaque token without expiresOn a short life instead of trusting it for an hour", async () => {
    const clock = { now: 60_000_000 };
    const { client, provider } = setup({ clock });
    client.respond = async () => result("opaque-token-without-expiry", false, null);
    const token = await provider.getToken(TENANT, "defender");
    assert.equal(token.claims, undefined);
    // Five minutes' refresh margin plus one: renewed on the first call after a minute.
    assert.equal(token.expiresOn.getTime(), clock.now + 6 * 60_000);
    clock.now += 61_000;
    await provider.getToken(TENANT, "defender");
    assert.equal(client.requests.length, 2);
  });

  it("refuses locally while MSAL backs off after a 429, then tries again", async () => {
    const clock = { now: Date.now() };
    const { client, provider } = setup({ clock });
    client.respond = async () => {
      throw new ServerError("temporarily_unavailable", "c", "AADSTS90055: too many", "", 90055 as unknown as string, 429);
    };
    const first = await provider.getToken(TENANT, "graph").catch((e: unknown) => e);
    assert.ok(first instanceof TokenAcquisitionError);
    assert.equal(first.code, "THROTTLED");
    assert.equal(first.retryAfterSeconds, 60, "MSAL's default without Retry-After");
    clock.now += 45_000;
    const refused = await provider.getToken(TENANT, "graph").catch((e: unknown) => e);
    assert.ok(refused instanceof TokenAcquisitionError);
    assert.equal(refused.code, "THROTTLED");
    assert.equal(refused.retryAfterSeconds, 15);
    assert.equal(client.requests.length, 1, "no call while the window runs");
    assert.equal(provider.stats().backoffRefusals, 1);
    // Another resource of the same tenant is not affected.
    client.respond = async (_r, tenant) => result(await jwt(tenant, Date.now()), false, new Date(Date.now() + HOUR));
    await provider.getToken(TENANT, "defender");
    clock.now += 16_000;
    await provider.getToken(TENANT, "graph");
    assert.equal(client.requests.length, 3);
  });

  it("keeps serving the current token when its renewal is throttled, while it lasts", async () => {
    const clock = { now: Date.now() };
    const { client, provider } = setup({ clock });
    const current = await provider.getToken(TENANT, "defender");
    clock.now += HOUR - 4 * 60_000;
    client.respond = async () => {
      throw new ServerError("temporarily_unavailable", "c", "AADSTS90006: unavailable", "", 90006 as unknown as string, 503);
    };
    const during = await provider.getToken(TENANT, "defender");
    assert.equal(during.accessToken, current.accessToken);
    assert.equal(during.fromCache, true);
    assert.equal((await provider.getToken(TENANT, "defender")).accessToken, current.accessToken);
    assert.equal(client.requests.length, 2, "the back-off window holds further calls");
    clock.now += 3 * 60_000 + 1;
    // Less than a minute left: the renewal's failure is now the answer.
    await assert.rejects(provider.getToken(TENANT, "defender"), { code: "TOKEN_ENDPOINT_UNAVAILABLE" });
    assert.equal(client.requests.length, 3);
  });

  it("refuses non-GUID tenants and forgets tokens on invalidate", async () => {
    const { client, provider } = setup();
    for (const bad of ["common", "organizations", "contoso.onmicrosoft.com", ""]) {
      await assert.rejects(provider.getToken(bad, "defender"), { code: "TENANT_NOT_FOUND" });
    }
    assert.equal(client.requests.length, 0);
    await provider.getToken(TENANT, "defender");
    provider.invalidate(TENANT);
    const again = await provider.getToken(TENANT, "defender");
    assert.equal(again.fromCache, false);
    assert.equal(client.requests[1]!.skipCache, true);
  });

  it("does not keep a token whose call started before an invalidate", async () => {
    const { client, provider } = setup();
    const gate = deferred<void>();
    client.respond = async (_r, tenant) => {
      await gate.promise;
      return result(await jwt(tenant, Date.now()), true, new Date(Date.now() + HOUR));
    };
    const early = provider.getToken(TENANT, "graph");
    provider.invalidate(TENANT, "graph");
    gate.resolve();
    await early;
    client.respond = async (_r, tenant) => result(await jwt(tenant, Date.now()), false, new Date(Date.now() + HOUR));
    assert.equal((await provider.getToken(TENANT, "graph")).fromCache, false);
    assert.deepEqual(client.requests.map((r) => r.skipCache), [false, true]);
  });
});

describe("MsalTokenProvider: lasting failures remembered (failureMemoryMs)", () => {
  const MEMORY = 60_000;
  const notConsented = async (): Promise<never> => {
    throw new ServerError("unauthorized_client", "c", "AADSTS700016: not found", "", 700016 as unknown as string, 400);
  };
  const issue = async (_r: ClientCredentialRequest, tenant: string) => result(await jwt(tenant, Date.now()), false, new Date(Date.now() + HOUR));
  function remembering(failureMemoryMs = MEMORY) {
    const clock = { now: Date.now() };
    const client = new FakeClient();
    const provider = new MsalTokenProvider({ client, authorityHost: HOST, failureMemoryMs, now: () => clock.now });
    return { clock, client, provider };
  }
  const failure = (promise: Promise<unknown>) =>
    promise.then(
      () => assert.fail("expected a failure"),
      (e: unknown) => {
        assert.ok(e instanceof TokenAcquisitionError, String(e));
        return e;
      },
    );

  it("gives a lasting failure again without a call: same code, message and hint, retryAfterSeconds the time left", async () => {
    const { clock, client, provider } = remembering();
    client.respond = notConsented;
    const first = await failure(provider.getToken(TENANT, "defender"));
    assert.equal(first.code, "CONSENT_REQUIRED");
    assert.equal(first.retryAfterSeconds, undefined);
    clock.now += 20_000;
    for (let i = 0; i < 5; i++) {
      const again = await failure(provider.getToken(TENANT, "defender"));
      assert.deepEqual(
        { code: again.code, message: again.message, hint: again.hint, correlationId: again.correlationId },
        { code: first.code, message: first.message, hint: first.hint, correlationId: first.correlationId },
      );
      assert.equal(again.retryAfterSeconds, 40);
      assert.equal(again.rememberedForSeconds, 40);
      assert.deepEqual(again.toPublic(), { ...first.toPublic(), retryAfterSeconds: 40 });
    }
    assert.equal(client.requests.length, 1, "one token request for six needs");
    assert.equal(provider.stats().backoffRefusals, 5);

    // Other tenants and the other resource are not affected.
    client.respond = issue;
    await provider.getToken(OTHER, "defender");
    await provider.getToken(TENANT, "graph");
    assert.equal(client.requests.length, 3);

    // When the memory runs out, Entra is asked again.
    clock.now += 40_000;
    await provider.getToken(TENANT, "defender");
    assert.equal(client.requests.length, 4);
  });

  it("a re-check asks anyway and its answer replaces the memory; a success ends it", async () => {
    const { clock, client, provider } = remembering();
    client.respond = notConsented;
    await failure(provider.getToken(TENANT, "defender"));
    clock.now += 30_000;
    const rechecked = await failure(provider.getToken(TENANT, "defender", { recheck: true }));
    assert.equal(rechecked.code, "CONSENT_REQUIRED");
    assert.equal(rechecked.rememberedForSeconds, undefined, "a fresh answer, not the remembered one");
    assert.equal(client.requests.length, 2);
    clock.now += 10_000;
    assert.equal((await failure(provider.getToken(TENANT, "defender"))).retryAfterSeconds, 50, "remembered from the re-check on");
    assert.equal(client.requests.length, 2);

    client.respond = issue;
    const token = await provider.getToken(TENANT, "defender", { recheck: true });
    assert.equal(token.fromCache, false);
    assert.equal((await provider.getToken(TENANT, "defender")).accessToken, token.accessToken);
    assert.equal(client.requests.length, 3, "after the success: served from memory, no refusal");
  });

  it("forgetFailures ends the memory for both resources at once; a call that started before cannot re-remember", async () => {
    const { client, provider } = remembering();
    client.respond = notConsented;
    await failure(provider.getToken(TENANT, "defender"));
    await failure(provider.getToken(TENANT, "graph"));
    provider.forgetFailures(TENANT.toUpperCase());
    await failure(provider.getToken(TENANT, "defender"));
    await failure(provider.getToken(TENANT, "graph"));
    assert.equal(client.requests.length, 4);

    provider.forgetFailures(TENANT);
    const gate = deferred<void>();
    client.respond = async () => {
      await gate.promise;
      return notConsented();
    };
    const early = failure(provider.getToken(TENANT, "defender"));
    await Promise.resolve();
    provider.forgetFailures(TENANT);
    gate.resolve();
    await early;
    client.respond = issue;
    await provider.getToken(TENANT, "defender");
    assert.equal(client.requests.length, 6, "the failure that raced the forget was not remembered");
  });

  it("remembers only lasting codes, and nothing with failureMemoryMs 0", async () => {
    const { client, provider } = remembering();
    client.respond = async () => null;
    await failure(provider.getToken(TENANT, "defender"));
    await failure(provider.getToken(TENANT, "defender"));
    assert.equal(client.requests.length, 2, "TOKEN_ENDPOINT_UNAVAILABLE passes by itself");
    client.respond = async (_r, tenant) => result(await jwt(tenant === TENANT ? OTHER : tenant, Date.now()), false, new Date(Date.now() + HOUR));
    await failure(provider.getToken(TENANT, "graph"));
    await failure(provider.getToken(TENANT, "graph"));
    assert.equal(client.requests.length, 4, "TENANT_MISMATCH is retried past MSAL's cache");

    const off = remembering(0);
    off.client.respond = notConsented;
    await failure(off.provider.getToken(TENANT, "defender"));
    await failure(off.provider.getToken(TENANT, "defender"));
    assert.equal(off.client.requests.length, 2);
  });
});
