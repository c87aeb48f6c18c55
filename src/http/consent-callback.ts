import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { ConsentStateError, type ConsentLinks } from "../auth/consent.js";
import type { AuditEventInput } from "../store/audit-log.js";
import type { ConsentNonceStore } from "../store/consent-nonces.js";
import { normaliseTenantId, type TenantStore } from "../store/tenant-store.js";

/** The result of checking a freshly consented tenant with a real token request. */
export type TenantVerification =
  | { ok: true; roles: string[]; missingRoles: string[] }
  | { ok: false; code: string; message: string; hint: string };

export interface ConsentCallbackDeps {
  links: ConsentLinks;
  nonces: ConsentNonceStore;
  tenants: TenantStore;
  /** Acquires a token for the tenant right away and says what it carries. */
  verifyTenant(tenantId: string): Promise<TenantVerification>;
  /** Records a consent event in the audit log (never throws). */
  audit(record: Omit<AuditEventInput, "actor" | "requestId">): Promise<void>;
  logger: Logger;
}

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
 * with a token at once, and renders a page a person can act on. A refused state changes nothing.
 */
export function registerConsentCallback(app: FastifyInstance, deps: ConsentCallbackDeps): void {
  app.get("/consent/callback", async (request, reply) => {
    const query = flatten(request.query);
    reply.headers(PAGE_HEADERS);

    let tenantFromEntra: string | undefined;
    if (query.tenant !== undefined) {
      try {
        tenantFromEntra = normaliseTenantId(query.tenant);
      } catch {
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
      deps.logger.warn({ reason: error.code }, "consent callback refused");
      await deps.audit({ action: "consent.rejected", tenantId: tenantFromEntra ?? null, outcome: error.code });
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
    if (query.error !== undefined) {
      const description = `${query.error}: ${(query.error_description ?? "").slice(0, 500)}`;
      if (tenantId && (await deps.tenants.get(tenantId))) {
        await deps.tenants.recordConsent(tenantId, "DENIED", { error: description });
      }
      deps.logger.info({ tenantId, error: query.error }, "admin consent declined");
      await deps.audit({ action: "consent.denied", tenantId: tenantId ?? null, outcome: "SUCCESS", detail: { error: query.error.slice(0, 100) } });
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
      return reply.code(400).send(page("Consent answer refused", "The answer says neither that consent was given nor why not. Nothing was changed.", "bad"));
    }

    const tenant = await deps.tenants.recordConsent(tenantId, "GRANTED");
    const verification = await deps.verifyTenant(tenantId);
    await deps.tenants.recordTokenOutcome(tenantId, verification.ok ? { ok: true } : { ok: false, code: verification.code });
    deps.logger.info({ tenantId, verified: verification.ok }, "admin consent granted");
    await deps.audit({
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
