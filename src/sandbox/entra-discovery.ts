import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { SandboxContext } from "./context.js";
import { AADSTS, gateAadError, requestIds, sendAadError, aadErrorBody, type RequestIds } from "./entra-errors.js";
import type { SandboxServices } from "./services.js";
import type { SandboxTenant } from "./tenants.js";
import { jwks, v1Issuer, v2Issuer } from "./tokens.js";

/** What the `{tenant}` path segment of an Entra URL names. */
export type TenantSegment =
  | { kind: "tenant"; tenant: SandboxTenant }
  | { kind: "multi"; name: "common" | "organizations" }
  | { kind: "unknown"; raw: string };

/** Resolves `{tenant}`: a sandbox tenant by GUID or domain, one of the multi-tenant aliases, or nothing. */
export function resolveTenantSegment(ctx: SandboxContext, segment: string): TenantSegment {
  const lower = segment.toLowerCase();
  if (lower === "common" || lower === "organizations") return { kind: "multi", name: lower };
  const tenant = ctx.findTenant(segment);
  return tenant ? { kind: "tenant", tenant } : { kind: "unknown", raw: segment };
}

/** The counter key of a call: the tenant id when the segment names one, else the raw segment. */
export function tenantKeyOf(resolved: TenantSegment): string {
  switch (resolved.kind) {
    case "tenant":
      return resolved.tenant.id;
    case "multi":
      return resolved.name;
    case "unknown":
      return resolved.raw;
  }
}

/** Literal placeholder real Entra puts in multi-tenant discovery documents. */
const TENANT_PLACEHOLDER = "{tenantid}";

/**
 * The v2 OpenID configuration of reference 3.5, endpoints on the sandbox host. For a tenant the GUID is
 * substituted in every endpoint (even when the request named a domain); for `common`/`organizations` the
 * endpoints keep the alias and the issuer carries the `{tenantid}` placeholder.
 */
export function openIdConfigurationV2(ctx: SandboxContext, resolved: Exclude<TenantSegment, { kind: "unknown" }>): Record<string, unknown> {
  const base = ctx.baseUrl;
  const path = resolved.kind === "tenant" ? resolved.tenant.id : resolved.name;
  const issuerTenant = resolved.kind === "tenant" ? resolved.tenant.id : TENANT_PLACEHOLDER;
  return {
    token_endpoint: `${base}/${path}/oauth2/v2.0/token`,
    token_endpoint_auth_methods_supported: ["client_secret_post", "private_key_jwt", "client_secret_basic"],
    jwks_uri: `${base}/${path}/discovery/v2.0/keys`,
    response_modes_supported: ["query", "fragment", "form_post"],
    subject_types_supported: ["pairwise"],
    id_token_signing_alg_values_supported: ["RS256"],
    response_types_supported: ["code", "id_token", "code id_token", "id_token token"],
    scopes_supported: ["openid", "profile", "email", "offline_access"],
    issuer: v2Issuer(base, issuerTenant),
    request_uri_parameter_supported: false,
    userinfo_endpoint: "https://graph.microsoft.com/oidc/userinfo",
    authorization_endpoint: `${base}/${path}/oauth2/v2.0/authorize`,
    device_authorization_endpoint: `${base}/${path}/oauth2/v2.0/devicecode`,
    http_logout_supported: true,
    frontchannel_logout_supported: true,
    end_session_endpoint: `${base}/${path}/oauth2/v2.0/logout`,
    claims_supported: [
      "sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host",
      "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash",
      "c_hash", "email",
    ],
    kerberos_endpoint: `${base}/${path}/kerberos`,
    tenant_region_scope: resolved.kind === "tenant" ? resolved.tenant.region : null,
    cloud_instance_name: "microsoftonline.com",
    cloud_graph_host_name: "graph.windows.net",
    msgraph_host: "graph.microsoft.com",
    rbac_url: "https://pas.windows.net",
  };
}

/** The v1 OpenID configuration: `sts.windows.net` issuer and the tenant-independent `common` key set. */
export function openIdConfigurationV1(ctx: SandboxContext, resolved: Exclude<TenantSegment, { kind: "unknown" }>): Record<string, unknown> {
  const base = ctx.baseUrl;
  const path = resolved.kind === "tenant" ? resolved.tenant.id : resolved.name;
  return {
    token_endpoint: `${base}/${path}/oauth2/token`,
    token_endpoint_auth_methods_supported: ["client_secret_post", "private_key_jwt", "client_secret_basic"],
    jwks_uri: `${base}/common/discovery/keys`,
    response_modes_supported: ["query", "fragment", "form_post"],
    subject_types_supported: ["pairwise"],
    id_token_signing_alg_values_supported: ["RS256"],
    response_types_supported: ["code", "id_token", "code id_token", "token id_token", "token"],
    scopes_supported: ["openid"],
    issuer: v1Issuer(resolved.kind === "tenant" ? resolved.tenant.id : TENANT_PLACEHOLDER),
    microsoft_multi_refresh_token: true,
    authorization_endpoint: `${base}/${path}/oauth2/authorize`,
    device_authorization_endpoint: `${base}/${path}/oauth2/devicecode`,
    http_logout_supported: true,
    frontchannel_logout_supported: true,
    end_session_endpoint: `${base}/${path}/oauth2/logout`,
    claims_supported: [
      "sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host",
      "aud", "exp", "iat", "auth_time", "acr", "amr", "nonce", "email", "given_name", "family_name", "nickname",
    ],
    check_session_iframe: `${base}/${path}/oauth2/checksession`,
    userinfo_endpoint: `${base}/${path}/openid/userinfo`,
    kerberos_endpoint: `${base}/${path}/kerberos`,
    tenant_region_scope: resolved.kind === "tenant" ? resolved.tenant.region : null,
    cloud_instance_name: "microsoftonline.com",
    cloud_graph_host_name: "graph.windows.net",
    msgraph_host: "graph.microsoft.com",
    rbac_url: "https://pas.windows.net",
  };
}

/** Host names (with port) under which the sandbox answers as an Entra instance. */
export function sandboxHosts(ctx: SandboxContext): string[] {
  const port = new URL(ctx.baseUrl).port;
  return [`localhost:${port}`, `127.0.0.1:${port}`];
}

/**
 * Instance discovery (`/common/discovery/instance`), answered for the sandbox's own host only: metadata with
 * the sandbox as preferred network and cache, so MSAL configured without `knownAuthorities` can still trust it.
 */
export function instanceDiscovery(ctx: SandboxContext, authorizationEndpoint: string | undefined): Record<string, unknown> | undefined {
  const hosts = sandboxHosts(ctx);
  let tenantPath = "common";
  if (authorizationEndpoint) {
    let url: URL;
    try {
      url = new URL(authorizationEndpoint);
    } catch {
      return undefined;
    }
    if (url.protocol !== "https:" || !hosts.includes(url.host.toLowerCase())) return undefined;
    tenantPath = url.pathname.split("/").filter(Boolean)[0] ?? "common";
  }
  return {
    tenant_discovery_endpoint: `${ctx.baseUrl}/${tenantPath}/v2.0/.well-known/openid-configuration`,
    "api-version": "1.1",
    metadata: [{ preferred_network: hosts[0], preferred_cache: hosts[0], aliases: hosts }],
  };
}

const METADATA_CACHE = "max-age=86400, private";

/** Runs the gate for a discovery/JWKS call; on a fault it answers with an Entra body. */
async function gateJson(
  ctx: SandboxContext,
  request: FastifyRequest,
  reply: FastifyReply,
  ids: RequestIds,
  tenantKey: string,
  endpoint: "discovery" | "jwks",
): Promise<boolean> {
  reply.header("x-ms-request-id", ids.traceId);
  const gate = await ctx.gate(request, reply, {
    tenantKey,
    endpoint,
    errorBody: (status) => aadErrorBody(gateAadError(status), ids, ctx.now()),
  });
  return gate.proceed;
}

/** Registers OpenID discovery (v1, v2), instance discovery and the key sets. */
export function registerDiscoveryRoutes(scope: FastifyInstance, services: SandboxServices): void {
  const { ctx, signingKey } = services;

  const discovery = (version: 1 | 2) => async (request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply) => {
    const ids = requestIds(request);
    const resolved = resolveTenantSegment(ctx, request.params.tenant);
    if (!(await gateJson(ctx, request, reply, ids, tenantKeyOf(resolved), "discovery"))) return reply;
    if (resolved.kind === "unknown") {
      return sendAadError(reply, AADSTS.tenantNotFound(resolved.raw, "invalid_tenant"), ids, ctx.now());
    }
    reply.header("cache-control", METADATA_CACHE);
    return reply.send(version === 2 ? openIdConfigurationV2(ctx, resolved) : openIdConfigurationV1(ctx, resolved));
  };
  scope.get("/:tenant/v2.0/.well-known/openid-configuration", discovery(2));
  scope.get("/:tenant/.well-known/openid-configuration", discovery(1));

  scope.get("/common/discovery/instance", async (request, reply) => {
    const ids = requestIds(request);
    if (!(await gateJson(ctx, request, reply, ids, "common", "discovery"))) return reply;
    const query = request.query as Record<string, unknown>;
    const endpoint = typeof query.authorization_endpoint === "string" ? query.authorization_endpoint : undefined;
    const body = instanceDiscovery(ctx, endpoint);
    if (!body) return sendAadError(reply, AADSTS.unknownInstance(), ids, ctx.now());
    reply.header("cache-control", METADATA_CACHE);
    return reply.send(body);
  });

  const keys = (version: 1 | 2) => async (request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply) => {
    const ids = requestIds(request);
    const resolved = resolveTenantSegment(ctx, request.params.tenant);
    if (!(await gateJson(ctx, request, reply, ids, tenantKeyOf(resolved), "jwks"))) return reply;
    if (resolved.kind === "unknown") {
      return sendAadError(reply, AADSTS.tenantNotFound(resolved.raw, "invalid_tenant"), ids, ctx.now());
    }
    reply.header("cache-control", METADATA_CACHE);
    // v2 key sets name the issuer each key signs for; v1 sets do not (reference 3.5).
    const issuer =
      version === 2 ? v2Issuer(ctx.baseUrl, resolved.kind === "tenant" ? resolved.tenant.id : TENANT_PLACEHOLDER) : undefined;
    return reply.send(jwks(signingKey, issuer));
  };
  scope.get("/:tenant/discovery/v2.0/keys", keys(2));
  scope.get("/:tenant/discovery/keys", keys(1));
}
