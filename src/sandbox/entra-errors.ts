import { randomUUID } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";

/**
 * One Entra ID (AADSTS) error as the emulator answers it: HTTP status, OAuth `error` value, AADSTS number
 * and the message text that follows `AADSTSnnnn: `. Wording follows the captured bodies in
 * fixtures/captured where one exists; the statuses marked unconfirmed in reference 3.4 follow its table.
 */
export interface AadError {
  status: number;
  error: string;
  code: number;
  message: string;
}

/** The token-endpoint error body, keys in the order real responses carry them. */
export interface AadErrorBody {
  error: string;
  error_description: string;
  error_codes: number[];
  timestamp: string;
  trace_id: string;
  correlation_id: string;
  error_uri: string;
}

/** Per-request identifiers Entra stamps on every answer (`x-ms-request-id` is the trace id). */
export interface RequestIds {
  traceId: string;
  correlationId: string;
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether a string is a GUID in the 8-4-4-4-12 form Entra uses for tenant, app and request ids. */
export function isGuid(value: string): boolean {
  return GUID.test(value);
}

/**
 * Trace id is fresh per request; the correlation id is the caller's `client-request-id` (MSAL sends it as a
 * header and in the query) when it is a GUID, which is how Entra lets a client find its call in the logs.
 */
export function requestIds(request: FastifyRequest): RequestIds {
  const query = request.query as Record<string, unknown> | undefined;
  const candidates = [request.headers["client-request-id"], query?.["client-request-id"]];
  const fromClient = candidates.map((c) => (Array.isArray(c) ? c[0] : c)).find((c) => typeof c === "string" && isGuid(c));
  return { traceId: randomUUID(), correlationId: typeof fromClient === "string" ? fromClient.toLowerCase() : randomUUID() };
}

/** `2023-08-03 00:46:25Z`: Entra's timestamp format, not ISO 8601 (a space, no fraction). */
export function aadTimestamp(ms: number): string {
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}Z`;
}

/** Builds the JSON error body; the description ends with the trace lines, `\r\n` separated as in most captures. */
export function aadErrorBody(error: AadError, ids: RequestIds, nowMs: number): AadErrorBody {
  const timestamp = aadTimestamp(nowMs);
  return {
    error: error.error,
    error_description: `AADSTS${error.code}: ${error.message}\r\nTrace ID: ${ids.traceId}\r\nCorrelation ID: ${ids.correlationId}\r\nTimestamp: ${timestamp}`,
    error_codes: [error.code],
    timestamp,
    trace_id: ids.traceId,
    correlation_id: ids.correlationId,
    error_uri: `https://login.microsoftonline.com/error?code=${error.code}`,
  };
}

/**
 * Headers every token-endpoint answer carries, success or error. Set before `ctx.gate` so throttling and
 * server-error faults carry them too.
 */
export function setTokenHeaders(request: FastifyRequest, reply: FastifyReply, ids: RequestIds): void {
  reply.header("cache-control", "no-store, no-cache");
  reply.header("pragma", "no-cache");
  reply.header("x-ms-request-id", ids.traceId);
  reply.header("x-ms-ests-server", "2.1.sandbox - crosswatch");
  if (String(request.headers["return-client-request-id"]).toLowerCase() === "true") {
    reply.header("client-request-id", ids.correlationId);
  }
}

/** Sends an AADSTS error as JSON. */
export function sendAadError(reply: FastifyReply, error: AadError, ids: RequestIds, nowMs: number): FastifyReply {
  return reply.code(error.status).type("application/json; charset=utf-8").send(aadErrorBody(error, ids, nowMs));
}

/**
 * The error a gate fault (throttle, server error) produces on an Entra endpoint. Entra answers overload with
 * `temporarily_unavailable`; an internal failure with `server_error`.
 */
export function gateAadError(status: number): AadError {
  if (status === 429) {
    return { status, error: "temporarily_unavailable", code: 90055, message: "There are too many incoming requests. Please try again later." };
  }
  if (status === 500) {
    return {
      status,
      error: "server_error",
      code: 50000,
      message: "There was an error issuing a token or an issue with our sign-in service. Please try again later.",
    };
  }
  return { status, error: "temporarily_unavailable", code: 90006, message: "The service is temporarily unavailable. Please try again later." };
}

/** Clips a caller-supplied value before it is echoed in a message, so a megabyte field yields a normal body. */
export function clip(value: string, max = 256): string {
  return value.length > max ? `${value.slice(0, max)}…` : value;
}

/** The catalogue of AADSTS errors the emulator produces. */
export const AADSTS = {
  tenantNotFound(tenant: string, error: "invalid_request" | "invalid_tenant"): AadError {
    return {
      status: 400,
      error,
      code: 90002,
      message: `Tenant '${clip(tenant)}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.`,
    };
  },
  /** Client credentials against `common`/`organizations`: there is no tenant to issue the token in. */
  noTenantInRequest(): AadError {
    return {
      status: 400,
      error: "invalid_request",
      code: 50059,
      message: "No tenant-identifying information found in either the request or implied by any provided credentials.",
    };
  },
  missingParameter(name: string): AadError {
    return { status: 400, error: "invalid_request", code: 900144, message: `The request body must contain the following parameter: '${name}'.` };
  },
  postOnly(method: string): AadError {
    return { status: 400, error: "invalid_request", code: 900561, message: `The endpoint only accepts POST, OPTIONS requests. Received a ${clip(method, 16)} request.` };
  },
  invalidRequest(message: string): AadError {
    return { status: 400, error: "invalid_request", code: 90023, message };
  },
  malformedRequest(status: number): AadError {
    return { status, error: "invalid_request", code: 90004, message: "The request is not properly formatted." };
  },
  unsupportedGrantType(grantType: string): AadError {
    return { status: 400, error: "unsupported_grant_type", code: 70003, message: `The app requested an unsupported grant type '${clip(grantType)}'.` };
  },
  applicationNotFound(clientId: string, directory: string): AadError {
    return {
      status: 400,
      error: "unauthorized_client",
      code: 700016,
      message: `Application with identifier '${clip(clientId)}' was not found in the directory '${directory}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`,
    };
  },
  missingServicePrincipal(clientId: string, tenantId: string): AadError {
    return {
      status: 401,
      error: "invalid_client",
      code: 7000229,
      message: `The client application ${clientId} is missing service principal in the tenant ${tenantId}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119`,
    };
  },
  noCredential(): AadError {
    return {
      status: 401,
      error: "invalid_client",
      code: 7000218,
      message: "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    };
  },
  invalidSecret(clientId: string): AadError {
    return {
      status: 401,
      error: "invalid_client",
      code: 7000215,
      message: `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`,
    };
  },
  expiredSecret(clientId: string): AadError {
    return {
      status: 401,
      error: "invalid_client",
      code: 7000222,
      message: `The provided client secret keys for app '${clientId}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.`,
    };
  },
  malformedAssertion(): AadError {
    return { status: 400, error: "invalid_request", code: 50027, message: "JWT token is invalid or malformed." };
  },
  unsupportedAssertionAlgorithm(): AadError {
    return { status: 401, error: "invalid_client", code: 700027, message: "Invalid JWT token. Unsupported asymmetric signing algorithm." };
  },
  assertionKeyNotFound(clientId: string, thumbprint: string): AadError {
    return {
      status: 401,
      error: "invalid_client",
      code: 700027,
      message: `Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '${clip(thumbprint, 96)}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '${clientId}'.]`,
    };
  },
  assertionBadSignature(thumbprint: string): AadError {
    return {
      status: 401,
      error: "invalid_client",
      code: 700027,
      message: `Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '${thumbprint}']`,
    };
  },
  assertionTimeRange(nowMs: number, nbf: number | undefined, exp: number): AadError {
    const iso = (seconds: number) => new Date(seconds * 1000).toISOString().replace(/\.\d+Z$/, ".0000000Z");
    return {
      status: 401,
      error: "invalid_client",
      code: 700024,
      message: `Client assertion is not within its valid time range. Current time: ${new Date(nowMs).toISOString().replace(/Z$/, "0000Z")}, assertion valid from ${nbf === undefined ? "(not set)" : iso(nbf)}, expiry time of assertion ${iso(exp)}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .`,
    };
  },
  assertionSubjectMismatch(): AadError {
    return {
      status: 401,
      error: "invalid_client",
      code: 700021,
      message: "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
    };
  },
  assertionAudienceMismatch(): AadError {
    return {
      status: 401,
      error: "invalid_client",
      code: 700023,
      message: "Client assertion audience claim does not match Realm issuer. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
    };
  },
  scopeNeedsDefault(scope: string): AadError {
    return {
      status: 400,
      error: "invalid_scope",
      code: 1002012,
      message: `The provided value for scope ${clip(scope)} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`,
    };
  },
  invalidScope(scope: string): AadError {
    return {
      status: 400,
      error: "invalid_scope",
      code: 70011,
      message: `The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope ${clip(scope)} is not valid. static scope limit exceeded.`,
    };
  },
  resourceNotFound(resource: string, tenantName: string): AadError {
    return {
      status: 400,
      error: "invalid_resource",
      code: 500011,
      message: `The resource principal named ${clip(resource)} was not found in the tenant named ${tenantName}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.`,
    };
  },
  unknownInstance(): AadError {
    return { status: 400, error: "invalid_instance", code: 50049, message: "Unknown or invalid instance." };
  },
  internal(): AadError {
    return {
      status: 500,
      error: "server_error",
      code: 50000,
      message: "There was an error issuing a token or an issue with our sign-in service. Please try again later.",
    };
  },
  redirectUriMismatch(redirectUri: string, clientId: string): AadError {
    return {
      status: 400,
      error: "invalid_request",
      code: 50011,
      message: `The redirect URI '${clip(redirectUri)}' specified in the request does not match the redirect URIs configured for the application '${clientId}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this.`,
    };
  },
  invalidConsentResource(): AadError {
    return {
      status: 400,
      error: "invalid_client",
      code: 650057,
      message: "Invalid resource. The client has requested access to a resource which is not listed in the requested permissions in the client's application registration.",
    };
  },
  /**
   * Admin consent naming a resource whose service principal the tenant lacks (a Graph-only tenant asked for
   * Microsoft Threat Protection). Wording and `error=invalid_client` from a captured redirect (PostHog PR
   * 43486, reference "Corrections"); Microsoft documents neither, so both are [obs], not [doc].
   */
  serviceNotProvisioned(resourceAppId: string, resourceName: string, tenantId: string): AadError {
    return {
      status: 400,
      error: "invalid_client",
      code: 650052,
      message: `The app is trying to access a service '${resourceAppId}'(${resourceName}) that your organization '${tenantId}' lacks a service principal for. Contact your IT Admin to review the configuration of your service subscriptions or consent to the application in order to create the required service principal.`,
    };
  },
  /** `/common/v2.0/adminconsent`: the v2 endpoint needs a tenant or `organizations` (reference 5.3). */
  commonNotAllowedForAdminConsent(): AadError {
    return {
      status: 400,
      error: "invalid_request",
      code: 90023,
      message: "The /common endpoint is not supported for admin consent on the v2.0 endpoint. Use a tenant id, a tenant domain or /organizations.",
    };
  },
} as const;
