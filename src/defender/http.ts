import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { request, type Dispatcher } from "undici";
import { TokenAcquisitionError } from "../auth/token-errors.js";
import type { TokenProvider, TokenResource } from "../auth/token-provider.js";
import { UpstreamError, type UpstreamErrorCode } from "./backend-client.js";
import type { IncidentsBackendName } from "./incident.js";
import { sleep, type RateBucket, type RateBudget } from "./rate-budget.js";

/**
 * The one request helper of the incident clients: token, rate budget, timeouts, retries, size limit and
 * error mapping for a single logical call (one page, one get, one write).
 *
 * Retry policy:
 * - reads (GET): 5xx, connection failures and per-attempt timeouts are retried with full-jitter
 *   exponential back-off, `maxAttempts` in all, while the back-off fits the deadline; 429 waits for
 *   Retry-After (through the rate budget, which then holds every call of that tenant and bucket) while
 *   that fits the deadline, at most `maxThrottleRetries` times. A 503 with Retry-After (Graph documents it
 *   on 503 as on 429) waits as asked instead of the back-off, on the same terms; past the deadline it is
 *   UPSTREAM_UNAVAILABLE with `retryAfterSeconds`, not re-sent. A 503 without it is an ordinary 5xx.
 * - writes (PATCH, POST): never re-sent once a byte may have reached the server. They are retried only
 *   when the connection could not be opened at all (refused, DNS, connect timeout: nothing was sent), and
 *   once after a 401 — the one answer that proves the write was not applied (authentication happens
 *   before anything else) — with a fresh token. A 429, 5xx, reset or timeout on a write is reported
 *   (with the Retry-After of a 429 or 503 as `retryAfterSeconds`).
 * - 401 on any call: the token is invalidated and the call made once more with a new one; a second 401
 *   is CONSENT_REQUIRED. Token failures (`TokenAcquisitionError`) propagate unchanged.
 * - Bad bodies (unparseable, truncated, too large) are not retried: a server that sent one will likely
 *   send it again, and each try costs quota.
 */

export interface UpstreamTimeouts {
  /** Until response headers arrive (undici `headersTimeout`). */
  headersMs: number;
  /** Longest silence between body chunks (undici `bodyTimeout`). */
  bodyMs: number;
  /** One attempt from send to last body byte; also capped by the deadline. */
  attemptMs: number;
  /** Deadline of a whole operation when the caller gives none. */
  operationMs: number;
}

export const DEFAULT_UPSTREAM_TIMEOUTS: UpstreamTimeouts = {
  headersMs: 15_000,
  bodyMs: 15_000,
  attemptMs: 30_000,
  operationMs: 60_000,
};

export interface RetryPolicy {
  /** Attempts of a read in all, for 5xx, connection failures and attempt timeouts. */
  maxAttempts: number;
  /** Back-off before retry n is uniform in [0, min(maxDelayMs, baseDelayMs · 2^(n-1))]. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Re-sends of a read after 429 or 503 with Retry-After. */
  maxThrottleRetries: number;
  /** When a 429 names no wait. */
  defaultRetryAfterMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 3,
  baseDelayMs: 250,
  maxDelayMs: 4_000,
  maxThrottleRetries: 2,
  defaultRetryAfterMs: 30_000,
};

/** Larger answers are refused (and their connection closed): 100 incidents with alerts are a few MiB. */
export const DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024;
/** What is read of an error body for ids and the log excerpt. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const EXCERPT_CHARS = 200;

export interface IncidentsHttpOptions {
  backend: IncidentsBackendName;
  /** Which token the calls carry. */
  resource: TokenResource;
  dispatcher: Dispatcher;
  tokenProvider: TokenProvider;
  budget: RateBudget;
  timeouts?: Partial<UpstreamTimeouts>;
  retry?: Partial<RetryPolicy>;
  maxResponseBytes?: number;
  logger?: Logger;
  /** Told of every attempt sent upstream (metrics). Must not throw. */
  observe?: UpstreamObserver;
  /** Clock, epoch ms. */
  now?: () => number;
  /** Uniform [0, 1) for back-off jitter. */
  random?: () => number;
}

/** One attempt sent upstream: what metrics count. `status` is the HTTP status, or 0 when none came. */
export interface UpstreamAttempt {
  tenantId: string;
  backend: IncidentsBackendName;
  operation: string;
  status: number;
  durationMs: number;
}
export type UpstreamObserver = (attempt: UpstreamAttempt) => void;

/** One logical call. */
export interface UpstreamCall {
  tenantId: string;
  method: "GET" | "PATCH" | "POST";
  url: string;
  bucket: RateBucket;
  /** For logs and messages: `list`, `get`, `update`, `comment`. */
  operation: string;
  /** A follow-up of a call already made (a list's next page): ahead of first calls for a connection slot. */
  continuation?: boolean;
  /** Sent as JSON. */
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
  /** Epoch ms. */
  deadline: number;
}

export interface UpstreamAnswer {
  status: number;
  /** Parsed JSON; undefined for an empty body. */
  json: unknown;
  upstreamRequestId: string | undefined;
  /** Requests sent for this call, retries included. */
  attempts: number;
}

/** The deadline of an operation: the caller's, else now + the operation timeout. */
export function resolveDeadline(options: { deadline?: number | undefined }, timeouts: UpstreamTimeouts, now: number): number {
  return options.deadline ?? now + timeouts.operationMs;
}

/**
 * Checks a server-given next link: it must be an absolute https (or, for the sandbox, same-scheme) URL
 * on the configured base's origin, so a tampered or misrouted answer cannot send our bearer token to
 * another host.
 *
 * @throws UpstreamError UPSTREAM_BAD_RESPONSE
 */
export function checkNextLink(link: string, baseUrl: string, tenantId: string, backend: IncidentsBackendName): string {
  let url: URL;
  try {
    url = new URL(link);
  } catch {
    throw new UpstreamError("UPSTREAM_BAD_RESPONSE", `the ${backend} API sent a next link that is not an absolute URL`, { tenantId, backend });
  }
  if (url.origin !== new URL(baseUrl).origin) {
    throw new UpstreamError("UPSTREAM_BAD_RESPONSE", `the ${backend} API sent a next link to another origin (${url.origin}); not followed`, { tenantId, backend });
  }
  return url.toString();
}

/** What one attempt came to. */
type Outcome =
  | { kind: "ok"; status: number; json: unknown; requestId: string | undefined }
  | { kind: "unauthorized"; error: UpstreamError }
  | { kind: "throttled"; retryAfterMs: number; error: UpstreamError }
  /** 503 with Retry-After: unavailable, and the server said when to come back. */
  | { kind: "unavailable"; retryAfterMs: number; error: UpstreamError }
  /** May be retried: a read always, a write only when `sent` is false. */
  | { kind: "transient"; sent: boolean; error: UpstreamError }
  | { kind: "fatal"; error: UpstreamError };

/** undici/Node errors raised before any byte of the request could be written. */
const CONNECT_ERRORS = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "UND_ERR_CONNECT_TIMEOUT"]);

const BACKEND_LABEL: Record<IncidentsBackendName, string> = { defender: "Defender API", graph: "Microsoft Graph" };

/** See the module comment for the retry policy. One instance per backend; the budget is shared. */
export class IncidentsHttp {
  readonly backend: IncidentsBackendName;
  readonly timeouts: UpstreamTimeouts;
  private readonly resource: TokenResource;
  private readonly dispatcher: Dispatcher;
  private readonly tokenProvider: TokenProvider;
  private readonly budget: RateBudget;
  private readonly retry: RetryPolicy;
  private readonly maxResponseBytes: number;
  private readonly logger: Logger | undefined;
  readonly now: () => number;
  private readonly random: () => number;
  private readonly observe: UpstreamObserver | undefined;

  constructor(options: IncidentsHttpOptions) {
    this.backend = options.backend;
    this.resource = options.resource;
    this.dispatcher = options.dispatcher;
    this.tokenProvider = options.tokenProvider;
    this.budget = options.budget;
    this.timeouts = { ...DEFAULT_UPSTREAM_TIMEOUTS, ...options.timeouts };
    this.retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.logger = options.logger?.child({ component: "incidents-http", backend: options.backend });
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.observe = options.observe;
  }

  /**
   * Sends one logical call with the retry policy above.
   *
   * @throws UpstreamError for every upstream failure (NOT_FOUND included: callers that expect it catch it);
   *   TokenAcquisitionError from the token layer
   */
  async send(call: UpstreamCall): Promise<UpstreamAnswer> {
    const write = call.method !== "GET";
    let attempts = 0;
    let transientFailures = 0;
    let throttleRetries = 0;
    let reauthenticated = false;
    for (;;) {
      this.checkTime(call);
      const token = await this.token(call);
      // A retry is a follow-up too: the tenant's work is under way and should finish before new work starts.
      const permit = await this.acquire(call, call.continuation === true || attempts > 0);
      attempts++;
      let outcome: Outcome;
      const sentAt = this.now();
      try {
        outcome = await this.attempt(call, token);
      } finally {
        permit.release();
      }
      this.observe?.({
        tenantId: call.tenantId,
        backend: this.backend,
        operation: call.operation,
        status: outcome.kind === "ok" ? outcome.status : outcome.kind === "throttled" ? 429 : (outcome.error.details.status ?? 0),
        durationMs: this.now() - sentAt,
      });

      switch (outcome.kind) {
        case "ok":
          return { status: outcome.status, json: outcome.json, upstreamRequestId: outcome.requestId, attempts };
        case "unauthorized":
          // A token the API refuses although it was valid when issued: consent revoked, roles removed,
          // or (rarely) a key rollover. One fresh token, then give up.
          this.tokenProvider.invalidate(call.tenantId, this.resource);
          if (reauthenticated) throw outcome.error;
          reauthenticated = true;
          this.log("debug", call, outcome.error, attempts, "401: token invalidated, retrying once with a new one");
          continue;
        case "throttled": {
          this.budget.throttled(call.tenantId, call.bucket, outcome.retryAfterMs);
          const fits = this.now() + outcome.retryAfterMs < call.deadline;
          if (write || !fits || throttleRetries >= this.retry.maxThrottleRetries) throw outcome.error;
          throttleRetries++;
          this.log("info", call, outcome.error, attempts, `429: waiting ${outcome.retryAfterMs} ms (Retry-After) before retrying`);
          // The budget's acquire does the waiting, for this call and every other one of the bucket.
          continue;
        }
        case "unavailable": {
          // The service said when it will be back: wait that long (not the back-off), if the deadline allows.
          // Unlike a 429 this holds no budget: an outage is not a quota, and the next call finds out.
          const fits = this.now() + outcome.retryAfterMs < call.deadline;
          if (write || !fits || throttleRetries >= this.retry.maxThrottleRetries) throw outcome.error;
          throttleRetries++;
          this.log("info", call, outcome.error, attempts, `503: waiting ${outcome.retryAfterMs} ms (Retry-After) before retrying`);
          try {
            await sleep(outcome.retryAfterMs, call.signal);
          } catch (reason) {
            throw this.timeoutError(call, "the operation was cancelled while waiting out a 503's Retry-After", reason);
          }
          continue;
        }
        case "transient": {
          if (write && outcome.sent) throw outcome.error;
          transientFailures++;
          if (transientFailures >= this.retry.maxAttempts) throw outcome.error;
          const delay = this.backoff(transientFailures);
          if (this.now() + delay >= call.deadline) throw outcome.error;
          this.log("debug", call, outcome.error, attempts, `transient failure: retrying in ${Math.round(delay)} ms`);
          try {
            await sleep(delay, call.signal);
          } catch (reason) {
            throw this.timeoutError(call, "the operation was cancelled during a back-off", reason);
          }
          continue;
        }
        case "fatal":
          throw outcome.error;
      }
    }
  }

  private backoff(failures: number): number {
    const cap = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (failures - 1));
    return this.random() * cap;
  }

  private checkTime(call: UpstreamCall): void {
    if (call.signal?.aborted) throw this.timeoutError(call, "the operation was cancelled", call.signal.reason);
    if (this.now() >= call.deadline) throw this.timeoutError(call, "the operation's deadline passed");
  }

  private async token(call: UpstreamCall): Promise<string> {
    const timer = AbortSignal.timeout(Math.max(1, call.deadline - this.now()));
    const signal = call.signal ? AbortSignal.any([call.signal, timer]) : timer;
    try {
      return (await this.tokenProvider.getToken(call.tenantId, this.resource, { signal })).accessToken;
    } catch (error) {
      if (error instanceof TokenAcquisitionError) throw error;
      if (signal.aborted) throw this.timeoutError(call, "no token before the deadline", error);
      throw error;
    }
  }

  private async acquire(call: UpstreamCall, continuation: boolean) {
    try {
      return await this.budget.acquire(call.tenantId, call.bucket, {
        deadline: call.deadline,
        continuation,
        ...(call.signal ? { signal: call.signal } : {}),
      });
    } catch (error) {
      if (error instanceof UpstreamError) throw error;
      if (call.signal?.aborted) throw this.timeoutError(call, "the operation was cancelled while waiting for a rate slot", error);
      throw error;
    }
  }

  private async attempt(call: UpstreamCall, accessToken: string): Promise<Outcome> {
    const remaining = call.deadline - this.now();
    if (remaining <= 0) return { kind: "fatal", error: this.timeoutError(call, "the operation's deadline passed") };
    const attemptMs = Math.min(this.timeouts.attemptMs, remaining);
    const deadlineBound = attemptMs === remaining;
    const timer = AbortSignal.timeout(attemptMs);
    const signal = call.signal ? AbortSignal.any([call.signal, timer]) : timer;
    const headers: Record<string, string> = {
      accept: "application/json",
      authorization: `Bearer ${accessToken}`,
      "client-request-id": randomUUID(),
      ...call.headers,
    };
    let body: string | null = null;
    if (call.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(call.body);
    }

    const aborted = (cause: unknown): Outcome => {
      if (call.signal?.aborted) return { kind: "fatal", error: this.timeoutError(call, "the operation was cancelled", cause) };
      const error = this.timeoutError(call, `no complete answer within ${attemptMs} ms`, cause);
      return deadlineBound ? { kind: "fatal", error } : { kind: "transient", sent: true, error };
    };

    let response: Dispatcher.ResponseData;
    try {
      response = await request(call.url, {
        dispatcher: this.dispatcher,
        method: call.method,
        headers,
        body,
        signal,
        // When the attempt's own timer is the shorter bound, undici's timers stay out of its way: two timers
        // of the same length race, and undici's winning would make a deadline look like a retryable stall.
        headersTimeout: this.timeouts.headersMs < attemptMs ? this.timeouts.headersMs : attemptMs + 1_000,
        bodyTimeout: this.timeouts.bodyMs < attemptMs ? this.timeouts.bodyMs : attemptMs + 1_000,
      });
    } catch (error) {
      if (signal.aborted) return aborted(error);
      return this.networkOutcome(call, error);
    }

    const status = response.statusCode;
    const headerId = requestIdFromHeaders(response.headers);

    if (status >= 200 && status < 300) {
      let text: string;
      try {
        text = await readBody(response.body, this.maxResponseBytes, response.headers["content-length"]);
      } catch (error) {
        if (signal.aborted) return aborted(error);
        if (error instanceof BodyTooLarge) {
          return { kind: "fatal", error: this.error("UPSTREAM_BAD_RESPONSE", call, `the answer is larger than ${this.maxResponseBytes} bytes`, { status, upstreamRequestId: headerId }, error) };
        }
        const code = errorCode(error);
        if (code === "UND_ERR_BODY_TIMEOUT") {
          return { kind: "transient", sent: true, error: this.error("UPSTREAM_TIMEOUT", call, `the answer stalled for ${this.timeouts.bodyMs} ms`, { status, upstreamRequestId: headerId }, error) };
        }
        return { kind: "fatal", error: this.error("UPSTREAM_BAD_RESPONSE", call, "the answer was cut off", { status, upstreamRequestId: headerId }, error) };
      }
      if (text.trim() === "") return { kind: "ok", status, json: undefined, requestId: headerId };
      try {
        return { kind: "ok", status, json: JSON.parse(text), requestId: headerId };
      } catch (error) {
        return {
          kind: "fatal",
          error: this.error("UPSTREAM_BAD_RESPONSE", call, "the answer is not valid JSON", { status, upstreamRequestId: headerId, bodyExcerpt: excerpt(text, accessToken) }, error),
        };
      }
    }

    // An error answer: read a bounded part for ids and the log, drop the rest.
    let text = "";
    try {
      text = await readBody(response.body, MAX_ERROR_BODY_BYTES, undefined, true);
    } catch {
      // The status is what matters; an unreadable error body changes nothing.
    }
    const parsed = parseErrorBody(text);
    const details = {
      status,
      upstreamRequestId: headerId ?? parsed.requestId,
      bodyExcerpt: excerpt(text, accessToken),
      // A 4xx's own words, for the one caller that may show them (a hunt's syntax error, src/hunting).
      ...(status >= 400 && status < 500 && parsed.message ? { upstreamMessage: serviceMessage(parsed.message, accessToken) } : {}),
    };
    const upstreamCode = parsed.code ? ` ${parsed.code}` : "";
    const described = `HTTP ${status}${upstreamCode}`;

    if (status === 401) {
      return { kind: "unauthorized", error: this.error("CONSENT_REQUIRED", call, `the ${BACKEND_LABEL[this.backend]} refused the app's token (${described}): consent revoked or never granted`, details) };
    }
    if (status === 403) {
      return { kind: "fatal", error: this.error("MISSING_ROLE", call, `the app lacks the incident permission in this tenant (${described})`, details) };
    }
    if (status === 404) {
      return { kind: "fatal", error: this.error("NOT_FOUND", call, `not found (${described})`, details) };
    }
    if (status === 429) {
      const retryAfterMs = parseRetryAfter(response.headers["retry-after"], this.now()) ?? retryAfterFromMessage(parsed.message) ?? this.retry.defaultRetryAfterMs;
      const retryAfterSeconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
      return {
        kind: "throttled",
        retryAfterMs,
        error: this.error("THROTTLED", call, `throttled by the ${BACKEND_LABEL[this.backend]} (${described}); retry after ${retryAfterSeconds} s`, { ...details, retryAfterSeconds }),
      };
    }
    if (status === 503) {
      const retryAfterMs = parseRetryAfter(response.headers["retry-after"], this.now());
      if (retryAfterMs !== undefined) {
        const retryAfterSeconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
        return {
          kind: "unavailable",
          retryAfterMs,
          error: this.error("UPSTREAM_UNAVAILABLE", call, `the ${BACKEND_LABEL[this.backend]} is unavailable (${described}); retry after ${retryAfterSeconds} s`, {
            ...details,
            retryAfterSeconds,
          }),
        };
      }
    }
    if (status >= 500) {
      return { kind: "transient", sent: true, error: this.error("UPSTREAM_UNAVAILABLE", call, `the ${BACKEND_LABEL[this.backend]} failed (${described})`, details) };
    }
    if (status >= 400) {
      return { kind: "fatal", error: this.error("BAD_REQUEST", call, `the ${BACKEND_LABEL[this.backend]} rejected the request (${described})`, details) };
    }
    // 1xx/3xx: redirects are not followed (they would carry the token elsewhere).
    return { kind: "fatal", error: this.error("UPSTREAM_BAD_RESPONSE", call, `unexpected ${described}`, details) };
  }

  private networkOutcome(call: UpstreamCall, error: unknown): Outcome {
    const code = errorCode(error);
    if (code === "UND_ERR_HEADERS_TIMEOUT") {
      return { kind: "transient", sent: true, error: this.error("UPSTREAM_TIMEOUT", call, `no answer headers within ${this.timeouts.headersMs} ms`, {}, error) };
    }
    const sent = !(code !== undefined && CONNECT_ERRORS.has(code));
    return {
      kind: "transient",
      sent,
      error: this.error("UPSTREAM_UNAVAILABLE", call, sent ? `the connection failed (${code ?? "network error"})` : `could not connect (${code})`, {}, error),
    };
  }

  private timeoutError(call: UpstreamCall, what: string, cause?: unknown): UpstreamError {
    return this.error("UPSTREAM_TIMEOUT", call, what, {}, cause);
  }

  private error(
    code: UpstreamErrorCode,
    call: UpstreamCall,
    what: string,
    details: {
      status?: number;
      upstreamRequestId?: string | undefined;
      bodyExcerpt?: string | undefined;
      retryAfterSeconds?: number;
      upstreamMessage?: string | undefined;
    },
    cause?: unknown,
  ): UpstreamError {
    const clean: UpstreamError["details"] = { tenantId: call.tenantId, backend: this.backend };
    if (details.status !== undefined) clean.status = details.status;
    if (details.upstreamMessage) clean.upstreamMessage = details.upstreamMessage;
    if (details.upstreamRequestId) clean.upstreamRequestId = details.upstreamRequestId;
    if (details.bodyExcerpt) clean.bodyExcerpt = details.bodyExcerpt;
    if (details.retryAfterSeconds !== undefined) clean.retryAfterSeconds = details.retryAfterSeconds;
    return new UpstreamError(
      code,
      `${BACKEND_LABEL[this.backend]} ${call.operation} for tenant ${call.tenantId}: ${what}`,
      clean,
      cause === undefined ? undefined : { cause },
    );
  }

  private log(level: "debug" | "info", call: UpstreamCall, error: UpstreamError, attempt: number, message: string): void {
    this.logger?.[level](
      {
        tenantId: call.tenantId,
        operation: call.operation,
        attempt,
        code: error.code,
        status: error.details.status,
        upstreamRequestId: error.details.upstreamRequestId,
        bodyExcerpt: error.details.bodyExcerpt,
      },
      message,
    );
  }
}

class BodyTooLarge extends Error {}

/**
 * Reads a body as text up to `limit` bytes. Beyond it the stream is destroyed (closing the connection)
 * and, unless `truncate`, `BodyTooLarge` is thrown; with `truncate` the part read is returned.
 */
async function readBody(
  body: Dispatcher.ResponseData["body"],
  limit: number,
  contentLength?: string | string[],
  truncate = false,
): Promise<string> {
  const declared = typeof contentLength === "string" ? Number(contentLength) : NaN;
  if (!truncate && Number.isFinite(declared) && declared > limit) {
    body.destroy();
    throw new BodyTooLarge();
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let complete = false;
  try {
    for await (const chunk of body) {
      const buffer = chunk as Buffer;
      if (size + buffer.length > limit) {
        if (!truncate) throw new BodyTooLarge();
        chunks.push(buffer.subarray(0, limit - size));
        size = limit;
        break;
      }
      chunks.push(buffer);
      size += buffer.length;
    }
    complete = size < limit || !truncate;
  } finally {
    // An early exit leaves the rest unread: destroy the stream so the connection is not reused half-read.
    if (!complete && !body.destroyed) body.destroy();
  }
  return Buffer.concat(chunks).toString("utf8");
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string") return code;
  const cause = (error as { cause?: { code?: unknown } } | null)?.cause;
  return typeof cause?.code === "string" ? cause.code : undefined;
}

function requestIdFromHeaders(headers: Record<string, string | string[] | undefined>): string | undefined {
  for (const name of ["request-id", "x-ms-request-id", "client-request-id"]) {
    const value = headers[name];
    const first = Array.isArray(value) ? value[0] : value;
    if (first) return first;
  }
  return undefined;
}

/** `{error:{code,message,target}}` (Defender) or `{error:{code,message,innerError:{request-id}}}` (Graph). */
function parseErrorBody(text: string): { code?: string; message?: string; requestId?: string } {
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; target?: unknown; innerError?: Record<string, unknown> } };
    const error = parsed?.error;
    if (!error || typeof error !== "object") return {};
    const out: { code?: string; message?: string; requestId?: string } = {};
    // Only identifier-like codes go into messages; the body itself stays in the log excerpt.
    if (typeof error.code === "string" && /^[A-Za-z_.]{1,64}$/.test(error.code)) out.code = error.code;
    if (typeof error.message === "string") out.message = error.message;
    const inner = error.innerError;
    const id = (inner && (inner["request-id"] ?? inner["requestId"])) ?? error.target;
    if (typeof id === "string" && id !== "") out.requestId = id;
    return out;
  } catch {
    return {};
  }
}

/**
 * Retry-After in ms: delta-seconds or an HTTP date; undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | string[] | undefined, now: number): number | undefined {
  const raw = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!raw) return undefined;
  if (/^\d+$/.test(raw)) return Number(raw) * 1000;
  const date = Date.parse(raw);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Defender states the wait in its 429 message ("Next call is allowed in 12 seconds"). */
function retryAfterFromMessage(message: string | undefined): number | undefined {
  const match = message ? /allowed in (\d+) seconds?/i.exec(message) : null;
  return match ? Number(match[1]) * 1000 : undefined;
}

/** Longest service message kept on an error (`upstreamMessage`). */
const SERVICE_MESSAGE_CHARS = 2000;

/** A service's error message as it may be shown to the caller: bounded, anything token-like removed. */
function serviceMessage(message: string, accessToken: string): string {
  let clean = message.split(accessToken).join("[token]");
  clean = clean.replace(/Bearer\s+[A-Za-z0-9\-._~+/]+=*/gi, "Bearer [token]").replace(/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g, "[jwt]");
  return clean.length > SERVICE_MESSAGE_CHARS ? `${clean.slice(0, SERVICE_MESSAGE_CHARS - 1)}…` : clean;
}

/** At most 200 characters of a body for the log, with anything token-like removed. */
export function excerpt(text: string, accessToken?: string): string | undefined {
  if (text === "") return undefined;
  let clean = text;
  if (accessToken) clean = clean.split(accessToken).join("[token]");
  clean = clean
    .replace(/Bearer\s+[A-Za-z0-9\-._~+/]+=*/gi, "Bearer [token]")
    .replace(/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g, "[jwt]")
    .replace(/\s+/g, " ")
    .trim();
  return clean.length > EXCERPT_CHARS ? `${clean.slice(0, EXCERPT_CHARS - 1)}…` : clean;
}
