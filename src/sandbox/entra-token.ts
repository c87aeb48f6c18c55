import { createHash, createPublicKey, timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { compactVerify, decodeJwt, decodeProtectedHeader, type JWTPayload, type ProtectedHeaderParameters } from "jose";
import type { CertificateCredential } from "./certs.js";
import type { SandboxContext } from "./context.js";
import { resolveTenantSegment, sandboxHosts, tenantKeyOf } from "./entra-discovery.js";
import {
  AADSTS,
  aadErrorBody,
  gateAadError,
  requestIds,
  sendAadError,
  setTokenHeaders,
  type AadError,
} from "./entra-errors.js";
import { findResource, type Resource } from "./resources.js";
import type { SandboxServices } from "./services.js";
import { grantedRoles, type SandboxTenant } from "./tenants.js";
import { issueAccessToken } from "./tokens.js";

/** The only `client_assertion_type` Entra accepts for certificate credentials (RFC 7523). */
export const JWT_BEARER_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/** Signature algorithms Entra accepts on certificate client assertions (MSAL Node 7 signs PS256). */
const ASSERTION_ALGORITHMS = ["RS256", "PS256"];

/** Clock skew Entra tolerates on client assertions, seconds. */
const ASSERTION_SKEW_SECONDS = 300;

/** Scopes MSAL may add to any request; they mean nothing to the client-credentials grant. */
const OIDC_SCOPES = new Set(["openid", "profile", "offline_access", "email"]);

/** One token request after HTTP parsing: which endpoint, which tenant segment, the form fields. */
export interface TokenRequestInput {
  version: 1 | 2;
  tenantSegment: string;
  params: Record<string, string>;
  /** The `Authorization` header, for HTTP Basic client authentication. */
  authorization: string | undefined;
}

/** The body to answer 200 with, or the AADSTS error to answer instead. */
export type TokenOutcome = { ok: true; body: Record<string, unknown> } | { ok: false; error: AadError };

type Credential = { kind: "secret" } | { kind: "certificate" };

/**
 * The token endpoint's decision for one request, in the order Entra checks: tenant, grant type, client id,
 * the app's service principal in the tenant, the client credential, then the requested resource.
 */
export async function handleTokenRequest(services: SandboxServices, input: TokenRequestInput): Promise<TokenOutcome> {
  const { ctx } = services;
  const fail = (error: AadError): TokenOutcome => ({ ok: false, error });
  const params = input.params;

  const resolved = resolveTenantSegment(ctx, input.tenantSegment);
  if (resolved.kind === "unknown") return fail(AADSTS.tenantNotFound(resolved.raw, "invalid_request"));

  const grantType = params.grant_type;
  if (!grantType) return fail(AADSTS.missingParameter("grant_type"));
  if (grantType !== "client_credentials") return fail(AADSTS.unsupportedGrantType(grantType));
  if (resolved.kind === "multi") return fail(AADSTS.noTenantInRequest());
  const tenant = resolved.tenant;

  const basic = parseBasicAuthorization(input.authorization);
  if (basic === "malformed") return fail(AADSTS.invalidRequest("The Authorization header does not carry valid HTTP Basic client credentials."));
  const clientId = params.client_id || basic?.clientId;
  if (!clientId) return fail(AADSTS.missingParameter("client_id"));
  if (basic && params.client_id && basic.clientId !== params.client_id) {
    return fail(AADSTS.invalidRequest("The client_id in the request body does not match the client_id in the Authorization header."));
  }

  if (clientId.toLowerCase() !== ctx.app.clientId.toLowerCase()) {
    return fail(AADSTS.applicationNotFound(clientId, tenant.domain));
  }
  if (!tenant.consent.granted) {
    return fail(
      ctx.options.notConsentedError === 7000229
        ? AADSTS.missingServicePrincipal(ctx.app.clientId, tenant.id)
        : AADSTS.applicationNotFound(clientId, tenant.domain),
    );
  }

  const credential = await authenticateClient(ctx, input, tenant, basic?.secret);
  if ("error" in credential) return fail(credential.error);

  const target = input.version === 1 ? resolveV1Resource(params) : resolveV2Scope(params);
  if ("error" in target) return fail(target.error);
  if (!target.resource) return fail(AADSTS.resourceNotFound(target.requested, tenant.displayName));
  if (!tenant.resources[target.resource.key]) return fail(AADSTS.resourceNotFound(target.resource.uri, tenant.displayName));

  const issued = await issueAccessToken(ctx, services.signingKey, {
    tenant,
    resource: target.resource,
    roles: grantedRoles(tenant, target.resource.key),
    credentialType: credential.kind,
  });
  const lifetime = ctx.options.tokenLifetimeSeconds;
  // Key order and value types as in the captured responses: v1 numbers are strings, v2 are integers.
  const body: Record<string, unknown> =
    input.version === 1
      ? {
          token_type: "Bearer",
          expires_in: String(lifetime),
          ext_expires_in: String(lifetime),
          expires_on: String(issued.exp),
          not_before: String(issued.iat - 300),
          resource: target.requested,
          access_token: issued.accessToken,
        }
      : { token_type: "Bearer", expires_in: lifetime, ext_expires_in: lifetime, access_token: issued.accessToken };
  return { ok: true, body };
}

type ResourceTarget = { resource: Resource | undefined; requested: string } | { error: AadError };

function resolveV1Resource(params: Record<string, string>): ResourceTarget {
  const requested = params.resource;
  if (!requested) return { error: AADSTS.missingParameter("resource") };
  return { resource: findResource(requested), requested };
}

function resolveV2Scope(params: Record<string, string>): ResourceTarget {
  const raw = params.scope;
  if (!raw) return { error: AADSTS.missingParameter("scope") };
  const scopes = raw.split(/\s+/).filter((s) => s !== "" && !OIDC_SCOPES.has(s.toLowerCase()));
  if (scopes.length === 0) return { error: AADSTS.scopeNeedsDefault(raw) };
  if (scopes.length > 1) return { error: AADSTS.invalidScope(raw) };
  const scope = scopes[0]!;
  if (!scope.toLowerCase().endsWith("/.default")) return { error: AADSTS.scopeNeedsDefault(scope) };
  const requested = scope.slice(0, -"/.default".length);
  return { resource: findResource(requested), requested };
}

/** `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1); undefined when not Basic at all. */
function parseBasicAuthorization(header: string | undefined): { clientId: string; secret: string } | "malformed" | undefined {
  const match = /^Basic\s+(\S+)\s*$/i.exec(header ?? "");
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon <= 0) return "malformed";
  try {
    return {
      clientId: decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, " ")),
      secret: decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, " ")),
    };
  } catch {
    return "malformed";
  }
}

async function authenticateClient(
  ctx: SandboxContext,
  input: TokenRequestInput,
  tenant: SandboxTenant,
  basicSecret: string | undefined,
): Promise<Credential | { error: AadError }> {
  const params = input.params;
  const secret = params.client_secret || basicSecret;
  const assertion = params.client_assertion;
  if (assertion) {
    if (secret) return { error: AADSTS.invalidRequest("Only one client credential may be sent: either client_secret or client_assertion.") };
    const type = params.client_assertion_type;
    if (!type) return { error: AADSTS.missingParameter("client_assertion_type") };
    if (type !== JWT_BEARER_ASSERTION_TYPE) {
      return { error: AADSTS.invalidRequest(`The client_assertion_type is not supported. Use '${JWT_BEARER_ASSERTION_TYPE}'.`) };
    }
    const error = await verifyClientAssertion(ctx, assertion, ctx.app.clientId, tenant, input.tenantSegment);
    return error ? { error } : { kind: "certificate" };
  }
  if (!secret) return { error: AADSTS.noCredential() };
  const entry = ctx.app.secrets.find((s) => sameSecret(s.value, secret));
  if (!entry) return { error: AADSTS.invalidSecret(ctx.app.clientId) };
  if (entry.expiresAt < ctx.now()) return { error: AADSTS.expiredSecret(ctx.app.clientId) };
  return { kind: "secret" };
}

/** Constant-time comparison (hashing first makes the lengths equal). */
function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();
  return timingSafeEqual(digest(a), digest(b));
}

/**
 * Verifies a certificate client assertion as Entra does: a compact JWS signed RS256 or PS256 by a certificate
 * registered on the app (found by `x5t#S256` or `x5t`), `iss` = `sub` = the client id, `aud` = this tenant's
 * token endpoint, inside its validity window. Returns the error to answer, or undefined when valid.
 */
export async function verifyClientAssertion(
  ctx: SandboxContext,
  assertion: string,
  clientId: string,
  tenant: SandboxTenant,
  tenantSegment: string,
): Promise<AadError | undefined> {
  let header: ProtectedHeaderParameters;
  let claims: JWTPayload;
  try {
    if (assertion.split(".").length !== 3) return AADSTS.malformedAssertion();
    header = decodeProtectedHeader(assertion);
    claims = decodeJwt(assertion);
  } catch {
    return AADSTS.malformedAssertion();
  }
  if (typeof header.alg !== "string" || !ASSERTION_ALGORITHMS.includes(header.alg)) {
    return AADSTS.unsupportedAssertionAlgorithm();
  }
  const x5tS256 = typeof header["x5t#S256"] === "string" ? header["x5t#S256"] : undefined;
  const x5t = typeof header.x5t === "string" ? header.x5t : undefined;
  const thumbprint = thumbprintHex(x5tS256 ?? x5t ?? "");
  const certificate = findCertificate(ctx.app.certificates, x5tS256, x5t);
  if (!certificate) return AADSTS.assertionKeyNotFound(clientId, thumbprint);
  try {
    await compactVerify(assertion, createPublicKey(certificate.certPem), { algorithms: ASSERTION_ALGORITHMS });
  } catch {
    return AADSTS.assertionBadSignature(thumbprint);
  }

  const sameId = (value: unknown) => typeof value === "string" && value.toLowerCase() === clientId.toLowerCase();
  if (!sameId(claims.iss) || !sameId(claims.sub)) return AADSTS.assertionSubjectMismatch();

  const accepted = new Set(assertionAudiences(ctx, tenant, tenantSegment));
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!audiences.some((aud) => typeof aud === "string" && accepted.has(normaliseAudience(aud)))) {
    return AADSTS.assertionAudienceMismatch();
  }

  if (typeof claims.exp !== "number") return AADSTS.malformedAssertion();
  const nbf = typeof claims.nbf === "number" ? claims.nbf : undefined;
  // Clients stamp assertions on the real clock; the sandbox clock may have been advanced to age tokens.
  // An assertion valid on either clock is accepted, so advancing the sandbox clock never breaks certificate auth.
  const validAt = (nowMs: number) => {
    const now = nowMs / 1000;
    return claims.exp! + ASSERTION_SKEW_SECONDS >= now && (nbf === undefined || nbf - ASSERTION_SKEW_SECONDS <= now);
  };
  if (!validAt(Date.now()) && !validAt(ctx.now())) return AADSTS.assertionTimeRange(ctx.now(), nbf, claims.exp);
  return undefined;
}

function findCertificate(
  certificates: CertificateCredential[],
  x5tS256: string | undefined,
  x5t: string | undefined,
): CertificateCredential | undefined {
  if (x5tS256) return certificates.find((c) => c.x5tS256 === x5tS256);
  if (x5t) return certificates.find((c) => c.x5t === x5t);
  return undefined;
}

/** The thumbprint as the portal shows it (upper-case hex), for error messages. */
function thumbprintHex(base64url: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(base64url)) return base64url.slice(0, 96);
  return Buffer.from(base64url, "base64url").toString("hex").toUpperCase();
}

function normaliseAudience(aud: string): string {
  return aud.trim().replace(/\/+$/, "").toLowerCase();
}

/**
 * Audiences accepted on an assertion posted to this tenant: either token endpoint (v1 or v2), the tenant
 * named by GUID, domain or as posted, on any sandbox host alias; and the v2 issuer, which Entra also accepts.
 */
function assertionAudiences(ctx: SandboxContext, tenant: SandboxTenant, tenantSegment: string): string[] {
  const bases = sandboxHosts(ctx).map((host) => `https://${host}`);
  const segments = new Set([tenant.id, tenant.domain, tenantSegment]);
  const out: string[] = [];
  for (const base of bases) {
    for (const segment of segments) {
      out.push(`${base}/${segment}/oauth2/token`, `${base}/${segment}/oauth2/v2.0/token`, `${base}/${segment}/v2.0`);
    }
  }
  return out.map(normaliseAudience);
}

/** Form fields of a token request; anything but a parsed form body (JSON, text, garbage) yields none. */
function formParams(body: unknown): Record<string, string> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return {};
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(body)) if (typeof value === "string") out[key] = value;
  return out;
}

/** Registers the v1 and v2 token endpoints. */
export function registerTokenRoutes(scope: FastifyInstance, services: SandboxServices): void {
  const { ctx } = services;

  const token = (version: 1 | 2) => async (request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply) => {
    const ids = requestIds(request);
    setTokenHeaders(request, reply, ids);
    const resolved = resolveTenantSegment(ctx, request.params.tenant);
    const gate = await ctx.gate(request, reply, {
      tenantKey: tenantKeyOf(resolved),
      endpoint: "token",
      errorBody: (status) => aadErrorBody(gateAadError(status), ids, ctx.now()),
    });
    if (!gate.proceed) return reply;
    if (request.method !== "POST") return sendAadError(reply, AADSTS.postOnly(request.method), ids, ctx.now());
    const outcome = await handleTokenRequest(services, {
      version,
      tenantSegment: request.params.tenant,
      params: formParams(request.body),
      authorization: request.headers.authorization,
    });
    if (!outcome.ok) return sendAadError(reply, outcome.error, ids, ctx.now());
    return reply.code(200).type("application/json; charset=utf-8").send(outcome.body);
  };

  for (const [version, path] of [
    [1, "/:tenant/oauth2/token"],
    [2, "/:tenant/oauth2/v2.0/token"],
  ] as const) {
    scope.route({ method: ["GET", "POST", "PUT", "PATCH", "DELETE"], url: path, handler: token(version) });
  }
}
