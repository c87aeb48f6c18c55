import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { EndpointName, RateLimitOptions } from "./context.js";
import type { Resource } from "./resources.js";
import type { SandboxServices } from "./services.js";
import type { SandboxTenant } from "./tenants.js";
import { verifyBearer } from "./tokens.js";

/**
 * Plumbing the two incident backends share: raw bodies and query strings (so that every malformed input
 * gets the backend's own error shape, never Fastify's), bearer checks with counting, and role checks.
 */

/** Error writer of one backend: status, code, message → its JSON body. */
export type ErrorBodyWriter = (status: number, code: string, message: string) => unknown;

/**
 * Makes a route scope take every body as a raw string. Bodies are parsed by the routes themselves, so
 * bad JSON, a wrong content type or an empty body get the Microsoft error shape and a precise message.
 */
export function useRawBodies(scope: FastifyInstance): void {
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser("*", { parseAs: "string" }, (_request, body, done) => done(null, body));
}

/** The query string exactly as sent (`+` and `%20` still encoded), for OData parsing. */
export function rawQueryString(request: FastifyRequest): string {
  const url = request.raw.url ?? "";
  const q = url.indexOf("?");
  return q < 0 ? "" : url.slice(q + 1);
}

export type JsonBodyResult = { ok: true; value: Record<string, unknown> } | { ok: false; reason: "content-type" | "empty" | "syntax" | "not-object"; message: string };

/**
 * Reads a JSON object body. Distinguishes a missing/foreign content type, an empty body, malformed
 * JSON and JSON that is not an object, because clients need to know which one they got wrong.
 */
export function readJsonObject(request: FastifyRequest): JsonBodyResult {
  const contentType = String(request.headers["content-type"] ?? "");
  const body = typeof request.body === "string" ? request.body : "";
  if (body.trim() === "") return { ok: false, reason: "empty", message: "The request body is empty; a JSON object is required." };
  if (!/^application\/json\s*(;|$)/i.test(contentType.trim())) {
    return { ok: false, reason: "content-type", message: `Content-Type must be application/json, got '${contentType || "(none)"}'.` };
  }
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (error) {
    return { ok: false, reason: "syntax", message: `The request body is not valid JSON: ${(error as Error).message}` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { ok: false, reason: "not-object", message: "The request body must be a JSON object." };
  }
  return { ok: true, value: value as Record<string, unknown> };
}

/** The `tid` of a bearer token, read without verification: only to count a refused call per tenant. */
export function unverifiedTenantId(authorization: string | undefined): string | undefined {
  const match = /^Bearer\s+[^.\s]+\.([^.\s]+)\.[^.\s]*$/i.exec(authorization ?? "");
  if (!match) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(match[1]!, "base64url").toString("utf8")) as { tid?: unknown };
    return typeof payload.tid === "string" ? payload.tid.toLowerCase() : undefined;
  } catch {
    return undefined;
  }
}

export interface CallerCheck {
  endpoint: EndpointName;
  bucket: keyof RateLimitOptions;
  resource: Resource;
  /** Roles of which the caller needs at least one. */
  requiredRoles: readonly string[];
  /** `Unauthorized` (Defender) or `InvalidAuthenticationToken` (Graph). */
  unauthorizedCode: string;
  errorBody: ErrorBodyWriter;
  /** Writes the 403 for a caller holding `granted` roles. */
  forbidden: (granted: string[]) => unknown;
}

export interface Caller {
  tenant: SandboxTenant;
  appId: string;
  roles: string[];
}

/**
 * Authenticates, counts and gates one incident call: 401 for a bad bearer (counted under the token's
 * claimed tenant, or `unauthenticated`), then the context's gate (counting, latency, faults, rate limit),
 * then 403 when no required role was granted. Returns the caller, or undefined when already answered.
 */
export async function admitCaller(
  services: SandboxServices,
  request: FastifyRequest,
  reply: FastifyReply,
  check: CallerCheck,
): Promise<Caller | undefined> {
  const { ctx, signingKey } = services;
  const auth = await verifyBearer(ctx, signingKey, request.headers.authorization, check.resource);
  if (!auth.ok) {
    const claimed = unverifiedTenantId(request.headers.authorization);
    ctx.count(claimed && ctx.findTenant(claimed) ? claimed : "unauthenticated", check.endpoint);
    await reply.code(401).send(check.errorBody(401, check.unauthorizedCode, auth.message));
    return undefined;
  }
  const gate = await ctx.gate(request, reply, {
    tenantKey: auth.tenant.id,
    endpoint: check.endpoint,
    rate: { bucket: check.bucket, appId: auth.appId },
    errorBody: check.errorBody,
  });
  if (!gate.proceed) return undefined;
  if (!auth.roles.some((role) => check.requiredRoles.includes(role))) {
    await reply.code(403).send(check.forbidden(auth.roles));
    return undefined;
  }
  return { tenant: auth.tenant, appId: auth.appId, roles: auth.roles };
}

/** Maps errors Fastify raises before a handler runs (body too large, bad framing) to a status and text. */
export function describeFrameworkError(error: { statusCode?: number; code?: string; message: string }): { status: number; message: string } {
  const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
  if (status === 413) return { status, message: "The request body is too large." };
  if (status >= 500) return { status: 500, message: "An internal server error occurred." };
  return { status, message: error.message };
}
