import { createHash, createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from "node:crypto";
import { errors as joseErrors, jwtVerify, SignJWT, type JWTPayload } from "jose";
import { generate } from "selfsigned";
import type { SandboxContext } from "./context.js";
import type { Resource } from "./resources.js";
import type { SandboxTenant } from "./tenants.js";

/**
 * The emulated Entra ID token-signing key. Like Entra's, one key signs tokens for every tenant; it is
 * published with its certificate (`x5c`) and `kid` = `x5t` = base64url SHA-1 of the certificate.
 */
export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  certDerBase64: string;
}

export async function createSigningKey(): Promise<SigningKey> {
  const pems = await generate([{ name: "commonName", value: "accounts.sandbox.crosswatch.local" }], {
    keySize: 2048,
    notAfterDate: new Date(Date.now() + 30 * 86_400_000),
    algorithm: "sha256",
  });
  const cert = new X509Certificate(pems.cert);
  return {
    kid: createHash("sha1").update(cert.raw).digest("base64url"),
    privateKey: createPrivateKey(pems.private),
    publicKey: createPublicKey(pems.cert),
    certDerBase64: cert.raw.toString("base64"),
  };
}

/** The JWKS document Entra serves at `/{tenant}/discovery/v2.0/keys` and `/common/discovery/keys`. */
export function jwks(key: SigningKey, issuer?: string): { keys: Record<string, unknown>[] } {
  const jwk = key.publicKey.export({ format: "jwk" });
  const entry: Record<string, unknown> = {
    kty: "RSA",
    use: "sig",
    kid: key.kid,
    x5t: key.kid,
    n: jwk.n,
    e: jwk.e,
    x5c: [key.certDerBase64],
  };
  if (issuer) entry.issuer = issuer;
  return { keys: [entry] };
}

export function v1Issuer(tenantId: string): string {
  return `https://sts.windows.net/${tenantId}/`;
}

/** v2 issuer on the sandbox's own host, so that discovery documents and tokens agree. */
export function v2Issuer(baseUrl: string, tenantId: string): string {
  return `${baseUrl}/${tenantId}/v2.0`;
}

/**
 * Opaque access tokens per sandbox: the random string handed out → the signed JWT it stands for, which
 * the resource APIs verify in its place (signature, lifetime, audience, issuer, tenant, roles).
 */
const opaqueTokens = new WeakMap<SandboxContext, Map<string, { jwt: string; exp: number }>>();
/** Per-tenant overrides of `options.opaqueTokens`, set through the control API. */
const opaqueTenants = new WeakMap<SandboxContext, Map<string, boolean>>();

/** Whether the tenant's access tokens are issued opaque (a run-time override, else the option). */
export function usesOpaqueTokens(ctx: SandboxContext, tenantId: string): boolean {
  const id = tenantId.toLowerCase();
  const override = opaqueTenants.get(ctx)?.get(id);
  if (override !== undefined) return override;
  const option = ctx.options.opaqueTokens;
  return option === true || (Array.isArray(option) && option.some((t) => t.toLowerCase() === id));
}

/** Switches a tenant's token format from now on; tokens already issued keep working until they expire. */
export function setOpaqueTokens(ctx: SandboxContext, tenantId: string, opaque: boolean): void {
  let overrides = opaqueTenants.get(ctx);
  if (!overrides) opaqueTenants.set(ctx, (overrides = new Map()));
  overrides.set(tenantId.toLowerCase(), opaque);
}

/** Hands out an opaque stand-in for a signed token, forgetting stand-ins expired past the clock tolerance. */
function opaqueFor(ctx: SandboxContext, jwt: string, exp: number): string {
  let issued = opaqueTokens.get(ctx);
  if (!issued) opaqueTokens.set(ctx, (issued = new Map()));
  const oldest = Math.floor(ctx.now() / 1000) - 300;
  for (const [token, entry] of issued) if (entry.exp < oldest) issued.delete(token);
  // No dots, so nothing mistakes it for a JWS: like Microsoft's opaque tokens, a long base64url-ish run.
  const token = `EwA${randomOpaque(300)}`;
  issued.set(token, { jwt, exp });
  return token;
}

export interface IssuedToken {
  accessToken: string;
  /** Unix seconds. */
  iat: number;
  nbf: number;
  exp: number;
}

/**
 * Signs an app-only access token with the claims of reference section 4.2: `roles` only when the tenant
 * granted some, `appid`/`appidacr` in v1 and `azp`/`azpacr` in v2. For a tenant with opaque tokens the
 * answer is a random stand-in for that JWT (`usesOpaqueTokens`).
 *
 * @param credentialType `secret` gives appidacr "1", `certificate` gives "2"
 */
export async function issueAccessToken(
  ctx: SandboxContext,
  key: SigningKey,
  input: {
    tenant: SandboxTenant;
    resource: Resource;
    roles: string[];
    credentialType: "secret" | "certificate";
    /** Overrides the configured lifetime (negative: already expired). */
    lifetimeSeconds?: number;
  },
): Promise<IssuedToken> {
  const iat = Math.floor(ctx.now() / 1000);
  const exp = iat + (input.lifetimeSeconds ?? ctx.options.tokenLifetimeSeconds) + 1;
  const v2 = ctx.options.accessTokenVersion === 2;
  const tid = input.tenant.id;
  const issuer = v2 ? v2Issuer(ctx.baseUrl, tid) : v1Issuer(tid);
  const acr = input.credentialType === "certificate" ? "2" : "1";
  const claims: JWTPayload & Record<string, unknown> = {
    aud: v2 ? input.resource.appId : input.resource.uri,
    iss: issuer,
    iat,
    nbf: iat,
    exp,
    aio: randomOpaque(56),
    ...(v2 ? { azp: ctx.app.clientId, azpacr: acr } : { appid: ctx.app.clientId, appidacr: acr }),
    idp: v2 ? issuer : v1Issuer(tid),
    idtyp: "app",
    oid: input.tenant.servicePrincipalId,
    rh: `1.${randomOpaque(40)}AA.`,
    ...(input.roles.length > 0 ? { roles: [...input.roles] } : {}),
    sub: input.tenant.servicePrincipalId,
    tid,
    uti: randomOpaque(22),
    ver: v2 ? "2.0" : "1.0",
    xms_idrel: "7 12",
    xms_tcdt: input.tenant.createdUnix,
  };
  const header = v2
    ? { alg: "RS256", typ: "JWT", kid: key.kid }
    : { alg: "RS256", typ: "JWT", kid: key.kid, x5t: key.kid };
  const jwt = await new SignJWT(claims).setProtectedHeader(header).sign(key.privateKey);
  const accessToken = usesOpaqueTokens(ctx, tid) ? opaqueFor(ctx, jwt, exp) : jwt;
  return { accessToken, iat, nbf: iat, exp };
}

export type BearerCheck =
  | { ok: true; tenant: SandboxTenant; roles: string[]; appId: string }
  | { ok: false; status: 401; message: string };

/**
 * What a resource API does with `Authorization: Bearer …`: verifies signature, lifetime (on the sandbox
 * clock), audience (v1 App ID URI or v2 appId) and issuer, then finds the tenant. A token whose tenant has
 * since revoked consent is refused too (the emulator applies revocation at once; Entra may take a while).
 */
export async function verifyBearer(
  ctx: SandboxContext,
  key: SigningKey,
  authorization: string | undefined,
  resource: Resource,
): Promise<BearerCheck> {
  const match = /^Bearer\s+(\S+)$/i.exec(authorization ?? "");
  if (!match) return { ok: false, status: 401, message: "Authorization header is missing or is not a Bearer token." };
  // An opaque token is checked as the signed token it stands for (an unknown one fails verification).
  const presented = opaqueTokens.get(ctx)?.get(match[1]!)?.jwt ?? match[1]!;
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(presented, key.publicKey, {
      algorithms: ["RS256"],
      audience: [resource.uri, `${resource.uri}/`, resource.appId],
      currentDate: new Date(ctx.now()),
      clockTolerance: 300,
    }));
  } catch (error) {
    const message =
      error instanceof joseErrors.JWTExpired
        ? "The access token has expired."
        : error instanceof joseErrors.JWTClaimValidationFailed && error.claim === "aud"
          ? "The access token audience is invalid for this resource."
          : "The access token is invalid.";
    return { ok: false, status: 401, message };
  }
  const tid = typeof payload.tid === "string" ? payload.tid : "";
  const tenant = ctx.findTenant(tid);
  const expectedIssuers = [v1Issuer(tid), v2Issuer(ctx.baseUrl, tid)];
  if (!tenant || !expectedIssuers.includes(String(payload.iss))) {
    return { ok: false, status: 401, message: "The access token issuer is invalid." };
  }
  if (!tenant.consent.granted) {
    return { ok: false, status: 401, message: "The application's service principal no longer exists in the tenant." };
  }
  const appId = String(payload.appid ?? payload.azp ?? "");
  const roles = Array.isArray(payload.roles) ? payload.roles.map(String) : [];
  return { ok: true, tenant, roles, appId };
}

const OPAQUE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

function randomOpaque(length: number): string {
  const bytes = new Uint8Array(length);
  crypto.getRandomValues(bytes);
  let out = "";
  for (const b of bytes) out += OPAQUE_ALPHABET[b % OPAQUE_ALPHABET.length];
  return out;
}

/**
 * The partner's own tenant in the emulated cloud: where the partner's analysts sign in. Not a customer
 * tenant; Crosswatch accepts its users' tokens in sandbox mode.
 */
export const SANDBOX_PARTNER_TENANT_ID = "c5a1f00d-7e57-4b1e-9a2d-0c0ffee0a11d";
/** The app id URI of the Crosswatch API that sandbox user tokens are issued for. */
export const SANDBOX_CALLER_AUDIENCE = "api://crosswatch";

export interface CallerTokenInput {
  roles: string[];
  tenantId: string;
  audience: string;
  name: string;
  oid: string;
  expiresInSeconds: number;
  notBeforeInSeconds: number;
  issuer?: string | undefined;
  version: 1 | 2;
  omitClaims: string[];
}

/**
 * Signs a delegated (user) access token for the Crosswatch API, as Entra would for a frontend's signed-in
 * analyst: the app roles assigned to the user in `roles`, `oid`/`sub`, `name`, `preferred_username`, `scp`.
 * Offsets may be negative (an expired token) to try Crosswatch's refusals.
 */
export async function issueCallerToken(ctx: SandboxContext, key: SigningKey, input: CallerTokenInput): Promise<{ accessToken: string; claims: Record<string, unknown> }> {
  const now = Math.floor(ctx.now() / 1000);
  const v2 = input.version === 2;
  const claims: Record<string, unknown> = {
    aud: input.audience,
    iss: input.issuer ?? (v2 ? v2Issuer(ctx.baseUrl, input.tenantId) : v1Issuer(input.tenantId)),
    iat: now,
    nbf: now + input.notBeforeInSeconds,
    exp: now + input.expiresInSeconds,
    azp: "0f2b4c6d-8e10-4c6e-8a1d-5c1e7d2a9b3f",
    idtyp: "user",
    name: input.name,
    oid: input.oid,
    preferred_username: `${input.name.toLowerCase().replace(/[^a-z0-9]+/g, ".")}@partner.example`,
    roles: input.roles,
    scp: "access_as_user",
    sub: input.oid,
    tid: input.tenantId,
    uti: randomOpaque(22),
    ver: v2 ? "2.0" : "1.0",
  };
  for (const claim of input.omitClaims) delete claims[claim];
  const accessToken = await new SignJWT(claims).setProtectedHeader({ alg: "RS256", typ: "JWT", kid: key.kid }).sign(key.privateKey);
  return { accessToken, claims };
}
