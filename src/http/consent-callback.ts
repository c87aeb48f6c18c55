import { isIPv6 } from "node:net";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { ConsentStateError, type ConsentLinkMinter, type ConsentLinks } from "../auth/consent.js";
import type { AuditEventInput } from "../store/audit-log.js";
import type { ConsentNonceStore } from "../store/consent-nonces.js";
import { normaliseTenantId, type TenantStore } from "../store/tenant-store.js";

/** The result of checking a freshly consented tenant with a real token request. */
export type TenantVerification =
  | { ok: true; roles: string[]; missingRoles: string[] }
  | { ok: false; code: string; message: string; hint: string };

/** Why a callback was refused: the state's own codes, and what is refused before or after it. */
export type ConsentRejectionReason = ConsentStateError["code"] | "TENANT_INVALID" | "ANSWER_INVALID" | "RATE_LIMITED";

export interface ConsentCallbackDeps {
  links: ConsentLinks;
  nonces: ConsentNonceStore;
  tenants: TenantStore;
  /** Acquires a token for the tenant right away and says what it carries. */
  verifyTenant(tenantId: string): Promise<TenantVerification>;
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
  now?: () => number;
  logger: Logger;
}

/** The customer's admin answers the link; the audit row's actor is the caller that minted it. */
const ANSWERED_BY = "customer administrator (consent callback)";

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
    let state;
    try {
      if (!query.state) throw new ConsentStateError("STATE_INVALID", "the consent answer carries no state");
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
    if (query.error !== undefined) {
      const description = `${query.error}: ${(query.error_description ?? "").slice(0, 500)}`;
      if (tenantId && (await deps.tenants.get(tenantId))) {
        await deps.tenants.recordConsent(tenantId, "DENIED", { error: description });
      }
      deps.logger.info({ tenantId, error: query.error.slice(0, 100) }, "admin consent declined");
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
