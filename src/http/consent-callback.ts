import { isIPv6 } from "node:net";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { Logger } from "pino";
import { ConsentStateError, type ConsentLinkMinter, type ConsentLinks } from "../auth/consent.js";
import { AADSTS_CODES, TOKEN_ERROR_HINTS, type TokenErrorCode } from "../auth/token-errors.js";
import type { AuditEventInput } from "../store/audit-log.js";
import type { ConsentNonceStore } from "../store/consent-nonces.js";
import { normaliseTenantId, type TenantStore } from "../store/tenant-store.js";

/** The result of checking a freshly consented tenant with a real token request. */
export type TenantVerification =
  | { ok: true; roles: string[]; missingRoles: string[] }
  | { ok: false; code: string; message: string; hint: string };

/**
 * Why a callback was refused: the state's own codes, what is refused before or after it, and why an answer
 * without a state (the LEGACY_V1 link's) was not accepted: its tenant is not registered, it was verified
 * too recently, its token failed, or it reports an error (which nothing can confirm).
 */
export type ConsentRejectionReason =
  | ConsentStateError["code"]
  | "TENANT_INVALID"
  | "ANSWER_INVALID"
  | "RATE_LIMITED"
  | "TENANT_NOT_REGISTERED"
  | "VERIFY_RATE_LIMITED"
  | "NOT_VERIFIED"
  | "STATELESS_ERROR";

export interface ConsentCallbackDeps {
  links: ConsentLinks;
  nonces: ConsentNonceStore;
  tenants: TenantStore;
  /**
   * Acquires a token for the tenant right away and says what it carries. `fresh`: past every cache (the
   * provider's and MSAL's), so a token issued before a revocation cannot vouch for a consent.
   */
  verifyTenant(tenantId: string, options?: { fresh?: boolean }): Promise<TenantVerification>;
  /**
   * Records a consent event in the audit log under the caller that minted the link (never throws). Only
   * answers whose state verified are recorded: a refused one proves no tenant, so it is a metric instead.
   */
  audit(actor: ConsentLinkMinter, requestId: string, record: Omit<AuditEventInput, "actor" | "requestId">): Promise<void>;
  /** Counts a refused callback by reason (a metric, never labelled by tenant). */
  onRejected?(reason: ConsentRejectionReason): void;
  /** Called once GRANTED is recorded, before the tenant is checked with a token (e.g. to forget remembered failures). */
  onConsentGranted?(tenantId: string): void | Promise<void>;
  /** Callback requests one client address may make per minute; 429 with Retry-After beyond. Default 30. */
  ratePerMinute?: number;
  /**
   * An answer without a state (LEGACY_V1) is verified with a fresh token at most once per tenant in this
   * many seconds; 429 with Retry-After sooner. Default 60. In-process: each replica counts its own.
   */
  statelessVerifyIntervalSeconds?: number;
  now?: () => number;
  logger: Logger;
}

/** The customer's admin answers the link; the audit row's actor is the caller that minted it. */
const ANSWERED_BY = "customer administrator (consent callback)";

/**
 * The actor of a stateless answer verified by token: no caller minted a link (LEGACY_V1 carries no state),
 * so the row names the callback and the customer's administrator, never an authenticated caller.
 */
const STATELESS_ACTOR: ConsentLinkMinter = { kind: "ANONYMOUS", id: "consent-callback", name: ANSWERED_BY };

const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/**
 * `GET /consent/callback`: where Entra sends the customer's admin after the admin-consent page.
 * Verifies the state (ours, fresh, single use, same tenant), records GRANTED or DENIED, verifies a grant
 * with a token at once, and renders a page a person can act on. A refused state changes nothing and writes
 * no audit row (anyone can call this route and name any tenant): it is counted (`onRejected`) and logged at
 * most once a minute per reason. Each client address may call it `ratePerMinute` times a minute.
 */
export function registerConsentCallback(app: FastifyInstance, deps: ConsentCallbackDeps): void {
  const now = deps.now ?? Date.now;
  const limiter = new FixedWindowLimiter(deps.ratePerMinute ?? 30, 60_000, now);
  const verifyInterval = Math.max(1, deps.statelessVerifyIntervalSeconds ?? 60);
  // Keyed by registered tenants only (an unregistered one is refused first), so it stays small.
  const tenantLimiter = new FixedWindowLimiter(1, verifyInterval * 1000, now);
  const sampled = new SampledLog(60_000, now);
  const reject = (reason: ConsentRejectionReason): void => {
    deps.onRejected?.(reason);
    const suppressed = sampled.take(reason);
    if (suppressed !== undefined) deps.logger.warn({ reason, suppressedSinceLast: suppressed }, "consent callback refused");
  };

  app.get("/consent/callback", async (request, reply) => {
    reply.headers(PAGE_HEADERS);
    const retryAfter = limiter.take(clientKey(request.ip));
    if (retryAfter > 0) {
      reject("RATE_LIMITED");
      return reply
        .code(429)
        .header("retry-after", String(retryAfter))
        .send(page("Too many consent answers", `Too many consent answers came from this address. Try again in ${retryAfter} seconds. Nothing was changed.`, "bad"));
    }
    const query = flatten(request.query);

    let tenantFromEntra: string | undefined;
    if (query.tenant !== undefined) {
      try {
        tenantFromEntra = normaliseTenantId(query.tenant);
      } catch {
        reject("TENANT_INVALID");
        return reply.code(400).send(page("Consent answer refused", "The answer names no valid tenant id. Nothing was changed.", "bad"));
      }
    }
    if (!query.state) {
      return answerWithoutState(deps, { reject, tenantLimiter, verifyInterval }, request.id, query, tenantFromEntra, reply);
    }
    let state;
    try {
      state = await deps.links.verify(query.state, tenantFromEntra);
      if (!(await deps.nonces.consume(state.nonce, state.expiresAt))) {
        throw new ConsentStateError("STATE_REPLAYED", "this consent answer was already used");
      }
    } catch (error) {
      if (!(error instanceof ConsentStateError)) throw error;
      reject(error.code);
      return reply
        .code(400)
        .send(
          page(
            "Consent answer refused",
            `${capitalise(error.message)}. Nothing was changed. Ask your partner for a new consent link.`,
            "bad",
          ),
        );
    }

    const tenantId = tenantFromEntra ?? state.tenantId ?? undefined;
    const audit = (record: Omit<AuditEventInput, "actor" | "requestId">) =>
      deps.audit(state.minter, request.id, { ...record, detail: { ...record.detail, answeredBy: ANSWERED_BY } });
    const failure = consentFailureOf(query);
    if (failure?.code === "RESOURCE_NOT_PROVISIONED") {
      // Entra granted nothing: a tenant that had consented keeps its grant; any other is DENIED with the reason.
      const record = tenantId ? await deps.tenants.get(tenantId) : undefined;
      if (record && record.consentState !== "GRANTED") {
        await deps.tenants.recordConsent(record.id, "DENIED", { error: `${failure.code}: ${query.error}: ${(query.error_description ?? "").slice(0, 400)}` });
      }
      deps.logger.info({ tenantId, aadsts: failure.aadsts, code: failure.code }, "admin consent failed: a resource is not provisioned in the tenant");
      await audit({
        action: "consent.denied",
        tenantId: tenantId ?? null,
        outcome: failure.code,
        detail: { error: query.error!.slice(0, 100), aadsts: failure.aadsts },
      });
      return reply.code(200).send(notProvisionedPage(failure, tenantId, "recorded"));
    }
    if (query.error !== undefined) {
      const description = `${query.error}: ${(query.error_description ?? "").slice(0, 500)}`;
      if (tenantId && (await deps.tenants.get(tenantId))) {
        await deps.tenants.recordConsent(tenantId, "DENIED", { error: description });
      }
      // An OAuth error code (`access_denied`, `invalid_client`, …) or, for anything else, no echo of what was sent.
      deps.logger.info({ tenantId, error: OAUTH_ERROR_CODE.test(query.error) ? query.error : "unrecognised" }, "admin consent declined");
      await audit({ action: "consent.denied", tenantId: tenantId ?? null, outcome: "SUCCESS", detail: { error: query.error.slice(0, 100) } });
      return reply.code(200).send(
        page(
          "Consent was not given",
          `The administrator${tenantId ? ` of tenant ${tenantId}` : ""} did not grant the permissions (${query.error}). ` +
            "Crosswatch cannot read this tenant's incidents until an administrator accepts a new consent link.",
          "warn",
        ),
      );
    }

    if (query.admin_consent?.toLowerCase() !== "true" || !tenantId) {
      reject("ANSWER_INVALID");
      return reply.code(400).send(page("Consent answer refused", "The answer says neither that consent was given nor why not. Nothing was changed.", "bad"));
    }

    const tenant = await deps.tenants.recordConsent(tenantId, "GRANTED");
    try {
      await deps.onConsentGranted?.(tenantId);
    } catch (error) {
      deps.logger.error({ err: error, tenantId }, "consent granted, but a follow-up failed");
    }
    const verification = await deps.verifyTenant(tenantId);
    await deps.tenants.recordTokenOutcome(tenantId, verification.ok ? { ok: true } : { ok: false, code: verification.code });
    deps.logger.info({ tenantId, verified: verification.ok }, "admin consent granted");
    await audit({
      action: "consent.granted",
      tenantId,
      outcome: "SUCCESS",
      detail: verification.ok ? { verified: true, roles: verification.roles, missingRoles: verification.missingRoles } : { verified: false, code: verification.code },
    });
    if (verification.ok && verification.missingRoles.length === 0) {
      return reply.code(200).send(
        page(
          "Consent recorded",
          `${tenant.displayName} (${tenantId}) is onboarded: Crosswatch acquired a token for it with the roles ` +
            `${verification.roles.join(", ") || "(none)"}. Its incidents are now available.`,
          "ok",
        ),
      );
    }
    const problem = verification.ok
      ? `the token lacks ${verification.missingRoles.join(", ")}. Grant admin consent again after the permissions are added to the app.`
      : `${verification.message} ${verification.hint}`;
    return reply.code(200).send(
      page(
        "Consent recorded, but the tenant is not ready",
        `${tenant.displayName} (${tenantId}) is marked as consented, but checking it failed: ${problem}`,
        "warn",
      ),
    );
  });
}

/** What an error answer says, when its AADSTS number is one Crosswatch knows (the token layer's table). */
interface ConsentFailure {
  aadsts: number;
  code: TokenErrorCode;
  /** The resource the tenant lacks, when the description names one Crosswatch uses. */
  resource: string | undefined;
}

/** Known resource apps by appId, to say which service a 650052 names without echoing Entra's text. */
const RESOURCE_NAMES: Record<string, string> = {
  "8ee8fdad-f234-4243-8f3b-15c294843740": "Microsoft Threat Protection (Microsoft Defender XDR)",
  "00000003-0000-0000-c000-000000000000": "Microsoft Graph",
};

function consentFailureOf(query: Record<string, string>): ConsentFailure | undefined {
  if (query.error === undefined) return undefined;
  const description = query.error_description ?? "";
  const aadsts = Number(/^\s*AADSTS(\d{1,9})\b/.exec(description)?.[1]);
  const known = Number.isInteger(aadsts) ? AADSTS_CODES.get(aadsts) : undefined;
  if (!known) return undefined;
  const lower = description.toLowerCase();
  const resource =
    Object.entries(RESOURCE_NAMES).find(([appId]) => lower.includes(appId))?.[1] ??
    (lower.includes("microsoft threat protection") ? RESOURCE_NAMES["8ee8fdad-f234-4243-8f3b-15c294843740"] : undefined);
  return { aadsts, code: known.code, resource };
}

/**
 * AADSTS650052 explained: which service is missing, what to do, and the public code. `recorded`: the answer
 * carried a verified state and was recorded; `unverified`: it carried none, so nothing was recorded.
 */
function notProvisionedPage(failure: ConsentFailure, tenantId: string | undefined, recorded: "recorded" | "unverified"): string {
  const where = tenantId ? `tenant ${tenantId}` : "your tenant";
  const service = failure.resource ?? "a service the consent asked for";
  const graphAdvice =
    failure.resource === RESOURCE_NAMES["00000003-0000-0000-c000-000000000000"]
      ? ""
      : " Ask your partner to read this tenant through Microsoft Graph (its backend set to GRAPH) and send a new consent link, which then asks for Microsoft Graph only; or activate Microsoft Defender XDR in the tenant and open the link again.";
  return page(
    "Consent failed: a service is missing in this tenant",
    `Entra ID refused the consent (AADSTS${failure.aadsts}): ${where} has no service principal for ${service}, so nothing was granted.` +
      graphAdvice +
      ` Code for your partner: ${failure.code}. ${TOKEN_ERROR_HINTS[failure.code]}` +
      (recorded === "unverified" ? " This answer carried no state, so Crosswatch recorded nothing." : ""),
    "bad",
  );
}

interface StatelessGuards {
  reject(reason: ConsentRejectionReason): void;
  tenantLimiter: FixedWindowLimiter;
  verifyInterval: number;
}

/**
 * An answer without a state: what the LEGACY_V1 link (Defender's documented v1 link) brings back to the
 * app's registered reply URL, `admin_consent=True&tenant=…` (maybe with a `code`). Anyone can send it, so
 * it proves nothing by itself: it is accepted only for a tenant already registered, by acquiring a fresh
 * token for that tenant (at most once per tenant per `statelessVerifyIntervalSeconds`), and GRANTED is
 * recorded only when that works. A stateless error answer is explained and never recorded. Audit rows only
 * for a verified grant (actor: the callback, the customer's administrator): none under a tenant merely named.
 */
async function answerWithoutState(
  deps: ConsentCallbackDeps,
  guards: StatelessGuards,
  requestId: string,
  query: Record<string, string>,
  tenantId: string | undefined,
  reply: FastifyReply,
): Promise<FastifyReply> {
  if (query.error !== undefined) {
    guards.reject("STATELESS_ERROR");
    const failure = consentFailureOf(query);
    if (failure?.code === "RESOURCE_NOT_PROVISIONED") return reply.code(200).send(notProvisionedPage(failure, tenantId, "unverified"));
    return reply.code(200).send(
      page(
        "Consent was not given",
        `The administrator did not grant the permissions (${query.error.slice(0, 100)}). This answer carried no state, so Crosswatch recorded nothing. ` +
          "Crosswatch cannot read this tenant's incidents until an administrator accepts a consent link.",
        "warn",
      ),
    );
  }
  const saysConsented = query.admin_consent?.toLowerCase() === "true" || query.code !== undefined;
  if (!saysConsented || !tenantId) {
    guards.reject(saysConsented ? "STATE_INVALID" : "ANSWER_INVALID");
    return reply
      .code(400)
      .send(page("Consent answer refused", "The consent answer carries no state and names no consented tenant. Nothing was changed. Ask your partner for a new consent link.", "bad"));
  }
  const tenant = await deps.tenants.get(tenantId);
  if (!tenant) {
    guards.reject("TENANT_NOT_REGISTERED");
    return reply.code(400).send(
      page(
        "Consent answer not accepted",
        "This answer carries no state (the legacy v1 link), and Crosswatch accepts such an answer only for a tenant its partner has already registered. " +
          "Nothing was changed. Ask your partner to register your tenant and check it, or to send you a new consent link.",
        "bad",
      ),
    );
  }
  const retryAfter = guards.tenantLimiter.take(tenant.id);
  if (retryAfter > 0) {
    guards.reject("VERIFY_RATE_LIMITED");
    return reply
      .code(429)
      .header("retry-after", String(retryAfter))
      .send(
        page(
          "Consent is being checked",
          `Crosswatch checked this tenant's consent less than ${guards.verifyInterval} seconds ago. Reload this page in ${retryAfter} seconds to check again. Nothing was changed.`,
          "warn",
        ),
      );
  }
  const verification = await deps.verifyTenant(tenant.id, { fresh: true });
  if (!verification.ok) {
    guards.reject("NOT_VERIFIED");
    deps.logger.info({ tenantId: tenant.id, code: verification.code }, "stateless consent answer not verified: the tenant's token failed");
    return reply.code(400).send(
      page(
        "Consent could not be confirmed",
        `This answer carries no state, so Crosswatch checked it by requesting a token for ${tenant.displayName} (${tenant.id}), and that failed (${verification.code}): ` +
          `${verification.message} Nothing was changed. If you have just consented, Entra ID can take a minute to apply it: reload this page in ${guards.verifyInterval} seconds. ${verification.hint}`,
        "bad",
      ),
    );
  }
  const newlyGranted = tenant.consentState !== "GRANTED";
  if (newlyGranted) {
    await deps.tenants.recordConsent(tenant.id, "GRANTED");
    try {
      await deps.onConsentGranted?.(tenant.id);
    } catch (error) {
      deps.logger.error({ err: error, tenantId: tenant.id }, "consent granted, but a follow-up failed");
    }
    await deps.audit(STATELESS_ACTOR, requestId, {
      action: "consent.granted",
      tenantId: tenant.id,
      outcome: "SUCCESS",
      detail: { verified: true, verifiedBy: "token", stateless: true, roles: verification.roles, missingRoles: verification.missingRoles, answeredBy: ANSWERED_BY },
    });
  }
  await deps.tenants.recordTokenOutcome(tenant.id, { ok: true });
  deps.logger.info({ tenantId: tenant.id, newlyGranted }, "stateless consent answer verified by token");
  const missing = verification.missingRoles.length > 0;
  const roles = verification.roles.join(", ") || "(none)";
  if (!newlyGranted) {
    return reply.code(200).send(
      page(
        "Consent confirmed",
        `${tenant.displayName} (${tenant.id}) was already onboarded, and Crosswatch just acquired a token for it with the roles ${roles}. Nothing was changed.` +
          (missing ? ` The token lacks ${verification.missingRoles.join(", ")}: grant admin consent again after the permissions are added to the app.` : ""),
        missing ? "warn" : "ok",
      ),
    );
  }
  return reply.code(200).send(
    page(
      missing ? "Consent recorded, but the tenant is not ready" : "Consent recorded",
      `${tenant.displayName} (${tenant.id}) is onboarded: this answer carried no state, so Crosswatch verified it by acquiring a token for the tenant, with the roles ${roles}.` +
        (missing ? ` The token lacks ${verification.missingRoles.join(", ")}: grant admin consent again after the permissions are added to the app.` : " Its incidents are now available."),
      missing ? "warn" : "ok",
    ),
  );
}

/** The rate-limit key of a client: its IPv4 address, or its IPv6 /64 (one host usually holds a whole /64). */
export function clientKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!isIPv6(ip)) return ip;
  const [head = "", tail] = ip.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, "")).join(":")}::/64`;
}

/**
 * Requests per key in a fixed window that starts at a key's first request. In-process: each replica
 * counts its own. At most `maxKeys` keys are kept (expired ones are swept first, then the oldest dropped).
 */
export class FixedWindowLimiter {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 10_000,
  ) {}

  /** Counts a request: 0 when it may go on, else the seconds until the key's window ends. */
  take(key: string): number {
    const now = this.now();
    let window = this.windows.get(key);
    if (!window || now - window.start >= this.windowMs) {
      this.windows.delete(key);
      if (this.windows.size >= this.maxKeys) this.sweep(now);
      window = { start: now, count: 0 };
      this.windows.set(key, window);
    }
    window.count += 1;
    if (window.count <= this.limit) return 0;
    return Math.max(1, Math.ceil((window.start + this.windowMs - now) / 1000));
  }

  private sweep(now: number): void {
    for (const [key, window] of this.windows) if (now - window.start >= this.windowMs) this.windows.delete(key);
    // Still full: drop the oldest windows (insertion order), so memory stays bounded under a spread attack.
    for (const key of this.windows.keys()) {
      if (this.windows.size < this.maxKeys) break;
      this.windows.delete(key);
    }
  }
}

/** At most one log line per key and interval; says how many were left out since the last one. */
class SampledLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number,
  ) {}

  /** The number suppressed since the previous line when this one should be logged, else undefined. */
  take(key: string): number | undefined {
    const now = this.now();
    const entry = this.last.get(key);
    if (entry && now - entry.at < this.intervalMs) {
      entry.suppressed += 1;
      return undefined;
    }
    this.last.set(key, { at: now, suppressed: 0 });
    return entry?.suppressed ?? 0;
  }
}

function flatten(query: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof query !== "object" || query === null) return out;
  for (const [key, value] of Object.entries(query)) {
    if (typeof value === "string") out[key] = value;
    else if (Array.isArray(value) && typeof value[0] === "string") out[key] = value[0];
  }
  return out;
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, message: string, tone: "ok" | "warn" | "bad"): string {
  const colour = { ok: "#107c10", warn: "#8a6d00", bad: "#a4262c" }[tone];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · Crosswatch</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem;color:${colour}}p{margin:1rem 0}footer{color:#666;font-size:.85rem;margin-top:3rem}</style></head>
<body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p>
<footer>Crosswatch · partner access to Microsoft 365 Defender incidents. You can close this window.</footer></body></html>`;
}

/** The shape of an OAuth 2.0 `error` value: the only part of a declined answer that is logged. */
const OAUTH_ERROR_CODE = /^[a-z_]{1,64}$/;
