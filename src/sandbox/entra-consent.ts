import { randomBytes, randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { HTML_PAGE_HEADERS, renderConsentPage, renderErrorPage, renderResultPage } from "./consent-page.js";
import type { SandboxContext } from "./context.js";
import { resolveTenantSegment, tenantKeyOf, type TenantSegment } from "./entra-discovery.js";
import { AADSTS, gateAadError, requestIds, type AadError, type RequestIds } from "./entra-errors.js";
import { findResource, RESOURCES, type ResourceKey } from "./resources.js";
import type { SandboxServices } from "./services.js";
import type { SandboxTenant } from "./tenants.js";

/**
 * The three ways an admin reaches consent (reference 5.1 to 5.3); each redirects back with its own parameters.
 * - `v1`: `/{tenant}/oauth2/authorize?prompt=consent&response_type=code` (Defender's partner-access link)
 * - `v2`: `/{tenant|organizations}/v2.0/adminconsent?scope=…/.default`
 * - `adminconsent`: `/{tenant|common}/adminconsent`
 */
export type ConsentFlow = "v1" | "v2" | "adminconsent";

const FLOWS: readonly ConsentFlow[] = ["v1", "v2", "adminconsent"];

/** The parameters a flow carries from the link, through the page, to the decision. */
interface FlowParams {
  flow: ConsentFlow;
  clientId: string;
  redirectUri: string;
  state: string;
  scope: string;
  responseType: string;
}

/** Path (under the tenant segment) of the decision endpoint the consent page posts to. */
export const CONSENT_DECISION_PATH = "Consent/Set";

/** Whether a redirect URI is registered: exact match, or a loopback http(s) URL when the app allows those. */
export function isRegisteredRedirectUri(ctx: SandboxContext, uri: string): boolean {
  if (ctx.app.redirectUris.includes(uri)) return true;
  if (!ctx.app.allowLoopbackRedirects) return false;
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return false;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return false;
  if (url.username !== "" || url.password !== "") return false;
  return ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname.toLowerCase());
}

/**
 * Records an admin's consent in a tenant, as creating the service principal and its app-role assignments
 * does: the app's required roles on every resource whose principal exists there. Re-consenting replaces
 * the grant, which is how a tenant that consented to an older app version gets the incident roles.
 */
export function grantConsent(ctx: SandboxContext, tenant: SandboxTenant): void {
  const roles = {} as Record<ResourceKey, string[]>;
  for (const key of Object.keys(RESOURCES) as ResourceKey[]) {
    roles[key] = tenant.resources[key] ? [...ctx.app.requiredRoles[key]] : [];
  }
  tenant.consent = { granted: true, roles, grantedAt: ctx.now() };
  ctx.noteConsentChanged(tenant);
}

function stringParams(source: unknown): Record<string, string> {
  if (typeof source !== "object" || source === null) return {};
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(source)) {
    if (typeof value === "string") out[key] = value;
    else if (Array.isArray(value) && typeof value[0] === "string") out[key] = value[0];
  }
  return out;
}

function flowParams(flow: ConsentFlow, params: Record<string, string>): FlowParams {
  return {
    flow,
    clientId: params.client_id ?? "",
    redirectUri: params.redirect_uri ?? "",
    state: params.state ?? "",
    scope: params.scope ?? "",
    responseType: params.response_type ?? "",
  };
}

/**
 * Checks what the link asks for, in Entra's order: tenant, client id, redirect URI, then the flow's own
 * parameters. Returns the error page to show, or undefined.
 */
function validateFlow(ctx: SandboxContext, segment: string, resolved: TenantSegment, p: FlowParams): AadError | undefined {
  if (resolved.kind === "unknown") return AADSTS.tenantNotFound(resolved.raw, "invalid_tenant");
  if (p.flow === "v2" && resolved.kind === "multi" && resolved.name === "common") {
    return AADSTS.commonNotAllowedForAdminConsent();
  }
  if (!p.clientId) return AADSTS.missingParameter("client_id");
  if (p.clientId.toLowerCase() !== ctx.app.clientId.toLowerCase()) {
    return AADSTS.applicationNotFound(p.clientId, resolved.kind === "tenant" ? resolved.tenant.domain : segment);
  }
  if (p.redirectUri && !isRegisteredRedirectUri(ctx, p.redirectUri)) {
    return AADSTS.redirectUriMismatch(p.redirectUri, ctx.app.clientId);
  }
  if (p.flow === "v1" && !p.responseType) return AADSTS.missingParameter("response_type");
  if (p.flow === "v2") {
    if (!p.scope) return AADSTS.missingParameter("scope");
    for (const scope of p.scope.split(/\s+/).filter(Boolean)) {
      if (["openid", "profile", "offline_access", "email"].includes(scope.toLowerCase())) continue;
      const resourcePart = scope.includes("/") ? scope.slice(0, scope.lastIndexOf("/")) : scope;
      const resource = findResource(resourcePart);
      if (!resource || ctx.app.requiredRoles[resource.key].length === 0) return AADSTS.invalidConsentResource();
    }
  }
  return undefined;
}

/**
 * The resources an admin consent asks for. A v2 link names them in `scope`; the v1 authorize link and the
 * tenant-wide `/adminconsent` name none and cover every resource the app requires. With the
 * `consentResourceCheck` option `"required"`, a v2 link covers every required resource too (`.default` "behaves
 * like the v1 endpoint", reference 5.3): whether Entra then still refuses a link that names Graph alone is
 * unconfirmed, so both are emulated; the default follows the reported behaviour (the named scopes decide).
 */
function askedResources(ctx: SandboxContext, p: FlowParams): ResourceKey[] {
  const required = (Object.keys(RESOURCES) as ResourceKey[]).filter((key) => ctx.app.requiredRoles[key].length > 0);
  if (p.flow !== "v2" || ctx.options.consentResourceCheck === "required") return required;
  const named = new Set<ResourceKey>();
  for (const scope of p.scope.split(/\s+/).filter(Boolean)) {
    const resource = findResource(scope.includes("/") ? scope.slice(0, scope.lastIndexOf("/")) : scope);
    if (resource) named.add(resource.key);
  }
  return required.filter((key) => named.has(key));
}

/**
 * AADSTS650052 when the consent asks for a resource whose service principal the tenant lacks (a Graph-only
 * tenant and Microsoft Threat Protection): Entra refuses the whole request, granting nothing.
 */
function unprovisioned(ctx: SandboxContext, tenant: SandboxTenant, p: FlowParams): AadError | undefined {
  const missing = askedResources(ctx, p).find((key) => !tenant.resources[key]);
  if (!missing) return undefined;
  return AADSTS.serviceNotProvisioned(RESOURCES[missing].appId, RESOURCES[missing].displayName, tenant.id);
}

/** Appends the result parameters to the redirect URI, keeping any query it already has. */
function withParams(redirectUri: string, params: [string, string][]): string {
  const url = new URL(redirectUri);
  for (const [key, value] of params) url.searchParams.append(key, value);
  return url.toString();
}

function traceSuffix(ids: RequestIds, nowMs: number): string {
  const timestamp = new Date(nowMs).toISOString();
  return `\r\nTrace ID: ${ids.traceId}\r\nCorrelation ID: ${ids.correlationId}\r\nTimestamp: ${timestamp.slice(0, 10)} ${timestamp.slice(11, 19)}Z`;
}

/** The parameters each flow sends back to the redirect URI, success or decline (reference 5.1 to 5.3). */
function resultParams(p: FlowParams, accepted: boolean, tenant: SandboxTenant, ids: RequestIds, nowMs: number): [string, string][] {
  const out: [string, string][] = [];
  const state = (): void => {
    if (p.state) out.push(["state", p.state]);
  };
  if (accepted) {
    switch (p.flow) {
      case "v1":
        // The code is opaque and useless for client credentials; what matters is the grant it records.
        out.push(["code", `1.${randomBytes(48).toString("base64url")}`], ["admin_consent", "True"], ["tenant", tenant.id]);
        out.push(["session_state", randomUUID()]);
        state();
        return out;
      case "v2":
        out.push(["admin_consent", "True"], ["tenant", tenant.id], ["scope", p.scope]);
        state();
        return out;
      case "adminconsent":
        out.push(["tenant", tenant.id]);
        state();
        out.push(["admin_consent", "True"]);
        return out;
    }
  }
  switch (p.flow) {
    case "v1":
      out.push(["error", "access_denied"], ["error_description", `AADSTS65004: User declined to consent to access the app.${traceSuffix(ids, nowMs)}`]);
      state();
      return out;
    case "v2":
      out.push(
        ["admin_consent", "True"],
        ["error", "consent_required"],
        ["error_description", `AADSTS65004: The resource owner or authorization server denied the request.${traceSuffix(ids, nowMs)}`],
      );
      state();
      return out;
    case "adminconsent":
      out.push(["error", "permission_denied"], ["error_description", "The admin canceled the request"]);
      state();
      return out;
  }
}

/**
 * The parameters of an error Entra sends back to the redirect URI instead of showing its own page (650052).
 * The shape follows the captured redirect (`error`, `error_description`); v2 adds `admin_consent=True` as on
 * its documented errors (reference 5.3) and every flow returns the state. Both details are unconfirmed for 650052.
 */
function errorParams(p: FlowParams, error: AadError, ids: RequestIds, nowMs: number): [string, string][] {
  const out: [string, string][] = [];
  if (p.flow === "v2") out.push(["admin_consent", "True"]);
  out.push(["error", error.error], ["error_description", `AADSTS${error.code}: ${error.message}${traceSuffix(ids, nowMs)}`]);
  if (p.state) out.push(["state", p.state]);
  return out;
}

/** Registers the consent links (v1 authorize, v2 and tenant-wide adminconsent) and the decision endpoint. */
export function registerConsentRoutes(scope: FastifyInstance, services: SandboxServices): void {
  const { ctx } = services;

  const sendHtml = (reply: FastifyReply, status: number, html: string) => reply.code(status).headers(HTML_PAGE_HEADERS).send(html);
  const sendError = (reply: FastifyReply, error: AadError, ids: RequestIds) =>
    sendHtml(reply, error.status >= 500 ? error.status : 400, renderErrorPage(error, ids, ctx.now()));

  const gateHtml = async (request: FastifyRequest, reply: FastifyReply, ids: RequestIds, tenantKey: string) => {
    reply.header("x-ms-request-id", ids.traceId);
    const gate = await ctx.gate(request, reply, {
      tenantKey,
      endpoint: "consent",
      errorBody: (status) => {
        reply.headers(HTML_PAGE_HEADERS);
        return renderErrorPage(gateAadError(status), ids, ctx.now());
      },
    });
    return gate.proceed;
  };

  /** Sends the admin back with a refusal, or shows Entra's error page when there is nowhere to send them. */
  const refuse = (reply: FastifyReply, p: FlowParams, error: AadError, ids: RequestIds) => {
    const redirectUri = p.redirectUri || ctx.app.redirectUris[0];
    if (!redirectUri) return sendError(reply, error, ids);
    reply.headers({ "cache-control": "no-store, no-cache", pragma: "no-cache" });
    return reply.redirect(withParams(redirectUri, errorParams(p, error, ids, ctx.now())), 302);
  };

  const showPage = (flow: ConsentFlow) => async (request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply) => {
    const ids = requestIds(request);
    const segment = request.params.tenant;
    const resolved = resolveTenantSegment(ctx, segment);
    if (!(await gateHtml(request, reply, ids, tenantKeyOf(resolved)))) return reply;
    const p = flowParams(flow, stringParams(request.query));
    const error = validateFlow(ctx, segment, resolved, p);
    if (error) return sendError(reply, error, ids);
    // A link naming the tenant: Entra checks the resources before it prompts (a multi-tenant link, once the tenant is picked).
    const notProvisioned = resolved.kind === "tenant" ? unprovisioned(ctx, resolved.tenant, p) : undefined;
    if (notProvisioned) return refuse(reply, p, notProvisioned, ids);
    const returnTo = p.redirectUri || ctx.app.redirectUris[0];
    const tenants = ctx.tenants;
    const html = renderConsentPage({
      appDisplayName: ctx.app.displayName,
      clientId: ctx.app.clientId,
      requiredRoles: ctx.app.requiredRoles,
      tenant:
        resolved.kind === "tenant"
          ? { fixed: resolved.tenant }
          : { choices: tenants, preselectedId: (tenants.find((t) => !t.consent.granted) ?? tenants[0])?.id },
      action: `/${encodeURIComponent(segment)}/${CONSENT_DECISION_PATH}`,
      hidden: {
        flow,
        client_id: p.clientId,
        redirect_uri: p.redirectUri,
        state: p.state,
        scope: p.scope,
        response_type: p.responseType,
      },
      returnTo: returnTo ? safeOrigin(returnTo) : undefined,
    });
    return sendHtml(reply, 200, html);
  };

  scope.get("/:tenant/oauth2/authorize", showPage("v1"));
  scope.get("/:tenant/v2.0/adminconsent", showPage("v2"));
  scope.get("/:tenant/adminconsent", showPage("adminconsent"));

  scope.post(`/:tenant/${CONSENT_DECISION_PATH}`, async (request: FastifyRequest<{ Params: { tenant: string } }>, reply) => {
    const ids = requestIds(request);
    const segment = request.params.tenant;
    const resolved = resolveTenantSegment(ctx, segment);
    const form = stringParams(request.body);
    // From a multi-tenant link the admin picked the tenant on the page; a tenant link fixes it.
    const target = resolved.kind === "tenant" ? resolved.tenant : resolved.kind === "multi" ? ctx.findTenant(form.tenant ?? "") : undefined;
    if (!(await gateHtml(request, reply, ids, target?.id ?? tenantKeyOf(resolved)))) return reply;

    const flow = FLOWS.find((f) => f === form.flow);
    if (!flow) return sendError(reply, AADSTS.missingParameter("flow"), ids);
    const p = flowParams(flow, form);
    const error = validateFlow(ctx, segment, resolved, p);
    if (error) return sendError(reply, error, ids);
    if (!target) return sendError(reply, AADSTS.tenantNotFound(form.tenant ?? "", "invalid_tenant"), ids);
    const decision = form.decision;
    if (decision !== "accept" && decision !== "decline") return sendError(reply, AADSTS.missingParameter("decision"), ids);
    const notProvisioned = unprovisioned(ctx, target, p);
    if (notProvisioned) return refuse(reply, p, notProvisioned, ids);

    const accepted = decision === "accept";
    if (accepted) grantConsent(ctx, target);
    const redirectUri = p.redirectUri || ctx.app.redirectUris[0];
    if (!redirectUri) {
      const roles = (Object.keys(RESOURCES) as ResourceKey[]).flatMap((key) => target.consent.roles[key]);
      return sendHtml(
        reply,
        200,
        renderResultPage({ accepted, appDisplayName: ctx.app.displayName, tenant: target, grantedRoles: accepted ? roles : [] }),
      );
    }
    reply.headers({ "cache-control": "no-store, no-cache", pragma: "no-cache" });
    return reply.redirect(withParams(redirectUri, resultParams(p, accepted, target, ids, ctx.now())), 302);
  });
}

/** Origin and path of a URL, for display; never the query, which may carry secrets or noise. */
function safeOrigin(uri: string): string {
  try {
    const url = new URL(uri);
    return `${url.origin}${url.pathname}`;
  } catch {
    return uri;
  }
}
