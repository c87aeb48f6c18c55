import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TokenAcquisitionError } from "../../../src/auth/token-errors.js";
import type { AccessToken, GetTokenOptions, TokenProvider, TokenResource } from "../../../src/auth/token-provider.js";
import { createTokenLoader, tokenLoaderKey } from "../../../src/loaders/token-loader.js";

const A = "0b9c3c7e-5b8e-4a43-9e0e-1f2a3b4c5d6e";
const B = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
const C = "4d3c2b1a-0f9e-4d8c-b7a6-5f4e3d2c1b0a";

/**
 * A provider that records its calls grouped by batch, the way dataloader's own tests record `loadCalls`:
 * a batch function calls `getToken` for all its keys synchronously, so calls made before the next
 * microtask belong to one batch.
 */
class RecordingProvider implements TokenProvider {
  readonly loadCalls: string[][] = [];
  readonly signals: (AbortSignal | undefined)[] = [];
  private open: string[] | undefined;
  constructor(private readonly failing: Set<string> = new Set()) {}

  async getToken(tenantId: string, resource: TokenResource, options?: GetTokenOptions): Promise<AccessToken> {
    if (!this.open) {
      const batch: string[] = [];
      this.open = batch;
      this.loadCalls.push(batch);
      queueMicrotask(() => {
        if (this.open === batch) this.open = undefined;
      });
    }
    this.open.push(`${tenantId}|${resource}`);
    this.signals.push(options?.signal);
    if (this.failing.has(tenantId)) {
      throw new TokenAcquisitionError({ code: "CONSENT_REQUIRED", tenantId, resource, aadsts: 700016 });
    }
    return {
      accessToken: `token-${tenantId}-${resource}`,
      expiresOn: new Date(Date.now() + 3_600_000),
      fromCache: false,
      fingerprint: "000000000000",
      claims: {
        tid: tenantId,
        aud: "https://api.security.microsoft.com",
        iss: `https://sts.windows.net/${tenantId}/`,
        appId: "app",
        roles: [],
        ver: "1.0",
        iat: 0,
        nbf: 0,
        exp: 0,
        idtyp: "app",
        oid: "oid",
      },
    };
  }
  invalidate(): void {}
  forgetFailures(): void {}
  stats(): never {
    throw new Error("not used");
  }
}

describe("createTokenLoader", () => {
  it("batches the keys of one tick into one fan-out, once per key", async () => {
    const provider = new RecordingProvider();
    const loader = createTokenLoader(provider);
    const [a, b, a2, bGraph] = await Promise.all([
      loader.load(tokenLoaderKey(A, "defender")),
      loader.load(tokenLoaderKey(B, "defender")),
      loader.load(tokenLoaderKey(A.toUpperCase(), "defender")),
      loader.load(tokenLoaderKey(B, "graph")),
    ]);
    assert.deepEqual(provider.loadCalls, [[`${A}|defender`, `${B}|defender`, `${B}|graph`]]);
    assert.equal(a.accessToken, `token-${A}-defender`);
    assert.equal(a2, a);
    assert.equal(b.claims!.tid, B);
    assert.equal(bGraph.accessToken, `token-${B}-graph`);

    // Later ticks make new batches; keys already loaded in this request are not asked again.
    await loader.load(tokenLoaderKey(A, "defender"));
    await loader.load(tokenLoaderKey(C, "defender"));
    assert.deepEqual(provider.loadCalls, [[`${A}|defender`, `${B}|defender`, `${B}|graph`], [`${C}|defender`]]);
  });

  it("fails only the key whose tenant failed", async () => {
    const provider = new RecordingProvider(new Set([B]));
    const loader = createTokenLoader(provider);
    const results = await loader.loadMany([tokenLoaderKey(A, "defender"), tokenLoaderKey(B, "defender"), tokenLoaderKey(C, "graph")]);
    assert.equal(provider.loadCalls.length, 1);
    assert.equal((results[0] as AccessToken).claims!.tid, A);
    assert.ok(results[1] instanceof TokenAcquisitionError);
    assert.equal(results[1].code, "CONSENT_REQUIRED");
    assert.equal((results[2] as AccessToken).claims!.tid, C);
    await assert.rejects(loader.load(tokenLoaderKey(B, "defender")), { code: "CONSENT_REQUIRED" });
    assert.equal(provider.loadCalls.length, 1, "a failure is remembered for the rest of the request");
  });

  it("hands the request's signal to every call and rejects malformed keys alone", async () => {
    const provider = new RecordingProvider();
    const controller = new AbortController();
    const loader = createTokenLoader(provider, { signal: controller.signal });
    const [good, bad] = await Promise.allSettled([
      loader.load(tokenLoaderKey(A, "defender")),
      loader.load(`${B}|sharepoint` as never),
    ]);
    assert.equal(good.status, "fulfilled");
    assert.equal(bad.status, "rejected");
    assert.ok(bad.status === "rejected" && bad.reason instanceof TypeError);
    assert.deepEqual(provider.signals, [controller.signal]);
  });

  it("is per request: a new loader asks again", async () => {
    const provider = new RecordingProvider();
    await createTokenLoader(provider).load(tokenLoaderKey(A, "defender"));
    await createTokenLoader(provider).load(tokenLoaderKey(A, "defender"));
    assert.equal(provider.loadCalls.length, 2);
  });
});
