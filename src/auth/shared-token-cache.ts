import { createCipheriv, createDecipheriv, createHash, createSecretKey, hkdfSync, randomBytes, randomUUID, type KeyObject } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { TokenResource } from "./token-provider.js";

/** An app-only access token as the fleet shares it. */
export interface SharedToken {
  accessToken: string;
  /** When it expires, Unix ms on the storing replica's clock (replicas' clocks agree within seconds: NTP). */
  expiresAt: number;
}

/** The right to store the token this replica is about to ask Entra for (see `SharedTokenCache.lookup`). */
export interface SharedTokenTicket {
  /**
   * Stores the token for every replica, for `ttlMs`, unless the entry was invalidated since the lookup (the
   * token may then predate a consent), and gives up this replica's turn. Resolves whether it was stored.
   */
  store(token: SharedToken, ttlMs: number): Promise<boolean>;
  /** Gives up this replica's turn without storing (its token request failed). Never throws. */
  release(): void;
}

/** What a lookup found: a token another replica stored, or none and the ticket to store this replica's. */
export type SharedTokenLookup = { token: SharedToken; ticket?: undefined } | { token?: undefined; ticket: SharedTokenTicket };

/**
 * Tokens shared by the replicas of one deployment, so the fleet asks Entra once per tenant and resource per
 * token lifetime (not once per replica). `MsalTokenProvider` consults it before a token request and fills it
 * after one; its own memory stays in front. Every method may reject (the store is unreachable): the provider
 * then asks Entra as it would without one.
 */
export interface SharedTokenCache {
  /**
   * The tenant's token for the resource that some replica stored and `usable` accepts; when there is none,
   * a ticket to store the one this replica will get. While another replica is asking Entra for the same
   * token, waits for its answer (a bounded while) rather than asking too.
   */
  lookup(tenantId: string, resource: TokenResource, options: { usable(token: SharedToken): boolean }): Promise<SharedTokenLookup>;
  /**
   * Deletes the tenant's shared tokens for these resources, makes stores of tokens looked up before fail,
   * and tells the other replicas (`onInvalidated`) to drop their own copies.
   */
  invalidate(tenantId: string, resources: readonly TokenResource[]): Promise<void>;
  /** Called when another replica invalidated a tenant's tokens. */
  onInvalidated(listener: (tenantId: string, resources: TokenResource[]) => void): void;
}

/** Counters of a `RedisSharedTokenCache`, since it was created. */
export interface SharedTokenCacheStats {
  /** Lookups answered with a stored token. */
  hits: number;
  /** Lookups answered with a ticket (this replica asks Entra). */
  misses: number;
  /** Lookups that waited for another replica's token request. */
  waits: number;
  /** Tokens stored. */
  stored: number;
  /** Stores refused because the entry was invalidated since the lookup. */
  storesRefused: number;
  /** Values that failed to decrypt or to parse (tampered, moved, or written with another key): used as misses. */
  unreadable: number;
  /** Invalidations sent, and received from other replicas. */
  invalidationsSent: number;
  invalidationsReceived: number;
}

const VALUE_PREFIX = "v1.";
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Fixed HKDF salt and info: the key is TOKEN_CACHE_KEY's, for this one purpose and format. */
const HKDF_SALT = "crosswatch/token-cache/salt/v1";
const HKDF_INFO = "crosswatch/token-cache/aes-256-gcm/v1";

/**
 * AES-256-GCM under a key derived (HKDF-SHA256) from TOKEN_CACHE_KEY. Each value gets a random 12-byte IV,
 * and is bound to a context (the Redis key name or channel it lives under) as additional authenticated
 * data: a value copied under another tenant's key, or altered, does not open. The key is held in a private
 * `KeyObject`, which neither logs nor serialises.
 */
export class TokenCipher {
  readonly #key: KeyObject;

  /** @throws Error when the secret is shorter than 32 characters (the message never includes it) */
  constructor(secret: string) {
    if (typeof secret !== "string" || secret.length < 32) throw new Error("TOKEN_CACHE_KEY must be at least 32 characters");
    this.#key = createSecretKey(Buffer.from(hkdfSync("sha256", Buffer.from(secret, "utf8"), HKDF_SALT, HKDF_INFO, 32)));
  }

  /** `v1.` and base64url of IV, ciphertext and tag. */
  seal(plaintext: string, context: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(context, "utf8"));
    const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return VALUE_PREFIX + Buffer.concat([iv, body, cipher.getAuthTag()]).toString("base64url");
  }

  /** The plaintext, or undefined when the value does not open under this key and context. */
  open(sealed: string, context: string): string | undefined {
    if (typeof sealed !== "string" || !sealed.startsWith(VALUE_PREFIX)) return undefined;
    const raw = Buffer.from(sealed.slice(VALUE_PREFIX.length), "base64url");
    if (raw.length < IV_BYTES + TAG_BYTES) return undefined;
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.#key, raw.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(context, "utf8"));
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString("utf8");
    } catch {
      return undefined;
    }
  }
}

/**
 * Stores the token when the entry's generation is still the one read at lookup, then gives up the lock if
 * this replica holds it. KEYS: value, generation, lock. ARGV: generation read ('' for none), value, ttl ms,
 * lock owner ('' for none).
 */
const STORE = `
local stored = 0
if (redis.call('GET', KEYS[2]) or '') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  stored = 1
end
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
return stored
`;

/** Gives up the lock if the owner still holds it. KEYS: lock. ARGV: owner. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * Deletes values and bumps their generations (so a token looked up before cannot be stored), then tells the
 * other replicas. KEYS: value, generation per resource. ARGV: channel, message, generation ttl ms.
 */
const INVALIDATE = `
for i = 1, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  redis.call('INCR', KEYS[i + 1])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[3])
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`;

/** How long a generation outlives its last invalidation: far longer than any token request. */
const GENERATION_TTL_MS = 24 * 3_600_000;

/** How `RedisSharedTokenCache` is built. */
export interface RedisSharedTokenCacheOptions {
  /** TOKEN_CACHE_KEY: at least 32 characters, the same on every replica. */
  secret: string;
  /** REDIS_PREFIX. Default `cw`. */
  prefix?: string;
  /**
   * Whose tokens these are, e.g. the app's client id and authority host: replicas configured for another app
   * or cloud (a rolling change of AZURE_CLIENT_ID) use other keys and never take each other's tokens.
   */
  partition: string;
  /** Longest wait for one Redis answer; then the command counts as failed. Default 1 s. */
  commandTimeoutMs?: number;
  /** Longest wait for another replica's token request before asking Entra anyway. Default 3 s. */
  lockWaitMs?: number;
  /** How long a replica's turn to ask Entra lasts at most (it ends earlier on store or release). Default 15 s. */
  lockTtlMs?: number;
  logger?: Logger;
}

/**
 * `SharedTokenCache` in Redis, encrypted. Per (tenant, resource): the sealed token with a TTL until its
 * expiry; a generation, bumped by each invalidation, that a store must still find; and a short lock, so one
 * replica asks Entra while the others wait for its token. Invalidations reach the other replicas through a
 * pub/sub channel (sealed too), on a connection of its own that ends with the one given.
 *
 * Keys: `{prefix}:token:{partition hash}:{{tenant}}:{resource}` (and `:gen`, `:lock`); the tenant is the
 * hash tag, so one tenant's keys share a cluster slot. Tokens never appear in Redis in clear, nor in a log.
 */
export class RedisSharedTokenCache implements SharedTokenCache {
  private readonly cipher: TokenCipher;
  private readonly base: string;
  private readonly channel: string;
  private readonly commandTimeoutMs: number;
  private readonly lockWaitMs: number;
  private readonly lockTtlMs: number;
  private readonly logger: Logger | undefined;
  /** Tells this replica's own invalidations (echoed by the channel) from the others'. */
  private readonly origin = randomUUID();
  private readonly listeners: ((tenantId: string, resources: TokenResource[]) => void)[] = [];
  private subscriber: Redis | undefined;
  private endSubscriber: (() => void) | undefined;
  private lastUnreadableWarning = 0;
  private readonly counters: SharedTokenCacheStats = {
    hits: 0,
    misses: 0,
    waits: 0,
    stored: 0,
    storesRefused: 0,
    unreadable: 0,
    invalidationsSent: 0,
    invalidationsReceived: 0,
  };

  constructor(
    private readonly redis: Redis,
    options: RedisSharedTokenCacheOptions,
  ) {
    this.cipher = new TokenCipher(options.secret);
    const partition = createHash("sha256").update(options.partition).digest("hex").slice(0, 12);
    this.base = `${options.prefix ?? "cw"}:token:${partition}`;
    this.channel = `${this.base}:invalidated`;
    this.commandTimeoutMs = options.commandTimeoutMs ?? 1_000;
    this.lockWaitMs = options.lockWaitMs ?? 3_000;
    this.lockTtlMs = options.lockTtlMs ?? 15_000;
    this.logger = options.logger?.child({ component: "shared-token-cache" });
  }

  /**
   * Subscribes to other replicas' invalidations, on a duplicate of the connection that is closed when the
   * given one ends. Without it the cache works, but this replica keeps its own copy of an invalidated token
   * until it is due for renewal.
   */
  async listen(): Promise<void> {
    if (this.subscriber) return;
    const subscriber = this.redis.duplicate();
    this.subscriber = subscriber;
    subscriber.on("error", (error: Error) => this.logger?.warn({ err: { message: error.message } }, "token invalidation channel: redis connection error"));
    subscriber.on("message", (channel: string, message: string) => this.received(channel, message));
    this.endSubscriber = () => subscriber.disconnect();
    this.redis.once("end", this.endSubscriber);
    if (subscriber.status === "wait") await subscriber.connect();
    await subscriber.subscribe(this.channel);
  }

  /** Closes the subscription (the given connection stays the caller's). */
  async close(): Promise<void> {
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    if (this.endSubscriber) this.redis.off("end", this.endSubscriber);
    this.endSubscriber = undefined;
    await subscriber?.quit().catch(() => subscriber.disconnect());
  }

  onInvalidated(listener: (tenantId: string, resources: TokenResource[]) => void): void {
    this.listeners.push(listener);
  }

  async lookup(tenantId: string, resource: TokenResource, options: { usable(token: SharedToken): boolean }): Promise<SharedTokenLookup> {
    const key = this.key(tenantId, resource);
    const deadline = Date.now() + this.lockWaitMs;
    let pause = 25;
    let waited = false;
    for (;;) {
      const [value, generation] = await this.command(() => this.redis.mget(key, `${key}:gen`));
      const token = value ? this.read(value, key, tenantId, resource) : undefined;
      if (token && options.usable(token)) {
        this.counters.hits++;
        return { token };
      }
      const owner = randomUUID();
      const locked = (await this.command(() => this.redis.set(`${key}:lock`, owner, "PX", this.lockTtlMs, "NX"))) === "OK";
      if (locked || Date.now() >= deadline) {
        this.counters.misses++;
        return { ticket: this.ticket(key, generation ?? "", locked ? owner : "") };
      }
      // Another replica is asking Entra for this token: its answer lands here shortly.
      if (!waited) this.counters.waits++;
      waited = true;
      await sleep(Math.min(pause, Math.max(1, deadline - Date.now())));
      pause = Math.min(pause * 2, 200);
    }
  }

  async invalidate(tenantId: string, resources: readonly TokenResource[]): Promise<void> {
    if (resources.length === 0) return;
    const keys = resources.flatMap((resource) => {
      const key = this.key(tenantId, resource);
      return [key, `${key}:gen`];
    });
    const message = this.cipher.seal(JSON.stringify({ o: this.origin, t: tenantId, r: resources }), this.channel);
    this.counters.invalidationsSent++;
    await this.command(() => this.redis.eval(INVALIDATE, keys.length, ...keys, this.channel, message, GENERATION_TTL_MS));
  }

  stats(): SharedTokenCacheStats {
    return { ...this.counters };
  }

  private ticket(key: string, generation: string, owner: string): SharedTokenTicket {
    let done = false;
    return {
      store: async (token, ttlMs) => {
        if (done) return false;
        done = true;
        const ttl = Math.floor(ttlMs);
        if (!(ttl > 0)) {
          this.releaseLock(key, owner);
          return false;
        }
        const value = this.cipher.seal(JSON.stringify({ t: token.accessToken, e: token.expiresAt }), key);
        const stored = Number(await this.command(() => this.redis.eval(STORE, 3, key, `${key}:gen`, `${key}:lock`, generation, value, ttl, owner))) === 1;
        if (stored) this.counters.stored++;
        else this.counters.storesRefused++;
        return stored;
      },
      release: () => {
        if (done) return;
        done = true;
        this.releaseLock(key, owner);
      },
    };
  }

  private releaseLock(key: string, owner: string): void {
    if (owner === "") return;
    // Best effort: the lock expires by itself (lockTtlMs) when Redis cannot be reached.
    void this.command(() => this.redis.eval(RELEASE, 1, `${key}:lock`, owner)).catch(() => undefined);
  }

  /** The stored token, or undefined (logged) when the value does not open under this key name. */
  private read(value: string, key: string, tenantId: string, resource: TokenResource): SharedToken | undefined {
    const plaintext = this.cipher.open(value, key);
    let token: SharedToken | undefined;
    if (plaintext !== undefined) {
      try {
        const parsed = JSON.parse(plaintext) as { t?: unknown; e?: unknown };
        if (typeof parsed.t === "string" && parsed.t !== "" && typeof parsed.e === "number" && Number.isFinite(parsed.e)) {
          token = { accessToken: parsed.t, expiresAt: parsed.e };
        }
      } catch {
        token = undefined;
      }
    }
    if (!token) {
      this.counters.unreadable++;
      // Altered, copied from another key, or sealed under another TOKEN_CACHE_KEY (replicas disagree on it).
      if (Date.now() - this.lastUnreadableWarning > 60_000) {
        this.lastUnreadableWarning = Date.now();
        this.logger?.warn({ tenantId, resource }, "shared token cache: a stored token did not decrypt (tampered, or TOKEN_CACHE_KEY differs between replicas); asking Entra");
      }
    }
    return token;
  }

  private received(channel: string, message: string): void {
    if (channel !== this.channel) return;
    const plaintext = this.cipher.open(message, channel);
    let event: { o?: unknown; t?: unknown; r?: unknown } | undefined;
    try {
      event = plaintext === undefined ? undefined : (JSON.parse(plaintext) as typeof event);
    } catch {
      event = undefined;
    }
    if (!event || typeof event.t !== "string" || !Array.isArray(event.r)) {
      this.logger?.warn("token invalidation channel: a message did not decrypt; ignored");
      return;
    }
    if (event.o === this.origin) return;
    this.counters.invalidationsReceived++;
    const resources = event.r.filter((r): r is TokenResource => r === "defender" || r === "graph");
    for (const listener of this.listeners) {
      try {
        listener(event.t, resources);
      } catch (error) {
        this.logger?.error({ err: error }, "token invalidation listener failed");
      }
    }
  }

  private key(tenantId: string, resource: TokenResource): string {
    return `${this.base}:{${tenantId}}:${resource}`;
  }

  /** A Redis command that fails after `commandTimeoutMs` rather than hold a token request up. */
  private async command<T>(run: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        run(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`redis did not answer within ${this.commandTimeoutMs} ms`)), this.commandTimeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** The fleet's token cache over the app's Redis connection, listening for other replicas' invalidations. */
export async function openSharedTokenCache(redis: Redis, options: RedisSharedTokenCacheOptions): Promise<RedisSharedTokenCache> {
  const cache = new RedisSharedTokenCache(redis, options);
  await cache.listen();
  return cache;
}
