import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { HTML_PAGE_HEADERS, renderErrorPage } from "./consent-page.js";
import { registerConsentRoutes } from "./entra-consent.js";
import { registerDiscoveryRoutes } from "./entra-discovery.js";
import { AADSTS, requestIds, sendAadError, setTokenHeaders, type AadError } from "./entra-errors.js";
import { registerTokenRoutes } from "./entra-token.js";
import type { SandboxServices } from "./services.js";

/**
 * Emulated Entra ID on the sandbox host, paths as on login.microsoftonline.com: OpenID and instance discovery,
 * key sets, the v1 and v2 token endpoints (client credentials by secret or certificate) and the admin-consent
 * links. Two encapsulated scopes so their error handling (JSON AADSTS bodies, HTML error pages) and body
 * parsing never leak into the incident APIs.
 */
export function registerEntraRoutes(app: FastifyInstance, services: SandboxServices): void {
  const { ctx } = services;

  app.register(async (scope) => {
    acceptAnyBody(scope);
    scope.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      const ids = requestIds(request);
      setTokenHeaders(request, reply, ids);
      return sendAadError(reply, errorFor(error), ids, ctx.now());
    });
    registerDiscoveryRoutes(scope, services);
    registerTokenRoutes(scope, services);
  });

  app.register(async (scope) => {
    acceptAnyBody(scope);
    scope.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      const aad = errorFor(error);
      return reply
        .code(aad.status)
        .headers(HTML_PAGE_HEADERS)
        .send(renderErrorPage(aad, requestIds(request), ctx.now()));
    });
    registerConsentRoutes(scope, services);
  });
}

/**
 * Entra reads form bodies only. A JSON, text or unlabelled body is accepted and ignored here, so the handler
 * answers what Entra answers (a missing `grant_type`) instead of Fastify's own 400/415 bodies.
 * The form parser itself is the sandbox's, inherited from the root instance.
 */
function acceptAnyBody(scope: FastifyInstance): void {
  scope.removeContentTypeParser(["application/json", "text/plain"]);
  scope.addContentTypeParser("*", { parseAs: "buffer" }, (_request, _body, done) => {
    done(null, undefined);
  });
}

/** Maps a framework error (body too large, bad framing) or an unexpected exception to an AADSTS error. */
function errorFor(error: FastifyError): AadError {
  const status = error.statusCode ?? 500;
  if (status === 413) return AADSTS.malformedRequest(413);
  if (status >= 400 && status < 500) return AADSTS.malformedRequest(400);
  return AADSTS.internal();
}
