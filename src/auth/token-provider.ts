import { randomUUID } from "node:crypto";
import type { AuthenticationResult, ClientCredentialRequest } from "@azure/msal-node";
import type { Logger } from "pino";
import { tokenEndpointLogOf, type TokenEndpointLog } from "./msal-client.js";
import type { SharedToken, SharedTokenCache, SharedTokenLookup, SharedTokenTicket } from "./shared-token-cache.js";
import { readTokenClaims, tokenFingerprint, type TokenClaims } from "./token-claims.js";
import { TokenAcquisitionError, toTokenAcquisitionError, type TokenErrorCode } from "./token-errors.js";

/** The APIs Crosswatch needs tokens for. */
export type TokenResource = "defender" | "graph";
/** Every `TokenResource`, for validation and iteration. */
export const TOKEN_RESOURCES: readonly TokenResource[] = ["defender", "graph"];

/** App ID URIs of the resources in the public cloud; sovereign clouds pass their own. */
export const DEFAULT_RESOURCE_URIS: Record<TokenResource, string> = {
  defender: "https://api.security.microsoft.com",
  graph: "https://graph.microsoft.com",
};

/** An app-only access token for one tenant and resource. */
export interface AccessToken {
  /** The bearer token. Never log it; log `fingerprint`. */
  accessToken: string;
  /** When it expires, on the provider's clock. */
  expiresOn: Date;
  /** True when no token call was made for this answer (provider memory, the fleet's shared cache, or MSAL's cache). */
  fromCache: boolean;
  /**
   * The decoded claims; undefined when the token is not a readable JWT (Microsoft may issue opaque or
   * encrypted access tokens). Such a token is used all the same: the API it is sent to decides.
   */
  claims: TokenClaims | undefined;
  /** First 12 hex digits of the token's SHA-256: safe for logs. */
  fingerprint: string;
}

/** Per-call options of `getToken`. */
export interface GetTokenOptions {
  /** Stops this caller's wait (the operation's deadline); a shared token call goes on for the others. */
  signal?: AbortSignal;
  /**
   * An explicit re-check (a token diagnosis): ask Entra even while a lasting failure of this tenant is
   * remembered, and remember the answer instead. Retry-after windows still hold (MSAL would refuse anyway).
   */
  recheck?: boolean;
}

/** Counters since the provider was created, for metrics. */
export interface TokenProviderStats {
  /** `getToken` calls. */
  requests: number;
  /** Answered from the provider's memory, or from the fleet's shared cache (no call into MSAL). */
  cacheHits: number;
  /** Joined a token call another caller had started. */
  coalesced: number;
  /** Calls into MSAL (flights). */
  acquisitions: number;
  /** Flights that ended with a token call to Entra (rather than MSAL's cache). */
  tokensIssued: number;
  /** Flights that failed. */
  failures: number;
  /** Refused without a call: a retry-after window was still running, or a lasting failure was remembered. */
  backoffRefusals: number;
  /** Tokens held in memory. */
  cachedTokens: number;
}

/** Gives app-only tokens per customer tenant. The transport for the Defender and Graph clients. */
export interface TokenProvider {
  /**
   * A valid token for the tenant and resource, renewed when less than the refresh margin is left.
   *
   * @throws TokenAcquisitionError with a public code; the signal's reason when `signal` aborts first
   */
  getToken(tenantId: string, resource: TokenResource, options?: GetTokenOptions): Promise<AccessToken>;
  /**
   * Forgets the tenant's tokens (for one resource or both), so the next call fetches a fresh one past MSAL's
   * cache: for an API that answered 401 to a token that should be valid (consent revoked, roles changed).
   */
  invalidate(tenantId: string, resource?: TokenResource): void;
  /**
   * Forgets the tenant's remembered lasting failures (both resources), so the next call asks Entra: after a
   * consent, or when an operator changed the tenant. Retry-after windows stay (MSAL keeps its own).
   */
  forgetFailures(tenantId: string): void;
  stats(): TokenProviderStats;
}

/** The part of MSAL's `ConfidentialClientApplication` the provider uses (a test double implements just this). */
export interface ClientCredentialClient {
  acquireTokenByClientCredential(request: ClientCredentialRequest): Promise<AuthenticationResult | null>;
}

/** How `MsalTokenProvider` is built: the MSAL client, where tenants live, and its clock and margins. */
export interface TokenProviderOptions {
  /** The process's one MSAL client (`createConfidentialClient`). */
  client: ClientCredentialClient;
  /** Same value the client was built with; each request's authority is `${authorityHost}/${tenantId}`. */
  authorityHost: string;
  /** App ID URIs per resource; default `DEFAULT_RESOURCE_URIS`. */
  resourceUris?: Partial<Record<TokenResource, string>>;
  /** Renew a token when less than this is left. Default 5 minutes (MSAL's own margin is 300 s too). */
  refreshMarginMs?: number;
  /**
   * When a renewal fails transiently (throttling, outage), the current token is still handed out while at
   * least this much of it is left. Default 60 s: enough for one upstream call with its timeout.
   */
  minValidityMs?: number;
  /**
   * How long a lasting failure (`TokenAcquisitionError.lasting`: no consent, tenant unknown, app blocked or
   * its credential refused, …) is remembered and given again without asking Entra. Default 0: not at all
   * (the app passes TENANT_FAILURE_MEMORY_SECONDS).
   */
  failureMemoryMs?: number;
  /** The clock, Unix ms. Tests pass the sandbox's (advanceable) clock. */
  now?: () => number;
  logger?: Logger;
  /** Where the network layer recorded failed answers; default the one of `client`, if it has one. */
  answers?: TokenEndpointLog;
  /**
   * Tokens shared by every replica (REDIS_URL and TOKEN_CACHE_KEY): consulted before a token request, filled
   * after one, and invalidated with this provider's memory. Unset: this replica's tokens are its own.
   */
  shared?: SharedTokenCache;
}

/**
 * A tenant's own state (no consent, no Defender) is routine and logged as info; transient trouble as a
 * warning; what Crosswatch's operator must fix (credential, configuration, bugs) as an error.
 */
const FAILURE_LOG_LEVELS: Record<TokenErrorCode, "info" | "warn" | "error"> = {
  CONSENT_REQUIRED: "info",
  RESOURCE_NOT_PROVISIONED: "info",
  MISSING_ROLE: "info",
  TENANT_NOT_FOUND: "info",
  ACCESS_BLOCKED: "info",
  THROTTLED: "warn",
  TOKEN_ENDPOINT_UNAVAILABLE: "warn",
  INVALID_CLIENT_CREDENTIAL: "error",
  CREDENTIAL_EXPIRED: "error",
  TOKEN_REQUEST_REJECTED: "error",
  TENANT_MISMATCH: "error",
  INTERNAL: "error",
};

/** How long past the refresh margin a token of unknown expiry (opaque, and no `expiresOn`) is used. */
const UNKNOWN_EXPIRY_MS = 60_000;

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface CachedToken {
  accessToken: string;
  /** Provider clock. */
  expiresAt: number;
  claims: TokenClaims | undefined;
  fingerprint: string;
}

/** A failure the provider gives again, without calling, until `until`. */
interface Backoff {
  /** Provider clock. */
  until: number;
  error: TokenAcquisitionError;
  /**
   * False: a retry-after window (429, 5xx, Retry-After) that MSAL itself also enforces. True: a lasting
   * failure remembered for `failureMemoryMs`, which a re-check passes and `forgetFailures` drops.
   */
  lasting: boolean;
}

/**
 * `TokenProvider` over MSAL's confidential client.
 *
 * - Memory: the provider keeps each (tenant, resource) token and serves it until less than the refresh
 *   margin is left; the next call after that renews it. No timers, nothing runs in the background.
 * - Single flight: MSAL does not lock, so concurrent callers for one (tenant, resource) share one call.
 *   A caller's AbortSignal ends its own wait, never the shared call.
 * - Failures are remembered where MSAL itself now refuses identical requests (429, 5xx, Retry-After):
 *   until then the provider refuses without calling, with the remaining retry-after. A renewal that fails
 *   that way keeps serving the current token while `minValidityMs` of it is left.
 * - Lasting failures (no consent, unknown tenant, app blocked or its credential refused) are remembered for
 *   `failureMemoryMs` and given again — same code, message and hint, `retryAfterSeconds` the time left —
 *   without a call, as MSAL does for throttling. A re-check (`recheck`) asks anyway and remembers its
 *   answer; `forgetFailures` (consent granted, tenant changed) and any success end the memory.
 * - Every token is decoded and its `tid` checked against the tenant asked for — when it can be: a token
 *   that is not a readable JWT (opaque, encrypted) is used without claims, its expiry taken from MSAL's
 *   `expiresOn`, and the API it is sent to decides whether it is good.
 * - With a shared cache (`shared`), a flight first looks there: a token another replica stored that is valid
 *   for longer than the refresh margin is a cache hit (no call into MSAL); otherwise the flight asks MSAL and
 *   stores the token for the others. While another replica is asking for the same token, the lookup waits
 *   for it. `invalidate` reaches the shared cache and, through it, the other replicas' memory. The shared
 *   cache never fails a token request: when it is unreachable the flight asks MSAL, as without one.
 */
export class MsalTokenProvider implements TokenProvider {
  private readonly client: ClientCredentialClient;
  private readonly authorityHost: string;
  private readonly scopes: Record<TokenResource, string>;
  private readonly refreshMarginMs: number;
  private readonly minValidityMs: number;
  private readonly failureMemoryMs: number;
  private readonly now: () => number;
  private readonly logger: Logger | undefined;
  private readonly answers: TokenEndpointLog | undefined;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly flights = new Map<string, Promise<AccessToken>>();
  private readonly backoffs = new Map<string, Backoff>();
  /** Keys whose next acquisition must skip MSAL's cache. */
  private readonly stale = new Set<string>();
  private readonly shared: SharedTokenCache | undefined;
  /**
   * Keys another replica invalidated: the next acquisition skips MSAL's cache (which may still hold the old
   * token), though a token stored in the shared cache since the invalidation is used.
   */
  private readonly renew = new Set<string>();
  /**
   * This replica's invalidations of shared entries: under way, or failed (false). A flight waits for the one
   * of its key, so it never takes back the token just invalidated; a failed one is tried again, and failing
   * again, the flight leaves the shared cache alone.
   */
  private readonly sharedInvalidations = new Map<string, Promise<boolean>>();
  private lastSharedWarning = 0;
  /**
   * Bumped by `invalidate` and `forgetFailures`, so a flight that started before cannot store its (maybe
   * old) token or remember its (maybe outdated) failure.
   */
  private readonly generations = new Map<string, number>();
  private readonly counters = {
    requests: 0,
    cacheHits: 0,
    coalesced: 0,
    acquisitions: 0,
    tokensIssued: 0,
    failures: 0,
    backoffRefusals: 0,
  };

  constructor(options: TokenProviderOptions) {
    this.client = options.client;
    this.authorityHost = options.authorityHost.replace(/\/+$/, "");
    const uris = { ...DEFAULT_RESOURCE_URIS, ...options.resourceUris };
    this.scopes = {
      defender: `${uris.defender.replace(/\/+$/, "")}/.default`,
      graph: `${uris.graph.replace(/\/+$/, "")}/.default`,
    };
    this.refreshMarginMs = options.refreshMarginMs ?? 5 * 60_000;
    this.minValidityMs = Math.min(options.minValidityMs ?? 60_000, this.refreshMarginMs);
    this.failureMemoryMs = Math.max(0, options.failureMemoryMs ?? 0);
    this.now = options.now ?? Date.now;
    this.logger = options.logger?.child({ component: "token-provider" });
    this.answers = options.answers ?? tokenEndpointLogOf(options.client);
    this.shared = options.shared;
    this.shared?.onInvalidated((tenantId, resources) => this.dropInvalidated(tenantId, resources));
  }

  async getToken(tenantId: string, resource: TokenResource, options: GetTokenOptions = {}): Promise<AccessToken> {
    this.counters.requests++;
    options.signal?.throwIfAborted();
    const tenant = tenantId.trim().toLowerCase();
    if (!GUID.test(tenant)) {
      // A domain or `common` would name no single tenant to check the token's tid against.
      throw new TokenAcquisitionError({ code: "TENANT_NOT_FOUND", resource, detail: "tenant ids are GUIDs" });
    }
    if (!(TOKEN_RESOURCES as readonly string[]).includes(resource)) {
      throw new TokenAcquisitionError({ code: "INTERNAL", tenantId: tenant, detail: "unknown resource" });
    }
    const key = `${tenant}|${resource}`;

    const cached = this.tokens.get(key);
    if (cached && !this.stale.has(key) && cached.expiresAt - this.now() > this.refreshMarginMs) {
      this.counters.cacheHits++;
      return this.answer(cached, true);
    }

    let flight = this.flights.get(key);
    if (flight) {
      this.counters.coalesced++;
    } else {
      const backoff = this.backoffs.get(key);
      if (backoff) {
        const leftMs = backoff.until - this.now();
        if (leftMs <= 0) {
          this.backoffs.delete(key);
        } else if (backoff.lasting) {
          // Nothing will change until someone acts: give the same answer, unless this is the re-check.
          if (!options.recheck) {
            this.counters.backoffRefusals++;
            throw backoff.error.rememberedFor(Math.ceil(leftMs / 1000));
          }
        } else {
          // Renewal is due but Entra asked us to wait: a token that is still good enough carries on.
          if (cached && this.usable(key, cached)) {
            this.counters.cacheHits++;
            return this.answer(cached, true);
          }
          this.counters.backoffRefusals++;
          throw backoff.error.withRetryAfter(Math.ceil(leftMs / 1000));
        }
      }
      flight = this.acquire(key, tenant, resource).finally(() => this.flights.delete(key));
      this.flights.set(key, flight);
    }
    return options.signal ? raceAbort(flight, options.signal) : flight;
  }

  invalidate(tenantId: string, resource?: TokenResource): void {
    const tenant = tenantId.trim().toLowerCase();
    const resources = resource ? [resource] : TOKEN_RESOURCES;
    for (const r of resources) {
      const key = `${tenant}|${r}`;
      this.tokens.delete(key);
      this.stale.add(key);
      this.generations.set(key, (this.generations.get(key) ?? 0) + 1);
    }
    // Every replica drops the token too (a consent changed its roles; an API refused it).
    if (this.shared && GUID.test(tenant)) void this.invalidateShared(tenant, resources);
  }

  forgetFailures(tenantId: string): void {
    const tenant = tenantId.trim().toLowerCase();
    for (const r of TOKEN_RESOURCES) {
      const key = `${tenant}|${r}`;
      if (this.backoffs.get(key)?.lasting) this.backoffs.delete(key);
      this.generations.set(key, (this.generations.get(key) ?? 0) + 1);
    }
  }

  stats(): TokenProviderStats {
    return { ...this.counters, cachedTokens: this.tokens.size };
  }

  /**
   * One flight: a token another replica shared, or else ask MSAL, renew past its cache when its token is too
   * close to expiry, check the token, and share it.
   */
  private async acquire(key: string, tenant: string, resource: TokenResource): Promise<AccessToken> {
    const started = this.now();
    const generation = this.generations.get(key) ?? 0;
    let ticket: SharedTokenTicket | undefined;
    if (this.shared) {
      const found = await this.fromShared(key, tenant, resource, generation, started);
      if (found.answer) return found.answer;
      ticket = found.ticket;
    }
    this.counters.acquisitions++;
    let correlationId = randomUUID();
    try {
      const request = (skipCache: boolean): ClientCredentialRequest => ({
        scopes: [this.scopes[resource]],
        authority: `${this.authorityHost}/${tenant}`,
        correlationId,
        skipCache,
      });
      const forceNetwork = this.stale.has(key) || this.renew.has(key) || this.tokens.has(key);
      let result = await this.client.acquireTokenByClientCredential(request(forceNetwork));
      let token = this.accept(key, result);
      // MSAL keeps its own cache on its own clock; when its copy is one this provider already considers
      // due for renewal, ask again past MSAL's cache.
      if (result?.fromCache && token && token.expiresAt - this.now() <= this.refreshMarginMs) {
        correlationId = randomUUID();
        result = await this.client.acquireTokenByClientCredential(request(true));
        token = this.accept(key, result);
      }
      if (!result || !token) {
        throw new TokenAcquisitionError({
          code: "TOKEN_ENDPOINT_UNAVAILABLE",
          tenantId: tenant,
          resource,
          correlationId,
          detail: "the answer held no access token",
        });
      }
      // Undefined for a token that is not a readable JWT: nothing to check then (see the class comment).
      const claims = readTokenClaims(token.accessToken);
      if (claims && claims.tid !== tenant) {
        throw new TokenAcquisitionError({
          code: "TENANT_MISMATCH",
          tenantId: tenant,
          resource,
          correlationId,
          detail: `the token's tid is ${claims.tid}`,
        });
      }
      const entry: CachedToken = { accessToken: token.accessToken, expiresAt: token.expiresAt, claims, fingerprint: token.fingerprint };
      if ((this.generations.get(key) ?? 0) === generation) {
        this.tokens.set(key, entry);
        this.stale.delete(key);
        this.renew.delete(key);
      }
      // A token was had: whatever was remembered about this tenant is over.
      if (this.backoffs.get(key)?.lasting) this.backoffs.delete(key);
      if (!result.fromCache) this.counters.tokensIssued++;
      if (ticket) {
        const own = ticket;
        ticket = undefined;
        await this.toShared(own, key, tenant, resource, entry, generation);
      }
      this.logger?.debug(
        {
          tenantId: tenant,
          resource,
          fingerprint: entry.fingerprint,
          expiresOn: new Date(entry.expiresAt).toISOString(),
          fromCache: result.fromCache,
          claimsReadable: claims !== undefined,
          roles: claims?.roles,
          durationMs: this.now() - started,
        },
        "access token acquired",
      );
      return this.answer(entry, result.fromCache);
    } catch (error) {
      this.counters.failures++;
      const failure = toTokenAcquisitionError(error, {
        tenantId: tenant,
        resource,
        correlationId,
        answer: this.answers?.take(correlationId),
      });
      if (failure.retryAfterSeconds !== undefined) {
        this.backoffs.set(key, { until: this.now() + failure.retryAfterSeconds * 1000, error: failure, lasting: false });
      } else if (failure.lasting && this.failureMemoryMs > 0 && (this.generations.get(key) ?? 0) === generation) {
        this.backoffs.set(key, { until: this.now() + this.failureMemoryMs, error: failure, lasting: true });
      }
      // MSAL cached the foreign token under this tenant: the next attempt must go past its cache.
      if (failure.code === "TENANT_MISMATCH") this.stale.add(key);
      const level = FAILURE_LOG_LEVELS[failure.code];
      this.logger?.[level](
        {
          tenantId: tenant,
          resource,
          code: failure.code,
          aadsts: failure.aadsts,
          httpStatus: failure.httpStatus,
          correlationId: failure.correlationId,
          retryAfterSeconds: failure.retryAfterSeconds,
        },
        "access token acquisition failed",
      );
      // A renewal ahead of expiry that hits an outage or throttling keeps the current token while it lasts.
      const current = this.tokens.get(key);
      if (failure.transient && current && this.usable(key, current)) {
        this.logger?.warn({ tenantId: tenant, resource, fingerprint: current.fingerprint }, "renewal failed: serving the current token");
        return this.answer(current, true);
      }
      throw failure;
    } finally {
      // A failed flight gives up its turn: another replica may ask at once.
      ticket?.release();
    }
  }

  /**
   * Before a token request: a token another replica stored and valid for longer than the refresh margin (a
   * cache hit, kept in memory like one from MSAL), or the ticket to store this replica's. Never throws:
   * without the shared cache the flight goes on to MSAL.
   */
  private async fromShared(
    key: string,
    tenant: string,
    resource: TokenResource,
    generation: number,
    started: number,
  ): Promise<{ answer?: AccessToken; ticket?: SharedTokenTicket }> {
    const shared = this.shared!;
    // This replica's own invalidation reaches the shared cache before the flight looks there.
    const pending = this.sharedInvalidations.get(key);
    if (pending && !(await pending) && !(await this.invalidateShared(tenant, [resource]))) return {};
    let found: SharedTokenLookup;
    try {
      found = await shared.lookup(tenant, resource, { usable: (token) => this.sharedUsable(token, tenant, resource) });
    } catch (error) {
      this.sharedTrouble(error, { tenantId: tenant, resource }, "shared token cache unavailable: asking Entra");
      return {};
    }
    if (!found.token) return { ticket: found.ticket };
    const { accessToken, expiresAt } = found.token;
    const claims = readTokenClaims(accessToken);
    const entry: CachedToken = { accessToken, expiresAt, claims, fingerprint: tokenFingerprint(accessToken) };
    if ((this.generations.get(key) ?? 0) === generation) {
      this.tokens.set(key, entry);
      this.stale.delete(key);
      this.renew.delete(key);
    }
    if (this.backoffs.get(key)?.lasting) this.backoffs.delete(key);
    this.counters.cacheHits++;
    this.logger?.debug(
      {
        tenantId: tenant,
        resource,
        fingerprint: entry.fingerprint,
        expiresOn: new Date(entry.expiresAt).toISOString(),
        fromCache: true,
        shared: true,
        claimsReadable: claims !== undefined,
        roles: claims?.roles,
        durationMs: this.now() - started,
      },
      "access token taken from the shared cache",
    );
    return { answer: this.answer(entry, true) };
  }

  /** Whether another replica's token will do here: valid past the refresh margin, issued for this tenant. */
  private sharedUsable(token: SharedToken, tenant: string, resource: TokenResource): boolean {
    if (token.expiresAt - this.now() <= this.refreshMarginMs) return false;
    const claims = readTokenClaims(token.accessToken);
    if (claims && claims.tid !== tenant) {
      this.logger?.warn({ tenantId: tenant, resource, tid: claims.tid, fingerprint: tokenFingerprint(token.accessToken) }, "shared token cache: a stored token names another tenant; asking Entra");
      return false;
    }
    return true;
  }

  /** Shares a token this flight got, unless the key was invalidated meanwhile (it may predate the change). */
  private async toShared(
    ticket: SharedTokenTicket,
    key: string,
    tenant: string,
    resource: TokenResource,
    entry: CachedToken,
    generation: number,
  ): Promise<void> {
    if ((this.generations.get(key) ?? 0) !== generation) {
      ticket.release();
      return;
    }
    try {
      await ticket.store({ accessToken: entry.accessToken, expiresAt: entry.expiresAt }, entry.expiresAt - this.now());
    } catch (error) {
      this.sharedTrouble(error, { tenantId: tenant, resource }, "shared token cache unavailable: the token was not shared");
    }
  }

  /** Deletes the tenant's shared tokens (and so the other replicas' copies); resolves whether that worked. */
  private invalidateShared(tenant: string, resources: readonly TokenResource[]): Promise<boolean> {
    const failed = (error: unknown) => {
      this.sharedTrouble(error, { tenantId: tenant }, "shared token cache unavailable: other replicas keep the invalidated token until they renew it");
      return false;
    };
    let done: Promise<boolean>;
    try {
      done = this.shared!.invalidate(tenant, resources).then(() => true, failed);
    } catch (error) {
      done = Promise.resolve(failed(error));
    }
    for (const r of resources) {
      const key = `${tenant}|${r}`;
      this.sharedInvalidations.set(key, done);
      void done.then((ok) => {
        if (ok && this.sharedInvalidations.get(key) === done) this.sharedInvalidations.delete(key);
      });
    }
    return done;
  }

  /** Another replica invalidated the tenant's tokens: this replica's copies go too. */
  private dropInvalidated(tenantId: string, resources: readonly TokenResource[]): void {
    const tenant = tenantId.trim().toLowerCase();
    for (const r of resources) {
      const key = `${tenant}|${r}`;
      this.tokens.delete(key);
      this.renew.add(key);
      this.generations.set(key, (this.generations.get(key) ?? 0) + 1);
    }
    this.logger?.debug({ tenantId: tenant, resources }, "tokens invalidated by another replica");
  }

  /** A shared cache failure: logged (at most once a minute), never thrown. */
  private sharedTrouble(error: unknown, context: Record<string, unknown>, message: string): void {
    if (Date.now() - this.lastSharedWarning < 60_000) return;
    this.lastSharedWarning = Date.now();
    this.logger?.warn({ ...context, err: { message: error instanceof Error ? error.message : String(error) } }, message);
  }

  /** Whether a token due for renewal may still be handed out: not invalidated, and valid for a while. */
  private usable(key: string, token: CachedToken): boolean {
    return !this.stale.has(key) && token.expiresAt - this.now() > this.minValidityMs;
  }

  /** A copy for a caller: nobody can change the provider's memory through an answer. */
  private answer(token: CachedToken, fromCache: boolean): AccessToken {
    return {
      accessToken: token.accessToken,
      expiresOn: new Date(token.expiresAt),
      fromCache,
      claims: token.claims ? { ...token.claims, roles: [...token.claims.roles] } : undefined,
      fingerprint: token.fingerprint,
    };
  }

  /**
   * The token of an MSAL result with its expiry on the provider's clock, or undefined for an empty answer
   * (MSAL turns a 200 without a token, e.g. a body a proxy mangled, into an empty result).
   *
   * MSAL's `expiresOn` is on the real clock; its remaining lifetime is carried over to the provider's. A
   * token this provider already holds keeps the expiry it was given when it was first received, so MSAL's
   * clock cannot make an old token look fresh. Without `expiresOn` the token's own `exp` is used, and for
   * an opaque token without either, a short life (`UNKNOWN_EXPIRY_MS` past the refresh margin): it is
   * used for a moment and then renewed, rather than trusted for an hour nobody promised.
   */
  private accept(key: string, result: AuthenticationResult | null): { accessToken: string; expiresAt: number; fingerprint: string } | undefined {
    if (!result || typeof result.accessToken !== "string" || result.accessToken === "") return undefined;
    const fingerprint = tokenFingerprint(result.accessToken);
    const known = this.tokens.get(key);
    if (known && known.fingerprint === fingerprint) return { accessToken: result.accessToken, expiresAt: known.expiresAt, fingerprint };
    const exp = result.expiresOn ? undefined : readTokenClaims(result.accessToken)?.exp;
    const expiresAt = result.expiresOn
      ? this.now() + (result.expiresOn.getTime() - Date.now())
      : exp !== undefined
        ? exp * 1000
        : this.now() + this.refreshMarginMs + UNKNOWN_EXPIRY_MS;
    return { accessToken: result.accessToken, expiresAt, fingerprint };
  }
}

/** Builds the process's token provider over its MSAL client. */
export function createTokenProvider(options: TokenProviderOptions): TokenProvider {
  return new MsalTokenProvider(options);
}

/** Settles with `promise`, or rejects with the signal's reason as soon as it aborts; `promise` runs on. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
