import { createHash } from "node:crypto";
import { decodeJwt, decodeProtectedHeader, type JWTPayload } from "jose";

/**
 * What Crosswatch reads from an app-only access token (reference section 4.2). Decoded, never verified:
 * we are the token's client, not its audience; the resource API verifies it. Only for diagnostics and
 * checks that can be skipped: a token may be opaque (`readTokenClaims` gives undefined), and works anyway.
 */
export interface TokenClaims {
  /** Tenant the token was issued in (GUID, lower case). */
  tid: string;
  /** Audience: the resource's App ID URI in v1 tokens, its appId GUID in v2 tokens. */
  aud: string;
  /** `https://sts.windows.net/{tid}/` (v1) or `https://login.microsoftonline.com/{tid}/v2.0` (v2). */
  iss: string;
  /** The client app id: `appid` in v1 tokens, `azp` in v2 tokens. */
  appId: string;
  /** Application permissions granted in the tenant; empty when the claim is absent (none granted). */
  roles: string[];
  /** `"1.0"` or `"2.0"`. */
  ver: string;
  /** Unix seconds. */
  iat: number;
  /** Unix seconds; `iat` when the token has no `nbf`. */
  nbf: number;
  /** Unix seconds. */
  exp: number;
  /** `"app"` for app-only tokens when the optional claim is present. */
  idtyp: string | undefined;
  /** Object id of the partner app's service principal in the tenant. */
  oid: string;
}

/** An access token that is not a JWT carrying the claims above. Names the claim at fault, never a value. */
export class TokenClaimsError extends Error {
  readonly code = "TOKEN_UNREADABLE";
  override readonly name = "TokenClaimsError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * Decodes the claims of an Entra access token without verifying its signature.
 *
 * @throws TokenClaimsError when the token is not a JWS or lacks a claim an app-only token always has
 */
export function decodeTokenClaims(accessToken: string): TokenClaims {
  let payload: JWTPayload;
  try {
    // The header check rejects strings that merely have three dots; `alg` is required of any JWS.
    const header = decodeProtectedHeader(accessToken);
    if (typeof header.alg !== "string") throw new TokenClaimsError("access token header has no alg");
    payload = decodeJwt(accessToken);
  } catch (error) {
    if (error instanceof TokenClaimsError) throw error;
    throw new TokenClaimsError("access token is not a decodable JWT", { cause: error });
  }

  const text = (name: string, value: unknown = payload[name]): string => {
    if (typeof value !== "string" || value === "") throw new TokenClaimsError(`access token has no ${name} claim`);
    return value;
  };
  const seconds = (name: string, value: unknown = payload[name]): number => {
    if (typeof value !== "number" || !Number.isFinite(value)) throw new TokenClaimsError(`access token has no numeric ${name} claim`);
    return value;
  };

  const audience = Array.isArray(payload.aud) ? payload.aud[0] : payload.aud;
  const roles = payload.roles;
  if (roles !== undefined && !(Array.isArray(roles) && roles.every((r) => typeof r === "string"))) {
    throw new TokenClaimsError("access token has a roles claim that is not a list of strings");
  }
  const iat = seconds("iat");
  return {
    tid: text("tid").toLowerCase(),
    aud: text("aud", audience),
    iss: text("iss"),
    appId: text("appid", payload.appid ?? payload.azp),
    roles: roles ? [...(roles as string[])] : [],
    ver: text("ver"),
    iat,
    nbf: payload.nbf === undefined ? iat : seconds("nbf"),
    exp: seconds("exp"),
    idtyp: typeof payload.idtyp === "string" ? payload.idtyp : undefined,
    oid: text("oid"),
  };
}

/**
 * The claims of an access token, or undefined when it is not a readable JWT. Microsoft warns that access
 * tokens for its own APIs may be opaque or encrypted and that clients must not depend on reading them
 * (access-token documentation): such a token is still used, and the API it is sent to decides.
 */
export function readTokenClaims(accessToken: string): TokenClaims | undefined {
  try {
    return decodeTokenClaims(accessToken);
  } catch (error) {
    if (error instanceof TokenClaimsError) return undefined;
    throw error;
  }
}

/**
 * A short, non-reversible name for a token, for logs and diagnostics: the first 12 hex digits of its
 * SHA-256. Two log lines with the same fingerprint used the same token; the token cannot be recovered.
 */
export function tokenFingerprint(accessToken: string): string {
  return createHash("sha256").update(accessToken, "utf8").digest("hex").slice(0, 12);
}
