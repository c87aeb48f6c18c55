import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import type { AuthenticationResult, ClientCredentialRequest } from "@azure/msal-node";
import { Redis } from "ioredis";
import { SignJWT } from "jose";
import { ConfigError, loadConfig } from "../../../src/config.js";
import {
  RedisSharedTokenCache,
  TokenCipher,
  type SharedToken,
  type SharedTokenCache,
  type SharedTokenLookup,
} from "../../../src/auth/shared-token-cache.js";
import { MsalTokenProvider, type ClientCredentialClient, type TokenResource } from "../../../src/auth/token-provider.js";
import { captureLogger } from "../../helpers/log-capture.js";

const HOST = "https://login.microsoftonline.com";
const TENANT = "0b9c3c7e-5b8e-4a43-9e0e-1f2a3b4c5d6e";
const OTHER = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
const SECRET = `token-cache-key-${"s".repeat(32)}`;
const SIGNING = new TextEncoder().encode("fake-signing-key-for-unverified-tokens-000");
const HOUR = 3_600_000;
const MINUTE = 60_000;

let serial = 0;
async function jwt(tid: string, iatMs: number, lifetimeMs = HOUR, roles = ["Incident.ReadWrite.All"]): Promise<string> {
  const iat = Math.floor(iatMs / 1000);
  return new SignJWT({
    tid,
    aud: "https://api.security.microsoft.com",
    iss: `https://sts.windows.net/${tid}/`,
    appid: "5c1e7d2a-9b3f-4c6e-8a1d-0f2b4c6d8e10",
    oid: "33333333-3333-3333-3333-333333333333",
    roles,
    ver: "1.0",
    iat,
    nbf: iat,
    exp: iat + lifetimeMs / 1000,
    uti: String(++serial),
  })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .sign(SIGNING);
}

function result(accessToken: string, expiresOn: Date, fromCache = false): AuthenticationResult {
  return { accessToken, fromCache, expiresOn, tokenType: "Bearer", correlationId: "c" } as unknown as AuthenticationResult;
}

/** MSAL's confidential client as the provider sees it: counts requests, answers a fresh token for the tenant asked. */
class FakeClient implements ClientCredentialClient {
  readonly requests: ClientCredentialRequest[] = [];
  lifetimeMs = HOUR;
  respond: (request: ClientCredentialRequest, tenant: string) => Promise<AuthenticationResult | null> = async (_r, tenant) =>
    result(await jwt(tenant, Date.now(), this.lifetimeMs), new Date(Date.now() + this.lifetimeMs));

  acquireTokenByClientCredential(request: ClientCredentialRequest): Promise<AuthenticationResult | null> {
    this.requests.push(request);
    return this.respond(request, new URL(request.authority!).pathname.slice(1));
  }
}

function deferred<T = void>(): { promise: Promise<T>; resolve(value: T): void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => {
    resolve = res;
  });
  return { promise, resolve };
}

/** Polls `condition` until it holds (every 10 ms, up to ~30 s): waits on state, never on a guessed while. */
async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/**
 * The fleet's shared store in memory, with the semantics the provider relies on (generations, invalidations
 * reaching the other replicas), and switches that make it fail. `replica()` is one replica's view of it.
 */
class FakeFleet {
  readonly entries = new Map<string, SharedToken>();
  readonly generations = new Map<string, number>();
  readonly views: FakeView[] = [];
  failLookups = false;
  failInvalidations = false;
  invalidations: { tenantId: string; resources: TokenResource[] }[] = [];

  replica(): FakeView {
    const view = new FakeView(this);
    this.views.push(view);
    return view;
  }
}

class FakeView implements SharedTokenCache {
  readonly listeners: ((tenantId: string, resources: TokenResource[]) => void)[] = [];
  readonly stored: { token: SharedToken; ttlMs: number }[] = [];
  constructor(private readonly fleet: FakeFleet) {}

  async lookup(tenantId: string, resource: TokenResource, options: { usable(token: SharedToken): boolean }): Promise<SharedTokenLookup> {
    if (this.fleet.failLookups) throw new Error("ECONNREFUSED 127.0.0.1:6379");
    const key = `${tenantId}|${resource}`;
    const token = this.fleet.entries.get(key);
    if (token && options.usable(token)) return { token };
    const generation = this.fleet.generations.get(key) ?? 0;
    return {
      ticket: {
        store: async (stored, ttlMs) => {
          if ((this.fleet.generations.get(key) ?? 0) !== generation) return false;
          this.fleet.entries.set(key, stored);
          this.stored.push({ token: stored, ttlMs });
          return true;
        },
        release: () => undefined,
      },
    };
  }

  async invalidate(tenantId: string, resources: readonly TokenResource[]): Promise<void> {
    if (this.fleet.failInvalidations) throw new Error("ECONNREFUSED 127.0.0.1:6379");
    this.fleet.invalidations.push({ tenantId, resources: [...resources] });
    for (const resource of resources) {
      const key = `${tenantId}|${resource}`;
      this.fleet.entries.delete(key);
      this.fleet.generations.set(key, (this.fleet.generations.get(key) ?? 0) + 1);
    }
    for (const view of this.fleet.views) if (view !== this) for (const listener of view.listeners) listener(tenantId, [...resources]);
  }

  onInvalidated(listener: (tenantId: string, resources: TokenResource[]) => void): void {
    this.listeners.push(listener);
  }
}

function replica(shared: SharedTokenCache | undefined, options: { clock?: { now: number }; logger?: ReturnType<typeof captureLogger>["logger"] } = {}) {
  const client = new FakeClient();
  const provider = new MsalTokenProvider({
    client,
    authorityHost: HOST,
    ...(shared ? { shared } : {}),
    ...(options.clock ? { now: () => options.clock!.now } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
  });
  return { client, provider };
}

describe("TokenCipher (AES-256-GCM under TOKEN_CACHE_KEY)", () => {
  const cipher = new TokenCipher(SECRET);
  const key = `cw:token:abc:{${TENANT}}:defender`;

  it("opens what it sealed, under the same key name, with a new IV each time", () => {
    const plaintext = JSON.stringify({ t: "eyJ.secret-token.sig", e: 1_900_000_000_000 });
    const one = cipher.seal(plaintext, key);
    const two = cipher.seal(plaintext, key);
    assert.match(one, /^v1\.[A-Za-z0-9_-]+$/);
    assert.notEqual(one, two, "a random IV per value");
    assert.equal(cipher.open(one, key), plaintext);
    assert.equal(cipher.open(two, key), plaintext);
    assert.ok(!one.includes("secret-token") && !one.includes(SECRET));
    // Another instance from the same secret (another replica) opens it; one from another secret does not.
    assert.equal(new TokenCipher(SECRET).open(one, key), plaintext);
    assert.equal(new TokenCipher(`${SECRET}-rotated`).open(one, key), undefined);
  });

  it("refuses a value under another key name (the name is authenticated data)", () => {
    const sealed = cipher.seal("token", key);
    assert.equal(cipher.open(sealed, `cw:token:abc:{${OTHER}}:defender`), undefined, "another tenant's key");
    assert.equal(cipher.open(sealed, `cw:token:abc:{${TENANT}}:graph`), undefined, "another resource's key");
  });

  it("refuses a tampered, truncated or foreign value", () => {
    const sealed = cipher.seal("token", key);
    const raw = Buffer.from(sealed.slice(3), "base64url");
    for (const index of [0, 12, raw.length - 1]) {
      const altered = Buffer.from(raw);
      altered[index]! ^= 0x01;
      assert.equal(cipher.open(`v1.${altered.toString("base64url")}`, key), undefined, `byte ${index} flipped`);
    }
    assert.equal(cipher.open(sealed.slice(0, 20), key), undefined);
    assert.equal(cipher.open(sealed.replace(/^v1\./, "v2."), key), undefined);
    assert.equal(cipher.open("token", key), undefined);
  });

  it("needs a secret of at least 32 characters and never repeats it", () => {
    const short = "short-secret-value";
    assert.throws(() => new TokenCipher(short), (error: unknown) => error instanceof Error && !error.message.includes(short));
    // Nothing of the key is enumerable: logging the object shows no key material.
    assert.equal(JSON.stringify(cipher), "{}");
  });
});

describe("TOKEN_CACHE_KEY in the configuration", () => {
  it("is optional, and taken as given when long enough", () => {
    assert.equal(loadConfig({}).store.tokenCacheKey, undefined);
    assert.equal(loadConfig({ TOKEN_CACHE_KEY: "" }).store.tokenCacheKey, undefined);
    assert.equal(loadConfig({ TOKEN_CACHE_KEY: SECRET, REDIS_URL: "redis://127.0.0.1:6379" }).store.tokenCacheKey, SECRET);
  });

  it("refuses a short key, naming the variable and not its value", () => {
    const short = "too-short-token-cache-key";
    assert.throws(() => loadConfig({ TOKEN_CACHE_KEY: short }), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /TOKEN_CACHE_KEY: must be at least 32 characters/);
      assert.ok(!error.message.includes(short) && !JSON.stringify(error.problems).includes(short));
      return true;
    });
  });
});

describe("MsalTokenProvider with a shared cache (in-memory fleet)", () => {
  it("takes a token another replica stored: a cache hit, no call into MSAL, claims decoded as usual", async () => {
    const fleet = new FakeFleet();
    const a = replica(fleet.replica());
    const b = replica(fleet.replica());
    const first = await a.provider.getToken(TENANT, "defender");
    assert.equal(first.fromCache, false);
    assert.equal(fleet.views[0]!.stored.length, 1, "A shared what it got");
    const stored = fleet.views[0]!.stored[0]!;
    assert.equal(stored.token.accessToken, first.accessToken);
    assert.ok(stored.ttlMs > HOUR - MINUTE && stored.ttlMs <= HOUR, `TTL until expiry: ${stored.ttlMs}`);

    const taken = await b.provider.getToken(TENANT.toUpperCase(), "defender");
    assert.equal(b.client.requests.length, 0, "B made no token request");
    assert.equal(taken.accessToken, first.accessToken);
    assert.equal(taken.fromCache, true);
    assert.equal(taken.fingerprint, first.fingerprint);
    assert.deepEqual(taken.claims, first.claims);
    assert.equal(taken.expiresOn.getTime(), first.expiresOn.getTime());
    assert.deepEqual(
      { ...b.provider.stats() },
      { requests: 1, cacheHits: 1, coalesced: 0, acquisitions: 0, tokensIssued: 0, failures: 0, backoffRefusals: 0, cachedTokens: 1 },
    );
    // Kept in B's memory like any token: the next call does not look in the shared cache again.
    fleet.entries.clear();
    assert.equal((await b.provider.getToken(TENANT, "defender")).accessToken, first.accessToken);
    assert.equal(b.client.requests.length, 0);
  });

  it("does not use a shared token with less than the refresh margin left, nor one naming another tenant", async () => {
    const clock = { now: Date.now() };
    const fleet = new FakeFleet();
    const b = replica(fleet.replica(), { clock });
    fleet.entries.set(`${TENANT}|defender`, { accessToken: await jwt(TENANT, clock.now - HOUR + 4 * MINUTE), expiresAt: clock.now + 4 * MINUTE });
    const renewed = await b.provider.getToken(TENANT, "defender");
    assert.equal(renewed.fromCache, false);
    assert.equal(b.client.requests.length, 1, "due for renewal: asked MSAL");
    assert.equal(fleet.entries.get(`${TENANT}|defender`)!.accessToken, renewed.accessToken, "and shared the new one");

    fleet.entries.set(`${TENANT}|graph`, { accessToken: await jwt(OTHER, clock.now), expiresAt: clock.now + HOUR });
    const own = await b.provider.getToken(TENANT, "graph");
    assert.equal(own.claims!.tid, TENANT);
    assert.equal(b.client.requests.length, 2, "a token naming another tenant is not used");
  });

  it("asks MSAL, and answers, when the shared cache fails", async () => {
    const logs = captureLogger("debug");
    const fleet = new FakeFleet();
    fleet.failLookups = true;
    fleet.failInvalidations = true;
    const b = replica(fleet.replica(), { logger: logs.logger });
    const token = await b.provider.getToken(TENANT, "defender");
    assert.equal(token.claims!.tid, TENANT);
    assert.equal(b.client.requests.length, 1);
    assert.equal(b.provider.stats().acquisitions, 1);
    assert.ok(logs.lines.some((l) => l.includes('"level":40') && l.includes("shared token cache unavailable")), logs.lines.join("\n"));
    // An invalidation that cannot reach the shared cache still drops this replica's token.
    b.provider.invalidate(TENANT);
    const fresh = await b.provider.getToken(TENANT, "defender");
    assert.notEqual(fresh.accessToken, token.accessToken);
    assert.equal(b.client.requests.at(-1)!.skipCache, true);
  });

  it("after a failed shared invalidation, does not take back the old token until the invalidation is through", async () => {
    const fleet = new FakeFleet();
    const a = replica(fleet.replica());
    const old = await a.provider.getToken(TENANT, "defender");
    fleet.failInvalidations = true;
    a.provider.invalidate(TENANT, "defender");
    // Redis is back for lookups, but the invalidation never reached it: the old entry is still there.
    const fresh = await a.provider.getToken(TENANT, "defender");
    assert.notEqual(fresh.accessToken, old.accessToken, "the old shared token was not taken back");
    assert.equal(a.client.requests.length, 2);
    assert.equal(fleet.entries.get(`${TENANT}|defender`)!.accessToken, old.accessToken, "nor was the shared entry trusted enough to overwrite");

    // Once the invalidation goes through (tried again by the next flight), the shared cache is used again.
    fleet.failInvalidations = false;
    a.provider.invalidate(TENANT, "defender");
    const again = await a.provider.getToken(TENANT, "defender");
    assert.equal(a.client.requests.length, 3);
    assert.equal(fleet.entries.get(`${TENANT}|defender`)!.accessToken, again.accessToken);
  });

  it("makes every replica drop an invalidated token, and asks Entra once for the fleet", async () => {
    const fleet = new FakeFleet();
    const a = replica(fleet.replica());
    const b = replica(fleet.replica());
    const old = await a.provider.getToken(TENANT, "defender");
    assert.equal((await b.provider.getToken(TENANT, "defender")).accessToken, old.accessToken);
    assert.equal(b.provider.stats().cachedTokens, 1);

    // A consent on A: both resources, every replica.
    a.provider.invalidate(TENANT);
    assert.deepEqual(fleet.invalidations, [{ tenantId: TENANT, resources: ["defender", "graph"] }]);
    assert.equal(b.provider.stats().cachedTokens, 0, "B dropped its copy");
    const fresh = await a.provider.getToken(TENANT, "defender");
    assert.notEqual(fresh.accessToken, old.accessToken);
    const onB = await b.provider.getToken(TENANT, "defender");
    assert.equal(onB.accessToken, fresh.accessToken, "B takes A's new token");
    assert.equal(a.client.requests.length + b.client.requests.length, 2, "one token call before and one after, for both");

    // B learned of it first and asks first: B goes past MSAL's cache (it may hold the old token), A takes B's.
    a.provider.invalidate(TENANT, "defender");
    const byB = await b.provider.getToken(TENANT, "defender");
    assert.equal(b.client.requests.length, 1);
    assert.equal(b.client.requests[0]!.skipCache, true);
    assert.equal((await a.provider.getToken(TENANT, "defender")).accessToken, byB.accessToken);
    assert.equal(a.client.requests.length, 2, "A took B's token");
  });

  it("never shares a token whose flight began before an invalidation", async () => {
    const fleet = new FakeFleet();
    const b = replica(fleet.replica());
    const a = replica(fleet.replica());
    const gate = deferred();
    b.client.respond = async (_r, tenant) => {
      await gate.promise;
      return result(await jwt(tenant, Date.now(), HOUR, ["Incident.Read.All"]), new Date(Date.now() + HOUR));
    };
    const flight = b.provider.getToken(TENANT, "defender");
    await until(() => b.client.requests.length === 1, "B's token request");
    a.provider.invalidate(TENANT, "defender");
    gate.resolve();
    await flight;
    assert.equal(fleet.entries.has(`${TENANT}|defender`), false, "the old-roles token was not shared");
    assert.equal(b.provider.stats().cachedTokens, 0, "nor kept by B");
  });
});

describe("RedisSharedTokenCache without Redis", () => {
  it("falls through to MSAL when Redis refuses connections", async () => {
    // Never connected, offline queue off: every command fails at once, as while Redis is away.
    const redis = new Redis("redis://127.0.0.1:9", { lazyConnect: true, enableOfflineQueue: false });
    redis.on("error", () => undefined);
    const cache = new RedisSharedTokenCache(redis, { secret: SECRET, partition: "app|host" });
    const { client, provider } = replica(cache);
    const token = await provider.getToken(TENANT, "defender");
    assert.equal(token.claims!.tid, TENANT);
    assert.equal(client.requests.length, 1);
    assert.equal(provider.stats().acquisitions, 1);
    provider.invalidate(TENANT);
    assert.notEqual((await provider.getToken(TENANT, "defender")).accessToken, token.accessToken);
    assert.equal(client.requests.length, 2);
    redis.disconnect();
  });

  it("falls through to MSAL when Redis accepts the connection but never answers", async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as { port: number }).port;
    // No handshake to wait for (RESP2, no client info, no ready check): connected, then every command hangs.
    const redis = new Redis({ host: "127.0.0.1", port, lazyConnect: true, enableOfflineQueue: false, enableReadyCheck: false, maxRetriesPerRequest: 0, protocol: 2, disableClientInfo: true });
    redis.on("error", () => undefined);
    await redis.connect();
    try {
      const cache = new RedisSharedTokenCache(redis, { secret: SECRET, partition: "app|host", commandTimeoutMs: 100 });
      const { client, provider } = replica(cache);
      const token = await provider.getToken(TENANT, "graph");
      assert.equal(token.claims!.tid, TENANT);
      assert.equal(client.requests.length, 1);
    } finally {
      redis.disconnect();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});

const REDIS_URL = process.env.TEST_REDIS_URL;

describe("RedisSharedTokenCache on Redis", { skip: REDIS_URL ? false : "needs TEST_REDIS_URL" }, () => {
  let redis: Redis;
  const prefixes: string[] = [];
  const caches: RedisSharedTokenCache[] = [];
  /** A fresh key prefix per test: nothing from other runs or tests is found. */
  const prefix = () => {
    const p = `cwtest-${randomBytes(5).toString("hex")}`;
    prefixes.push(p);
    return p;
  };
  const cacheOn = async (p: string, extra: { lockWaitMs?: number; logger?: ReturnType<typeof captureLogger>["logger"]; secret?: string } = {}) => {
    const cache = new RedisSharedTokenCache(redis, { secret: extra.secret ?? SECRET, prefix: p, partition: "app|host", lockWaitMs: extra.lockWaitMs ?? 60_000, ...(extra.logger ? { logger: extra.logger } : {}) });
    await cache.listen();
    caches.push(cache);
    return cache;
  };
  const valueKeys = async (p: string) => (await redis.keys(`${p}:token:*`)).filter((k) => !k.endsWith(":gen") && !k.endsWith(":lock"));

  before(async () => {
    redis = new Redis(REDIS_URL!, { lazyConnect: true });
    // Every cache of this file listens on it (a replica has one): more than the default ten.
    redis.setMaxListeners(50);
    await redis.connect();
  });
  after(async () => {
    for (const cache of caches) await cache.close();
    for (const p of prefixes) {
      const keys = await redis.keys(`${p}:*`);
      if (keys.length > 0) await redis.del(...keys);
    }
    redis.disconnect();
  });

  it("shares one token between two replicas and keeps it encrypted in Redis", async () => {
    const p = prefix();
    const a = replica(await cacheOn(p));
    const b = replica(await cacheOn(p));
    const first = await a.provider.getToken(TENANT, "defender");
    const taken = await b.provider.getToken(TENANT, "defender");
    assert.equal(b.client.requests.length, 0);
    assert.equal(taken.accessToken, first.accessToken);
    assert.equal(taken.fromCache, true);
    assert.deepEqual(taken.claims!.roles, ["Incident.ReadWrite.All"]);

    const keys = await valueKeys(p);
    assert.equal(keys.length, 1);
    assert.ok(keys[0]!.includes(`{${TENANT}}:defender`), keys[0]);
    const value = (await redis.get(keys[0]!))!;
    assert.match(value, /^v1\./);
    assert.ok(!value.includes(first.accessToken) && !value.includes(first.accessToken.split(".")[1]!) && !value.includes(SECRET));
    const ttl = await redis.pttl(keys[0]!);
    assert.ok(ttl > HOUR - 5 * MINUTE && ttl <= HOUR, `expires with the token: ${ttl}`);
  });

  it("treats a value moved under another tenant's key, or tampered with, as a miss, and says so", async () => {
    const p = prefix();
    const logs = captureLogger("debug");
    const a = replica(await cacheOn(p));
    const bCache = await cacheOn(p, { logger: logs.logger });
    const b = replica(bCache);
    await a.provider.getToken(TENANT, "defender");
    const [key] = await valueKeys(p);
    const value = (await redis.get(key!))!;
    // The same ciphertext under the other tenant's key name: it names this tenant's key in its AAD.
    const moved = key!.replace(TENANT, OTHER);
    await redis.set(moved, value, "PX", HOUR);
    const other = await b.provider.getToken(OTHER, "defender");
    assert.equal(other.claims!.tid, OTHER);
    assert.equal(b.client.requests.length, 1, "the moved value was not used");
    assert.equal(bCache.stats().unreadable, 1);
    assert.ok(logs.lines.some((l) => l.includes('"level":40') && l.includes("did not decrypt")), logs.lines.join("\n"));

    const raw = Buffer.from(value.slice(3), "base64url");
    raw[raw.length - 20]! ^= 0x01;
    await redis.set(key!, `v1.${raw.toString("base64url")}`, "PX", HOUR);
    const own = await b.provider.getToken(TENANT, "defender");
    assert.equal(own.claims!.tid, TENANT);
    assert.equal(b.client.requests.length, 2, "the tampered value was not used");
    assert.equal(bCache.stats().unreadable, 2);
    // B's token replaced the tampered value: a third replica takes it.
    const c = replica(await cacheOn(p));
    assert.equal((await c.provider.getToken(TENANT, "defender")).accessToken, own.accessToken);
    assert.equal(c.client.requests.length, 0);
    assert.ok(logs.lines.every((l) => !l.includes(own.accessToken) && !l.includes(SECRET)));
  });

  it("does not use a stored token due for renewal; a replica with another TOKEN_CACHE_KEY cannot read it", async () => {
    const p = prefix();
    const a = replica(await cacheOn(p));
    a.client.lifetimeMs = 4 * MINUTE;
    await a.provider.getToken(TENANT, "defender");
    assert.equal((await valueKeys(p)).length, 1, "stored, with less than the refresh margin left");
    const b = replica(await cacheOn(p));
    assert.equal((await b.provider.getToken(TENANT, "defender")).fromCache, false);
    assert.equal(b.client.requests.length, 1);

    const stranger = replica(await cacheOn(p, { secret: `${SECRET}-another` }));
    assert.equal((await stranger.provider.getToken(TENANT, "defender")).fromCache, false);
    assert.equal(stranger.client.requests.length, 1);
  });

  it("lets one replica ask Entra while the others wait for its token", async () => {
    const p = prefix();
    const fleet = await Promise.all([cacheOn(p), cacheOn(p), cacheOn(p)]);
    const replicas = fleet.map((cache) => replica(cache));
    const gate = deferred();
    for (const r of replicas) {
      const own = r.client.respond;
      r.client.respond = async (request, tenant) => {
        await gate.promise;
        return own(request, tenant);
      };
    }
    const tokens = replicas.map((r) => r.provider.getToken(TENANT, "graph"));
    // One replica holds the turn and asks; the other two are waiting for it.
    await until(() => replicas.reduce((n, r) => n + r.client.requests.length, 0) === 1 && fleet.reduce((n, c) => n + c.stats().waits, 0) === 2, "one request and two waiters");
    gate.resolve();
    const answers = await Promise.all(tokens);
    assert.equal(new Set(answers.map((t) => t.accessToken)).size, 1);
    assert.equal(replicas.reduce((n, r) => n + r.client.requests.length, 0), 1, "one token request for the fleet");
  });

  it("after an invalidation, drops every replica's copy and refuses to share a token asked for before it", async () => {
    const p = prefix();
    const aCache = await cacheOn(p);
    const bCache = await cacheOn(p);
    const a = replica(aCache);
    const b = replica(bCache);
    const old = await a.provider.getToken(TENANT, "defender");
    await b.provider.getToken(TENANT, "defender");
    assert.equal(b.provider.stats().cachedTokens, 1);

    a.provider.invalidate(TENANT);
    await until(() => b.provider.stats().cachedTokens === 0, "B to hear of the invalidation");
    assert.equal(bCache.stats().invalidationsReceived, 1);
    assert.equal(aCache.stats().invalidationsReceived, 0, "A ignores its own message");
    assert.deepEqual(await valueKeys(p), []);
    const fresh = await b.provider.getToken(TENANT, "defender");
    assert.notEqual(fresh.accessToken, old.accessToken);
    assert.equal(b.client.requests.at(-1)!.skipCache, true, "past B's MSAL cache");
    assert.equal((await a.provider.getToken(TENANT, "defender")).accessToken, fresh.accessToken, "A takes B's new token");
    assert.equal(a.client.requests.length, 1);

    // A token request under way on B while A invalidates: its answer is neither shared nor kept.
    const gate = deferred();
    b.client.respond = async (_r, tenant) => {
      await gate.promise;
      return result(await jwt(tenant, Date.now()), new Date(Date.now() + HOUR));
    };
    const flight = b.provider.getToken(TENANT, "graph");
    await until(() => b.client.requests.length === 2, "B's graph request");
    a.provider.invalidate(TENANT, "graph");
    await until(() => bCache.stats().invalidationsReceived === 2, "B to hear of the second invalidation");
    gate.resolve();
    await flight;
    assert.equal((await valueKeys(p)).filter((k) => k.endsWith(":graph")).length, 0, "not shared");
    assert.equal(b.provider.stats().cachedTokens, 1, "not kept: B holds its defender token only");
  });

  it("refuses to store a token looked up before an invalidation, and gives the turn up", async () => {
    const p = prefix();
    const one = await cacheOn(p);
    const two = await cacheOn(p);
    const lookup = await one.lookup(TENANT, "graph", { usable: () => true });
    assert.ok(lookup.ticket, "nothing stored yet: a ticket");
    await two.invalidate(TENANT, ["graph"]);
    assert.equal(await lookup.ticket.store({ accessToken: "token-asked-for-before", expiresAt: Date.now() + HOUR }, HOUR), false);
    assert.equal(one.stats().storesRefused, 1);
    assert.deepEqual(await valueKeys(p), []);
    // The refused store ended the turn: the next lookup gets its own at once, without waiting.
    const next = await two.lookup(TENANT, "graph", { usable: () => true });
    assert.ok(next.ticket);
    assert.equal(two.stats().waits, 0);
    assert.equal(await next.ticket.store({ accessToken: "token-asked-for-after", expiresAt: Date.now() + HOUR }, HOUR), true);
    const found = await one.lookup(TENANT, "graph", { usable: () => true });
    assert.equal(found.token?.accessToken, "token-asked-for-after");
  });
});
