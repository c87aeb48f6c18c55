import { createRemoteJWKSet, customFetch, errors, jwtVerify, type JWTPayload } from "jose";
import type { Logger } from "pino";
import { fetch as undiciFetch, type Dispatcher } from "undici";
import type { EntraCallerConfig } from "../config.js";
import type { Caller, Grant } from "./caller.js";

/** Why a caller was refused. The message is safe to show: it never holds the credential or any part of it. */
export class CallerAuthError extends Error {
  override readonly name = "CallerAuthError";
  constructor(
    readonly code: "UNAUTHENTICATED" | "FORBIDDEN" | "AUTH_UNAVAILABLE",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface EntraCallerVerifier {
  /** The caller a valid token stands for; CallerAuthError otherwise. */
  verify(token: string): Promise<Caller>;
}

export interface EntraCallerVerifierOptions {
  config: EntraCallerConfig;
  /** Entra authority host; the key set is `${authorityHost}/common/discovery/v2.0/keys`. */
  authorityHost: string;
  /** The process's dispatcher (it alone trusts the sandbox's certificate). */
  dispatcher: Dispatcher;
  logger: Logger;
}

/** Claims every Entra access token carries; a token without one of them is not one we issued for. */
const REQUIRED_CLAIMS = ["iss", "aud", "exp", "nbf", "iat", "tid"];

/**
 * Validates Entra ID access tokens of the partner's own users with jose: RS256 only (no `none`, no HMAC
 * with a public key), the authority's published keys (fetched through our dispatcher, cached 10 minutes,
 * refetched at most every 30 s for an unknown `kid`), audience, v1 or v2 issuer of an allowed tenant whose
 * `tid` agrees, and lifetime within the clock tolerance. App roles become grants through the role map.
 */
export function createEntraCallerVerifier(options: EntraCallerVerifierOptions): EntraCallerVerifier {
  const { config, authorityHost, dispatcher, logger } = options;
  const keys = createRemoteJWKSet(new URL(`${authorityHost}/common/discovery/v2.0/keys`), {
    cacheMaxAge: 10 * 60_000,
    cooldownDuration: 30_000,
    timeoutDuration: 5_000,
    [customFetch]: (url, init) =>
      undiciFetch(url, {
        method: init.method,
        redirect: init.redirect,
        signal: init.signal,
        headers: Object.fromEntries(init.headers.entries()),
        dispatcher,
      }) as unknown as Promise<Response>,
  });
  const issuers = new Map<string, string>();
  for (const tenant of config.tenants) {
    issuers.set(`${authorityHost}/${tenant}/v2.0`, tenant);
    issuers.set(`https://sts.windows.net/${tenant}/`, tenant);
  }

  return {
    async verify(token) {
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keys, {
          algorithms: ["RS256"],
          audience: config.audiences,
          issuer: [...issuers.keys()],
          clockTolerance: config.clockToleranceSeconds,
          requiredClaims: REQUIRED_CLAIMS,
        }));
      } catch (error) {
        logger.debug({ reason: (error as { code?: string }).code ?? (error as Error).name }, "caller token refused");
        throw refusal(error);
      }
      const tid = String(payload.tid).toLowerCase();
      if (!config.tenants.includes(tid) || issuers.get(String(payload.iss)) !== tid) {
        throw new CallerAuthError("UNAUTHENTICATED", "tenant not allowed");
      }
      const id = stringClaim(payload, "oid") ?? stringClaim(payload, "sub");
      if (!id) throw new CallerAuthError("UNAUTHENTICATED", "required claim missing: oid");
      const roles = Array.isArray(payload.roles) ? payload.roles.filter((r): r is string => typeof r === "string") : [];
      const grants: Grant[] = roles.flatMap((role) => (config.roleMap[role] ? [config.roleMap[role]] : []));
      if (grants.length === 0) {
        throw new CallerAuthError(
          "FORBIDDEN",
          `the token carries no Crosswatch app role: assign one of ${Object.keys(config.roleMap).join(", ")} to the user`,
        );
      }
      const name =
        stringClaim(payload, "name") ?? stringClaim(payload, "preferred_username") ?? stringClaim(payload, "upn") ?? stringClaim(payload, "azp") ?? id;
      return { kind: "ENTRA", id, name: name.slice(0, 128), grants };
    },
  };
}

function stringClaim(payload: JWTPayload, claim: string): string | undefined {
  const value = payload[claim];
  return typeof value === "string" && value.length > 0 ? value : undefined;
}

/** A jose failure as a refusal with a reason a caller can act on, or AUTH_UNAVAILABLE when keys are out of reach. */
function refusal(error: unknown): CallerAuthError {
  const reason = (message: string) => new CallerAuthError("UNAUTHENTICATED", message, { cause: error });
  if (error instanceof errors.JWTExpired) return reason("token expired");
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.reason === "missing") return reason(`required claim missing: ${error.claim}`);
    switch (error.claim) {
      case "nbf":
        return reason("token not yet valid");
      case "aud":
        return reason("audience not accepted");
      case "iss":
        return reason("issuer not accepted");
      default:
        return reason(`claim not accepted: ${error.claim}`);
    }
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return reason("algorithm not allowed: tokens must be RS256");
  if (error instanceof errors.JWSSignatureVerificationFailed || error instanceof errors.JWKSNoMatchingKey) {
    return reason("signature invalid");
  }
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) return reason("malformed token");
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid || !(error instanceof errors.JOSEError) || error.code === "ERR_JOSE_GENERIC") {
    return new CallerAuthError("AUTH_UNAVAILABLE", "Entra ID signing keys could not be fetched to check the token: try again shortly", { cause: error });
  }
  return reason("token not accepted");
}
