import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { decodeJwt } from "jose";
import type { AppCredential } from "../../src/config.js";
import { createConfidentialClient } from "../../src/auth/msal-client.js";
import { UndiciNetworkClient, type AuthorityTimeouts } from "../../src/auth/network-client.js";
import { TokenAcquisitionError, type TokenErrorCode } from "../../src/auth/token-errors.js";
import { MsalTokenProvider, type AccessToken, type TokenResource } from "../../src/auth/token-provider.js";
import { createClientCertificate } from "../../src/sandbox/certs.js";
import type { SandboxTenant } from "../../src/sandbox/tenants.js";
import { captureLogger } from "../helpers/log-capture.js";
import { startTestSandbox, type TestSandbox } from "../helpers/sandbox.js";

const DEFENDER = "https://api.security.microsoft.com";
const GRAPH = "https://graph.microsoft.com";
const VALID_SECRET = "Abc8Q~valid-secret-of-the-sandbox-app-0001";
const EXPIRED_SECRET = "Old8Q~expired-secret-of-the-sandbox-app-01";
const WRONG_SECRET = "Wrg8Q~not-a-secret-of-the-sandbox-app-0001";
/** A provider clock that does not move by itself (Unix ms). */
const STILL_CLOCK_MS = Date.parse("2026-06-01T00:00:00Z");
const SHORT_TIMEOUTS: AuthorityTimeouts = { connectMs: 1_000, headersMs: 500, bodyMs: 500, totalMs: 1_000 };

describe("token provider against the sandbox", () => {
  let t: TestSandbox;
  let dir: string;
  let certificatePath: string;
  let strangerPath: string;
  let cert: Awaited<ReturnType<typeof createClientCertificate>>;
  const logs = captureLogger("trace");
  /** Every access token any provider handed out, for the log scan at the end. */
  const issued = new Set<string>();

  const tenant = (domain: string): SandboxTenant => {
    const found = t.sandbox.tenants.find((x) => x.domain === `${domain}.onmicrosoft.com`);
    assert.ok(found, domain);
    return found;
  };
  const tokenCalls = (tenantId?: string): number => {
    const snapshot = t.sandbox.context.counterSnapshot();
    return (tenantId ? snapshot.byTenant[tenantId]?.token : snapshot.byEndpoint.token) ?? 0;
  };
  const secret = (clientSecret: string): AppCredential => ({ kind: "secret", clientId: t.sandbox.clientId, clientSecret });

  /** A fresh MSAL client (its own cache) and a provider over it, logging into the captured logger. */
  const provider = async (
    options: { credential?: AppCredential; timeouts?: AuthorityTimeouts; now?: () => number; sendCertificateChain?: boolean } = {},
  ) => {
    const client = await createConfidentialClient({
      credential: options.credential ?? secret(VALID_SECRET),
      authorityHost: t.sandbox.url,
      networkClient: new UndiciNetworkClient(t.dispatcher, options.timeouts),
      logger: logs.logger,
      ...(options.sendCertificateChain ? { sendCertificateChain: true } : {}),
    });
    const inner = new MsalTokenProvider({
      client,
      authorityHost: t.sandbox.url,
      logger: logs.logger,
      ...(options.now ? { now: options.now } : {}),
    });
    return {
      inner,
      async getToken(tenantId: string, resource: TokenResource, signal?: AbortSignal): Promise<AccessToken> {
        const token = await inner.getToken(tenantId, resource, signal ? { signal } : {});
        issued.add(token.accessToken);
        return token;
      },
    };
  };

  const failure = async (promise: Promise<unknown>, code: TokenErrorCode): Promise<TokenAcquisitionError> => {
    const error = await promise.then(
      () => assert.fail(`expected ${code}`),
      (e: unknown) => e,
    );
    assert.ok(error instanceof TokenAcquisitionError, String(error));
    assert.equal(error.code, code, error.message);
    return error;
  };

  before(async () => {
    cert = await createClientCertificate();
    const stranger = await createClientCertificate("CN=Not registered");
    t = await startTestSandbox({
      tenantCount: 25,
      app: {
        certificates: [cert.credential],
        secrets: [
          { id: randomUUID(), value: VALID_SECRET, expiresAt: Date.now() + 365 * 86_400_000 },
          { id: randomUUID(), value: EXPIRED_SECRET, expiresAt: Date.now() - 86_400_000 },
        ],
      },
    });
    dir = await mkdtemp(join(tmpdir(), "crosswatch-token-"));
    certificatePath = join(dir, "app.pem");
    strangerPath = join(dir, "stranger.pem");
    // The layout Azure tooling exports: private key, then certificate.
    await writeFile(certificatePath, `${cert.privateKeyPem}\n${cert.certPem}`, { mode: 0o600 });
    await writeFile(strangerPath, `${stranger.certPem}\n${stranger.privateKeyPem}`, { mode: 0o600 });
  });
  after(async () => {
    await t?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe("tokens", () => {
    it("acquires Defender and Graph tokens with a client secret: tid, aud, roles, then memory", async () => {
      const contoso = tenant("contoso");
      const p = await provider();
      const before = tokenCalls(contoso.id);
      const askedAt = Date.now();
      const defender = await p.getToken(contoso.id, "defender");
      const answeredAt = Date.now();
      assert.equal(defender.fromCache, false);
      assert.equal(defender.claims!.tid, contoso.id);
      assert.equal(defender.claims!.aud, DEFENDER);
      assert.equal(defender.claims!.iss, `https://sts.windows.net/${contoso.id}/`);
      assert.equal(defender.claims!.appId, t.sandbox.clientId);
      assert.equal(defender.claims!.oid, contoso.servicePrincipalId);
      assert.equal(defender.claims!.idtyp, "app");
      assert.deepEqual(defender.claims!.roles, ["Incident.ReadWrite.All"]);
      // Issued between asking and answering (bracketed, so no margin a slow machine could outrun; 1 s for rounding).
      assert.ok(defender.expiresOn.getTime() >= askedAt + 3599_000 - 1_000 && defender.expiresOn.getTime() <= answeredAt + 3599_000 + 1_000);
      assert.equal(decodeJwt(defender.accessToken).appidacr, "1");

      const graph = await p.getToken(contoso.id, "graph");
      assert.equal(graph.claims!.aud, GRAPH);
      assert.deepEqual(graph.claims!.roles, ["SecurityIncident.ReadWrite.All"]);
      assert.equal(tokenCalls(contoso.id), before + 2);

      const again = await p.getToken(contoso.id, "defender");
      assert.equal(again.fromCache, true);
      assert.equal(again.accessToken, defender.accessToken);
      assert.equal(tokenCalls(contoso.id), before + 2);
    });

    it("acquires tokens with a certificate read from a PEM file, with or without the chain", async () => {
      const fabrikam = tenant("fabrikam");
      for (const sendCertificateChain of [false, true]) {
        const p = await provider({ credential: { kind: "certificate", clientId: t.sandbox.clientId, certificatePath }, sendCertificateChain });
        const token = await p.getToken(fabrikam.id, "defender");
        assert.equal(token.claims!.tid, fabrikam.id);
        assert.deepEqual(token.claims!.roles, ["Incident.ReadWrite.All"]);
        assert.equal(decodeJwt(token.accessToken).appidacr, "2", "certificate credential");
      }
    });

    it("makes exactly one token call per tenant for 50 concurrent needs over 20 tenants, then none", async () => {
      const tenants = t.sandbox.tenants.filter((x) => x.consent.granted && x.resources.defender).slice(0, 20);
      assert.equal(tenants.length, 20);
      const p = await provider();
      t.sandbox.context.resetCounters();
      const round = () => Promise.all(Array.from({ length: 50 }, (_, i) => p.getToken(tenants[i % 20]!.id, "defender")));
      const first = await round();
      assert.equal(tokenCalls(), 20);
      for (const x of tenants) assert.equal(tokenCalls(x.id), 1, x.displayName);
      first.forEach((token, i) => assert.equal(token.claims!.tid, tenants[i % 20]!.id));
      const second = await round();
      assert.equal(tokenCalls(), 20, "repeating costs no token call");
      assert.ok(second.every((token) => token.fromCache));
      const stats = p.inner.stats();
      assert.equal(stats.requests, 100);
      assert.equal(stats.acquisitions, 20);
      assert.equal(stats.tokensIssued, 20);
      assert.equal(stats.coalesced, 30);
      assert.equal(stats.cacheHits, 50);
    });

    it("renews a token on the first call within five minutes of its expiry, on the sandbox clock", async () => {
      const woodgrove = tenant("woodgrovebank");
      const ctx = t.sandbox.context;
      const p = await provider({ now: () => ctx.now() });
      const first = await p.getToken(woodgrove.id, "defender");
      const before = tokenCalls(woodgrove.id);

      ctx.advanceClock(3000_000);
      const still = await p.getToken(woodgrove.id, "defender");
      assert.equal(still.fromCache, true);
      assert.equal(tokenCalls(woodgrove.id), before, "ten minutes left: no renewal");

      ctx.advanceClock(400_000);
      const renewed = await p.getToken(woodgrove.id, "defender");
      assert.equal(renewed.fromCache, false);
      assert.notEqual(renewed.accessToken, first.accessToken);
      assert.equal(tokenCalls(woodgrove.id), before + 1, "one renewal call");
      assert.ok(renewed.claims!.iat >= first.claims!.iat + 3400);
      assert.ok(renewed.expiresOn.getTime() - ctx.now() > 3500_000);
      assert.equal((await p.getToken(woodgrove.id, "defender")).accessToken, renewed.accessToken);
      assert.equal(tokenCalls(woodgrove.id), before + 1);
    });
  });

  describe("failures and their public codes", () => {
    it("not consented (AADSTS700016, and 7000229 when the sandbox answers so) → CONSENT_REQUIRED", async () => {
      const alpine = tenant("alpineskihouse");
      const p = await provider();
      const error = await failure(p.getToken(alpine.id, "defender"), "CONSENT_REQUIRED");
      assert.equal(error.aadsts, 700016);
      assert.equal(error.httpStatus, 400);
      assert.match(error.correlationId ?? "", /^[0-9a-f-]{36}$/);
      assert.match(error.hint, /consent link/);
      assert.ok(!error.message.includes("Alpine Ski House"), "no upstream text in the message");
      assert.equal(error.retryAfterSeconds, undefined);

      const options = t.sandbox.context.options;
      options.notConsentedError = 7000229;
      try {
        const missing = await failure(p.getToken(alpine.id, "graph"), "CONSENT_REQUIRED");
        assert.equal(missing.aadsts, 7000229);
      } finally {
        options.notConsentedError = 700016;
      }
      // Failures are not remembered: each attempt asks Entra again.
      const before = tokenCalls(alpine.id);
      await failure(p.getToken(alpine.id, "defender"), "CONSENT_REQUIRED");
      assert.equal(tokenCalls(alpine.id), before + 1);
    });

    it("wrong secret → INVALID_CLIENT_CREDENTIAL, expired secret → CREDENTIAL_EXPIRED, foreign certificate → INVALID_CLIENT_CREDENTIAL", async () => {
      const contoso = tenant("contoso");
      const wrong = await failure((await provider({ credential: secret(WRONG_SECRET) })).getToken(contoso.id, "defender"), "INVALID_CLIENT_CREDENTIAL");
      assert.equal(wrong.aadsts, 7000215);
      assert.match(wrong.hint, /ID instead of its value/);
      const expired = await failure((await provider({ credential: secret(EXPIRED_SECRET) })).getToken(contoso.id, "defender"), "CREDENTIAL_EXPIRED");
      assert.equal(expired.aadsts, 7000222);
      const foreign = await provider({ credential: { kind: "certificate", clientId: t.sandbox.clientId, certificatePath: strangerPath } });
      assert.equal((await failure(foreign.getToken(contoso.id, "defender"), "INVALID_CLIENT_CREDENTIAL")).aadsts, 700027);
    });

    it("unknown tenant GUID → TENANT_NOT_FOUND (AADSTS90002 on the token call, no discovery)", async () => {
      const p = await provider();
      const unknown = randomUUID();
      const error = await failure(p.getToken(unknown, "defender"), "TENANT_NOT_FOUND");
      assert.equal(error.aadsts, 90002);
      assert.equal(t.sandbox.context.counterSnapshot().byTenant[unknown]?.discovery, undefined);
    });

    it("Graph-only tenant asking for Defender → RESOURCE_NOT_PROVISIONED; its Graph token works", async () => {
      const proseware = tenant("proseware");
      const p = await provider();
      const error = await failure(p.getToken(proseware.id, "defender"), "RESOURCE_NOT_PROVISIONED");
      assert.equal(error.aadsts, 500011);
      const graph = await p.getToken(proseware.id, "graph");
      assert.deepEqual(graph.claims!.roles, ["SecurityIncident.ReadWrite.All"]);
    });

    it("token endpoint 503 → TOKEN_ENDPOINT_UNAVAILABLE, and no call during MSAL's 60 s back-off", async () => {
      const northwind = tenant("northwindtraders");
      // The provider's clock stands still: the window left does not depend on how fast the machine is.
      const p = await provider({ now: () => STILL_CLOCK_MS });
      t.sandbox.context.setFault(northwind.id, { kind: "server-error", status: 503, endpoints: ["token"], times: 1 });
      const error = await failure(p.getToken(northwind.id, "defender"), "TOKEN_ENDPOINT_UNAVAILABLE");
      assert.equal(error.httpStatus, 503);
      assert.equal(error.aadsts, 90006);
      assert.equal(error.retryAfterSeconds, 60);
      assert.ok(error.traceId, "x-ms-request-id kept");
      const before = tokenCalls(northwind.id);
      const refused = await failure(p.getToken(northwind.id, "defender"), "TOKEN_ENDPOINT_UNAVAILABLE");
      assert.equal(refused.retryAfterSeconds, 60);
      assert.equal(tokenCalls(northwind.id), before);
      // The other resource has its own window.
      assert.equal((await p.getToken(northwind.id, "graph")).claims!.tid, northwind.id);
    });

    it("token endpoint 429 → THROTTLED with Retry-After; refused locally until it passes", async () => {
      const adventure = tenant("adventureworks");
      // The provider's window runs on a clock the test moves, so the refusal below cannot run out under load.
      let clockMs = STILL_CLOCK_MS;
      const p = await provider({ now: () => clockMs });
      t.sandbox.context.setFault(adventure.id, { kind: "throttle", retryAfterSeconds: 1, endpoints: ["token"], times: 1 });
      const error = await failure(p.getToken(adventure.id, "defender"), "THROTTLED");
      assert.equal(error.retryAfterSeconds, 1);
      assert.equal(error.httpStatus, 429);
      assert.equal(error.aadsts, 90055);
      const before = tokenCalls(adventure.id);
      assert.equal((await failure(p.getToken(adventure.id, "defender"), "THROTTLED")).retryAfterSeconds, 1);
      assert.equal(tokenCalls(adventure.id), before, "Retry-After respected without a call");
      clockMs += 1_100;
      // MSAL keeps its own Retry-After window on the real clock: this wait only lets it pass (longer is fine).
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      assert.equal((await p.getToken(adventure.id, "defender")).claims!.tid, adventure.id);
      assert.equal(tokenCalls(adventure.id), before + 1);
    });

    it("a hanging token endpoint → TOKEN_ENDPOINT_UNAVAILABLE after the short timeout; not remembered", async () => {
      const litware = tenant("litwareinc");
      const p = await provider({ timeouts: SHORT_TIMEOUTS });
      t.sandbox.context.setFault(litware.id, { kind: "hang", endpoints: ["token"], times: 1 });
      // The hang never answers, so only a timeout ends the call (no wall-clock bound: load stretches it).
      const error = await failure(p.getToken(litware.id, "defender"), "TOKEN_ENDPOINT_UNAVAILABLE");
      assert.equal(error.retryAfterSeconds, undefined);
      assert.equal((await p.getToken(litware.id, "defender")).claims!.tid, litware.id, "the next call goes through");
    });

    it("a mangled answer → TOKEN_ENDPOINT_UNAVAILABLE; not remembered", async () => {
      const trey = tenant("treyresearch");
      const p = await provider();
      t.sandbox.context.setFault(trey.id, { kind: "malformed-json", endpoints: ["token"], times: 1 });
      await failure(p.getToken(trey.id, "defender"), "TOKEN_ENDPOINT_UNAVAILABLE");
      assert.equal((await p.getToken(trey.id, "defender")).claims!.tid, trey.id);
    });

    it("an aborted wait rejects at once while the shared call finishes for the others", async () => {
      const tailspin = tenant("tailspintoys");
      const p = await provider();
      t.sandbox.context.latency = { fixedMs: 300 };
      try {
        const impatient = p.getToken(tailspin.id, "defender", AbortSignal.timeout(50));
        const patient = p.getToken(tailspin.id, "defender");
        await assert.rejects(impatient, { name: "TimeoutError" });
        assert.equal((await patient).claims!.tid, tailspin.id);
        assert.equal(p.inner.stats().acquisitions, 1);
      } finally {
        t.sandbox.context.latency = undefined;
      }
    });

    it("a secret that expires while running: held tokens still serve, new ones fail with CREDENTIAL_EXPIRED", async () => {
      const [held, fresh] = [tenant("lamnahealthcare"), tenant("wideworldimporters")];
      const p = await provider();
      await p.getToken(held.id, "defender");
      const response = await t.call("POST", "/_sandbox/app/secrets/expire");
      assert.equal(response.status, 200);
      assert.equal((await p.getToken(held.id, "defender")).fromCache, true);
      const error = await failure(p.getToken(fresh.id, "defender"), "CREDENTIAL_EXPIRED");
      assert.match(error.hint, /new secret/);
    });
  });

  it("never logs a secret, a private key or an access token", () => {
    const text = logs.lines.join("\n");
    assert.ok(logs.lines.length > 10, "the provider did log");
    assert.ok(issued.size > 30);
    for (const value of [VALID_SECRET, EXPIRED_SECRET, WRONG_SECRET]) assert.ok(!text.includes(value), "client secret in the log");
    const keyBody = cert.privateKeyPem.split("\n").filter((l) => l.length > 40);
    assert.ok(keyBody.every((line) => !text.includes(line)), "private key in the log");
    for (const token of issued) {
      assert.ok(!text.includes(token), "access token in the log");
      assert.ok(!text.includes(token.split(".")[2]!), "token signature in the log");
    }
    assert.ok(!/eyJ[A-Za-z0-9_-]{20,}\.eyJ/.test(text), "something JWT-shaped in the log");
    // What is logged instead: fingerprints and codes.
    assert.ok(logs.lines.some((line) => /"fingerprint":"[0-9a-f]{12}"/.test(line)));
    assert.ok(logs.lines.some((line) => line.includes('"code":"CONSENT_REQUIRED"')));
  });
});
