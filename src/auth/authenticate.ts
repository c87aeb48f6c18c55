import type { ApiKeyStore } from "../store/api-key-store.js";
import { ANONYMOUS_CALLER, type Caller } from "./caller.js";
import { CallerAuthError, type EntraCallerVerifier } from "./caller-jwt.js";

export interface AuthenticatorOptions {
  apiKeys: ApiKeyStore;
  /** Verifier of the partner's users' Entra tokens; undefined when none is configured. */
  entra: EntraCallerVerifier | undefined;
  /** Requests without credentials act as an admin over every tenant (sandbox only; config enforces that). */
  anonymous: boolean;
}

/** The request headers authentication reads. */
export interface CredentialHeaders {
  authorization?: string | string[] | undefined;
  "x-api-key"?: string | string[] | undefined;
}

/** Keys are recognised by their prefix, so a key is never sent to the JWT verifier (or the reverse). */
const API_KEY_PREFIX = "cwk_";

const KEY_REFUSALS = {
  MALFORMED: "the API key is malformed",
  UNKNOWN: "the API key is not valid",
  REVOKED: "the API key was revoked",
  EXPIRED: "the API key has expired",
} as const;

/**
 * Who is calling: an API key (`Authorization: Bearer cwk_…` or `X-API-Key`), an Entra ID bearer token, or,
 * when allowed, nobody. Credentials that are present but wrong are refused even when anonymous calls are
 * allowed: a caller who meant to be someone never silently becomes someone else.
 */
export function createAuthenticator(options: AuthenticatorOptions) {
  return {
    async authenticate(headers: CredentialHeaders): Promise<Caller> {
      const credential = readCredential(headers);
      if (!credential) {
        if (options.anonymous) return ANONYMOUS_CALLER;
        throw new CallerAuthError(
          "UNAUTHENTICATED",
          options.entra
            ? "authentication required: send an API key or an Entra ID access token as Authorization: Bearer"
            : "authentication required: send an API key as Authorization: Bearer or X-API-Key",
        );
      }
      if (credential.kind === "api-key") {
        const verified = await options.apiKeys.verify(credential.value);
        if (!verified.ok) throw new CallerAuthError("UNAUTHENTICATED", KEY_REFUSALS[verified.reason]);
        const record = verified.record;
        return { kind: "API_KEY", id: record.id, name: record.name, grants: [{ role: record.role, scope: record.scope }] };
      }
      if (!options.entra) {
        throw new CallerAuthError("UNAUTHENTICATED", "bearer tokens are not accepted here: Entra ID caller authentication is not configured");
      }
      return options.entra.verify(credential.value);
    },
  };
}

export type Authenticator = ReturnType<typeof createAuthenticator>;

function readCredential(headers: CredentialHeaders): { kind: "api-key" | "bearer"; value: string } | undefined {
  const apiKey = single(headers["x-api-key"], "X-API-Key");
  const authorization = single(headers.authorization, "Authorization");
  if (apiKey !== undefined && authorization !== undefined) {
    throw new CallerAuthError("UNAUTHENTICATED", "send one credential: Authorization or X-API-Key, not both");
  }
  if (apiKey !== undefined) return { kind: "api-key", value: apiKey.trim() };
  if (authorization === undefined) return undefined;
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization);
  if (!match) throw new CallerAuthError("UNAUTHENTICATED", "the Authorization header must be: Bearer <credential>");
  const value = match[1]!;
  return { kind: value.startsWith(API_KEY_PREFIX) ? "api-key" : "bearer", value };
}

function single(value: string | string[] | undefined, name: string): string | undefined {
  if (Array.isArray(value)) {
    if (value.length > 1) throw new CallerAuthError("UNAUTHENTICATED", `send one ${name} header`);
    value = value[0];
  }
  return value === undefined || value.trim() === "" ? undefined : value;
}
